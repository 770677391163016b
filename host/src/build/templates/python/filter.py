"""A filter in Python: keeps the events whose value contains `error` (case-sensitive), unchanged.

Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.

flowgate.py (written into build/py/ by each build) turns this one function into the `keep` and
`keep-batch` entry points of the filter world (`world = "filter"` in flowgate.toml): the plugin
only says which events it keeps, and they go on from the host's own copy. Return True to keep
the event as it is, False to drop it; raise `flowgate.InvalidInput("why")` to fail it (it goes to
the dead-letter topic).
"""

import flowgate


def keep(event):
    return b"error" in event.value


WitWorld = flowgate.filter(keep)
