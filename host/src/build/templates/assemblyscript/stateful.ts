// A stage with keyed state in AssemblyScript: replaces each value with the number of events
// seen so far with its key (events without a key count under the empty key), as decimal text.
// The count is stored as 8 little-endian bytes. The stage needs `state = true` in the pipeline.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.ts (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. getState, putState and deleteState reach the keyed
// state; a call that fails has its writes undone. Call out.emit(value) zero, one or more times
// (key, time and headers kept), or out.emitEvent(key, value, timestamp, headers) for a whole
// event of your own; return invalidInput("why") to fail one event (it goes to the dead-letter
// topic).
import { Emitter, Event, Failure, getState, putState, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

const NO_KEY = new Uint8Array(0);

function process(e: Event, out: Emitter): Failure | null {
  const key = e.key != null ? e.key! : NO_KEY;
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
