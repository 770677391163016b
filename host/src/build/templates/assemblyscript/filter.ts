// A filter stage in AssemblyScript: keeps the events whose value contains `error`, unchanged.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.ts (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call out.emit(value) to keep an event with a value
// (key, time and headers kept), out.emitEvent(key, value, timestamp, headers) for a whole
// event of your own, nothing to drop it; return invalidInput("why") to fail one event (it goes
// to the dead-letter topic).
import { Emitter, Event, Failure, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

// `error` as bytes.
const WORD: u8[] = [101, 114, 114, 111, 114];

function contains(v: Uint8Array, word: u8[]): bool {
  for (let i = 0; i + word.length <= v.length; i++) {
    let j = 0;
    while (j < word.length && v[i + j] == word[j]) j++;
    if (j == word.length) return true;
  }
  return false;
}

function process(e: Event, out: Emitter): Failure | null {
  if (contains(e.value, WORD)) out.emit(e.value);
  return null;
}

stage(process);
