// The ordering key of a record under `ordering: field`: the value at the first of a list of
// field paths that a JSON value holds (not null).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::middleware {

// Paths are alternatives in order of preference, each a list of object member names: "a.b|c" is
// {{"a", "b"}, {"c"}}.
using FieldPaths = std::vector<std::vector<std::string>>;

// The key at the first path, in `paths`' order, whose value exists and is not null: a string's
// text, or any other value written as compact JSON. nullopt when no path has a value or `json` is
// not JSON up to where the key was found.
//
// One streaming pass (rapidjson's SAX reader, iterative so deep nesting cannot overflow the
// stack), with no document built: it stops as soon as the first path's value is read. This runs
// once per record on the dispatcher thread, where a full parse per record was the largest host
// cost of a CDC pipeline (the Debezium envelope is parsed in full to read one field).
std::optional<std::string> json_field_key(std::string_view json, const FieldPaths& paths);

}  // namespace sluice::middleware
