// Conformance: re-keying. When the value contains `"user":"`, the new key is the text after it
// up to the next `"` (to the end of the value when there is none); otherwise the event has no
// key. Value, time and headers are kept. A byte search, not a JSON parser.
#include <algorithm>
#include <string_view>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  fg_out_event o = fg_out_event_of(e);
  o.key = nullptr;  // none, unless the field is there
  o.key_len = 0;
  constexpr std::string_view field = "\"user\":\"";
  if (size_t at = v.find(field); at != std::string_view::npos) {
    std::string_view rest = v.substr(at + field.size());
    o.key = reinterpret_cast<const uint8_t *>(rest.data());
    o.key_len = std::min(rest.find('"'), rest.size());
  }
  fg_emit_event(out, &o);
  return 0;
}
