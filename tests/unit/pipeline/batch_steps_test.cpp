// The error policy of a batch's steps, in process over fake plugin tables: retries, tolerance,
// dead letter, circuit breaker, per-record retriable rejects, and plugin misbehaviour.
#include "pipeline/batch_steps.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/plugin_unavailable.hpp"
#include "fake_stage.hpp"

using namespace sluice;
using test::FakeStage;

namespace {

// A batch of records whose values are "r0", "r1", ...; headers optional per record.
struct Records {
  std::vector<std::string> values;
  std::vector<std::vector<sluice_header>> headers;
  std::vector<sluice_record> records;

  explicit Records(size_t n) : values(n), headers(n) {
    for (size_t i = 0; i < n; ++i) values[i] = "r" + std::to_string(i);
    rebuild();
  }
  void flag(size_t i, const char* key, const char* value) {
    headers[i].push_back({{reinterpret_cast<const uint8_t*>(key), std::strlen(key)},
                          {reinterpret_cast<const uint8_t*>(value), std::strlen(value)}});
    rebuild();
  }
  void rebuild() {
    records.assign(values.size(), sluice_record{});
    for (size_t i = 0; i < values.size(); ++i) {
      auto& r = records[i];
      r.struct_size = sizeof r;
      r.value = {reinterpret_cast<const uint8_t*>(values[i].data()), values[i].size()};
      r.topic = {reinterpret_cast<const uint8_t*>("t"), 1};
      r.offset = static_cast<int64_t>(i);
      r.headers = headers[i].data();
      r.header_count = headers[i].size();
    }
  }
};

// A pipeline's context around the steps: fast retries, a breaker, counts, and a record of fail().
struct Harness {
  core::CircuitBreakerSettings breaker_settings{false, 5, 60000};
  std::unique_ptr<pipeline::CircuitBreaker> breaker;
  pipeline::RecordCounts counts;
  pipeline::SecretList secrets;
  std::string failure;
  std::function<bool()> stopping = [] { return false; };
  pipeline::BatchContext context;

  explicit Harness(core::Tolerance tolerance) {
    context.pipeline = "t";
    context.errors.tolerance = tolerance;
    context.errors.retry = {1, 2, 2.0, 3, 0};
    context.secrets = &secrets;
    context.counts = &counts;
    context.stopping = [this] { return stopping(); };
    context.fail = [this](const std::string& reason) {
      if (failure.empty()) failure = reason;
    };
  }
  middleware::BatchOutcome run(const pipeline::StageSet& stages, const Records& batch) {
    breaker = std::make_unique<pipeline::CircuitBreaker>(breaker_settings);
    context.breaker = breaker.get();
    return pipeline::run_batch(context, stages, batch.records);
  }
};

pipeline::StageSet stages(std::initializer_list<const FakeStage*> transforms, const FakeStage& sink,
                          const FakeStage* dead_letter = nullptr) {
  pipeline::StageSet set;
  for (const auto* t : transforms) set.transforms.push_back(t->transform_call());
  set.sink = sink.sink_call();
  if (dead_letter) set.dead_letter = dead_letter->sink_call();
  return set;
}

// A call that always fails with `status` and `message`.
test::FakeCall always_failing(sluice_status status, std::string message) {
  return [status, message](const sluice_batch&, sluice_writer&, sluice_error& e) {
    return test::fail_with(e, status, message);
  };
}

// A sink that answers RETRY `n` times, then accepts.
test::FakeCall retry_then_accept(int n) {
  auto left = std::make_shared<int>(n);
  return [left](const sluice_batch&, sluice_writer&, sluice_error& e) {
    if ((*left)-- > 0) return test::fail_with(e, SLUICE_RETRY, "not yet");
    return SLUICE_OK;
  };
}

}  // namespace

TEST_CASE("a sink's RETRY is retried until the put succeeds, and every record is delivered") {
  Harness h(core::Tolerance::none);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", retry_then_accept(2));
  Records batch(4);
  auto out = h.run(stages({}, sink), batch);
  CHECK_FALSE(out.failed);
  CHECK(out.records_out == 4);
  CHECK(sink.calls() == 3);
  CHECK(h.counts.delivered == 4);
  CHECK(h.failure.empty());
  // The adapter counted every call and the records handed over.
  CHECK(sink.sink_counters().calls == 3);
  CHECK(sink.sink_counters().failed_calls == 2);
  CHECK(sink.sink_counters().records_in == 12);
  CHECK(sink.sink_counters().records_out == 4);
}

