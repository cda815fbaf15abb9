// Fuzz target: the Debezium decoder of plugins/cdc, fed envelope lines (the file sink's
// `envelope` format) and bare key/value pairs. It must never throw or crash on bad input.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "debezium_decoder.hpp"

namespace {

const sluice_cdc::DebeziumDecoder& decoder() {
  static const sluice_cdc::DebeziumDecoder d = [] {
    sluice_cdc::DecoderOptions o;
    o.key_columns["inventory.customers"] = {"id"};
    o.key_columns["public.accounts"] = {"id", "branch"};
    return sluice_cdc::DebeziumDecoder(std::move(o), {{"public.accounts", "branch"}});
  }();
  return d;
}

void touch(const sluice_cdc::Decoded& d) {
  // Reading every field lets ASan see a dangling or uninitialized one.
  volatile size_t sink = d.error.size() + d.table.size() + d.key.size() + d.position.size() +
                         d.json.size() + static_cast<size_t>(d.op);
  (void)sink;
  (void)sluice_cdc::kind_name(d.kind);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data + 1), size - 1);
  const uint8_t mode = data[0] % 3;
  if (mode == 0) {
    // One envelope line.
    sluice_cdc::RawEvent raw;
    std::deque<std::string> storage;
    if (sluice_cdc::split_envelope_line(all, raw, storage).empty()) touch(decoder().decode(raw));
    return 0;
  }
  // A record: key and value separated by the first NUL byte (no NUL: a null key).
  sluice_cdc::RawEvent raw;
  const size_t nul = all.find('\0');
  if (nul == std::string_view::npos) {
    raw.value = all;
  } else {
    raw.key = all.substr(0, nul);
    if (mode == 1) raw.value = all.substr(nul + 1);  // mode 2: a tombstone with this key
  }
  raw.topic = mode == 1 ? "dbserver1.inventory.customers" : "__debezium-heartbeat.dbserver1";
  raw.partition = static_cast<int32_t>(size % 4);
  raw.offset = static_cast<int64_t>(size);
  touch(decoder().decode(raw));
  (void)sluice_cdc::kafka_position(raw.partition, raw.offset);
  return 0;
}
