// Exactly-once Kafka -> Kafka: the transaction a pipeline's kafka sink produces into and its
// kafka source commits, together with the consumed offsets (KIP-98/KIP-447).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "rdkafka_common.hpp"

namespace sluice::kafka {

// One per pipeline with `delivery: exactly_once` (the host gives its stages the key
// `exactly_once_pipeline`). Source and sink live in this module, in the host's process, so they
// meet here instead of through the host:
// - the sink attaches its transactional producer and produces under produce_lock();
// - the source, once every record it handed on is done (the host drained the pipeline), calls
//   commit() with the next offsets to consume: they go into the transaction, which commits; an
//   abortable error aborts it instead and the source rewinds to the last committed offsets.
// A transaction is open from attach() on; after each commit or abort the next one begins.
class Transaction {
 public:
  // The transaction of `pipeline` in this process (made on first use, gone with its last user).
  static std::shared_ptr<Transaction> of(const std::string& pipeline);

  explicit Transaction(std::string pipeline) : pipeline_(std::move(pipeline)) {}

  // Sink: `producer` has a transactional.id; fences older producers of that id (their open
  // transaction is aborted) and begins the first transaction. Throws Fatal.
  void attach(rd_kafka_t* producer, std::chrono::milliseconds timeout);
  // Sink, before destroying `producer`: aborts what is open (unless a newer sink instance
  // attached its own producer meanwhile).
  void detach(rd_kafka_t* producer);

  // Sink: held for a put's produce calls, so no commit or abort runs in the middle of them.
  std::shared_lock<std::shared_mutex> produce_lock() { return std::shared_lock(mutex_); }
  // Under produce_lock: the producer, nullptr before the sink attached.
  rd_kafka_t* producer() const { return producer_; }
  // Sink: a record could not be produced; the transaction must abort (the source rewinds, so
  // the record is consumed again).
  void mark_failed(const std::string& why);
  // Under produce_lock: which transaction is open (each begin makes a new one). A record
  // produced into it carries this in its delivery report.
  uint64_t generation() const { return generation_.load(); }
  // Delivery-report thread: a record of transaction `generation` failed after put returned. If
  // that transaction is still open it must abort; a report of an older one changes nothing
  // (it committed, or aborted and its input is consumed again).
  void mark_failed(uint64_t generation, const std::string& why);
  bool failed() {
    std::lock_guard lock(failed_mutex_);
    return !failed_.empty();
  }
  // Sink, at the end of a run (pre_commit): the source commits as soon as all is done.
  void request_final_commit() { final_commit_ = true; }
  bool final_commit_requested() const { return final_commit_; }

  // Source, with every record handed on done: `offsets` (next offset to consume, per
  // partition) go into the transaction with the consumer's group metadata, and it commits.
  // Returns false if it was aborted instead (the caller rewinds). Throws Fatal when the
  // producer is fenced or failed for good.
  bool commit(const rd_kafka_topic_partition_list_t* offsets, rd_kafka_t* consumer,
              const Host& host);
  // Source: aborts the open transaction (nothing of it becomes visible) and begins the next.
  void abort(const Host& host, const std::string& why);

 private:
  // Runs a transactional call, again while it is retriable. Null: it succeeded.
  template <typename Call>
  ErrorPtr retry(Call call);
  [[noreturn]] void throw_fatal(const rd_kafka_error_t* error, const char* step) const;
  void begin();
  void abort_locked(const Host& host, const std::string& why);

  const std::string pipeline_;
  std::shared_mutex mutex_;  // exclusive: commit, abort, attach, detach
  rd_kafka_t* producer_ = nullptr;
  std::chrono::milliseconds timeout_{30000};
  std::mutex failed_mutex_;
  std::string failed_;  // why the open transaction must abort; empty: it may commit
  std::atomic<uint64_t> generation_{0};  // changed by begin(), under failed_mutex_
  std::atomic<bool> final_commit_{false};
};

}  // namespace sluice::kafka
