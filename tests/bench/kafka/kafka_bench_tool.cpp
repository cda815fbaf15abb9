// The Kafka benchmark's own client: topic setup, input generation, the raw librdkafka
// consume-and-produce floor that sluice is measured against, and a cheap end-offset watcher.
#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

using Clock = std::chrono::steady_clock;

void set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  std::array<char, 512> err{};
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err.data(), err.size()) !=
      RD_KAFKA_CONF_OK)
    throw std::runtime_error(fmt::format("{}={}: {}", key, value, err.data()));
}

HandlePtr make_handle(rd_kafka_type_t type, ConfPtr conf) {
  std::array<char, 512> err{};
  HandlePtr rk(rd_kafka_new(type, conf.get(), err.data(), err.size()));
  if (!rk) throw std::runtime_error(err.data());
  conf.release();  // rd_kafka_new took it
  return rk;
}

// The producer settings the kafka sink uses (idempotent, acks=all, linger 5 ms), so the floor
// pays for the same guarantees.
ConfPtr producer_conf(const std::string& bootstrap) {
  ConfPtr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", bootstrap);
  set(conf.get(), "enable.idempotence", "true");
  set(conf.get(), "acks", "all");
  set(conf.get(), "linger.ms", "5");
  return conf;
}

std::atomic<int64_t> g_delivered{0};
std::atomic<int64_t> g_failed{0};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  if (m->err)
    g_failed.fetch_add(1);
  else
    g_delivered.fetch_add(1);
}

void produce_one(rd_kafka_t* producer, const std::string& topic, const void* key, size_t key_len,
                 const void* value, size_t value_len, int64_t timestamp) {
  for (;;) {
    const auto err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE(const_cast<void*>(value), value_len),
        RD_KAFKA_V_TIMESTAMP(timestamp), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      throw std::runtime_error(fmt::format("produce: {}", rd_kafka_err2str(err)));
    rd_kafka_poll(producer, 10);
  }
}

void flush_all(rd_kafka_t* producer) {
  while (rd_kafka_outq_len(producer) > 0) rd_kafka_flush(producer, 1000);
  if (g_failed.load() > 0)
    throw std::runtime_error(fmt::format("{} records failed delivery", g_failed.load()));
}

std::string admin_error(const rd_kafka_topic_result_t* r) {
  return fmt::format(
      "{}: {}", rd_kafka_topic_result_name(r),
      rd_kafka_topic_result_error_string(r) ? rd_kafka_topic_result_error_string(r) : "");
}

// create-topic / delete-topic through the admin API (the Java tools take seconds to start).
int topic_admin(const std::string& bootstrap, const std::string& topic, int partitions,
                bool create) {
  ConfPtr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", bootstrap);
  HandlePtr rk = make_handle(RD_KAFKA_PRODUCER, std::move(conf));
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk.get());
  std::array<char, 512> err{};
  if (create) {
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err.data(), err.size());
    rd_kafka_CreateTopics(rk.get(), &nt, 1, nullptr, queue);
    rd_kafka_NewTopic_destroy(nt);
  } else {
    rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(topic.c_str());
    rd_kafka_DeleteTopics(rk.get(), &dt, 1, nullptr, queue);
    rd_kafka_DeleteTopic_destroy(dt);
  }
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 30000);
  int rc = 0;
  if (ev == nullptr) {
    fmt::print(stderr, "topic admin: no answer in 30 s\n");
    rc = 1;
  } else if (rd_kafka_event_error(ev)) {
    fmt::print(stderr, "topic admin: {}\n", rd_kafka_event_error_string(ev));
    rc = 1;
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** results =
        create ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n)
               : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      const auto e = rd_kafka_topic_result_error(results[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        fmt::print(stderr, "topic admin: {}\n", admin_error(results[i]));
        rc = 1;
      }
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(queue);
  if (rc != 0 || !create) return rc;
  // Wait until every partition has a leader, so producing starts at once.
  for (int i = 0; i < 300; ++i) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
    const rd_kafka_metadata_t* raw = nullptr;
    const auto e = rd_kafka_metadata(rk.get(), 0, t, &raw, 2000);
    rd_kafka_topic_destroy(t);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      MetadataPtr md(raw);
      if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
          md->topics[0].partition_cnt == partitions) {
        bool led = true;
        for (int p = 0; p < partitions; ++p) led = led && md->topics[0].partitions[p].leader >= 0;
        if (led) return 0;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fmt::print(stderr, "topic admin: {} has no leaders after 30 s\n", topic);
  return 1;
}

