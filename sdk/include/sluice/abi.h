/* The C ABI between the sluice host and its plugins: the only contract that crosses a .so. */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

/*
 * Rules of this header
 *   - Plain C: only <stdint.h> and <stddef.h>. No C++ type, exception or allocation crosses.
 *   - Three name families: `sluice_*` types, hooks a plugin exports in its `sluice_plugin`
 *     table (`create`, `poll`, `put`, ...), and `sluice_host_*` callbacks the host offers.
 *   - Every struct handed over one at a time starts with `struct_size`. A reader touches a field
 *     only if it lies inside `struct_size` (SLUICE_HAS_FIELD below); such structs only ever grow
 *     at the end, so a new minor version appends fields and an older peer simply does not see
 *     them. The sizes in this header are those of ABI 1.SLUICE_ABI_MINOR.
 *   - FROZEN: `sluice_record`, `sluice_header` and `sluice_position` travel in arrays, which the
 *     other side indexes with its own sizeof; a bigger element would shift every element after
 *     the first. So their size and layout (and that of `sluice_bytes`, which they embed) are
 *     frozen for all of ABI 1.x (checked at compile time below). Data a later
 *     minor adds per record goes beside the array, never into it: a new field of sluice_batch
 *     (e.g. a parallel array, one entry per record) and a new hook of sluice_writer, both of
 *     which can grow. This was chosen over a stride (`record_size` in the batch) because a
 *     stride would have to be honoured by every plugin that indexes `records` and by every
 *     header array, while plugins built against 1.0 already index with sizeof: a host with a
 *     bigger record would have to copy every batch into each older plugin's layout anyway.
 *   - Versions: the host refuses a module whose `abi_major` differs from its own, or whose
 *     `abi_minor` is newer than its own ("plugin needs ABI 1.N, newer than the host's 1.M;
 *     upgrade sluice"): such a plugin may rely on hooks or fields this host does not know. A
 *     module of an older minor is served as it is: the host reads its tables only inside their
 *     `struct_size`, and gives it the newer, longer structs, whose extra fields it ignores.
 *   - OWNERSHIP lines say who owns memory after each call. A plugin never allocates memory
 *     that the host frees, and the other way round.
 *   - THREADING lines say on which thread, and when, a hook is called. The host's threads are:
 *     the control thread (loads libraries, creates, validates, destroys, hot-reloads), one
 *     source thread per pipeline, and the stage's worker threads (transforms and sinks).
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_ABI_MAJOR 1
/* 1.1: sluice_poll_args::max_bytes. 1.2: the host reads a plugin's `description` and
 * `config_schema_json` after the module's `init` (which may build them), so a module that fills
 * them in `init` declares 1.2 and an older host refuses it rather than see no schema.
 * 1.3: sluice_host_api::sluice_host_memory_limit. */
#define SLUICE_ABI_MINOR 3

#if defined(_WIN32)
#define SLUICE_EXPORT __declspec(dllexport)
#else
#define SLUICE_EXPORT __attribute__((visibility("default")))
#endif

/*
 * Whether `field` of the versioned struct `*ptr` (of type `type`) lies inside its struct_size,
 * i.e. whether the peer that filled the struct knew the field. Read a field only when this is
 * true; SLUICE_FIELD_OR reads it or gives `fallback`. `ptr` is evaluated more than once.
 * The host and every SDK use these two, so the check is written once.
 */
#define SLUICE_HAS_FIELD(ptr, type, field) \
  ((size_t)(ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))
#define SLUICE_FIELD_OR(ptr, type, field, fallback) \
  (SLUICE_HAS_FIELD(ptr, type, field) ? (ptr)->field : (fallback))

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

/* FROZEN for ABI 1.x (see the rules at the top): headers travel in arrays. */
typedef struct sluice_header {
  sluice_bytes key;
  sluice_bytes value;
} sluice_header;

