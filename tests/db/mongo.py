#!/usr/bin/env python3
"""The independent MongoDB client of the tests (pymongo, not Flowgate's code), run by
tests/src/mongo.rs against the test server (FerretDB, a MongoDB wire-compatible server).

Documents cross as JSON lines in MongoDB's relaxed Extended JSON: plain numbers and strings,
{"$oid": ...}, {"$date": ...}, {"$binary": ...} and so on for the other BSON types.

  mongo.py --url URL ping [--deadline S]        exit 0 once the server answers `ping`
  mongo.py --url URL find DB COLL               every document, a JSON line each
  mongo.py --url URL count DB COLL              the number of documents
  mongo.py --url URL insert DB COLL [--batch N] [--ordered]
                                                insert_many the JSON lines of stdin in batches
                                                of N (default 1000); prints {"inserted": n,
                                                "seconds": s}, s the time of the inserts alone
  mongo.py --url URL drop DB COLL               drop the collection
"""

import argparse
import json
import sys
import time

import pymongo
from bson import json_util

RELAXED = json_util.RELAXED_JSON_OPTIONS


def client(url, timeout_ms=10_000):
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)


def ping(args):
    # The driver's server selection waits for the server to answer (up to the deadline): no
    # polling loop of our own.
    ms = max(1, int(args.deadline * 1000))
    try:
        with client(args.url, ms) as c:
            c.admin.command("ping")
            return 0
    except pymongo.errors.PyMongoError as e:
        print(f"no answer to ping from {args.url} in {args.deadline}s: {e}", file=sys.stderr)
        return 1


def find(args):
    out = sys.stdout
    with client(args.url) as c:
        for doc in c[args.db][args.coll].find():
            out.write(json_util.dumps(doc, json_options=RELAXED))
            out.write("\n")
    return 0


def count(args):
    with client(args.url) as c:
        print(c[args.db][args.coll].count_documents({}))
    return 0


def insert(args):
    docs = [json_util.loads(line, json_options=RELAXED) for line in sys.stdin if line.strip()]
    with client(args.url) as c:
        coll = c[args.db][args.coll]
        began = time.perf_counter()
        for i in range(0, len(docs), args.batch):
            coll.insert_many(docs[i : i + args.batch], ordered=args.ordered)
        seconds = time.perf_counter() - began
    print(json.dumps({"inserted": len(docs), "seconds": seconds}))
    return 0


def drop(args):
    with client(args.url) as c:
        c[args.db].drop_collection(args.coll)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ping")
    s.add_argument("--deadline", type=float, default=30.0)
    s.set_defaults(run=ping)
    for name, run in (("find", find), ("count", count), ("insert", insert), ("drop", drop)):
        s = sub.add_parser(name)
        s.add_argument("db")
        s.add_argument("coll")
        s.set_defaults(run=run)
        if name == "insert":
            s.add_argument("--batch", type=int, default=1000)
            s.add_argument("--ordered", action="store_true")
    args = p.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
