// The `kafka` sink: produce a batch, wait for its delivery reports, reject or retry failures.
#include "kafka_sink.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>

namespace sluice::kafka {

namespace {

// Reports arrive within message.timeout.ms; this covers the report's own way back.
constexpr std::chrono::milliseconds kReportGrace{5000};

// Errors that no retry of the same record can fix: the record goes to the error policy.
bool delivery_permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return true;
    default:
      return false;
  }
}

// The default transactional.id: stable across restarts of this worker, so a restarted process
// fences the one it replaces and aborts what that one left open.
std::string default_transactional_id(const std::string& pipeline) {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return fmt::format("sluice-{}-{}", pipeline, host.data());
}

// Errors rd_kafka_producev finds in the record itself. Under a transaction every other error of
// producev is the transaction's (it failed and must abort), not the record's.
bool record_invalid(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR__INVALID_ARG;
}

// A report's opaque for a record of put_early: its gate batch, tagged in the low bit (a
// BatchDelivery::Ticket pointer, the opaque of put_acknowledged, is aligned: its low bit is 0).
void* early_opaque(uint64_t batch) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(batch << 1 | 1));
}

bool is_early(const void* opaque) { return (reinterpret_cast<uintptr_t>(opaque) & 1) != 0; }

uint64_t early_batch(const void* opaque) { return reinterpret_cast<uintptr_t>(opaque) >> 1; }

// A report's opaque for a record of put_transactional: its transaction's generation, tagged 0b10
// in the low bits (early opaques end in 1, Ticket pointers in 00).
void* transactional_opaque(uint64_t generation) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(generation << 2 | 2));
}

bool is_transactional(const void* opaque) { return (reinterpret_cast<uintptr_t>(opaque) & 3) == 2; }

uint64_t transaction_generation(const void* opaque) {
  return reinterpret_cast<uintptr_t>(opaque) >> 2;
}

// Reports of records an abort purged: the abort is already under way, nothing failed.
bool purged(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
}

std::string delivery_failure(const rd_kafka_message_t& message) {
  return fmt::format("producing to {} failed: {}", rd_kafka_topic_name(message.rkt),
                     error_text(message.err));
}

}  // namespace

ConfigSchema KafkaSink::schema() {
  ConfigSchema s;
  s.string("bootstrap_servers").required().doc("Kafka bootstrap servers, host:port[,host:port]");
  s.string("topic").doc("Topic to produce to; default: each record's own topic");
  s.object("properties").doc("librdkafka producer properties, passed through");
  s.integer("flush_timeout_ms")
      .default_value(30000)
      .min(1)
      .doc("Longest a record may wait for Kafka's acknowledgement before put retries");
  s.string("transactional_id")
      .doc(
          "With delivery: exactly_once, the producer's transactional.id; unique per worker and "
          "stable across its restarts (default: sluice-<pipeline>-<hostname>)");
  add_exactly_once_field(s);
  add_delivery_gate_field(s);
  s.string(kExactlyOnceDeadLetterField)
      .doc(
          "Set by the host on the kafka dead-letter sink of a pipeline with `delivery: "
          "exactly_once` (do not write it)");
  return s;
}

