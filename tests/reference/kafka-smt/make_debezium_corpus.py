#!/usr/bin/env python3
"""Writes debezium_corpus.jsonl, the cases of the Debezium transforms' differential test
(smt_differential_test): Debezium change events in the JsonConverter's {schema, payload} form
(read, create, update, delete, tombstone, truncate; a heartbeat; null keys), outbox rows, and
the tables of a sharded database for the router, plus the same events without schemas. Each case
names a Debezium class and its config (Debezium's keys). Run it after editing; commit both."""
import json
import os

D = "io.debezium.transforms."


def prim(t, field=None, optional=False, **kw):
    s = {"type": t, "optional": optional, **kw}
    if field:
        s["field"] = field
    return s


def struct(name, fields, field=None, optional=False, **kw):
    s = {"type": "struct", "fields": fields, "optional": optional, "name": name, **kw}
    if field:
        s["field"] = field
    return s


SOURCE = struct("io.debezium.connector.postgresql.Source", [
    prim("string", "version"), prim("string", "connector"), prim("string", "name"),
    prim("int64", "ts_ms"),
    prim("string", "snapshot", True, name="io.debezium.data.Enum", version=1,
         parameters={"allowed": "true,last,false,incremental"}, default="false"),
    prim("string", "db"), prim("string", "schema"), prim("string", "table"),
    prim("int64", "txId", True), prim("int64", "lsn", True)], field="source")
TRANSACTION = struct("event.block", [
    prim("string", "id"), prim("int64", "total_order"), prim("int64", "data_collection_order")],
    field="transaction", optional=True, version=1)


def row_schema(topic, columns):
    return struct(topic + ".Value", columns, optional=True)


def envelope_schema(topic, columns):
    row = row_schema(topic, columns)
    return struct(topic + ".Envelope", [
        {**row, "field": "before"}, {**row, "field": "after"}, SOURCE, TRANSACTION,
        prim("string", "op"), prim("int64", "ts_ms", True)], version=2)


def source(table, ts, snapshot="false", lsn=100):
    return {"version": "3.6.1.Final", "connector": "postgresql", "name": "dbserver1",
            "ts_ms": ts, "snapshot": snapshot, "db": "inventory", "schema": "public",
            "table": table, "txId": 700 + lsn, "lsn": lsn}


def event(topic, columns, op, before, after, table, ts=1700000000000, txn=None, **src):
    payload = {"before": before, "after": after, "source": source(table, ts - 5, **src),
               "transaction": txn, "op": op, "ts_ms": ts}
    return {"schema": envelope_schema(topic, columns), "payload": payload}


def key(topic, value, columns):
    return {"schema": struct(topic + ".Key", columns), "payload": value}


def rec(topic, k, v, headers=(), ts=1700000000000):
    return {"topic": topic, "partition": 0, "key": k, "value": v,
            "headers": [list(h) for h in headers], "timestamp": ts}


# ---- customers: every kind of change event ----
CT = "dbserver1.inventory.customers"
CUSTOMER = [prim("int32", "id"), prim("string", "first_name"), prim("string", "email", True),
            prim("string", "region", True), prim("double", "score", True),
            prim("boolean", "vip", True)]
KEY = [prim("int32", "id")]
alice = {"id": 1, "first_name": "Alice", "email": "alice@example.com", "region": "eu",
         "score": 1.5, "vip": True}
alice2 = {**alice, "email": "a@example.org", "region": None}
bob = {"id": 2, "first_name": "Bøb ☃", "email": None, "region": "us", "score": None, "vip": None}
txn = {"id": "571:53195832", "total_order": 1, "data_collection_order": 1}


def customer(op, before, after, k=1, **kw):
    return rec(CT, key(CT, {"id": k}, KEY), event(CT, CUSTOMER, op, before, after, "customers",
                                                   **kw))


changes = [
    customer("r", None, alice, snapshot="true"),
    customer("c", None, bob, k=2, txn=txn),
    customer("u", alice, alice2),
    customer("d", alice2, None),
    rec(CT, key(CT, {"id": 1}, KEY), None),  # the tombstone after a delete
    rec(CT, None, event(CT, CUSTOMER, "t", None, None, "customers")),  # a truncate
    rec(CT, None, event(CT, CUSTOMER, "c", None, bob, "customers")),  # a table without a key
    rec("__debezium-heartbeat.dbserver1", None,
        {"schema": struct("io.debezium.connector.common.Heartbeat", [prim("int64", "ts_ms")]),
         "payload": {"ts_ms": 1700000000000}}),
    rec(CT, key(CT, {"id": 1}, KEY), {"schema": None, "payload": None}),  # a null with no schema
]
changes[2]["headers"] = [["trace", "abc"]]
schemaless = [dict(r, key=r["key"] and r["key"]["payload"],
                   value=r["value"] and r["value"]["payload"]) for r in changes]

