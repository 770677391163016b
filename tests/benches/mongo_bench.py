#!/usr/bin/env python3
"""The MongoDB sink benchmark's helper (tests/benches/mongo.sh): the test documents, and the
baseline that writes them with pymongo alone.

  mongo_bench.py make N EVENTS DOCS
      EVENTS: N NDJSON events for a Flowgate file source ({"value": {...}}); DOCS: the
      documents the sink makes of them (one partition: _id "in/0/<i>"), as JSON lines.
  mongo_bench.py insert URL DB COLL DOCS [--batch B]
      drops DB.COLL, then insert_many's the documents of DOCS in batches of B (unordered);
      prints {"inserted": n, "seconds": s, "p50_ms": ..., "p99_ms": ...}: s is the time of the
      inserts alone (the documents are read and decoded before the clock starts), the
      percentiles are of the insert_many calls.
"""

import argparse
import json
import sys
import time

import pymongo


def document(i):
    return {
        "id": i,
        "name": f"customer {i:08d}",
        "amount": i * 7 % 100000 / 100.0,
        "count": i % 1000,
        "paid": i % 3 == 0,
        "tags": ["a", "b", str(i % 17)],
        "address": {"city": f"city {i % 500}", "zip": f"{i % 100000:05d}"},
    }


def make(args):
    with open(args.events, "w") as events, open(args.docs, "w") as docs:
        for i in range(args.n):
            d = document(i)
            events.write(json.dumps({"value": d}, separators=(",", ":")) + "\n")
            docs.write(json.dumps({"_id": f"in/0/{i}", **d}, separators=(",", ":")) + "\n")
    return 0


def pct(sorted_ms, q):
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(int(len(sorted_ms) * q), len(sorted_ms) - 1)]


def insert(args):
    with open(args.docs) as f:
        docs = [json.loads(line) for line in f if line.strip()]
    with pymongo.MongoClient(args.url, serverSelectionTimeoutMS=10_000) as c:
        c[args.db].drop_collection(args.coll)
        coll = c[args.db][args.coll]
        took = []
        began = time.perf_counter()
        for i in range(0, len(docs), args.batch):
            t = time.perf_counter()
            coll.insert_many(docs[i : i + args.batch], ordered=False)
            took.append((time.perf_counter() - t) * 1000.0)
        seconds = time.perf_counter() - began
        n = coll.count_documents({})
    took.sort()
    print(json.dumps({"inserted": n, "seconds": seconds, "p50_ms": pct(took, 0.5), "p99_ms": pct(took, 0.99)}))
    return 0 if n == len(docs) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("make")
    s.add_argument("n", type=int)
    s.add_argument("events")
    s.add_argument("docs")
    s.set_defaults(run=make)
    s = sub.add_parser("insert")
    s.add_argument("url")
    s.add_argument("db")
    s.add_argument("coll")
    s.add_argument("docs")
    s.add_argument("--batch", type=int, default=1000)
    s.set_defaults(run=insert)
    args = p.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
