#!/usr/bin/env python3
"""A real Debezium in the loop: PostgreSQL (source of truth) -> Debezium -> Kafka -> sluice.

Usage: debezium_integration.py KAFKA_DIR PG_DIR DEBEZIUM_DIR   (run by ctest; env
SLUICE_SOURCE_DIR, SLUICE_BINARY_DIR, SLUICE_BUILD_PLUGIN_DIR)

A bank schema in a source database (customers with a TOASTed note, accounts with decimals of
declared and of variable scale, transactions, holdings with a composite key) is captured by two
Debezium PostgreSQL connectors (pgoutput, one publication, a slot each) through Kafka Connect:
  sj  JSON converter with schemas.enable=true, decimal.handling.mode=precise (base64 decimals),
      provide.transaction.metadata=true, heartbeats every second
  sp  schemas.enable=false, decimal.handling.mode=string, no transaction metadata
`sluice run` (kafka -> debezium -> projection) folds sj into a second PostgreSQL database and sp
into SQLite. The workload: a snapshot, then inserts, updates that move rows between groups,
deletes, primary-key updates, a truncate, NULLs, unicode, all in transactions of 1 to 4
statements; both pipelines are SIGKILLed while it streams and restarted. Then every mirror table
must equal its source table read by psql, row by row, and every aggregate the source's
`SELECT ... GROUP BY`.
"""
import decimal
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

SOURCE = Path(os.environ["SLUICE_SOURCE_DIR"])
BINARY = Path(os.environ["SLUICE_BINARY_DIR"])
PLUGINS = Path(os.environ["SLUICE_BUILD_PLUGIN_DIR"])
SLUICE = BINARY / "bin" / "sluice"

SOURCE_DB = "dbz_source"
MIRROR_DB = "dbz_mirror"
TABLES = {"customers": ["id"], "accounts": ["id"], "transactions": ["id"],
          "holdings": ["account_id", "symbol"]}
# name -> (table, group_by, {column: (fold, field)})
AGGREGATES = {
    "account_balances": ("transactions", "account_id",
                         {"balance": ("sum", "amount"), "tx_count": ("count", None)}),
    "symbol_positions": ("holdings", "symbol",
                         {"quantity": ("sum", "qty"), "holders": ("count", None)}),
}
# Connector names are topic prefixes and slot names: new ones each run, since a Connect worker
# keeps the offsets of a deleted connector, and Kafka the topics.
RUN = str(os.getpid())
CONNECTORS = {
    "sj" + RUN: {"key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true",
           "decimal.handling.mode": "precise", "provide.transaction.metadata": "true",
           "heartbeat.interval.ms": "1000"},
    "sp" + RUN: {"key.converter.schemas.enable": "false", "value.converter.schemas.enable": "false",
           "decimal.handling.mode": "string", "provide.transaction.metadata": "false"},
}
NAMES = ["Zoë Ångström", "李雷", "Ολυμπία", "José Nuñez", "O'Brien", "Jürgen \"JJ\" Weiß",
         "😀 Smile", "plain", "Åsa\\Back", "Ñ\tTab"]
SYMBOLS = ["ACME", "€URO", "ÖKO", "BOND"]


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def psql(conninfo, sql, capture=True):
    p = subprocess.run(["psql", conninfo, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                        "-c", sql], capture_output=capture, text=True)
    if p.returncode != 0:
        fail(f"psql failed: {sql[:200]}\n{p.stderr}")
    return p.stdout


def with_db(conninfo, db):
    return " ".join(f"dbname={db}" if part.startswith("dbname=") else part
                    for part in conninfo.split())


