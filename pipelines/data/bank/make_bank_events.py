#!/usr/bin/env python3
"""Writes deterministic Debezium change events of a small bank as JSON envelope lines.

Each line is {"key", "value", "topic", "partition", "offset", "headers"} (the file sink's
`envelope` format), as a Debezium PostgreSQL connector named `bank` would put them on Kafka:
snapshot reads, inserts, updates, deletes each followed by a tombstone, a primary-key change
(delete + __debezium.newkey, create + __debezium.oldkey), a truncate of bank.transactions,
transaction blocks, the customers table's events with the schema/payload wrapper, some decimals as strings, a
heartbeat, a schema change, a transaction boundary and a logical-decoding message (op m).

Default arguments write bank-events.jsonl next to this script (the quickstart's input). The same
seed always gives the same file. `--events N --customers C --accounts A` scales it (benchmark).
"""
import argparse
import json
import random
from pathlib import Path

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, fixed so the file never changes
CITIES = ["Lisbon", "Oslo", "Lyon", "Turin", "Ghent", "Porto", "Graz", "Bergen"]
NAMES = ["Ada", "Bo", "Cyd", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kit", "Lu"]
ACCOUNT_TYPES = ["checking", "savings", "business"]
KINDS = ["card", "transfer", "cash", "fee", "salary"]


class Rows(dict):
    """Rows by id, with O(1) random choice and removal (a list kept beside the dict)."""

    def __init__(self):
        super().__init__()
        self.ids = []
        self.index = {}

    def __setitem__(self, rid, row):
        if rid not in self:
            self.index[rid] = len(self.ids)
            self.ids.append(rid)
        super().__setitem__(rid, row)

    def pop(self, rid, *default):
        if rid in self:
            i = self.index.pop(rid)
            last = self.ids.pop()
            if last != rid:
                self.ids[i] = last
                self.index[last] = i
        return super().pop(rid, *default)

    def clear(self):
        super().clear()
        self.ids.clear()
        self.index.clear()

    def pick(self, rng):
        return self.ids[rng.randrange(len(self.ids))]


class Bank:
    def __init__(self, seed, wrapped_tables, extras):
        self.rng = random.Random(seed)
        self.wrapped_tables = wrapped_tables
        self.extras = extras
        self.lsn = 24_000_000
        self.ts = START_MS
        self.txid = 760
        self.offsets = {}
        self.lines = []
        self.customers = Rows()
        self.accounts = Rows()
        self.transactions = Rows()
        self.next_id = {"customers": 1, "accounts": 1, "transactions": 1}
        self.tx = None  # the open transaction block

    # -- output -----------------------------------------------------------------------------

    def write(self, topic, key, value, headers=None):
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        line = {"key": key, "value": value, "topic": topic, "partition": 0, "offset": offset,
                "headers": headers or {}}
        self.lines.append(json.dumps(line, separators=(",", ":")))

    def wrapped(self, payload, name):
        # A connector's converter wraps all of a topic's events or none: per-table choice, so a
        # row's key bytes (and so its Kafka partition) never change.
        if name.split(".")[2] not in self.wrapped_tables:
            return payload
        return {"schema": {"type": "struct", "name": name, "optional": False, "fields": []},
                "payload": payload}

    def source(self, table, snapshot="false"):
        return {"version": "2.5.0.Final", "connector": "postgresql", "name": "bank",
                "ts_ms": self.ts, "snapshot": snapshot, "db": "bankdb", "schema": "bank",
                "table": table, "txId": self.txid, "lsn": self.lsn, "xmin": None}

    def change(self, table, op, key, before, after, snapshot="false", headers=None,
               next_lsn=True):
        if next_lsn:
            self.lsn += self.rng.randint(8, 240)
        self.ts += self.rng.randint(1, 400)
        tx = None
        if self.tx is not None:
            self.tx["count"] += 1
            tx = {"id": f"{self.txid}:{self.tx['lsn']}", "total_order": self.tx["count"],
                  "data_collection_order": self.tx["count"]}
        payload = {"before": before, "after": after, "source": self.source(table, snapshot),
                   "op": op, "ts_ms": self.ts, "transaction": tx}
        topic = f"bank.bank.{table}"
        self.write(topic, self.wrapped(key, f"bank.bank.{table}.Key"),
                   self.wrapped(payload, f"bank.bank.{table}.Envelope"), headers)
        if op == "d":
            self.write(topic, key, None)  # the tombstone that lets compaction drop the key

    def begin(self):
        self.txid += 1
        self.tx = {"lsn": self.lsn, "count": 0}
        if self.extras and self.rng.random() < 0.05:
            self.write("bank.transaction", {"id": f"{self.txid}:{self.lsn}"},
                       {"status": "BEGIN", "id": f"{self.txid}:{self.lsn}", "event_count": None,
                        "data_collections": None, "ts_ms": self.ts})

    def end(self):
        self.tx = None

    # -- rows -------------------------------------------------------------------------------

    def new_id(self, table):
        i = self.next_id[table]
        self.next_id[table] = i + 1
        return i

    def customer_row(self, cid):
        name = f"{self.rng.choice(NAMES)} {chr(65 + self.rng.randrange(26))}."
        return {"id": cid, "name": name, "email": f"c{cid}@bank.example",
                "city": self.rng.choice(CITIES)}

    def account_row(self, aid):
        return {"id": aid, "customer_id": self.customers.pick(self.rng) if self.customers
                else 1, "type": self.rng.choice(ACCOUNT_TYPES), "opened_ms": self.ts}

    def amount(self):
        cents = self.rng.randint(-20_000, 90_000)
        # Debezium's decimal.handling.mode=string sends some decimals as text.
        return str(cents) if self.rng.random() < 0.1 else cents

    def transaction_row(self, tid):
        return {"id": tid, "account_id": self.accounts.pick(self.rng),
                "amount": self.amount(), "kind": self.rng.choice(KINDS), "memo": None}

    # -- actions ----------------------------------------------------------------------------

    def snapshot(self, customers, accounts, transactions):
        rows = []
        for _ in range(customers):
            cid = self.new_id("customers")
            self.customers[cid] = self.customer_row(cid)
            rows.append(("customers", cid, self.customers[cid]))
        for _ in range(accounts):
            aid = self.new_id("accounts")
            self.accounts[aid] = self.account_row(aid)
            rows.append(("accounts", aid, self.accounts[aid]))
        for _ in range(transactions):
            tid = self.new_id("transactions")
            self.transactions[tid] = self.transaction_row(tid)
            rows.append(("transactions", tid, self.transactions[tid]))
        self.lsn += 1000
        for n, (table, rid, row) in enumerate(rows):
            # Every snapshot read carries the snapshot's one position.
            flag = "last" if n == len(rows) - 1 else ("first" if n == 0 else "true")
            self.change(table, "r", {"id": rid}, None, dict(row), snapshot=flag, next_lsn=False)

    def insert(self, table, row_fn, store):
        rid = self.new_id(table)
        store[rid] = row_fn(rid)
        self.change(table, "c", {"id": rid}, None, dict(store[rid]))

    def update(self, table, store, mutate):
        if not store:
            return
        rid = store.pick(self.rng)
        before = dict(store[rid])
        mutate(store[rid])
        self.change(table, "u", {"id": rid}, before, dict(store[rid]))

    def delete(self, table, store):
        if len(store) < 3:
            return
        rid = store.pick(self.rng)
        before = store.pop(rid)
        self.change(table, "d", {"id": rid}, before, None)

    def change_customer_key(self):
        if not self.customers:
            return
        old = self.customers.pick(self.rng)
        new = self.new_id("customers")
        row = self.customers.pop(old)
        moved = dict(row, id=new)
        self.change("customers", "d", {"id": old}, row, None,
                    headers={"__debezium.newkey": json.dumps({"id": new})})
        self.customers[new] = moved
        self.change("customers", "c", {"id": new}, None, dict(moved),
                    headers={"__debezium.oldkey": json.dumps({"id": old})})

    def truncate_transactions(self):
        self.lsn += 50
        self.ts += 10
        payload = {"before": None, "after": None, "source": self.source("transactions"),
                   "op": "t", "ts_ms": self.ts, "transaction": None}
        self.write("bank.bank.transactions", None, payload)
        self.transactions.clear()

    def extra_events(self, step):
        if step % 97 == 0:
            self.write("__debezium-heartbeat.bank", {"serverName": "bank"}, {"ts_ms": self.ts})
        if step == 150:
            self.write("bank", {"databaseName": "bankdb"},
                       {"source": self.source("accounts"), "databaseName": "bankdb",
                        "schemaName": "bank", "ddl": "ALTER TABLE bank.accounts ADD COLUMN "
                        "nickname text", "tableChanges": []})
        if step == 222:
            self.lsn += 16
            self.write("bank.message", None,
                       {"op": "m", "ts_ms": self.ts, "source": self.source(""),
                        "message": {"prefix": "audit", "content": "c2x1aWNl"}})

    def step(self, step):
        def touch_customer(row):
            if self.rng.random() < 0.15:
                return  # a no-op update: same image before and after
            if self.rng.random() < 0.5:
                row["email"] = f"c{row['id']}.{self.rng.randrange(1000)}@bank.example"
            else:
                row["city"] = self.rng.choice(CITIES)

        def retype_account(row):
            row["type"] = self.rng.choice(ACCOUNT_TYPES)

        def correct_amount(row):
            row["amount"] = self.amount()
            row["memo"] = "corrected"

        self.begin()
        for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
            r = self.rng.random()
            if r < 0.50:
                self.insert("transactions", self.transaction_row, self.transactions)
            elif r < 0.60:
                self.update("transactions", self.transactions, correct_amount)
            elif r < 0.67:
                self.delete("transactions", self.transactions)
            elif r < 0.72:
                self.insert("customers", self.customer_row, self.customers)
            elif r < 0.82:
                self.update("customers", self.customers, touch_customer)
            elif r < 0.85:
                self.delete("customers", self.customers)
            elif r < 0.90:
                self.insert("accounts", self.account_row, self.accounts)
            elif r < 0.97:
                self.update("accounts", self.accounts, retype_account)
            else:
                self.delete("accounts", self.accounts)
        self.end()
        if self.extras:
            self.extra_events(step)


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here / "bank-events.jsonl")
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--customers", type=int, default=24)
    ap.add_argument("--accounts", type=int, default=36)
    ap.add_argument("--snapshot-transactions", type=int, default=120)
    ap.add_argument("--steps", type=int, default=700, help="streamed database transactions")
    ap.add_argument("--events", type=int, default=0,
                    help="instead of --steps: stream until this many lines are written")
    ap.add_argument("--wrapped-tables", default="customers",
                    help="comma-separated tables whose events have the schema/payload wrapper")
    ap.add_argument("--no-extras", action="store_true",
                    help="no heartbeats, schema changes, boundaries, messages, key changes or "
                    "truncate")
    args = ap.parse_args()

    bank = Bank(args.seed, set(args.wrapped_tables.split(",")) - {""}, not args.no_extras)
    bank.snapshot(args.customers, args.accounts, args.snapshot_transactions)
    step = 0
    key_changes = {args.steps // 5, args.steps // 2} if not args.no_extras else set()
    truncate_at = (args.steps * 3) // 5 if not args.no_extras else -1
    while (len(bank.lines) < args.events) if args.events else (step < args.steps):
        step += 1
        bank.step(step)
        if step in key_changes:
            bank.change_customer_key()
        if step == truncate_at:
            bank.truncate_transactions()
    lines = bank.lines[: args.events] if args.events else bank.lines
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
