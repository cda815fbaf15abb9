/* The C ABI between the sluice host and its plugins: the only contract that crosses a .so. */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

/*
 * Rules of this header
 *   - Plain C: only <stdint.h> and <stddef.h>. No C++ type, exception or allocation crosses.
 *   - Three name families: `sluice_*` types, hooks a plugin exports in its `sluice_plugin`
 *     table (`create`, `poll`, `put`, ...), and `sluice_host_*` callbacks the host offers.
 *   - Every struct starts with `struct_size`. A reader touches a field only if it lies inside
 *     `struct_size`; structs only ever grow at the end, so a new minor version appends fields.
 *   - OWNERSHIP lines say who owns memory after each call. A plugin never allocates memory
 *     that the host frees, and the other way round.
 *   - THREADING lines say from which thread a hook may be called.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_ABI_MAJOR 1
#define SLUICE_ABI_MINOR 1

#if defined(_WIN32)
#define SLUICE_EXPORT __declspec(dllexport)
#else
#define SLUICE_EXPORT __attribute__((visibility("default")))
#endif

/* The name of the one function every plugin library exports. */
#define SLUICE_MODULE_ENTRY "sluice_module_get"

/* ------------------------------------------------------------------------------------------ */
/* Status                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Every hook returns one of these. The host treats any other value as SLUICE_ERROR. */
/* The constants are casts, not bare literals, so C++ and binding generators see int32_t (a
 * bare `0` would be an int, or an unsigned in bindgen). C11 has no enum with a fixed underlying
 * type, hence macros. */
typedef int32_t sluice_status;
#define SLUICE_OK ((sluice_status)0) /* done */
/* transient: the host retries the same call with backoff */
#define SLUICE_RETRY ((sluice_status)1)
/* this batch (or record) failed: the error policy decides */
#define SLUICE_ERROR ((sluice_status)2)
#define SLUICE_FATAL ((sluice_status)3) /* the stage cannot go on: its pipeline stops cleanly */

/* Plugin kinds. */
typedef int32_t sluice_kind;
#define SLUICE_KIND_SOURCE ((sluice_kind)1)
#define SLUICE_KIND_TRANSFORM ((sluice_kind)2)
#define SLUICE_KIND_SINK ((sluice_kind)3)

/* Log levels, as spdlog's: the `level` of sluice_host_log. */
#define SLUICE_LOG_TRACE ((int32_t)0)
#define SLUICE_LOG_DEBUG ((int32_t)1)
#define SLUICE_LOG_INFO ((int32_t)2)
#define SLUICE_LOG_WARN ((int32_t)3)
#define SLUICE_LOG_ERROR ((int32_t)4)

/*
 * An error report. The host supplies `message` (and `field`) buffers; the plugin writes a
 * NUL-terminated text of at most `*_capacity` bytes, truncating if needed.
 * OWNERSHIP: both buffers are the host's; valid only during the call they are passed to.
 */
typedef struct sluice_error {
  uint32_t struct_size;
  char* message;
  size_t message_capacity;
  /* The config field the error is about, if any ("" otherwise): the host maps it to FILE:LINE:COL.
   */
  char* field;
  size_t field_capacity;
} sluice_error;

/* ------------------------------------------------------------------------------------------ */
/* Records and batches                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* A byte view. `ptr == NULL` means absent (a null key, a tombstone's value); len is then 0. */
typedef struct sluice_bytes {
  const uint8_t* ptr;
  size_t len;
} sluice_bytes;

typedef struct sluice_header {
  sluice_bytes key;
  sluice_bytes value;
} sluice_header;

/*
 * One record: a view, never an owner.
 * `partition`/`offset` are the record's position in its source (a Kafka partition and offset,
 * a file's line); sources set them, transforms and sinks read them.
 */
typedef struct sluice_record {
  uint32_t struct_size;
  sluice_bytes key;
  sluice_bytes value;
  sluice_bytes topic;
  const sluice_header* headers;
  size_t header_count;
  int32_t partition;
  int64_t offset;
  int64_t timestamp_ms;
} sluice_record;

/*
 * A batch handed to a transform or sink.
 * OWNERSHIP: host-owned; records and every byte they point to are valid only during the call.
 */
typedef struct sluice_batch {
  uint32_t struct_size;
  const sluice_record* records;
  size_t count;
} sluice_batch;

/* A source position the host has finished with, handed back to the source's `commit`. */
typedef struct sluice_position {
  uint32_t struct_size;
  sluice_bytes topic;
  int32_t partition;
  /* The highest offset such that this record and every earlier one of the partition are done
   * (delivered, dead-lettered or filtered). A Kafka source commits offset + 1. */
  int64_t offset;
} sluice_position;

