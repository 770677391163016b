// A flat-map stage in C: one event per word of the value (split on spaces, empty pieces
// skipped), each with the input's key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the bindings generated from the
// WIT) turns this one function into the `on-event` and `on-batch` entry points. Emit any number
// of outputs with fg_emit (a new value; key, time and headers kept) or fg_emit_event (a whole
// event: key or none, value, time, headers); emit none to drop the event. Fail one event with
// `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic, and what
// it emitted is dropped).
#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  const uint8_t *v = e->value;
  size_t n = e->value_len, start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || v[i] == ' ') {
      if (i > start) fg_emit(out, e, v + start, i - start);
      start = i + 1;
    }
  }
  return 0;
}
