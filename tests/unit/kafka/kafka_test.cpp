// Fault-injection tests of the kafka plugin against librdkafka's mock cluster, through its C table.
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "sluice/abi.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Kafka protocol API keys (not in librdkafka's public headers).
constexpr int16_t kApiProduce = 0;
constexpr int16_t kApiOffsetCommit = 8;

// ------------------------------------------------------------------------------------------
// The built plugin, loaded the way the host loads it.

class PluginLibrary {
 public:
  PluginLibrary() {
    const char* dir = std::getenv("SLUICE_BUILD_PLUGIN_DIR");
    REQUIRE_MESSAGE(dir != nullptr, "SLUICE_BUILD_PLUGIN_DIR is not set");
    const std::string path = std::string(dir) + "/sluice-kafka.so";
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    REQUIRE_MESSAGE(handle_ != nullptr, dlerror());
    auto get = reinterpret_cast<sluice_module_get_fn>(dlsym(handle_, SLUICE_MODULE_ENTRY));
    const bool found = get != nullptr;
    REQUIRE(found);
    module_ = get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
    REQUIRE(module_ != nullptr);
  }
  ~PluginLibrary() {
    if (handle_) dlclose(handle_);
  }
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  const sluice_plugin& plugin(sluice_kind kind) const {
    for (size_t i = 0; i < module_->plugin_count; ++i)
      if (module_->plugins[i]->kind == kind) return *module_->plugins[i];
    throw std::runtime_error("no such plugin kind");
  }

 private:
  void* handle_ = nullptr;
  const sluice_module* module_ = nullptr;
};

const PluginLibrary& library() {
  static PluginLibrary lib;
  return lib;
}

// ------------------------------------------------------------------------------------------
// A small fake host: the host API and a writer that copies what it is given.

struct Collected {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::string>> headers;
};

std::optional<std::string> copy(sluice_bytes b) {
  if (!b.ptr) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(b.ptr), b.len);
}

struct FakeHost {
  sluice_host_api api{};
  std::mutex mutex;
  std::vector<std::pair<int32_t, std::string>> logs;
  std::function<sluice_status(const sluice_position*, size_t)> drain;
  int drains = 0;

  FakeHost() {
    api.struct_size = sizeof(api);
    api.abi_major = SLUICE_ABI_MAJOR;
    api.abi_minor = SLUICE_ABI_MINOR;
    api.host_ctx = this;
    api.sluice_host_log = [](void* ctx, int32_t level, const char* m, size_t len) {
      auto* self = static_cast<FakeHost*>(ctx);
      std::lock_guard lock(self->mutex);
      self->logs.emplace_back(level, std::string(m, len));
    };
    api.sluice_host_counter_add = [](void*, const char*, double) {};
    api.sluice_host_gauge_set = [](void*, const char*, double) {};
    api.sluice_host_memory_pressure = [](void*) { return 0.0; };
    api.sluice_host_instance_name = [](void*) { return "test.kafka"; };
    api.sluice_host_drain = [](void* ctx, const sluice_position* ps, size_t n, uint32_t) {
      auto* self = static_cast<FakeHost*>(ctx);
      ++self->drains;
      return self->drain ? self->drain(ps, n) : SLUICE_OK;
    };
  }
  bool logged(int32_t min_level, const std::string& needle) {
    std::lock_guard lock(mutex);
    for (const auto& [level, text] : logs)
      if (level >= min_level && text.find(needle) != std::string::npos) return true;
    return false;
  }
  std::string all_logs() {
    std::lock_guard lock(mutex);
    std::string s;
    for (const auto& [level, text] : logs) s += std::to_string(level) + " " + text + "\n";
    return s;
  }
};

struct FakeWriter {
  sluice_writer writer{};
  std::vector<Collected> records;
  std::vector<std::pair<size_t, std::string>> rejects;

  FakeWriter() {
    writer.struct_size = sizeof(writer);
    writer.host_ctx = this;
    writer.append = [](void* ctx, size_t, const sluice_record* r) {
      Collected c;
      c.key = copy(r->key);
      c.value = copy(r->value);
      c.topic = copy(r->topic).value_or("");
      c.partition = r->partition;
      c.offset = r->offset;
      c.timestamp_ms = r->timestamp_ms;
      for (size_t i = 0; i < r->header_count; ++i)
        c.headers.emplace_back(copy(r->headers[i].key).value_or(""),
                               copy(r->headers[i].value).value_or(""));
      static_cast<FakeWriter*>(ctx)->records.push_back(std::move(c));
      return SLUICE_OK;
    };
    writer.append_owned = nullptr;
    writer.reject = [](void* ctx, size_t index, sluice_status, const char* m, size_t len) {
      static_cast<FakeWriter*>(ctx)->rejects.emplace_back(index, std::string(m, len));
    };
  }
};

struct ErrorText {
  std::array<char, 1024> message{};
  std::array<char, 256> field{};
  sluice_error error{};
  ErrorText() {
    error.struct_size = sizeof(error);
    error.message = message.data();
    error.message_capacity = message.size();
    error.field = field.data();
    error.field_capacity = field.size();
  }
  std::string text() const { return message.data(); }
};

// One plugin instance, destroyed with the object.
class Instance {
 public:
  Instance(sluice_kind kind, const std::string& config, FakeHost& host)
      : plugin_(library().plugin(kind)) {
    status_ =
        plugin_.create(&host.api, config.data(), config.size(), &instance_, &create_error_.error);
  }
  ~Instance() {
    if (instance_) plugin_.destroy(instance_);
  }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  sluice_status create_status() const { return status_; }
  const ErrorText& create_error() const { return create_error_; }
  void* raw() const { return instance_; }
  const sluice_plugin& plugin() const { return plugin_; }

