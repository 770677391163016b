// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
#include "flowgate.h"

int fg_keep(const fg_event *e, int *keep, fg_error *err) {
  if (e->value_len >= 3 && !memcmp(e->value, "bad", 3)) return fg_fail(err, FG_INVALID_INPUT, "bad event");
  *keep = 1;
  return 0;
}
