// A stateful stage in TypeScript: counts events per key in keyed state. Each output is the input
// with its value replaced by the number of events seen so far with its key (events without a key
// count under the empty key), as decimal text; the count is stored as 8 little-endian bytes.
// Build: `flowgate plugin build` (tsc --strict checks it); then `flowgate plugin test`. In a
// pipeline the stage needs `state = true`: the host keeps the state, checkpoints it with the
// stage's input position and undoes the writes of a call that fails.
//
// The `flowgate` helper (types in build/ts/flowgate.d.ts) turns this one function into the
// `on-event` and `on-batch` entry points; the state functions (`get`, `put`, `delete`, `scan`)
// are imported from the host. Call `emit(value)` (key, time and headers kept) or
// `emit({ key, value, timestamp, headers })`; throw `flowgate.invalidInput("why")` to fail one
// event (it goes to the dead-letter topic).
import { get, put } from 'flowgate:plugin/state@0.1.1';

function process(event: FlowgateEvent, emit: FlowgateEmit): void {
  const key = event.key ?? new Uint8Array(0);
  const stored = get(key);
  let n = 0n;
  if (stored !== undefined && stored.length === 8) {
    n = new DataView(stored.buffer, stored.byteOffset, 8).getBigUint64(0, true);
  }
  n += 1n;
  const count = new Uint8Array(8);
  new DataView(count.buffer).setBigUint64(0, n, true);
  put(key, count);
  emit(n.toString());
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
