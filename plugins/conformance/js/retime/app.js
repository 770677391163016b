// Conformance: rewriting the event time. The time becomes its second (`timestamp - timestamp
// mod 1000`, rounding down) plus the value's length in milliseconds. Key, value and headers
// kept.
function process(event, emit) {
  const t = event.timestamp;
  const second = t - (((t % 1000n) + 1000n) % 1000n);
  emit({ timestamp: second + BigInt(event.value.length) });
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
