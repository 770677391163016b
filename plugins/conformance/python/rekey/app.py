"""Conformance: re-keying. When the value contains `"user":"`, the new key is the bytes after it
up to the next `"` (to the end of the value when there is none); otherwise the event has no key
(none, not empty). Value, time and headers kept. A byte search, not a JSON parser."""

import flowgate

FIELD = b'"user":"'


def process(event, emit):
    at = event.value.find(FIELD)
    if at < 0:
        emit(key=None)
        return
    start = at + len(FIELD)
    end = event.value.find(b'"', start)
    emit(key=event.value[start:] if end < 0 else event.value[start:end])


WitWorld = flowgate.stage(process)
