// The crash journal's line format and file. The crash handler only ever appends a line it
// prepared before the call (call_guard.cpp); everything here runs outside signal handlers.
#include "pipeline/crash_journal.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <map>
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
  const auto folder = std::filesystem::absolute(pipeline_file).parent_path();
  struct stat st {};
  // In a folder others can write (/tmp), one user's `.sluice` would keep every other user's
  // journal out: each user has their own there.
  const bool shared = ::stat(folder.c_str(), &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  const std::string name = shared ? ".sluice-" + std::to_string(::geteuid()) : ".sluice";
  return folder / name / (pipeline + ".crash-journal");
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

CrashJournal::CrashJournal(std::filesystem::path path, std::string pipeline)
    : path_(std::move(path)), pipeline_(std::move(pipeline)) {
  // Only its user reads or writes the journal's folder (it names the records that crashed).
  ::mkdir(path_.parent_path().c_str(), 0700);
  std::string error = untrusted_folder(path_.parent_path());
  if (error.empty())
    fd_ = files::open_checked(path_.string(), O_RDWR | O_APPEND | O_CREAT, 0600, files::Use::state,
                              error);
  if (fd_ < 0) {
    spdlog::warn("crash journal cannot be used ({}): a crash is reported on stderr only", error);
    return;
  }
  read_entries();
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
  if (fd_ >= 0) ::close(fd_);
}

void CrashJournal::append(const JournalEntry& entry) {
  if (fd_ < 0) return;
  const std::string line = encode_entry(entry);
  std::lock_guard lock(appended_mu_);
  const std::string text = line + "\n";
  if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    spdlog::warn("crash journal {}: {}", path_.string(), std::strerror(errno));
  appended_.push_back(line);
}

void CrashJournal::rewrite(const std::vector<JournalEntry>& keep) {
  if (fd_ < 0) return;  // not ours to change (see the constructor's warning)
  std::string text;
  for (const auto& line : other_lines_) text += line + "\n";
  for (const auto& e : keep) text += encode_entry(e) + "\n";
  {
    std::lock_guard lock(appended_mu_);
    for (const auto& line : appended_) text += line + "\n";
  }
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
