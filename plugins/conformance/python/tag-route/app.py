"""Conformance: setting a header. The output has the input's headers in order, then `route` =
`json` when the value starts with `{` and `text` otherwise (also when it is empty). Key, value
and time kept."""

import flowgate


def process(event, emit):
    route = b"json" if event.value[:1] == b"{" else b"text"
    emit(headers=event.headers + [("route", route)])


WitWorld = flowgate.stage(process)
