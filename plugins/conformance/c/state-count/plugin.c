// Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value of
// each output is the number of events seen with its key so far (the empty key for events
// without one), as decimal text; the count is stored as 8 little-endian bytes.
#include <stdio.h>

#include "flowgate.h"

int fg_process(const fg_event *e, fg_out *out, fg_error *err) {
  (void)err;
  stage_list_u8_t key = {(uint8_t *)(e->key ? e->key : (const uint8_t *)""), e->key ? e->key_len : 0};
  stage_list_u8_t got;
  uint64_t n = 0;
  if (flowgate_plugin_state_get(&key, &got)) {
    if (got.len == 8) memcpy(&n, got.ptr, 8);
    stage_list_u8_free(&got);
  }
  n++;
  stage_list_u8_t value = {(uint8_t *)&n, 8};
  flowgate_plugin_state_put(&key, &value);
  char text[24];
  int len = snprintf(text, sizeof text, "%llu", (unsigned long long)n);
  fg_emit(out, e, (const uint8_t *)text, (size_t)len);
  return 0;
}
