// A filter stage in C: keeps the events whose value contains the bytes `error`
// (case-sensitive), unchanged, and drops the others.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the bindings generated from the
// WIT) turns this one function into the `on-event` and `on-batch` entry points. Keep an event
// with fg_emit_input (emit nothing to drop it); fail one event with
// `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic).
#include "flowgate.h"

// True when `word` (of `len` bytes) occurs in v[0..n).
static int contains(const uint8_t *v, size_t n, const char *word, size_t len) {
  for (size_t i = 0; i + len <= n; i++) {
    if (v[i] == (uint8_t)word[0] && !memcmp(v + i, word, len)) return 1;
  }
  return 0;
}

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  if (contains(e->value, e->value_len, "error", 5)) fg_emit_input(out, e);
  return 0;
}
