#!/usr/bin/env python3
"""Writes corpus.jsonl, the cases of the Kafka SMT differential test (smt_differential_test).

Each case names a Kafka class, its config (Kafka's keys, string values as in a .properties
file), an optional predicate with negate, and records with and without keys, tombstones, nested,
unicode and non-object values, and headers. Run it after editing; commit both files."""
import json
import os

T = "org.apache.kafka.connect.transforms."
P = T + "predicates."


def rec(value, key=None, topic="orders", headers=(), ts=1700000000000, partition=1):
    return {"topic": topic, "partition": partition, "key": key, "value": value,
            "headers": [list(h) for h in headers], "timestamp": ts}


records = [
    rec({"id": 1, "name": "Zoë ☃", "nested": {"a": 1, "b": [1, 2]}, "gone": None},
        key={"id": 1}, headers=[("h", "x")]),
    rec({"id": 2, "price": 1.5, "flag": True, "s": ""}, key=None),
    rec({}, key="k"),
    rec(None, key={"id": 3}),  # a tombstone
    rec(None, key=None),  # a tombstone with a null key
    rec(42), rec("text"), rec([1, 2, 3]),
    rec({"id": -9223372036854775808, "big": 1e300, "emoji": "😀", "quote": "a\"b"},
        topic="users", headers=[("a", "1"), ("a", "2")]),
]
objects = [records[0], records[1], records[2], records[8]]
keyrecs = [rec({"v": 1}, key={"id": 7, "n": {"x": "y"}}), rec({"v": 2}, key=None),
           rec(None, key={"id": 8}), rec({"v": 3}, key=5), rec({"v": 4}, key="s")]
nested = [rec({"a": {"b": {"c": 1}, "d": [1, {"x": 1}]}, "e": None, "f": {}, "g": "ü"}),
          rec({"a": {"b": 1}, "c": {"d": {"e": {"f": True}}}}, key={"k": {"x": 1}})]
cases = []


def case(name, smt, config, recs=records, **kw):
    c = {"name": name, "smt": T + smt, "config": config, "records": recs}
    c.update(kw)
    cases.append(c)


# InsertField
case("insert_all_value", "InsertField$Value",
     {"topic.field": "t", "partition.field": "p", "offset.field": "o", "timestamp.field": "ts",
      "static.field": "s", "static.value": "ünï"})
case("insert_static_key", "InsertField$Key", {"static.field": "src", "static.value": "db1"},
     keyrecs)
case("insert_required_suffix", "InsertField$Value",
     {"topic.field": "t!", "static.field": "s?", "static.value": "v"})
case("insert_overwrites", "InsertField$Value", {"static.field": "id", "static.value": "x"})
# ReplaceField
case("replace_exclude_rename", "ReplaceField$Value",
     {"exclude": "gone,price", "renames": "id:ident,name:nom"})
case("replace_include", "ReplaceField$Value", {"include": "id, nested"})
case("replace_include_exclude", "ReplaceField$Value", {"include": "id,name", "exclude": "name"})
case("replace_key", "ReplaceField$Key", {"renames": "id:key_id"}, keyrecs)
# MaskField
case("mask_zero", "MaskField$Value", {"fields": "id,name,nested,price,flag,gone,missing"},
     records[:3] + records[5:])
case("mask_tombstone", "MaskField$Value", {"fields": "id"}, [records[3], records[4]])
case("mask_replacement_string", "MaskField$Value", {"fields": "name,s", "replacement": "***"},
     [records[0], records[1]])
case("mask_replacement_number", "MaskField$Value", {"fields": "id,price", "replacement": "7"},
     [records[0], records[1], records[8]])
case("mask_replacement_bad", "MaskField$Value", {"fields": "id,nested,flag", "replacement": "x"},
     [records[0], records[1]])
