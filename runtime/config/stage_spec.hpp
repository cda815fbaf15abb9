// One stage (source, transform, sink, dead-letter sink) of a pipeline as written in YAML.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/location.hpp"
#include "core/isolation_settings.hpp"

namespace sluice::config {

struct StageSpec {
  StageSpec() = default;
  StageSpec(const StageSpec&) = default;
  StageSpec(StageSpec&&) = default;
  // YAML::Node's operator= writes into the node it already refers to, which would change the
  // parsed tree another StageSpec still points at; assigning a StageSpec only rebinds `node`.
  StageSpec& operator=(const StageSpec& other) {
    if (this != &other) {
      role = other.role;
      type = other.type;
      instance_name = other.instance_name;
      node.reset(other.node);
      location = other.location;
      type_location = other.type_location;
      isolation = other.isolation;
      call_timeout_ms = other.call_timeout_ms;
      folded = other.folded;
    }
    return *this;
  }
  StageSpec& operator=(StageSpec&& other) noexcept {
    if (this != &other) {
      role = std::move(other.role);
      type = std::move(other.type);
      instance_name = std::move(other.instance_name);
      node.reset(other.node);
      location = std::move(other.location);
      type_location = std::move(other.type_location);
      isolation = other.isolation;
      call_timeout_ms = other.call_timeout_ms;
      folded = std::move(other.folded);
    }
    return *this;
  }

  std::string role;           // "source" | "transform" | "sink" | "dead_letter"
  std::string type;           // plugin name
  std::string instance_name;  // `name:`, else "<pipeline>.source", ".transform<i>" (i from 0),
                              // ".sink" or ".dead_letter"
  YAML::Node node;            // the stage mapping as written
  Location location;          // of the mapping
  Location type_location;     // of the `type` value
  core::IsolationSettings isolation;  // `isolation`, `call_timeout_ms`, `memory_limit_mb`, ...
  // `call_timeout_ms:` the deadline of one plugin call (0: none); unset: the role's default
  // (pipeline/call_guard.hpp, docs/containment.md).
  std::optional<uint32_t> call_timeout_ms;
  // A `chain` made of adjacent transform stages (config::fuse_transforms): their types, in order.
  std::vector<std::string> folded;
};

// The stage's type as /stats and the logs show it: "chain(unwrap,mask_field)" for a fused chain.
inline std::string shown_type(const StageSpec& stage) {
  if (stage.folded.empty()) return stage.type;
  std::string out = stage.type + "(";
  for (size_t i = 0; i < stage.folded.size(); ++i) out += (i ? "," : "") + stage.folded[i];
  return out + ")";
}

// The keys of a stage mapping that are the host's, not the plugin's config.
inline const std::vector<std::string>& host_stage_keys() {
  static const std::vector<std::string> keys = {
      "type", "name", "isolation", "call_timeout_ms", "memory_limit_mb", "share_cpu"};
  return keys;
}

}  // namespace sluice::config
