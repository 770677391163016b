// Conformance: re-keying. When the value contains `"user":"`, the new key is the text after it
// up to the next `"` (to the end of the value when there is none); otherwise the event has no
// key. Value, time and headers are kept. A byte search, not a JSON parser.
#include "flowgate.h"

static const char FIELD[] = "\"user\":\"";

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  const uint8_t *v = e->value;
  size_t n = e->value_len, f = sizeof FIELD - 1;
  fg_out_event o = fg_out_event_of(e);
  o.key = NULL;  // none, unless the field is there
  o.key_len = 0;
  for (size_t i = 0; i + f <= n; i++) {
    if (!memcmp(v + i, FIELD, f)) {
      const uint8_t *k = v + i + f;
      const uint8_t *end = memchr(k, '"', n - i - f);
      o.key = k;
      o.key_len = end ? (size_t)(end - k) : n - i - f;
      break;
    }
  }
  fg_emit_event(out, &o);
  return 0;
}
