// ${env:NAME}, ${env:NAME:-default} and ${file:PATH} expansion inside YAML string values.
#include "config/substitution.hpp"

#include <doctest/doctest.h>

#include <cstdlib>

#include "config_test_support.hpp"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

const Location kWhere{"p.yaml", 3, 9};

std::string expand(std::string_view text) { return substitute(text, kWhere, "/base"); }

}  // namespace

TEST_CASE("${env:NAME:-default} takes the default when the variable is unset or empty") {
  unsetenv("SLUICE_SUBST_TEST");
  CHECK(expand("${env:SLUICE_SUBST_TEST:-/tmp}/out.jsonl") == "/tmp/out.jsonl");
  CHECK(expand("${env:SLUICE_SUBST_TEST:-127.0.0.1:9092}") == "127.0.0.1:9092");
  CHECK(expand("a${env:SLUICE_SUBST_TEST:-}b") == "ab");
  setenv("SLUICE_SUBST_TEST", "", 1);
  CHECK(expand("${env:SLUICE_SUBST_TEST:-fallback}") == "fallback");
  setenv("SLUICE_SUBST_TEST", "set", 1);
  CHECK(expand("${env:SLUICE_SUBST_TEST:-fallback}/x") == "set/x");
  unsetenv("SLUICE_SUBST_TEST");
}

TEST_CASE("${env:NAME} without a default is an error at FILE:LINE:COL when unset") {
  unsetenv("SLUICE_SUBST_TEST");
  CHECK_CONFIG_ERROR(error_of([] { expand("${env:SLUICE_SUBST_TEST}"); }),
                     "p.yaml:3:9: ", "environment variable 'SLUICE_SUBST_TEST' is not set");
  // The message says how to give it a default.
  CHECK_CONFIG_ERROR(error_of([] { expand("${env:SLUICE_SUBST_TEST}"); }),
                     "p.yaml:3:9: ", "${env:SLUICE_SUBST_TEST:-default}");
  // Set but empty, without a default, is the empty string, as in a shell.
  setenv("SLUICE_SUBST_TEST", "", 1);
  CHECK(expand("x${env:SLUICE_SUBST_TEST}y") == "xy");
  unsetenv("SLUICE_SUBST_TEST");
}

TEST_CASE("a bad name before ':-' is still refused") {
  CHECK_CONFIG_ERROR(error_of([] { expand("${env:bad-name:-x}"); }),
                     "p.yaml:3:9: ", "not a valid environment variable name");
  CHECK_CONFIG_ERROR(error_of([] { expand("${env::-x}"); }),
                     "p.yaml:3:9: ", "not a valid environment variable name");
}
