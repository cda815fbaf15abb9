// The `kafka` source: consumer-group polling, pause/resume, cooperative rebalances, commits.
#include "kafka_source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace sluice::kafka {

namespace {

// Beyond this many stashed messages (or bytes) the source pauses its assignment, so a long
// stall of the host cannot make the stash grow without bound. Pausing is kept for long stalls
// only: librdkafka drops a paused partition's prefetched messages and fetches them again on
// resume, so pausing on every short backpressure blip costs most of the throughput.
constexpr size_t kStashLimit = 1000;
constexpr size_t kStashBytesLimit = 16u << 20;
// Exactly-once: a transaction whose input ran dry ends once it is this fraction of its target
// (or interval) old, so at most this many commits per target while input trickles.
constexpr int kDryCommitDivisor = 10;
// How often a paused source serves the group, as a part of max.poll.interval.ms, and bounds.
constexpr int64_t kServeGroupDivisor = 10;
constexpr std::chrono::milliseconds kServeGroupMin{10};
constexpr std::chrono::milliseconds kServeGroupMax{500};
constexpr int kCommitAttempts = 5;
constexpr std::chrono::milliseconds kCommitBackoff{100};

bool commit_retriable(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return true;
    default:
      return false;
  }
}

// Milliseconds left until `deadline`; -1 once it passed.
int ms_until(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? -1 : static_cast<int>(left.count());
}

std::string describe(const rd_kafka_topic_partition_list_t* partitions) {
  std::string s;
  for (int i = 0; i < partitions->cnt; ++i) {
    if (!s.empty()) s += ", ";
    s += fmt::format("{}[{}]", partitions->elems[i].topic, partitions->elems[i].partition);
  }
  return s;
}

// librdkafka prefetches up to queued.max.messages.kbytes (64 MB by default) and reads fetch
// responses of up to fetch.max.bytes (50 MB) beside it, all outside the records the runtime counts
// against the pipeline's memory limit: with large records and a slow sink that alone went past a
// 64 MB limit (123 MB of RSS). Unless the user sets them, they get an eighth and a sixteenth of the
// limit, never under 1 MB and 2 MB; a limit large enough for librdkafka's defaults (from 512 MB
// and 800 MB) leaves them as they are.
Settings prefetch_bounds(uint64_t memory_limit) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  constexpr uint64_t kDefaultQueue = 64 * kMiB, kDefaultFetch = 50 * kMiB;
  Settings bounds;
  if (memory_limit == 0) return bounds;
  if (const uint64_t queue = std::max(memory_limit / 8, kMiB); queue < kDefaultQueue)
    bounds.emplace_back("queued.max.messages.kbytes", std::to_string(queue / 1024));
  if (const uint64_t fetch = std::max(memory_limit / 16, 2 * kMiB); fetch < kDefaultFetch)
    bounds.emplace_back("fetch.max.bytes", std::to_string(fetch));
  return bounds;
}

}  // namespace

ConfigSchema KafkaSource::schema() {
  ConfigSchema s;
  s.string("bootstrap_servers").required().doc("Kafka bootstrap servers, host:port[,host:port]");
  s.string("group_id").required().doc("Consumer group id; processes with the same id share work");
  s.list("topics").doc("Topics to consume (or topic_regex)");
  s.string("topic_regex").doc("Regular expression of topics to consume (or topics)");
  s.string("auto_offset_reset")
      .default_value("earliest")
      .one_of({"earliest", "latest"})
      .doc("Where a group without a committed offset starts");
  s.object("properties").doc("librdkafka consumer properties, passed through");
  s.integer("connect_timeout_ms")
      .default_value(10000)
      .min(1)
      .doc("Fail when no broker answered within this time after start");
  s.integer("drain_timeout_ms")
      .default_value(30000)
      .min(0)
      .doc("How long a revoke waits for the partition's records to finish");
  s.boolean("allow_auto_create")
      .default_value(false)
      .doc("Let the broker create missing topics instead of failing");
  s.integer("transaction_target_ms")
      .default_value(1000)
      .min(1)
      .doc(
          "With delivery: exactly_once, the commit interval transactions are sized toward: the "
          "number of records per transaction adapts so each lasts about this long (longer: "
          "fewer commits and pipeline drains; shorter: output visible sooner); a transaction "
          "whose input ran dry ends once a tenth of this old");
  s.integer("transaction_interval_ms")
      .min(1)
      .doc(
          "With delivery: exactly_once, a fixed time each transaction stays open instead of the "
          "adaptive size (transaction_target_ms)");
  add_exactly_once_field(s);
  add_delivery_gate_field(s);
  s.validator([](const Config& c) {
    const bool has_topics = !c.get_strings("topics").empty();
    const bool has_regex = !c.get_string("topic_regex").empty();
    if (has_topics == has_regex)
      throw ConfigError(has_topics ? "topic_regex" : "topics",
                        "give exactly one of `topics` and `topic_regex`");
  });
  return s;
}

