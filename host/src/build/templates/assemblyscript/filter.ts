// A filter in AssemblyScript: keeps the events whose value contains `error`, unchanged, and
// drops the others. Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.ts (put next to this file by each build) turns this one function into the `keep`
// and `keep-batch` entry points of the filter world (`world = "filter"` in flowgate.toml).
// Return true to keep an event as it is (it goes on from the host's own copy: nothing is copied
// out of the plugin), false to drop it; return reject(invalidInput("why")) to fail one event
// (it goes to the dead-letter topic).
import { Event, filter } from "./flowgate";
export { cabi_realloc, init, keep, keep_batch } from "./flowgate";

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

function hasError(e: Event): bool {
  return contains(e.value, WORD);
}

filter(hasError);
