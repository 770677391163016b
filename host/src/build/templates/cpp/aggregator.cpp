// An aggregator in C++: per key and window, the count and the sum of the events' values, which
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
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "flowgate.h"

namespace {

struct Acc {
  int64_t count = 0, sum = 0;
};

std::optional<Acc> load(const uint8_t *p, size_t len) {
  if (len != sizeof(Acc)) return std::nullopt;
  Acc a;
  std::memcpy(&a, p, sizeof a);
  return a;
}

constexpr const char *CORRUPT =
    "an accumulator is not 16 bytes; was it written by another version of this plugin?";

// The value as an integer when it is exactly -?[0-9]{1,18}.
std::optional<int64_t> integer(std::string_view v) {
  bool negative = !v.empty() && v[0] == '-';
  std::string_view digits = v.substr(negative ? 1 : 0);
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  int64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return negative ? -n : n;
}

// Adds with wrap-around (no undefined overflow).
int64_t wrapping_add(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

}  // namespace

extern "C" void fg_agg_create(fg_buf *acc) {
  Acc zero;
  fg_buf_append(acc, &zero, sizeof zero);
}

extern "C" int fg_agg_add(fg_buf *acc, const fg_event *e, fg_error *err) {
  std::optional<Acc> a = load(acc->ptr, acc->len);
  if (!a) return fg_fail(err, FG_FATAL, CORRUPT);
  std::optional<int64_t> n = integer({reinterpret_cast<const char *>(e->value), e->value_len});
  if (!n) return fg_fail(err, FG_INVALID_INPUT, "not an integer");
  a->count += 1;
  a->sum = wrapping_add(a->sum, *n);
  std::memcpy(acc->ptr, &*a, sizeof *a);
  return 0;
}

extern "C" int fg_agg_merge(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                            fg_buf *out) {
  std::optional<Acc> x = load(a, a_len), y = load(b, b_len);
  if (!x || !y) return 1;
  Acc m{x->count + y->count, wrapping_add(x->sum, y->sum)};
  fg_buf_append(out, &m, sizeof m);
  return 0;
}

extern "C" int fg_agg_finish(const fg_pane *p, fg_buf *value, fg_error *err) {
  std::optional<Acc> a = load(p->acc, p->acc_len);
  if (!a) return fg_fail(err, FG_FATAL, CORRUPT);
  std::string text =
      "{\"count\":" + std::to_string(a->count) + ",\"sum\":" + std::to_string(a->sum) + "}";
  fg_buf_append(value, text.data(), text.size());
  return 0;
}