KafkaSource::KafkaSource(const Config& config, Host& host)
    : host_(host),
      bootstrap_servers_(config.get_string("bootstrap_servers")),
      topics_(config.get_strings("topics")),
      topic_regex_(config.get_string("topic_regex")),
      allow_auto_create_(config.get_bool("allow_auto_create", false)),
      connect_timeout_(config.get_int("connect_timeout_ms", 10000)),
      drain_timeout_ms_(static_cast<uint32_t>(config.get_int("drain_timeout_ms", 30000))),
      auto_offset_reset_(config.get_string("auto_offset_reset", "earliest")),
      transaction_interval_(config.get_int("transaction_interval_ms", 0)) {
  if (bootstrap_servers_.empty())
    throw ConfigError("bootstrap_servers", "bootstrap_servers is required");
  const std::string group_id = config.get_string("group_id");
  if (group_id.empty()) throw ConfigError("group_id", "group_id is required");
  if (topics_.empty() == topic_regex_.empty())
    throw ConfigError("topics", "give exactly one of `topics` and `topic_regex`");

  Settings defaults = prefetch_bounds(host_.memory_limit());
  for (const auto& [key, value] : defaults)
    if (!has_property(config, key.c_str()))
      host_.info(fmt::format("kafka source: {} = {} (from the pipeline's memory limit of {} MB)",
                             key, value, host_.memory_limit() >> 20));
  defaults.emplace_back("enable.partition.eof", "false");
  Settings forced = {
      {"group.id", group_id},
      {"auto.offset.reset", auto_offset_reset_},
      // Offsets move only through commit(): the host knows what is done, librdkafka does not.
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"allow.auto.create.topics", allow_auto_create_ ? "true" : "false"},
  };
  const std::string pipeline = config.get_string(kExactlyOnceField);
  if (!pipeline.empty()) {
    transaction_ = Transaction::of(pipeline);
    // An exactly-once pipeline reads only committed input (the output of another one).
    forced.emplace_back("isolation.level", "read_committed");
    // End-of-partition events tell when the input ran dry: the open transaction ends then.
    forced.emplace_back("enable.partition.eof", "true");
    set_up_transaction_sizing(config);
  } else if (const std::string gated = config.get_string(kDeliveryGateField); !gated.empty()) {
    gate_ = DeliveryGate::of(gated);
    gate_->attach_source();
  }
  ConfPtr conf = build_conf(config, host_, defaults, forced, *this);
  std::array<char, 64> max_poll{};
  size_t max_poll_size = max_poll.size();
  if (rd_kafka_conf_get(conf.get(), "max.poll.interval.ms", max_poll.data(), &max_poll_size) ==
      RD_KAFKA_CONF_OK)
    serve_group_every_ = std::clamp(
        std::chrono::milliseconds(std::strtoll(max_poll.data(), nullptr, 10) / kServeGroupDivisor),
        kServeGroupMin, kServeGroupMax);
  rd_kafka_conf_set_rebalance_cb(conf.get(), &KafkaSource::on_rebalance);
  rd_kafka_conf_set_error_cb(conf.get(), &KafkaSource::on_error);

  std::array<char, 512> err{};
  consumer_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err.data(), err.size()));
  if (!consumer_) throw ConfigError("properties", err.data());
  conf.release();  // rd_kafka_new took it
  rd_kafka_poll_set_consumer(consumer_.get());

  PartitionListPtr subscription(
      rd_kafka_topic_partition_list_new(static_cast<int>(std::max<size_t>(topics_.size(), 1))));
  if (topic_regex_.empty()) {
    for (const auto& t : topics_)
      rd_kafka_topic_partition_list_add(subscription.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  } else {
    // librdkafka treats a subscription starting with '^' as a regular expression.
    const std::string regex = topic_regex_.front() == '^' ? topic_regex_ : "^" + topic_regex_;
    rd_kafka_topic_partition_list_add(subscription.get(), regex.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (auto e = rd_kafka_subscribe(consumer_.get(), subscription.get()))
    throw ConfigError(topic_regex_.empty() ? "topics" : "topic_regex",
                      "cannot subscribe: " + error_text(e));
  host_.info(fmt::format("kafka source: group {} subscribed to {}", group_id,
                         topic_regex_.empty() ? fmt::format("{}", fmt::join(topics_, ", "))
                                              : "/" + topic_regex_ + "/"));
}

KafkaSource::~KafkaSource() {
  if (transaction_) log_transaction_totals();
  if (gate_) {
    // The host flushed the sink and made its last commit before destroying us.
    try {
      settle_held();
    } catch (const std::exception& e) {
      host_.warn(fmt::format("kafka source: last commit failed: {}", e.what()));
    }
    gate_->detach_source();
  }
  // The host drained and committed before destroying us: a revoke during close only unassigns.
  closing_ = true;
  if (consumer_) {
    rd_kafka_consumer_close(consumer_.get());
    stash_.clear();
    stash_bytes_ = 0;
    consumer_.reset();
  }
}

void KafkaSource::on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto& self = *static_cast<KafkaSource*>(static_cast<HandleContext*>(opaque));
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    std::array<char, 512> text{};
    const auto fatal = rd_kafka_fatal_error(rk, text.data(), text.size());
    self.pending_fatal_ =
        fmt::format("fatal Kafka consumer error: {}: {}", rd_kafka_err2name(fatal), text.data());
    return;
  }
  // Transport errors are normal while a broker restarts; librdkafka reconnects by itself.
  self.log_relay().push(4, fmt::format("kafka consumer: {}: {}", rd_kafka_err2name(code), reason));
}