case("mask_key", "MaskField$Key", {"fields": "id"}, keyrecs[:1] + keyrecs[3:])
# ExtractField
case("extract_value", "ExtractField$Value", {"field": "nested"})
case("extract_missing", "ExtractField$Value", {"field": "nope"})
case("extract_key", "ExtractField$Key", {"field": "id"}, keyrecs)
case("extract_v2_path", "ExtractField$Value", {"field": "nested.b", "field.syntax.version": "V2"})
case("extract_v2_backticks", "ExtractField$Value",
     {"field": "`a.b`.c", "field.syntax.version": "V2"},
     [rec({"a.b": {"c": "dot"}, "a": {"b": {"c": "no"}}}), rec({"a": {"b": {"c": "no"}}})])
case("extract_v1_dots_literal", "ExtractField$Value", {"field": "a.b"},
     [rec({"a.b": 1, "a": {"b": 2}})])
# HoistField
case("hoist_value", "HoistField$Value", {"field": "wrapped"})
case("hoist_key", "HoistField$Key", {"field": "k"}, keyrecs)
# ValueToKey
case("value_to_key", "ValueToKey", {"fields": "id,nested,missing"})
case("value_to_key_keyrecs", "ValueToKey", {"fields": "v"}, keyrecs)
# Flatten
case("flatten_value", "Flatten$Value", {}, records + nested)
case("flatten_delimiter", "Flatten$Value", {"delimiter": "__"}, nested)
case("flatten_key", "Flatten$Key", {}, keyrecs + nested)
# RegexRouter
case("regex_router", "RegexRouter", {"regex": "(o.*)(s)", "replacement": "$2-$1-x"})
case("regex_router_groups", "RegexRouter", {"regex": "([a-z]+)-(\\d+)", "replacement": "db.$1.$2"},
     [rec({"a": 1}, topic="abc-12"), rec(None, topic="abc"), rec({}, topic="ü-1")])
case("regex_router_escape", "RegexRouter", {"regex": ".*", "replacement": "\\$x"})
# TimestampRouter
case("timestamp_router_default", "TimestampRouter", {},
     records + [rec({}, ts=0), rec({}, ts=-1), rec({}, ts=253402300799999)])
case("timestamp_router_format", "TimestampRouter",
     {"topic.format": "${timestamp}/${topic}/${timestamp}",
      "timestamp.format": "yyyy-MM-dd'T'HH:mm:ss.SSS EEE MMM ''yy"},
     [rec({}, ts=1700000000123), rec({}, ts=-1), rec(None, ts=951782400000)])
# InsertHeader, DropHeaders, HeaderFrom
case("insert_header", "InsertHeader", {"header": "h", "value.literal": "42"})
case("insert_header_text", "InsertHeader", {"header": "ünï", "value.literal": "some text ☃"})
case("drop_headers", "DropHeaders", {"headers": "a,h,missing"},
     records + [rec({}, headers=[("a", "1"), ("c", "2"), ("b", "3"), ("a", "4")])])
case("header_from_copy", "HeaderFrom$Value",
     {"fields": "id,name,nested,price,flag,missing", "headers": "h1,h2,h3,h4,h5,h6",
      "operation": "copy"}, objects + [records[3], records[5]])
case("header_from_move", "HeaderFrom$Value",
     {"fields": "id,name", "headers": "id,h", "operation": "move"}, objects)
case("header_from_key", "HeaderFrom$Key", {"fields": "id", "headers": "kid", "operation": "copy"},
     keyrecs)
# Filter with predicates
case("filter_all", "Filter", {})
case("filter_tombstones", "Filter", {}, predicate={"class": P + "RecordIsTombstone"})
case("filter_keep_topic", "Filter", {}, predicate={
    "class": P + "TopicNameMatches", "config": {"pattern": "ord.*"}}, negate=True)
case("filter_header", "Filter", {}, predicate={"class": P + "HasHeaderKey",
                                               "config": {"name": "a"}})
# Predicates on other transforms
case("pred_tombstone_negate", "InsertField$Value", {"static.field": "s", "static.value": "v"},
     predicate={"class": P + "RecordIsTombstone"}, negate=True)
