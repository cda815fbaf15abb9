#!/usr/bin/env python3
"""Writes events.jsonl, the quickstart's sample input: 200 deterministic order events."""
import json
import random
from pathlib import Path

COUNT = 200
CUSTOMERS = 12
CURRENCIES = ["EUR", "USD", "GBP"]
STATUSES = ["new", "paid", "shipped", "cancelled"]
START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, fixed so the file never changes


def main() -> None:
    rng = random.Random(20240601)  # fixed seed: the same file on every run
    lines = []
    for i in range(1, COUNT + 1):
        event = {
            "id": i,
            "customer": f"c-{rng.randrange(CUSTOMERS)}",
            "amount": round(rng.uniform(1, 500), 2),
            "currency": rng.choice(CURRENCIES),
            "status": rng.choices(STATUSES, weights=[5, 3, 2, 1])[0],
            "ts_ms": START_MS + i * 1500,
        }
        lines.append(json.dumps(event, separators=(",", ":")))
    out = Path(__file__).with_name("events.jsonl")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
