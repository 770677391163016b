// A filter in TypeScript: keeps the events whose value contains `error` (case-sensitive),
// unchanged. Build: `flowgate plugin build` (tsc --strict checks it); then `flowgate plugin test`.
//
// The `flowgate` helper (types in build/ts/flowgate.d.ts) turns this one function into the
// `keep` and `keep-batch` entry points of the filter world (`world = "filter"` in
// flowgate.toml): the plugin only says which events it keeps, and they go on from the host's own
// copy. Return true to keep the event as it is, false to drop it; throw
// `flowgate.invalidInput("why")` to fail it (it goes to the dead-letter topic).
const ERROR = new TextEncoder().encode('error');

/** Whether `needle` occurs in `hay`. */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

function isError(event: FlowgateEvent): boolean {
  return contains(event.value, ERROR);
}

export const { init, keep, keepBatch } = flowgate.filter(isError);