TEST_CASE("retries used up under tolerance all: every record is dead-lettered with the attempts") {
  Harness h(core::Tolerance::all);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", retry_then_accept(1000));
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(3);
  auto out = h.run(stages({}, sink, &dlq), batch);
  CHECK_FALSE(out.failed);
  CHECK(sink.calls() == 4);  // the first put and max_attempts (3) retries
  CHECK(h.counts.dead_lettered == 3);
  CHECK(h.counts.delivered == 0);
  REQUIRE(dlq.headers().size() == 3);
  for (const auto& hs : dlq.headers()) {
    CHECK(hs.at("sluice.error.attempts") == "4");
    CHECK(hs.at("sluice.error.stage") == "t.sink");
    CHECK(hs.at("sluice.error.plugin") == "fake");
    CHECK(hs.at("sluice.error.message") == "not yet");
  }
}

TEST_CASE("tolerance none: one rejected record stops the pipeline before the sink writes any") {
  Harness h(core::Tolerance::none);
  FakeStage reject_second(SLUICE_KIND_TRANSFORM, "t.transform0",
                          [](const sluice_batch& in, sluice_writer& out, sluice_error& e) {
                            test::forward_all(in, out, e);
                            out.reject(out.host_ctx, 1, SLUICE_ERROR, "bad field", 9);
                            return SLUICE_OK;
                          });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  Records batch(3);
  auto out = h.run(stages({&reject_second}, sink), batch);
  CHECK(out.failed);
  CHECK(sink.calls() == 0);
  CHECK(h.failure.find("t/0@1 rejected by t.transform0 (fake): bad field") != std::string::npos);
  CHECK(h.failure.find("errors.tolerance is none") != std::string::npos);
  CHECK(h.counts.delivered == 0);
}

TEST_CASE("tolerance all without a dead-letter sink: the failed record is counted as rejected") {
  Harness h(core::Tolerance::all);
  FakeStage reject_first(SLUICE_KIND_TRANSFORM, "t.transform0",
                         [](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                           for (size_t i = 1; i < in.count; ++i)
                             out.append(out.host_ctx, i, &in.records[i]);
                           out.reject(out.host_ctx, 0, SLUICE_ERROR, "no", 2);
                           return SLUICE_OK;
                         });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  Records batch(5);
  auto out = h.run(stages({&reject_first}, sink), batch);
  CHECK_FALSE(out.failed);
  CHECK(h.counts.rejected == 1);
  CHECK(h.counts.delivered == 4);
  CHECK(h.counts.filtered == 0);
  CHECK(out.errors == 1);
}

TEST_CASE("records a sink rejects as retriable are put again alone") {
  Harness h(core::Tolerance::none);
  FakeStage sink(
      SLUICE_KIND_SINK, "t.sink",
      [first = true](const sluice_batch&, sluice_writer& rejects, sluice_error&) mutable {
        if (first) rejects.reject(rejects.host_ctx, 2, SLUICE_RETRY, "busy", 4);
        first = false;
        return SLUICE_OK;
      });
  Records batch(4);
  auto out = h.run(stages({}, sink), batch);
  CHECK_FALSE(out.failed);
  REQUIRE(sink.seen().size() == 2);
  CHECK(sink.seen()[1] == std::vector<std::string>{"r2"});
  CHECK(out.records_out == 4);
  CHECK(h.counts.delivered == 4);
  CHECK(h.counts.sink_records == 4);
}

TEST_CASE("retriable rejects that never clear end as failures of those records only") {
  Harness h(core::Tolerance::all);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink",
                 [](const sluice_batch& in, sluice_writer& rejects, sluice_error&) {
                   for (size_t i = 0; i < in.count; ++i)
                     if (std::string_view(reinterpret_cast<const char*>(in.records[i].value.ptr),
                                          in.records[i].value.len) == "r1")
                       rejects.reject(rejects.host_ctx, i, SLUICE_RETRY, "busy", 4);
                   return SLUICE_OK;
                 });
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(3);
  h.run(stages({}, sink, &dlq), batch);
  CHECK(h.counts.delivered == 2);
  CHECK(h.counts.dead_lettered == 1);
  REQUIRE(dlq.seen().size() == 1);
  CHECK(dlq.seen()[0] == std::vector<std::string>{"r1"});
  CHECK(dlq.headers()[0].at("sluice.error.message") == "retriable rejects exhausted the retries");
}

