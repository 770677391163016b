// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object". A small scanner, not a full JSON parser: it follows
// strings (with escapes) and nesting to find top-level keys.
#include "flowgate.h"

static size_t skip_ws(const uint8_t *p, size_t i, size_t n) {
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
  return i;
}

// The index after the string starting at p[i] == '"'.
static size_t skip_string(const uint8_t *p, size_t i, size_t n) {
  for (i++; i < n; i++) {
    if (p[i] == '\\') i++;
    else if (p[i] == '"') return i + 1;
  }
  return n;
}

int fg_keep(const fg_event *e, int *keep, fg_error *err) {
  const uint8_t *p = e->value;
  size_t n = e->value_len, i = skip_ws(p, 0, n);
  size_t last = n;
  while (last > 0 && (p[last - 1] == ' ' || p[last - 1] == '\n' || p[last - 1] == '\t' || p[last - 1] == '\r')) last--;
  if (i >= n || p[i] != '{' || p[last - 1] != '}') return fg_fail(err, FG_INVALID_INPUT, "not a JSON object");
  int depth = 0;
  int expect_key = 1;
  for (; i < n; i++) {
    uint8_t c = p[i];
    if (c == '"') {
      size_t end = skip_string(p, i, n);
      if (depth == 1 && expect_key) {
        int is_keep = end - i == 6 && !memcmp(p + i, "\"keep\"", 6);
        size_t j = skip_ws(p, end, n);
        if (j < n && p[j] == ':') {
          j = skip_ws(p, j + 1, n);
          if (is_keep) {
            *keep = j + 4 <= n && !memcmp(p + j, "true", 4) &&
                    (j + 4 == n || p[j + 4] == ',' || p[j + 4] == '}' || p[j + 4] == ' ' || p[j + 4] == '\n');
          }
          expect_key = 0;
          i = j - 1;
          continue;
        }
      }
      i = end - 1;
    } else if (c == '{' || c == '[') {
      depth++;
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      depth--;
    } else if (c == ',' && depth == 1) {
      expect_key = 1;
    } else if (c == ',') {
      // a comma inside a nested object starts a key there, not at the top
    }
  }
  return 0;
}
