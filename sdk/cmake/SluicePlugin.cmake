# sluice_add_plugin(NAME [LANGUAGE C] SOURCES ... [LIBRARIES ...] [OUTPUT_DIRECTORY dir]):
# builds a sluice plugin module the way the host expects it: hidden visibility, -fno-gnu-unique
# (so it can unload), no undefined symbols. The file is sluice-NAME.so. LANGUAGE C links
# Sluice::c (abi.h and c.h, C11) instead of Sluice::sdk (sdk.hpp, C++20).
function(sluice_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY;LANGUAGE" "SOURCES;LIBRARIES" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  if(ARG_LANGUAGE STREQUAL "C")
    target_link_libraries(${name} PRIVATE Sluice::c ${ARG_LIBRARIES})
  else()
    target_link_libraries(${name} PRIVATE Sluice::sdk ${ARG_LIBRARIES})
  endif()
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "sluice-${name}"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT ARG_LANGUAGE STREQUAL "C")
    target_compile_options(${name} PRIVATE -fno-gnu-unique)
  endif()
  target_link_options(${name} PRIVATE -Wl,--no-undefined)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  endif()
endfunction()
