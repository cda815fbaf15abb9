// YAML parsing with limits, and typed reads of YAML values.
#include "config/yaml_reader.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <sluice/safe_files.hpp>
#include <sstream>
#include <unordered_map>

#include "config/did_you_mean.hpp"
#include "config/substitution.hpp"
#include "core/utf8.hpp"

namespace sluice::config {
namespace {

Location position_in_text(std::string_view text, size_t offset, const std::string& file) {
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {file, line, static_cast<int>(offset - line_start) + 1};
}

// Pipeline files are text: a NUL or a byte that is not UTF-8 means a binary or mis-encoded file.
void check_is_text(std::string_view text, const std::string& file) {
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '\0')
      throw ConfigError(position_in_text(text, i, file),
                        "not a text file (contains a NUL byte); expected UTF-8 YAML");
    const size_t length = core::utf8_sequence_length(text, i);
    if (length == 0)
      throw ConfigError(position_in_text(text, i, file),
                        fmt::format("not valid UTF-8 (byte 0x{:02x}); expected UTF-8 YAML",
                                    static_cast<unsigned char>(text[i])));
    i += length;
  }
}

Location mark_location(const YAML::Mark& mark, const std::string& file) {
  if (mark.is_null()) return {file, 1, 1};
  return {file, mark.line + 1, mark.column + 1};
}