/*
 * The host-owned output of a call: sources and transforms append records to it, every kind
 * may reject single input records through it.
 * THREADING: call only from inside the hook it was passed to, on that thread.
 */
typedef struct sluice_writer {
  uint32_t struct_size;
  void* host_ctx;
  /* Appends a record. `input_index` is the index of the input record it derives from (a
   * transform must give it, so acks stay exact); sources pass SIZE_MAX.
   * OWNERSHIP: the host copies the record and its bytes before returning. */
  sluice_status (*append)(void* host_ctx, size_t input_index, const sluice_record* record);
  /* Zero-copy append: the host keeps pointers into the plugin's memory and calls
   * `release(release_ctx)` once it no longer needs them (from any thread).
   * OWNERSHIP: the bytes stay the plugin's; the plugin must keep them valid until release. */
  sluice_status (*append_owned)(void* host_ctx, size_t input_index, const sluice_record* record,
                                void (*release)(void* release_ctx), void* release_ctx);
  /* Rejects one input record with a status (SLUICE_RETRY or SLUICE_ERROR) and a reason; the
   * rest of the batch goes on. OWNERSHIP: the host copies `message`. */
  void (*reject)(void* host_ctx, size_t input_index, sluice_status status, const char* message,
                 size_t message_len);
} sluice_writer;

/* Arguments of a source poll. OWNERSHIP: host-owned, valid during the call. */
typedef struct sluice_poll_args {
  uint32_t struct_size;
  /* Append at most this many records. 0 while the host applies backpressure: the source must
   * still return promptly (a Kafka source keeps polling so it stays in its group). */
  uint32_t max_records;
  /* Return within about this long even if nothing arrived. */
  uint32_t timeout_ms;
  /* Output: set to 1 when the source has no more records, ever (a bounded input). */
  int32_t end_of_stream;
  /* Since ABI 1.1. Append records until about this many bytes of key + value + headers are
   * appended; the record that crosses the bound may still be appended, so a poll exceeds it by
   * at most one record. 0 means no room, like max_records == 0 (the host sets both to 0
   * together). The host always sets it (from the memory it lets its queues hold); a source reads
   * it only if `struct_size` covers it, and treats an older host's shorter struct as no byte
   * bound. Every source should honour it: a source that ignores it is paused (`set_paused`, then
   * polls with max_records == 0) after a poll that went over, until the host's queues are back
   * under their byte bound, but that one poll's records are held in memory all the same. */
  uint64_t max_bytes;
} sluice_poll_args;

/* A byte sink for `snapshot`. OWNERSHIP: host-owned; the host copies what is appended. */
typedef struct sluice_buffer {
  uint32_t struct_size;
  void* host_ctx;
  void (*append)(void* host_ctx, const uint8_t* data, size_t len);
} sluice_buffer;

/* ------------------------------------------------------------------------------------------ */
/* Host API: callbacks the host offers every plugin instance                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * OWNERSHIP: host-owned, valid from `create` until `destroy` returns. Strings passed in are
 * copied by the host before the call returns.
 * THREADING: every callback may be called from any thread the host calls the plugin on.
 */
typedef struct sluice_host_api {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  void* host_ctx;
  /* Writes into the host's log, tagged with the instance name. */
  void (*sluice_host_log)(void* host_ctx, int32_t level, const char* message, size_t len);
  /* Plugin metrics, shown in the stats under the instance. */
  void (*sluice_host_counter_add)(void* host_ctx, const char* name, double delta);
  void (*sluice_host_gauge_set)(void* host_ctx, const char* name, double value);
  /* Memory pressure in [0, 1+]: used / limit of the whole process. */
  double (*sluice_host_memory_pressure)(void* host_ctx);
  /* The instance's name in the pipeline (e.g. "orders.sink"); NUL-terminated, host-owned. */
  const char* (*sluice_host_instance_name)(void* host_ctx);
  /* For sources only, from inside `poll` (e.g. a consumer's partition revocation): waits until
   * every record taken from these partitions is done, calls `commit` with their final
   * positions on this thread, then returns. SLUICE_RETRY if `timeout_ms` passed first. */
  sluice_status (*sluice_host_drain)(void* host_ctx, const sluice_position* partitions,
                                     size_t count, uint32_t timeout_ms);
} sluice_host_api;