void KafkaSource::on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  auto& self = *static_cast<KafkaSource*>(static_cast<HandleContext*>(opaque));
  // No exception may unwind through librdkafka's C frames.
  try {
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self.assign(partitions);
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      self.revoke(partitions);
      return;
    }
  } catch (const std::exception& e) {
    self.pending_fatal_ = fmt::format("kafka source: rebalance failed: {}", e.what());
    return;
  }
  self.host_.error(fmt::format("kafka source: rebalance failed: {}", error_text(err)));
  if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0)
    ErrorPtr(rd_kafka_incremental_unassign(rk, partitions));
  else
    rd_kafka_assign(rk, nullptr);
  self.assigned_.clear();
  self.at_end_.clear();
  self.stash_.clear();
  self.stash_bytes_ = 0;
}

void KafkaSource::assign(rd_kafka_topic_partition_list_t* partitions) {
  rd_kafka_t* rk = consumer_.get();
  if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0) {
    if (ErrorPtr e{rd_kafka_incremental_assign(rk, partitions)})
      host_.error(fmt::format("kafka source: assign failed: {}", rd_kafka_error_string(e.get())));
  } else {
    rd_kafka_assign(rk, partitions);
  }
  for (int i = 0; i < partitions->cnt; ++i)
    assigned_.try_emplace({partitions->elems[i].topic, partitions->elems[i].partition}, -1);
  // A pause holds across rebalances: new partitions start paused too.
  if (paused_) pause_partitions(partitions, true);
  host_.info(fmt::format("kafka source: assigned {}", describe(partitions)));
}

void KafkaSource::revoke(rd_kafka_topic_partition_list_t* partitions) {
  rd_kafka_t* rk = consumer_.get();
  if (transaction_ && !closing_) {
    // The transaction holds records of every partition: it ends here, while the group
    // metadata still names us as the owner of the revoked ones.
    if (drain_everything())
      end_transaction();
    else
      transaction_->mark_failed(
          fmt::format("revoked {} before every record was done", describe(partitions)));
  } else if (!closing_) {
    // Finish and commit what was taken from these partitions while they are still ours;
    // after unassign the next owner starts from the committed offsets.
    std::vector<sluice_position> positions;
    positions.reserve(static_cast<size_t>(partitions->cnt));
    for (int i = 0; i < partitions->cnt; ++i) {
      const auto& p = partitions->elems[i];
      auto it = assigned_.find({p.topic, p.partition});
      sluice_position pos{};
      pos.struct_size = sizeof(pos);
      pos.topic = as_bytes(std::string_view(p.topic));
      pos.partition = p.partition;
      pos.offset = it == assigned_.end() ? -1 : it->second;
      positions.push_back(pos);
    }
    if (!host_.drain(positions, drain_timeout_ms_))
      host_.warn(fmt::format(
          "kafka source: revoked {} before every record was done; the rest will be redelivered",
          describe(partitions)));
    else if (gate_)
      settle_held();
  }
  // Stashed messages of revoked partitions were never handed on, so never committed: the new
  // owner gets them again.
  std::erase_if(stash_, [&](const MessagePtr& m) {
    const char* topic = rd_kafka_topic_name(m->rkt);
    for (int i = 0; i < partitions->cnt; ++i)
      if (partitions->elems[i].partition == m->partition &&
          strcmp(partitions->elems[i].topic, topic) == 0)
        return true;
    return false;
  });
  stash_bytes_ = 0;
  for (const auto& m : stash_) stash_bytes_ += m->len + m->key_len;
  for (int i = 0; i < partitions->cnt; ++i) {
    assigned_.erase({partitions->elems[i].topic, partitions->elems[i].partition});
    at_end_.erase({partitions->elems[i].topic, partitions->elems[i].partition});
    uncommitted_.erase({partitions->elems[i].topic, partitions->elems[i].partition});
  }

  if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0) {
    if (ErrorPtr e{rd_kafka_incremental_unassign(rk, partitions)})
      host_.error(fmt::format("kafka source: unassign failed: {}", rd_kafka_error_string(e.get())));
  } else {
    rd_kafka_assign(rk, nullptr);
    assigned_.clear();
    at_end_.clear();
  }
  host_.info(fmt::format("kafka source: revoked {}", describe(partitions)));
}

