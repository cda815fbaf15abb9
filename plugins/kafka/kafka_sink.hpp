// The `kafka` sink: an idempotent producer whose put returns once Kafka acknowledged the batch,
// or, paired with the pipeline's kafka source (delivery_gate.hpp), once librdkafka has it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "delivery_gate.hpp"
#include "rdkafka_common.hpp"
#include "sluice/sdk.hpp"
#include "transaction.hpp"

namespace sluice::kafka {

// The delivery reports of one put call. Shared between put and the delivery-report callback,
// so a late report never touches freed memory.
struct BatchDelivery {
  // Message opaque: which batch and which record a delivery report belongs to.
  struct Ticket {
    BatchDelivery* batch;
    size_t index;
  };
  std::vector<Ticket> tickets;  // sized once, so pointers into it stay valid

  std::mutex mutex;
  std::condition_variable done;
  size_t outstanding = 0;
  bool abandoned = false;  // put gave up waiting; the last report frees the batch
  // Per input record: NO_ERROR until a report says otherwise.
  std::vector<rd_kafka_resp_err_t> results;
};

class KafkaSink final : public Sink, private HandleContext {
 public:
  KafkaSink(const Config& config, Host& host);
  ~KafkaSink() override;
  KafkaSink(const KafkaSink&) = delete;
  KafkaSink& operator=(const KafkaSink&) = delete;

  static ConfigSchema schema();
  static std::string description() {
    return "Produces records to Kafka with an idempotent producer (acks=all); put returns once "
           "every record is acknowledged, or, with a kafka source in the same process, once "
           "librdkafka has them (the source commits their offsets after delivery).";
  }

  void put(const Batch& in, Output& rejects) override;
  void flush() override;
  void pre_commit() override;

 private:
  static void on_delivery(rd_kafka_t* rk, const rd_kafka_message_t* message, void* opaque);
  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  void serve_reports();
  // Produces one record, waiting while the local queue is full (each wait of up to 10 ms counts
  // in the counter producer_queue_full_waits). Returns the synchronous error. `opaque` comes
  // back in its delivery report.
  rd_kafka_resp_err_t produce(rd_kafka_t* producer, const RecordView& record,
                              const std::string& topic, void* opaque);
  static void throw_if_fatal(rd_kafka_t* producer);
  // The producer puts go through: the pipeline's transactional one for a dead-letter sink
  // that joined the transaction (under produce_lock), this sink's own otherwise.
  rd_kafka_t* put_producer() const;
  // Exactly-once: produces into the open transaction and returns without waiting for reports;
  // the commit flushes, and a failed record aborts the transaction (its input is consumed again).
  void put_transactional(const Batch& in, Output& rejects);
  // At-least-once: returns once Kafka acknowledged every record.
  void put_acknowledged(const Batch& in, Output& rejects);
  // At-least-once behind the pipeline's delivery gate: returns once librdkafka has every
  // record; the kafka source commits their offsets only after their delivery reports.
  void put_early(const Batch& in, Output& rejects);
  std::string topic_of(const RecordView& record) const;
  // The first record producev refused for a reason other than the record itself.
  struct Refusal {
    std::string topic;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  };
  // Hands every record with a topic to `send(record, topic)` (producev's error), rejecting
  // records without a topic and those `invalid` calls bad; stops at the first other error.
  template <typename Send>
  Refusal produce_batch(const Batch& in, Output& rejects, bool (*invalid)(rd_kafka_resp_err_t),
                        Send send);

  Host& host_;
  std::string topic_;
  std::chrono::milliseconds flush_timeout_;
  // How long put waits for reports: librdkafka reports every message within message.timeout.ms.
  std::chrono::milliseconds report_wait_;
  HandlePtr producer_;
  // Set with `delivery: exactly_once`: the pipeline's transaction, shared with its source.
  std::shared_ptr<Transaction> transaction_;
  // Exactly-once dead-letter sink: no producer of its own; produces into transaction_ through
  // the pipeline's kafka sink's producer, so a dead letter commits or aborts with the output.
  bool joins_transaction_ = false;
  // Set for an at-least-once pipeline with an in-process kafka source (delivery_gate.hpp).
  std::shared_ptr<DeliveryGate> gate_;

  // Batches still waiting for reports, owned here so a put that gave up leaves them alive.
  std::mutex batches_mutex_;
  std::unordered_map<BatchDelivery*, std::shared_ptr<BatchDelivery>> batches_;

  std::atomic<bool> stopping_{false};
  std::thread reporter_;
};

}  // namespace sluice::kafka
