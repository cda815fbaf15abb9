// The `expression` module: expression_filter and expression_router, the safe counterparts of
// Debezium's scripting Filter and ContentBasedRouter (docs/transforms.md).
#include <sluice/sdk.hpp>
#include <string>
#include <vector>

#include "expression.hpp"

namespace {

using sluice::expression::Expression;
using sluice::expression::ExpressionError;
using sluice::expression::RecordScope;

// A config error at the option that holds the expression, saying where in it the problem is.
Expression parse_option(const std::string& text, const std::string& field) {
  try {
    return Expression::parse(text);
  } catch (const ExpressionError& e) {
    throw sluice::ConfigError(field, field + ": " + e.what() + " (at character " +
                                         std::to_string(e.column()) + " of the expression)");
  }
}

// Debezium's null.handling.mode: what happens to a tombstone (a record whose value is null).
enum class NullHandling { keep, drop, evaluate };

NullHandling null_handling(const sluice::Config& c) {
  const std::string mode = c.get_string("null.handling.mode", "keep");
  if (mode == "drop") return NullHandling::drop;
  if (mode == "evaluate") return NullHandling::evaluate;
  return NullHandling::keep;
}

void declare_null_handling(sluice::ConfigSchema& s) {
  s.string("null.handling.mode")
      .default_value("keep")
      .one_of({"keep", "drop", "evaluate"})
      .doc(
          "Tombstones (null value): keep passes them on unchanged, drop removes them, evaluate "
          "runs the expression on them too (Debezium's null.handling.mode).");
}

// A tombstone under keep or drop: forwarded or left out, and true; false for any other record
// (and for every record under evaluate), which the expression decides on.
bool passed_as_tombstone(NullHandling mode, size_t i, const sluice::RecordView& r,
                         sluice::Output& out) {
  if (r.has_value() || mode == NullHandling::evaluate) return false;
  if (mode == NullHandling::keep) out.forward(i, r);
  return true;
}

class ExpressionFilter final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("condition")
        .required()
        .doc("Keep the records for which this expression is true; drop the others.");
    declare_null_handling(s);
    s.validator(
        [](const sluice::Config& c) { parse_option(c.get_string("condition"), "condition"); });
    return s;
  }
  static std::string description() {
    return "Keeps the records an expression over key, value, headers and topic selects "
           "(Debezium's Filter without a scripting engine).";
  }

  ExpressionFilter(const sluice::Config& c, sluice::Host& /*host*/)
      : condition_(parse_option(c.get_string("condition"), "condition")),
        nulls_(null_handling(c)) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) {
      const sluice::RecordView r = in[i];
      if (passed_as_tombstone(nulls_, i, r, out)) continue;
      RecordScope scope(r);
      if (condition_.test(scope)) out.forward(i, r);
    }
  }

 private:
  Expression condition_;
  NullHandling nulls_;
};

struct Route {
  Expression condition;
  std::string topic;
};

std::vector<Route> parse_routes(const sluice::Config& c) {
  std::vector<Route> routes;
  const rapidjson::Value* list = c.find("routes");
  if (!list || !list->IsArray() || list->Empty())
    throw sluice::ConfigError("routes", "routes must be a list of {condition, topic}");
  for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
    const auto& r = (*list)[i];
    const std::string at = "routes." + std::to_string(i);
    if (!r.IsObject() || !r.HasMember("condition") || !r["condition"].IsString() ||
        !r.HasMember("topic") || !r["topic"].IsString() || r["topic"].GetStringLength() == 0 ||
        r.MemberCount() != 2)
      throw sluice::ConfigError(at, at + " must be {condition: EXPRESSION, topic: NAME}");
    routes.push_back(
        {parse_option(r["condition"].GetString(), at + ".condition"), r["topic"].GetString()});
  }
  return routes;
}

class ExpressionRouter final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.list("routes").required().doc(
        "[{condition: EXPRESSION, topic: NAME}, ...]: a record goes to the topic of the first "
        "route whose condition is true; a record no route matches keeps its topic.");
    declare_null_handling(s);
    s.validator([](const sluice::Config& c) { parse_routes(c); });
    return s;
  }
  static std::string description() {
    return "Sets a record's topic from the first of its routes whose expression is true "
           "(Debezium's ContentBasedRouter without a scripting engine).";
  }

  ExpressionRouter(const sluice::Config& c, sluice::Host& /*host*/)
      : routes_(parse_routes(c)), nulls_(null_handling(c)) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) {
      const sluice::RecordView r = in[i];
      if (passed_as_tombstone(nulls_, i, r, out)) continue;
      const Route* route = match(r);
      if (!route) {
        out.forward(i, r);
        continue;
      }
      sluice::OutRecord o = sluice::OutRecord::from(r);
      o.topic = route->topic;
      out.emit(i, o);
    }
  }

 private:
  const Route* match(const sluice::RecordView& r) const {
    RecordScope scope(r);
    for (const auto& route : routes_)
      if (route.condition.test(scope)) return &route;
    return nullptr;
  }

  std::vector<Route> routes_;
  NullHandling nulls_;
};

}  // namespace

SLUICE_MODULE("expression", "0.1.0", SLUICE_TRANSFORM(ExpressionFilter, "expression_filter"),
              SLUICE_TRANSFORM(ExpressionRouter, "expression_router"))
