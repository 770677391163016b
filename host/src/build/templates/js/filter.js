// A filter stage in JavaScript: keeps the events whose value contains `error` (case-sensitive),
// unchanged. Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// The `flowgate` helper (put before this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. `emit(event)` outputs an event as it is; `emit(value)`
// outputs the input with a new value, and `emit({ key, value, timestamp, headers })` sets any of
// those fields (the others are the input's; `key: null`: no key). Throw
// `flowgate.invalidInput("why")` to fail one event (it goes to the dead-letter topic).
const ERROR = new TextEncoder().encode('error');

// Whether `needle` occurs in `hay`.
function contains(hay, needle) {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

function process(event, emit) {
  if (contains(event.value, ERROR)) emit(event);
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
