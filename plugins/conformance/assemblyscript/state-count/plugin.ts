// Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value of
// each output is the number of events seen with its key so far (the empty key for events
// without one), as decimal text; the count is stored as 8 little-endian bytes.
import { Emitter, Event, Failure, getState, putState, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

function process(e: Event, out: Emitter): Failure | null {
  const key = e.key != null ? e.key! : new Uint8Array(0);
  const stored = getState(key);
  let n: u64 = 0;
  if (stored != null && stored.length == 8) n = load<u64>(stored.dataStart);
  n++;
  const bytes = new Uint8Array(8);
  store<u64>(bytes.dataStart, n);
  putState(key, bytes);
  out.emit(Uint8Array.wrap(String.UTF8.encode(n.toString())));
  return null;
}

stage(process);
