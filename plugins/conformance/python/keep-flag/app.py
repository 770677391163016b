"""Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
top-level field "keep" that is true; a value that is not a JSON object fails with
invalid-input "not a JSON object"."""

import json

import flowgate


def process(event, emit):
    try:
        value = json.loads(event.value)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise flowgate.InvalidInput("not a JSON object")
    if value.get("keep") is True:
        emit(event.value)


WitWorld = flowgate.stage(process)
