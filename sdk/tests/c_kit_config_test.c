/* Checks sluice/c.h's config reader and error helper: values, defaults, and errors that name
 * the field; and the poll byte bound read inside struct_size. Plain C11; exits non-zero at the
 * first failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/c.h"

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

static char message[128];
static char field[32];
static sluice_error error = {sizeof(sluice_error), message, sizeof message, field, sizeof field};

static sluice_cfg cfg(const char* json) { return sluice_cfg_of(json, strlen(json)); }

static void test_values(void) {
  sluice_cfg c = cfg(
      " {\"nested\": {\"a\": [1, {\"b\": \"}\"}]}, \"name\" : \"ada \\\"l\\\" "
      "\\u00e9\\ud83d\\ude00\","
      "\"n\": -42, \"x\": 2.5e1, \"on\": true, \"off\": false, \"tags\": [\"a\", \"b,c\", \"\"],"
      "\"none\": null}");
  char* s = NULL;
  CHECK(sluice_cfg_string(&c, "name", NULL, &s, &error) == SLUICE_OK);
  CHECK(s && strcmp(s, "ada \"l\" \xc3\xa9\xf0\x9f\x98\x80") == 0);
  free(s);
  int64_t n = 0;
  CHECK(sluice_cfg_int(&c, "n", 0, &n, &error) == SLUICE_OK && n == -42);
  double x = 0;
  CHECK(sluice_cfg_double(&c, "x", 0, &x, &error) == SLUICE_OK && x == 25.0);
  int on = 0, off = 1;
  CHECK(sluice_cfg_bool(&c, "on", 0, &on, &error) == SLUICE_OK && on == 1);
  CHECK(sluice_cfg_bool(&c, "off", 1, &off, &error) == SLUICE_OK && off == 0);
  char** tags = NULL;
  size_t count = 0;
  CHECK(sluice_cfg_strings(&c, "tags", &tags, &count, &error) == SLUICE_OK && count == 3);
  CHECK(count == 3 && !strcmp(tags[0], "a") && !strcmp(tags[1], "b,c") && !strcmp(tags[2], ""));
  sluice_cfg_strings_free(tags, count);
  CHECK(sluice_cfg_has(&c, "nested") && !sluice_cfg_has(&c, "none") && !sluice_cfg_has(&c, "a"));
}

static void test_defaults(void) {
  sluice_cfg c = cfg("{}");
  char* s = NULL;
  CHECK(sluice_cfg_string(&c, "name", "dflt", &s, &error) == SLUICE_OK && !strcmp(s, "dflt"));
  free(s);
  int64_t n = 0;
  CHECK(sluice_cfg_int(&c, "n", 7, &n, &error) == SLUICE_OK && n == 7);
  char** tags = (char**)&n;
  size_t count = 9;
  CHECK(sluice_cfg_strings(&c, "tags", &tags, &count, &error) == SLUICE_OK && !tags && !count);
  CHECK(sluice_cfg_require(&c, "path", &error) == SLUICE_ERROR);
  CHECK(!strcmp(field, "path") && !strcmp(message, "path is required"));
}

/* Every wrong type is an error that names the field. */
static void test_type_errors(void) {
  sluice_cfg c =
      cfg("{\"s\": 1, \"i\": 1.5, \"d\": \"x\", \"b\": 1, \"l\": [1], \"big\": 1e400,"
          "\"huge\": 99999999999999999999}");
  char* s = NULL;
  int64_t i = 0;
  double d = 0;
  int b = 0;
  char** l = NULL;
  size_t count = 0;
  CHECK(sluice_cfg_string(&c, "s", NULL, &s, &error) == SLUICE_ERROR && !strcmp(field, "s"));
  CHECK(!strcmp(message, "s must be a string"));
  CHECK(sluice_cfg_int(&c, "i", 0, &i, &error) == SLUICE_ERROR && !strcmp(field, "i"));
  CHECK(sluice_cfg_int(&c, "huge", 0, &i, &error) == SLUICE_ERROR && !strcmp(field, "huge"));
  CHECK(sluice_cfg_double(&c, "d", 0, &d, &error) == SLUICE_ERROR && !strcmp(field, "d"));
  CHECK(sluice_cfg_double(&c, "big", 0, &d, &error) == SLUICE_ERROR && !strcmp(field, "big"));
  CHECK(sluice_cfg_bool(&c, "b", 0, &b, &error) == SLUICE_ERROR && !strcmp(field, "b"));
  CHECK(sluice_cfg_strings(&c, "l", &l, &count, &error) == SLUICE_ERROR && !strcmp(field, "l"));
  CHECK(!l && count == 0);
}

/* Broken configs are errors, never a crash or a read past the end; deep nesting is refused
 * without recursion. */
static void test_malformed(void) {
  const char* broken[] = {"",
                          "[]",
                          "{",
                          "{\"a\"",
                          "{\"a\":",
                          "{\"a\": \"x",
                          "{\"a\": 1 \"b\": 2}",
                          "{\"a\": [1, 2}",
                          "{\"a\": \"\\"};
  for (size_t k = 0; k < sizeof broken / sizeof broken[0]; ++k) {
    sluice_cfg c = cfg(broken[k]);
    int64_t n = 0;
    CHECK(sluice_cfg_int(&c, "zz", 0, &n, &error) == SLUICE_ERROR);
  }
  size_t depth = 100000;
  char* deep = malloc(2 * depth + 16);
  size_t len = 0;
  len += (size_t)sprintf(deep, "{\"a\":");
  for (size_t k = 0; k < depth; ++k) deep[len++] = '[';
  for (size_t k = 0; k < depth; ++k) deep[len++] = ']';
  deep[len++] = '}';
  sluice_cfg c = sluice_cfg_of(deep, len);
  CHECK(!sluice_cfg_has(&c, "b"));
  free(deep);
  /* The reader stops at the given length even if the bytes after it look like more config. */
  const char* text = "{\"a\": 1}, \"b\": 2}";
  sluice_cfg cut = sluice_cfg_of(text, 8);
  CHECK(sluice_cfg_has(&cut, "a") && !sluice_cfg_has(&cut, "b"));
}

/* sluice_error_set truncates to the host's buffers and skips `field` for a shorter struct. */
static void test_error_set(void) {
  char small[8], f[8] = "old";
  sluice_error e = {sizeof(sluice_error), small, sizeof small, f, sizeof f};
  CHECK(sluice_error_set(&e, "a_long_field", "%s", "a long message") == SLUICE_ERROR);
  CHECK(!strcmp(small, "a long ") && !strcmp(f, "a_long_"));
  sluice_error old = {offsetof(sluice_error, field), small, sizeof small, f, sizeof f};
  strcpy(f, "kept");
  sluice_error_set(&old, "x", "m");
  CHECK(!strcmp(f, "kept") && !strcmp(small, "m"));
  CHECK(sluice_error_set(NULL, "x", "m") == SLUICE_ERROR);
}

/* A poll's byte bound, and an ABI 1.0 host's shorter args (max_bytes past struct_size). */
static void test_poll_max_bytes(void) {
  sluice_poll_args args = {sizeof(sluice_poll_args), 10, 0, 0, 4096};
  CHECK(sluice_poll_max_bytes(&args) == 4096);
  args.struct_size = offsetof(sluice_poll_args, max_bytes);
  CHECK(sluice_poll_max_bytes(&args) == UINT64_MAX);
}

int main(void) {
  test_values();
  test_defaults();
  test_type_errors();
  test_malformed();
  test_error_set();
  test_poll_max_bytes();
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  else
    printf("c.h config reader: all checks passed\n");
  return failures ? 1 : 0;
}
