// Test modules dup_a and dup_b: two libraries in one folder that both provide transform `dup`,
// so the registry must report the clash (DUP_MODULE names the module).
#include <sluice/sdk.hpp>

namespace {

class Dup final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() { return {}; }
  Dup(const sluice::Config& /*c*/, sluice::Host& /*host*/) {}
  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) out.forward(i, in[i]);
  }
};

}  // namespace

SLUICE_MODULE(DUP_MODULE, "1.0.0", SLUICE_TRANSFORM(Dup, "dup"))