TEST_CASE("an open circuit breaker holds the batch without calling the sink until the stop") {
  Harness h(core::Tolerance::all);
  h.breaker_settings = {true, 2, 600000};
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", retry_then_accept(1000));
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  // The stop comes a few checks after the second put (which opened the breaker): the batch
  // is waiting on the breaker by then.
  int checks_after_open = 0;
  h.stopping = [&] { return sink.calls() >= 2 && ++checks_after_open > 3; };
  Records batch(2);
  auto out = h.run(stages({}, sink, &dlq), batch);
  CHECK(sink.calls() == 2);  // the breaker opened after two failed puts; no call since
  CHECK(h.breaker->opened_total() == 1);
  // Stopped while waiting: not acked (read again after a restart), and no failure.
  CHECK(out.stopped);
  CHECK_FALSE(out.failed);
  CHECK(dlq.calls() == 0);
  CHECK(h.counts.dead_lettered == 0);
}

namespace {

// What an isolated stage's proxy does while no plugin process runs (its restarts failed): the
// call fails as RETRY, marked as the plugin being down (a fake plugin in process marks it the
// same way). `down` calls are refused so, then every record is passed on / accepted.
test::FakeCall down_then_up(int down) {
  auto left = std::make_shared<int>(down);
  return [left](const sluice_batch& in, sluice_writer& out, sluice_error& e) {
    if ((*left)-- > 0) {
      core::t_plugin_unavailable = true;
      return test::fail_with(e, SLUICE_RETRY, "the plugin process is not running");
    }
    return test::forward_all(in, out, e);
  };
}

}  // namespace

TEST_CASE("a plugin that is down holds the batch through its retries, then fails the run") {
  // With tolerance all, the retries spent used to fail every record, and the dead-letter sink
  // took them all (a probe saw 252k records dead-lettered in 8 s while a plugin restarted).
  for (const sluice_kind kind : {SLUICE_KIND_TRANSFORM, SLUICE_KIND_SINK}) {
    CAPTURE(kind);
    Harness h(core::Tolerance::all);
    FakeStage down(kind, kind == SLUICE_KIND_SINK ? "t.sink" : "t.transform0", down_then_up(1000));
    FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
    FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
    Records batch(4);
    auto out = h.run(
        kind == SLUICE_KIND_SINK ? stages({}, down, &dlq) : stages({&down}, sink, &dlq), batch);
    CHECK(down.calls() == 4);  // the first call and max_attempts (3) retries, never narrowed
    CHECK(out.failed);         // not acked: never committed, read again by the next run
    CHECK(dlq.calls() == 0);
    CHECK(h.counts.dead_lettered == 0);
    CHECK(h.counts.rejected == 0);
    CHECK(h.counts.delivered == 0);
    CAPTURE(h.failure);
    CHECK(h.failure.find("is not running and its retries are spent (4 attempts): the plugin "
                         "process is not running") != std::string::npos);
  }
}

TEST_CASE("a plugin that is down and back within the retries delivers every record") {
  Harness h(core::Tolerance::all);
  FakeStage down(SLUICE_KIND_TRANSFORM, "t.transform0", down_then_up(2));
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(4);
  auto out = h.run(stages({&down}, sink, &dlq), batch);
  CHECK_FALSE(out.failed);
  CHECK(down.calls() == 3);
  CHECK(h.counts.delivered == 4);
  CHECK(dlq.calls() == 0);
  CHECK(h.failure.empty());
}

TEST_CASE("a stop while a plugin is down leaves the batch unacked, with no failure") {
  Harness h(core::Tolerance::all);
  FakeStage down(SLUICE_KIND_TRANSFORM, "t.transform0", down_then_up(1000));
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  h.stopping = [&] { return down.calls() >= 2; };
  Records batch(4);
  auto out = h.run(stages({&down}, sink, &dlq), batch);
  CHECK(out.stopped);
  CHECK_FALSE(out.failed);
  CHECK(dlq.calls() == 0);
  CHECK(h.failure.empty());
}

