// Conformance: re-keying. When the value contains `"user":"`, the new key is the bytes after it
// up to the next `"` (to the end of the value when there is none); otherwise the event has no
// key (none, not empty). Value, time and headers kept. A byte search, not a JSON parser.
const FIELD = new TextEncoder().encode('"user":"');

// Where `needle` starts in `hay` at or after `from`, or -1.
function find(hay, needle, from) {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

function process(event, emit) {
  const v = event.value;
  const at = find(v, FIELD, 0);
  if (at < 0) {
    emit({ key: null });
    return;
  }
  const start = at + FIELD.length;
  const end = v.indexOf(34, start); // '"'
  emit({ key: v.subarray(start, end < 0 ? v.length : end) });
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
