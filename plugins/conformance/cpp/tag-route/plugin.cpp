// Conformance: setting a header. The output has the input's headers in order, then `route` =
// `json` when the value starts with `{` and `text` otherwise. Key, value and time are kept.
// The headers are copied one by one here, to show reading them (fg_out_event's headers_of
// copies them in one go).
#include <vector>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  std::vector<fg_header> headers;
  size_t n = fg_header_count(e);
  headers.reserve(n + 1);
  for (size_t i = 0; i < n; i++) headers.push_back(fg_header_at(e, i));
  bool json = e->value_len > 0 && e->value[0] == '{';
  headers.push_back({"route", 5, reinterpret_cast<const uint8_t *>(json ? "json" : "text"), 4});
  fg_out_event o{};
  o.key = e->key;
  o.key_len = e->key_len;
  o.value = e->value;
  o.value_len = e->value_len;
  o.timestamp = e->timestamp;
  o.headers = headers.data();
  o.header_count = headers.size();
  fg_emit_event(out, &o);
  return 0;
}
