"""Conformance: flat-map. One event per non-empty line of the value (split on newlines); key,
time and headers copied to each."""

import flowgate


def process(event, emit):
    for part in event.value.split(b"\n"):
        if part:
            emit(part)


WitWorld = flowgate.stage(process)
