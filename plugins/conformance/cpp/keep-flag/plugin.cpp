// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object". A small scanner over strings and nesting, not a full
// JSON parser.
#include <string_view>

#include "flowgate.h"

namespace {

bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && space(s[i])) i++;
  return i;
}

size_t skip_string(std::string_view s, size_t i) {
  for (i++; i < s.size(); i++) {
    if (s[i] == '\\') i++;
    else if (s[i] == '"') return i + 1;
  }
  return s.size();
}

bool keeps(std::string_view s) {
  int depth = 0;
  bool expect_key = true, keep = false;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '"') {
      size_t end = skip_string(s, i);
      if (depth == 1 && expect_key) {
        bool is_keep = s.substr(i, end - i) == "\"keep\"";
        size_t j = skip_ws(s, end);
        if (j < s.size() && s[j] == ':') {
          j = skip_ws(s, j + 1);
          if (is_keep) {
            keep = s.substr(j, 4) == "true" &&
                   (j + 4 == s.size() || s[j + 4] == ',' || s[j + 4] == '}' || space(s[j + 4]));
          }
          expect_key = false;
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
      expect_key = true;
    }
  }
  return keep;
}

}  // namespace

extern "C" int fg_keep(const fg_event *e, int *keep, fg_error *err) {
  std::string_view v(reinterpret_cast<const char *>(e->value), e->value_len);
  size_t first = skip_ws(v, 0), last = v.size();
  while (last > 0 && space(v[last - 1])) last--;
  if (first >= last || v[first] != '{' || v[last - 1] != '}') {
    return fg_fail(err, FG_INVALID_INPUT, "not a JSON object");
  }
  *keep = keeps(v);
  return 0;
}
