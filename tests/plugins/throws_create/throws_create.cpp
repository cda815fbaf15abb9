// Test module throws_create: a transform whose constructor throws, so create must fail cleanly.
#include <sluice/sdk.hpp>

namespace {

class ThrowsCreate final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() { return {}; }
  ThrowsCreate(const sluice::Config& /*c*/, sluice::Host& /*host*/) {
    throw std::runtime_error("boom in create");
  }
  void process(const sluice::Batch& /*in*/, sluice::Output& /*out*/) override {}
};

}  // namespace

SLUICE_MODULE("throws_create", "1.0.0", SLUICE_TRANSFORM(ThrowsCreate, "throws_create"))
