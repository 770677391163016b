// A map stage in AssemblyScript: upper-cases each event's value (ASCII), keeping key, time and
// headers. Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.ts (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call out.emit(value) zero, one or more times (key,
// time and headers kept), or out.emitEvent(key, value, timestamp, headers) for a whole event
// of your own; return invalidInput("why") to fail one event (it goes to the dead-letter topic).
import { Emitter, Event, Failure, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

function process(e: Event, out: Emitter): Failure | null {
  const v = new Uint8Array(e.value.length);
  for (let i = 0; i < v.length; i++) {
    const c = e.value[i];
    v[i] = c >= 97 && c <= 122 ? c - 32 : c;
  }
  out.emit(v);
  return null;
}

stage(process);