  sluice_status poll(FakeWriter& out, uint32_t max_records, uint32_t timeout_ms,
                     ErrorText* error = nullptr) {
    sluice_poll_args args{};
    args.struct_size = sizeof(args);
    args.max_records = max_records;
    args.timeout_ms = timeout_ms;
    args.max_bytes = UINT64_MAX;
    ErrorText local;
    return plugin_.poll(instance_, &args, &out.writer, error ? &error->error : &local.error);
  }
  sluice_status commit(const std::vector<sluice_position>& positions, ErrorText* error = nullptr) {
    ErrorText local;
    return plugin_.commit(instance_, positions.data(), positions.size(),
                          error ? &error->error : &local.error);
  }
  sluice_status put(const std::vector<sluice_record>& records, FakeWriter& rejects,
                    ErrorText* error = nullptr) {
    sluice_batch batch{};
    batch.struct_size = sizeof(batch);
    batch.records = records.data();
    batch.count = records.size();
    ErrorText local;
    return plugin_.put(instance_, &batch, &rejects.writer, error ? &error->error : &local.error);
  }
  void set_paused(bool paused) { plugin_.set_paused(instance_, paused ? 1 : 0); }

 private:
  const sluice_plugin& plugin_;
  void* instance_ = nullptr;
  sluice_status status_ = SLUICE_ERROR;
  ErrorText create_error_;
};

sluice_position position(const std::string& topic, int32_t partition, int64_t offset) {
  sluice_position p{};
  p.struct_size = sizeof(p);
  p.topic = {reinterpret_cast<const uint8_t*>(topic.data()), topic.size()};
  p.partition = partition;
  p.offset = offset;
  return p;
}

// ------------------------------------------------------------------------------------------
// The mock cluster and plain librdkafka clients to seed and check it.

struct RdDelete {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Rd = std::unique_ptr<rd_kafka_t, RdDelete>;

Rd make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& settings) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [k, v] : settings)
    REQUIRE_MESSAGE(
        rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK, err);
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int, const char*, const char*) {});
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  REQUIRE_MESSAGE(rk != nullptr, err);
  return Rd(rk);
}

class MockCluster {
 public:
  explicit MockCluster(int brokers) {
    owner_ = make_client(RD_KAFKA_PRODUCER, {});
    cluster_ = rd_kafka_mock_cluster_new(owner_.get(), brokers);
    REQUIRE(cluster_ != nullptr);
    bootstraps_ = rd_kafka_mock_cluster_bootstraps(cluster_);
  }
  ~MockCluster() { rd_kafka_mock_cluster_destroy(cluster_); }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  rd_kafka_mock_cluster_t* get() const { return cluster_; }
  const std::string& bootstraps() const { return bootstraps_; }
  void create_topic(const std::string& topic, int partitions) {
    REQUIRE(rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  Rd owner_;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  std::string bootstraps_;
};

void produce_values(const MockCluster& cluster, const std::string& topic, int from, int to) {
  Rd producer = make_client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", cluster.bootstraps()}});
  for (int i = from; i < to; ++i) {
    const std::string value = std::to_string(i);
    REQUIRE(rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                              RD_KAFKA_V_KEY(value.data(), value.size()),
                              RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  REQUIRE(rd_kafka_flush(producer.get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

// Every message of the topic, read from the beginning by a plain consumer.
std::vector<rd_kafka_message_t*> read_all_raw(rd_kafka_t* consumer, size_t expected,
                                              std::chrono::milliseconds limit) {
  std::vector<rd_kafka_message_t*> out;
  const auto deadline = Clock::now() + limit;
  while (out.size() < expected && Clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 100);
    if (!m) continue;
    if (m->err) {
      rd_kafka_message_destroy(m);
      continue;
    }
    out.push_back(m);
  }
  // Anything more than expected would be a duplicate: look a little longer.
  const auto extra = Clock::now() + 500ms;
  while (Clock::now() < extra) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 100);
    if (m && !m->err)
      out.push_back(m);
    else if (m)
      rd_kafka_message_destroy(m);
  }
  return out;
}

std::vector<std::string> read_values(const MockCluster& cluster, const std::string& topic,
                                     int partitions, size_t expected) {
  Rd consumer = make_client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", cluster.bootstraps()},
                                                {"group.id", "checker"},
                                                {"enable.auto.commit", "false"},
                                                {"isolation.level", "read_committed"}});
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(consumer.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<std::string> values;
  for (rd_kafka_message_t* m : read_all_raw(consumer.get(), expected, 20s)) {
    values.emplace_back(static_cast<const char*>(m->payload), m->len);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(consumer.get());
  return values;
}

int64_t committed_offset(const MockCluster& cluster, const std::string& group,
                         const std::string& topic, int32_t partition) {
  Rd consumer = make_client(RD_KAFKA_CONSUMER,
                            {{"bootstrap.servers", cluster.bootstraps()}, {"group.id", group}});
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition);
  const auto err = rd_kafka_committed(consumer.get(), list, 10000);
  if (err) MESSAGE("committed() failed: ", rd_kafka_err2name(err));
  const int64_t offset = err ? -1001 : list->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(consumer.get());
  return offset;
}

std::string source_config(const MockCluster& cluster, const std::string& topic,
                          const std::string& group, const std::string& extra = "") {
  return R"({"bootstrap_servers":")" + cluster.bootstraps() + R"(","group_id":")" + group +
         R"(","topics":[")" + topic + R"("],"auto_offset_reset":"earliest")" + extra + "}";
}