void KafkaSource::check_topics_exist() {
  if (allow_auto_create_ || !topic_regex_.empty()) return;
  const rd_kafka_metadata_t* raw = nullptr;
  if (rd_kafka_metadata(consumer_.get(), 1, nullptr, &raw, 500) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return;  // asked again on the next poll
  MetadataPtr md(raw);
  reached_cluster_ = true;
  for (const auto& topic : topics_) {
    bool found = false;
    for (int i = 0; i < md->topic_cnt && !found; ++i)
      found = md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && topic == md->topics[i].topic;
    if (!found)
      throw Fatal(
          fmt::format("Kafka topic '{}' does not exist at {} (create it, or set "
                      "allow_auto_create)",
                      topic, bootstrap_servers_));
  }
}

void KafkaSource::check_health() {
  if (!pending_fatal_.empty()) throw Fatal(pending_fatal_);
  if (reached_cluster_) return;
  if (allow_auto_create_ || !topic_regex_.empty()) {
    const rd_kafka_metadata_t* raw = nullptr;
    if (rd_kafka_metadata(consumer_.get(), 0, nullptr, &raw, 200) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      MetadataPtr md(raw);
      reached_cluster_ = true;
    }
  } else {
    check_topics_exist();
  }
  if (!reached_cluster_ && Clock::now() - created_at_ >= connect_timeout_)
    throw Fatal(fmt::format("cannot reach Kafka at {} within {} ms", bootstrap_servers_,
                            connect_timeout_.count()));
}

bool KafkaSource::accept(MessagePtr message, std::deque<MessagePtr>& into) {
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (!at_end_.empty()) at_end_.erase({rd_kafka_topic_name(message->rkt), message->partition});
    into.push_back(std::move(message));
    return true;
  }
  const auto err = message->err;
  if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    // Only exactly-once asks for these (enable.partition.eof): they tell when input ran dry.
    PartitionKey key{rd_kafka_topic_name(message->rkt), message->partition};
    if (assigned_.contains(key)) at_end_.insert(std::move(key));
    return false;
  }
  const char* topic = message->rkt ? rd_kafka_topic_name(message->rkt) : "";
  if ((err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) &&
      !allow_auto_create_ && topic_regex_.empty())
    throw Fatal(fmt::format("Kafka topic '{}' does not exist at {}: {}", topic, bootstrap_servers_,
                            rd_kafka_message_errstr(message.get())));
  if (err == RD_KAFKA_RESP_ERR__FATAL || rd_kafka_fatal_error(consumer_.get(), nullptr, 0))
    throw Fatal(
        fmt::format("fatal Kafka consumer error: {}", rd_kafka_message_errstr(message.get())));
  host_.warn(fmt::format("kafka source: {} {}: {}", topic, rd_kafka_err2name(err),
                         rd_kafka_message_errstr(message.get())));
  return false;
}

