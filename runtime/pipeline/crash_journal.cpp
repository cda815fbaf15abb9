// The crash journal's line format and file. The crash handler only ever appends a line it
// prepared before the call (call_guard.cpp); everything here runs outside signal handlers.
#include "pipeline/crash_journal.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <map>
#include <new>
#include <sluice/safe_files.hpp>
#include <sstream>

namespace sluice::pipeline {

namespace {

constexpr std::string_view kSpecial = "%\t\n\r,/@=.";

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (kSpecial.find(c) == std::string_view::npos) {
      out += c;
      continue;
    }
    out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
  }
  return out;
}

std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= s.size()) return std::nullopt;
    if (std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16).ec != std::errc())
      return std::nullopt;
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

template <typename Int>
bool parse_int(std::string_view s, Int& value) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && end == s.data() + s.size();
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return parts;
}

// "t/0@5..9"
std::optional<StreamRange> decode_range(std::string_view s) {
  const size_t slash = s.find('/'), at = s.find('@'), dots = s.find("..");
  if (slash == s.npos || at == s.npos || dots == s.npos || !(slash < at && at < dots))
    return std::nullopt;
  StreamRange r;
  auto topic = unescape(s.substr(0, slash));
  if (!topic || !parse_int(s.substr(slash + 1, at - slash - 1), r.partition) ||
      !parse_int(s.substr(at + 1, dots - at - 1), r.first) ||
      !parse_int(s.substr(dots + 2), r.last))
    return std::nullopt;
  r.topic = std::move(*topic);
  return r;
}

std::string encode_range(const StreamRange& r) {
  return fmt::format("{}/{}@{}..{}", escape(r.topic), r.partition, r.first, r.last);
}

bool assign_field(JournalEntry& e, std::string_view key, std::string_view value) {
  if (key == "records") return parse_int(value, e.records);
  if (key == "ranges") {
    if (value.empty()) return true;
    for (auto part : split(value, ',')) {
      auto r = decode_range(part);
      if (!r) return false;
      e.ranges.push_back(std::move(*r));
    }
    return true;
  }
  auto text = unescape(value);
  if (!text) return false;
  std::map<std::string_view, std::string*> fields = {{"cause", &e.cause},
                                                     {"pipeline", &e.pipeline},
                                                     {"stage", &e.stage},
                                                     {"plugin", &e.plugin},
                                                     {"call", &e.call}};
  auto it = fields.find(key);
  if (it != fields.end()) *it->second = std::move(*text);
  return true;  // unknown keys are for later versions
}

}  // namespace

// Runs once per plugin call over its records: a record of the same stream as the one before
// (the usual case) costs two compares, the topic's bytes compared only when its pointer differs.
std::vector<StreamRange> ranges_of(std::span<const sluice_record> records) {
  constexpr size_t kNone = SIZE_MAX;
  std::vector<StreamRange> ranges;
  size_t last = kNone;  // the range of the record before
  sluice_bytes last_topic{nullptr, 0};
  for (const auto& r : records) {
    const std::string_view topic(reinterpret_cast<const char*>(r.topic.ptr),
                                 r.topic.ptr ? r.topic.len : 0);
    size_t found = kNone;
    if (last != kNone && ranges[last].partition == r.partition && r.topic.ptr == last_topic.ptr &&
        r.topic.len == last_topic.len)
      found = last;
    for (size_t i = 0; found == kNone && i < ranges.size(); ++i)
      if (ranges[i].partition == r.partition && ranges[i].topic == topic) found = i;
    if (found != kNone) {
      ranges[found].first = std::min(ranges[found].first, r.offset);
      ranges[found].last = std::max(ranges[found].last, r.offset);
    } else if (ranges.size() < kMaxRanges) {
      ranges.push_back({std::string(topic), r.partition, r.offset, r.offset});
      found = ranges.size() - 1;
    }
    last = found;
    last_topic = r.topic;
  }
  return ranges;
}

std::string encode_call(const JournalEntry& e) {
  std::string ranges;
  for (const auto& r : e.ranges) ranges += (ranges.empty() ? "" : ",") + encode_range(r);
  return fmt::format("pipeline={}\tstage={}\tplugin={}\tcall={}\trecords={}\tranges={}",
                     escape(e.pipeline), escape(e.stage), escape(e.plugin), escape(e.call),
                     e.records, ranges);
}

std::string encode_entry(const JournalEntry& e) {
  return fmt::format("cause={}\t{}", escape(e.cause), encode_call(e));
}