// COUNT Debezium-style change events (~300 B each) keyed by row id.
int produce(const std::string& bootstrap, const std::string& topic, int64_t count) {
  ConfPtr conf = producer_conf(bootstrap);
  set(conf.get(), "linger.ms", "50");
  set(conf.get(), "batch.size", "1000000");
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &on_delivery);
  HandlePtr producer = make_handle(RD_KAFKA_PRODUCER, std::move(conf));
  static constexpr std::array<const char*, 4> kStatuses = {"created", "paid", "shipped",
                                                           "delivered"};
  static constexpr std::array<char, 3> kOps = {'c', 'u', 'u'};
  // Current time: the broker's retention deletes segments of records older than 7 days.
  const int64_t base_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  std::string key;
  std::string value;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t id = i % 100000;
    const int64_t ts = base_ms + i / 1000;
    key = fmt::format("{{\"id\":{}}}", id);
    value = fmt::format(
        "{{\"before\":null,\"after\":{{\"id\":{},\"customer_id\":{},\"status\":\"{}\","
        "\"amount_cents\":{},\"currency\":\"EUR\",\"updated_at\":{}}},\"source\":{{\"version\":"
        "\"2.5.0.Final\",\"connector\":\"postgresql\",\"name\":\"shop\",\"ts_ms\":{},\"db\":"
        "\"shop\",\"schema\":\"public\",\"table\":\"orders\",\"txId\":{},\"lsn\":{}}},\"op\":"
        "\"{}\",\"ts_ms\":{}}}",
        id, (id * 7919) % 50000, kStatuses[static_cast<size_t>(i / 100000) % kStatuses.size()],
        (id * 104729) % 1000000, ts, ts, 500000 + i, 2000000000 + i * 64,
        kOps[static_cast<size_t>(i / 100000) % kOps.size()], ts + 3);
    produce_one(producer.get(), topic, key.data(), key.size(), value.data(), value.size(), ts);
    if ((i & 1023) == 0) rd_kafka_poll(producer.get(), 0);
  }
  flush_all(producer.get());
  fmt::print("produced {} records into {}\n", g_delivered.load(), topic);
  return 0;
}

std::atomic<bool> g_stop{false};

// The floor: one consumer-group member and one idempotent producer in a tight loop, with nothing
// between them: no batching, lanes, ack tracking or plugin boundary. Exits when COUNT records
// are acknowledged by the broker; offsets are committed once at the end.
// A consumer-group member of GROUP reading TOPIC from the start, committing automatically.
HandlePtr subscribed_consumer(const std::string& bootstrap, const std::string& group,
                              const std::string& topic) {
  ConfPtr cconf(rd_kafka_conf_new());
  set(cconf.get(), "bootstrap.servers", bootstrap);
  set(cconf.get(), "group.id", group);
  set(cconf.get(), "auto.offset.reset", "earliest");
  set(cconf.get(), "enable.auto.commit", "true");
  set(cconf.get(), "partition.assignment.strategy", "cooperative-sticky");
  HandlePtr consumer = make_handle(RD_KAFKA_CONSUMER, std::move(cconf));
  rd_kafka_poll_set_consumer(consumer.get());
  PartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto e = rd_kafka_subscribe(consumer.get(), topics.get()))
    throw std::runtime_error(fmt::format("subscribe: {}", rd_kafka_err2str(e)));
  return consumer;
}

