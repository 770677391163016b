// Conformance: rewriting the event time. The time becomes its second (`timestamp - timestamp
// mod 1000`, rounding down) plus the value's length in milliseconds. Key, value and headers
// are kept.
#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  int64_t rem = e->timestamp % 1000;
  if (rem < 0) rem += 1000;  // rounding down for times before 1970 too
  fg_out_event o = fg_out_event_of(e);
  o.timestamp = e->timestamp - rem + (int64_t)e->value_len;
  fg_emit_event(out, &o);
  return 0;
}
