/* The `uppercase` transform in C: upper-cases one string field of JSON object values.
 * The same plugin as sdk/template/uppercase.cpp (C++) and sdk/rust/examples/uppercase (Rust).
 *
 * Build: gcc -std=c11 -O2 -shared -fPIC -fvisibility=hidden -I<sdk>/include \
 *            uppercase.c -o sluice-uppercase.so */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/c.h"

typedef struct uppercase {
  char* field; /* the top-level string field to upper-case */
} uppercase;

static sluice_status uppercase_validate(const char* json, size_t len, sluice_error* error) {
  sluice_cfg cfg = sluice_cfg_of(json, len);
  char* field = NULL;
  sluice_status s = sluice_cfg_require(&cfg, "field", error);
  if (s == SLUICE_OK) s = sluice_cfg_string(&cfg, "field", NULL, &field, error);
  if (s == SLUICE_OK && field[0] == '\0')
    s = sluice_error_set(error, "field", "field must not be empty");
  free(field);
  return s;
}

static sluice_status uppercase_create(const sluice_host_api* host, const char* json, size_t len,
                                      void** instance, sluice_error* error) {
  (void)host;
  sluice_status s = uppercase_validate(json, len, error);
  if (s != SLUICE_OK) return s;
  uppercase* self = calloc(1, sizeof *self);
  if (!self) return sluice_error_set(error, "", "out of memory");
  sluice_cfg cfg = sluice_cfg_of(json, len);
  s = sluice_cfg_string(&cfg, "field", NULL, &self->field, error);
  if (s != SLUICE_OK) {
    free(self);
    return s;
  }
  *instance = self;
  return SLUICE_OK;
}

static void uppercase_destroy(void* instance) {
  uppercase* self = instance;
  free(self->field);
  free(self);
}

/* Upper-cases the ASCII letters of the JSON string at text[begin, end), leaving escapes as they
 * are (upper-casing the `u` of \u00e9 would break it). */
static void upper_json_string(char* text, size_t begin, size_t end) {
  for (size_t i = begin + 1; i + 1 < end; ++i) {
    if (text[i] == '\\')
      i += text[i + 1] == 'u' ? 5 : 1;
    else
      text[i] = (char)toupper((unsigned char)text[i]);
  }
}

/* Handles input record `i`: forwards it, emits it changed, or rejects it. */
static sluice_status uppercase_one(const uppercase* self, const sluice_record* record, size_t i,
                                   sluice_writer* out) {
  if (!record->value.ptr) return sluice_emit(out, i, record); /* tombstones pass unchanged */
  /* c.h's reader reads the top level of any JSON object, a record's value as well as a config. */
  sluice_cfg value = sluice_cfg_of((const char*)record->value.ptr, record->value.len);
  size_t begin = 0, end = 0;
  int found = sluice_cfg_find(&value, self->field, &begin, &end);
  if (found < 0) {
    sluice_reject(out, i, SLUICE_ERROR, "uppercase: value is not a JSON object");
    return SLUICE_OK; /* one bad record is rejected; the rest of the batch goes on */
  }
  if (found == 0 || value.json[begin] != '"') return sluice_emit(out, i, record);
  char* text = malloc(record->value.len);
  if (!text) return SLUICE_RETRY;
  memcpy(text, record->value.ptr, record->value.len);
  upper_json_string(text, begin, end);
  sluice_record changed = *record;
  changed.value = sluice_bytes_of(text, record->value.len);
  sluice_status s = sluice_emit(out, i, &changed); /* the host copies the bytes */
  free(text);
  return s;
}

/* May run on several threads at once: it only reads the instance. */
static sluice_status uppercase_process(void* instance, const sluice_batch* in, sluice_writer* out,
                                       sluice_error* error) {
  (void)error;
  for (size_t i = 0; i < in->count; ++i) {
    sluice_status s = uppercase_one(instance, &in->records[i], i, out);
    if (s != SLUICE_OK) return s;
  }
  return SLUICE_OK;
}

SLUICE_C_PLUGIN(uppercase_plugin, SLUICE_KIND_TRANSFORM, "uppercase", "0.1.0",
                "Upper-cases one string field of JSON objects.",
                "{\"fields\":[{\"name\":\"field\",\"type\":\"string\",\"required\":true,"
                "\"doc\":\"The top-level string field to upper-case.\"}]}",
                .validate = uppercase_validate, .create = uppercase_create,
                .destroy = uppercase_destroy, .process = uppercase_process);

SLUICE_C_MODULE("c_uppercase", "0.1.0", NULL, NULL, &uppercase_plugin)
