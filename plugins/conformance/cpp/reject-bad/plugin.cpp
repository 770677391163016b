// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
#include <string_view>

#include "flowgate.h"

extern "C" int fg_keep(const fg_event *e, int *keep, fg_error *err) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  if (v.substr(0, 3) == "bad") return fg_fail(err, FG_INVALID_INPUT, "bad event");
  *keep = 1;
  return 0;
}
