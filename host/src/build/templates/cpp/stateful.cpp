// A stage with keyed state in C++: replaces each value with the number of events seen so far
// with its key (events without a key count under the empty key), as decimal text; the count is
// stored as 8 little-endian bytes.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// In a pipeline the stage needs `state = true`: the host keeps the state with the stage's
// input position (after a crash both come back from the same point, so no event is counted
// twice or missed) and undoes the writes of a call that fails. The state functions are the
// generated bindings in build/include/stage.h: flowgate_plugin_state_get,
// flowgate_plugin_state_put, flowgate_plugin_state_delete and flowgate_plugin_state_scan.
// flowgate.h turns fg_process into the `on-event` and `on-batch` entry points; fail one event
// with `return fg_fail(err, FG_INVALID_INPUT, "why");` (it goes to the dead-letter topic).
#include <charconv>
#include <cstring>

#include "flowgate.h"

extern "C" int fg_process(const fg_event *e, fg_out *out, fg_error *) {
  static uint8_t empty = 0;
  stage_list_u8_t key{e->key ? const_cast<uint8_t *>(e->key) : &empty, e->key_len};
  stage_list_u8_t got;
  uint64_t n = 0;
  if (flowgate_plugin_state_get(&key, &got)) {
    if (got.len == 8) std::memcpy(&n, got.ptr, 8);
    stage_list_u8_free(&got);
  }
  n++;
  stage_list_u8_t stored{reinterpret_cast<uint8_t *>(&n), 8};
  flowgate_plugin_state_put(&key, &stored);
  // Written in place: room for 20 digits, then the value is the digits written.
  char *v = reinterpret_cast<char *>(fg_value_reserve(out, 20));
  char *end = std::to_chars(v, v + 20, n).ptr;
  fg_emit(out, e, reinterpret_cast<uint8_t *>(v), static_cast<size_t>(end - v));
  return 0;
}
