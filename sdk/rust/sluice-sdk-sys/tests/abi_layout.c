/* Prints the size of every struct of sluice/abi.h and the offset of every field, one per line,
 * for tests/layout.rs to compare with the Rust mirror. */
#include <stddef.h>
#include <stdio.h>

#include "sluice/abi.h"

#define SIZE(T) printf("%s size %zu\n", #T, sizeof(T))
#define FIELD(T, f) printf("%s.%s %zu\n", #T, #f, offsetof(T, f))

int main(void) {
  SIZE(sluice_error);
  FIELD(sluice_error, message);
  FIELD(sluice_error, message_capacity);
  FIELD(sluice_error, field);
  FIELD(sluice_error, field_capacity);
  SIZE(sluice_bytes);
  FIELD(sluice_bytes, len);
  SIZE(sluice_header);
  FIELD(sluice_header, value);
  SIZE(sluice_record);
  FIELD(sluice_record, key);
  FIELD(sluice_record, value);
  FIELD(sluice_record, topic);
  FIELD(sluice_record, headers);
  FIELD(sluice_record, header_count);
  FIELD(sluice_record, partition);
  FIELD(sluice_record, offset);
  FIELD(sluice_record, timestamp_ms);
  SIZE(sluice_batch);
  FIELD(sluice_batch, records);
  FIELD(sluice_batch, count);
  SIZE(sluice_position);
  FIELD(sluice_position, topic);
  FIELD(sluice_position, partition);
  FIELD(sluice_position, offset);
  SIZE(sluice_writer);
  FIELD(sluice_writer, host_ctx);
  FIELD(sluice_writer, append);
  FIELD(sluice_writer, append_owned);
  FIELD(sluice_writer, reject);
  SIZE(sluice_poll_args);
  FIELD(sluice_poll_args, max_records);
  FIELD(sluice_poll_args, timeout_ms);
  FIELD(sluice_poll_args, end_of_stream);
  FIELD(sluice_poll_args, max_bytes);
  SIZE(sluice_buffer);
  FIELD(sluice_buffer, host_ctx);
  FIELD(sluice_buffer, append);
  SIZE(sluice_host_api);
  FIELD(sluice_host_api, abi_major);
  FIELD(sluice_host_api, abi_minor);
  FIELD(sluice_host_api, host_ctx);
  FIELD(sluice_host_api, sluice_host_log);
  FIELD(sluice_host_api, sluice_host_counter_add);
  FIELD(sluice_host_api, sluice_host_gauge_set);
  FIELD(sluice_host_api, sluice_host_memory_pressure);
  FIELD(sluice_host_api, sluice_host_instance_name);
  FIELD(sluice_host_api, sluice_host_drain);
  FIELD(sluice_host_api, sluice_host_memory_limit);
  SIZE(sluice_plugin);
  FIELD(sluice_plugin, kind);
  FIELD(sluice_plugin, name);
  FIELD(sluice_plugin, version);
  FIELD(sluice_plugin, description);
  FIELD(sluice_plugin, config_schema_json);
  FIELD(sluice_plugin, validate);
  FIELD(sluice_plugin, create);
  FIELD(sluice_plugin, destroy);
  FIELD(sluice_plugin, poll);
  FIELD(sluice_plugin, commit);
  FIELD(sluice_plugin, process);
  FIELD(sluice_plugin, put);
  FIELD(sluice_plugin, flush);
  FIELD(sluice_plugin, pre_commit);
  FIELD(sluice_plugin, on_memory_pressure);
  FIELD(sluice_plugin, snapshot);
  FIELD(sluice_plugin, restore);
  FIELD(sluice_plugin, set_paused);
  SIZE(sluice_module);
  FIELD(sluice_module, abi_major);
  FIELD(sluice_module, abi_minor);
  FIELD(sluice_module, name);
  FIELD(sluice_module, version);
  FIELD(sluice_module, plugins);
  FIELD(sluice_module, plugin_count);
  FIELD(sluice_module, init);
  FIELD(sluice_module, shutdown);
  /* The typed constants, so that their values are checked too. */
  printf("SLUICE_ABI %d.%d\n", SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
  printf("SLUICE_STATUS %d %d %d %d\n", SLUICE_OK, SLUICE_RETRY, SLUICE_ERROR, SLUICE_FATAL);
  printf("SLUICE_KIND %d %d %d\n", SLUICE_KIND_SOURCE, SLUICE_KIND_TRANSFORM, SLUICE_KIND_SINK);
  return 0;
}
