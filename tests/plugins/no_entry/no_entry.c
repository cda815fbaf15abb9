/* A shared object that is not a sluice module: it exports no sluice_module_get. */
#include "sluice/abi.h"

SLUICE_EXPORT int not_a_sluice_module(void) { return 42; }
