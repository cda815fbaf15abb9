// Unit tests of the expression module: the language through expression_filter (fields, literals,
// comparisons, regex, logic, missing fields), tombstones and null keys under each
// null.handling.mode, expression_router's first-match routing, and parse errors.
#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

TestRecord record(std::optional<std::string> key, std::optional<std::string> value,
                  std::vector<std::pair<std::string, std::string>> headers = {}) {
  TestRecord r;
  r.topic = "orders";
  r.key = std::move(key);
  r.value = std::move(value);
  r.headers = std::move(headers);
  r.partition = 3;
  r.offset = 42;
  r.timestamp_ms = 1700000000000;
  return r;
}

// The input indexes of the records a filter with `config` keeps.
std::vector<size_t> kept(const std::string& config, const std::vector<TestRecord>& in) {
  Library lib(plugin_path("expression"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "expression_filter"), host, config);
  FakeWriter out;
  REQUIRE(t.process(in, out).ok());
  CHECK(out.rejects.empty());
  std::vector<size_t> indexes;
  for (const auto& r : out.records) indexes.push_back(r.input_index);
  return indexes;
}

// Whether `condition` is true for `r`.
bool holds(const std::string& condition, const TestRecord& r) {
  CAPTURE(condition);
  std::string escaped;
  for (char c : condition)
    escaped += c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
  return !kept(R"({"condition":")" + escaped + R"(","null.handling.mode":"evaluate"})", {r})
              .empty();
}

const TestRecord kOrder = record(
    R"({"id":7})",
    R"({"op":"u","after":{"id":7,"amount":250.5,"tags":["a","b"],"odd key":1},"email":null})",
    {{"source", "shop-1"}});

}  // namespace

TEST_CASE("expression fields: key, value paths, headers, topic and position") {
  CHECK(holds("key.id == 7", kOrder));
  CHECK(holds("value.after.id == 7.0", kOrder));  // numbers by value
  CHECK(holds("value.after.tags[1] == 'b'", kOrder));
  CHECK(holds("value.after['odd key'] == 1", kOrder));
  CHECK(holds("headers.source == 'shop-1' && headers['source'] == \"shop-1\"", kOrder));
  CHECK(holds("topic == 'orders' && partition == 3 && offset == 42", kOrder));
  CHECK(holds("timestamp >= 1700000000000", kOrder));
  CHECK(holds("value.after == value.after", kOrder));
}

TEST_CASE("expression comparisons, regex, logic; missing fields and unlike types are false") {
  CHECK(holds("value.after.amount > 100 && value.after.amount <= 250.5", kOrder));
  CHECK(holds("value.op < 'v' && value.op >= 'u'", kOrder));
  CHECK_FALSE(holds("value.op > 1", kOrder));   // a string and a number are not ordered
  CHECK_FALSE(holds("key.id == '7'", kOrder));  // 7 is not '7'
  CHECK(holds("key.id != '7'", kOrder));
  CHECK(holds("headers.source =~ '^shop-[0-9]+$'", kOrder));
  CHECK(holds("topic =~ 'rde'", kOrder));       // a match anywhere, as regex_search
  CHECK_FALSE(holds("key.id =~ '7'", kOrder));  // only strings match
  CHECK(holds("value.email == null && value.missing == null", kOrder));
  CHECK(holds("value.after.missing.deeper == null && value.after.tags[9] == null", kOrder));
  CHECK(holds("headers.absent == null", kOrder));
  CHECK_FALSE(holds("value.missing", kOrder));  // only the boolean true is true
  CHECK_FALSE(holds("value.after.amount", kOrder));
  CHECK(holds("not (value.op == 'c' or value.op == 'd') and !false", kOrder));
  CHECK(holds("(true || false) && !(1 == 2)", kOrder));
  CHECK_FALSE(holds("value.missing > 1 || value.missing < 1", kOrder));
}

