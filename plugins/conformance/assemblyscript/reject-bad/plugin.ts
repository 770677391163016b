// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
import { Emitter, Event, Failure, invalidInput, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

function process(e: Event, out: Emitter): Failure | null {
  const v = e.value;
  if (v.length >= 3 && v[0] == 98 && v[1] == 97 && v[2] == 100) return invalidInput("bad event");
  out.emit(v);
  return null;
}

stage(process);
