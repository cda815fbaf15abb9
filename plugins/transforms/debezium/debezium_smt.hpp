// What sluice's Debezium transforms (unwrap, outbox, table_router) share: the change-event
// envelope, Connect struct fields in the JsonConverter's JSON form, and Java's regex syntax.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "../smt/kafka_smt.hpp"

namespace sluice::dbz {

using sluice::ConfigError;
using smt::Data;
using smt::DataError;
using smt::Record;
using Alloc = rapidjson::Document::AllocatorType;

// Debezium's SmtManager.isValidEnvelope: the value has a schema whose name ends in ".Envelope"
// (so a value without a schema is never a change event, as in Debezium).
bool is_envelope(Data& value);

// The payload member `name` of a struct, or nullptr when it is absent or null.
rapidjson::Value* member(rapidjson::Value& payload, std::string_view name);

// A copy of the schema of a struct field without its "field" name: the schema of the value
// ExtractField makes of it.
rapidjson::Value value_schema(const rapidjson::Value& field, Alloc& a);

// Connect's SchemaUtil.copySchemaBasics(schema).optional(): type, name, version, doc and
// parameters, optional. Only primitive types: Connect cannot fill a copied struct, array or map.
rapidjson::Value optional_basics(const rapidjson::Value& schema, Alloc& a);

// Struct.getString: the field must be in the schema and hold a string or null.
std::optional<std::string> string_field(rapidjson::Value& schema, rapidjson::Value& payload,
                                        std::string_view name);

// A header value as Kafka's Values.convertToString writes a primitive; nullopt for null.
std::optional<std::string> header_text(const rapidjson::Value& v);

// A regex in Java's syntax, as far as topic routing uses it: named groups (?<name>...) and
// replacements with $n and ${name}.
class JavaRegex {
 public:
  // Throws ConfigError naming `key` when the pattern does not compile.
  JavaRegex(const std::string& pattern, const char* key);
  // Java's matcher.matches() then replaceFirst(replacement): the whole text must match.
  std::optional<std::string> replace_whole(const std::string& text,
                                           const std::string& replacement) const;

 private:
  std::regex regex_;
  std::vector<std::string> names_;  // names_[i]: the name of group i + 1, or ""
};

}  // namespace sluice::dbz