// The next record (null after 100 ms without one; errors are printed and skipped).
MessagePtr next_record(rd_kafka_t* consumer) {
  MessagePtr m(rd_kafka_consumer_poll(consumer, 100));
  if (!m || !m->err) return m;
  if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
    fmt::print(stderr, "consume: {}\n", rd_kafka_message_errstr(m.get()));
  return nullptr;
}

// This process's user + system CPU seconds so far.
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int copy(const std::string& bootstrap, const std::string& in, const std::string& out,
         const std::string& group, int64_t count) {
  ConfPtr pconf = producer_conf(bootstrap);
  rd_kafka_conf_set_dr_msg_cb(pconf.get(), &on_delivery);
  HandlePtr producer = make_handle(RD_KAFKA_PRODUCER, std::move(pconf));

  HandlePtr consumer = subscribed_consumer(bootstrap, group, in);
  int64_t consumed = 0;
  while (consumed < count && !g_stop.load()) {
    MessagePtr m = next_record(consumer.get());
    if (!m) continue;
    rd_kafka_timestamp_type_t ts_type;
    const int64_t ts = rd_kafka_message_timestamp(m.get(), &ts_type);
    produce_one(producer.get(), out, m->key, m->key_len, m->payload, m->len,
                ts_type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? 0 : ts);
    ++consumed;
    if ((consumed & 1023) == 0) rd_kafka_poll(producer.get(), 0);
  }
  flush_all(producer.get());
  rd_kafka_commit(consumer.get(), nullptr, 0);
  rd_kafka_consumer_close(consumer.get());
  fmt::print("copied {} records from {} to {}; cpu_seconds {:.3f}\n", g_delivered.load(), in, out,
             cpu_seconds());
  return 0;
}

// The raw Kafka -> file loop: each record's value as one line, appended through a 1 MiB stdio
// buffer (no fsync, like the file sink's fsync: none); exits after COUNT records.
int to_file(const std::string& bootstrap, const std::string& in, const std::string& path,
            const std::string& group, int64_t count) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(path.c_str(), "a"), &std::fclose);
  if (!out) throw std::runtime_error(fmt::format("cannot open {}", path));
  std::vector<char> buffer(1u << 20);
  std::setvbuf(out.get(), buffer.data(), _IOFBF, buffer.size());
  HandlePtr consumer = subscribed_consumer(bootstrap, group, in);
  int64_t written = 0;
  while (written < count && !g_stop.load()) {
    MessagePtr m = next_record(consumer.get());
    if (!m) continue;
    std::fwrite(m->payload, 1, m->len, out.get());
    std::fputc('\n', out.get());
    ++written;
  }
  if (std::fflush(out.get()) != 0) throw std::runtime_error(fmt::format("cannot write {}", path));
  rd_kafka_commit(consumer.get(), nullptr, 0);
  rd_kafka_consumer_close(consumer.get());
  fmt::print("wrote {} records from {} to {}; cpu_seconds {:.3f}\n", written, in, path,
             cpu_seconds());
  return 0;
}

int partition_count(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* raw = nullptr;
  const auto e = rd_kafka_metadata(rk, 0, t, &raw, 10000);
  rd_kafka_topic_destroy(t);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error("metadata: " + std::string(rd_kafka_err2str(e)));
  MetadataPtr md(raw);
  if (md->topic_cnt != 1 || md->topics[0].err)
    throw std::runtime_error(fmt::format("topic {} not found", topic));
  return md->topics[0].partition_cnt;
}