/*
 * One record: a view, never an owner.
 * `partition`/`offset` are the record's position in its source (a Kafka partition and offset,
 * a file's line); sources set them, transforms and sinks read them.
 * FROZEN for ABI 1.x (see the rules at the top): records travel in arrays, so their size never
 * changes within a major. `struct_size` is always sizeof(sluice_record); a reader may rely on
 * every field, and a writer sets struct_size = sizeof(sluice_record).
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

/* The frozen layouts, checked wherever this header is compiled (64-bit targets). */
#if defined(__cplusplus)
#define SLUICE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define SLUICE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
SLUICE_STATIC_ASSERT(sizeof(sluice_header) == 32, "sluice_header is frozen for ABI 1.x");
SLUICE_STATIC_ASSERT(sizeof(sluice_record) == 96, "sluice_record is frozen for ABI 1.x");
SLUICE_STATIC_ASSERT(offsetof(sluice_record, timestamp_ms) == 88,
                     "sluice_record is frozen for ABI 1.x");
#endif

/*
 * A batch handed to a transform or sink: `count` records at `records`, indexed with
 * sizeof(sluice_record) (frozen). A later minor may add per-record data as new fields here.
 * OWNERSHIP: host-owned; records and every byte they point to are valid only during the call
 * (copy what must outlive it).
 */
typedef struct sluice_batch {
  uint32_t struct_size;
  const sluice_record* records;
  size_t count;
} sluice_batch;

/* A source position the host has finished with, handed back to the source's `commit`.
 * OWNERSHIP: host-owned (topic bytes included), valid only during the call.
 * FROZEN for ABI 1.x (see the rules at the top): positions travel in arrays. */
typedef struct sluice_position {
  uint32_t struct_size;
  sluice_bytes topic;
  int32_t partition;
  /* The highest offset such that this record and every earlier one of the partition are done
   * (delivered, dead-lettered or filtered). A Kafka source commits offset + 1. */
  int64_t offset;
} sluice_position;

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
SLUICE_STATIC_ASSERT(sizeof(sluice_position) == 40, "sluice_position is frozen for ABI 1.x");
#endif

/*
 * The host-owned output of a call: sources and transforms append records to it, every kind
 * may reject single input records through it.
 * THREADING: call only from inside the hook it was passed to, on that thread.
 * OWNERSHIP: host-owned, valid only during the hook it was passed to.
 */
typedef struct sluice_writer {
  uint32_t struct_size;
  void* host_ctx;
  /* Appends a record. `input_index` is the index of the input record it derives from (a
   * transform must give it, so acks stay exact); sources pass SIZE_MAX.
   * OWNERSHIP: the host copies the record, its header array and its bytes before returning;
   * the plugin keeps ownership of what it passed. */
  sluice_status (*append)(void* host_ctx, size_t input_index, const sluice_record* record);
  /* Zero-copy append: the host keeps pointers into the plugin's memory and calls
   * `release(release_ctx)` once it no longer needs them (also when the append fails).
   * THREADING: `release` may run on any host thread, after the hook returned.
   * OWNERSHIP: the bytes stay the plugin's; the plugin must keep them valid until release. The
   * header array is copied before returning. */
  sluice_status (*append_owned)(void* host_ctx, size_t input_index, const sluice_record* record,
                                void (*release)(void* release_ctx), void* release_ctx);
  /* Rejects one input record with a status (SLUICE_RETRY or SLUICE_ERROR; any other counts as
   * SLUICE_ERROR, and only a sink's SLUICE_RETRY is retried) and a reason; the rest of the batch
   * goes on. A second reject of the same record is ignored; an index outside the batch fails the
   * call. A transform's outputs for a record it rejects are dropped. OWNERSHIP: the host copies
   * `message`. */
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

/* A byte sink for `snapshot`. OWNERSHIP: host-owned, valid during `snapshot`; the host copies
 * what is appended before `append` returns. */
typedef struct sluice_buffer {
  uint32_t struct_size;
  void* host_ctx;
  void (*append)(void* host_ctx, const uint8_t* data, size_t len);
} sluice_buffer;

/* ------------------------------------------------------------------------------------------ */
/* Host API: callbacks the host offers every plugin instance                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * OWNERSHIP: host-owned, valid from `create` until `destroy` returns (the module's one, passed
 * to `init`, until `shutdown` returns). Strings passed in are copied by the host before the call
 * returns; strings it returns are host-owned.
 * THREADING: every callback may be called from any thread the host calls the plugin on, and
 * from the plugin's own threads while the instance lives; they are thread-safe.
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
  /* Memory pressure in [0, 1+]: the larger of the process's RSS and the records the pipeline
   * holds, over the pipeline's memory limit, as last sampled (about every 50 ms). */
  double (*sluice_host_memory_pressure)(void* host_ctx);
  /* The instance's name in the pipeline (e.g. "orders.sink"); NUL-terminated, host-owned. */
  const char* (*sluice_host_instance_name)(void* host_ctx);
  /* For sources only, from inside `poll` (e.g. a consumer's partition revocation): waits until
   * every record taken from these partitions is done, calls `commit` with their final
   * positions on this thread, then returns. SLUICE_RETRY if `timeout_ms` passed first, or at
   * once when the pipeline is stopping (leave what is not done uncommitted and return from
   * `poll`: the stop drains with its grace); SLUICE_ERROR at once when the pipeline has failed
   * (those records will never be done).
   * THREADING: the source thread, inside `poll` only. OWNERSHIP: `partitions` stays the
   * plugin's; the host reads it during the call. */
  sluice_status (*sluice_host_drain)(void* host_ctx, const sluice_position* partitions,
                                     size_t count, uint32_t timeout_ms);
  /* Since ABI 1.3 (read it only if `struct_size` covers it). The pipeline's memory limit in
   * bytes (`performance.memory_limit_mb`, else the cgroup's memory.max, else physical memory;
   * in an isolated stage's child, the smaller of that and the stage's own `memory_limit_mb`);
   * 0 if unknown. The runtime counts the records it holds against the limit, not a plugin's own
   * buffers: a plugin that keeps its own (a client's prefetch queue, a cache) sizes them from
   * this, so that the process stays near the limit. Fixed for the instance's life. */
  uint64_t (*sluice_host_memory_limit)(void* host_ctx);
} sluice_host_api;