TEST_CASE("FATAL from a transform stops the pipeline with the plugin's message") {
  Harness h(core::Tolerance::all);
  FakeStage fatal(SLUICE_KIND_TRANSFORM, "t.transform0", always_failing(SLUICE_FATAL, "disk gone"));
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  Records batch(2);
  auto out = h.run(stages({&fatal}, sink), batch);
  CHECK(out.failed);
  CHECK(h.failure == "transform 't.transform0' failed fatally: disk gone");
  CHECK(sink.calls() == 0);
}

TEST_CASE("records the source flagged or that are too large fail before any transform") {
  Harness h(core::Tolerance::all);
  h.context.errors.max_record_bytes = 5;
  FakeStage pass(SLUICE_KIND_TRANSFORM, "t.transform0", test::forward_all);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(3);
  batch.values[2] = "much too large";
  batch.flag(0, "sluice.error", "invalid JSON at byte 1");
  h.run(stages({&pass}, sink, &dlq), batch);
  REQUIRE(pass.seen().size() == 1);
  CHECK(pass.seen()[0] == std::vector<std::string>{"r1"});
  CHECK(h.counts.delivered == 1);
  CHECK(h.counts.dead_lettered == 2);
  REQUIRE(dlq.headers().size() == 2);
  CHECK(dlq.headers()[0].at("sluice.error.message") == "invalid JSON at byte 1");
  CHECK(dlq.headers()[1].at("sluice.error.message").find("max_record_bytes") != std::string::npos);
}

TEST_CASE("a record a transform rejects goes no further, whatever the plugin appended for it") {
  Harness h(core::Tolerance::all);
  // Two copies of each record; r1 is also rejected (before and after its copies are appended).
  FakeStage split(SLUICE_KIND_TRANSFORM, "t.transform0",
                  [](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                    for (size_t i = 0; i < in.count; ++i) {
                      if (i == 1) out.reject(out.host_ctx, i, SLUICE_ERROR, "no r1", 5);
                      out.append(out.host_ctx, i, &in.records[i]);
                      out.append(out.host_ctx, i, &in.records[i]);
                    }
                    return SLUICE_OK;
                  });
  // Rejects the second copy of r2 only: r2 fails as a whole, its first copy goes no further.
  FakeStage second(SLUICE_KIND_TRANSFORM, "t.transform1",
                   [](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                     int r2_seen = 0;
                     for (size_t i = 0; i < in.count; ++i) {
                       const std::string v(reinterpret_cast<const char*>(in.records[i].value.ptr),
                                           in.records[i].value.len);
                       if (v == "r2" && ++r2_seen == 2) {
                         out.reject(out.host_ctx, i, SLUICE_ERROR, "no r2", 5);
                         continue;
                       }
                       out.append(out.host_ctx, i, &in.records[i]);
                     }
                     return SLUICE_OK;
                   });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(4);
  auto out = h.run(stages({&split, &second}, sink, &dlq), batch);
  REQUIRE(second.seen().size() == 1);
  CHECK(second.seen()[0] == std::vector<std::string>{"r0", "r0", "r2", "r2", "r3", "r3"});
  REQUIRE(sink.seen().size() == 1);
  CHECK(sink.seen()[0] == std::vector<std::string>{"r0", "r0", "r3", "r3"});
  CHECK(out.records_out == 4);
  CHECK(h.counts.delivered == 2);
  CHECK(h.counts.dead_lettered == 2);
  CHECK(dlq.seen().size() == 1);
}

TEST_CASE("a transform appending with an input index outside its batch fails the batch") {
  Harness h(core::Tolerance::all);
  // Drops record 1 and, ignoring the host's refusal, appends its output under a bad index: the
  // record must not be counted as filtered.
  FakeStage bad(SLUICE_KIND_TRANSFORM, "t.transform0",
                [](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                  out.append(out.host_ctx, 0, &in.records[0]);
                  out.append(out.host_ctx, in.count + 5, &in.records[1]);
                  return SLUICE_OK;
                });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(2);
  auto out = h.run(stages({&bad}, sink, &dlq), batch);
  CHECK(out.filtered == 0);
  CHECK(h.counts.filtered == 0);
  CHECK(h.counts.dead_lettered == 2);
  CHECK(sink.calls() == 0);
  REQUIRE(dlq.headers().size() == 2);
  const std::string reason = dlq.headers()[0].at("sluice.error.message");
  CHECK(reason.find("t.transform0") != std::string::npos);
  CHECK(reason.find("(fake)") != std::string::npos);
  CHECK(reason.find("input_index 7") != std::string::npos);
}

