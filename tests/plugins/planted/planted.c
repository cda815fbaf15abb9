/* A library whose code runs as soon as it is mapped: the proof that a planted file was loaded. */
#include <stdio.h>
#include <stdlib.h>

#include "sluice/abi.h"

__attribute__((constructor)) static void leave_marker(void) {
  const char* marker = getenv("SLUICE_TEST_MARKER");
  if (marker == NULL) return;
  FILE* f = fopen(marker, "w");
  if (f != NULL) {
    fputs("planted code ran\n", f);
    fclose(f);
  }
}

SLUICE_EXPORT int planted_library(void) { return 1; }