// Walks the parsed tree once, so later code can rely on the limits and on unique scalar keys.
void check_tree(const YAML::Node& node, int depth, size_t& nodes, const std::string& file) {
  if (++nodes > kMaxNodes)
    throw ConfigError(
        location_of(node, file),
        fmt::format("document expands to more than {} nodes (through aliases?)", kMaxNodes));
  if (depth > kMaxDepth)
    throw ConfigError(location_of(node, file),
                      fmt::format("nesting deeper than {} levels", kMaxDepth));
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      if (node.Scalar().size() > kMaxScalarBytes)
        throw ConfigError(location_of(node, file),
                          fmt::format("value of {} bytes is longer than the limit of 1 MiB",
                                      node.Scalar().size()));
      break;
    case YAML::NodeType::Sequence:
      for (const auto& child : node) check_tree(child, depth + 1, nodes, file);
      break;
    case YAML::NodeType::Map: {
      std::unordered_map<std::string, YAML::Mark> seen;
      for (const auto& kv : node) {
        const YAML::Node& key = kv.first;
        if (!key.IsScalar())
          throw ConfigError(
              location_of(key, file),
              fmt::format("mapping keys must be plain scalars, got {}", kind_name(key)));
        if (key.Scalar().size() > kMaxScalarBytes)
          throw ConfigError(location_of(key, file), "key is longer than the limit of 1 MiB");
        auto [it, inserted] = seen.emplace(key.Scalar(), key.Mark());
        if (!inserted)
          throw ConfigError(location_of(key, file),
                            fmt::format("duplicate key '{}' (first at line {})", key.Scalar(),
                                        it->second.line + 1));
        check_tree(kv.second, depth + 1, nodes, file);
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace

namespace {

// Notes where each document starts, and adds up the size the text has once every alias is
// expanded: yaml-cpp shares an aliased node, but everything that reads the tree afterwards
// (stage configs, JSON for the plugins) copies it once per alias. The size of a node is the
// bytes of its scalars plus one per node; an alias costs the size of its anchored node.
class DocumentScan final : public YAML::EventHandler {
 public:
  explicit DocumentScan(const std::string& file) : file_(file) {}

  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { add_node(mark, anchor, 1); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchored_.find(anchor);
    // An alias of a collection still open (its own anchor) has no size yet; the tree check
    // refuses it as too deep.
    add_node(mark, 0, it == anchored_.end() ? 1 : it->second);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    add_node(mark, anchor, value.size() + 1);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open_.push_back({anchor, 1});
  }
  void OnSequenceEnd() override { close_collection(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open_.push_back({anchor, 1});
  }
  void OnMapEnd() override { close_collection(); }

 private:
  struct Open {
    YAML::anchor_t anchor;
    size_t size;
  };

  void add_node(const YAML::Mark& mark, YAML::anchor_t anchor, size_t size) {
    if (anchor != 0) anchored_[anchor] = size;
    expanded_ += size;
    if (expanded_ > kMaxExpandedBytes)
      throw ConfigError(mark_location(mark, file_),
                        fmt::format("document expands to more than {} MiB through aliases (each "
                                    "alias counts the size of its anchored value again)",
                                    kMaxExpandedBytes >> 20));
    if (!open_.empty()) open_.back().size += size;
  }

  void close_collection() {
    if (open_.empty()) return;
    const Open done = open_.back();
    open_.pop_back();
    if (done.anchor != 0) anchored_[done.anchor] = done.size;
    if (!open_.empty()) open_.back().size += done.size;
  }

  const std::string& file_;
  size_t expanded_ = 0;
  std::vector<Open> open_;
  std::unordered_map<YAML::anchor_t, size_t> anchored_;
};

// Scans the text's events: refuses an alias expansion past kMaxExpandedBytes at the alias that
// crosses it, and returns where a second document starts, if the text has one. yaml-cpp 0.7's
// LoadAll never returns on a token no document can start with, such as a ',' outside a flow
// collection (found by fuzzing): the parser reports an empty document there without consuming
// the token, and LoadAll asks for the next one forever. A pipeline file holds one document, so
// at most two are asked for here.
std::optional<YAML::Mark> scan_documents(const std::string& text, const std::string& file) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentScan scan(file);
  for (int i = 0; i < 2 && parser.HandleNextDocument(scan); ++i) {
  }
  if (scan.marks.size() < 2) return std::nullopt;
  return scan.marks[1];
}

}  // namespace

YAML::Node parse_document(std::string_view text, const std::string& file_name) {
  if (text.size() > kMaxFileBytes)
    throw ConfigError({file_name, 1, 1}, fmt::format("file of {} bytes is larger than the limit "
                                                     "of 16 MiB",
                                                     text.size()));
  check_is_text(text, file_name);
  const std::string copy(text);
  YAML::Node document;
  std::optional<YAML::Mark> second;
  try {
    second = scan_documents(copy, file_name);
    document = YAML::Load(copy);
  } catch (const YAML::DeepRecursion& e) {
    throw ConfigError(mark_location(e.mark, file_name),
                      fmt::format("nesting deeper than {} levels", kMaxDepth));
  } catch (const YAML::ParserException& e) {
    throw ConfigError(mark_location(e.mark, file_name), "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(mark_location(e.mark, file_name), "YAML error: " + e.msg);
  }
  if (second) {
    const Location where = mark_location(*second, file_name);
    if (second->pos >= 0 && static_cast<size_t>(second->pos) < text.size() &&
        text[static_cast<size_t>(second->pos)] == ',')
      throw ConfigError(where, "YAML syntax error: ',' outside a flow collection ([...] or {...})");
    throw ConfigError(where,
                      "unexpected content after the first YAML document (check the indentation; "
                      "a pipeline file holds one document)");
  }
  size_t nodes = 0;
  check_tree(document, 1, nodes, file_name);
  return document;
}

namespace {

// A pipeline file decides what sluice reads, writes and runs: one another user could have
// written (planted in a shared folder, or left writable by everyone) would be theirs to decide.
int open_config_file(const std::filesystem::path& path, const Location& where) {
  std::string error;
  errno = 0;
  const int fd =
      sluice::files::open_checked(path.string(), O_RDONLY, 0, sluice::files::Use::state, error);
  if (fd < 0) {
    // open_checked leaves open(2)'s errno when the open failed; a refusal sets EACCES (and its
    // reason), an open through a refused link ELOOP.
    if (errno != 0 && errno != ELOOP && errno != EACCES)
      throw ConfigError(where, fmt::format("cannot read: {}", std::strerror(errno)));
    throw ConfigError(where, error);
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IWOTH) != 0) {
    ::close(fd);
    throw ConfigError(where,
                      "refused: every user can write this file, so any of them could "
                      "decide what sluice runs (chmod o-w it)");
  }
  return fd;
}

}  // namespace

std::string read_text_file(const std::filesystem::path& path) {
  const Location where{path.string(), 0, 0};
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError(where, "cannot read: it is a directory");
  const int fd = open_config_file(path, where);
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw ConfigError(where, "cannot read: I/O error");
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxFileBytes) {
      ::close(fd);
      throw ConfigError(where, "cannot read: larger than the limit of 16 MiB");
    }
  }
  ::close(fd);
  return text;
}

Location location_of(const YAML::Node& node, const std::string& file) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return {file, 0, 0};
  return {file, mark.line + 1, mark.column + 1};
}

std::string_view kind_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing (null)";
  }
}

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  return std::nullopt;
}

std::optional<int64_t> parse_int(std::string_view text) {
  bool negative = false;
  std::string_view digits = text;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int base = 10;
  if (digits.starts_with("0x") || digits.starts_with("0o")) {
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
  }
  if (digits.empty()) return std::nullopt;
  for (char c : digits) {
    const bool ok = base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                               : (c >= '0' && c < static_cast<char>('0' + base));
    if (!ok) return std::nullopt;
  }
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  if (negative) {
    if (magnitude > uint64_t{1} << 63) return std::nullopt;
    return magnitude == uint64_t{1} << 63 ? INT64_MIN : -static_cast<int64_t>(magnitude);
  }
  if (magnitude > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(magnitude);
}

std::optional<double> parse_double(std::string_view text) {
  std::string_view body = text;
  if (!body.empty() && body[0] == '+') body.remove_prefix(1);
  const std::string_view unsigned_body = body.starts_with('-') ? body.substr(1) : body;
  // from_chars also reads "inf", "nan" and hex floats; YAML and JSON want plain decimals here.
  if (unsigned_body.empty() ||
      !(std::isdigit(static_cast<unsigned char>(unsigned_body[0])) || unsigned_body[0] == '.'))
    return std::nullopt;
  for (char c : unsigned_body)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' ||
          c == '-' || c == '+'))
      return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
  if (ec != std::errc() || end != body.data() + body.size() || !std::isfinite(value))
    return std::nullopt;
  return value;
}