namespace {

// A transform that forwards its batch (and rejects "r3" in every batch holding it), unless the
// batch holds one of `bad`: then it fails the whole call with ERROR, as a plugin that throws on a
// record and catches it around the batch would.
test::FakeCall fails_batches_holding(std::vector<std::string> bad) {
  return [bad](const sluice_batch& in, sluice_writer& out, sluice_error& e) {
    for (size_t i = 0; i < in.count; ++i) {
      const std::string v(reinterpret_cast<const char*>(in.records[i].value.ptr),
                          in.records[i].value.len);
      if (std::find(bad.begin(), bad.end(), v) != bad.end())
        return test::fail_with(e, SLUICE_ERROR, "cannot take " + v);
    }
    for (size_t i = 0; i < in.count; ++i) {
      const std::string v(reinterpret_cast<const char*>(in.records[i].value.ptr),
                          in.records[i].value.len);
      if (v == "r3")
        out.reject(out.host_ctx, i, SLUICE_ERROR, "no r3", 5);
      else
        out.append(out.host_ctx, i, &in.records[i]);
    }
    return SLUICE_OK;
  };
}

}  // namespace

TEST_CASE("a batch a transform fails with ERROR is narrowed to the record it fails on") {
  Harness h(core::Tolerance::all);
  FakeStage t(SLUICE_KIND_TRANSFORM, "t.transform0", fails_batches_holding({"r9"}));
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(16);
  h.run(stages({&t}, sink, &dlq), batch);
  REQUIRE(sink.seen().size() == 1);
  std::vector<std::string> expected;
  for (int i = 0; i < 16; ++i)
    if (i != 9 && i != 3) expected.push_back("r" + std::to_string(i));
  CHECK(sink.seen()[0] == expected);  // in input order
  CHECK(h.counts.delivered == 14);
  CHECK(h.counts.dead_lettered == 2);  // r3 (its reject) and r9
  REQUIRE(dlq.headers().size() == 2);
  std::vector<std::string> reasons = {dlq.headers()[0].at("sluice.error.message"),
                                      dlq.headers()[1].at("sluice.error.message")};
  std::sort(reasons.begin(), reasons.end());
  CHECK(reasons[0].find("cannot take r9") != std::string::npos);
  CHECK(reasons[1].find("no r3") != std::string::npos);
  CHECK(t.calls() <= 1 + 2 * 4);  // the batch, then two calls per halving of 16
}

TEST_CASE("a transform that fails every call fails the batch after one split, not per record") {
  Harness h(core::Tolerance::all);
  FakeStage t(SLUICE_KIND_TRANSFORM, "t.transform0", always_failing(SLUICE_ERROR, "store is down"));
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(1000);
  h.run(stages({&t}, sink, &dlq), batch);
  CHECK(t.calls() == 3);
  CHECK(sink.calls() == 0);
  CHECK(h.counts.dead_lettered == 1000);
  CHECK(dlq.headers()[0].at("sluice.error.message").find("store is down") != std::string::npos);
}

TEST_CASE("records failing in both halves of a range fail with that range, the rest go on") {
  Harness h(core::Tolerance::all);
  FakeStage t(SLUICE_KIND_TRANSFORM, "t.transform0", fails_batches_holding({"r1", "r2"}));
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(8);
  h.run(stages({&t}, sink, &dlq), batch);
  // [0,8) fails, [4,8) passes; [0,4) fails with both of its halves failing: r0..r3 fail.
  REQUIRE(sink.seen().size() == 1);
  CHECK(sink.seen()[0] == std::vector<std::string>{"r4", "r5", "r6", "r7"});
  CHECK(h.counts.dead_lettered == 4);
}