TEST_CASE("expression values that are not JSON are strings; a null key is null") {
  const TestRecord text = record(std::nullopt, "plain text");
  CHECK(holds("value == 'plain text' && value =~ '^plain'", text));
  CHECK(holds("key == null", text));
  CHECK_FALSE(holds("key.id == 1", text));  // a path into a null key is null, not an error
  CHECK(holds("key.id == null", text));
  CHECK(holds("key == 'k'", record("k", "{}")));
}

TEST_CASE("expression_filter and tombstones: keep (default), drop, evaluate") {
  const std::vector<TestRecord> in = {record("a", R"({"op":"c"})"), record("b", std::nullopt),
                                      record(std::nullopt, std::nullopt),
                                      record(std::nullopt, R"({"op":"d"})")};
  const std::string cond = R"("condition":"value.op == 'c' || value == null")";
  CHECK(kept("{" + cond + "}", in) == std::vector<size_t>{0, 1, 2});
  CHECK(kept("{" + cond + R"(,"null.handling.mode":"keep"})", in) == std::vector<size_t>{0, 1, 2});
  CHECK(kept("{" + cond + R"(,"null.handling.mode":"drop"})", in) == std::vector<size_t>{0});
  CHECK(kept("{" + cond + R"(,"null.handling.mode":"evaluate"})", in) ==
        std::vector<size_t>{0, 1, 2});
  CHECK(kept(R"({"condition":"key != null","null.handling.mode":"evaluate"})", in) ==
        std::vector<size_t>{0, 1});
}

TEST_CASE("expression_router: the first true route sets the topic; none keeps it") {
  Library lib(plugin_path("expression"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "expression_router"), host,
             R"({"routes":[{"condition":"value.region == 'eu'","topic":"orders.eu"},
                           {"condition":"key == null","topic":"orders.keyless"},
                           {"condition":"value.region =~ 'e'","topic":"never.first"}]})");
  FakeWriter out;
  REQUIRE(t.process({record("a", R"({"region":"eu"})"), record(std::nullopt, R"({"region":"eu"})"),
                     record(std::nullopt, R"({"region":"us"})"), record("d", R"({"region":"us"})"),
                     record(std::nullopt, std::nullopt)},
                    out)
              .ok());
  REQUIRE(out.records.size() == 5);
  CHECK(out.records[0].topic == "orders.eu");
  CHECK(out.records[1].topic == "orders.eu");
  CHECK(out.records[2].topic == "orders.keyless");
  CHECK(out.records[3].topic == "orders");
  CHECK(out.records[4].topic == "orders");  // a tombstone is kept as it is
  CHECK_FALSE(out.records[4].value.has_value());
  CHECK(out.records[1].headers == std::vector<std::pair<std::string, std::string>>{});
  CHECK(out.records[0].key == "a");
}

TEST_CASE("expression parse errors name the option and the character") {
  const auto refused = [](const char* plugin, const std::string& config, const std::string& words) {
    check_refused("expression", plugin, config, words);
  };
  refused("expression_filter", R"({"condition":"value.a == (1"})", "expected ')' (at character 14");
  refused("expression_filter", R"({"condition":"value.a == "})", "expected a value");
  refused("expression_filter", R"({"condition":"valeu.a == 1"})", "unknown name 'valeu'");
  refused("expression_filter", R"({"condition":"value.a =~ value.b"})",
          "right side of =~ must be a string literal");
  refused("expression_filter", R"({"condition":"value.a =~ '('"})", "invalid regex");
  refused("expression_filter", R"({"condition":"value.a == 'x"})", "unterminated string");
  refused("expression_filter", R"({"condition":"headers.a.b == 1"})", "headers takes one name");
  refused("expression_filter", R"({"condition":"1 == 1 1"})", "unexpected '1'");
  refused("expression_filter",
          R"({"condition":")" + std::string(40, '(') + "true" + std::string(40, ')') + R"("})",
          "nested too deeply");
  refused("expression_router", R"({"routes":[{"condition":"true"}]})", "routes.0 must be");
  refused("expression_router",
          R"({"routes":[{"condition":"true","topic":"x"},{"condition":"(","topic":"y"}]})",
          "routes.1.condition");
}
