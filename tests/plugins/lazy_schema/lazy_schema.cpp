// Test module lazy_schema: a C++ plugin whose schema() counts its calls (lazy_schema_builds()),
// to show that SLUICE_MODULE's entry point runs none of the plugin's code and the module's init
// builds the schema. With LAZY_SCHEMA_THROWS its schema() throws: the load must fail, naming it.
#include <sluice/sdk.hpp>

namespace {

int builds = 0;
#ifdef LAZY_SCHEMA_THROWS
constexpr bool kThrows = true;
#else
constexpr bool kThrows = false;
#endif

class Lazy : public sluice::Transform {
 public:
  Lazy(const sluice::Config&, sluice::Host&) {}
  static sluice::ConfigSchema schema() {
    ++builds;
    if (kThrows) throw std::runtime_error("schema cannot be built");
    sluice::ConfigSchema s;
    s.string("greeting").default_value("hello");
    return s;
  }
  static std::string description() { return "Counts how often its schema is built."; }
  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) out.forward(i, in[i]);
  }
};

}  // namespace

extern "C" SLUICE_EXPORT int lazy_schema_builds() { return builds; }

SLUICE_MODULE("lazy_schema", "1.0.0", SLUICE_TRANSFORM(Lazy, "lazy"))