// A sink that lies about its rejects: one record rejected twice is one failure (dead-lettered
// once, counted once, and the stage's accepted count does not wrap), and a reject of a record
// the batch does not have fails the put as the plugin's error instead of being ignored.
TEST_CASE("a sink rejecting one record twice fails it once; counts stay exact") {
  Harness h(core::Tolerance::all);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink",
                 [](const sluice_batch&, sluice_writer& rejects, sluice_error&) {
                   for (int k = 0; k < 3; ++k)
                     rejects.reject(rejects.host_ctx, 1, SLUICE_ERROR, "no", 2);
                   return SLUICE_OK;
                 });
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(2);
  auto out = h.run(stages({}, sink, &dlq), batch);
  CHECK(out.records_out == 1);
  CHECK(h.counts.delivered == 1);
  CHECK(h.counts.dead_lettered == 1);
  CHECK(dlq.seen().size() == 1);
  CHECK(sink.sink_counters().records_out.load() == 1);
}

TEST_CASE("a sink rejecting a record outside its batch fails the put as its error") {
  Harness h(core::Tolerance::all);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink",
                 [](const sluice_batch& in, sluice_writer& rejects, sluice_error&) {
                   rejects.reject(rejects.host_ctx, in.count + 3, SLUICE_ERROR, "no", 2);
                   return SLUICE_OK;
                 });
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(2);
  h.run(stages({}, sink, &dlq), batch);
  CHECK(h.counts.delivered == 0);
  CHECK(h.counts.dead_lettered == 2);
  REQUIRE(dlq.headers().size() == 2);
  const std::string reason = dlq.headers()[0].at("sluice.error.message");
  CHECK(reason.find("rejected input_index 5 of a batch of 2 records") != std::string::npos);
}

TEST_CASE("a transform's output past the byte budget fails its batch with the reason") {
  Harness h(core::Tolerance::all);
  h.context.transform_output_budget = 4096;
  h.context.output_budget_rule = "a quarter of the memory limit";
  const std::string big(1000, 'x');
  FakeStage fanout(SLUICE_KIND_TRANSFORM, "t.transform0",
                   [&big](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                     sluice_record r = in.records[0];
                     r.value = {reinterpret_cast<const uint8_t*>(big.data()), big.size()};
                     for (int k = 0; k < 1000; ++k)
                       if (out.append(out.host_ctx, 0, &r) != SLUICE_OK) break;
                     return SLUICE_OK;
                   });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(1);
  h.run(stages({&fanout}, sink, &dlq), batch);
  CHECK(sink.calls() == 0);
  CHECK(h.counts.dead_lettered == 1);
  REQUIRE(dlq.headers().size() == 1);
  const std::string reason = dlq.headers()[0].at("sluice.error.message");
  // The budget is the call's input plus the growth budget.
  const size_t budget = 4096 + core::record_bytes(batch.records[0]);
  CHECK(reason.find("output over " + std::to_string(budget) + " bytes") != std::string::npos);
  CHECK(reason.find("a quarter of the memory limit") != std::string::npos);
}

TEST_CASE("a batch whose output passes the budget only as a whole runs again in smaller parts") {
  // Each input gives three 1,000-byte records: one input's output fits the budget of a call over
  // it (its input plus 4,096), eight inputs' does not. Every record must be delivered, in order,
  // through sink calls over parts of the batch; none dead-lettered for a size no record has.
  Harness h(core::Tolerance::all);
  h.context.transform_output_budget = 4096;
  const std::string big(1000, 'x');
  FakeStage fanout(SLUICE_KIND_TRANSFORM, "t.transform0",
                   [&big](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                     for (size_t i = 0; i < in.count; ++i)
                       for (int k = 0; k < 3; ++k) {
                         sluice_record r = in.records[i];
                         r.key = in.records[i].value;
                         r.value = {reinterpret_cast<const uint8_t*>(big.data()), big.size()};
                         if (out.append(out.host_ctx, i, &r) != SLUICE_OK) return SLUICE_OK;
                       }
                     return SLUICE_OK;
                   });
  FakeStage pass(SLUICE_KIND_TRANSFORM, "t.transform1", test::forward_all);
  std::vector<std::string> keys;
  FakeStage sink(SLUICE_KIND_SINK, "t.sink",
                 [&keys](const sluice_batch& in, sluice_writer&, sluice_error&) {
                   for (size_t i = 0; i < in.count; ++i)
                     keys.emplace_back(reinterpret_cast<const char*>(in.records[i].key.ptr),
                                       in.records[i].key.len);
                   return SLUICE_OK;
                 });
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(8);
  auto out = h.run(stages({&pass, &fanout}, sink, &dlq), batch);
  CHECK_FALSE(out.failed);
  CHECK(out.records_out == 24);
  CHECK(out.errors == 0);
  CHECK(h.counts.delivered == 8);
  CHECK(h.counts.dead_lettered == 0);
  CHECK(dlq.calls() == 0);
  CHECK(sink.calls() > 1);
  REQUIRE(keys.size() == 24);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(keys[i] == "r" + std::to_string(i / 3));
}