std::optional<JournalEntry> decode_entry(std::string_view line) {
  JournalEntry e;
  for (auto field : split(line, '\t')) {
    const size_t eq = field.find('=');
    if (eq == field.npos || !assign_field(e, field.substr(0, eq), field.substr(eq + 1)))
      return std::nullopt;
  }
  if (e.cause.empty() || e.pipeline.empty() || e.plugin.empty()) return std::nullopt;
  return e;
}

std::string describe_ranges(const std::vector<StreamRange>& ranges, uint64_t records) {
  if (ranges.empty()) return "no records";
  const auto& r = ranges.front();
  std::string text = records == 1 ? fmt::format("record {}/{}@{}", r.topic, r.partition, r.first)
                                  : fmt::format("{} records {}/{}@{}..{}", records, r.topic,
                                                r.partition, r.first, r.last);
  if (ranges.size() > 1) text += fmt::format(" and {} more streams", ranges.size() - 1);
  return text;
}

std::filesystem::path journal_path(const std::filesystem::path& pipeline_file,
                                   const std::string& pipeline) {
  return std::filesystem::absolute(pipeline_file).parent_path() / ".sluice" /
         (pipeline + ".crash-journal");
}

namespace {

// Why the journal's folder cannot be trusted: the runtime makes it, so it must be a folder (not a
// link) owned by this user or root. A journal another user planted would make the next run
// dead-letter records of their choosing.
std::string untrusted_folder(const std::filesystem::path& folder) {
  struct stat st {};
  if (::lstat(folder.c_str(), &st) != 0)
    return fmt::format("{}: {}", folder.string(), std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return folder.string() + " is not a folder";
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    return fmt::format("{} is owned by uid {}, not by this user", folder.string(), st.st_uid);
  return {};
}

}  // namespace

inline constexpr size_t kMarks = 64;        // calls in flight at once, per pipeline and process
inline constexpr size_t kMarkBytes = 8192;  // a mark: its state, its length, its line
inline constexpr uint32_t kMarkFree = 0, kMarkWriting = 1, kMarkInFlight = 2;

struct InFlightMark {
  std::atomic<uint32_t> state{kMarkFree};
  uint32_t len = 0;
  char line[kMarkBytes - 2 * sizeof(uint32_t)];
};
static_assert(sizeof(InFlightMark) == kMarkBytes);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

namespace {

// "<pipeline>.in-flight.": the in-flight files of a pipeline, one per journal opened (the pid
// and a count of the process's journals after it, "<pid>-<n>").
std::string marks_prefix(const std::string& pipeline) { return pipeline + ".in-flight."; }

bool is_marks_file(const std::string& name, const std::string& prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                     [](char c) { return (c >= '0' && c <= '9') || c == '-'; });
}

std::atomic<uint64_t> g_journals_opened{0};

}  // namespace

CrashJournal::CrashJournal(std::filesystem::path path, std::string pipeline)
    : path_(std::move(path)), pipeline_(std::move(pipeline)) {
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  std::string error = untrusted_folder(path_.parent_path());
  if (error.empty())
    fd_ = files::open_checked(path_.string(), O_RDWR | O_APPEND | O_CREAT, 0600, files::Use::state,
                              error);
  if (fd_ < 0) {
    spdlog::warn("crash journal cannot be used ({}): a crash is reported on stderr only", error);
    return;
  }
  read_entries();
  adopt_dead_marks();
  open_marks();
}

// The in-flight file of a process that is gone (no flock on it): each mark still set was a call
// that never returned, nor reached the crash handler.
void CrashJournal::adopt_dead_marks() {
  const std::string prefix = marks_prefix(pipeline_);
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(path_.parent_path(), ec)) {
    const std::string name = item.path().filename().string();
    if (!is_marks_file(name, prefix)) continue;
    std::string error;
    const int fd = files::open_checked(item.path().string(), O_RDWR, 0, files::Use::state, error);
    if (fd < 0) {
      spdlog::warn("crash journal: {}", error);
      continue;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {  // a live process's: not ours to read
      ::close(fd);
      continue;
    }
    InFlightMark m;
    for (size_t i = 0; i < kMarks; ++i) {
      const ssize_t n = ::pread(fd, &m, sizeof m, static_cast<off_t>(i * kMarkBytes));
      if (n != static_cast<ssize_t>(sizeof m)) break;
      if (m.state.load() != kMarkInFlight || m.len > sizeof m.line) continue;
      auto entry =
          decode_entry(fmt::format("cause={}\t{}", kKilledCause, std::string_view(m.line, m.len)));
      if (!entry || entry->pipeline != pipeline_) continue;
      const std::string line = encode_entry(*entry) + "\n";
      if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        spdlog::warn("crash journal {}: {}", path_.string(), std::strerror(errno));
      entries_.push_back(std::move(*entry));
    }
    std::filesystem::remove(item.path(), ec);
    ::close(fd);
  }
}

