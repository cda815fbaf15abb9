// Unit tests of the basic module: the null sink only counts; the stdout sink writes lines.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "plugin_harness.hpp"

using namespace plugin_test;

TEST_CASE("null sink counts every record it is given and rejects none") {
  Library lib(plugin_path("basic"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "null"), host, "{}");
  std::vector<TestRecord> batch(5);
  FakeWriter rejects;
  REQUIRE(sink.put(batch, rejects).ok());
  REQUIRE(sink.put({batch[0], batch[1]}, rejects).ok());
  CHECK(host.counter("records") == 7);
  CHECK(rejects.rejects.empty());
}

TEST_CASE("stdout sink writes one line per record to standard output") {
  TempDir dir;
  const std::string path = dir.file("stdout.txt");
  Library lib(plugin_path("basic"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "stdout"), host, R"({"format":"value"})");
  std::vector<TestRecord> batch(2);
  batch[0].value = R"({"a":1})";
  batch[1].value = std::nullopt;
  FakeWriter rejects;
  // Point fd 1 at a file for the duration of the put.
  std::fflush(stdout);
  const int saved = ::dup(1);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  ::dup2(fd, 1);
  ::close(fd);
  auto result = sink.put(batch, rejects);
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  REQUIRE(result.ok());
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(ss.str() == "{\"a\":1}\nnull\n");
  CHECK(host.counter("records") == 2);
}