// Exits 0 once the end offsets of TOPIC add up to COUNT (cheap: no records are read).
int wait_for_end(const std::string& bootstrap, const std::string& topic, int64_t count,
                 int timeout_s) {
  ConfPtr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", bootstrap);
  HandlePtr rk = make_handle(RD_KAFKA_PRODUCER, std::move(conf));
  const int partitions = partition_count(rk.get(), topic);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  int64_t total = 0;
  while (Clock::now() < deadline && !g_stop.load()) {
    total = 0;
    for (int p = 0; p < partitions; ++p) {
      int64_t low = 0;
      int64_t high = 0;
      if (rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, 5000) ==
          RD_KAFKA_RESP_ERR_NO_ERROR)
        total += high;
    }
    if (total >= count) {
      fmt::print("{}\n", total);
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fmt::print(stderr, "{} has {} of {} records after {} s\n", topic, total, count, timeout_s);
  return 1;
}

// Exits 0 once GROUP's committed offsets on TOPIC add up to COUNT: an exactly-once run is
// through when its last transaction committed (the output's end offsets also count transaction
// markers and aborted records, so they cannot tell).
int wait_for_committed(const std::string& bootstrap, const std::string& group,
                       const std::string& topic, int64_t count, int timeout_s) {
  ConfPtr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", bootstrap);
  set(conf.get(), "group.id", group);
  HandlePtr rk = make_handle(RD_KAFKA_CONSUMER, std::move(conf));
  const int partitions = partition_count(rk.get(), topic);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  int64_t total = 0;
  while (Clock::now() < deadline && !g_stop.load()) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
    total = 0;
    if (rd_kafka_committed(rk.get(), list, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
      for (int p = 0; p < list->cnt; ++p) total += std::max<int64_t>(0, list->elems[p].offset);
    rd_kafka_topic_partition_list_destroy(list);
    if (total >= count) {
      fmt::print("{}\n", total);
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fmt::print(stderr, "group {} committed {} of {} records of {} after {} s\n", group, total, count,
             topic, timeout_s);
  return 1;
}

int usage() {
  fmt::print(stderr,
             "usage: sluice-kafka-bench create-topic BOOTSTRAP TOPIC PARTITIONS\n"
             "       sluice-kafka-bench delete-topic BOOTSTRAP TOPIC\n"
             "       sluice-kafka-bench produce BOOTSTRAP TOPIC COUNT\n"
             "       sluice-kafka-bench copy BOOTSTRAP IN OUT GROUP COUNT\n"
             "       sluice-kafka-bench to-file BOOTSTRAP IN PATH GROUP COUNT\n"
             "       sluice-kafka-bench wait BOOTSTRAP TOPIC COUNT TIMEOUT_S\n"
             "       sluice-kafka-bench wait-committed BOOTSTRAP GROUP TOPIC COUNT TIMEOUT_S\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGTERM, [](int) { g_stop.store(true); });
  std::signal(SIGINT, [](int) { g_stop.store(true); });
  const std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.size() == 4 && a[0] == "create-topic")
      return topic_admin(a[1], a[2], std::stoi(a[3]), true);
    if (a.size() == 3 && a[0] == "delete-topic") return topic_admin(a[1], a[2], 0, false);
    if (a.size() == 4 && a[0] == "produce") return produce(a[1], a[2], std::stoll(a[3]));
    if (a.size() == 6 && a[0] == "copy") return copy(a[1], a[2], a[3], a[4], std::stoll(a[5]));
    if (a.size() == 6 && a[0] == "to-file")
      return to_file(a[1], a[2], a[3], a[4], std::stoll(a[5]));
    if (a.size() == 5 && a[0] == "wait")
      return wait_for_end(a[1], a[2], std::stoll(a[3]), std::stoi(a[4]));
    if (a.size() == 6 && a[0] == "wait-committed")
      return wait_for_committed(a[1], a[2], a[3], std::stoll(a[4]), std::stoi(a[5]));
  } catch (const std::exception& e) {
    fmt::print(stderr, "sluice-kafka-bench: {}\n", e.what());
    return 1;
  }
  return usage();
}
