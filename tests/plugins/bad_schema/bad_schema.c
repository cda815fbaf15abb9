/* Test module bad_schema: a pass-through transform whose config schema is broken three ways (a
 * default of the wrong type, min above max, an enum default not in the enum), which `sluice
 * plugins list` and `inspect` must report, naming the plugin and each field. */
#define HANDMADE_NAME "bad_schema"
#define HANDMADE_SCHEMA                                                                       \
  "{\"fields\":["                                                                             \
  "{\"name\":\"level\",\"type\":\"int\",\"default\":\"high\",\"doc\":\"how loud\"},"          \
  "{\"name\":\"size\",\"type\":\"int\",\"min\":10,\"max\":1},"                                \
  "{\"name\":\"mode\",\"type\":\"string\",\"enum\":[\"fast\",\"safe\"],\"default\":\"slow\"}" \
  "]}"
#include "../handmade/handmade_module.c"
