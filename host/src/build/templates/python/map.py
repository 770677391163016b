"""A map stage in Python: upper-cases each event's value (ASCII), keeping key, time and headers.

Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.

flowgate.py (written into build/py/ by each build) turns this one function into the `on-event`
and `on-batch` entry points. Call `emit(value)` zero, one or more times; raise
`flowgate.InvalidInput("why")` to fail one event (it goes to the dead-letter topic).
"""

import flowgate


def process(event, emit):
    emit(event.value.upper())


WitWorld = flowgate.stage(process)