/* ------------------------------------------------------------------------------------------ */
/* Plugin table: hooks a plugin exports                                                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * One plugin (a source, transform or sink) of a module.
 * OWNERSHIP: static, owned by the library; the host copies names, versions and the schema
 * right after loading. Optional hooks may be NULL.
 * THREADING: `create`/`destroy` run on the host's control thread. A source's hooks run on its
 * source thread. A transform's or sink's `process`/`put` may run on several worker threads at
 * once for one instance, each call with its own batch (a plugin whose state is not
 * thread-safe guards it itself); the host never calls `flush`, `snapshot` or `destroy`
 * while a `put` of the same instance runs.
 */
typedef struct sluice_plugin {
  uint32_t struct_size;
  sluice_kind kind;
  const char* name;
  const char* version;
  const char* description;
  /* JSON: {"fields":[{"name","type","doc","default","required","secret","path","enum","min",
   * "max"}]} with type one of string, int, double, bool, list, object; "path": true marks a
   * filesystem path, which the host resolves against the pipeline file's folder, and
   * "path_kind" (input, output or any) says what `sluice validate` checks of it. The host checks
   * the pipeline's config against it before anything is created. */
  const char* config_schema_json;

  /* Validates a config (already checked against the schema) without side effects.
   * Optional. */
  sluice_status (*validate)(const char* config_json, size_t config_len, sluice_error* error);
  /* Creates an instance from its config (JSON object, defaults filled in by the host).
   * OWNERSHIP: `*instance` is the plugin's, released only by `destroy`. */
  sluice_status (*create)(const sluice_host_api* host, const char* config_json, size_t config_len,
                          void** instance, sluice_error* error);
  void (*destroy)(void* instance);

  /* Source: appends up to args->max_records records, and about args->max_bytes bytes, to `out`. */
  sluice_status (*poll)(void* instance, sluice_poll_args* args, sluice_writer* out,
                        sluice_error* error);
  /* Source, optional: positions that are done; persist them (Kafka: commit offsets). */
  sluice_status (*commit)(void* instance, const sluice_position* positions, size_t count,
                          sluice_error* error);

  /* Transform: reads `in`, appends 0..n records per input record to `out` (giving the input
   * index), or rejects input records through `out`. */
  sluice_status (*process)(void* instance, const sluice_batch* in, sluice_writer* out,
                           sluice_error* error);

  /* Sink: returns once every record of `in` is durable or rejected through `rejects`. */
  sluice_status (*put)(void* instance, const sluice_batch* in, sluice_writer* rejects,
                       sluice_error* error);
  /* Sink, optional: make everything put so far durable. */
  sluice_status (*flush)(void* instance, sluice_error* error);
  /* Sink, optional: called before the host commits source positions. */
  sluice_status (*pre_commit)(void* instance, sluice_error* error);

  /* Any kind, optional: shrink caches; level is the memory pressure in [0, 1+]. */
  void (*on_memory_pressure)(void* instance, double level);
  /* Any kind, optional: state handed from an old instance to its replacement on hot reload. */
  sluice_status (*snapshot)(void* instance, sluice_buffer* out, sluice_error* error);
  sluice_status (*restore)(void* instance, const uint8_t* data, size_t len, sluice_error* error);
  /* Source, optional: the host pauses (1) or resumes (0) intake; polls continue meanwhile. */
  void (*set_paused)(void* instance, int32_t paused);
} sluice_plugin;

/* ------------------------------------------------------------------------------------------ */
/* Module: what a library exports                                                             */
/* ------------------------------------------------------------------------------------------ */

/*
 * OWNERSHIP: static, owned by the library. `plugins` points to `plugin_count` pointers, so a
 * plugin table can grow without moving the others.
 */
typedef struct sluice_module {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* name;
  const char* version;
  const sluice_plugin* const* plugins;
  size_t plugin_count;
  /* Called once after the handshake, before any `create`; a failure is reported, not thrown.
   * Optional. */
  sluice_status (*init)(const sluice_host_api* host, sluice_error* error);
  /* Called once after the last instance is destroyed, before the library is unloaded. */
  void (*shutdown)(void);
} sluice_module;

/*
 * The entry point: returns the module table, or NULL if the plugin cannot serve this host
 * (it may compare the host's ABI version). Must run no other code of the plugin.
 */
typedef const sluice_module* (*sluice_module_get_fn)(uint32_t host_abi_major,
                                                     uint32_t host_abi_minor);

/* The prototype every plugin library defines (exactly once): declared here so that a definition
 * with another signature does not compile, and exported even from a library built with
 * -fvisibility=hidden. */
SLUICE_EXPORT const sluice_module* sluice_module_get(uint32_t host_abi_major,
                                                     uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_ABI_H */
