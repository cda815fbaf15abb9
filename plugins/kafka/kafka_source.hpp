// The `kafka` source: a consumer-group member that hands records on and commits what is done.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "rdkafka_common.hpp"
#include "sluice/sdk.hpp"

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
};

}  // namespace sluice::kafka