TEST_CASE("a single record whose output passes the budget still fails with the reason") {
  // The split stops at one source record: its output alone is too much, and it is dead-lettered
  // while the records beside it are delivered.
  Harness h(core::Tolerance::all);
  h.context.transform_output_budget = 4096;
  const std::string big(1000, 'x');
  FakeStage fanout(SLUICE_KIND_TRANSFORM, "t.transform0",
                   [&big](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                     for (size_t i = 0; i < in.count; ++i) {
                       const int copies = in.records[i].value.ptr[1] == '2' ? 50 : 1;
                       sluice_record r = in.records[i];
                       r.value = {reinterpret_cast<const uint8_t*>(big.data()), big.size()};
                       for (int k = 0; k < copies; ++k)
                         if (out.append(out.host_ctx, i, &r) != SLUICE_OK) return SLUICE_OK;
                     }
                     return SLUICE_OK;
                   });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(4);
  auto out = h.run(stages({&fanout}, sink, &dlq), batch);
  CHECK_FALSE(out.failed);
  CHECK(h.counts.delivered == 3);
  CHECK(h.counts.dead_lettered == 1);
  REQUIRE(dlq.seen().size() == 1);
  REQUIRE(dlq.seen()[0].size() == 1);
  CHECK(dlq.seen()[0][0] == "r2");
  CHECK(dlq.headers()[0].at("sluice.error.message").find("output over") != std::string::npos);
}

TEST_CASE("a transform passing on records as large as its budget never fails for its size") {
  Harness h(core::Tolerance::all);
  h.context.transform_output_budget = 100;
  FakeStage pass(SLUICE_KIND_TRANSFORM, "t.transform0", test::forward_all);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  Records batch(50);
  for (auto& v : batch.values) v = std::string(1000, 'v');
  batch.rebuild();
  auto out = h.run(stages({&pass}, sink), batch);
  CHECK(h.counts.delivered == 50);
  CHECK(out.records_out == 50);
  CHECK(pass.calls() == 1);
}

TEST_CASE("outputs that pass the budget only once a narrowed batch's parts are merged fail") {
  Harness h(core::Tolerance::all);
  // Each input "rN" (99 record bytes) gives one 1,497-byte record; any call holding r3 fails.
  // The halves fit their budgets (input + 3,000); merged, r2's output passes the whole batch's
  // (396 + 3,000): r2 must fail with that reason, not vanish as filtered.
  h.context.transform_output_budget = 3000;
  h.context.output_budget_rule = "the rule";
  const std::string big(1400, 'x');
  FakeStage grow(SLUICE_KIND_TRANSFORM, "t.transform0",
                 [&big](const sluice_batch& in, sluice_writer& out, sluice_error& e) {
                   for (size_t i = 0; i < in.count; ++i)
                     if (in.records[i].value.len == 2 && in.records[i].value.ptr[1] == '3')
                       return test::fail_with(e, SLUICE_ERROR, "cannot take r3");
                   for (size_t i = 0; i < in.count; ++i) {
                     sluice_record r = in.records[i];
                     r.value = {reinterpret_cast<const uint8_t*>(big.data()), big.size()};
                     if (out.append(out.host_ctx, i, &r) != SLUICE_OK) return SLUICE_OK;
                   }
                   return SLUICE_OK;
                 });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(4);
  h.run(stages({&grow}, sink, &dlq), batch);
  CHECK(h.counts.filtered == 0);
  CHECK(h.counts.delivered == 2);
  CHECK(h.counts.dead_lettered == 2);
  REQUIRE(dlq.headers().size() == 2);
  std::vector<std::string> reasons;
  for (const auto& hs : dlq.headers()) reasons.push_back(hs.at("sluice.error.message"));
  std::sort(reasons.begin(), reasons.end());
  CHECK(reasons[0] == "cannot take r3");
  CHECK(reasons[1].find("output over 3396 bytes") != std::string::npos);
  CHECK(reasons[1].find("once its parts were merged (the rule)") != std::string::npos);
}

