"""An independent oracle for the bank CDC projections: folds the envelope lines in file order.

It shares no code with the plugins: it reads the Debezium events itself and applies the
documented rules (plugins/projection/README.md) one event after another:
  mirror customers / accounts: upsert on c, u, r; delete on d; clear on t;
  aggregate account_balances over bank.transactions grouped by account_id:
    balance = sum(amount), tx_count = count, last_tx = id of the contributing (c, u, r) event
    with the highest (source position, primary key); a group whose rows are all deleted stays
    with count 0 and its last_tx; t clears every group.
Then it reads every projection row back from SQLite (sqlite3 module) or PostgreSQL (psql) and
lists every difference.
"""
import json
import sqlite3
import subprocess

MIRRORS = {"bank.customers": "customers", "bank.accounts": "accounts"}
AGGREGATE_TABLE = "bank.transactions"


def canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def unwrap(v):
    if isinstance(v, dict) and "payload" in v and ("schema" in v or len(v) == 1):
        return v["payload"]
    return v


def fold(lines):
    mirrors = {name: {} for name in MIRRORS.values()}
    groups = {}   # group key -> {"balance", "tx_count", "last_tx", "order"}
    sources = {}  # transaction key -> (group, amount)
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        p = unwrap(e.get("value")) if isinstance(e, dict) else None
        if not isinstance(p, dict) or p.get("op") not in ("c", "u", "d", "r", "t"):
            continue
        src = p.get("source")
        if not isinstance(src, dict) or "table" not in src:
            continue
        table = f"{src['schema']}.{src['table']}"
        op = p["op"]
        key = unwrap(e.get("key"))
        ck = canon(key) if key is not None else None
        after = p.get("after")
        if table in MIRRORS:
            rows = mirrors[MIRRORS[table]]
            if op == "t":
                rows.clear()
            elif op == "d":
                rows.pop(ck, None)
            elif isinstance(after, dict):
                rows[ck] = after
        elif table == AGGREGATE_TABLE:
            if op == "t":
                groups.clear()
                sources.clear()
                continue
            if op in ("c", "u", "r"):
                try:  # an event the projection rejects changes nothing
                    group = after["account_id"]
                    amount = float(after.get("amount") or 0)
                except (KeyError, TypeError, ValueError):
                    continue
                if group is None:
                    continue
            old = sources.pop(ck, None)
            if old:
                g = groups[old[0]]
                g["balance"] -= old[1]
                g["tx_count"] -= 1  # at 0 the group stays, with its last_tx
            if op in ("c", "u", "r"):
                gk = group if isinstance(group, str) else canon(group)
                g = groups.setdefault(gk, {"balance": 0.0, "tx_count": 0, "last_tx": None,
                                           "order": None})
                g["balance"] += amount
                g["tx_count"] += 1
                order = (src["lsn"], ck)
                if g["order"] is None or order > g["order"]:
                    g["order"] = order
                    g["last_tx"] = after.get("id")
                sources[ck] = (gk, amount)
    return {"customers": mirrors["customers"], "accounts": mirrors["accounts"],
            "account_balances": {k: (v["balance"], v["tx_count"], v["last_tx"])
                                 for k, v in groups.items()}}


MIRROR_SQL = "select key, data from {t}"
AGGREGATE_SQL = "select group_key, balance, tx_count, last_tx from account_balances"


def _actual_from_rows(mirror_rows, aggregate_rows):
    actual = {name: {k: json.loads(d) for k, d in rows} for name, rows in mirror_rows.items()}
    actual["account_balances"] = {
        g: (float(b), int(c), json.loads(l) if l is not None else None)
        for g, b, c, l in aggregate_rows}
    return actual


def read_sqlite(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        mirrors = {t: db.execute(MIRROR_SQL.format(t=t)).fetchall() for t in MIRRORS.values()}
        return _actual_from_rows(mirrors, db.execute(AGGREGATE_SQL).fetchall())
    finally:
        db.close()


def psql_rows(conninfo, sql):
    out = subprocess.run(["psql", conninfo, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                          "-F", "\x1f", "-c", sql], check=True, capture_output=True, text=True)
    return [line.split("\x1f") for line in out.stdout.splitlines() if line]


def read_postgres(conninfo):
    mirrors = {t: psql_rows(conninfo, MIRROR_SQL.format(t=t)) for t in MIRRORS.values()}
    rows = [[None if v == "" else v for v in r] for r in psql_rows(conninfo, AGGREGATE_SQL)]
    return _actual_from_rows(mirrors, rows)


def differences(expected, actual, limit=20):
    out = []
    for name, rows in expected.items():
        got = actual.get(name, {})
        for key in sorted(set(rows) | set(got)):
            want, have = rows.get(key), got.get(key)
            if name == "account_balances" and want and have:
                same = abs(want[0] - have[0]) < 1e-6 and want[1:] == have[1:]
            else:
                same = want == have
            if not same:
                out.append(f"{name}[{key}]: expected {want}, got {have}")
                if len(out) >= limit:
                    return out
    return out
