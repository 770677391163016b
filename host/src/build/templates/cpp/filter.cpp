// A filter in C++: keeps the events whose value contains the bytes `error` (case-sensitive),
// unchanged, and drops the others.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the C bindings generated from
// the WIT) turns this one function into the filter world's `keep` and `keep-batch` entry
// points (`world = "filter"` in flowgate.toml): the plugin only says which events it keeps, and
// they go on from the host's own copy. `*keep` starts at 0 (drop): set it to 1 to keep the
// event; fail one event with `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the
// dead-letter topic).
#include <string_view>

#include "flowgate.h"

extern "C" int fg_keep(const fg_event *e, int *keep, fg_error *) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  *keep = v.find("error") != std::string_view::npos;
  return 0;
}