KafkaSink::KafkaSink(const Config& config, Host& host)
    : host_(host),
      topic_(config.get_string("topic")),
      flush_timeout_(config.get_int("flush_timeout_ms", 30000)) {
  if (config.get_string("bootstrap_servers").empty())
    throw ConfigError("bootstrap_servers", "bootstrap_servers is required");
  if (const std::string pipeline = config.get_string(kExactlyOnceDeadLetterField);
      !pipeline.empty()) {
    transaction_ = Transaction::of(pipeline);
    joins_transaction_ = true;
    host_.info(fmt::format(
        "kafka sink: exactly-once dead letters go into the transaction of pipeline {}", pipeline));
    return;
  }
  const Settings defaults = {
      {"message.timeout.ms", std::to_string(flush_timeout_.count())},
      {"linger.ms", "5"},
  };
  // Idempotence makes the producer's own retries duplicate-free and ordered.
  Settings forced = {{"enable.idempotence", "true"}, {"acks", "all"}};
  const std::string pipeline = config.get_string(kExactlyOnceField);
  if (!pipeline.empty()) {
    std::string id = config.get_string("transactional_id");
    if (id.empty()) id = default_transactional_id(pipeline);
    forced.emplace_back("transactional.id", id);
    transaction_ = Transaction::of(pipeline);
  } else if (const std::string gated = config.get_string(kDeliveryGateField); !gated.empty()) {
    gate_ = DeliveryGate::of(gated);
  }
  ConfPtr conf = build_conf(config, host_, defaults, forced, *this);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &KafkaSink::on_delivery);
  rd_kafka_conf_set_error_cb(conf.get(), &KafkaSink::on_error);

  std::array<char, 64> timeout{};
  size_t timeout_size = timeout.size();
  int64_t message_timeout_ms = flush_timeout_.count();
  if (rd_kafka_conf_get(conf.get(), "message.timeout.ms", timeout.data(), &timeout_size) ==
      RD_KAFKA_CONF_OK)
    message_timeout_ms = std::strtoll(timeout.data(), nullptr, 10);
  report_wait_ = std::chrono::milliseconds(message_timeout_ms) + kReportGrace;

  std::array<char, 512> err{};
  producer_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err.data(), err.size()));
  if (!producer_) throw ConfigError("properties", err.data());
  conf.release();  // rd_kafka_new took it
  reporter_ = std::thread([this] { serve_reports(); });
  if (transaction_) {
    try {
      transaction_->attach(producer_.get(), report_wait_);
    } catch (...) {
      stopping_ = true;
      reporter_.join();
      throw;
    }
    host_.info(fmt::format("kafka sink: exactly-once, transactional.id {}", forced.back().second));
  }
  if (gate_)
    host_.info(
        "kafka sink: put returns once librdkafka has the records; the kafka source commits "
        "their offsets after Kafka acknowledged them");
}

KafkaSink::~KafkaSink() {
  if (joins_transaction_) return;
  if (transaction_) transaction_->detach(producer_.get());
  if (producer_ && !transaction_) {
    const auto left = rd_kafka_flush(producer_.get(), static_cast<int>(flush_timeout_.count()));
    if (left != RD_KAFKA_RESP_ERR_NO_ERROR)
      host_.warn(fmt::format("kafka sink: {} messages not delivered at shutdown",
                             rd_kafka_outq_len(producer_.get())));
  }
  stopping_ = true;
  if (reporter_.joinable()) reporter_.join();
  log_relay().flush_to(host_);
  producer_.reset();  // reports of purged messages arrive here, while batches_ still lives
}

void KafkaSink::serve_reports() {
  while (!stopping_) rd_kafka_poll(producer_.get(), 100);
}

void KafkaSink::on_error(rd_kafka_t* /*rk*/, int err, const char* reason, void* opaque) {
  auto& self = *static_cast<KafkaSink*>(static_cast<HandleContext*>(opaque));
  self.log_relay().push(
      4, fmt::format("kafka producer: {}: {}",
                     rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), reason));
}

void KafkaSink::on_delivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* message, void* opaque) {
  auto& self = *static_cast<KafkaSink*>(static_cast<HandleContext*>(opaque));
  if (is_early(message->_private)) {
    self.gate_->delivered(early_batch(message->_private), message->err == RD_KAFKA_RESP_ERR_NO_ERROR
                                                              ? std::string()
                                                              : delivery_failure(*message));
    return;
  }
  if (is_transactional(message->_private)) {
    // The transaction cannot commit now: it ends (aborts) at once instead of at its size, and
    // the source consumes its input again.
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR && !purged(message->err))
      self.transaction_->mark_failed(transaction_generation(message->_private),
                                     delivery_failure(*message));
    return;
  }
  auto* ticket = static_cast<BatchDelivery::Ticket*>(message->_private);
  if (ticket == nullptr) return;
  std::shared_ptr<BatchDelivery> batch;
  {
    std::lock_guard lock(self.batches_mutex_);
    auto it = self.batches_.find(ticket->batch);
    if (it == self.batches_.end()) return;
    batch = it->second;
  }
  bool release = false;
  {
    std::lock_guard lock(batch->mutex);
    batch->results[ticket->index] = message->err;
    release = --batch->outstanding == 0 && batch->abandoned;
  }
  batch->done.notify_all();
  if (release) {
    std::lock_guard lock(self.batches_mutex_);
    self.batches_.erase(batch.get());
  }
}

