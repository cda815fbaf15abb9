// Where an end-to-end test finds the launcher and its scratch folders.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace sluice::test {

inline std::string bin() { return std::getenv("SLUICE_BIN"); }
inline std::filesystem::path source_dir() { return std::getenv("SLUICE_SOURCE_DIR"); }
inline std::filesystem::path binary_dir() { return std::getenv("SLUICE_BINARY_DIR"); }

// A fresh scratch folder per test case.
inline std::filesystem::path scratch(const std::string& name) {
  std::filesystem::path dir = binary_dir() / "e2e-scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace sluice::test
