// sluice/safe_files.hpp: links and files another local user plants in a folder others can write
// are refused; nothing they point at is read or changed. "Another user" is uid 65534 (nobody),
// given to the planted entries with lchown, so these cases need root (CI runs as root).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sluice/safe_files.hpp>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using sluice::files::Use;

namespace {

constexpr uid_t kOtherUser = 65534;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// A shared folder (mode 1777, like /tmp) and a victim file outside it that holds "precious".
struct Shared {
  fs::path root, dir, victim;
  explicit Shared(const std::string& name, mode_t mode = 01777) {
    root = fs::temp_directory_path() / ("safe-files-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(root);
    dir = root / "shared";
    fs::create_directories(dir);
    ::chmod(dir.c_str(), mode);
    victim = root / "victim";
    spit(victim, "precious");
  }
  ~Shared() { fs::remove_all(root); }
  // A link at dir/name to the victim, owned by `owner`.
  fs::path plant_link(const std::string& name, uid_t owner = kOtherUser) const {
    const fs::path at = dir / name;
    fs::create_symlink(victim, at);
    REQUIRE(::lchown(at.c_str(), owner, owner) == 0);
    return at;
  }
  fs::path plant_file(const std::string& name, const std::string& text) const {
    const fs::path at = dir / name;
    spit(at, text);
    REQUIRE(::chown(at.c_str(), kOtherUser, kOtherUser) == 0);
    return at;
  }
};

// Planting files as another user needs root; elsewhere the cases say so and pass.
bool can_plant() {
  if (::geteuid() == 0) return true;
  MESSAGE("skipped: planting another user's files needs root");
  return false;
}

int open_for(const fs::path& p, Use use, std::string& error) {
  return sluice::files::open_checked(p.string(), O_RDWR | O_CREAT | O_APPEND, 0644, use, error);
}

}  // namespace

TEST_CASE("another user's link in a shared folder is not followed, to read or to write") {
  if (!can_plant()) return;
  Shared s("link");
  const fs::path link = s.plant_link("out.jsonl");
  for (Use use : {Use::read_data, Use::state}) {
    std::string error;
    CHECK(open_for(link, use, error) == -1);
    CHECK(error.find("is a symbolic link owned by") != std::string::npos);
    CHECK(error.find("uid 65534") != std::string::npos);
    CHECK(error.find(s.dir.string()) != std::string::npos);
  }
  CHECK(slurp(s.victim) == "precious");
}

TEST_CASE("our own link, or root's, in a shared folder is followed") {
  if (!can_plant()) return;
  Shared s("own-link");
  const fs::path link = s.plant_link("out.jsonl", ::geteuid());
  std::string error;
  const int fd = open_for(link, Use::state, error);
  REQUIRE_MESSAGE(fd >= 0, error);
  CHECK(::write(fd, "+more", 5) == 5);
  ::close(fd);
  CHECK(slurp(s.victim) == "precious+more");
}

TEST_CASE("another user's file in a shared folder: read as data, refused as state") {
  if (!can_plant()) return;
  Shared s("file");
  const fs::path planted = s.plant_file("offsets.json", "{\"line_offset\": 999999}");
  std::string error;
  const int fd = open_for(planted, Use::read_data, error);
  CHECK(fd >= 0);
  if (fd >= 0) ::close(fd);
  CHECK(open_for(planted, Use::state, error) == -1);
  CHECK(error.find("is owned by") != std::string::npos);
  CHECK(sluice::files::distrust_reason(planted.string(), Use::state) == error);
}

TEST_CASE("a hard link in a shared folder is refused, to read or to write, whoever owns it") {
  if (!can_plant()) return;
  Shared s("hardlink");
  // What another user can do without fs.protected_hardlinks: link a file of root's (here the
  // victim, root's as we are root) into the shared folder, where its owner looks trusted.
  const fs::path link = s.dir / "out.jsonl";
  fs::create_hard_link(s.victim, link);
  for (Use use : {Use::read_data, Use::state}) {
    std::string error;
    CHECK(open_for(link, use, error) == -1);
    CHECK(error.find("has 2 hard links") != std::string::npos);
    CHECK(error.find(s.dir.string()) != std::string::npos);
  }
  // A refusal is not "nothing there": a caller that reads errno must not see a stale ENOENT.
  errno = ENOENT;
  std::string refused;
  CHECK(open_for(link, Use::state, refused) == -1);
  CHECK(errno == EACCES);
  CHECK(slurp(s.victim) == "precious");
  // A file of one link, ours, is used as before.
  fs::remove(link);
  spit(link, "mine");
  std::string error;
  const int fd = open_for(link, Use::state, error);
  CHECK_MESSAGE(fd >= 0, error);
  if (fd >= 0) ::close(fd);
}

TEST_CASE("in a folder only its owner can write, nothing is refused") {
  if (!can_plant()) return;
  Shared s("private", 0755);
  const fs::path link = s.plant_link("out.jsonl");
  CHECK(sluice::files::distrust_reason(link.string(), Use::state).empty());
  const fs::path planted = s.plant_file("state", "x");
  CHECK(sluice::files::distrust_reason(planted.string(), Use::state).empty());
  CHECK(sluice::files::distrust_reason((s.dir / "missing").string(), Use::state).empty());
}

TEST_CASE("replace_file never writes through a planted temporary link") {
  if (!can_plant()) return;
  Shared s("replace");
  s.plant_link("stats.json.tmp");
  std::string error;
  CHECK_FALSE(
      sluice::files::replace_file((s.dir / "stats.json").string(), "{}", 0644, false, error));
  CHECK(error.find("stats.json.tmp is in the way (a symbolic link owned by") != std::string::npos);
  CHECK(slurp(s.victim) == "precious");
  CHECK_FALSE(fs::exists(s.dir / "stats.json"));
}

TEST_CASE("replace_file removes its own leftover and replaces a planted link at the target") {
  if (!can_plant()) return;
  Shared s("leftover");
  spit(s.dir / "offsets.json.tmp", "torn");  // ours, from an interrupted write
  const fs::path target = s.plant_link("offsets.json");
  std::string error;
  REQUIRE_MESSAGE(
      sluice::files::replace_file(target.string(), "{\"line_offset\":1}\n", 0600, true, error),
      error);
  CHECK_FALSE(fs::is_symlink(target));
  CHECK(slurp(target) == "{\"line_offset\":1}\n");
  CHECK((fs::status(target).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
  CHECK_FALSE(fs::exists(s.dir / "offsets.json.tmp"));
  CHECK(slurp(s.victim) == "precious");
}
