// A small, safe expression language over one record, for the expression_filter and
// expression_router transforms: literals, field paths into the key, value and headers, the
// topic and position, comparisons, regex match, boolean logic. It reads the record and nothing
// else: no functions, no loops, no access to the host. docs/transforms.md describes it.
#pragma once

#include <rapidjson/document.h>

#include <deque>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/sdk.hpp"

namespace sluice::expression {

// A parse error at `column` (1-based) of the expression text.
class ExpressionError : public std::runtime_error {
 public:
  ExpressionError(size_t column, const std::string& message);
  size_t column() const { return column_; }

 private:
  size_t column_;
};

// The record one evaluation looks at; the key and value are parsed as JSON once, on first use
// (text that is not JSON is a string; a null key or a tombstone's value is null).
class RecordScope {
 public:
  explicit RecordScope(const RecordView& record) : record_(record) {}
  const RecordView& record() const { return record_; }
  const rapidjson::Value& key() { return parsed(key_, record_.has_key(), record_.key()); }
  const rapidjson::Value& value() { return parsed(value_, record_.has_value(), record_.value()); }
  // Keeps a value made during evaluation (the topic, a header, a number) alive for it.
  const rapidjson::Value& keep(rapidjson::Value v) { return temps_.emplace_back(std::move(v)); }

 private:
  const rapidjson::Value& parsed(std::optional<rapidjson::Document>& doc, bool present,
                                 std::string_view text);
  const RecordView& record_;
  std::optional<rapidjson::Document> key_, value_;
  std::deque<rapidjson::Value> temps_;
};

struct Node;

class Expression {
 public:
  // Throws ExpressionError for text that is not an expression.
  static Expression parse(std::string_view text);
  Expression(Expression&&) noexcept;
  Expression& operator=(Expression&&) noexcept;
  ~Expression();

  // Whether the expression is true for the record: only the boolean true is true (a missing
  // field, null, a number or a string is not).
  bool test(RecordScope& scope) const;

 private:
  explicit Expression(std::unique_ptr<Node> root);
  std::unique_ptr<Node> root_;
};

}  // namespace sluice::expression