case("pred_topic", "ReplaceField$Value", {"exclude": "id"},
     predicate={"class": P + "TopicNameMatches", "config": {"pattern": "us.*"}})
case("pred_topic_negate", "HoistField$Value", {"field": "w"},
     predicate={"class": P + "TopicNameMatches", "config": {"pattern": "us.*"}}, negate=True)
case("pred_header", "MaskField$Value", {"fields": "id"}, records[:3],
     predicate={"class": P + "HasHeaderKey", "config": {"name": "h"}})

# Cast (schemaless)
casts = [rec({"a": 300, "b": 70000, "c": 2.7, "d": -2.7, "e": 1.1, "f": "1e3", "g": "false",
              "h": 1.5}),
         rec({"a": True, "b": False, "c": "12", "d": "9223372036854775807", "e": "x"}),
         rec({"g": "yes"}), rec({"g": 2, "h": "ü"}), rec({"h": {"x": 1}}), rec({"h": [1]}),
         rec({"h": None}), rec({"c": "1.5"}), rec({"h": True}), rec({"h": 1e20, "c": 1e20}),
         rec({"a": -129, "d": -1e300}), rec({"c": 3000000000, "e": 3.4e39}),
         rec({"h": 0.001, "f": 123456789}), rec({"h": 0.0001, "e": 16777217}),
         rec(None), rec(5)]
case("cast_fields", "Cast$Value",
     {"spec": "a:int8,b:int16,c:int32,d:int64,e:float32,f:float64,g:boolean,h:string"}, casts)
case("cast_whole_key", "Cast$Key", {"spec": "int32"},
     [rec({}, key="12"), rec({}, key=None), rec({}, key=1.9), rec({}, key=True),
      rec({}, key={"a": 1}), rec({}, key="x")])
case("cast_whole_value_string", "Cast$Value", {"spec": "string"},
     [rec(5), rec(1.25), rec(False), rec("s"), rec(None), rec([1])])
# TimestampConverter (schemaless)
stamps = [rec({"ts": 1700000000123}), rec({"ts": "2023-11-14 22:13:20.123"}), rec({"ts": -1}),
          rec({"ts": 1.5}), rec({"ts": True}), rec({"ts": None}), rec({"a": 1}),
          rec({"ts": "2023-13-32 25:61:61.1000"}), rec({"ts": "2023-11-14 22:13:20.123 and more"}),
          rec({"ts": "2023-11-14"}), rec({"ts": "x"}), rec({"ts": 0}), rec({"ts": 951782400000}),
          rec(None), rec(5)]
case("timestamp_converter_string", "TimestampConverter$Value",
     {"field": "ts", "target.type": "string", "format": "yyyy-MM-dd HH:mm:ss.SSS"}, stamps)
case("timestamp_converter_unix", "TimestampConverter$Value",
     {"field": "ts", "target.type": "unix", "format": "yyyy-MM-dd HH:mm:ss.SSS"}, stamps)
case("timestamp_converter_seconds", "TimestampConverter$Value",
     {"field": "ts", "target.type": "unix", "unix.precision": "seconds",
      "format": "yyyyMMddHHmmss"},
     [rec({"ts": 1700000000123}), rec({"ts": -1}), rec({"ts": "20231114221320"})])
case("timestamp_converter_micros", "TimestampConverter$Value",
     {"field": "ts", "target.type": "string", "unix.precision": "microseconds",
      "format": "dd/MM/yy HH:mm:ss.SSS 'at' EEE"},
     [rec({"ts": 1700000000123456}), rec({"ts": -1}), rec({"ts": 999})])
case("timestamp_converter_whole_key", "TimestampConverter$Key",
     {"target.type": "string", "format": "yyyy"},
     [rec({}, key=1700000000123), rec({}, key=None), rec({}, key={"ts": 1})])
case("timestamp_converter_date", "TimestampConverter$Value", {"field": "ts", "target.type": "Date"},
     [rec({"ts": 1700000000123}), rec(None)])