cases = []


def case(name, cls, config, recs, schemas=True):
    cases.append({"name": name, "smt": cls, "config": config, "schemas": schemas,
                  "source": True, "records": recs})


U = D + "ExtractNewRecordState"
case("unwrap_default", U, {}, changes)
case("unwrap_schemaless_passes_through", U, {}, schemaless, schemas=False)
for mode in ["tombstone", "drop", "rewrite", "rewrite-with-tombstone", "delete-to-tombstone"]:
    case("unwrap_mode_" + mode, U, {"delete.tombstone.handling.mode": mode}, changes)
case("unwrap_add_fields", U,
     {"add.fields": "op,table,source.ts_ms,ts_ms,lsn:position,id,snapshot"}, changes)
case("unwrap_add_fields_prefix_rewrite", U,
     {"add.fields": "op,db", "add.fields.prefix": "meta_",
      "delete.tombstone.handling.mode": "rewrite"}, changes)
case("unwrap_add_fields_duplicate", U, {"add.fields": "id:id", "add.fields.prefix": ""},
     changes[:2])
case("unwrap_add_headers", U, {"add.headers": "op,db,source.ts_ms,txId,total_order",
                                "delete.tombstone.handling.mode": "rewrite-with-tombstone"},
     changes)
case("unwrap_add_headers_prefix", U, {"add.headers": "op,table:tbl", "add.headers.prefix": "dbz."},
     changes)
case("unwrap_route_by_field", U, {"route.by.field": "region"}, changes)
case("unwrap_route_by_missing_field", U, {"route.by.field": "nope"}, changes[:2])
case("unwrap_route_by_non_string", U, {"route.by.field": "vip"}, changes[:1])

# The schema cache (smt_schema_cache_test): the change events twice over (the second time every
# schema and every unwrapped schema is cached), with another table's event with a nested struct,
# an envelope written payload first and escapes in strings between.
OT_ = "dbserver1.inventory.orders"
ADDRESS = struct("x.Address", [prim("string", "city", True)], field="address", optional=True)
cache_runs = changes + [
    rec(OT_, key(OT_, {"id": 9}, KEY), event(OT_, CUSTOMER + [ADDRESS], "c", None,
                                             {**alice, "address": {"city": "Zürich"}}, "orders")),
    dict(changes[2], value={"payload": changes[2]["value"]["payload"],
                            "schema": changes[2]["value"]["schema"]}),
    customer("c", None, {**bob, "first_name": "q\"\\\u0001\U0001F600"}, k=3),
] + changes
case("unwrap_schema_cache_runs", U,
     {"add.fields": "op,table", "delete.tombstone.handling.mode": "rewrite"}, cache_runs)
case("unwrap_schema_cache_runs_headers", U, {"add.headers": "op,db"}, cache_runs)

# ---- the router: the shards of one logical table ----
def shard(n, op, row, k):
    topic = f"dbserver1.inventory.customers_shard{n}"
    return rec(topic, key(topic, {"id": k}, KEY),
               event(topic, CUSTOMER, op, None if op == "c" else row,
                     None if op == "d" else row, f"customers_shard{n}"))


shards = [shard(1, "c", alice, 1), shard(2, "c", bob, 1), shard(2, "d", bob, 1),
          rec("dbserver1.inventory.customers_shard2",
              key("dbserver1.inventory.customers_shard2", {"id": 1}, KEY), None),
          rec("dbserver1.inventory.orders", key("dbserver1.inventory.orders", {"id": 9}, KEY),
              event("dbserver1.inventory.orders", CUSTOMER, "c", None, alice, "orders")),
          dict(shard(1, "c", bob, 2), key=None),
          rec("dbserver1.inventory.customers_shard3", None, changes[7]["value"])]
R = D + "ByLogicalTableRouter"
ROUTE = {"topic.regex": "(.*)customers_shard(.*)", "topic.replacement": "$1customers_all"}
case("router_default", R, ROUTE, shards)
case("router_no_unique_key", R, {**ROUTE, "key.enforce.uniqueness": "false"}, shards)
case("router_key_field_regex", R, {**ROUTE, "key.field.name": "shard",
                                   "key.field.regex": "(.*)customers_shard(.*)",
                                   "key.field.replacement": "shard_$2"}, shards)
