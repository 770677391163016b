"""A filter stage in Python: keeps the events whose value contains `error` (case-sensitive),
unchanged.

Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.

flowgate.py (written into build/py/ by each build) turns this one function into the `on-event`
and `on-batch` entry points. `emit(event)` outputs an event as it is; `emit(value)` outputs the
input with a new value, and `emit(value, key=..., timestamp=..., headers=[...])` sets those
fields too (`key=None`: no key). Raise `flowgate.InvalidInput("why")` to fail one event (it goes
to the dead-letter topic).
"""

import flowgate


def process(event, emit):
    if b"error" in event.value:
        emit(event)


WitWorld = flowgate.stage(process)