/* ------------------------------------------------------------------------------------------ */
/* Plugin table: hooks a plugin exports                                                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * One plugin (a source, transform or sink) of a module.
 * OWNERSHIP: static, owned by the library, valid until it is unloaded. `kind`, `name`,
 * `version` and the hooks are read when the entry point returns; `description` and
 * `config_schema_json` only after the module's `init` returned SLUICE_OK (since 1.2), so `init`
 * may build them (a plugin SDK builds the schema there, not in the entry point). The host copies
 * every text right after reading it. Optional hooks may be NULL. The host reads a hook only inside
 * `struct_size` (SLUICE_HAS_FIELD), so a table built against an older minor lacks the newer
 * hooks.
 * THREADING: per hook below. In short: `validate`, `create`, `destroy` and, for transforms and
 * sinks, `snapshot`/`restore` run on the control thread; everything of a source runs on its
 * pipeline's source thread, one call at a time; a transform's `process` and a sink's `put` may
 * run on several worker threads at once for one instance, each call with its own batch (a
 * plugin whose state is not thread-safe guards it itself). The host never calls `flush`,
 * `pre_commit`, `snapshot` or `destroy` while a `process`/`put` of the same instance runs, and
 * never calls any hook of an instance after its `destroy` began.
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
   * the pipeline's config against it before anything is created. NULL: no fields. */
  const char* config_schema_json;

  /* Validates a config (already checked against the schema) without side effects. Optional.
   * THREADING: control thread, before `create`; also from `sluice validate` with no instance.
   * OWNERSHIP: `config_json` and `error` are the host's, valid during the call. */
  sluice_status (*validate)(const char* config_json, size_t config_len, sluice_error* error);
  /* Creates an instance from its config (JSON object, defaults filled in by the host).
   * THREADING: control thread. OWNERSHIP: `host` stays valid until `destroy` returns;
   * `config_json` only during the call; `*instance` is the plugin's, released only by
   * `destroy`. */
  sluice_status (*create)(const sluice_host_api* host, const char* config_json, size_t config_len,
                          void** instance, sluice_error* error);
  /* Releases an instance. THREADING: control thread, after every other call of the instance
   * returned (a swapped-out instance too, never on the source or a worker thread).
   * OWNERSHIP: `instance` is invalid afterwards. */
  void (*destroy)(void* instance);

  /* Source: appends up to args->max_records records, and about args->max_bytes bytes, to `out`.
   * THREADING: the source thread. OWNERSHIP: `args`, `out` and `error` are the host's, valid
   * during the call; the plugin may set args->end_of_stream. */
  sluice_status (*poll)(void* instance, sluice_poll_args* args, sluice_writer* out,
                        sluice_error* error);
  /* Source, optional: positions that are done; persist them (Kafka: commit offsets).
   * THREADING: the source thread, between polls (or inside `poll`, from sluice_host_drain).
   * OWNERSHIP: `positions` are the host's, valid during the call. */
  sluice_status (*commit)(void* instance, const sluice_position* positions, size_t count,
                          sluice_error* error);

  /* Transform: reads `in`, appends 0..n records per input record to `out` (giving the input
   * index), or rejects input records through `out`. SLUICE_ERROR fails the call: the host then
   * calls again with each half of `in` (and so on) to find the records the failure stays with.
   * THREADING: a worker thread; concurrent calls on one instance are allowed (see above).
   * OWNERSHIP: `in`, `out`, `error` are the host's, valid during the call only. */
  sluice_status (*process)(void* instance, const sluice_batch* in, sluice_writer* out,
                           sluice_error* error);

  /* Sink: returns once every record of `in` is durable or rejected through `rejects`.
   * THREADING: a worker thread; concurrent calls on one instance are allowed (see above).
   * OWNERSHIP: `in`, `rejects`, `error` are the host's, valid during the call only: a sink that
   * buffers records copies them. */
  sluice_status (*put)(void* instance, const sluice_batch* in, sluice_writer* rejects,
                       sluice_error* error);
  /* Sink, optional: make everything put so far durable. At the end of a run, a failure keeps
   * the host from committing the last positions (the run fails; the next one reads them again).
   * THREADING: the source thread at the end of a run, or a worker thread; never during a
   * `put` of the instance. */
  sluice_status (*flush)(void* instance, sluice_error* error);
  /* Sink, optional: called before the host commits source positions at the end of a run; a
   * failure keeps the host from committing them, as for `flush`.
   * THREADING: as `flush`. */
  sluice_status (*pre_commit)(void* instance, sluice_error* error);

  /* Any kind, optional: shrink caches; level is the memory pressure in [0, 1+].
   * THREADING: a source's on its source thread, between polls; a transform's or sink's on the
   * stage's dispatcher thread, possibly while `process`/`put` calls run (keep it thread-safe). */
  void (*on_memory_pressure)(void* instance, double level);
  /* Any kind, optional: state handed from an old instance to its replacement on hot reload.
   * THREADING: a source's on its source thread, between polls (old instance `snapshot`, then
   * new instance `restore`); a transform's or sink's on the control thread, while no batch is
   * in the stage. OWNERSHIP: `out` is the host's (it copies what is appended); `data` of
   * `restore` is the host's, valid during the call. */
  sluice_status (*snapshot)(void* instance, sluice_buffer* out, sluice_error* error);
  sluice_status (*restore)(void* instance, const uint8_t* data, size_t len, sluice_error* error);
  /* Source, optional: the host pauses (1) or resumes (0) intake; polls continue meanwhile.
   * THREADING: the source thread, between polls. */
  void (*set_paused)(void* instance, int32_t paused);
} sluice_plugin;