# SetSchemaMetadata: schema'd only in Kafka
case("set_schema_metadata_schemaless", "SetSchemaMetadata$Value", {"schema.name": "x.Y"},
     records[:5])

# With schemas.enable: the {schema, payload} envelope of Kafka's JsonConverter.
SCHEMA = {"type": "struct", "name": "shop.Order", "version": 2, "optional": False, "fields": [
    {"field": "id", "type": "int32", "optional": False},
    {"field": "name", "type": "string", "optional": True},
    {"field": "n", "type": "struct", "optional": True,
     "fields": [{"field": "a", "type": "int64", "optional": True},
                {"field": "b", "type": "struct", "optional": True,
                 "fields": [{"field": "c", "type": "string", "optional": True}]}]}]}
OPT_INT = {"type": "int32", "optional": True}


def env(payload, schema=SCHEMA):
    return {"schema": schema, "payload": payload}


schemad = [
    rec(env({"id": 1, "name": "Zoë ☃", "n": {"a": 5, "b": {"c": "deep"}}}), key=env(7, OPT_INT),
        headers=[("h", "x")]),
    rec(env({"id": 2, "name": None, "n": None})),
    rec(None, key=env(3, OPT_INT)),  # a tombstone
    rec(env(None, OPT_INT)),  # a null with a schema
    rec(env(5, OPT_INT)),  # not a struct
    rec(env({"id": 3, "x": [1]}, None)),  # schema null: schemaless
]
case("schema_insert_field", "InsertField$Value",
     {"topic.field": "t!", "partition.field": "p", "offset.field": "o", "timestamp.field": "ts",
      "static.field": "s", "static.value": "v"}, schemad, schemas=True)
case("schema_insert_duplicate", "InsertField$Value", {"static.field": "id", "static.value": "v"},
     schemad[:2], schemas=True)
case("schema_replace_field", "ReplaceField$Value", {"exclude": "name", "renames": "id:ident"},
     schemad, schemas=True)
case("schema_replace_include", "ReplaceField$Value", {"include": "n,id"}, schemad, schemas=True)
case("schema_extract_field", "ExtractField$Value", {"field": "n"}, schemad, schemas=True)
case("schema_extract_missing", "ExtractField$Value", {"field": "nope"}, schemad[:1],
     schemas=True)
case("schema_extract_v2", "ExtractField$Value", {"field": "n.b", "field.syntax.version": "V2"},
     schemad[:2], schemas=True)
case("schema_extract_key", "ExtractField$Key", {"field": "id"}, schemad[:3], schemas=True)
case("schema_hoist_field", "HoistField$Value", {"field": "w"}, schemad, schemas=True)
case("schema_hoist_key", "HoistField$Key", {"field": "k"}, schemad, schemas=True)

case("schema_flatten", "Flatten$Value", {}, schemad, schemas=True)
case("schema_flatten_delimiter", "Flatten$Value", {"delimiter": "_"}, schemad[:2], schemas=True)
case("schema_value_to_key", "ValueToKey", {"fields": "id,n"}, schemad, schemas=True)
case("schema_value_to_key_unknown", "ValueToKey", {"fields": "nope"}, schemad[:1], schemas=True)
case("schema_mask_field", "MaskField$Value", {"fields": "id,name"}, schemad, schemas=True)
case("schema_mask_struct", "MaskField$Value", {"fields": "n"}, schemad[:2], schemas=True)
case("schema_header_from_move", "HeaderFrom$Value",
     {"fields": "id,n", "headers": "a,b", "operation": "move"}, schemad, schemas=True)
case("schema_header_from_copy", "HeaderFrom$Value",
     {"fields": "name", "headers": "a", "operation": "copy"}, schemad, schemas=True)