TEST_CASE("a secret in a plugin's message never reaches a dead-letter header or a failure") {
  FakeStage leaky(SLUICE_KIND_TRANSFORM, "t.transform0",
                  [](const sluice_batch& in, sluice_writer& out, sluice_error&) {
                    const std::string m = "login as admin:hunter2 refused";
                    for (size_t i = 0; i < in.count; ++i)
                      out.reject(out.host_ctx, i, SLUICE_ERROR, m.data(), m.size());
                    return SLUICE_OK;
                  });
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  FakeStage dlq(SLUICE_KIND_SINK, "t.dead_letter", test::accept_all);
  Records batch(2);
  SUBCASE("dead-letter headers") {
    Harness h(core::Tolerance::all);
    h.secrets.add({"hunter2"});
    h.run(stages({&leaky}, sink, &dlq), batch);
    REQUIRE(dlq.headers().size() == 2);
    for (const auto& hs : dlq.headers())
      for (const auto& [k, v] : hs) CHECK(v.find("hunter2") == std::string::npos);
    CHECK(dlq.headers()[0].at("sluice.error.message").find("***") != std::string::npos);
  }
  SUBCASE("the failure reason under tolerance none") {
    Harness h(core::Tolerance::none);
    h.secrets.add({"hunter2"});
    h.run(stages({&leaky}, sink), batch);
    CHECK(h.failure.find("refused") != std::string::npos);
    CHECK(h.failure.find("hunter2") == std::string::npos);
  }
}

namespace {

// transform t.transform0 (plugin "crashy") -> sink, dead letters, under a quarantine of one
// journal entry of that transform over offsets first..last of topic "t".
struct Quarantined {
  Harness h{core::Tolerance::all};
  pipeline::Quarantine quarantine;
  FakeStage transform{SLUICE_KIND_TRANSFORM, "t.transform0", test::forward_all};
  FakeStage sink{SLUICE_KIND_SINK, "t.sink", test::accept_all};
  FakeStage dlq{SLUICE_KIND_SINK, "t.dead_letter", test::accept_all};

  Quarantined(const char* cause, uint64_t records, int64_t first, int64_t last)
      : quarantine(
            {{cause, "t", "t.transform0", "crashy", "process", records, {{"t", 0, first, last}}}}) {
    h.context.quarantine = &quarantine;
  }
  middleware::BatchOutcome run(size_t records) {
    return h.run(stages({&transform}, sink, &dlq), Records(records));
  }
};

}  // namespace

TEST_CASE("quarantine: a record a crash was narrowed to is dead-lettered before any plugin") {
  Quarantined q("SIGSEGV", 1, 2, 2);
  auto out = q.run(4);
  CHECK_FALSE(out.failed);
  CHECK(q.transform.seen() == std::vector<std::vector<std::string>>{{"r0", "r1", "r3"}});
  CHECK(q.h.counts.delivered == 3);
  CHECK(q.h.counts.dead_lettered == 1);
  const auto& dead = q.dlq.headers();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].at("sluice.error.offset") == "2");
  CHECK(dead[0].at("sluice.error.stage") == "t.transform0");
  CHECK(dead[0].at("sluice.error.message") ==
        "plugin 'crashy' crashed (SIGSEGV) on this record in an earlier run");
}

TEST_CASE("quarantine: a batch with records of a larger crashed call runs one record per call") {
  Quarantined q("SIGABRT", 2, 1, 2);
  auto out = q.run(3);
  CHECK_FALSE(out.failed);
  CHECK(out.records_out == 3);
  CHECK(q.transform.seen() == std::vector<std::vector<std::string>>{{"r0"}, {"r1"}, {"r2"}});
  CHECK(q.h.counts.delivered == 3);
  CHECK(q.dlq.calls() == 0);
}
