#!/usr/bin/env python3
"""An independent PostgreSQL client of the tests (psycopg, not Flowgate's code), run by
tests/src/postgres.rs.

  pg.py --url URL query SQL     the rows of SQL, a JSON object a line (column name: value)

Values: integers, floats, booleans, strings, null and json/jsonb as JSON; numeric as a string
(exact); bytea as PostgreSQL's hex text ("\\x0a1b"); dates, times and timestamps in ISO 8601;
anything else as its str().
"""

import argparse
import datetime
import decimal
import json
import sys

import psycopg


def value(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(v).hex()
    if isinstance(v, (datetime.date, datetime.time, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return [value(x) for x in v]
    if isinstance(v, dict):
        return {k: value(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def query(args):
    out = sys.stdout
    with psycopg.connect(args.url, connect_timeout=10, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(args.sql)
            if cur.description is None:
                return 0
            names = [c.name for c in cur.description]
            for row in cur:
                out.write(json.dumps({n: value(v) for n, v in zip(names, row)}))
                out.write("\n")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("query")
    s.add_argument("sql")
    s.set_defaults(run=query)
    args = p.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