rd_kafka_resp_err_t KafkaSink::produce(rd_kafka_t* producer, const RecordView& record,
                                       const std::string& topic, void* opaque) {
  for (;;) {
    HeadersPtr headers;
    if (!record.headers().empty()) {
      headers.reset(rd_kafka_headers_new(record.headers().size()));
      for (const auto& h : record.headers()) {
        const auto name = as_view(h.key);
        rd_kafka_header_add(headers.get(), name.data(), static_cast<ssize_t>(name.size()),
                            h.value.ptr, h.value.ptr ? static_cast<ssize_t>(h.value.len) : 0);
      }
    }
    const auto err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(record.raw().key.ptr, record.raw().key.len),
        RD_KAFKA_V_VALUE(const_cast<uint8_t*>(record.raw().value.ptr), record.raw().value.len),
        RD_KAFKA_V_TIMESTAMP(record.timestamp_ms() > 0 ? record.timestamp_ms() : 0),
        RD_KAFKA_V_HEADERS(headers.get()), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      headers.release();  // the message owns them now
      return err;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return err;
    // The local queue is full: let reports drain it, then try again.
    host_.counter_add("producer_queue_full_waits", 1);
    rd_kafka_poll(producer, 10);
  }
}

void KafkaSink::throw_if_fatal(rd_kafka_t* producer) {
  std::array<char, 512> text{};
  if (const auto err = rd_kafka_fatal_error(producer, text.data(), text.size()))
    throw Fatal(
        fmt::format("fatal Kafka producer error: {}: {}", rd_kafka_err2name(err), text.data()));
}

std::string KafkaSink::topic_of(const RecordView& record) const {
  return topic_.empty() ? std::string(record.topic()) : topic_;
}

rd_kafka_t* KafkaSink::put_producer() const {
  return joins_transaction_ ? transaction_->producer() : producer_.get();
}

void KafkaSink::put(const Batch& in, Output& rejects) {
  log_relay().flush_to(host_);
  if (!joins_transaction_) throw_if_fatal(producer_.get());
  if (in.empty()) return;
  if (transaction_)
    put_transactional(in, rejects);
  else if (gate_ && gate_->may_acknowledge_early())
    put_early(in, rejects);
  else
    put_acknowledged(in, rejects);
}

template <typename Send>
KafkaSink::Refusal KafkaSink::produce_batch(const Batch& in, Output& rejects,
                                            bool (*invalid)(rd_kafka_resp_err_t), Send send) {
  Refusal refusal;
  size_t rejected = 0;
  for (size_t i = 0; i < in.size() && refusal.err == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    const RecordView record = in[i];
    const std::string topic = topic_of(record);
    if (topic.empty()) {
      rejects.reject(i, "kafka sink: record has no topic and the kafka sink sets none");
      ++rejected;
      continue;
    }
    const auto err = send(record, topic);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    if (invalid(err)) {
      rejects.reject(i, "kafka sink: " + error_text(err));
      ++rejected;
      continue;
    }
    refusal = {topic, err};
  }
  host_.counter_add("records_produced", static_cast<double>(in.size() - rejected));
  if (rejected > 0) host_.counter_add("records_rejected", static_cast<double>(rejected));
  return refusal;
}

void KafkaSink::put_transactional(const Batch& in, Output& rejects) {
  const auto lock = transaction_->produce_lock();
  rd_kafka_t* producer = put_producer();
  if (producer == nullptr)
    throw Retriable("kafka sink: the pipeline's kafka sink has not begun its transaction yet");
  void* opaque = transactional_opaque(transaction_->generation());
  const Refusal refusal = produce_batch(in, rejects, &record_invalid,
                                        [&](const RecordView& record, const std::string& topic) {
                                          return produce(producer, record, topic, opaque);
                                        });
  if (refusal.err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
  throw_if_fatal(producer);
  // "Erroneous state": an earlier record of the transaction failed, and librdkafka refuses more
  // before its delivery report (which names the broker's reason) was served. Serve the reports
  // for up to a second so the abort names that reason rather than the refusal it caused.
  if (refusal.err == RD_KAFKA_RESP_ERR__STATE) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!transaction_->failed() && std::chrono::steady_clock::now() < deadline)
      rd_kafka_poll(producer, 10);
  }
  // Not in the transaction: it aborts at its end and the source consumes this input again.
  transaction_->mark_failed(
      fmt::format("producing to {} failed: {}", refusal.topic, error_text(refusal.err)));
}

