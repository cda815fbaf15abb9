// Exactly-once Kafka -> Kafka: librdkafka's transactional producer API behind Transaction.
#include "transaction.hpp"

#include <fmt/format.h>

#include <map>
#include <thread>

namespace sluice::kafka {

namespace {

// A retriable transactional call (coordinator moving, timeout) is tried this often.
constexpr int kAttempts = 5;
constexpr std::chrono::milliseconds kBackoff{200};

struct ConsumerGroupMetadataDeleter {
  void operator()(rd_kafka_consumer_group_metadata_t* m) const {
    rd_kafka_consumer_group_metadata_destroy(m);
  }
};

}  // namespace

std::shared_ptr<Transaction> Transaction::of(const std::string& pipeline) {
  return shared_per_pipeline<Transaction>(pipeline);
}

template <typename Call>
ErrorPtr Transaction::retry(Call call) {
  ErrorPtr error;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    error.reset(call());
    if (!error || !rd_kafka_error_is_retriable(error.get())) return error;
    if (attempt < kAttempts) std::this_thread::sleep_for(kBackoff * attempt);
  }
  return error;
}

void Transaction::throw_fatal(const rd_kafka_error_t* error, const char* step) const {
  const bool fenced = rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED ||
                      rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                      rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
  throw Fatal(fmt::format(
      "kafka exactly-once (pipeline {}): {} failed for good: {}: {}{}", pipeline_, step,
      rd_kafka_error_name(error), rd_kafka_error_string(error),
      fenced ? " (the producer was fenced: another producer with the same transactional_id "
               "started; give each worker its own transactional_id)"
             : ""));
}

void Transaction::attach(rd_kafka_t* producer, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  timeout_ = timeout;
  const int ms = static_cast<int>(timeout.count());
  if (ErrorPtr e = retry([&] { return rd_kafka_init_transactions(producer, ms); }))
    throw_fatal(e.get(), "init_transactions");
  producer_ = producer;
  begin();
}

void Transaction::detach(rd_kafka_t* producer) {
  std::unique_lock lock(mutex_);
  if (producer_ == nullptr || producer_ != producer) return;
  // A transaction still open here was not committed: nothing of it may become visible.
  ErrorPtr(rd_kafka_abort_transaction(producer_, static_cast<int>(timeout_.count())));
  producer_ = nullptr;
}

void Transaction::begin() {
  if (ErrorPtr e{rd_kafka_begin_transaction(producer_)}) throw_fatal(e.get(), "begin_transaction");
  std::lock_guard failed_lock(failed_mutex_);
  failed_.clear();
  ++generation_;
}

void Transaction::mark_failed(const std::string& why) {
  std::lock_guard lock(failed_mutex_);
  if (failed_.empty()) failed_ = why;
}

void Transaction::mark_failed(uint64_t generation, const std::string& why) {
  std::lock_guard lock(failed_mutex_);
  if (generation == generation_ && failed_.empty()) failed_ = why;
}

bool Transaction::commit(const rd_kafka_topic_partition_list_t* offsets, rd_kafka_t* consumer,
                         const Host& host) {
  std::unique_lock lock(mutex_);
  if (producer_ == nullptr)
    throw Fatal(
        fmt::format("kafka exactly-once (pipeline {}): the kafka sink has no producer", pipeline_));
  std::string failed;
  {
    std::lock_guard failed_lock(failed_mutex_);
    failed = failed_;
  }
  if (!failed.empty()) {
    abort_locked(host, failed);
    return false;
  }
  const int ms = static_cast<int>(timeout_.count());
  if (offsets->cnt > 0) {
    std::unique_ptr<rd_kafka_consumer_group_metadata_t, ConsumerGroupMetadataDeleter> group(
        rd_kafka_consumer_group_metadata(consumer));
    if (ErrorPtr e = retry([&] {
          return rd_kafka_send_offsets_to_transaction(producer_, offsets, group.get(), ms);
        })) {
      if (rd_kafka_error_is_fatal(e.get())) throw_fatal(e.get(), "send_offsets_to_transaction");
      abort_locked(host,
                   fmt::format("sending the offsets failed: {}", rd_kafka_error_string(e.get())));
      return false;
    }
  }
  if (ErrorPtr e = retry([&] { return rd_kafka_commit_transaction(producer_, ms); })) {
    if (rd_kafka_error_is_fatal(e.get())) throw_fatal(e.get(), "commit_transaction");
    abort_locked(host, fmt::format("the commit failed: {}", rd_kafka_error_string(e.get())));
    return false;
  }
  begin();
  return true;
}

void Transaction::abort(const Host& host, const std::string& why) {
  std::unique_lock lock(mutex_);
  if (producer_ != nullptr) abort_locked(host, why);
}

void Transaction::abort_locked(const Host& host, const std::string& why) {
  host.warn(fmt::format("kafka exactly-once (pipeline {}): aborting the transaction: {}", pipeline_,
                        why));
  const int ms = static_cast<int>(timeout_.count());
  if (ErrorPtr e = retry([&] { return rd_kafka_abort_transaction(producer_, ms); }))
    throw_fatal(e.get(), "abort_transaction");
  begin();
}

}  // namespace sluice::kafka
