"""A flat-map stage in Python: one event per word of the value (split on spaces, empty pieces
skipped), each with the input's key, time and headers.

Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.

flowgate.py (written into build/py/ by each build) turns this one function into the `on-event`
and `on-batch` entry points. Call `emit(value)` zero, one or more times (key, time and headers
kept), or `emit(value, key=..., timestamp=..., headers=[...])` to set those fields too
(`key=None`: no key). Raise `flowgate.InvalidInput("why")` to fail one event (it goes to the
dead-letter topic): its outputs so far are dropped.
"""

import flowgate


def process(event, emit):
    for word in event.value.split(b" "):
        if word:
            emit(word)


WitWorld = flowgate.stage(process)
