/* The plugin ABI as a plugin built against sluice 1.0 saw it: this test module's own copy,
 * standing in for an old SDK. Compared with today's abi.h it lacks what 1.1 added
 * (sluice_poll_args::max_bytes) and the typed constants, so a host that read past a struct's
 * struct_size, or laid records out differently, would break the plugins built against it.
 * Comments trimmed; the layouts are those of 1.0 exactly. */
#ifndef SLUICE_ABI_1_0_H
#define SLUICE_ABI_1_0_H

#include <stddef.h>
#include <stdint.h>

#define SLUICE_ABI_MAJOR 1
#define SLUICE_ABI_MINOR 0
#define SLUICE_EXPORT __attribute__((visibility("default")))

typedef int32_t sluice_status;
#define SLUICE_OK 0
#define SLUICE_RETRY 1
#define SLUICE_ERROR 2
#define SLUICE_FATAL 3

typedef int32_t sluice_kind;
#define SLUICE_KIND_SOURCE 1
#define SLUICE_KIND_TRANSFORM 2
#define SLUICE_KIND_SINK 3

typedef struct sluice_error {
  uint32_t struct_size;
  char* message;
  size_t message_capacity;
  char* field;
  size_t field_capacity;
} sluice_error;

typedef struct sluice_bytes {
  const uint8_t* ptr;
  size_t len;
} sluice_bytes;

typedef struct sluice_header {
  sluice_bytes key, value;
} sluice_header;

typedef struct sluice_record {
  uint32_t struct_size;
  sluice_bytes key, value, topic;
  const sluice_header* headers;
  size_t header_count;
  int32_t partition;
  int64_t offset, timestamp_ms;
} sluice_record;

typedef struct sluice_batch {
  uint32_t struct_size;
  const sluice_record* records;
  size_t count;
} sluice_batch;

typedef struct sluice_position sluice_position; /* opaque here: no hook of this module uses it */

typedef struct sluice_writer {
  uint32_t struct_size;
  void* host_ctx;
  sluice_status (*append)(void* host_ctx, size_t input_index, const sluice_record* record);
  sluice_status (*append_owned)(void* host_ctx, size_t input_index, const sluice_record* record,
                                void (*release)(void*), void* release_ctx);
  void (*reject)(void* host_ctx, size_t input_index, sluice_status status, const char* message,
                 size_t message_len);
} sluice_writer;

/* 1.0: no max_bytes. */
typedef struct sluice_poll_args {
  uint32_t struct_size;
  uint32_t max_records;
  uint32_t timeout_ms;
  int32_t end_of_stream;
} sluice_poll_args;

typedef struct sluice_buffer {
  uint32_t struct_size;
  void* host_ctx;
  void (*append)(void* host_ctx, const uint8_t* data, size_t len);
} sluice_buffer;

typedef struct sluice_host_api sluice_host_api; /* opaque here: this module never calls it */

typedef struct sluice_plugin {
  uint32_t struct_size;
  sluice_kind kind;
  const char *name, *version, *description, *config_schema_json;
  sluice_status (*validate)(const char*, size_t, sluice_error*);
  sluice_status (*create)(const sluice_host_api*, const char*, size_t, void**, sluice_error*);
  void (*destroy)(void*);
  sluice_status (*poll)(void*, sluice_poll_args*, sluice_writer*, sluice_error*);
  sluice_status (*commit)(void*, const sluice_position*, size_t, sluice_error*);
  sluice_status (*process)(void*, const sluice_batch*, sluice_writer*, sluice_error*);
  sluice_status (*put)(void*, const sluice_batch*, sluice_writer*, sluice_error*);
  sluice_status (*flush)(void*, sluice_error*);
  sluice_status (*pre_commit)(void*, sluice_error*);
  void (*on_memory_pressure)(void*, double);
  sluice_status (*snapshot)(void*, sluice_buffer*, sluice_error*);
  sluice_status (*restore)(void*, const uint8_t*, size_t, sluice_error*);
  void (*set_paused)(void*, int32_t);
} sluice_plugin;

typedef struct sluice_module {
  uint32_t struct_size;
  uint32_t abi_major, abi_minor;
  const char *name, *version;
  const sluice_plugin* const* plugins;
  size_t plugin_count;
  sluice_status (*init)(const sluice_host_api*, sluice_error*);
  void (*shutdown)(void);
} sluice_module;

#endif /* SLUICE_ABI_1_0_H */