void KafkaSource::emit(Output& out, const rd_kafka_message_t& m) {
  OutRecord r;
  if (m.key) r.key = std::string_view(static_cast<const char*>(m.key), m.key_len);
  if (m.payload) r.value = std::string_view(static_cast<const char*>(m.payload), m.len);
  r.topic = rd_kafka_topic_name(m.rkt);
  r.partition = m.partition;
  r.offset = m.offset;
  rd_kafka_timestamp_type_t ts_type;
  const int64_t ts = rd_kafka_message_timestamp(&m, &ts_type);
  r.timestamp_ms = ts_type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? 0 : ts;
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
    const char* name;
    const void* value;
    size_t len;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &len) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i)
      r.headers.emplace_back(name, value ? std::string_view(static_cast<const char*>(value), len)
                                         : std::string_view());
  }
  out.emit(r);
  auto it = assigned_.find({std::string(r.topic), m.partition});
  if (it != assigned_.end()) it->second = std::max(it->second, m.offset);
  if (transaction_) {
    if (uncommitted_.empty()) transaction_began_ = Clock::now();
    uncommitted_[{std::string(r.topic), m.partition}] = m.offset;
    ++transaction_records_;
  }
}

bool KafkaSource::poll(Output& out, size_t max_records, uint32_t timeout_ms) {
  log_relay().flush_to(host_);
  check_health();
  // A drain that did not end: nothing more goes into the open transaction now (at a stop the
  // host's loop ends, and the final commit commits it only if all it holds got done).
  if (transaction_ && !end_transaction_if_due()) {
    log_relay().flush_to(host_);
    return false;
  }
  if (gate_) {
    recover_from_failed_delivery();
    commit_confirmed();
  }

  if (max_records == 0) {
    serve_group_while_paused();
    log_relay().flush_to(host_);
    return false;
  }
  if (transaction_)
    poll_transactional(out, max_records, timeout_ms);
  else
    poll_records(out, max_records, timeout_ms);
  log_relay().flush_to(host_);
  return false;
}

size_t KafkaSource::emit_stashed(Output& out, size_t max_records) {
  size_t emitted = 0;
  // out.full(): the poll's byte budget is used up; what is left stays in the stash (bounded).
  while (emitted < max_records && !out.full() && !stash_.empty()) {
    MessagePtr m = stash_pop();
    emit(out, *m);
    ++emitted;
  }
  apply_pause();
  return emitted;
}

void KafkaSource::poll_records(Output& out, size_t max_records, uint32_t timeout_ms) {
  size_t emitted = emit_stashed(out, max_records);
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::deque<MessagePtr> fresh;
  while (emitted < max_records && !out.full()) {
    // Wait only until the first record; after that take what is already there.
    const int wait_ms = emitted == 0 ? ms_until(deadline) : 0;
    if (wait_ms < 0) break;
    MessagePtr m = consumer_poll(wait_ms);
    if (!m) {
      if (emitted > 0 || Clock::now() >= deadline) break;
      continue;
    }
    if (accept(std::move(m), fresh)) {
      emit(out, *fresh.back());
      fresh.clear();
      ++emitted;
    }
  }
}

void KafkaSource::poll_transactional(Output& out, size_t max_records, uint32_t timeout_ms) {
  // Every consumer call first, every emit after: a revoke (inside consumer_poll) ends the
  // transaction with the offsets of what the host has taken, so nothing may be handed on in
  // this poll before it. Messages go through the stash, which a revoke or rewind purges.
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::deque<MessagePtr> fresh;
  while (stash_.size() < max_records && stash_bytes_ < kStashBytesLimit) {
    const int wait_ms = stash_.empty() ? ms_until(deadline) : 0;
    if (wait_ms < 0) break;
    MessagePtr m = consumer_poll(wait_ms);
    if (!m) {
      if (!stash_.empty() || Clock::now() >= deadline) break;
      continue;
    }
    if (accept(std::move(m), fresh)) {
      stash_push(std::move(fresh.back()));
      fresh.clear();
    }
  }
  // Every assigned partition read to its end and nothing left to hand on: the input ran dry.
  input_dry_ = stash_.empty() && !at_end_.empty() && at_end_.size() == assigned_.size();
  emit_stashed(out, max_records);
}

MessagePtr KafkaSource::consumer_poll(int timeout_ms) {
  MessagePtr m(rd_kafka_consumer_poll(consumer_.get(), timeout_ms));
  last_consumer_poll_ = Clock::now();
  return m;
}

void KafkaSource::serve_group_while_paused() {
  // librdkafka heartbeats on its own threads; only rebalances and max.poll.interval.ms need our
  // poll calls, and neither needs one more often than this.
  if (Clock::now() - last_consumer_poll_ < serve_group_every_) return;
  apply_pause();
  std::deque<MessagePtr> fresh;
  do {
    MessagePtr m = consumer_poll(0);
    if (!m) break;
    if (accept(std::move(m), fresh)) {
      stash_push(std::move(fresh.back()));
      fresh.clear();
    }
  } while (!paused_ && stash_.size() < kStashLimit && stash_bytes_ < kStashBytesLimit);
  apply_pause();
}

