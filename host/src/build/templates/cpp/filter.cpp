// A filter stage in C++: keeps the events whose value contains the bytes `error`
// (case-sensitive), unchanged, and drops the others.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the C bindings generated from
// the WIT) turns this one function into the `on-event` and `on-batch` entry points. Keep an
// event with fg_emit_input (emit nothing to drop it); fail one event with
// `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic).
#include <string_view>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  if (v.find("error") != std::string_view::npos) fg_emit_input(out, e);
  return 0;
}
