// Plain settings structs shared by config/ (which fills them from YAML) and the stages that use
// them.
#pragma once

#include <cstdint>
#include <string>

namespace sluice::core {

// How records are routed to lanes: records with the same lane key never overtake each other.
// `field`: the key is a JSON field of the value (PerformanceSettings::ordering_field).
enum class Ordering { key, partition, none, field };
enum class CacheEvictionPolicy { lru, lfu, ttl, adaptive };
// Which controllers steer batch size and concurrency: sluice's own (the default), or a rival
// algorithm kept for benchmarks (performance.controller; see docs/configuration.md).
enum class ControllerKind { sluice, vector_arc, gradient2, vegas, seed };

// The `performance:` section, with the seed's names and defaults.
struct PerformanceSettings {
  // Adaptive batch sizing.
  bool adaptive_batching = true;
  uint32_t min_batch_size = 50;
  uint32_t max_batch_size = 2000;
  uint32_t batch_size = 100;  // start value, and the fixed size when adaptive_batching is off
  uint32_t target_batch_time_ms = 50;
  double load_adjustment_factor = 0.5;  // damping of the batch-size step, in (0, 1]
  uint32_t linger_ms = 5;               // longest a partial batch waits for more records

  // Concurrency.
  bool adaptive_concurrency = true;
  uint32_t min_concurrency = 1;
  uint32_t max_concurrency = 16;
  uint32_t concurrency = 1;  // start value, and the fixed limit when adaptive_concurrency is off
  ControllerKind controller = ControllerKind::sluice;  // benchmark-oriented; keep the default
  double cpu_utilization_threshold = 0.8;
  Ordering ordering = Ordering::key;
  // For ordering `field`: '|'-separated dotted paths into the JSON value; the first present,
  // non-null one is the lane key (records with none fall back to the record key).
  std::string ordering_field;
  // Adjacent Kafka/Debezium SMT stages run as one `chain` stage (config::fuse_transforms).
  bool fuse_transforms = true;

  // Backpressure: intake bounded by records and by bytes.
  bool backpressure = true;
  uint32_t backpressure_threshold = 10000;  // records queued before the source is paused
  uint64_t max_queue_bytes = 64ull << 20;

  // Memory.
  bool memory_control = true;
  uint64_t memory_limit_mb = 0;  // 0: the cgroup's memory.max, else physical memory
  double memory_pressure_threshold = 0.8;
  double gc_trigger_threshold = 0.9;
  uint32_t gc_interval_ms = 5000;

  // Profiling and stats.
  bool enable_performance_profiling = true;
  uint32_t metrics_collection_interval_ms = 1000;

  // Cache (used by caching plugins through their own config; kept here for the stats shape).
  bool enable_predictive_caching = false;
  uint32_t cache_warmup_size = 0;
  CacheEvictionPolicy cache_eviction_policy = CacheEvictionPolicy::lru;
};

// The `errors:` section.
struct RetrySettings {
  uint32_t initial_backoff_ms = 100;
  uint32_t max_backoff_ms = 10000;
  double multiplier = 2.0;
  uint32_t max_attempts = 10;        // 0: unlimited
  uint64_t max_elapsed_ms = 300000;  // 0: unlimited
};

enum class Tolerance { none, all };

struct CircuitBreakerSettings {
  bool enabled = true;
  uint32_t failure_threshold = 5;
  uint32_t cooldown_ms = 5000;
};

struct ErrorSettings {
  Tolerance tolerance = Tolerance::none;
  RetrySettings retry;
  CircuitBreakerSettings circuit_breaker;
  bool log_errors = true;
  // Records larger than this (key + value + headers) are rejected before the transforms; 0: no
  // limit.
  uint64_t max_record_bytes = 8ull << 20;
};

// The `admin:` section (file level).
struct AdminSettings {
  bool enabled = true;
  std::string host = "127.0.0.1";
  uint16_t port = 8088;
  std::string token;  // secret
};

}  // namespace sluice::core
