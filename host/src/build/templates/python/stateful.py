"""A stateful stage in Python: counts events per key in keyed state. Each output is the input
with its value replaced by the number of events seen so far with its key (events without a key
count under the empty key), as decimal text; the count is stored as 8 little-endian bytes.

Build: `flowgate plugin build`; check against test/: `flowgate plugin test`. In a pipeline the
stage needs `state = true`: the host keeps the state, checkpoints it with the stage's input
position and undoes the writes of a call that fails.

flowgate.py (written into build/py/ by each build) turns this one function into the `on-event`
and `on-batch` entry points; `flowgate.state` has `get(key)`, `put(key, value)`, `delete(key)`
and `scan(start, end, limit)`. Call `emit(value)` (key, time and headers kept) or
`emit(value, key=..., timestamp=..., headers=[...])`; raise `flowgate.InvalidInput("why")` to
fail one event (it goes to the dead-letter topic).
"""

import flowgate
from flowgate import state


def process(event, emit):
    key = event.key or b""
    stored = state.get(key)
    n = int.from_bytes(stored, "little") if stored is not None and len(stored) == 8 else 0
    n += 1
    state.put(key, n.to_bytes(8, "little"))
    emit(str(n))


WitWorld = flowgate.stage(process)
