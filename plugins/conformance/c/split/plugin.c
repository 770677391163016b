// Conformance: flat-map. One event per non-empty line of the value (split on '\n'); key, time
// and headers copied to each.
#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  size_t start = 0;
  for (size_t i = 0; i <= e->value_len; i++) {
    if (i == e->value_len || e->value[i] == '\n') {
      if (i > start) fg_emit(out, e, e->value + start, i - start);
      start = i + 1;
    }
  }
  return 0;
}
