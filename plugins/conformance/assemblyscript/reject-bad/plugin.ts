// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
import { Event, filter, invalidInput, reject } from "./flowgate";
export { cabi_realloc, init, keep, keep_batch } from "./flowgate";

function notBad(e: Event): bool {
  const v = e.value;
  if (v.length >= 3 && v[0] == 98 && v[1] == 97 && v[2] == 100) return reject(invalidInput("bad event"));
  return true;
}

filter(notBad);
