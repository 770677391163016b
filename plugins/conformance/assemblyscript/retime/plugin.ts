// Conformance: a new timestamp, emitted as a whole event. The time becomes the start of its
// second plus the value's length: timestamp - timestamp % 1000 + length(value). Key (none,
// empty or bytes), value and headers kept as they are.
import { Emitter, Event, Failure, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

function process(e: Event, out: Emitter): Failure | null {
  out.emitEvent(e.key, e.value, e.timestamp - (e.timestamp % 1000) + e.value.length, e.headers);
  return null;
}

stage(process);
