/* The C kit: what a plugin written in C needs beyond abi.h. Header-only, C11, no allocation
 * that crosses the ABI.
 *
 *   - Config accessors over the JSON object the host hands to `validate` and `create`
 *     (sluice_cfg_string, _int, _double, _bool, _strings): a missing field gives the default, a
 *     field of the wrong type is an error that names the field.
 *   - sluice_error_set: fills a sluice_error (message and field) printf-style.
 *   - SLUICE_C_PLUGIN / SLUICE_C_MODULE: the static tables and the exported entry point.
 *
 * The JSON reader reads only the top level of the config object. It never recurses (nested
 * values are skipped with a depth counter) and never reads past the given length, so a hostile
 * or broken config costs at most one pass over its bytes.
 *
 * Build a C plugin with: gcc -std=c11 -shared -fPIC -fvisibility=hidden -I<sdk>/include
 */
#ifndef SLUICE_C_H
#define SLUICE_C_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Copies `text` (truncated to fit, always NUL-terminated) into a host buffer. */
static inline void sluice_c_copy_text(char* buf, size_t capacity, const char* text) {
  if (!buf || capacity == 0) return;
  size_t n = text ? strlen(text) : 0;
  if (n > capacity - 1) n = capacity - 1;
  if (n > 0) memcpy(buf, text, n);
  buf[n] = '\0';
}

/* Fills `error` with a printf-style message and the config field it is about ("" or NULL for
 * none; the host turns the field into FILE:LINE:COL). Returns SLUICE_ERROR, so a hook can
 * `return sluice_error_set(error, "path", "cannot open %s", path);`. */
