// Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value of
// each output is the number of events seen with its key so far (the empty key for events
// without one), as decimal text; the count is stored as 8 little-endian bytes.
#include <cstring>
#include <string>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  static uint8_t empty = 0;
  stage_list_u8_t key{e->key ? const_cast<uint8_t *>(e->key) : &empty, e->key ? e->key_len : 0};
  stage_list_u8_t got;
  uint64_t n = 0;
  if (flowgate_plugin_state_get(&key, &got)) {
    if (got.len == 8) std::memcpy(&n, got.ptr, 8);
    stage_list_u8_free(&got);
  }
  n++;
  stage_list_u8_t value{reinterpret_cast<uint8_t *>(&n), 8};
  flowgate_plugin_state_put(&key, &value);
  std::string text = std::to_string(n);
  fg_emit(out, e, reinterpret_cast<const uint8_t *>(text.data()), text.size());
  return 0;
}
