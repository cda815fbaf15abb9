// Kafka Connect's decimal encodings, as the JSON converter writes them with schemas.enable=true:
// turned back into exact decimal text ("-12.50") that the projection and a reader can use.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>

namespace sluice_cdc {

// Base64 of a big-endian two's-complement unscaled integer, with `scale` digits after the
// point (org.apache.kafka.connect.data.Decimal, Debezium's decimal.handling.mode=precise).
// nullopt when the text is not base64 or the scale is negative.
std::optional<std::string> decode_connect_decimal(std::string_view base64, int scale);

// Replaces, in `image` (a struct's value: before, after or a key), every field that `schema` (the
// struct's Connect schema) declares as a Connect Decimal or Debezium VariableScaleDecimal by its
// decimal text. Returns "" or the reason a field could not be decoded.
std::string decode_decimal_fields(const rapidjson::Value& schema, rapidjson::Value& image,
                                  rapidjson::Document::AllocatorType& allocator);

// The struct schema of field `name` in a Connect struct schema, or nullptr.
const rapidjson::Value* field_schema(const rapidjson::Value& struct_schema, std::string_view name);

}  // namespace sluice_cdc
