// Conformance: setting a header. The output has the input's headers in order, then `route` =
// `json` when the value starts with `{` and `text` otherwise. Key, value and time are kept.
#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  int json = e->value_len > 0 && e->value[0] == '{';
  fg_header route = {"route", 5, (const uint8_t *)(json ? "json" : "text"), 4};
  fg_out_event o = fg_out_event_of(e);  // the input's headers first (headers_of), then route
  o.headers = &route;
  o.header_count = 1;
  fg_emit_event(out, &o);
  return 0;
}
