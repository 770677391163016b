// Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value of
// each output is the number of events seen with its key so far (the empty key for events
// without one), as decimal text; the count is stored as 8 little-endian bytes.
import { get, put } from 'flowgate:plugin/state@0.1.0';

function process(event: FlowgateEvent, emit: FlowgateEmit): void {
  const key = event.key ?? new Uint8Array(0);
  const stored = get(key);
  let n = 0n;
  if (stored !== undefined && stored.length === 8) {
    n = new DataView(stored.buffer, stored.byteOffset, 8).getBigUint64(0, true);
  }
  n += 1n;
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, n, true);
  put(key, bytes);
  emit(n.toString());
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
