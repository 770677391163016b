"""Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
top-level field "keep" that is true; a value that is not a JSON object fails with
invalid-input "not a JSON object"."""

import json

import flowgate


def _no_constant(name):
    raise ValueError(name)


def keep(event):
    try:
        # Text first: JSON is UTF-8 (no other encoding, no byte-order mark); NaN is not JSON.
        value = json.loads(event.value.decode(), parse_constant=_no_constant)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise flowgate.InvalidInput("not a JSON object")
    return value.get("keep") is True


WitWorld = flowgate.filter(keep)
