// A flat-map stage in C++: one event per word of the value (split on spaces, empty pieces
// skipped), each with the input's key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the C bindings generated from
// the WIT) turns this one function into the `on-event` and `on-batch` entry points. Emit any
// number of outputs with fg_emit (a new value; key, time and headers kept) or fg_emit_event (a
// whole event: key or none, value, time, headers); emit none to drop the event. Fail one event
// with `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic, and
// what it emitted is dropped).
#include <algorithm>
#include <string_view>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  size_t start = 0;
  while (start < v.size()) {
    size_t end = std::min(v.find(' ', start), v.size());
    if (end > start) fg_emit(out, e, e->value + start, end - start);
    start = end + 1;
  }
  return 0;
}
