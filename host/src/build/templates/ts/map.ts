// A map stage in TypeScript: upper-cases each event's value (ASCII), keeping key, time and
// headers. Build: `flowgate plugin build` (tsc --strict checks it); then `flowgate plugin test`.
//
// The `flowgate` helper (types in build/ts/flowgate.d.ts) turns this one function into the
// `on-event` and `on-batch` entry points. Call `emit(value)` zero, one or more times; throw
// `flowgate.invalidInput("why")` to fail one event (it goes to the dead-letter topic).
function process(event: FlowgateEvent, emit: FlowgateEmit): void {
  const v = event.value.slice();
  for (let i = 0; i < v.length; i++) {
    if (v[i] >= 97 && v[i] <= 122) v[i] -= 32;
  }
  emit(v);
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
