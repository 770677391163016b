// A map stage in C: upper-cases each event's value (ASCII), keeping key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the bindings generated from the
// WIT) turns this one function into the `on-event` and `on-batch` entry points. Emit zero, one
// or more outputs with fg_emit / fg_emit_input / fg_emit_event; fail one event with
// `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic).
#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  // The new value is written straight into the output buffer: no copy. (Locals for the input,
  // so the compiler need not reload them after each byte written.)
  const uint8_t *in = e->value;
  size_t n = e->value_len;
  uint8_t *v = fg_value_reserve(out, n);
  for (size_t i = 0; i < n; i++) {
    uint8_t c = in[i];
    v[i] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - ('a' - 'A')) : c;
  }
  fg_emit(out, e, v, n);
  return 0;
}
