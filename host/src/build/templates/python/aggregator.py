"""An aggregator in Python: per key and window, the count and the sum of the events' values,
which are integers written as text (`-?[0-9]{1,18}`); any other value fails with `invalid-input`
"not an integer" (to the dead-letter topic). Each window's result is `{"count":…,"sum":…}`.

Build: `flowgate plugin build`; check: `flowgate plugin test` (windows as `[test]` in
flowgate.toml says).

The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping or
session), keeps one accumulator per key and window and calls `finish` when a window is due;
`merge` lets session windows that grow into each other become one. flowgate.py (written into
build/py/ by each build) keeps the accumulator as JSON: `add` changes it in place (or returns a
new one); when `add` raises, the accumulator stays as it was.
"""

import re

import flowgate

INTEGER = re.compile(rb"-?[0-9]{1,18}")


def wrap(n):
    """`n` as a signed 64-bit integer (sums wrap around)."""
    return (n + 2**63) % 2**64 - 2**63


def create():
    return {"count": 0, "sum": 0}


def add(acc, event):
    if INTEGER.fullmatch(event.value) is None:
        raise flowgate.InvalidInput("not an integer")
    acc["count"] += 1
    acc["sum"] = wrap(acc["sum"] + int(event.value))


def merge(a, b):
    return {"count": a["count"] + b["count"], "sum": wrap(a["sum"] + b["sum"])}


def finish(acc, key, window):
    # A dict comes out as compact JSON; return bytes or str for any other format.
    return {"count": acc["count"], "sum": acc["sum"]}


WitWorld = flowgate.aggregator(create=create, add=add, merge=merge, finish=finish)
