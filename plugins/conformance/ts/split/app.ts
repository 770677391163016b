// Conformance: flat-map. One event per non-empty line of the value (split on '\n'); key, time
// and headers copied to each.
function process(event: FlowgateEvent, emit: FlowgateEmit): void {
  const v = event.value;
  let start = 0;
  for (let i = 0; i <= v.length; i++) {
    if (i === v.length || v[i] === 10) {
      if (i > start) emit(v.subarray(start, i));
      start = i + 1;
    }
  }
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
