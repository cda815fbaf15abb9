// Registers the file module: the `file` source and the `file` sink.
#include "file_plugins.hpp"

using sluice_plugins::FileSink;
using sluice_plugins::FileSource;

SLUICE_MODULE("file", "0.1.0", SLUICE_SOURCE(FileSource, "file"), SLUICE_SINK(FileSink, "file"))
