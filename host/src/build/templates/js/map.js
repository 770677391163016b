// A map stage in JavaScript: upper-cases each event's value (ASCII), keeping key, time and
// headers. Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// The `flowgate` helper (put before this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call `emit(value)` zero, one or more times; throw
// `flowgate.invalidInput("why")` to fail one event (it goes to the dead-letter topic).
function process(event, emit) {
  const v = event.value.slice();
  for (let i = 0; i < v.length; i++) {
    if (v[i] >= 97 && v[i] <= 122) v[i] -= 32;
  }
  emit(v);
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
