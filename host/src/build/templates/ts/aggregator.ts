// An aggregator in TypeScript: per key and window, the count and the sum of the events' values,
// which are integers written as text (`-?[0-9]{1,18}`); any other value fails with
// `invalid-input` "not an integer" (to the dead-letter topic). Each window's result is
// `{"count":…,"sum":…}`. Build: `flowgate plugin build` (tsc --strict checks it); then
// `flowgate plugin test` (windows as `[test]` in flowgate.toml says).
//
// The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping or
// session), keeps one accumulator per key and window and calls `finish` when a window is due;
// `merge` lets session windows that grow into each other become one. The `flowgate` helper
// (types in build/ts/flowgate.d.ts) keeps the accumulator as JSON: `add` changes it in place (or
// returns a new one); when `add` throws, the accumulator stays as it was. A BigInt is not JSON,
// so the sum (a signed 64-bit integer that wraps around) is kept as a string.

// ignoreBOM: a leading byte-order mark stays in the text (and fails the test).
const text = new TextDecoder('utf-8', { ignoreBOM: true });
const INTEGER = /^-?[0-9]{1,18}$/;

/** The accumulator: the count, and the sum as decimal text. */
type CountSum = { count: number; sum: string };

const wrap = (n: bigint): string => BigInt.asIntN(64, n).toString();

export const { init, create, add, merge, finish } = flowgate.aggregator<CountSum>({
  create: () => ({ count: 0, sum: '0' }),
  add(acc, event) {
    const value = text.decode(event.value);
    if (!INTEGER.test(value)) throw flowgate.invalidInput('not an integer');
    acc.count += 1;
    acc.sum = wrap(BigInt(acc.sum) + BigInt(value));
  },
  merge: (a, b) => ({ count: a.count + b.count, sum: wrap(BigInt(a.sum) + BigInt(b.sum)) }),
  finish: (acc) => `{"count":${acc.count},"sum":${acc.sum}}`,
});
