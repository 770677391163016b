// Conformance: flat-map. One event per non-empty line of the value (split on '\n'); key, time
// and headers copied to each.
import { Emitter, Event, Failure, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

function process(e: Event, out: Emitter): Failure | null {
  const v = e.value;
  let start = 0;
  for (let i = 0; i <= v.length; i++) {
    if (i == v.length || v[i] == 10) {
      if (i > start) out.emit(v.slice(start, i));
      start = i + 1;
    }
  }
  return null;
}

stage(process);
