/* The `lines` sink in C: writes each record's value as one line of a file, and counts them.
 *
 * Build: gcc -std=c11 -O2 -shared -fPIC -fvisibility=hidden -I<sdk>/include \
 *            lines.c -o sluice-lines.so */
#define _POSIX_C_SOURCE 200809L /* fileno, fsync */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/c.h"

typedef struct lines {
  const sluice_host_api* host;
  FILE* file;
  pthread_mutex_t lock; /* put may run on several threads at once */
  int64_t max_bytes;    /* longer values are rejected */
  char** reject_prefixes;
  size_t reject_prefix_count;
} lines;

/* Reads the config; on success the caller owns *path and the prefixes in `self`. */
static sluice_status lines_config(const char* json, size_t len, lines* self, char** path,
                                  int* append, sluice_error* error) {
  sluice_cfg cfg = sluice_cfg_of(json, len);
  sluice_status s = sluice_cfg_require(&cfg, "path", error);
  if (s == SLUICE_OK) s = sluice_cfg_string(&cfg, "path", NULL, path, error);
  if (s == SLUICE_OK) s = sluice_cfg_bool(&cfg, "append", 0, append, error);
  if (s == SLUICE_OK) s = sluice_cfg_int(&cfg, "max_bytes", 1 << 20, &self->max_bytes, error);
  if (s == SLUICE_OK && self->max_bytes <= 0)
    s = sluice_error_set(error, "max_bytes", "max_bytes must be positive, not %lld",
                         (long long)self->max_bytes);
  if (s == SLUICE_OK)
    s = sluice_cfg_strings(&cfg, "reject_prefixes", &self->reject_prefixes,
                           &self->reject_prefix_count, error);
  return s;
}

static void lines_destroy(void* instance) {
  lines* self = instance;
  if (self->file) fclose(self->file);
  pthread_mutex_destroy(&self->lock);
  sluice_cfg_strings_free(self->reject_prefixes, self->reject_prefix_count);
  free(self);
}

static sluice_status lines_validate(const char* json, size_t len, sluice_error* error) {
  lines probe = {0};
  char* path = NULL;
  int append = 0;
  sluice_status s = lines_config(json, len, &probe, &path, &append, error);
  free(path);
  sluice_cfg_strings_free(probe.reject_prefixes, probe.reject_prefix_count);
  return s;
}

static sluice_status lines_create(const sluice_host_api* host, const char* json, size_t len,
                                  void** instance, sluice_error* error) {
  lines* self = calloc(1, sizeof *self);
  if (!self) return sluice_error_set(error, "", "out of memory");
  pthread_mutex_init(&self->lock, NULL);
  self->host = host;
  char* path = NULL;
  int append = 0;
  sluice_status s = lines_config(json, len, self, &path, &append, error);
  if (s == SLUICE_OK) {
    self->file = fopen(path, append ? "a" : "w");
    if (!self->file) s = sluice_error_set(error, "path", "cannot open %s", path);
  }
  free(path);
  if (s != SLUICE_OK) {
    lines_destroy(self);
    return s;
  }
  *instance = self;
  return SLUICE_OK;
}

/* The reason to reject `value`, or NULL to write it. */
static const char* lines_refusal(const lines* self, sluice_bytes value) {
  if ((int64_t)value.len > self->max_bytes) return "lines: value longer than max_bytes";
  if (value.ptr && memchr(value.ptr, '\n', value.len)) return "lines: value holds a newline";
  for (size_t p = 0; p < self->reject_prefix_count; ++p) {
    size_t n = strlen(self->reject_prefixes[p]);
    if (value.len >= n && memcmp(value.ptr, self->reject_prefixes[p], n) == 0)
      return "lines: value starts with a rejected prefix";
  }
  return NULL;
}

static sluice_status lines_put(void* instance, const sluice_batch* in, sluice_writer* rejects,
                               sluice_error* error) {
  lines* self = instance;
  size_t written = 0;
  pthread_mutex_lock(&self->lock);
  for (size_t i = 0; i < in->count; ++i) {
    sluice_bytes value = in->records[i].value;
    const char* refusal = lines_refusal(self, value);
    if (refusal) {
      sluice_reject(rejects, i, SLUICE_ERROR, refusal);
      continue;
    }
    if (value.len > 0) fwrite(value.ptr, 1, value.len, self->file);
    fputc('\n', self->file);
    ++written;
  }
  int failed = ferror(self->file);
  pthread_mutex_unlock(&self->lock);
  if (failed) return sluice_error_set(error, "path", "write failed");
  self->host->sluice_host_counter_add(self->host->host_ctx, "records_written", (double)written);
  return SLUICE_OK;
}

/* Durable: flushed to the kernel and synced, before the host commits source positions. */
static sluice_status lines_flush(void* instance, sluice_error* error) {
  lines* self = instance;
  pthread_mutex_lock(&self->lock);
  int failed = fflush(self->file) != 0 || fsync(fileno(self->file)) != 0;
  pthread_mutex_unlock(&self->lock);
  return failed ? sluice_error_set(error, "path", "flush failed") : SLUICE_OK;
}

SLUICE_C_PLUGIN(lines_plugin, SLUICE_KIND_SINK, "lines", "0.1.0",
                "Writes each record's value as one line of a file.",
                "{\"fields\":["
                "{\"name\":\"path\",\"type\":\"string\",\"required\":true,\"path\":true,"
                "\"doc\":\"The file to write.\"},"
                "{\"name\":\"append\",\"type\":\"bool\",\"default\":false,"
                "\"doc\":\"Append to the file instead of truncating it.\"},"
                "{\"name\":\"max_bytes\",\"type\":\"int\",\"default\":1048576,\"min\":1,"
                "\"doc\":\"Longer values are rejected.\"},"
                "{\"name\":\"reject_prefixes\",\"type\":\"list\",\"default\":[],"
                "\"doc\":\"Values starting with one of these are rejected.\"}]}",
                .validate = lines_validate, .create = lines_create, .destroy = lines_destroy,
                .put = lines_put, .flush = lines_flush, .pre_commit = lines_flush);

SLUICE_C_MODULE("c_lines", "0.1.0", NULL, NULL, &lines_plugin)
