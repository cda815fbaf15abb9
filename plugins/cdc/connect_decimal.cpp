// Decoding of Connect Decimal and Debezium VariableScaleDecimal values (see the header).
#include "connect_decimal.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace sluice_cdc {

namespace {

constexpr std::string_view kDecimal = "org.apache.kafka.connect.data.Decimal";
constexpr std::string_view kVariableScaleDecimal = "io.debezium.data.VariableScaleDecimal";

int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::optional<std::vector<uint8_t>> base64_bytes(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::vector<uint8_t> out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    const int d = base64_digit(c);
    if (d < 0) return std::nullopt;
    bits = (bits << 6) | uint32_t(d);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(uint8_t(bits >> count));
      bits &= (1u << count) - 1;
    }
  }
  return out;
}

// Decimal digits of a big-endian unsigned magnitude, by repeated division by 10.
std::string magnitude_digits(std::vector<uint8_t> bytes) {
  std::string digits;
  auto nonzero = [&] {
    return std::any_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b; });
  };
  while (nonzero()) {
    uint32_t rest = 0;
    for (auto& b : bytes) {
      const uint32_t cur = (rest << 8) | b;
      b = uint8_t(cur / 10);
      rest = cur % 10;
    }
    digits.push_back(char('0' + rest));
  }
  if (digits.empty()) digits = "0";
  std::reverse(digits.begin(), digits.end());
  return digits;
}

std::string_view string_member(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString()
             ? std::string_view(it->value.GetString(), it->value.GetStringLength())
             : std::string_view();
}

// The scale of a Connect Decimal schema (a string parameter), or -1.
int decimal_scale(const rapidjson::Value& schema) {
  auto params = schema.FindMember("parameters");
  if (params == schema.MemberEnd() || !params->value.IsObject()) return -1;
  const std::string scale(string_member(params->value, "scale"));
  char* end = nullptr;
  const long s = std::strtol(scale.c_str(), &end, 10);
  return scale.empty() || *end != '\0' || s < 0 || s > 1000 ? -1 : int(s);
}

}  // namespace

std::optional<std::string> decode_connect_decimal(std::string_view base64, int scale) {
  if (scale < 0) return std::nullopt;
  auto bytes = base64_bytes(base64);
  if (!bytes) return std::nullopt;
  const bool negative = !bytes->empty() && (bytes->front() & 0x80);
  if (negative) {
    // Two's complement: invert and add one to get the magnitude.
    for (auto& b : *bytes) b = uint8_t(~b);
    for (auto it = bytes->rbegin(); it != bytes->rend(); ++it)
      if (++*it != 0) break;
  }
  std::string digits = magnitude_digits(std::move(*bytes));
  if (scale > 0) {
    if (digits.size() <= size_t(scale)) digits.insert(0, size_t(scale) + 1 - digits.size(), '0');
    digits.insert(digits.size() - size_t(scale), 1, '.');
  }
  return negative ? "-" + digits : digits;
}

const rapidjson::Value* field_schema(const rapidjson::Value& struct_schema, std::string_view name) {
  if (!struct_schema.IsObject()) return nullptr;
  auto fields = struct_schema.FindMember("fields");
  if (fields == struct_schema.MemberEnd() || !fields->value.IsArray()) return nullptr;
  for (const auto& f : fields->value.GetArray())
    if (f.IsObject() && string_member(f, "field") == name) return &f;
  return nullptr;
}

std::string decode_decimal_fields(const rapidjson::Value& schema, rapidjson::Value& image,
                                  rapidjson::Document::AllocatorType& allocator) {
  if (!image.IsObject() || !schema.IsObject()) return {};
  auto fields = schema.FindMember("fields");
  if (fields == schema.MemberEnd() || !fields->value.IsArray()) return {};
  for (const auto& f : fields->value.GetArray()) {
    if (!f.IsObject()) continue;
    const std::string_view type = string_member(f, "name");
    if (type != kDecimal && type != kVariableScaleDecimal) continue;
    const std::string_view name = string_member(f, "field");
    auto v = image.FindMember(rapidjson::StringRef(name.data(), name.size()));
    if (v == image.MemberEnd() || v->value.IsNull()) continue;
    std::optional<std::string> text;
    if (type == kDecimal && v->value.IsString()) {
      text = decode_connect_decimal({v->value.GetString(), v->value.GetStringLength()},
                                    decimal_scale(f));
    } else if (type == kVariableScaleDecimal && v->value.IsObject()) {
      // {"scale": N, "value": base64}: NUMERIC without a declared scale.
      auto s = v->value.FindMember("scale");
      const std::string_view bytes = string_member(v->value, "value");
      if (s != v->value.MemberEnd() && s->value.IsInt() && !bytes.empty())
        text = decode_connect_decimal(bytes, s->value.GetInt());
    }
    if (!text)
      return "field '" + std::string(name) + "' is not a valid " + std::string(type) + " value";
    v->value.SetString(text->c_str(), rapidjson::SizeType(text->size()), allocator);
  }
  return {};
}

}  // namespace sluice_cdc