void KafkaSink::put_early(const Batch& in, Output& rejects) {
  const uint64_t batch = gate_->begin();
  const Refusal refusal = produce_batch(
      in, rejects, &delivery_permanent, [&](const RecordView& record, const std::string& topic) {
        gate_->expect(batch);
        const auto err = produce(producer_.get(), record, topic, early_opaque(batch));
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) gate_->withdraw(batch);  // it gets no report
        return err;
      });
  gate_->seal(batch);
  if (refusal.err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
  throw_if_fatal(producer_.get());
  // The host retries the whole batch; what was queued of it is delivered twice at worst.
  throw Retriable(fmt::format("kafka sink: producing to {} failed: {}", refusal.topic,
                              error_text(refusal.err)));
}

void KafkaSink::put_acknowledged(const Batch& in, Output& rejects) {
  auto batch = std::make_shared<BatchDelivery>();
  batch->tickets.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) batch->tickets.push_back({batch.get(), i});
  batch->results.assign(in.size(), RD_KAFKA_RESP_ERR_NO_ERROR);
  batch->outstanding = in.size();
  {
    std::lock_guard lock(batches_mutex_);
    batches_.emplace(batch.get(), batch);
  }

  // Records refused before they were queued get no report.
  std::vector<std::pair<size_t, std::string>> refused;
  for (size_t i = 0; i < in.size(); ++i) {
    const RecordView record = in[i];
    const std::string topic = topic_of(record);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (topic.empty()) {
      refused.emplace_back(i, "record has no topic and the kafka sink sets none");
    } else {
      err = produce(producer_.get(), record, topic, &batch->tickets[i]);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) refused.emplace_back(i, error_text(err));
    }
    if (!refused.empty() && refused.back().first == i) {
      std::lock_guard lock(batch->mutex);
      batch->results[i] = err == RD_KAFKA_RESP_ERR_NO_ERROR ? RD_KAFKA_RESP_ERR__INVALID_ARG : err;
      --batch->outstanding;
    }
  }

  bool complete = false;
  {
    std::unique_lock lock(batch->mutex);
    complete = batch->done.wait_for(lock, report_wait_, [&] { return batch->outstanding == 0; });
    if (!complete) batch->abandoned = true;
  }
  if (complete) {
    std::lock_guard lock(batches_mutex_);
    batches_.erase(batch.get());
  }
  log_relay().flush_to(host_);
  throw_if_fatal(producer_.get());
  if (!complete)
    throw Retriable(fmt::format("kafka sink: {} of {} records not acknowledged within {} ms",
                                batch->outstanding, in.size(), report_wait_.count()));

  // Reports are all in: results no longer change.
  size_t retriable = 0;
  rd_kafka_resp_err_t first_retriable = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (size_t i = 0; i < in.size(); ++i) {
    const auto err = batch->results[i];
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && !delivery_permanent(err)) {
      if (retriable++ == 0) first_retriable = err;
    }
  }
  if (retriable > 0) {
    // The idempotent producer makes a retry of the whole batch safe for what was delivered.
    host_.counter_add("delivery_failures", static_cast<double>(retriable));
    throw Retriable(fmt::format("kafka sink: {} of {} records failed: {}", retriable, in.size(),
                                error_text(first_retriable)));
  }
  size_t rejected = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const auto err = batch->results[i];
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    std::string reason = error_text(err);
    for (const auto& [index, text] : refused)
      if (index == i) reason = text;
    rejects.reject(i, "kafka sink: " + reason);
    ++rejected;
  }
  host_.counter_add("records_produced", static_cast<double>(in.size() - rejected));
  if (rejected > 0) host_.counter_add("records_rejected", static_cast<double>(rejected));
}

void KafkaSink::pre_commit() {
  // The host's last commit follows: the source ends the transaction there if all is done.
  if (transaction_) transaction_->request_final_commit();
}

void KafkaSink::flush() {
  // A dead-letter sink in the transaction has nothing of its own: the commit flushes.
  if (joins_transaction_) return;
  const auto err = rd_kafka_flush(producer_.get(), static_cast<int>(report_wait_.count()));
  log_relay().flush_to(host_);
  throw_if_fatal(producer_.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw Retriable(fmt::format("kafka sink: {} messages still unacknowledged after {} ms",
                                rd_kafka_outq_len(producer_.get()), report_wait_.count()));
  // The source commits nothing past a failed early delivery; the run must not end as a success.
  if (gate_) {
    if (const std::string failure = gate_->standing().failure; !failure.empty())
      throw Retriable("kafka sink: a delivery failed after its batch was acknowledged: " + failure);
  }
}

}  // namespace sluice::kafka
