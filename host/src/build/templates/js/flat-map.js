// A flat-map stage in JavaScript: one event per word of the value (split on spaces, empty pieces
// skipped), each with the input's key, time and headers. Build: `flowgate plugin build`; check
// against test/: `flowgate plugin test`.
//
// The `flowgate` helper (put before this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call `emit(value)` zero, one or more times (key, time
// and headers kept), or `emit({ key, value, timestamp, headers })` to set those fields too
// (`key: null`: no key). Throw `flowgate.invalidInput("why")` to fail one event (it goes to the
// dead-letter topic): its outputs so far are dropped.
function process(event, emit) {
  const v = event.value;
  let start = 0;
  for (let i = 0; i <= v.length; i++) {
    if (i === v.length || v[i] === 32) {
      if (i > start) emit(v.subarray(start, i));
      start = i + 1;
    }
  }
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
