// A map stage in C++: upper-cases each event's value (ASCII), keeping key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the C bindings generated from
// the WIT) turns this one function into the `on-event` and `on-batch` entry points. Emit zero,
// one or more outputs with fg_emit / fg_emit_input; fail one event with
// `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic).
#include <string>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  std::string v(reinterpret_cast<const char *>(e->value), e->value_len);
  for (char &c : v) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - ('a' - 'A'));
  }
  fg_emit(out, e, reinterpret_cast<const uint8_t *>(v.data()), v.size());
  return 0;
}