def rest(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        fail(f"{method} {url}: {e.code} {e.read().decode()}")


# ---------------------------------------------------------------------------------------------
# Source database and connectors


def reset_databases(admin, connect_url):
    for name in rest(f"{connect_url}/connectors") or []:
        rest(f"{connect_url}/connectors/{name}", "DELETE")
    deadline = time.time() + 60
    while True:
        # A slot stays active until its connector's task has stopped.
        active = psql(admin, "select count(*) from pg_replication_slots where active and "
                             "slot_name like 'sluice_it_%'").strip()
        if active == "0" or time.time() > deadline:
            break
        time.sleep(0.5)
    psql(admin, "select pg_drop_replication_slot(slot_name) from pg_replication_slots "
                "where slot_name like 'sluice_it_%'")
    for db in (SOURCE_DB, MIRROR_DB):
        psql(admin, f"drop database if exists {db} with (force)")
        psql(admin, f"create database {db}")


SCHEMA = """
create schema bank;
create table bank.customers(id int primary key, name text not null, email text, country text,
  note text);
create table bank.accounts(id int primary key, customer_id int not null, currency text,
  balance numeric(14,2), credit_limit numeric);
create table bank.transactions(id bigint primary key, account_id int not null,
  amount numeric(12,2), memo text);
create table bank.holdings(account_id int, symbol text, qty numeric(18,4),
  primary key (account_id, symbol));
create publication sluice_it for table bank.customers, bank.accounts, bank.transactions,
  bank.holdings;
"""


def sql_text(value):
    if value is None:
        return "null"
    return "'" + str(value).replace("'", "''") + "'"


class Workload:
    """Random SQL on the bank schema; it keeps just enough state to aim at existing rows."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)
        self.customers, self.accounts, self.transactions = set(), set(), set()
        self.holdings = set()
        self.noted = set()  # customers with a TOASTed note: never given a new primary key
        self.next_id = 1

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def amount(self):
        r = self.rnd.random()
        if r < 0.05:
            return "null"
        return f"{Decimal(self.rnd.randint(-500000, 900000)) / 100}"

    def big_note(self):
        # md5 text does not compress: the value goes to the TOAST table.
        return f"(select string_agg(md5('{self.rnd.random()}' || g), '') from " \
               f"generate_series(1, {self.rnd.randint(80, 140)}) g)"

    def insert_customer(self):
        cid = self.new_id()
        self.customers.add(cid)
        email = self.rnd.choice([None, f"c{cid}@example.com", f"ünï{cid}@例え.jp"])
        note = "null"
        if self.rnd.random() < 0.2:
            note = self.big_note()
            self.noted.add(cid)
        return (f"insert into bank.customers values ({cid}, {sql_text(self.rnd.choice(NAMES))}, "
                f"{sql_text(email)}, {sql_text(self.rnd.choice([None, 'SE', 'CN', 'GR']))}, "
                f"{note});")

    def insert_account(self):
        aid = self.new_id()
        self.accounts.add(aid)
        limit = self.rnd.choice(["null", "1000", "0.000125", "-42.5", "123456789012345.6789"])
        return (f"insert into bank.accounts values ({aid}, "
                f"{self.rnd.choice(sorted(self.customers))}, 'EUR', {self.amount()}, {limit});")

    def insert_transaction(self):
        tid = self.new_id()
        self.transactions.add(tid)
        memo = self.rnd.choice([None, "salary", "café ☕", "rent\nline 2"])
        return (f"insert into bank.transactions values ({tid}, "
                f"{self.rnd.choice(sorted(self.accounts))}, {self.amount()}, {sql_text(memo)});")

    def upsert_holding(self):
        key = (self.rnd.choice(sorted(self.accounts)), self.rnd.choice(SYMBOLS))
        self.holdings.add(key)
        qty = Decimal(self.rnd.randint(-10**6, 10**7)) / 10000
        return (f"insert into bank.holdings values ({key[0]}, {sql_text(key[1])}, {qty}) "
                f"on conflict (account_id, symbol) do update set qty = bank.holdings.qty + {qty};")

    def step(self):
        """One statement, chosen by weight, aimed at existing rows."""
        r = self.rnd.random()
        tx = sorted(self.transactions)
        if r < 0.30 or len(tx) < 10:
            return self.insert_transaction()
        if r < 0.42:
            return (f"update bank.transactions set amount = {self.amount()} "
                    f"where id = {self.rnd.choice(tx)};")
        if r < 0.52:  # moves the row to another group
            return (f"update bank.transactions set account_id = "
                    f"{self.rnd.choice(sorted(self.accounts))} where id = {self.rnd.choice(tx)};")
        if r < 0.60:
            victim = self.rnd.choice(tx)
            self.transactions.discard(victim)
            return f"delete from bank.transactions where id = {victim};"
        if r < 0.63:  # a primary-key update: Debezium sends a delete and a create
            old, new = self.rnd.choice(tx), self.new_id()
            self.transactions.discard(old)
            self.transactions.add(new)
            return f"update bank.transactions set id = {new} where id = {old};"
        if r < 0.70:
            return self.upsert_holding()
        if r < 0.73 and self.holdings:
            key = self.rnd.choice(sorted(self.holdings))
            self.holdings.discard(key)
            return (f"delete from bank.holdings where account_id = {key[0]} and "
                    f"symbol = {sql_text(key[1])};")
        if r < 0.82:  # leaves a TOASTed note unchanged: Debezium sends a placeholder for it
            return (f"update bank.customers set country = "
                    f"{sql_text(self.rnd.choice([None, 'NO', 'FI', 'ÅL']))}, "
                    f"email = {sql_text(self.rnd.choice([None, 'x@y.z']))} "
                    f"where id = {self.rnd.choice(sorted(self.customers))};")
        if r < 0.84:
            plain = sorted(self.customers - self.noted)
            if plain:
                old, new = self.rnd.choice(plain), self.new_id()
                self.customers.discard(old)
                self.customers.add(new)
                return f"update bank.customers set id = {new} where id = {old};"
        if r < 0.86:
            return self.insert_customer()
        if r < 0.92:
            return (f"update bank.accounts set balance = {self.amount()}, credit_limit = "
                    f"{self.rnd.choice(['null', '7.25', '99999999999999999999.99999'])} "
                    f"where id = {self.rnd.choice(sorted(self.accounts))};")
        if r < 0.94:
            return self.insert_account()
        return self.insert_transaction()

    def transactions_sql(self, count):
        out = []
        for _ in range(count):
            stmts = [self.step() for _ in range(self.rnd.randint(1, 4))]
            out.append("begin;\n" + "\n".join(stmts) + "\ncommit;")
        return "\n".join(out) + "\n"

    def snapshot_sql(self):
        stmts = [self.insert_customer() for _ in range(30)]
        stmts += [self.insert_account() for _ in range(25)]
        stmts += [self.insert_transaction() for _ in range(200)]
        stmts += [self.upsert_holding() for _ in range(30)]
        return "\n".join(stmts) + "\n"

    def truncate_sql(self):
        self.holdings.clear()
        return "truncate bank.holdings;\n" + "\n".join(self.upsert_holding() for _ in range(12))


def run_sql_file(conninfo, path, background=False):
    cmd = ["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"the workload {path} failed: {p.stderr[-2000:]}")
    return None


def topics_of(prefix):
    topics = [f"{prefix}.bank.{t}" for t in TABLES]
    if CONNECTORS[prefix].get("provide.transaction.metadata") == "true":
        topics.append(f"{prefix}.transaction")
    if "heartbeat.interval.ms" in CONNECTORS[prefix]:
        topics.append(f"__debezium-heartbeat.{prefix}")
    return topics


def wait_topics(bootstrap, connect_url, timeout=120):
    """Connect creates the topics as the connectors first write to them (the transaction topic
    at the first streamed transaction); sluice subscribes to them by name once they exist."""
    want = {t for p in CONNECTORS for t in topics_of(p)}
    deadline = time.time() + timeout
    while time.time() < deadline:
        meta = subprocess.run(["kcat", "-L", "-J", "-b", bootstrap, "-m", "5"],
                              capture_output=True, text=True)
        if meta.returncode == 0:
            have = {t["topic"] for t in json.loads(meta.stdout)["topics"]}
            if want <= have:
                return
        time.sleep(1)
    fail(f"Debezium did not create the topics {sorted(want)} in {timeout}s; "
         f"connectors: {connector_states(connect_url)}")


def start_connectors(connect_url, source):
    host = dict(part.split("=", 1) for part in source.split())
    for name, overrides in CONNECTORS.items():
        config = {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput", "database.hostname": host["host"],
            "database.port": host["port"], "database.user": host["user"],
            "database.password": "unused", "database.dbname": SOURCE_DB,
            "topic.prefix": name, "slot.name": f"sluice_it_{name}",
            "publication.name": "sluice_it", "publication.autocreate.mode": "disabled",
            "table.include.list": "bank.*", "skipped.operations": "none",
            "snapshot.mode": "initial", "tasks.max": "1",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "topic.creation.default.replication.factor": "1",
            # Two partitions: Debezium spreads a table's keys over them, as in production.
            "topic.creation.default.partitions": "2",
        }
        config.update(overrides)
        rest(f"{connect_url}/connectors", "POST", {"name": name, "config": config})


def wait_streaming(admin, connect_url, timeout=120):
    """A connector streams once its slot is active (after its snapshot): a change committed
    earlier would be part of the snapshot, not a streamed transaction."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        active = psql(admin, "select count(*) from pg_replication_slots where active and "
                             "slot_name like 'sluice_it_%'").strip()
        if active == str(len(CONNECTORS)):
            return
        time.sleep(1)
    fail(f"the connectors did not start streaming in {timeout}s: {connector_states(connect_url)}")


