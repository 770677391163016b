// A flat-map stage in AssemblyScript: one event per word of the value (split on spaces, empty
// pieces skipped), each with the input's key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.ts (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call out.emit(value) zero, one or more times (key,
// time and headers kept), or out.emitEvent(key, value, timestamp, headers) for a whole event
// of your own; return invalidInput("why") to fail one event (it goes to the dead-letter topic).
import { Emitter, Event, Failure, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

function process(e: Event, out: Emitter): Failure | null {
  const v = e.value;
  let start = 0;
  for (let i = 0; i <= v.length; i++) {
    if (i == v.length || v[i] == 32) {
      if (i > start) out.emit(v.subarray(start, i)); // emit copies: a view is enough
      start = i + 1;
    }
  }
  return null;
}

stage(process);
