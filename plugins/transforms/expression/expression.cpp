// The expression language: a recursive-descent parser to a tree, and its evaluation.
#include "expression.hpp"

#include <charconv>
#include <cmath>

namespace sluice::expression {

ExpressionError::ExpressionError(size_t column, const std::string& message)
    : std::runtime_error(message), column_(column) {}

namespace {

constexpr size_t kMaxLength = 4096;  // an expression longer than this is a config mistake
constexpr int kMaxNesting = 32;      // parentheses and `not`s: keeps the parser's stack small

enum class Root { key, value, topic, headers, partition, offset, timestamp };
enum class Op { eq, ne, lt, le, gt, ge, match, and_, or_, not_ };

}  // namespace

// One node of the tree: a literal, a field path, or an operator over children.
struct Node {
  enum class Kind { literal, path, op } kind = Kind::literal;
  rapidjson::Document literal;  // Kind::literal
  Root root = Root::value;      // Kind::path
  std::vector<rapidjson::Value>
      segments;    // names (strings) and indexes (numbers), in `literal`'s allocator
  Op op = Op::eq;  // Kind::op
  std::unique_ptr<Node> lhs, rhs;   // `not` has only lhs
  std::optional<std::regex> regex;  // Op::match: the right side, compiled once
};

namespace {

// Tokens are read on demand from the text; `pos` is where the next one starts.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::unique_ptr<Node> parse() {
    if (text_.size() > kMaxLength)
      throw ExpressionError(1, "expression longer than " + std::to_string(kMaxLength));
    auto root = parse_or();
    skip_blanks();
    if (pos_ < text_.size()) fail("unexpected '" + std::string(1, text_[pos_]) + "'");
    return root;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw ExpressionError(pos_ + 1, message);
  }

