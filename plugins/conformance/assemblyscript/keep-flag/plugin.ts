// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object". A small scanner over strings and nesting (AssemblyScript
// has no JSON parser in its standard library).
import { Event, filter, invalidInput, reject } from "./flowgate";
export { cabi_realloc, init, keep, keep_batch } from "./flowgate";

function space(c: u8): bool {
  return c == 32 || c == 9 || c == 10 || c == 13;
}

function skipWs(v: Uint8Array, i: i32): i32 {
  while (i < v.length && space(v[i])) i++;
  return i;
}

function skipString(v: Uint8Array, i: i32): i32 {
  for (i++; i < v.length; i++) {
    if (v[i] == 92) i++;
    else if (v[i] == 34) return i + 1;
  }
  return v.length;
}

// `"keep"` as bytes.
const KEEP: u8[] = [34, 107, 101, 101, 112, 34];
const TRUE: u8[] = [116, 114, 117, 101];

function matches(v: Uint8Array, at: i32, what: u8[]): bool {
  if (at + what.length > v.length) return false;
  for (let i = 0; i < what.length; i++) if (v[at + i] != what[i]) return false;
  return true;
}

function hasKeepFlag(e: Event): bool {
  const v = e.value;
  const first = skipWs(v, 0);
  let last = v.length;
  while (last > 0 && space(v[last - 1])) last--;
  if (first >= last || v[first] != 123 || v[last - 1] != 125) {
    return reject(invalidInput("not a JSON object"));
  }
  let depth = 0;
  let expectKey = true;
  let flag = false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c == 34) {
      const end = skipString(v, i);
      if (depth == 1 && expectKey) {
        const isKeep = end - i == 6 && matches(v, i, KEEP);
        let j = skipWs(v, end);
        if (j < v.length && v[j] == 58) {
          j = skipWs(v, j + 1);
          if (isKeep) {
            flag = matches(v, j, TRUE) && (j + 4 == v.length || v[j + 4] == 44 || v[j + 4] == 125 || space(v[j + 4]));
          }
          expectKey = false;
          i = j - 1;
          continue;
        }
      }
      i = end - 1;
    } else if (c == 123 || c == 91) {
      depth++;
      expectKey = c == 123;
    } else if (c == 125 || c == 93) {
      depth--;
    } else if (c == 44 && depth == 1) {
      expectKey = true;
    }
  }
  return flag;
}

filter(hasKeepFlag);
