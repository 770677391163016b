// Conformance: flat-map. One event per non-empty line of the value (split on '\n'); key, time
// and headers copied to each.
#include <string_view>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find('\n', start);
    if (end == std::string_view::npos) end = v.size();
    if (end > start) fg_emit(out, e, e->value + start, end - start);
    start = end + 1;
  }
  return 0;
}