def connector_states(connect_url):
    states = {}
    for name in CONNECTORS:
        s = rest(f"{connect_url}/connectors/{name}/status") or {}
        tasks = s.get("tasks") or [{}]
        states[name] = (s.get("connector", {}).get("state"), tasks[0].get("state"),
                        tasks[0].get("trace", "")[:2000])
    return states


# ---------------------------------------------------------------------------------------------
# sluice


def pipeline_yaml(work, prefix, bootstrap, store):
    topics = topics_of(prefix)
    aggregates = ""
    for name, (table, group_by, fields) in AGGREGATES.items():
        folds = ", ".join(f"{col}: {{{fold}: {field if field else 'true'}}}"
                          for col, (fold, field) in fields.items())
        aggregates += (f"      - {{name: {name}, kind: aggregate, table: bank.{table}, "
                       f"group_by: {AGGREGATES[name][1]}, fields: {{{folds}}}}}\n")
    mirrors = "".join(f"      - {{name: {t}, kind: mirror, table: bank.{t}}}\n" for t in TABLES)
    text = f"""# generated by debezium_integration.py
name: dbz-{prefix}
source:
  type: kafka
  bootstrap_servers: {bootstrap}
  group_id: sluice-it-{prefix}
  topics: [{", ".join(topics)}]
  auto_offset_reset: earliest
transforms:
  - type: debezium
  - type: projection
{store}
    projections:
{mirrors}{aggregates}sink:
  type: file
  path: {work}/derived-{prefix}.jsonl
performance:
  ordering: field
  ordering_field: "payload.after.account_id|payload.before.account_id|after.account_id|before.account_id"
  adaptive_concurrency: false
  concurrency: 4
  max_concurrency: 4
"""
    path = work / f"pipeline-{prefix}.yaml"
    path.write_text(text)
    return path


