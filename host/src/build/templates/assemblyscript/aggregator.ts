// An aggregator in AssemblyScript: per key and window, the count and the sum of the events'
// values, which are integers written as text (-?[0-9]{1,18}); any other value fails with
// invalid-input (to the dead-letter topic). Each window's result is {"count":…,"sum":…}.
// Build: `flowgate plugin build`; check: `flowgate plugin test` (windows as `[test]` in
// flowgate.toml says).
//
// The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping
// or session), keeps one accumulator per key and window and calls finish when a window is due;
// merge lets session windows that grow into each other become one. The accumulator is bytes in
// an encoding of your own: here 16 little-endian bytes, the count then the sum. add gets a copy
// of it: when add returns fail(..), the accumulator stays as it was.
import { Event, Pane, aggregator, fail, fatal, invalidInput } from "./flowgate";
export { add, cabi_realloc, create, finish, init, merge } from "./flowgate";

function badAcc(): Uint8Array {
  return fail(fatal("an accumulator is not 16 bytes: was it written by another version of this plugin?"));
}

function create(): Uint8Array {
  return new Uint8Array(16);
}

function add(acc: Uint8Array, e: Event): Uint8Array {
  if (acc.length != 16) return badAcc();
  const v = e.value;
  const neg = v.length > 0 && v[0] == 45;
  const digits = v.length - (neg ? 1 : 0);
  if (digits == 0 || digits > 18) return fail(invalidInput("not an integer"));
  let n: i64 = 0;
  for (let i = neg ? 1 : 0; i < v.length; i++) {
    const c = v[i];
    if (c < 48 || c > 57) return fail(invalidInput("not an integer"));
    n = n * 10 + (c - 48);
  }
  store<i64>(acc.dataStart, load<i64>(acc.dataStart) + 1);
  store<i64>(acc.dataStart, load<i64>(acc.dataStart, 8) + (neg ? -n : n), 8);
  return acc;
}

function merge(a: Uint8Array, b: Uint8Array): Uint8Array | null {
  if (a.length != 16 || b.length != 16) return null;
  store<i64>(a.dataStart, load<i64>(a.dataStart) + load<i64>(b.dataStart));
  store<i64>(a.dataStart, load<i64>(a.dataStart, 8) + load<i64>(b.dataStart, 8), 8);
  return a;
}

function finish(acc: Uint8Array, p: Pane): Uint8Array {
  if (acc.length != 16) return badAcc();
  const count = load<i64>(acc.dataStart), sum = load<i64>(acc.dataStart, 8);
  return Uint8Array.wrap(String.UTF8.encode(`{"count":${count},"sum":${sum}}`));
}

aggregator(create, add, merge, finish);
