"""Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value
of each output is the number of events seen with its key so far (the empty key for events
without one), as decimal text; the count is stored as 8 little-endian bytes."""

import flowgate
from flowgate import state


def process(event, emit):
    key = event.key or b""
    stored = state.get(key)
    n = int.from_bytes(stored, "little") if stored is not None and len(stored) == 8 else 0
    n += 1
    state.put(key, n.to_bytes(8, "little"))
    emit(str(n).encode())


WitWorld = flowgate.stage(process)
