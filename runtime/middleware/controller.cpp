// The decision trace, and the choice of controllers by performance.controller.
#include "middleware/controller.hpp"

#include <fmt/format.h>

#include "middleware/batch_size_controller.hpp"
#include "middleware/concurrency_controller.hpp"
#include "middleware/rival_controllers.hpp"

namespace sluice::middleware {

DecisionTrace::DecisionTrace(const core::Clock& clock) : clock_(clock), start_(clock.now()) {}

void DecisionTrace::record(std::string_view verb, uint32_t from, uint32_t to,
                           std::string_view why) {
  Decision d{std::chrono::duration<double>(clock_.now() - start_).count(), from, to,
             fmt::format("{} {} -> {}: {}", verb, from, to, why)};
  std::lock_guard lock(mutex_);
  last_.push_back(std::move(d));
  if (last_.size() > kCapacity) last_.pop_front();
  ++total_;
}

std::vector<Decision> DecisionTrace::snapshot() const {
  std::lock_guard lock(mutex_);
  return {last_.begin(), last_.end()};
}

uint64_t DecisionTrace::total() const {
  std::lock_guard lock(mutex_);
  return total_;
}

namespace {

std::unique_ptr<ConcurrencyLimiter> rival_limiter(const core::PerformanceSettings& settings,
                                                  const core::Clock& clock) {
  switch (settings.controller) {
    case core::ControllerKind::vector_arc:
      return std::make_unique<VectorArcLimiter>(settings, clock);
    case core::ControllerKind::gradient2:
      return std::make_unique<Gradient2Limiter>(settings, clock);
    case core::ControllerKind::vegas:
      return std::make_unique<VegasLimiter>(settings, clock);
    case core::ControllerKind::seed:
      return std::make_unique<SeedConcurrencyLimiter>(settings, clock);
    case core::ControllerKind::sluice:
      break;
  }
  return std::make_unique<ConcurrencyController>(settings, clock);
}

const char* name_of(core::ControllerKind kind) {
  switch (kind) {
    case core::ControllerKind::vector_arc:
      return "vector_arc";
    case core::ControllerKind::gradient2:
      return "gradient2";
    case core::ControllerKind::vegas:
      return "vegas";
    case core::ControllerKind::seed:
      return "seed";
    case core::ControllerKind::sluice:
      break;
  }
  return "sluice";
}

}  // namespace

Controllers make_controllers(const core::PerformanceSettings& settings, const core::Clock& clock) {
  Controllers c;
  c.name = name_of(settings.controller);
  // The rivals are concurrency algorithms; they share sluice's batch sizer, so an arm's result
  // is its concurrency rule. The seed arm is the seed's whole rule: x0.9 / x1.1 batch steps too.
  if (settings.controller == core::ControllerKind::seed)
    c.batch = std::make_unique<SeedBatchSizer>(settings, clock);
  else
    c.batch = std::make_unique<BatchSizeController>(settings);
  c.concurrency = rival_limiter(settings, clock);
  return c;
}

}  // namespace sluice::middleware
