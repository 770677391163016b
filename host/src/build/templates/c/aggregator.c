// An aggregator in C: per key and window, the count and the sum of the events' values, which
// are integers written as text (`-?[0-9]{1,18}`); any other value fails with invalid-input (to
// the dead-letter topic). Each window's result is `{"count":…,"sum":…}`.
// Build: `flowgate plugin build`; check: `flowgate plugin test` (windows as `[test]` in
// flowgate.toml says).
//
// The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping
// or session), keeps one accumulator per key and window and calls fg_agg_finish when a window
// is due; fg_agg_merge lets session windows that grow into each other become one. flowgate.h
// (built with FG_AGGREGATOR, as `world = "aggregator"` asks) implements the world around these
// functions. The accumulator is bytes this file defines: the count and the sum, two
// little-endian int64. Fail a row with `return fg_fail(err, FG_INVALID_INPUT, "why");`: its
// accumulator is then put back as it was.
#include <stdio.h>

#include "flowgate.h"

typedef struct {
  int64_t count, sum;
} acc_t;

static int load(const uint8_t *p, size_t len, acc_t *a) {
  if (len != sizeof *a) return 0;
  memcpy(a, p, sizeof *a);
  return 1;
}

static const char *const CORRUPT =
    "an accumulator is not 16 bytes; was it written by another version of this plugin?";

void fg_agg_create(fg_buf *acc) {
  acc_t zero = {0, 0};
  fg_buf_append(acc, &zero, sizeof zero);
}

// The value as an integer when it is exactly -?[0-9]{1,18}.
static int integer(const uint8_t *v, size_t len, int64_t *out) {
  size_t i = len > 0 && v[0] == '-';
  if (len - i < 1 || len - i > 18) return 0;
  int64_t n = 0;
  for (; i < len; i++) {
    if (v[i] < '0' || v[i] > '9') return 0;
    n = n * 10 + (v[i] - '0');
  }
  *out = v[0] == '-' ? -n : n;
  return 1;
}

// Adds with wrap-around (no undefined overflow).
static int64_t wrapping_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

int fg_agg_add(fg_buf *acc, const fg_event *e, fg_error *err) {
  acc_t a;
  if (!load(acc->ptr, acc->len, &a)) return fg_fail(err, FG_FATAL, CORRUPT);
  int64_t n;
  if (!integer(e->value, e->value_len, &n)) return fg_fail(err, FG_INVALID_INPUT, "not an integer");
  a.count += 1;
  a.sum = wrapping_add(a.sum, n);
  memcpy(acc->ptr, &a, sizeof a);
  return 0;
}

int fg_agg_merge(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len, fg_buf *out) {
  acc_t x, y;
  if (!load(a, a_len, &x) || !load(b, b_len, &y)) return 1;
  x.count += y.count;
  x.sum = wrapping_add(x.sum, y.sum);
  fg_buf_append(out, &x, sizeof x);
  return 0;
}

int fg_agg_finish(const fg_pane *p, fg_buf *value, fg_error *err) {
  acc_t a;
  if (!load(p->acc, p->acc_len, &a)) return fg_fail(err, FG_FATAL, CORRUPT);
  char text[64];
  int len = snprintf(text, sizeof text, "{\"count\":%lld,\"sum\":%lld}", (long long)a.count,
                     (long long)a.sum);
  fg_buf_append(value, text, (size_t)len);
  return 0;
}
