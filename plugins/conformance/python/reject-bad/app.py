"""Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
"bad event" (to the dead-letter topic); the others pass unchanged."""

import flowgate


def keep(event):
    if event.value.startswith(b"bad"):
        raise flowgate.InvalidInput("bad event")
    return True


WitWorld = flowgate.filter(keep)
