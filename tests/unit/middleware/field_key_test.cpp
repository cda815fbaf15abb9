// The ordering key of `ordering: field`, read in one streaming pass, against a parsed document.
#include "middleware/field_key.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>

using sluice::middleware::FieldPaths;
using sluice::middleware::json_field_key;

namespace {

// The reference: parse the whole document, take the first path with a value that is not null.
std::optional<std::string> from_document(const std::string& json, const FieldPaths& paths) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
  if (doc.HasParseError()) return std::nullopt;
  for (const auto& path : paths) {
    const rapidjson::Value* v = &doc;
    for (const auto& part : path) {
      if (!v->IsObject()) {
        v = nullptr;
        break;
      }
      auto it = v->FindMember(rapidjson::StringRef(part.data(), part.size()));
      v = it == v->MemberEnd() ? nullptr : &it->value;
      if (v == nullptr) break;
    }
    if (v == nullptr || v->IsNull()) continue;
    if (v->IsString()) return std::string(v->GetString(), v->GetStringLength());
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v->Accept(w);
    return std::string(sb.GetString(), sb.GetSize());
  }
  return std::nullopt;
}

const FieldPaths kDebezium = {{"payload", "after", "account_id"},
                              {"payload", "before", "account_id"},
                              {"after", "account_id"},
                              {"before", "account_id"}};

// Random JSON over keys a, b, c (distinct within an object), at most `depth` deep.
std::string random_json(std::mt19937& rng, int depth) {
  const int kind = static_cast<int>(rng() % (depth > 0 ? 9 : 6));
  switch (kind) {
    case 0:
      return "null";
    case 1:
      return rng() % 2 ? "true" : "false";
    case 2:
      return std::to_string(static_cast<int64_t>(rng() % 2000) - 1000);
    case 3:
      return std::to_string(rng() % 100) + ".5e" + std::to_string(rng() % 30);
    case 4:
      return "\"s" + std::to_string(rng() % 10) + "\\u00e9\\\"\"";
    case 5:
      return "18446744073709551615";
    case 6: {
      std::string out = "[";
      for (uint32_t i = 0, n = rng() % 3; i < n; ++i)
        out += (i ? "," : "") + random_json(rng, depth - 1);
      return out + "]";
    }
    default: {
      std::string out = "{";
      bool first = true;
      for (const char* key : {"a", "b", "\\u0063"}) {  // "\u0063" is c
        if (rng() % 3 == 0) continue;
        out += (first ? "\"" : ",\"") + std::string(key) + "\":" + random_json(rng, depth - 1);
        first = false;
      }
      return out + "}";
    }
  }
}

}  // namespace

TEST_CASE("field key: the first path with a value that is not null, as its text or compact JSON") {
  const std::string insert =
      R"({"schema":{"type":"struct"},"payload":{"before":null,"after":{"account_id":"A-7","n":1}}})";
  CHECK(json_field_key(insert, kDebezium) == "A-7");
  // A delete: after is null, so before's id.
  const std::string del = R"({"payload":{"before":{"account_id":42},"after":null,"op":"d"}})";
  CHECK(json_field_key(del, kDebezium) == "42");
  // Without the envelope.
  CHECK(json_field_key(R"({"before":{"account_id":1.5},"after":null})", kDebezium) == "1.5");
  // Objects, arrays and booleans are keys as compact JSON; a null moves on to the next path.
  const FieldPaths two = {{"k"}, {"j"}};
  CHECK(json_field_key(R"({"k": {"x": [1, 2, {"y": null}]}, "j": 1})", two) ==
        R"({"x":[1,2,{"y":null}]})");
  CHECK(json_field_key(R"({"k": null, "j": true})", two) == "true");
  CHECK(json_field_key(R"({"k": [], "j": true})", two) == "[]");
  // No path has a value; the path goes through an array; not JSON; not an object.
  CHECK_FALSE(json_field_key(R"({"payload":{"after":null,"before":null}})", kDebezium));
  CHECK_FALSE(json_field_key(R"({"payload":[{"after":{"account_id":1}}]})", kDebezium));
  CHECK_FALSE(json_field_key(R"({"after":{"account_id":)", kDebezium));
  CHECK_FALSE(json_field_key(R"("after")", kDebezium));
  CHECK_FALSE(json_field_key("", kDebezium));
}

TEST_CASE("field key: a better path found later wins; a worse one does not replace it") {
  const FieldPaths paths = {{"a", "b"}, {"a"}, {"c"}};
  // "c" comes first in the text, then "a" (path 1) holding "b" (path 0): path 0 wins.
  CHECK(json_field_key(R"({"c": 3, "a": {"b": {"z": 1}, "q": 2}})", paths) == R"({"z":1})");
  // "a" without "b": the whole of "a".
  CHECK(json_field_key(R"({"c": 3, "a": {"q": [2]}})", paths) == R"({"q":[2]})");
  // A repeated key: the first one counts, as in a parsed document.
  CHECK(json_field_key(R"({"c": 1, "c": 2})", FieldPaths{{"c"}}) == "1");
}

TEST_CASE("field key: once the first path is read, the rest of the text is not needed") {
  // The text after the key is cut short: a full parse would refuse it, the key is still read.
  CHECK(json_field_key(R"({"payload":{"after":{"account_id":"x"}}, "tail": [1, 2)", kDebezium) ==
        "x");
  // Not so for a lower path: the first might still come, so the text must be whole.
  CHECK_FALSE(json_field_key(R"({"before":{"account_id":"x"}, "tail": [1, 2)", kDebezium));
}

TEST_CASE("field key: deep nesting does not overflow the stack") {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  CHECK_FALSE(json_field_key(deep, kDebezium));
  const std::string deep_object =
      R"({"after":{"account_id":)" + std::string(100000, '[') + std::string(100000, ']') + "}}";
  CHECK(json_field_key(deep_object, kDebezium)->size() == 200000);
}

TEST_CASE("field key: the same key as a parsed document over 20,000 random documents") {
  std::mt19937 rng(20261201);
  const std::vector<FieldPaths> path_sets = {
      {{"a"}}, {{"a", "b"}, {"c"}}, {{"c", "c", "a"}, {"b", "a"}, {"a"}}, {{"b"}, {"a", "c"}}};
  int with_key = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string json = random_json(rng, 4);
    const FieldPaths& paths = path_sets[static_cast<size_t>(i) % path_sets.size()];
    const auto expected = from_document(json, paths);
    CAPTURE(json);
    REQUIRE(json_field_key(json, paths) == expected);
    with_key += expected.has_value();
  }
  CHECK(with_key > 2000);  // the corpus does reach keys, not only misses
}