/* ------------------------------------------------------------------------------------------ */
/* Module: what a library exports                                                             */
/* ------------------------------------------------------------------------------------------ */

/*
 * OWNERSHIP: static, owned by the library, valid until it is unloaded. `plugins` points to
 * `plugin_count` pointers, so a plugin table can grow without moving the others.
 */
typedef struct sluice_module {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* name;
  const char* version;
  const sluice_plugin* const* plugins;
  size_t plugin_count;
  /* The module's own setup, once per load, right after the handshake and before the host reads
   * any description or schema or calls any other hook (as Envoy's on_program_init): the place
   * for plugin code that builds schemas or global state. A failure is reported through `error`
   * and the library is not used. Optional.
   * THREADING: control thread. OWNERSHIP: `host` (its instance name is "module") stays valid
   * until `shutdown` returns; `error` during the call. */
  sluice_status (*init)(const sluice_host_api* host, sluice_error* error);
  /* Called once after the last instance is destroyed, before the library is unloaded (only if
   * `init` succeeded or is NULL). Optional. THREADING: control thread. */
  void (*shutdown)(void);
} sluice_module;

/*
 * The entry point: returns the module table, or NULL if the plugin cannot serve this host
 * (it may compare the host's ABI version). It must run no other code of the plugin (no
 * constructor of the author's, no schema building): it returns static tables, nothing else;
 * the plugin's own setup belongs in `init`.
 * THREADING: control thread, once per load. OWNERSHIP: the table is the library's.
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