std::optional<Entry> find_entry(const YAML::Node& map, std::string_view key) {
  if (!map.IsMap()) return std::nullopt;
  for (const auto& kv : map)
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return Entry{kv.first, kv.second};
  return std::nullopt;
}

YamlReader::YamlReader(std::string file)
    : file_(std::move(file)), base_dir_(std::filesystem::path(file_).parent_path()) {}

Location YamlReader::at(const Entry& entry) const {
  if (entry.value.IsNull() || entry.value.Mark().is_null()) return at(entry.key);
  return at(entry.value);
}

void YamlReader::check_keys(const YAML::Node& map, const std::vector<std::string>& allowed,
                            std::string_view section) const {
  for (const auto& kv : map) {
    const std::string& key = kv.first.Scalar();
    bool known = false;
    for (const auto& name : allowed) known = known || name == key;
    if (!known)
      throw ConfigError(at(kv.first), fmt::format("unknown key '{}' in {}{}", key, section,
                                                  did_you_mean(key, allowed)));
  }
}

void YamlReader::expect_map(const Entry& entry, std::string_view what) const {
  if (!entry.value.IsMap())
    throw ConfigError(at(entry),
                      fmt::format("{}: expected a mapping, got {}", what, kind_name(entry.value)));
}

std::string YamlReader::text(const Entry& entry, std::string_view what, bool secret) const {
  if (!entry.value.IsScalar()) {
    if (secret)
      throw ConfigError(at(entry), fmt::format("value of secret field '{}' must be a string, "
                                               "got {}",
                                               what, kind_name(entry.value)));
    throw ConfigError(at(entry),
                      fmt::format("{}: expected a string, got {}", what, kind_name(entry.value)));
  }
  return substitute(entry.value.Scalar(), at(entry), base_dir_);
}

bool YamlReader::boolean(const Entry& entry, std::string_view what) const {
  if (entry.value.IsScalar()) {
    const std::string value = text(entry, what);
    if (auto parsed = parse_bool(value)) return *parsed;
    throw ConfigError(at(entry), fmt::format("{}: expected true or false, got {}", what,
                                             shown_value(entry.value.Scalar(), value)));
  }
  throw ConfigError(
      at(entry), fmt::format("{}: expected true or false, got {}", what, kind_name(entry.value)));
}

uint64_t YamlReader::unsigned_int(const Entry& entry, std::string_view what, uint64_t min,
                                  uint64_t max) const {
  if (!entry.value.IsScalar())
    throw ConfigError(at(entry),
                      fmt::format("{}: expected an integer, got {}", what, kind_name(entry.value)));
  const std::string value = text(entry, what);
  auto parsed = parse_int(value);
  if (!parsed) {
    // A huge but well-formed number is out of range rather than "not an integer".
    const bool digits_only =
        !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    if (!digits_only)
      throw ConfigError(at(entry), fmt::format("{}: expected an integer, got {}", what,
                                               shown_value(entry.value.Scalar(), value)));
  }
  if (!parsed || *parsed < 0 || static_cast<uint64_t>(*parsed) < min ||
      static_cast<uint64_t>(*parsed) > max)
    throw ConfigError(at(entry), fmt::format("{}: must be between {} and {}, got {}", what, min,
                                             max, shown_value(entry.value.Scalar(), value)));
  return static_cast<uint64_t>(*parsed);
}

double YamlReader::number(const Entry& entry, std::string_view what) const {
  if (!entry.value.IsScalar())
    throw ConfigError(at(entry),
                      fmt::format("{}: expected a number, got {}", what, kind_name(entry.value)));
  const std::string value = text(entry, what);
  auto parsed = parse_double(value);
  if (!parsed)
    throw ConfigError(at(entry), fmt::format("{}: expected a number, got {}", what,
                                             shown_value(entry.value.Scalar(), value)));
  return *parsed;
}

size_t YamlReader::choice(const Entry& entry, std::string_view what,
                          const std::vector<std::string>& names) const {
  if (!entry.value.IsScalar())
    throw ConfigError(at(entry), fmt::format("{}: expected one of {}, got {}", what,
                                             join_names(names), kind_name(entry.value)));
  const std::string value = text(entry, what);
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == value) return i;
  throw ConfigError(
      at(entry), fmt::format("{}: expected one of {}, got {}{}", what, join_names(names),
                             shown_value(entry.value.Scalar(), value),
                             has_substitution(entry.value.Scalar()) ? std::string()
                                                                    : did_you_mean(value, names)));
}

}  // namespace sluice::config