void KafkaSource::stash_push(MessagePtr message) {
  stash_bytes_ += message->len + message->key_len;
  stash_.push_back(std::move(message));
}

MessagePtr KafkaSource::stash_pop() {
  MessagePtr m = std::move(stash_.front());
  stash_.pop_front();
  stash_bytes_ -= m->len + m->key_len;
  return m;
}

bool KafkaSource::is_assigned(const std::string& topic, int32_t partition) const {
  return assigned_.contains({topic, partition});
}

void KafkaSource::commit(std::span<const Position> positions) {
  if (transaction_) {
    // Offsets are committed inside the transaction, never here; the positions only tell
    // whether everything handed on is done, which the last commit of a run waits for.
    for (const auto& p : positions) acked_[{std::string(p.topic), p.partition}] = p.offset;
    if (!in_drain_ && transaction_->final_commit_requested() && !uncommitted_.empty() &&
        all_acked())
      end_transaction();
    return;
  }
  if (gate_) {
    hold(positions);
    commit_confirmed();
    return;
  }
  std::map<PartitionKey, int64_t> done;
  for (const auto& p : positions) done[{std::string(p.topic), p.partition}] = p.offset;
  commit_offsets(done);
}

void KafkaSource::commit_offsets(const std::map<PartitionKey, int64_t>& done) {
  PartitionListPtr offsets(rd_kafka_topic_partition_list_new(static_cast<int>(done.size())));
  for (const auto& [key, offset] : done) {
    const auto& [topic, partition] = key;
    // A partition that is no longer ours may already be consumed further by its new owner:
    // committing our older offset there would rewind it.
    if (!is_assigned(topic, partition)) {
      host_.log(
          Host::Level::debug,
          fmt::format("kafka source: not committing {}[{}]: no longer assigned", topic, partition));
      continue;
    }
    if (offset < 0) continue;
    rd_kafka_topic_partition_list_add(offsets.get(), topic.c_str(), partition)->offset = offset + 1;
  }
  if (offsets->cnt == 0) return;

  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int attempt = 1; attempt <= kCommitAttempts; ++attempt) {
    err = rd_kafka_commit(consumer_.get(), offsets.get(), 0);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      // The request may succeed while single partitions fail.
      for (int i = 0; i < offsets->cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
        err = offsets->elems[i].err;
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
      if (attempt > 1)
        host_.info(fmt::format("kafka source: commit succeeded on attempt {}", attempt));
      return;
    }
    if (!commit_retriable(err)) break;
    host_.warn(fmt::format("kafka source: commit of {} failed (attempt {}/{}): {}",
                           describe(offsets.get()), attempt, kCommitAttempts, error_text(err)));
    for (int i = 0; i < offsets->cnt; ++i) offsets->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (attempt < kCommitAttempts) std::this_thread::sleep_for(kCommitBackoff * attempt);
  }
  const std::string message = fmt::format("kafka source: commit of {} failed: {}",
                                          describe(offsets.get()), error_text(err));
  host_.error(message);
  if (commit_retriable(err)) throw Retriable(message);
  throw std::runtime_error(message);
}

void KafkaSource::hold(std::span<const Position> positions) {
  if (discard_positions_) return;
  // Every record in `positions` is done, so its put returned: it is in a batch begun by now.
  const uint64_t batch = gate_->standing().issued;
  if (held_.empty() || held_.back().batch != batch) held_.push_back({batch, {}});
  for (const auto& p : positions)
    held_.back().offsets[{std::string(p.topic), p.partition}] = p.offset;
}

void KafkaSource::commit_confirmed() {
  if (held_.empty()) return;
  const DeliveryGate::Standing standing = gate_->standing();
  if (!standing.failure.empty()) return;  // the next poll recovers
  std::map<PartitionKey, int64_t> done;
  while (!held_.empty() && held_.front().batch <= standing.confirmed) {
    for (const auto& [key, offset] : held_.front().offsets) done[key] = offset;
    held_.pop_front();
  }
  if (!done.empty()) commit_offsets(done);
}

void KafkaSource::settle_held() {
  if (held_.empty()) return;
  if (!gate_->wait_confirmed(held_.back().batch, std::chrono::milliseconds(drain_timeout_ms_)))
    host_.warn(
        "kafka source: deliveries still unconfirmed after drain_timeout_ms; their "
        "offsets stay uncommitted (the records will be consumed again)");
  commit_confirmed();
}