std::string sink_config(const MockCluster& cluster, const std::string& topic,
                        const std::string& extra = "") {
  return R"({"bootstrap_servers":")" + cluster.bootstraps() + R"(","topic":")" + topic + R"(")" +
         extra + "}";
}

// Owns the bytes a batch of sluice_records points to.
struct RecordBatch {
  std::vector<std::string> values;
  std::vector<sluice_record> records;
  explicit RecordBatch(std::vector<std::string> v) : values(std::move(v)) {
    for (const auto& value : values) {
      sluice_record r{};
      r.struct_size = sizeof(r);
      r.key = {reinterpret_cast<const uint8_t*>(value.data()), value.size()};
      r.value = {reinterpret_cast<const uint8_t*>(value.data()), value.size()};
      records.push_back(r);
    }
  }
};

std::vector<std::string> numbered(int from, int to, const std::string& prefix = "") {
  std::vector<std::string> v;
  for (int i = from; i < to; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

// Polls until `count` records arrived in total, or `limit` passed.
void poll_until(Instance& source, FakeWriter& out, size_t count, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (out.records.size() < count && Clock::now() < deadline) {
    ErrorText error;
    const auto status = source.poll(out, 100, 200, &error);
    REQUIRE_MESSAGE(status == SLUICE_OK, error.text());
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------

TEST_CASE("sink: injected retriable produce errors are retried with no loss and no duplicates") {
  MockCluster cluster(1);
  cluster.create_topic("out", 2);
  FakeHost host;
  Instance sink(SLUICE_KIND_SINK, sink_config(cluster, "out"), host);
  REQUIRE_MESSAGE(sink.create_status() == SLUICE_OK, sink.create_error().text());

  rd_kafka_mock_push_request_errors(
      cluster.get(), kApiProduce, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);

  RecordBatch batch(numbered(0, 300));
  FakeWriter rejects;
  ErrorText error;
  REQUIRE_MESSAGE(sink.put(batch.records, rejects, &error) == SLUICE_OK, error.text());
  CHECK(rejects.rejects.empty());

  auto values = read_values(cluster, "out", 2, 300);
  CHECK(values.size() == 300);
  std::set<std::string> distinct(values.begin(), values.end());
  CHECK(distinct.size() == 300);
  CHECK(distinct == std::set<std::string>(batch.values.begin(), batch.values.end()));
}

TEST_CASE("sink: a record too large is rejected alone and the rest is delivered") {
  MockCluster cluster(1);
  cluster.create_topic("out", 1);
  FakeHost host;
  Instance sink(SLUICE_KIND_SINK,
                sink_config(cluster, "out", R"(,"properties":{"message.max.bytes":"2000"})"), host);
  REQUIRE_MESSAGE(sink.create_status() == SLUICE_OK, sink.create_error().text());

  RecordBatch batch({"a", std::string(5000, 'x'), "c"});
  FakeWriter rejects;
  ErrorText error;
  REQUIRE_MESSAGE(sink.put(batch.records, rejects, &error) == SLUICE_OK, error.text());
  REQUIRE(rejects.rejects.size() == 1);
  CHECK(rejects.rejects[0].first == 1);
  CHECK(rejects.rejects[0].second.find("too large") != std::string::npos);
  CHECK(read_values(cluster, "out", 1, 2) == std::vector<std::string>{"a", "c"});
}

TEST_CASE(
    "sink: deliveries that keep failing make put retriable, and a retry after recovery succeeds") {
  MockCluster cluster(1);
  cluster.create_topic("out", 1);
  FakeHost host;
  Instance sink(
      SLUICE_KIND_SINK,
      sink_config(cluster, "out",
                  R"(,"flush_timeout_ms":1500,"properties":{"reconnect.backoff.max.ms":"200"})"),
      host);
  REQUIRE_MESSAGE(sink.create_status() == SLUICE_OK, sink.create_error().text());

  RecordBatch first(numbered(0, 10));
  FakeWriter rejects;
  REQUIRE(sink.put(first.records, rejects) == SLUICE_OK);

  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  RecordBatch second(numbered(10, 20));
  ErrorText error;
  CHECK(sink.put(second.records, rejects, &error) == SLUICE_RETRY);
  CHECK(error.text().find("failed") != std::string::npos);
  CHECK(rejects.rejects.empty());

  rd_kafka_mock_broker_set_up(cluster.get(), 1);
  // As the host does with RETRY: try again (bounded) while the client reconnects.
  sluice_status status = SLUICE_RETRY;
  for (int attempt = 0; attempt < 20 && status == SLUICE_RETRY; ++attempt)
    status = sink.put(second.records, rejects, &error);
  CHECK_MESSAGE(status == SLUICE_OK, error.text());
  auto values = read_values(cluster, "out", 1, 20);
  std::set<std::string> distinct(values.begin(), values.end());
  CHECK(distinct.size() == 20);
}

TEST_CASE("source: a broker down then up during consumption loses no record") {
  MockCluster cluster(1);
  cluster.create_topic("in", 2);
  produce_values(cluster, "in", 0, 400);
  FakeHost host;
  Instance source(SLUICE_KIND_SOURCE, source_config(cluster, "in", "g1"), host);
  REQUIRE_MESSAGE(source.create_status() == SLUICE_OK, source.create_error().text());

  FakeWriter out;
  poll_until(source, out, 100, 20s);
  REQUIRE(out.records.size() >= 100);

  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  for (int i = 0; i < 10; ++i) {
    ErrorText error;
    REQUIRE_MESSAGE(source.poll(out, 100, 200, &error) == SLUICE_OK, error.text());
  }
  rd_kafka_mock_broker_set_up(cluster.get(), 1);
  produce_values(cluster, "in", 400, 500);
  poll_until(source, out, 500, 30s);

  std::set<std::string> values;
  for (const auto& r : out.records) values.insert(r.value.value_or(""));
  CHECK(values.size() == 500);
  CHECK(out.records.size() == 500);  // nothing handed on twice either
}

TEST_CASE("source: a failed commit is retried, and a lasting failure is reported as retriable") {
  MockCluster cluster(1);
  cluster.create_topic("in", 1);
  produce_values(cluster, "in", 0, 50);
  FakeHost host;
  Instance source(SLUICE_KIND_SOURCE, source_config(cluster, "in", "g2"), host);
  REQUIRE_MESSAGE(source.create_status() == SLUICE_OK, source.create_error().text());
  FakeWriter out;
  poll_until(source, out, 50, 20s);
  REQUIRE(out.records.size() == 50);

  rd_kafka_mock_push_request_errors(cluster.get(), kApiOffsetCommit, 2,
                                    RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                                    RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
  ErrorText error;
  CHECK_MESSAGE(source.commit({position("in", 0, 29)}, &error) == SLUICE_OK, error.text());
  CHECK(host.logged(SLUICE_LOG_WARN, "commit"));
  CHECK(committed_offset(cluster, "g2", "in", 0) == 30);

  std::vector<rd_kafka_resp_err_t> many(40, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
  rd_kafka_mock_push_request_errors_array(cluster.get(), kApiOffsetCommit, many.size(),
                                          many.data());
  CHECK(source.commit({position("in", 0, 49)}, &error) == SLUICE_RETRY);
  CHECK(host.logged(SLUICE_LOG_ERROR, "commit"));
  rd_kafka_mock_clear_request_errors(cluster.get(), kApiOffsetCommit);
  CHECK_MESSAGE(source.commit({position("in", 0, 49)}, &error) == SLUICE_OK, error.text());
  CHECK(committed_offset(cluster, "g2", "in", 0) == 50);
}

namespace {

// The values of records [from, to) the source handed on.
std::vector<std::string> values_of(const FakeWriter& out, size_t from, size_t to) {
  std::vector<std::string> v;
  for (size_t i = from; i < to && i < out.records.size(); ++i)
    v.push_back(out.records[i].value.value_or(""));
  return v;
}

// Polls the source without taking records (it commits what its sink's deliveries confirmed)
// until the group's committed offset of in[0] is `want`, or `limit` passed.
int64_t wait_committed(const MockCluster& cluster, Instance& source, const std::string& group,
                       int64_t want, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  int64_t got = committed_offset(cluster, group, "in", 0);
  while (got != want && Clock::now() < deadline) {
    FakeWriter none;
    source.poll(none, 0, 100);
    got = committed_offset(cluster, group, "in", 0);
  }
  return got;
}

}  // namespace

TEST_CASE(
    "at least once: a delivery failing after put returned is never committed; the source "
    "consumes it again") {
  MockCluster cluster(1);
  cluster.create_topic("in", 1);
  cluster.create_topic("out", 1);
  produce_values(cluster, "in", 0, 40);
  FakeHost host;
  // What the host hands an at-least-once pipeline's kafka source and sink in its process.
  const std::string gate = R"(,"delivery_gate_pipeline":"gate-failed-delivery")";
  Instance source(SLUICE_KIND_SOURCE, source_config(cluster, "in", "g-gate", gate), host);
  REQUIRE_MESSAGE(source.create_status() == SLUICE_OK, source.create_error().text());
  Instance sink(SLUICE_KIND_SINK,
                sink_config(cluster, "out",
                            R"(,"flush_timeout_ms":1000,"properties":{"reconnect.backoff.max.ms":)"
                            R"("200"})" +
                                gate),
                host);
  REQUIRE_MESSAGE(sink.create_status() == SLUICE_OK, sink.create_error().text());
  FakeWriter in;
  poll_until(source, in, 40, 20s);
  REQUIRE(in.records.size() == 40);
  RecordBatch first(values_of(in, 0, 20)), second(values_of(in, 20, 40));

  // Kafka takes the first half: its offsets are committed once the reports are in.
  FakeWriter rejects;
  ErrorText error;
  REQUIRE_MESSAGE(sink.put(first.records, rejects, &error) == SLUICE_OK, error.text());
  REQUIRE(source.commit({position("in", 0, 19)}) == SLUICE_OK);
  REQUIRE(wait_committed(cluster, source, "g-gate", 20, 20s) == 20);

  // The second half: put returns while the broker is down (librdkafka has the records), the
  // host reports them done, and then every delivery times out (message.timeout.ms 1 s).
  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  REQUIRE_MESSAGE(sink.put(second.records, rejects, &error) == SLUICE_OK, error.text());
  CHECK(rejects.rejects.empty());
  CHECK(source.commit({position("in", 0, 39)}) == SLUICE_OK);
  std::this_thread::sleep_for(4s);
  rd_kafka_mock_broker_set_up(cluster.get(), 1);
  CHECK(wait_committed(cluster, source, "g-gate", 40, 3s) == 20);  // never past a lost record
  CHECK(host.logged(SLUICE_LOG_WARN, "a delivery failed"));

  // Those polls drained the pipeline and rewound to offset 20: the second half comes again,
  // and nothing of the committed first half. (Under load a late failed report can rewind once
  // more while these polls run, so a record may come twice: at least once, not exactly once.)
  CHECK(host.drains >= 1);
  FakeWriter again;
  const std::set<std::string> lost(second.values.begin(), second.values.end());
  const auto covered = [&] {
    const auto got = values_of(again, 0, again.records.size());
    const std::set<std::string> seen(got.begin(), got.end());
    return std::includes(seen.begin(), seen.end(), lost.begin(), lost.end());
  };
  for (const auto deadline = Clock::now() + 30s; !covered() && Clock::now() < deadline;)
    poll_until(source, again, again.records.size() + 1, 1s);
  const auto got = values_of(again, 0, again.records.size());
  std::string shown;
  for (const auto& v : got) shown += v + " ";
  INFO("consumed again: " << shown);
  REQUIRE(std::set<std::string>(got.begin(), got.end()) == lost);

  // The sink now waits for Kafka in put; after it, the offsets move to the end.
  sluice_status status = SLUICE_RETRY;
  for (int attempt = 0; attempt < 20 && status == SLUICE_RETRY; ++attempt)
    status = sink.put(second.records, rejects, &error);
  REQUIRE_MESSAGE(status == SLUICE_OK, error.text());
  CHECK(source.commit({position("in", 0, 39)}) == SLUICE_OK);
  CHECK(wait_committed(cluster, source, "g-gate", 40, 20s) == 40);
  auto values = read_values(cluster, "out", 1, 40);
  const std::vector<std::string> all = values_of(in, 0, 40);
  CHECK(std::set<std::string>(values.begin(), values.end()) ==
        std::set<std::string>(all.begin(), all.end()));
}

TEST_CASE("source: a paused source keeps polling and loses nothing raced in meanwhile") {
  MockCluster cluster(1);
  cluster.create_topic("in", 1);
  produce_values(cluster, "in", 0, 200);
  FakeHost host;
  Instance source(SLUICE_KIND_SOURCE, source_config(cluster, "in", "g3"), host);
  REQUIRE(source.create_status() == SLUICE_OK);
  FakeWriter out;
  poll_until(source, out, 1, 20s);
  REQUIRE(!out.records.empty());

  source.set_paused(true);
  for (int i = 0; i < 10; ++i) {
    FakeWriter none;
    REQUIRE(source.poll(none, 0, 50) == SLUICE_OK);
    CHECK(none.records.empty());
  }
  source.set_paused(false);
  poll_until(source, out, 200, 20s);
  std::set<std::string> values;
  for (const auto& r : out.records) values.insert(r.value.value_or(""));
  CHECK(values.size() == 200);
  CHECK(out.records.size() == 200);
}

TEST_CASE("source and sink: key, tombstone, headers and timestamp survive a round trip") {
  MockCluster cluster(1);
  cluster.create_topic("rt", 1);
  FakeHost host;
  Instance sink(SLUICE_KIND_SINK, sink_config(cluster, "rt"), host);
  REQUIRE(sink.create_status() == SLUICE_OK);

  const std::string key = "k1", value = "v1", hk = "trace", hv = "abc";
  sluice_header header{{reinterpret_cast<const uint8_t*>(hk.data()), hk.size()},
                       {reinterpret_cast<const uint8_t*>(hv.data()), hv.size()}};
  std::vector<sluice_record> records(2);
  for (auto& r : records) {
    r.struct_size = sizeof(r);
    r.key = {reinterpret_cast<const uint8_t*>(key.data()), key.size()};
    r.timestamp_ms = 1700000000123;
  }
  records[0].value = {reinterpret_cast<const uint8_t*>(value.data()), value.size()};
  records[0].headers = &header;
  records[0].header_count = 1;
  FakeWriter rejects;
  REQUIRE(sink.put(records, rejects) == SLUICE_OK);

  Instance source(SLUICE_KIND_SOURCE, source_config(cluster, "rt", "g4"), host);
  REQUIRE(source.create_status() == SLUICE_OK);
  FakeWriter out;
  poll_until(source, out, 2, 20s);
  REQUIRE(out.records.size() == 2);
  CHECK(out.records[0].key == key);
  CHECK(out.records[0].value == value);
  CHECK(out.records[0].topic == "rt");
  CHECK(out.records[0].offset == 0);
  CHECK(out.records[0].timestamp_ms == 1700000000123);
  REQUIRE(out.records[0].headers.size() == 1);
  CHECK(out.records[0].headers[0] == std::pair<std::string, std::string>{hk, hv});
  CHECK(out.records[1].key == key);
  CHECK_FALSE(out.records[1].value.has_value());  // the tombstone stays a tombstone
  CHECK(out.records[1].offset == 1);
}

TEST_CASE("source: an unreachable bootstrap fails fatally within connect_timeout_ms") {
  FakeHost host;
  const std::string config =
      R"({"bootstrap_servers":"127.0.0.1:1","group_id":"g","topics":["t"],"connect_timeout_ms":700})";
  Instance source(SLUICE_KIND_SOURCE, config, host);
  REQUIRE(source.create_status() == SLUICE_OK);
  const auto started = Clock::now();
  sluice_status status = SLUICE_OK;
  ErrorText error;
  while (status == SLUICE_OK && Clock::now() - started < 15s) {
    FakeWriter out;
    status = source.poll(out, 10, 100, &error);
  }
  CHECK(status == SLUICE_FATAL);
  CHECK(error.text().find("cannot reach Kafka at 127.0.0.1:1") != std::string::npos);
}

TEST_CASE("source: a topic that does not exist is a fatal error naming the topic") {
  MockCluster cluster(1);
  cluster.create_topic("present", 1);
  FakeHost host;
  Instance source(SLUICE_KIND_SOURCE, source_config(cluster, "absent-topic", "g5"), host);
  REQUIRE(source.create_status() == SLUICE_OK);
  sluice_status status = SLUICE_OK;
  ErrorText error;
  const auto started = Clock::now();
  while (status == SLUICE_OK && Clock::now() - started < 15s) {
    FakeWriter out;
    status = source.poll(out, 10, 100, &error);
  }
  CHECK(status == SLUICE_FATAL);
  CHECK(error.text().find("absent-topic") != std::string::npos);
}

TEST_CASE("config: an invalid librdkafka property names its field; secrets never reach the log") {
  MockCluster cluster(1);
  FakeHost host;
  Instance bad(SLUICE_KIND_SOURCE,
               source_config(cluster, "t", "g", R"(,"properties":{"no.such.property":"1"})"), host);
  CHECK(bad.create_status() == SLUICE_ERROR);
  CHECK(std::string(bad.create_error().field.data()) == "properties.no.such.property");
  CHECK(bad.create_error().text().find("no.such.property") != std::string::npos);

  Instance bad_sink(SLUICE_KIND_SINK,
                    sink_config(cluster, "t", R"(,"properties":{"acks":"sometimes"})"), host);
  CHECK(bad_sink.create_status() == SLUICE_ERROR);
  CHECK(std::string(bad_sink.create_error().field.data()) == "properties.acks");

  {
    Instance with_secret(
        SLUICE_KIND_SINK,
        sink_config(
            cluster, "t",
            R"(,"properties":{"sasl.password":"hunter2-secret","enable.idempotence":"false"})"),
        host);
    CHECK(with_secret.create_status() == SLUICE_OK);
  }
  CHECK(host.logged(SLUICE_LOG_WARN, "enable.idempotence"));
  CHECK_FALSE(host.logged(SLUICE_LOG_TRACE, "hunter2"));
}

// The mock cluster's group coordinator follows the session timeouts: keep them short.
const std::string kFastGroup =
    R"(,"properties":{"session.timeout.ms":"6000","heartbeat.interval.ms":"500"})";

TEST_CASE(
    "source: on a cooperative revoke the host drains and commits before the partition moves") {
  // A coordinator may refuse the drain's commit (REBALANCE_IN_PROGRESS, as the mock cluster does
  // now and then under load); forced here in the second subcase, whose checks are then the
  // at-least-once ones: the next owner reads the uncommitted records again, nothing is lost.
  bool refuse = false;
  SUBCASE("the coordinator takes the drain's commit: an exact handover") {}
  SUBCASE("the coordinator refuses it: the next owner reads those records again") { refuse = true; }

  MockCluster cluster(1);
  cluster.create_topic("shared", 4);
  produce_values(cluster, "shared", 0, 400);

  FakeHost host_a;
  Instance a(SLUICE_KIND_SOURCE, source_config(cluster, "shared", "g6", kFastGroup), host_a);
  REQUIRE(a.create_status() == SLUICE_OK);
  std::vector<std::tuple<std::string, int32_t, int64_t>> drained;  // topic, partition, offset
  std::vector<sluice_status> commits;  // the drains' commits (no check may throw in a callback)
  host_a.drain = [&](const sluice_position* ps, size_t n) {
    for (size_t i = 0; i < n; ++i)
      drained.emplace_back(*copy(ps[i].topic), ps[i].partition, ps[i].offset);
    if (refuse) {  // every attempt of the source's commit is refused
      std::vector<rd_kafka_resp_err_t> many(10, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
      rd_kafka_mock_push_request_errors_array(cluster.get(), kApiOffsetCommit, many.size(),
                                              many.data());
    }
    // The host commits the final positions of the revoked partitions, as a real host does, and
    // answers the drain OK whatever the commit gave (Pipeline::drain_partitions).
    ErrorText error;
    commits.push_back(a.plugin().commit(a.raw(), ps, n, &error.error));
    if (refuse) rd_kafka_mock_clear_request_errors(cluster.get(), kApiOffsetCommit);
    return SLUICE_OK;
  };
  FakeWriter out_a;
  poll_until(a, out_a, 400, 20s);
  REQUIRE(out_a.records.size() == 400);

  FakeHost host_b;
  Instance b(SLUICE_KIND_SOURCE, source_config(cluster, "shared", "g6", kFastGroup), host_b);
  REQUIRE(b.create_status() == SLUICE_OK);
  FakeWriter out_b;
  const auto deadline = Clock::now() + 30s;
  while (host_a.drains == 0 && Clock::now() < deadline) {
    REQUIRE(a.poll(out_a, 100, 100) == SLUICE_OK);
    REQUIRE(b.poll(out_b, 100, 100) == SLUICE_OK);
  }
  INFO(host_a.all_logs());
  INFO(host_b.all_logs());
  REQUIRE(host_a.drains > 0);
  REQUIRE(!commits.empty());
  CHECK(!drained.empty());
  const bool taken = commits.front() == SLUICE_OK;
  if (refuse) CHECK_FALSE(taken);
  // The mock coordinator also refuses now and then on its own (it is still in the join phase
  // that waits for this member, which a real broker's generation check allows): then the exact
  // handover cannot be asked for, and the at-least-once checks below stand in.
  if (!refuse && !taken)
    MESSAGE("the mock coordinator refused the drain's commit by itself: checking no loss only");
  for (const auto& [topic, partition, offset] : drained) {
    CHECK(offset >= 0);  // a had taken records from every partition
    if (taken) CHECK(committed_offset(cluster, "g6", topic, partition) == offset + 1);
  }
  // The handover takes the mock coordinator one or more rebalance rounds of about 5 s each:
  // 4-10 s on a quiet machine, up to 20 s seen on a loaded one (it had shared the 30 s above).
  const auto handover = Clock::now() + 60s;
  while (!host_b.logged(SLUICE_LOG_INFO, "assigned shared[") && Clock::now() < handover) {
    REQUIRE(a.poll(out_a, 100, 100) == SLUICE_OK);
    REQUIRE(b.poll(out_b, 100, 100) == SLUICE_OK);
  }
  REQUIRE(host_b.logged(SLUICE_LOG_INFO, "assigned shared["));
  // b starts where a's commit left the partitions: after a taken commit nothing of the first 400
  // comes again; after a refused one, what a read of the moved partitions comes again. Either
  // way every new record arrives.
  produce_values(cluster, "shared", 400, 440);
  std::set<std::string> values;
  const auto until = Clock::now() + 20s;
  while (values.size() < 440 && Clock::now() < until) {
    REQUIRE(a.poll(out_a, 100, 100) == SLUICE_OK);
    REQUIRE(b.poll(out_b, 100, 100) == SLUICE_OK);
    values.clear();
    for (const auto& r : out_a.records) values.insert(*r.value);
    for (const auto& r : out_b.records) values.insert(*r.value);
  }
  CHECK(values.size() == 440);
  CHECK(!out_b.records.empty());
  if (taken) CHECK(out_a.records.size() + out_b.records.size() == 440);
  if (!taken) CHECK(out_a.records.size() + out_b.records.size() > 440);
}

// ------------------------------------------------------------------------------------------
// Exactly-once: a source and sink paired the way the host pairs them for `delivery:
// exactly_once` (the key exactly_once_pipeline), run by a small host loop that puts every
// polled batch at once, so all records are done whenever the source drains.

namespace {

constexpr int16_t kApiAddOffsetsToTxn = 25;
constexpr int16_t kApiEndTxn = 26;
constexpr int16_t kApiTxnOffsetCommit = 28;

class ExactlyOncePipeline {
 public:
  // SIZING: the source's transaction setting, as JSON members.
  ExactlyOncePipeline(const MockCluster& cluster, const std::string& name,
                      const std::string& sizing = R"("transaction_interval_ms":50)")
      : sink_(SLUICE_KIND_SINK,
              sink_config(cluster, "out",
                          R"(,"exactly_once_pipeline":")" + name + R"(","transactional_id":")" +
                              name + R"(")"),
              host_),
        source_(SLUICE_KIND_SOURCE,
                source_config(cluster, "in", name + "-group",
                              R"(,"exactly_once_pipeline":")" + name + R"(",)" + sizing),
                host_) {
    REQUIRE_MESSAGE(sink_.create_status() == SLUICE_OK, sink_.create_error().text());
    REQUIRE_MESSAGE(source_.create_status() == SLUICE_OK, source_.create_error().text());
  }

  // One poll and the put of what it gave.
  sluice_status step(ErrorText& error) {
    FakeWriter out;
    sluice_status status = source_.poll(out, 200, 100, &error);
    if (status != SLUICE_OK || out.records.empty()) return status;
    std::vector<std::string> values;
    for (const auto& r : out.records) values.push_back(r.value.value_or(""));
    RecordBatch batch(std::move(values));
    FakeWriter rejects;
    status = sink_.put(batch.records, rejects, &error);
    REQUIRE_MESSAGE(rejects.rejects.empty(), rejects.rejects.front().second);
    return status;
  }

  // Steps until the source committed transactions holding `total` records.
  void run_until_committed(int64_t total) {
    const auto deadline = Clock::now() + 60s;
    while (Clock::now() < deadline && committed_records() < total) {
      ErrorText error;
      const auto status = step(error);
      REQUIRE_MESSAGE(status == SLUICE_OK, error.text());
    }
    INFO("log:\n" << host_.all_logs());
    // Each input record in exactly one committed transaction: none lost, none twice.
    CHECK(committed_records() == total);
  }

  // The records of every committed transaction, from the source's debug log. (librdkafka's
  // mock cluster neither stores TxnOffsetCommit offsets nor writes abort markers, so the broker
  // side cannot tell; tests/integration/kafka/exactly_once_crash.sh checks it on a real one.)
  int64_t committed_records() {
    std::lock_guard lock(host_.mutex);
    int64_t sum = 0;
    const std::string marker = "transaction committed: ";
    for (const auto& [level, text] : host_.logs)
      if (auto at = text.find(marker); at != std::string::npos)
        sum += std::stoll(text.substr(at + marker.size()));
    return sum;
  }

  FakeHost& host() { return host_; }

 private:
  FakeHost host_;
  Instance sink_;
  Instance source_;
};

// Topics "in" and "out" with PARTITIONS partitions; "in" holds the values 0..COUNT-1.
void seed_topics(MockCluster& cluster, int partitions, int count) {
  cluster.create_topic("in", partitions);
  cluster.create_topic("out", partitions);
  produce_values(cluster, "in", 0, count);
}

// The output: every input value, and with `exact` each once. (The mock cluster keeps the
// records of aborted transactions visible, so only a run without aborts can be exact.)
void check_output(const MockCluster& cluster, int count, int partitions, bool exact) {
  const auto values = read_values(cluster, "out", partitions, static_cast<size_t>(count));
  std::map<std::string, int> seen;
  for (const auto& v : values) ++seen[v];
  int missing = 0;
  int duplicated = 0;
  for (int i = 0; i < count; ++i) {
    const int n = seen[std::to_string(i)];
    if (n == 0) ++missing;
    if (n > 1) duplicated += n - 1;
  }
  CHECK(missing == 0);
  if (!exact) return;
  CHECK(duplicated == 0);
  CHECK(values.size() == static_cast<size_t>(count));
}

}  // namespace

TEST_CASE("exactly once: retriable errors on produce, AddOffsetsToTxn, TxnOffsetCommit, EndTxn") {
  MockCluster cluster(1);
  seed_topics(cluster, 4, 2000);
  ExactlyOncePipeline pipeline(cluster, "eos-retriable");

  // Two retriable errors on each request of a transaction's life.
  const std::vector<std::tuple<int16_t, rd_kafka_resp_err_t, rd_kafka_resp_err_t>> faults = {
      {kApiProduce, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
       RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT},
      {kApiAddOffsetsToTxn, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
       RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS},
      {kApiTxnOffsetCommit, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
       RD_KAFKA_RESP_ERR_NOT_COORDINATOR},
      {kApiEndTxn, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
       RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS},
  };
  for (const auto& [api, first, second] : faults)
    rd_kafka_mock_push_request_errors(cluster.get(), api, 2, first, second);
  pipeline.run_until_committed(2000);
  CHECK_FALSE(pipeline.host().logged(SLUICE_LOG_WARN, "aborting the transaction"));
  check_output(cluster, 2000, 4, true);
}

TEST_CASE("exactly once: abortable errors abort the transaction and rewind; nothing is lost") {
  struct Fault {
    const char* what;
    int16_t api;
    rd_kafka_resp_err_t error;
  };
  // A refused offset commit (stale generation, KIP-447), and a record the producer cannot
  // deliver: either way the transaction cannot commit.
  for (const Fault& fault :
       {Fault{"TxnOffsetCommit", kApiTxnOffsetCommit, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION},
        Fault{"Produce", kApiProduce, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED}}) {
    CAPTURE(fault.what);
    MockCluster cluster(1);
    seed_topics(cluster, 4, 2000);
    ExactlyOncePipeline pipeline(cluster, std::string("eos-abort-") + fault.what);
    rd_kafka_mock_push_request_errors(cluster.get(), fault.api, 1, fault.error);
    pipeline.run_until_committed(2000);
    CHECK(pipeline.host().logged(SLUICE_LOG_WARN, "aborting the transaction"));
    CHECK(pipeline.host().logged(SLUICE_LOG_INFO, "rewound"));
    check_output(cluster, 2000, 4, false);
  }
}

TEST_CASE("exactly once: a delivery failing after put returned aborts the open transaction") {
  // put returns once librdkafka has the records; the broker refuses one produce request after
  // that. Its delivery report marks the open transaction failed with the broker's reason, so
  // the source aborts it at its next poll (not at its commit) and consumes its input again.
  // (Without the report, only a later put would notice, by librdkafka refusing it with
  // "Erroneous state", and a transaction whose last put had returned would run to its end.)
  // The steps are paced (200 records each 20 ms) so the report comes while the source still
  // has input to hand on.
  MockCluster cluster(1);
  seed_topics(cluster, 4, 20000);
  // Transactions of 20 s: they end on the failure or when the input ran dry (after 2 s).
  ExactlyOncePipeline pipeline(cluster, "eos-late-failure", R"("transaction_interval_ms":20000)");
  rd_kafka_mock_push_request_errors(cluster.get(), kApiProduce, 1,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  const auto deadline = Clock::now() + 30s;
  while (!pipeline.host().logged(SLUICE_LOG_INFO, "rewound") && Clock::now() < deadline) {
    ErrorText error;
    const auto status = pipeline.step(error);
    REQUIRE_MESSAGE(status == SLUICE_OK, error.text());
    std::this_thread::sleep_for(20ms);
  }
  {
    INFO("log:\n" << pipeline.host().all_logs());
    CHECK(pipeline.host().logged(
        SLUICE_LOG_WARN,
        "aborting the transaction: producing to out failed: Broker: Topic authorization failed"));
    REQUIRE(pipeline.host().logged(SLUICE_LOG_INFO, "rewound"));
    CHECK(pipeline.committed_records() == 0);
  }
  // The input is consumed again and committed whole.
  pipeline.run_until_committed(20000);
  check_output(cluster, 20000, 4, false);
}

TEST_CASE("exactly once: the open transaction commits once the input ran dry") {
  // Sized toward 20 s: with all input read, the transaction commits once it is a tenth of that
  // old instead of holding the output back until its clock runs out.
  MockCluster cluster(1);
  seed_topics(cluster, 4, 500);
  ExactlyOncePipeline pipeline(cluster, "eos-dry", R"("transaction_target_ms":20000)");
  pipeline.run_until_committed(500);
  CHECK(pipeline.host().logged(SLUICE_LOG_DEBUG, "ended as the input ran dry"));
  CHECK_FALSE(pipeline.host().logged(SLUICE_LOG_WARN, "aborting the transaction"));
  check_output(cluster, 500, 4, true);
}

TEST_CASE("exactly once: a fenced producer stops the pipeline with a clear message") {
  MockCluster cluster(1);
  seed_topics(cluster, 2, 500);
  ExactlyOncePipeline pipeline(cluster, "eos-fenced");

  rd_kafka_mock_push_request_errors(cluster.get(), kApiEndTxn, 1,
                                    RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
  const auto deadline = Clock::now() + 30s;
  sluice_status status = SLUICE_OK;
  ErrorText error;
  while (status == SLUICE_OK && Clock::now() < deadline) status = pipeline.step(error);
  CHECK(status == SLUICE_FATAL);
  CHECK_MESSAGE(error.text().find("fenced") != std::string::npos, error.text());
  // Nothing of the fenced transaction was committed.
  CHECK(pipeline.committed_records() == 0);
}