void CrashJournal::open_marks() {
  marks_path_ = path_.parent_path() / fmt::format("{}{}-{}", marks_prefix(pipeline_), ::getpid(),
                                                  g_journals_opened.fetch_add(1));
  std::string error;
  marks_fd_ =
      files::open_checked(marks_path_.string(), O_RDWR | O_CREAT, 0600, files::Use::state, error);
  void* mapped = MAP_FAILED;
  // Locked before it is cut: a file of that name someone holds is never changed under them.
  if (marks_fd_ >= 0 && ::flock(marks_fd_, LOCK_EX | LOCK_NB) == 0 &&
      ::ftruncate(marks_fd_, 0) == 0 &&
      ::ftruncate(marks_fd_, static_cast<off_t>(kMarks * kMarkBytes)) == 0)
    mapped = ::mmap(nullptr, kMarks * kMarkBytes, PROT_READ | PROT_WRITE, MAP_SHARED, marks_fd_, 0);
  if (mapped == MAP_FAILED) {
    spdlog::warn(
        "crash journal: no in-flight file {} ({}): a process killed outright inside a "
        "plugin call will not be narrowed down at the next start",
        marks_path_.string(), error.empty() ? std::strerror(errno) : error);
    return;
  }
  marks_ = static_cast<InFlightMark*>(mapped);
  for (size_t i = 0; i < kMarks; ++i) new (&marks_[i]) InFlightMark;
}

InFlightMark* CrashJournal::mark(std::string_view call_line) const {
  if (!marks_ || call_line.size() > sizeof(InFlightMark::line)) return nullptr;
  for (size_t i = 0; i < kMarks; ++i) {
    InFlightMark& m = marks_[i];
    uint32_t expected = kMarkFree;
    if (!m.state.compare_exchange_strong(expected, kMarkWriting, std::memory_order_acquire))
      continue;
    std::memcpy(m.line, call_line.data(), call_line.size());
    m.len = static_cast<uint32_t>(call_line.size());
    m.state.store(kMarkInFlight, std::memory_order_release);
    return &m;
  }
  return nullptr;
}

void CrashJournal::unmark(InFlightMark* mark) {
  if (mark) mark->state.store(kMarkFree, std::memory_order_release);
}

void CrashJournal::read_entries() {
  std::string text;
  char chunk[4096];
  for (ssize_t n; (n = ::pread(fd_, chunk, sizeof chunk, static_cast<off_t>(text.size()))) > 0;)
    text.append(chunk, static_cast<size_t>(n));
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto entry = decode_entry(line);
    if (entry && entry->pipeline == pipeline_)
      entries_.push_back(std::move(*entry));
    else if (!entry)
      spdlog::warn("crash journal {}: ignoring a line that is not an entry", path_.string());
    else
      other_lines_.push_back(line);
  }
}

CrashJournal::~CrashJournal() {
  if (marks_) {
    // A call still in flight (a stuck one the stop gave up on) keeps the file for the next
    // start, and its mapping, which the call's scope would clear a mark in.
    bool in_flight = false;
    for (size_t i = 0; i < kMarks; ++i) in_flight |= marks_[i].state.load() == kMarkInFlight;
    if (!in_flight) {
      ::munmap(marks_, kMarks * kMarkBytes);
      std::error_code ec;
      std::filesystem::remove(marks_path_, ec);
      if (!std::filesystem::exists(path_, ec)) std::filesystem::remove(path_.parent_path(), ec);
    }
  }
  if (marks_fd_ >= 0) ::close(marks_fd_);
  if (fd_ >= 0) ::close(fd_);
}

void CrashJournal::rewrite(const std::vector<JournalEntry>& keep) {
  if (fd_ < 0) return;  // not ours to change (see the constructor's warning)
  std::string text;
  for (const auto& line : other_lines_) text += line + "\n";
  for (const auto& e : keep) text += encode_entry(e) + "\n";
  std::error_code ec;
  if (text.empty()) {
    std::filesystem::remove(path_, ec);
    std::error_code not_empty;  // the folder goes too when nothing else is in it
    std::filesystem::remove(path_.parent_path(), not_empty);
  } else {
    std::string error;
    if (!files::replace_file(path_.string(), text, 0600, /*sync=*/false, error))
      spdlog::warn("crash journal: {}", error);
  }
  if (ec) spdlog::warn("crash journal {}: {}", path_.string(), ec.message());
  entries_ = keep;
}

}  // namespace sluice::pipeline
