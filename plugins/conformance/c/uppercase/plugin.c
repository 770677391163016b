// A map stage in C: upper-cases each event's value (ASCII), keeping key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the bindings generated from the
// WIT) turns this one function into the `on-event` and `on-batch` entry points. Emit zero, one
// or more outputs with fg_emit / fg_emit_input; fail one event with
// `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic).
#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  uint8_t buf[4096];
  uint8_t *v = e->value_len <= sizeof buf ? buf : malloc(e->value_len);
  for (size_t i = 0; i < e->value_len; i++) {
    uint8_t c = e->value[i];
    v[i] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - ('a' - 'A')) : c;
  }
  fg_emit(out, e, v, e->value_len);
  if (v != buf) free(v);
  return 0;
}
