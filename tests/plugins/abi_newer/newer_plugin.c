/* Test module abi_newer: a plugin built against a newer minor than the host's, whatever the
 * host's is (it answers one more than the minor it is asked with). Its tables are longer than
 * the host's: the module and the plugin table carry a field and a hook the host does not know.
 * abi.h promises that the host refuses such a module, naming both versions. */
#include <stddef.h>

#include "sluice/abi.h"

static sluice_status make(const sluice_host_api* host, const char* config, size_t len,
                          void** instance, sluice_error* error) {
  static int the_instance;
  (void)host;
  (void)config;
  (void)len;
  (void)error;
  *instance = &the_instance;
  return SLUICE_OK;
}
static void drop(void* instance) { (void)instance; }
static sluice_status pass(void* instance, const sluice_batch* in, sluice_writer* out,
                          sluice_error* error) {
  (void)instance;
  (void)error;
  for (size_t i = 0; i < in->count; ++i) out->append(out->host_ctx, i, &in->records[i]);
  return SLUICE_OK;
}
static void on_rebalance(void* instance) { (void)instance; }

/* The tables as the newer minor would declare them: today's, plus fields at the end. */
typedef struct {
  sluice_plugin base;
  void (*on_rebalance)(void* instance);
} newer_plugin;
typedef struct {
  sluice_module base;
  const char* homepage;
} newer_module;

static const newer_plugin plugin = {
    .base = {.struct_size = sizeof(newer_plugin),
             .kind = SLUICE_KIND_TRANSFORM,
             .name = "newer",
             .version = "1.0.0",
             .create = make,
             .destroy = drop,
             .process = pass},
    .on_rebalance = on_rebalance,
};
static const sluice_plugin* const plugins[] = {&plugin.base};
static newer_module module = {
    .base = {.struct_size = sizeof(newer_module),
             .abi_major = SLUICE_ABI_MAJOR,
             .name = "abi_newer",
             .version = "1.0.0",
             .plugins = plugins,
             .plugin_count = 1},
    .homepage = "https://example.org",
};

SLUICE_EXPORT const sluice_module* sluice_module_get(uint32_t host_abi_major,
                                                     uint32_t host_abi_minor) {
  module.base.abi_major = host_abi_major;
  module.base.abi_minor = host_abi_minor + 1;
  return &module.base;
}
