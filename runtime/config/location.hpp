// Where something is in a pipeline file, and the error that points there.
#pragma once

#include <stdexcept>
#include <string>

namespace sluice::config {

// A position in a pipeline file; line and column are 1-based. Line 0 means the file as a whole
// (it could not be read at all), and str() then prints only the file name.
struct Location {
  std::string file;
  int line = 0;
  int column = 0;

  std::string str() const;  // "file:line:col", or "file" when line is 0
};

// Every config problem: what() is "FILE:LINE:COL: message", which editors and CI logs can jump to.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(Location where, const std::string& message);
  const Location& where() const { return where_; }
  // The message without the location prefix.
  const std::string& message() const { return message_; }

 private:
  Location where_;
  std::string message_;
};

}  // namespace sluice::config