def start_sluice(yaml, log):
    return subprocess.Popen([str(SLUICE), "run", str(yaml), "--plugin-path", str(PLUGINS),
                             "--log-level", "warn"], stdout=open(log, "a"),
                            stderr=subprocess.STDOUT)


# ---------------------------------------------------------------------------------------------
# The comparison with the source


def number(v):
    """Decimal of a JSON number or decimal text; other values unchanged."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float, Decimal)):
        return Decimal(str(v))
    if isinstance(v, str):
        try:
            return Decimal(v)
        except decimal.InvalidOperation:
            return v
    return v


def normal_row(row):
    return {k: number(v) for k, v in row.items()}


def source_rows(source, table):
    out = {}
    for line in psql(source, f"select row_to_json(t)::text from bank.{table} t").splitlines():
        row = json.loads(line, parse_float=Decimal)
        out[tuple(row[c] for c in TABLES[table])] = normal_row(row)
    return out


def source_groups(source, name):
    table, group_by, fields = AGGREGATES[name]
    exprs = [f"coalesce(sum({field}), 0)::text" if fold == "sum" else "count(*)::text"
             for fold, field in fields.values()]
    sql = (f"select json_build_array({group_by}::text, {', '.join(exprs)})::text "
           f"from bank.{table} group by {group_by}")
    return {row[0]: [Decimal(x) for x in row[1:]]
            for row in map(json.loads, psql(source, sql).splitlines())}


def mirror_from_rows(table, rows):
    out = {}
    for key, data in rows:
        k = json.loads(key)
        out[tuple(k[c] for c in TABLES[table])] = normal_row(json.loads(data))
    return out


def groups_from_rows(rows):
    return {g: [Decimal(str(x)) for x in values] for g, *values in rows}


def read_sqlite(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        mirrors = {t: mirror_from_rows(t, db.execute(f"select key, data from {t}").fetchall())
                   for t in TABLES}
        groups = {n: groups_from_rows(db.execute(
            f"select group_key, {', '.join(AGGREGATES[n][2])} from {n}").fetchall())
            for n in AGGREGATES}
        return mirrors, groups
    finally:
        db.close()


def read_postgres(conninfo):
    def rows(sql):
        return [json.loads(line) for line in psql(conninfo, sql).splitlines()]
    mirrors = {t: mirror_from_rows(t, rows(f"select json_build_array(key, data)::text from {t}"))
               for t in TABLES}
    groups = {n: groups_from_rows(rows(
        f"select json_build_array(group_key, {', '.join(AGGREGATES[n][2])})::text from {n}"))
        for n in AGGREGATES}
    return mirrors, groups


def close(a, b):
    # Sums are kept as doubles: equal to the source's exact sum up to rounding.
    return abs(a - b) <= Decimal("1e-6") * max(Decimal(1), abs(b))


def differences(source, actual, limit=12):
    mirrors, groups = actual
    out = []
    for table in TABLES:
        want, have = source_rows(source, table), mirrors[table]
        for key in sorted(set(want) | set(have), key=str):
            if want.get(key) != have.get(key):
                out.append(f"{table}{list(key)}: source {want.get(key)}, mirror {have.get(key)}"[:400])
    for name in AGGREGATES:
        want, have = source_groups(source, name), groups[name]
        for g in sorted(set(want) | set(have)):
            w, h = want.get(g), have.get(g)
            if w is None:
                # A group whose rows are all gone stays with count 0 (projection README).
                ok = h[-1] == 0 and all(close(x, Decimal(0)) for x in h[:-1])
            else:
                ok = h is not None and all(close(x, y) for x, y in zip(h, w))
            if not ok:
                out.append(f"{name}[{g}]: source {w}, projection {h}")
    return out[:limit]


def wait_equal(source, read, what, procs, timeout=150):
    deadline = time.time() + timeout
    diffs = ["not read yet"]
    while time.time() < deadline:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                fail(f"sluice ({name}) exited {proc.returncode}: {Path(log).read_text()[-3000:]}")
        try:
            diffs = differences(source, read())
        except (sqlite3.Error, SystemExit, KeyError, json.JSONDecodeError):
            diffs = ["projections not readable yet"]
        if not diffs:
            return
        time.sleep(2)
    fail(f"{what}: the projections differ from the source:\n  " + "\n  ".join(diffs))


def count_rows(source):
    return {t: int(psql(source, f"select count(*) from bank.{t}").strip()) for t in TABLES}


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kafka_dir, pg_dir, dbz_dir = sys.argv[1:]
    started = time.time()
    work = BINARY / "cdc-it" / "debezium"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bootstrap = Path(kafka_dir, "bootstrap").read_text().strip()
    connect_url = Path(dbz_dir, "url").read_text().strip()
    admin = Path(pg_dir, "conninfo").read_text().strip()
    source, mirror = with_db(admin, SOURCE_DB), with_db(admin, MIRROR_DB)

    reset_databases(admin, connect_url)
    psql(source, SCHEMA)
    workload = Workload(seed=2026)
    (work / "0-snapshot.sql").write_text(workload.snapshot_sql())
    run_sql_file(source, work / "0-snapshot.sql")
    start_connectors(connect_url, source)
    wait_streaming(admin, connect_url)
    # One streamed transaction on every table, so that every topic exists.
    (work / "0-warmup.sql").write_text(
        "begin;\n" + workload.insert_customer() + "\n" + workload.insert_account() + "\n" +
        workload.insert_transaction() + "\n" + workload.upsert_holding() + "\ncommit;\n")
    run_sql_file(source, work / "0-warmup.sql")
    wait_topics(bootstrap, connect_url)

    sj, sp = CONNECTORS
    stores = {sj: f"    store: postgres\n    conninfo: \"{mirror}\"",
              sp: f"    store: sqlite\n    path: {work}/projections.db"}
    yamls = {p: pipeline_yaml(work, p, bootstrap, s) for p, s in stores.items()}
    logs = {p: work / f"sluice-{p}.log" for p in CONNECTORS}
    procs = {p: (start_sluice(yamls[p], logs[p]), logs[p]) for p in CONNECTORS}

    # Streaming while sluice runs; both pipelines are SIGKILLed in the middle and restarted.
    (work / "1-stream.sql").write_text(workload.transactions_sql(700))
    writer = run_sql_file(source, work / "1-stream.sql", background=True)
    time.sleep(6)
    for p, (proc, _) in procs.items():
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_with = {p: sum(1 for _ in open(work / f"derived-{p}.jsonl"))
                   if (work / f"derived-{p}.jsonl").exists() else 0 for p in CONNECTORS}
    procs = {p: (start_sluice(yamls[p], logs[p]), logs[p]) for p in CONNECTORS}
    if writer.wait() != 0:
        fail(f"the streaming workload failed: {writer.stderr.read()[-2000:]}")
    (work / "2-truncate.sql").write_text(workload.truncate_sql() +
                                         workload.transactions_sql(300))
    run_sql_file(source, work / "2-truncate.sql")

    states = connector_states(connect_url)
    if any(s[:2] != ("RUNNING", "RUNNING") for s in states.values()):
        fail(f"a connector is not running: {states}")
    wait_equal(source, lambda: read_postgres(mirror), "sj (schemas, precise decimals) -> "
               "PostgreSQL", procs)
    wait_equal(source, lambda: read_sqlite(work / "projections.db"), "sp (no schemas, string "
               "decimals) -> SQLite", procs)

    for p, (proc, log) in procs.items():
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=60) != 0:
            fail(f"sluice ({p}) exited {proc.returncode} after SIGTERM: "
                 f"{Path(log).read_text()[-2000:]}")
        # Tombstones, transaction markers and heartbeats are passed over, never rejected.
        last = [line for line in Path(log).read_text().splitlines() if " records in, " in line][-1]
        m = re.search(r"(\d+) dead-lettered, (\d+) filtered, (\d+) rejected", last)
        if not m or m.group(1) != "0" or m.group(3) != "0" or m.group(2) == "0":
            fail(f"sluice ({p}) rejected events or passed none over: {last}")
    for name in CONNECTORS:
        rest(f"{connect_url}/connectors/{name}", "DELETE")
    print(f"real Debezium -> sluice: every mirror row and every aggregate equals the source "
          f"{count_rows(source)}; killed with {killed_with} derived events out; "
          f"{time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
