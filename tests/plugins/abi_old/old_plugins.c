/* Test module abi_old: plugins built against their own copy of the ABI 1.0 header
 * (sluice_abi_1_0.h), loaded by today's host. Its tables are shorter than the host's: each ends
 * (struct_size) before some hooks it nevertheless carries in memory, "stray" hooks that abort,
 * so a host that reads past struct_size and calls them is caught.
 * Built twice: abi_old (a source and a transform, which must work) and, with
 * ABI_OLD_SHORT_SINK, abi_short (a sink whose table ends before `put`, which must be refused). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_abi_1_0.h"

static void stray_pressure(void* instance, double level) {
  (void)instance;
  (void)level;
  abort();
}
static sluice_status stray_snapshot(void* instance, sluice_buffer* out, sluice_error* error) {
  (void)instance;
  (void)out;
  (void)error;
  abort();
}
static sluice_status stray_batch(void* instance, const sluice_batch* in, sluice_writer* out,
                                 sluice_error* error) {
  (void)instance;
  (void)in;
  (void)out;
  (void)error;
  abort();
}
static sluice_status stray_init(const sluice_host_api* host, sluice_error* error) {
  (void)host;
  (void)error;
  abort();
}

static sluice_status make(const sluice_host_api* host, const char* config, size_t len,
                          void** instance, sluice_error* error) {
  (void)host;
  (void)config;
  (void)len;
  (void)error;
  *instance = calloc(1, sizeof(int));
  return *instance ? SLUICE_OK : SLUICE_FATAL;
}
static void drop(void* instance) { free(instance); }

static sluice_bytes text(const char* s, size_t len) {
  sluice_bytes b = {(const uint8_t*)s, len};
  return b;
}

#ifndef ABI_OLD_SHORT_SINK

/* Source old_counter: ten records "r0".."r9" with a header, as many per poll as max_records
 * allows. 1.0 had no byte bound, so it knows none: it never reads max_bytes. */
static sluice_status counter_poll(void* instance, sluice_poll_args* args, sluice_writer* out,
                                  sluice_error* error) {
  int* next = (int*)instance;
  (void)error;
  static const sluice_header header = {{(const uint8_t*)"abi", 3}, {(const uint8_t*)"1.0", 3}};
  for (uint32_t n = 0; n < args->max_records && *next < 10; ++n, ++*next) {
    char value[2] = {'r', (char)('0' + *next)};
    sluice_record r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.value = text(value, sizeof value);
    r.topic = text("old", 3);
    r.headers = &header;
    r.header_count = 1;
    r.offset = *next;
    r.timestamp_ms = 1000 + *next;
    sluice_status s = out->append(out->host_ctx, SIZE_MAX, &r);
    if (s != SLUICE_OK) return s;
  }
  if (*next == 10) args->end_of_stream = 1;
  return SLUICE_OK;
}

/* Transform old_upper: upper-cases each value (up to 64 bytes; longer ones are rejected),
 * indexing the batch with its own, 1.0, sizeof(sluice_record). */
static sluice_status upper_process(void* instance, const sluice_batch* in, sluice_writer* out,
                                   sluice_error* error) {
  (void)instance;
  (void)error;
  for (size_t i = 0; i < in->count; ++i) {
    sluice_record r = in->records[i];
    char value[64];
    if (r.value.len > sizeof value) {
      out->reject(out->host_ctx, i, SLUICE_ERROR, "too long", 8);
      continue;
    }
    for (size_t k = 0; k < r.value.len; ++k) value[k] = (char)toupper(r.value.ptr[k]);
    r.value = text(value, r.value.len);
    sluice_status s = out->append(out->host_ctx, i, &r);
    if (s != SLUICE_OK) return s;
  }
  return SLUICE_OK;
}

static const sluice_plugin counter = {
    .struct_size = sizeof(sluice_plugin),
    .kind = SLUICE_KIND_SOURCE,
    .name = "old_counter",
    .version = "1.0.0",
    .description = "Ten records, built against ABI 1.0.",
    .create = make,
    .destroy = drop,
    .poll = counter_poll,
};

/* Its table ends before on_memory_pressure: the hooks after it are strays. */
static const sluice_plugin upper = {
    .struct_size = offsetof(sluice_plugin, on_memory_pressure),
    .kind = SLUICE_KIND_TRANSFORM,
    .name = "old_upper",
    .version = "1.0.0",
    .description = "Upper-cases values, built against ABI 1.0.",
    .config_schema_json = "{\"fields\":[]}",
    .create = make,
    .destroy = drop,
    .process = upper_process,
    .on_memory_pressure = stray_pressure,
    .snapshot = stray_snapshot,
};

static const sluice_plugin* const plugins[] = {&counter, &upper};
#define MODULE_NAME "abi_old"

#else

/* A sink whose table ends before `put`: it lacks its one required hook. */
static const sluice_plugin short_sink = {
    .struct_size = offsetof(sluice_plugin, put),
    .kind = SLUICE_KIND_SINK,
    .name = "short_sink",
    .version = "1.0.0",
    .create = make,
    .destroy = drop,
    .put = stray_batch,
};

static const sluice_plugin* const plugins[] = {&short_sink};
#define MODULE_NAME "abi_short"

#endif

/* The module table ends before `init`: its init is a stray too. */
static const sluice_module module = {
    .struct_size = offsetof(sluice_module, init),
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .name = MODULE_NAME,
    .version = "1.0.0",
    .plugins = plugins,
    .plugin_count = sizeof plugins / sizeof plugins[0],
    .init = stray_init,
};

SLUICE_EXPORT const sluice_module* sluice_module_get(uint32_t host_abi_major,
                                                     uint32_t host_abi_minor) {
  (void)host_abi_minor; /* any 1.x host serves a 1.0 module */
  return host_abi_major == SLUICE_ABI_MAJOR ? &module : NULL;
}