case("router_named_groups", R, {"topic.regex": "(?<db>[^.]+)\\.inventory\\.(?<t>[a-z]+)_shard\\d",
                                "topic.replacement": "${db}.all.${t}"}, shards)
case("router_schemaless_key", R, ROUTE, [dict(r, key=r["key"] and r["key"]["payload"])
                                         for r in shards[:2]] + [schemaless[0]], schemas=False)

# ---- the outbox ----
OT = "dbserver1.public.outboxevent"
OUTBOX = [prim("string", "id", name="io.debezium.data.Uuid", version=1),
          prim("string", "aggregatetype"), prim("string", "aggregateid"), prim("string", "type"),
          prim("string", "payload", True),
          prim("int64", "ts", True, name="io.debezium.time.MicroTimestamp", version=1),
          prim("int32", "version", True), prim("string", "tenant", True),
          prim("int32", "part", True)]
OKEY = [prim("string", "id", name="io.debezium.data.Uuid", version=1)]


def outbox_row(n, agg, payload, op="c", **extra):
    row = {"id": f"00000000-0000-0000-0000-00000000000{n}", "aggregatetype": agg,
           "aggregateid": f"{agg.lower()}-{n}", "type": f"{agg}Created", "payload": payload,
           "ts": 1700000001234567, "version": 3, "tenant": "acme", "part": n % 3}
    row.update(extra)
    return rec(OT, key(OT, {"id": row["id"]}, OKEY),
               event(OT, OUTBOX, op, row if op in ("u", "d") else None,
                     None if op == "d" else row, "outboxevent"))


outbox = [
    outbox_row(1, "Order", json.dumps({"orderId": 1, "lines": [{"sku": "a", "qty": 2}],
                                       "total": 9.5, "paid": True, "note": None, "big": 2**40})),
    outbox_row(2, "Customer", json.dumps({"name": "Zoë", "tags": ["x", "y"], "empty": []})),
    outbox_row(3, "Order", "not json"),
    outbox_row(4, "Order", ""),
    outbox_row(5, "Order", None, tenant=None),
    outbox_row(6, "Order", "{}", op="r"),
    outbox_row(7, "Order", "{}", op="u"),
    outbox_row(8, "Order", "{}", op="d"),
    rec(OT, key(OT, {"id": "x"}, OKEY), None),
    changes[7],
    outbox_row(9, "Invoice", json.dumps([1, 2, 3])),
    # Duplicate keys: Debezium's reader (Jackson) keeps the last value in the first one's place.
    outbox_row(0, "Order", '{"a": 1, "b": {"x": 1, "y": 2, "x": [3]}, "c": true, "a": "two"}'),
]
O = D + "outbox.EventRouter"
case("outbox_default", O, {}, outbox)
case("outbox_expand_json", O, {"table.expand.json.payload": "true"}, outbox)
case("outbox_additional_placement", O,
     {"table.fields.additional.placement": "type:header:eventType,tenant:envelope,part:partition,"
                                           "aggregatetype:envelope:agg"}, outbox)
case("outbox_missing_additional_ignore", O,
     {"table.fields.additional.placement": "nope:envelope,tenant:envelope",
      "table.field.additional.missing": "ignore"}, outbox[:2])
case("outbox_route_and_timestamp", O,
     {"route.topic.regex": "(?<routedByValue>.*)", "route.topic.replacement": "${routedByValue}.events",
      "table.field.event.timestamp": "ts", "table.field.event.key": "tenant"}, outbox)
case("outbox_tombstone_on_empty", O, {"route.tombstone.on.empty.payload": "true"}, outbox)
case("outbox_update_fatal", O, {"table.op.invalid.behavior": "fatal"}, outbox[5:8])
case("outbox_schema_version", O, {"table.field.event.schema.version": "version",
                                  "table.fields.additional.placement": "type:envelope"}, outbox[:3])
case("outbox_route_by_type", O, {"route.by.field": "type", "route.topic.replacement": "ev-$1",
                                 "route.topic.regex": "(.*)Created"}, outbox[:3])

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "debezium_corpus.jsonl"), "w", encoding="utf-8") as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
print(len(cases), "cases,", sum(len(c["records"]) for c in cases), "records")
