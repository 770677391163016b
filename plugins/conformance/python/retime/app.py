"""Conformance: rewriting the event time. The time becomes its second (`timestamp - timestamp
mod 1000`) plus the value's length in milliseconds. Key, value and headers kept."""

import flowgate


def process(event, emit):
    emit(timestamp=event.timestamp - event.timestamp % 1000 + len(event.value))


WitWorld = flowgate.stage(process)
