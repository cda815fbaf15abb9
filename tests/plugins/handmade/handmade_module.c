/* A sluice module written by hand in plain C against abi.h alone; compiled with defines to give
 * each test module exactly one defect (HANDMADE_MAJOR_DELTA, HANDMADE_MINOR_DELTA,
 * HANDMADE_INIT_FAILS, HANDMADE_SCHEMA). Its one plugin is a pass-through transform named
 * HANDMADE_NAME. */
#include <string.h>

#include "sluice/abi.h"

#ifndef HANDMADE_NAME
#error "define HANDMADE_NAME"
#endif
#ifndef HANDMADE_MAJOR_DELTA
#define HANDMADE_MAJOR_DELTA 0
#endif
#ifndef HANDMADE_SCHEMA
#define HANDMADE_SCHEMA "{\"fields\":[]}"
#endif
#ifndef HANDMADE_MINOR_DELTA
#define HANDMADE_MINOR_DELTA 0
#endif

/* Instances hold no state, so every instance is this one object. */
static int the_instance;

static sluice_status passthrough_create(const sluice_host_api* host, const char* config_json,
                                        size_t config_len, void** instance, sluice_error* error) {
  (void)host;
  (void)config_json;
  (void)config_len;
  (void)error;
  *instance = &the_instance;
  return SLUICE_OK;
}

static void passthrough_destroy(void* instance) { (void)instance; }

static sluice_status passthrough_process(void* instance, const sluice_batch* in, sluice_writer* out,
                                         sluice_error* error) {
  (void)instance;
  (void)error;
  for (size_t i = 0; i < in->count; ++i) {
    sluice_status s = out->append(out->host_ctx, i, &in->records[i]);
    if (s != SLUICE_OK) return s;
  }
  return SLUICE_OK;
}

static const sluice_plugin passthrough = {
    .struct_size = sizeof(sluice_plugin),
    .kind = SLUICE_KIND_TRANSFORM,
    .name = HANDMADE_NAME,
    .version = "1.0.0",
    .description = "Passes records through; written in C.",
    .config_schema_json = HANDMADE_SCHEMA,
    .create = passthrough_create,
    .destroy = passthrough_destroy,
    .process = passthrough_process,
};

static const sluice_plugin* const plugins[] = {&passthrough};

#ifdef HANDMADE_INIT_FAILS
static sluice_status refuse_init(const sluice_host_api* host, sluice_error* error) {
  static const char kMessage[] = "init refused";
  (void)host;
  if (error && error->message && error->message_capacity > 0) {
    size_t n = sizeof kMessage - 1;
    if (n > error->message_capacity - 1) n = error->message_capacity - 1;
    memcpy(error->message, kMessage, n);
    error->message[n] = '\0';
  }
  return SLUICE_ERROR;
}
#define HANDMADE_INIT refuse_init
#else
#define HANDMADE_INIT NULL
#endif

static const sluice_module module = {
    .struct_size = sizeof(sluice_module),
    .abi_major = SLUICE_ABI_MAJOR + HANDMADE_MAJOR_DELTA,
    .abi_minor = SLUICE_ABI_MINOR + HANDMADE_MINOR_DELTA,
    .name = HANDMADE_NAME,
    .version = "1.0.0",
    .plugins = plugins,
    .plugin_count = sizeof plugins / sizeof plugins[0],
    .init = HANDMADE_INIT,
    .shutdown = NULL,
};

SLUICE_EXPORT const sluice_module* sluice_module_get(uint32_t host_abi_major,
                                                     uint32_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &module;
}