case("schema_cast_fields", "Cast$Value", {"spec": "id:string,name:int32"}, schemad, schemas=True)
case("schema_cast_id", "Cast$Value", {"spec": "id:float64"}, schemad, schemas=True)
case("schema_cast_whole_key", "Cast$Key", {"spec": "string"}, schemad[:3], schemas=True)
TS_SCHEMA = {"type": "struct", "optional": False, "fields": [
    {"field": "ts", "type": "int64", "name": "org.apache.kafka.connect.data.Timestamp",
     "version": 1, "optional": True},
    {"field": "s", "type": "string", "optional": True},
    {"field": "u", "type": "int64", "optional": False},
    {"field": "d", "type": "int32", "name": "org.apache.kafka.connect.data.Date", "version": 1,
     "optional": True}]}
ts_recs = [rec(env({"ts": 1700000000123, "s": "2023-11-14", "u": 1700000000123, "d": 19675},
                   TS_SCHEMA)),
           rec(env({"ts": None, "s": None, "u": -1, "d": None}, TS_SCHEMA)),
           rec(env({"ts": -86400001, "s": "1969-12-31", "u": 0, "d": -1}, TS_SCHEMA)),
           rec(None)]
for field, tt in [("ts", "string"), ("s", "Timestamp"), ("u", "Date"), ("u", "Time"),
                  ("ts", "unix"), ("d", "Timestamp"), ("ts", "Date"), ("nope", "unix")]:
    case(f"schema_timestamp_converter_{field}_{tt}", "TimestampConverter$Value",
         {"field": field, "target.type": tt, "format": "yyyy-MM-dd"}, ts_recs, schemas=True)
case("schema_timestamp_converter_whole", "TimestampConverter$Value",
     {"target.type": "unix", "unix.precision": "seconds"},
     [rec(env(1700000000123, TS_SCHEMA["fields"][0])), rec(None)], schemas=True)
bad_schemas = [rec(env({"id": 1}, {"type": "struct", "fields": [{"type": "int32"}]})),
               rec(env({"id": 1}, {"fields": []})),
               rec(env({"id": 1}, {"type": "struct", "fields": [{"field": "id"}]})),
               rec(env({"id": 1}, {"type": "struct"})),
               rec(env(5)), rec(env("x")), rec(env([1])),
               rec({"id": 1})]
for smt in ["Flatten$Value", "ReplaceField$Value", "Cast$Value", "InsertField$Value"]:
    case("schema_malformed_" + smt.split("$")[0], smt,
         {"renames": "id:x"} if smt.startswith("Replace") else
         {"spec": "id:string"} if smt.startswith("Cast") else
         {"static.field": "s", "static.value": "v"} if smt.startswith("Insert") else {},
         bad_schemas, schemas=True)
case("schema_set_schema_metadata", "SetSchemaMetadata$Value",
     {"schema.name": "new.Name", "schema.version": "3"}, schemad, schemas=True)
case("schema_set_schema_metadata_name", "SetSchemaMetadata$Key", {"schema.name": "k"},
     schemad[:3], schemas=True)

# The schema cache (smt_schema_cache_test): runs of one schema, where every record after the
# first takes the cached path, broken by records it must refuse or that change the schema: an
# envelope written payload first, another schema, nulls, a tombstone, escapes in strings.
schema_runs = schemad[:2] + [
    rec({"payload": {"id": 4, "name": "q\"\\\u0001\U0001F600", "n": {"a": 1, "b": None}},
         "schema": SCHEMA}),
    rec(env({"id": 5, "name": "x", "n": None}, {**SCHEMA, "name": "shop.Other"})),
    rec(env({"id": 6, "name": "y", "n": {"a": 2, "b": {"c": "z"}}})),
    schemad[2], schemad[3], schemad[0], schemad[1]]
for smt, cfg in [("InsertField$Value", {"static.field": "s", "static.value": "v",
                                        "topic.field": "t"}),
                 ("ReplaceField$Value", {"exclude": "name", "renames": "id:ident"}),
                 ("MaskField$Value", {"fields": "id,name"})]:
    case("schema_cache_runs_" + smt.split("$")[0].lower(), smt, cfg, schema_runs, schemas=True)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "corpus.jsonl"), "w", encoding="utf-8") as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
print(len(cases), "cases,", sum(len(c["records"]) for c in cases), "records")