  void skip_blanks() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }

  // Consumes `token` (an operator, or a word that is not the start of a longer name).
  bool accept(std::string_view token) {
    skip_blanks();
    if (text_.substr(pos_, token.size()) != token) return false;
    const bool word = std::isalpha(static_cast<unsigned char>(token[0]));
    const size_t end = pos_ + token.size();
    if (word && end < text_.size() && is_name_char(text_[end])) return false;
    pos_ = end;
    return true;
  }

  static bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  }

  static std::unique_ptr<Node> op_node(Op op, std::unique_ptr<Node> lhs,
                                       std::unique_ptr<Node> rhs = nullptr) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::op;
    n->op = op;
    n->lhs = std::move(lhs);
    n->rhs = std::move(rhs);
    return n;
  }

  std::unique_ptr<Node> parse_or() {
    auto lhs = parse_and();
    while (accept("||") || accept("or")) lhs = op_node(Op::or_, std::move(lhs), parse_and());
    return lhs;
  }

  std::unique_ptr<Node> parse_and() {
    auto lhs = parse_not();
    while (accept("&&") || accept("and")) lhs = op_node(Op::and_, std::move(lhs), parse_not());
    return lhs;
  }

  std::unique_ptr<Node> parse_not() {
    skip_blanks();
    const bool bang = pos_ + 1 < text_.size() && text_[pos_] == '!' && text_[pos_ + 1] != '=';
    if (bang || accept("not")) {
      if (bang) ++pos_;
      if (++depth_ > kMaxNesting) fail("nested too deeply");
      auto operand = parse_not();
      --depth_;
      return op_node(Op::not_, std::move(operand));
    }
    return parse_comparison();
  }

  std::unique_ptr<Node> parse_comparison() {
    auto lhs = parse_primary();
    static const std::pair<std::string_view, Op> kOps[] = {
        {"==", Op::eq}, {"!=", Op::ne}, {"=~", Op::match}, {"<=", Op::le},
        {">=", Op::ge}, {"<", Op::lt},  {">", Op::gt}};
    for (const auto& [token, op] : kOps) {
      if (!accept(token)) continue;
      skip_blanks();
      const size_t rhs_at = pos_;
      auto rhs = parse_primary();
      auto n = op_node(op, std::move(lhs), std::move(rhs));
      if (op == Op::match) compile_regex(*n, rhs_at);
      return n;
    }
    return lhs;
  }

  void compile_regex(Node& n, size_t at) {
    const Node& rhs = *n.rhs;
    if (rhs.kind != Node::Kind::literal || !rhs.literal.IsString())
      throw ExpressionError(at + 1, "the right side of =~ must be a string literal (a regex)");
    try {
      n.regex.emplace(rhs.literal.GetString(), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw ExpressionError(at + 1, std::string("invalid regex: ") + e.what());
    }
  }

  std::unique_ptr<Node> parse_primary() {
    skip_blanks();
    if (pos_ >= text_.size()) fail("expected a value, a field or '(' at the end");
    const char c = text_[pos_];
    if (c == '(') {
      ++pos_;
      if (++depth_ > kMaxNesting) fail("nested too deeply");
      auto inner = parse_or();
      --depth_;
      if (!accept(")")) fail("expected ')'");
      return inner;
    }
    auto n = std::make_unique<Node>();
    if (c == '\'' || c == '"') {
      const std::string s = parse_string();
      n->literal.SetString(s.c_str(), static_cast<rapidjson::SizeType>(s.size()),
                           n->literal.GetAllocator());
      return n;
    }
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      n->literal.SetDouble(parse_number());
      return n;
    }
    for (const bool b : {true, false})
      if (accept(b ? "true" : "false")) {
        n->literal.SetBool(b);
        return n;
      }
    if (accept("null")) return n;  // a Document starts as null
    return parse_path(std::move(n));
  }

  std::string parse_string() {
    const char quote = text_[pos_++];
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
      out += text_[pos_++];
    }
    if (pos_ >= text_.size()) fail("unterminated string");
    ++pos_;
    return out;
  }

  double parse_number() {
    const size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    while (pos_ < text_.size() && (std::isdigit(static_cast<unsigned char>(text_[pos_])) ||
                                   text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E'))
      ++pos_;
    double v = 0;
    const auto [end, ec] = std::from_chars(text_.data() + start, text_.data() + pos_, v);
    if (ec != std::errc() || end != text_.data() + pos_ || !std::isfinite(v)) {
      pos_ = start;
      fail("not a number");
    }
    return v;
  }

  std::string parse_name() {
    skip_blanks();
    const size_t start = pos_;
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    if (start == pos_) fail("expected a name");
    return std::string(text_.substr(start, pos_ - start));
  }

  std::unique_ptr<Node> parse_path(std::unique_ptr<Node> n) {
    static const std::pair<std::string_view, Root> kRoots[] = {{"key", Root::key},
                                                               {"value", Root::value},
                                                               {"topic", Root::topic},
                                                               {"headers", Root::headers},
                                                               {"partition", Root::partition},
                                                               {"offset", Root::offset},
                                                               {"timestamp", Root::timestamp}};
    const size_t at = pos_;
    const std::string root = parse_name();
    n->kind = Node::Kind::path;
    bool known = false;
    for (const auto& [name, r] : kRoots)
      if (name == root) n->root = r, known = true;
    if (!known) {
      pos_ = at;
      fail("unknown name '" + root +
           "' (a field path starts with key, value, headers, topic, partition, offset or "
           "timestamp; strings are quoted)");
    }
    auto& a = n->literal.GetAllocator();
    while (true) {
      if (accept(".")) {
        const std::string name = parse_name();
        n->segments.emplace_back(name.c_str(), static_cast<rapidjson::SizeType>(name.size()), a);
      } else if (accept("[")) {
        skip_blanks();
        if (pos_ < text_.size() && (text_[pos_] == '\'' || text_[pos_] == '"')) {
          const std::string name = parse_string();
          n->segments.emplace_back(name.c_str(), static_cast<rapidjson::SizeType>(name.size()), a);
        } else {
          n->segments.emplace_back(static_cast<int64_t>(parse_number()));
        }
        if (!accept("]")) fail("expected ']'");
      } else {
        break;
      }
    }
    if (n->root == Root::headers && n->segments.size() != 1)
      throw ExpressionError(at + 1, "headers takes one name: headers.NAME or headers['NAME']");
    return n;
  }

  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

const rapidjson::Value kNull;
const rapidjson::Value kTrue(true);
const rapidjson::Value kFalse(false);

const rapidjson::Value& boolean(bool b) { return b ? kTrue : kFalse; }

const rapidjson::Value& member(const rapidjson::Value& v, const rapidjson::Value& segment) {
  if (segment.IsString()) {
    if (!v.IsObject()) return kNull;
    const auto it = v.FindMember(segment);
    return it == v.MemberEnd() ? kNull : it->value;
  }
  if (!v.IsArray() || segment.GetInt64() < 0 || segment.GetInt64() >= v.Size()) return kNull;
  return v[static_cast<rapidjson::SizeType>(segment.GetInt64())];
}

rapidjson::Value string_ref(std::string_view s) {
  return rapidjson::Value(rapidjson::StringRef(s.data(), s.size()));
}

const rapidjson::Value& path_value(const Node& n, RecordScope& scope) {
  const RecordView& r = scope.record();
  switch (n.root) {
    case Root::topic:
      return scope.keep(string_ref(r.topic()));
    case Root::partition:
      return scope.keep(rapidjson::Value(r.partition()));
    case Root::offset:
      return scope.keep(rapidjson::Value(static_cast<int64_t>(r.offset())));
    case Root::timestamp:
      return scope.keep(rapidjson::Value(static_cast<int64_t>(r.timestamp_ms())));
    case Root::headers: {
      const auto h =
          r.header(std::string_view(n.segments[0].GetString(), n.segments[0].GetStringLength()));
      return h ? scope.keep(string_ref(*h)) : kNull;
    }
    default:
      break;
  }
  const rapidjson::Value* v = n.root == Root::key ? &scope.key() : &scope.value();
  for (const auto& segment : n.segments) v = &member(*v, segment);
  return *v;
}

// ==: numbers by value (1 == 1.0), everything else by type and content.
bool equal(const rapidjson::Value& a, const rapidjson::Value& b) {
  if (a.IsNumber() && b.IsNumber()) return a.GetDouble() == b.GetDouble();
  return a == b;
}

// <, <=, >, >=: numbers with numbers, strings with strings (bytewise); else false.
bool ordered(Op op, const rapidjson::Value& a, const rapidjson::Value& b) {
  int c = 0;
  if (a.IsNumber() && b.IsNumber()) {
    const double x = a.GetDouble(), y = b.GetDouble();
    c = x < y ? -1 : (x > y ? 1 : 0);
  } else if (a.IsString() && b.IsString()) {
    c = std::string_view(a.GetString(), a.GetStringLength())
            .compare(std::string_view(b.GetString(), b.GetStringLength()));
  } else {
    return false;
  }
  switch (op) {
    case Op::lt:
      return c < 0;
    case Op::le:
      return c <= 0;
    case Op::gt:
      return c > 0;
    default:
      return c >= 0;
  }
}

const rapidjson::Value& evaluate(const Node& n, RecordScope& scope);

bool truthy(const Node& n, RecordScope& scope) {
  const rapidjson::Value& v = evaluate(n, scope);
  return v.IsBool() && v.GetBool();
}

const rapidjson::Value& evaluate_op(const Node& n, RecordScope& scope) {
  switch (n.op) {
    case Op::and_:
      return boolean(truthy(*n.lhs, scope) && truthy(*n.rhs, scope));
    case Op::or_:
      return boolean(truthy(*n.lhs, scope) || truthy(*n.rhs, scope));
    case Op::not_:
      return boolean(!truthy(*n.lhs, scope));
    default:
      break;
  }
  const rapidjson::Value& a = evaluate(*n.lhs, scope);
  if (n.op == Op::match)
    return boolean(a.IsString() &&
                   std::regex_search(a.GetString(), a.GetString() + a.GetStringLength(), *n.regex));
  const rapidjson::Value& b = evaluate(*n.rhs, scope);
  if (n.op == Op::eq) return boolean(equal(a, b));
  if (n.op == Op::ne) return boolean(!equal(a, b));
  return boolean(ordered(n.op, a, b));
}

const rapidjson::Value& evaluate(const Node& n, RecordScope& scope) {
  switch (n.kind) {
    case Node::Kind::literal:
      return n.literal;
    case Node::Kind::path:
      return path_value(n, scope);
    default:
      return evaluate_op(n, scope);
  }
}

}  // namespace

const rapidjson::Value& RecordScope::parsed(std::optional<rapidjson::Document>& doc, bool present,
                                            std::string_view text) {
  if (!present) return kNull;
  if (!doc) {
    doc.emplace();
    // Iterative parsing: a deeply nested value cannot exhaust the stack.
    doc->Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
    if (doc->HasParseError()) {  // not JSON: the text itself, as a string
      doc.emplace();
      doc->SetString(text.data(), static_cast<rapidjson::SizeType>(text.size()),
                     doc->GetAllocator());
    }
  }
  return *doc;
}

Expression::Expression(std::unique_ptr<Node> root) : root_(std::move(root)) {}
Expression::Expression(Expression&&) noexcept = default;
Expression& Expression::operator=(Expression&&) noexcept = default;
Expression::~Expression() = default;

Expression Expression::parse(std::string_view text) { return Expression(Parser(text).parse()); }

bool Expression::test(RecordScope& scope) const { return truthy(*root_, scope); }

}  // namespace sluice::expression
