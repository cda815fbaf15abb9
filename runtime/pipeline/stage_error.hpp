// The one error shape inside the pipeline: which stage failed, which plugin, why, and how badly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sluice/abi.h"

namespace sluice::pipeline {

// Plugin calls, reloads and source swaps all report failure this way (as librdkafka's error
// object does: a code that says retriable or fatal, and a message).
struct StageError {
  std::string stage;                    // the instance name (`name:`, else "<pipeline>.sink", ...)
  std::string plugin;                   // the plugin's name (`type:`)
  std::string message;                  // as the plugin (or the host) gave it, not yet redacted
  sluice_status status = SLUICE_ERROR;  // RETRY, ERROR or FATAL
  uint32_t attempts = 1;                // calls made, retries included
  // RETRY because the stage's plugin is not running (an isolated stage between failed
  // restarts): its records are not at fault, so they are held, never dead-lettered.
  bool unavailable = false;
};

// What an operation came to: nullopt when it succeeded, else the StageError.
using StageResult = std::optional<StageError>;

// "OK", "RETRY", "ERROR", "FATAL".
const char* status_name(sluice_status s);
// Any status a plugin returns outside the four known ones counts as ERROR (abi.h).
inline sluice_status normalize(sluice_status s) {
  return s == SLUICE_OK || s == SLUICE_RETRY || s == SLUICE_FATAL ? s : SLUICE_ERROR;
}

}  // namespace sluice::pipeline
