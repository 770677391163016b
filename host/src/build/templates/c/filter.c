// A filter in C: keeps the events whose value contains the bytes `error` (case-sensitive),
// unchanged, and drops the others.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.h (written into build/include/ by each build, with the bindings generated from the
// WIT) turns this one function into the filter world's `keep` and `keep-batch` entry points
// (`world = "filter"` in flowgate.toml): the plugin only says which events it keeps, and they
// go on from the host's own copy. `*keep` starts at 0 (drop): set it to 1 to keep the event;
// fail one event with `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the
// dead-letter topic).
#include "flowgate.h"

// True when `word` (of `len` bytes) occurs in v[0..n).
static int contains(const uint8_t *v, size_t n, const char *word, size_t len) {
  for (size_t i = 0; i + len <= n; i++) {
    if (v[i] == (uint8_t)word[0] && !memcmp(v + i, word, len)) return 1;
  }
  return 0;
}

int fg_keep(const fg_event *e, int *keep, fg_error *err) {
  (void)err;
  *keep = contains(e->value, e->value_len, "error", 5);
  return 0;
}
