// Sealed memfd copies of plugin files: no path in $TMPDIR another user could plant or swap.
#include "plugin/sealed_copy.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "plugin/plugin_library.hpp"

namespace sluice::plugin {

namespace {

constexpr unsigned kAllSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
#ifdef MFD_NOEXEC_SEAL
constexpr unsigned kNoExecSeal = MFD_NOEXEC_SEAL;
#else
constexpr unsigned kNoExecSeal = 0x0008U;  // Linux 6.3; older headers lack the name
#endif

// FNV-1a over the bytes: part of the copy's name, so /proc/self/maps tells which build runs.
uint64_t content_hash(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h ^ bytes.size();
}

// "sluice:STEM-HASH-SEQ": the sequence number keeps two copies of equal bytes apart.
std::string memfd_name(const std::filesystem::path& file, const std::string& bytes) {
  static std::atomic<uint64_t> sequence{0};
  // memfd names are at most 249 bytes; the stem is only there for people reading maps.
  std::string stem = file.stem().string().substr(0, 160);
  return fmt::format("sluice:{}-{:016x}-{}", stem, content_hash(bytes), ++sequence);
}

void write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(errno, std::generic_category(), "write");
    done += static_cast<size_t>(n);
  }
}

}  // namespace

// One read into a buffer of the file's size: the bytes are held once (a stream would hold them
// up to three times while growing and copying), which is the process's peak memory at start
// for a big plugin.
std::string read_plugin_bytes(const std::filesystem::path& file) {
  const auto fail = [&](int err) {
    return PluginLoadError(fmt::format("{}: cannot read: {}", file.string(), strerror(err)));
  };
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(errno);
  struct stat st {};
  std::string bytes;
  int err = ::fstat(fd, &st) == 0 ? 0 : errno;
  if (err == 0) bytes.resize(static_cast<size_t>(std::max<off_t>(st.st_size, 0)) + 1);
  size_t done = 0;
  // One byte more than the size: a file that grew since fstat is read to its end all the same.
  while (err == 0) {
    if (done == bytes.size()) bytes.resize(bytes.size() * 2);
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (err != 0) throw fail(err);
  bytes.resize(done);
  return bytes;
}

bool is_elf(const std::string& bytes) { return std::string_view(bytes).starts_with("\177ELF"); }

SealedCopy::SealedCopy(const std::filesystem::path& file, const std::string& bytes) {
  const std::string name = memfd_name(file, bytes);
  fd_ = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  // With vm.memfd_noexec=2 the kernel only makes non-executable memfds. That only forbids
  // execve; dlopen's mmap(PROT_EXEC) works on them.
  if (fd_ < 0 && errno == EACCES)
    fd_ = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | kNoExecSeal);
  if (fd_ < 0)
    throw PluginLoadError(
        fmt::format("{}: cannot make an in-memory copy: {}", file.string(), strerror(errno)));
  try {
    write_all(fd_, bytes);
  } catch (const std::system_error& e) {
    ::close(fd_);
    throw PluginLoadError(
        fmt::format("{}: cannot fill the in-memory copy: {}", file.string(), e.code().message()));
  }
  if (::fcntl(fd_, F_ADD_SEALS, kAllSeals) != 0) {
    int err = errno;
    ::close(fd_);
    throw PluginLoadError(
        fmt::format("{}: cannot seal the in-memory copy: {}", file.string(), strerror(err)));
  }
  mapped_name_ = fmt::format("/memfd:{} (deleted)", name);
}

SealedCopy::~SealedCopy() {
  if (fd_ >= 0) ::close(fd_);
}

std::filesystem::path SealedCopy::path() const { return fmt::format("/proc/self/fd/{}", fd_); }

}  // namespace sluice::plugin
