// The `kafka` source: a consumer-group member that hands records on and commits what is done.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "delivery_gate.hpp"
#include "rdkafka_common.hpp"
#include "sluice/sdk.hpp"
#include "transaction.hpp"
#include "transaction_sizer.hpp"

namespace sluice::kafka {

class KafkaSource final : public Source, private HandleContext {
 public:
  KafkaSource(const Config& config, Host& host);
  ~KafkaSource() override;
  KafkaSource(const KafkaSource&) = delete;
  KafkaSource& operator=(const KafkaSource&) = delete;

  static ConfigSchema schema();
  static std::string description() {
    return "Consumes Kafka topics as a consumer-group member (cooperative-sticky), committing "
           "only offsets the pipeline has finished.";
  }

  bool poll(Output& out, size_t max_records, uint32_t timeout_ms) override;
  void commit(std::span<const Position> positions) override;
  void set_paused(bool paused) override;

 private:
  using Clock = std::chrono::steady_clock;
  using PartitionKey = std::pair<std::string, int32_t>;

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* partitions, void* opaque);
  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque);

  void assign(rd_kafka_topic_partition_list_t* partitions);
  void revoke(rd_kafka_topic_partition_list_t* partitions);
  // Raises a pending error (fatal client error, unreachable cluster, unknown topic).
  void check_health();
  void check_topics_exist();
  // Takes a message from the consumer: records or errors. Returns true if it was a record.
  bool accept(MessagePtr message, std::deque<MessagePtr>& into);
  void emit(Output& out, const rd_kafka_message_t& message);
  // Hands on stashed messages first (up to max_records); returns how many.
  size_t emit_stashed(Output& out, size_t max_records);
  // At least once: hands on messages as the consumer gives them.
  void poll_records(Output& out, size_t max_records, uint32_t timeout_ms);
  // Exactly once: takes from the consumer first, hands on after (see the .cpp).
  void poll_transactional(Output& out, size_t max_records, uint32_t timeout_ms);
  // rd_kafka_consumer_poll, remembering when: that call is what keeps us in the group.
  MessagePtr consumer_poll(int timeout_ms);
  // While the host takes nothing: serves the group now and then, stashing what arrives.
  void serve_group_while_paused();
  void stash_push(MessagePtr message);
  MessagePtr stash_pop();
  // Pauses the whole assignment while the stash is full, resumes it once the stash has room.
  void apply_pause();
  void pause_partitions(rd_kafka_topic_partition_list_t* partitions, bool paused);
  bool is_assigned(const std::string& topic, int32_t partition) const;

  // Exactly-once (transaction_ set): the transaction ends after transaction_interval_ms (or
  // its adaptive size), or once a poll found no input, at a point where every record handed on
  // is done (the host drains the pipeline). False when that drain did not end (drain_timeout_ms,
  // a failed pipeline, or a stop): the transaction stays open and the poll hands on nothing more.
  bool end_transaction_if_due();
  void set_up_transaction_sizing(const Config& config);
  // The open transaction reached its size (adaptive) or its interval (fixed).
  bool transaction_due() const;
  // The input ran dry and the open transaction is old enough to end for that.
  bool transaction_idle() const;
  // Asks the host to finish every record taken; false if drain_timeout_ms passed first.
  bool drain_everything();
  // Commits the transaction with the offsets after what was handed on, or (if it must abort)
  // aborts it and rewinds. `input_dry`: it ends because the input ran dry, so its size and
  // interval do not steer the next size.
  void end_transaction(bool input_dry = false);
  // Seeks the assignment back to the committed offsets: what the aborted transaction held is
  // consumed again. Throws Fatal if it cannot (a restart resumes from there instead).
  void rewind();
  // The host reported every record handed on in this transaction as done.
  bool all_acked() const;
  // At least once: commits these next-to-consume offsets (still assigned ones) to the group.
  void commit_offsets(const std::map<PartitionKey, int64_t>& done);
  // With a delivery gate: holds the host's positions until the sinks' deliveries confirm them.
  void hold(std::span<const Position> positions);
  // Commits the held positions the gate confirmed; none while a delivery failure is unhandled.
  void commit_confirmed();
  // Waits (up to drain_timeout_ms) for what the sinks have in flight, then commits it.
  void settle_held();
  // A delivery failed after the host counted its records done: drains, drops the held
  // positions and rewinds to the committed offsets, so the records are consumed again.
  void recover_from_failed_delivery();
  void log_transaction_totals();
  void publish_transaction_stats(Clock::duration age, Clock::duration commit_time, bool committed,
                                 bool input_dry);

  Host& host_;
  std::string bootstrap_servers_;
  std::vector<std::string> topics_;
  std::string topic_regex_;
  bool allow_auto_create_ = false;
  std::chrono::milliseconds connect_timeout_;
  uint32_t drain_timeout_ms_;
  HandlePtr consumer_;

  Clock::time_point created_at_ = Clock::now();
  bool reached_cluster_ = false;
  std::string pending_fatal_;
  bool closing_ = false;

  // Messages that arrived while the host asked for none: handed out by the next poll.
  std::deque<MessagePtr> stash_;
  size_t stash_bytes_ = 0;
  bool paused_ = false;  // what the assignment currently is
  // While the host is paused, the consumer is polled at least this often (rebalances are served
  // and max.poll.interval.ms is met inside rd_kafka_consumer_poll).
  std::chrono::milliseconds serve_group_every_{500};
  Clock::time_point last_consumer_poll_ = Clock::now();

  // The assignment, with the last offset handed to the host per partition (-1: none yet).
  std::map<PartitionKey, int64_t> assigned_;

  std::string auto_offset_reset_;
  std::shared_ptr<Transaction> transaction_;  // set with delivery: exactly_once
  // Fixed: transaction_interval_ms (> 0); otherwise the sizer steers the size in records.
  std::chrono::milliseconds transaction_interval_{0};
  std::optional<TransactionSizer> sizer_;
  // This transaction: the last offset handed on per partition, the host's positions (done
  // offsets) reported since it began, when its first record was handed on, how many.
  std::map<PartitionKey, int64_t> uncommitted_;
  std::map<PartitionKey, int64_t> acked_;
  Clock::time_point transaction_began_;
  size_t transaction_records_ = 0;
  bool in_drain_ = false;
  Clock::duration last_drain_{};  // how long the drain before the last transaction's end took
  // Exactly-once: the assigned partitions read to their end (no record since their EOF event),
  // and whether the last poll found every one there with nothing left to hand on.
  std::set<PartitionKey> at_end_;
  bool input_dry_ = false;
  // At least once with a kafka sink that acknowledges early (delivery_gate.hpp): the host's
  // positions, each with the gate's last batch when they came, held until it is confirmed.
  std::shared_ptr<DeliveryGate> gate_;
  struct Held {
    uint64_t batch;
    std::map<PartitionKey, int64_t> offsets;
  };
  std::deque<Held> held_;
  bool discard_positions_ = false;  // recovering: what the host reports now is rewound anyway
  // Totals over the run, logged at the end.
  struct TransactionTotals {
    size_t committed = 0;
    size_t aborted = 0;
    size_t records = 0;
    Clock::duration age{};
  } totals_;
};

}  // namespace sluice::kafka
