// At least once without waiting in put: the kafka sink acknowledges a batch once librdkafka has
// it, and the kafka source commits offsets only after the delivery reports confirmed it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace sluice::kafka {

// One per at-least-once pipeline whose kafka source runs in the host's process (the host gives
// its kafka stages the key `delivery_gate_pipeline`). The sink's put hands a batch to the
// producer and returns, so the host counts its records done before Kafka acknowledged them;
// the source therefore holds back every position the host reports until all batches begun
// before that report are delivered. A failed delivery closes the gate: nothing is committed
// until the source has drained the pipeline and rewound to the committed offsets, and the sink
// waits for acknowledgements in put from then on, so a record Kafka refuses meets the
// pipeline's error policy as it would without the gate.
class DeliveryGate {
 public:
  // The gate of `pipeline` in this process (made on first use, gone with its last user).
  static std::shared_ptr<DeliveryGate> of(const std::string& pipeline);
  explicit DeliveryGate(std::string pipeline) : pipeline_(std::move(pipeline)) {}
  const std::string& pipeline() const { return pipeline_; }

  // Source: it holds back its commits through this gate while attached.
  void attach_source();
  void detach_source();
  // Sink: a put may return before delivery only while a source holds back commits and no
  // delivery has failed in this run.
  bool may_acknowledge_early() const;

  // Sink, for a put that returns before delivery: its batch number (increasing).
  uint64_t begin();
  // Sink: a record of `batch` goes to the producer (before producev, whose report may come at
  // once); withdraw() if producev refused it (it gets no report).
  void expect(uint64_t batch);
  void withdraw(uint64_t batch);
  // Sink, from a delivery report of `batch`: `error` is empty when Kafka acknowledged it.
  void delivered(uint64_t batch, const std::string& error);
  // Sink: put handed over every record of `batch` (their reports may all be in already).
  void seal(uint64_t batch);

  struct Standing {
    uint64_t issued;      // the last batch begun
    uint64_t confirmed;   // every batch up to this one is delivered
    std::string failure;  // why a delivery failed; empty: none since the last reset
  };
  // Source: a consistent view (a batch that fails is never counted confirmed here).
  Standing standing() const;
  // Source: waits until every batch up to `batch` is delivered or failed; false on timeout.
  bool wait_confirmed(uint64_t batch, std::chrono::milliseconds timeout);
  // Source, after its rewind: the failure is dealt with (the sink stays synchronous).
  void reset_failure();

 private:
  struct Pending {
    size_t outstanding = 0;
    bool sealed = false;
  };
  void finish_locked(uint64_t batch);

  const std::string pipeline_;
  mutable std::mutex mutex_;
  std::condition_variable finished_;
  int sources_ = 0;
  bool ever_failed_ = false;
  std::string failure_;
  uint64_t issued_ = 0;
  std::map<uint64_t, Pending> pending_;
};

}  // namespace sluice::kafka