void KafkaSource::recover_from_failed_delivery() {
  const std::string failure = gate_->standing().failure;
  if (failure.empty()) return;
  host_.warn(fmt::format(
      "kafka source: a delivery failed after its batch was acknowledged ({}): committing "
      "nothing past it; draining, then consuming again from the committed offsets (the kafka "
      "sink waits for Kafka's acknowledgement in put from now on)",
      failure));
  discard_positions_ = true;
  const bool drained = drain_everything();
  const bool settled =
      drained &&
      gate_->wait_confirmed(gate_->standing().issued, std::chrono::milliseconds(drain_timeout_ms_));
  discard_positions_ = false;
  if (!settled)
    throw Fatal(fmt::format(
        "kafka source: a delivery failed ({}) and the records in flight did not finish within "
        "drain_timeout_ms; stopping without committing them, a restart resumes from the "
        "committed offsets",
        failure));
  held_.clear();
  gate_->reset_failure();
  host_.counter_add("delivery_rewinds", 1);
  rewind();
}

void KafkaSource::pause_partitions(rd_kafka_topic_partition_list_t* partitions, bool paused) {
  const auto err = paused ? rd_kafka_pause_partitions(consumer_.get(), partitions)
                          : rd_kafka_resume_partitions(consumer_.get(), partitions);
  if (err)
    host_.warn(
        fmt::format("kafka source: {} failed: {}", paused ? "pause" : "resume", error_text(err)));
}