static inline sluice_status sluice_error_set(sluice_error* error, const char* field,
                                             const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline sluice_status sluice_error_set(sluice_error* error, const char* field,
                                             const char* format, ...) {
  if (!error) return SLUICE_ERROR;
  if (error->message && error->message_capacity > 0) {
    va_list args;
    va_start(args, format);
    vsnprintf(error->message, error->message_capacity, format, args);
    va_end(args);
  }
  /* An older host may hand a shorter sluice_error: touch `field` only if it lies inside. */
  if (SLUICE_HAS_FIELD(error, sluice_error, field_capacity))
    sluice_c_copy_text(error->field, error->field_capacity, field);
  return SLUICE_ERROR;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer and host helpers                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The byte bound of a poll (sluice_poll_args::max_bytes, ABI 1.1), or UINT64_MAX from an older
 * host whose shorter struct has none: read through SLUICE_FIELD_OR, never past struct_size. */
static inline uint64_t sluice_poll_max_bytes(const sluice_poll_args* args) {
  return SLUICE_FIELD_OR(args, sluice_poll_args, max_bytes, UINT64_MAX);
}

/* Rejects input record `index` with a NUL-terminated reason; the rest of the batch goes on. */
static inline void sluice_reject(sluice_writer* out, size_t index, sluice_status status,
                                 const char* reason) {
  out->reject(out->host_ctx, index, status, reason, strlen(reason));
}

/* Appends `record` as the output of input record `index` (the host copies it). */
static inline sluice_status sluice_emit(sluice_writer* out, size_t index,
                                        const sluice_record* record) {
  return out->append(out->host_ctx, index, record);
}

/* Writes a printf-style line into the host's log at `level` (SLUICE_LOG_*). */
static inline void sluice_log(const sluice_host_api* host, int32_t level, const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline void sluice_log(const sluice_host_api* host, int32_t level, const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line, format, args);
  va_end(args);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  host->sluice_host_log(host->host_ctx, level, line, len);
}

/* A sluice_bytes view of `len` bytes at `data`. */
static inline sluice_bytes sluice_bytes_of(const void* data, size_t len) {
  sluice_bytes b = {(const uint8_t*)data, len};
  return b;
}

/* ------------------------------------------------------------------------------------------ */
/* Config: a bounded reader of the top level of a JSON object                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct sluice_cfg {
  const char* json;
  size_t len;
} sluice_cfg;

/* Nesting deeper than this in a config is refused rather than skipped. */
#define SLUICE_CFG_MAX_DEPTH 64

static inline sluice_cfg sluice_cfg_of(const char* json, size_t len) {
  sluice_cfg c = {json, len};
  return c;
}

static inline size_t sluice_cfg_skip_space(const sluice_cfg* c, size_t i) {
  while (i < c->len &&
         (c->json[i] == ' ' || c->json[i] == '\t' || c->json[i] == '\n' || c->json[i] == '\r'))
    ++i;
  return i;
}

/* From the opening quote at `i`: the index just past the closing quote, or 0 if unterminated. */
static inline size_t sluice_cfg_skip_string(const sluice_cfg* c, size_t i) {
  for (++i; i < c->len; ++i) {
    if (c->json[i] == '\\')
      ++i;
    else if (c->json[i] == '"')
      return i + 1;
  }
  return 0;
}

/* From the first byte of a value at `i`: the index just past it, or 0 if it is malformed or
 * nested deeper than SLUICE_CFG_MAX_DEPTH. Iterative: brackets are counted, not recursed. */
static inline size_t sluice_cfg_skip_value(const sluice_cfg* c, size_t i) {
  int depth = 0;
  while (i < c->len) {
    char ch = c->json[i];
    if (ch == '"') {
      i = sluice_cfg_skip_string(c, i);
      if (i == 0) return 0;
    } else if (ch == '{' || ch == '[') {
      if (++depth > SLUICE_CFG_MAX_DEPTH) return 0;
      ++i;
    } else if (ch == '}' || ch == ']') {
      if (depth == 0) return i; /* the end of the enclosing container: a scalar ended here */
      --depth;
      ++i;
    } else if (depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')) {
      return i;
    } else {
      ++i;
    }
    if (depth == 0 && (ch == '"' || ch == '}' || ch == ']')) return i;
  }
  return depth == 0 ? i : 0;
}

/* Compares the JSON string at `i` (quote included) with `name`; only unescaped keys match. */
static inline int sluice_cfg_key_is(const sluice_cfg* c, size_t i, size_t end, const char* name) {
  size_t n = strlen(name);
  return end - i == n + 2 && memcmp(c->json + i + 1, name, n) == 0;
}

/* Finds the value of top-level `field`: 1 with [*begin, *end) set, 0 if absent, -1 if the
 * config is not a well-formed object. */
static inline int sluice_cfg_find(const sluice_cfg* c, const char* field, size_t* begin,
                                  size_t* end) {
  size_t i = sluice_cfg_skip_space(c, 0);
  if (!c->json || i >= c->len || c->json[i] != '{') return -1;
  i = sluice_cfg_skip_space(c, i + 1);
  if (i < c->len && c->json[i] == '}') return 0;
  while (i < c->len && c->json[i] == '"') {
    size_t key_end = sluice_cfg_skip_string(c, i);
    if (key_end == 0) return -1;
    size_t v = sluice_cfg_skip_space(c, key_end);
    if (v >= c->len || c->json[v] != ':') return -1;
    v = sluice_cfg_skip_space(c, v + 1);
    size_t v_end = sluice_cfg_skip_value(c, v);
    if (v_end == 0 || v_end == v) return -1;
    if (sluice_cfg_key_is(c, i, key_end, field)) {
      *begin = v;
      *end = v_end;
      return 1;
    }
    i = sluice_cfg_skip_space(c, v_end);
    if (i < c->len && c->json[i] == '}') return 0;
    if (i >= c->len || c->json[i] != ',') return -1;
    i = sluice_cfg_skip_space(c, i + 1);
  }
  return -1;
}

/* Appends code point `cp` as UTF-8 to out[*n]; out has room for 4 more bytes. */
static inline void sluice_cfg_put_utf8(char* out, size_t* n, unsigned long cp) {
  if (cp < 0x80) {
    out[(*n)++] = (char)cp;
  } else if (cp < 0x800) {
    out[(*n)++] = (char)(0xC0 | (cp >> 6));
    out[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[(*n)++] = (char)(0xE0 | (cp >> 12));
    out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    out[(*n)++] = (char)(0xF0 | (cp >> 18));
    out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*n)++] = (char)(0x80 | (cp & 0x3F));
  }
}

/* Reads 4 hex digits at s[0..3]; -1 if they are not hex. */
static inline long sluice_cfg_hex4(const char* s) {
  long v = 0;
  for (int k = 0; k < 4; ++k) {
    char h = s[k];
    int d = h >= '0' && h <= '9'   ? h - '0'
            : h >= 'a' && h <= 'f' ? h - 'a' + 10
            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Decodes one escape at s[i] (just past the backslash) of a string ending at `end`; returns
 * the index past it, or 0 if it is invalid. */
static inline size_t sluice_cfg_unescape(const char* s, size_t i, size_t end, char* out,
                                         size_t* n) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char* hit = i < end ? strchr(from, s[i]) : NULL;
  if (hit && *hit) {
    out[(*n)++] = to[hit - from];
    return i + 1;
  }
  if (i >= end || s[i] != 'u' || end - i < 5) return 0;
  long cp = sluice_cfg_hex4(s + i + 1);
  i += 5;
  if (cp >= 0xD800 && cp <= 0xDBFF && end - i >= 6 && s[i] == '\\' && s[i + 1] == 'u') {
    long low = sluice_cfg_hex4(s + i + 2);
    if (low >= 0xDC00 && low <= 0xDFFF) {
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      i += 6;
    }
  }
  if (cp < 0) return 0;
  sluice_cfg_put_utf8(out, n, (unsigned long)cp);
  return i;
}

/* Decodes the JSON string at [begin, end) (quotes included) into a malloc'd, NUL-terminated
 * copy; NULL if it is not a valid string (or memory ran out). */
static inline char* sluice_cfg_decode_string(const char* s, size_t begin, size_t end) {
  if (end - begin < 2 || s[begin] != '"' || s[end - 1] != '"') return NULL;
  char* out = (char*)malloc(end - begin + 4); /* an escape never grows its text */
  if (!out) return NULL;
  size_t n = 0;
  for (size_t i = begin + 1; i < end - 1;) {
    if (s[i] != '\\') {
      out[n++] = s[i++];
      continue;
    }
    i = sluice_cfg_unescape(s, i + 1, end - 1, out, &n);
    if (i == 0) {
      free(out);
      return NULL;
    }
  }
  out[n] = '\0';
  return out;
}

/* A malloc'd copy of a NUL-terminated string (strdup is POSIX, not C11). */
static inline char* sluice_c_strdup(const char* text) {
  size_t n = strlen(text) + 1;
  char* copy = (char*)malloc(n);
  if (copy) memcpy(copy, text, n);
  return copy;
}

/* Finds `field` for a getter: 1 found, 0 absent (use the default), or SLUICE_ERROR reported. */
static inline int sluice_cfg_lookup(const sluice_cfg* c, const char* field, size_t* begin,
                                    size_t* end, sluice_error* error) {
  int found = sluice_cfg_find(c, field, begin, end);
  if (found < 0) sluice_error_set(error, "", "the config is not a well-formed JSON object");
  return found;
}

/* Whether the config has `field` (a JSON null counts as absent). */
static inline int sluice_cfg_has(const sluice_cfg* c, const char* field) {
  size_t b = 0, e = 0;
  return sluice_cfg_find(c, field, &b, &e) == 1 && !(e - b == 4 && !memcmp(c->json + b, "null", 4));
}

/* SLUICE_OK if `field` is present, else an error "FIELD is required" naming it. */
static inline sluice_status sluice_cfg_require(const sluice_cfg* c, const char* field,
                                               sluice_error* error) {
  if (sluice_cfg_has(c, field)) return SLUICE_OK;
  return sluice_error_set(error, field, "%s is required", field);
}

/* A string field, as a malloc'd copy the caller frees; `fallback` (copied; may be NULL) if
 * absent. */
static inline sluice_status sluice_cfg_string(const sluice_cfg* c, const char* field,
                                              const char* fallback, char** out,
                                              sluice_error* error) {
  size_t b = 0, e = 0;
  int found = sluice_cfg_lookup(c, field, &b, &e, error);
  if (found < 0) return SLUICE_ERROR;
  if (found == 0) {
    *out = fallback ? sluice_c_strdup(fallback) : NULL;
    return SLUICE_OK;
  }
  *out = sluice_cfg_decode_string(c->json, b, e);
  if (!*out) return sluice_error_set(error, field, "%s must be a string", field);
  return SLUICE_OK;
}

/* Copies the number token at [b, e) into `buf` (NUL-terminated); 0 if it does not fit. */
static inline int sluice_cfg_number_text(const sluice_cfg* c, size_t b, size_t e, char* buf,
                                         size_t cap) {
  if (e - b == 0 || e - b >= cap) return 0;
  memcpy(buf, c->json + b, e - b);
  buf[e - b] = '\0';
  return 1;
}

/* An integer field (a JSON number without fraction or exponent, in int64_t range). */
static inline sluice_status sluice_cfg_int(const sluice_cfg* c, const char* field, int64_t fallback,
                                           int64_t* out, sluice_error* error) {
  size_t b = 0, e = 0;
  int found = sluice_cfg_lookup(c, field, &b, &e, error);
  if (found < 0) return SLUICE_ERROR;
  *out = fallback;
  if (found == 0) return SLUICE_OK;
  char text[32], *stop = NULL;
  if (sluice_cfg_number_text(c, b, e, text, sizeof text) && text[0] != '+') {
    errno = 0;
    long long v = strtoll(text, &stop, 10);
    if (*stop == '\0' && errno == 0) {
      *out = (int64_t)v;
      return SLUICE_OK;
    }
  }
  return sluice_error_set(error, field, "%s must be an integer", field);
}

/* A number field. */
static inline sluice_status sluice_cfg_double(const sluice_cfg* c, const char* field,
                                              double fallback, double* out, sluice_error* error) {
  size_t b = 0, e = 0;
  int found = sluice_cfg_lookup(c, field, &b, &e, error);
  if (found < 0) return SLUICE_ERROR;
  *out = fallback;
  if (found == 0) return SLUICE_OK;
  char text[64], *stop = NULL;
  int plain = sluice_cfg_number_text(c, b, e, text, sizeof text) &&
              strspn(text, "0123456789+-.eE") == strlen(text);
  if (plain) {
    errno = 0;
    double v = strtod(text, &stop);
    int overflow = errno == ERANGE && (v > 1 || v < -1); /* underflow to ~0 is fine */
    if (*stop == '\0' && !overflow) {
      *out = v;
      return SLUICE_OK;
    }
  }
  return sluice_error_set(error, field, "%s must be a number", field);
}

/* A bool field (JSON true or false), as 1 or 0. */
static inline sluice_status sluice_cfg_bool(const sluice_cfg* c, const char* field, int fallback,
                                            int* out, sluice_error* error) {
  size_t b = 0, e = 0;
  int found = sluice_cfg_lookup(c, field, &b, &e, error);
  if (found < 0) return SLUICE_ERROR;
  *out = fallback;
  if (found == 0) return SLUICE_OK;
  if (e - b == 4 && memcmp(c->json + b, "true", 4) == 0) {
    *out = 1;
  } else if (e - b == 5 && memcmp(c->json + b, "false", 5) == 0) {
    *out = 0;
  } else {
    return sluice_error_set(error, field, "%s must be true or false", field);
  }
  return SLUICE_OK;
}

/* Frees a list from sluice_cfg_strings. */
static inline void sluice_cfg_strings_free(char** items, size_t count) {
  if (!items) return;
  for (size_t i = 0; i < count; ++i) free(items[i]);
  free(items);
}

/* Reads the items of the JSON array at [b, e) into `items` (room for every item); returns the
 * count, or SIZE_MAX if an item is not a string or the array is malformed. */
static inline size_t sluice_cfg_read_strings(const sluice_cfg* c, size_t b, size_t e,
                                             char** items) {
  sluice_cfg inner = {c->json, e};
  size_t count = 0, i = sluice_cfg_skip_space(&inner, b + 1);
  if (i < e && c->json[i] == ']') return 0;
  while (i < e && c->json[i] == '"') {
    size_t item_end = sluice_cfg_skip_string(&inner, i);
    if (item_end == 0) break;
    items[count] = sluice_cfg_decode_string(c->json, i, item_end);
    if (!items[count]) break;
    ++count;
    i = sluice_cfg_skip_space(&inner, item_end);
    if (i < e && c->json[i] == ']') return count;
    if (i >= e || c->json[i] != ',') break;
    i = sluice_cfg_skip_space(&inner, i + 1);
  }
  while (count > 0) free(items[--count]); /* the caller frees the array itself */
  return SIZE_MAX;
}

/* A list-of-strings field, as a malloc'd array of malloc'd strings (free both with
 * sluice_cfg_strings_free); an empty list (NULL, 0) if absent. */
static inline sluice_status sluice_cfg_strings(const sluice_cfg* c, const char* field, char*** out,
                                               size_t* count, sluice_error* error) {
  size_t b = 0, e = 0;
  int found = sluice_cfg_lookup(c, field, &b, &e, error);
  *out = NULL;
  *count = 0;
  if (found < 0) return SLUICE_ERROR;
  if (found == 0) return SLUICE_OK;
  if (c->json[b] != '[')
    return sluice_error_set(error, field, "%s must be a list of strings", field);
  /* Every item takes at least 3 bytes ("",), so this bounds the item count. */
  char** items = (char**)calloc((e - b) / 3 + 1, sizeof(char*));
  if (!items) return sluice_error_set(error, field, "%s: out of memory", field);
  size_t n = sluice_cfg_read_strings(c, b, e, items);
  if (n == SIZE_MAX) {
    free(items);
    return sluice_error_set(error, field, "%s must be a list of strings", field);
  }
  *out = items;
  *count = n;
  return SLUICE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Tables                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/*
 * SLUICE_C_PLUGIN(var, KIND, "name", "version", "description", "schema json", hooks...)
 * defines `static const sluice_plugin var`, e.g.
 *   SLUICE_C_PLUGIN(upper, SLUICE_KIND_TRANSFORM, "upper", "1.0.0", "Upper-cases values.",
 *                   "{\"fields\":[]}", .create = upper_create, .destroy = upper_destroy,
 *                   .process = upper_process);
 */
#define SLUICE_C_PLUGIN(VAR, KIND, NAME, VERSION, DESCRIPTION, SCHEMA, ...) \
  static const sluice_plugin VAR = {.struct_size = sizeof(sluice_plugin),   \
                                    .kind = (KIND),                         \
                                    .name = (NAME),                         \
                                    .version = (VERSION),                   \
                                    .description = (DESCRIPTION),           \
                                    .config_schema_json = (SCHEMA),         \
                                    __VA_ARGS__}

/*
 * SLUICE_C_MODULE("module", "version", INIT, SHUTDOWN, &plugin_a, &plugin_b, ...)
 * defines the module table and the exported entry point `sluice_module_get`. INIT and SHUTDOWN
 * (sluice_module's optional hooks) may be NULL. Use it once per library.
 */
#define SLUICE_C_MODULE(NAME, VERSION, INIT, SHUTDOWN, ...)                       \
  static const sluice_plugin* const sluice_c_plugins_[] = {__VA_ARGS__};          \
  static const sluice_module sluice_c_module_ = {                                 \
      .struct_size = sizeof(sluice_module),                                       \
      .abi_major = SLUICE_ABI_MAJOR,                                              \
      .abi_minor = SLUICE_ABI_MINOR,                                              \
      .name = (NAME),                                                             \
      .version = (VERSION),                                                       \
      .plugins = sluice_c_plugins_,                                               \
      .plugin_count = sizeof sluice_c_plugins_ / sizeof sluice_c_plugins_[0],     \
      .init = (INIT),                                                             \
      .shutdown = (SHUTDOWN)};                                                    \
  SLUICE_EXPORT const sluice_module* sluice_module_get(uint32_t host_abi_major,   \
                                                       uint32_t host_abi_minor) { \
    (void)host_abi_minor; /* the host accepts modules of an older minor */        \
    return host_abi_major == SLUICE_ABI_MAJOR ? &sluice_c_module_ : NULL;         \
  }

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_C_H */
