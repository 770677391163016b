// Conformance: a new key from the value. When the value contains `"user":"`, the key becomes
// the bytes after it up to the next `"` (or to the end of the value); otherwise the output has
// no key at all (not an empty one). Value, time and headers kept. A plain byte search.
import { Emitter, Event, Failure, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

// `"user":"` as bytes.
const MARKER: u8[] = [34, 117, 115, 101, 114, 34, 58, 34];

function find(v: Uint8Array): i32 {
  for (let i = 0; i + MARKER.length <= v.length; i++) {
    let j = 0;
    while (j < MARKER.length && v[i + j] == MARKER[j]) j++;
    if (j == MARKER.length) return i;
  }
  return -1;
}

function process(e: Event, out: Emitter): Failure | null {
  const v = e.value;
  let key: Uint8Array | null = null;
  const at = find(v);
  if (at >= 0) {
    const start = at + MARKER.length;
    let end = start;
    while (end < v.length && v[end] != 34) end++;
    key = v.subarray(start, end);
  }
  out.emitEvent(key, v, e.timestamp, e.headers);
  return null;
}

stage(process);