void KafkaSource::apply_pause() {
  const bool want = stash_.size() >= kStashLimit || stash_bytes_ >= kStashBytesLimit;
  if (want == paused_) return;
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (rd_kafka_assignment(consumer_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  PartitionListPtr assignment(raw);
  pause_partitions(assignment.get(), want);
  paused_ = want;
}

void KafkaSource::set_paused(bool /*paused*/) {
  // Nothing to do at once: a paused host polls with max_records == 0, and the source pauses
  // the assignment itself only when a long stall fills the stash (see kStashLimit).
}

// ---------------------------------------------------------------------------------------------
// Exactly-once.

void KafkaSource::set_up_transaction_sizing(const Config& config) {
  if (transaction_interval_.count() > 0) {
    host_.gauge_set("transaction_interval_ms", static_cast<double>(transaction_interval_.count()));
    return;
  }
  sizer_.emplace(std::chrono::milliseconds(config.get_int("transaction_target_ms", 1000)));
  host_.gauge_set("transaction_target_ms", static_cast<double>(sizer_->target().count()));
  host_.gauge_set("transaction_size_target", static_cast<double>(sizer_->size()));
}

bool KafkaSource::transaction_due() const {
  const auto age = Clock::now() - transaction_began_;
  return sizer_ ? sizer_->due(transaction_records_, age) : age >= transaction_interval_;
}

bool KafkaSource::transaction_idle() const {
  // A floor on the age keeps a trickle of input from committing at every record.
  const auto interval = sizer_ ? sizer_->target() : transaction_interval_;
  return input_dry_ && Clock::now() - transaction_began_ >= interval / kDryCommitDivisor;
}

bool KafkaSource::end_transaction_if_due() {
  if (uncommitted_.empty()) return true;
  const bool due = transaction_->failed() || transaction_due();
  // With no input coming, holding the transaction open only delays its output: it ends now.
  // Its size says nothing about the rate, so the sizer does not learn from it.
  if (!due && !transaction_idle()) return true;
  const auto drain_began = Clock::now();
  const bool drained = drain_everything();
  last_drain_ = Clock::now() - drain_began;
  if (!drained) {
    host_.warn(
        "kafka source: records still in flight after drain_timeout_ms (or the pipeline "
        "failed or is stopping); the transaction is not committed now");
    return false;
  }
  end_transaction(/*input_dry=*/!due);
  return true;
}

bool KafkaSource::drain_everything() {
  std::vector<sluice_position> positions;
  positions.reserve(assigned_.size());
  for (const auto& [key, offset] : assigned_) {
    sluice_position pos{};
    pos.struct_size = sizeof(pos);
    pos.topic = as_bytes(std::string_view(key.first));
    pos.partition = key.second;
    pos.offset = offset;
    positions.push_back(pos);
  }
  in_drain_ = true;
  const bool drained = host_.drain(positions, drain_timeout_ms_);
  in_drain_ = false;
  return drained;
}

bool KafkaSource::all_acked() const {
  for (const auto& [key, offset] : uncommitted_) {
    auto it = acked_.find(key);
    if (it == acked_.end() || it->second != offset) return false;
  }
  return true;
}

void KafkaSource::end_transaction(bool input_dry) {
  PartitionListPtr offsets(
      rd_kafka_topic_partition_list_new(static_cast<int>(uncommitted_.size())));
  for (const auto& [key, offset] : uncommitted_)
    if (is_assigned(key.first, key.second))
      rd_kafka_topic_partition_list_add(offsets.get(), key.first.c_str(), key.second)->offset =
          offset + 1;
  const auto started = Clock::now();
  const bool committed = transaction_->commit(offsets.get(), consumer_.get(), host_);
  const auto done = Clock::now();
  if (committed && sizer_ && !input_dry) {
    sizer_->committed(transaction_records_, done - transaction_began_);
    host_.gauge_set("transaction_size_target", static_cast<double>(sizer_->size()));
  }
  publish_transaction_stats(started - transaction_began_, done - started, committed, input_dry);
  last_drain_ = {};  // measured again by the next end_transaction_if_due (not on a revoke)
  uncommitted_.clear();
  acked_.clear();
  transaction_records_ = 0;
  if (!committed) rewind();
}

void KafkaSource::publish_transaction_stats(Clock::duration age, Clock::duration commit_time,
                                            bool committed, bool input_dry) {
  using Ms = std::chrono::duration<double, std::milli>;
  host_.counter_add(committed ? "transactions_committed" : "transactions_aborted", 1);
  ++(committed ? totals_.committed : totals_.aborted);
  if (!committed) return;
  host_.log(Host::Level::debug,
            fmt::format("kafka source: transaction committed: {} records, open {:.0f} ms (the "
                        "drain before its end {:.0f} ms), commit {:.0f} ms{}",
                        transaction_records_, Ms(age).count(), Ms(last_drain_).count(),
                        Ms(commit_time).count(), input_dry ? "; ended as the input ran dry" : ""));
  totals_.records += transaction_records_;
  totals_.age += age;
  host_.gauge_set("transaction_records", static_cast<double>(transaction_records_));
  host_.gauge_set("transaction_age_ms", Ms(age).count());
  host_.gauge_set("transaction_commit_ms", Ms(commit_time).count());
  host_.gauge_set("transaction_drain_ms", Ms(last_drain_).count());
}

void KafkaSource::log_transaction_totals() {
  using Ms = std::chrono::duration<double, std::milli>;
  const double n = static_cast<double>(std::max<size_t>(totals_.committed, 1));
  const std::string sizing =
      sizer_ ? fmt::format(
                   "sized toward transaction_target_ms {}: settled at {} records, last "
                   "size {} records",
                   sizer_->target().count(), sizer_->settled(), sizer_->size())
             : fmt::format("transaction_interval_ms {}", transaction_interval_.count());
  host_.info(fmt::format(
      "kafka source: exactly-once: {} transactions committed, {} aborted; {:.0f} records and "
      "{:.0f} ms per committed transaction on average ({})",
      totals_.committed, totals_.aborted, static_cast<double>(totals_.records) / n,
      Ms(totals_.age).count() / n, sizing));
}

void KafkaSource::rewind() {
  rd_kafka_topic_partition_list_t* raw = nullptr;
  auto err = rd_kafka_assignment(consumer_.get(), &raw);
  PartitionListPtr positions(raw);
  const int timeout_ms = static_cast<int>(connect_timeout_.count());
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    err = rd_kafka_committed(consumer_.get(), positions.get(), timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw Fatal(fmt::format(
        "kafka source: cannot read the committed offsets to rewind to after "
        "an aborted transaction or a failed delivery ({}); stopping, a restart resumes there",
        error_text(err)));
  for (int i = 0; i < positions->cnt; ++i) {
    auto& p = positions->elems[i];
    if (p.offset < 0)
      p.offset = auto_offset_reset_ == "latest" ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
  }
  if (ErrorPtr e{rd_kafka_seek_partitions(consumer_.get(), positions.get(), timeout_ms)})
    throw Fatal(fmt::format("kafka source: cannot rewind to the committed offsets: {}",
                            rd_kafka_error_string(e.get())));
  for (int i = 0; i < positions->cnt; ++i)
    if (positions->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw Fatal(fmt::format("kafka source: cannot rewind {}[{}]: {}", positions->elems[i].topic,
                              positions->elems[i].partition, error_text(positions->elems[i].err)));
  stash_.clear();
  stash_bytes_ = 0;
  at_end_.clear();
  for (auto& [key, offset] : assigned_) offset = -1;
  host_.info(
      fmt::format("kafka source: rewound {} to the committed offsets", describe(positions.get())));
}

}  // namespace sluice::kafka
