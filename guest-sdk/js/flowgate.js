// Flowgate plugins in JavaScript: write one function over an event, get both entry points.
//
//   function process(event, emit) {
//     emit(event.value);                      // zero, one or more outputs (Uint8Array or string)
//   }
//   export const { init, onEvent, onBatch } = flowgate.stage(process);
//
// `flowgate plugin build` puts this file before your app.js and runs componentize-js on the
// result. `stage` implements the `flowgate:plugin/stage` world's `init`, `on-event` and
// `on-batch` around `process(event, emit)`: `event` has `key` (Uint8Array or undefined),
// `value` (Uint8Array), `timestamp` (BigInt, ms) and `headers` ([{name, value}], in order).
// `emit(value)` outputs the event with a new value (key, time and headers kept);
// `emit({ key, value, timestamp, headers })` outputs a whole event: a field left out (or
// undefined) is the input's as `process` left it, `key: null` means no key, so `emit(event)`
// outputs an event as it is. Bytes may be given as strings (UTF-8). `on-batch` runs the same function on each row, so
// both give the same output. Throw `flowgate.invalidInput("why")` to fail one event (to the
// dead-letter topic), `flowgate.retryable(..)` to have it retried, `flowgate.fatal(..)` to stop
// the stage. `flowgate.config` is the stage's config (a Map).
//
// `flowgate.filter(f)` implements the `flowgate:plugin/filter` world (componentize-js
// `-n filter`) around `f(event)`, which returns true to keep the event as it is and false to
// drop it (or throws, as above, to fail it): `keep` per event, and `keep-batch`, which reads the
// batch where it is and returns only the indices of the rows kept, so no kept event is copied
// out and back. Name `f` anything but `keep` or `keepBatch`, the exports.
//
// `flowgate.aggregator({ create, add, merge, finish })` implements the
// `flowgate:plugin/aggregator` world (componentize-js `-n aggregator`) around an accumulator
// you define: any JSON value (encoded by this helper), or a Uint8Array when `create` returns one.

// To log what a plugin threw before the call traps (its stdio is off).
import { log as flowgateLog } from 'flowgate:plugin/log@0.1.1';

const flowgate = (() => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true }); // a leading U+FEFF is kept
  const failure = (tag) => (message) => ({ flowgateFailure: true, tag, val: String(message) });
  const config = new Map();

  const bytes = (v) => (typeof v === 'string' ? encoder.encode(v) : v);
  // Not `instanceof Uint8Array`: the arrays the host passes in come from another realm.
  const isBytes = (v) => ArrayBuffer.isView(v);

  const EMPTY = new Uint8Array(0);

  class Column {
    constructor() {
      this.parts = [];
      this.size = 0;
      this.ends = [];
    }
    push(b) {
      this.parts.push(b);
      this.size += b.length;
      this.ends.push(this.size);
    }
    get length() {
      return this.parts.length;
    }
    rollback(n) {
      this.parts.length = n;
      this.ends.length = n;
      this.size = n ? this.ends[n - 1] : 0;
    }
    finish() {
      const data = new Uint8Array(this.size);
      let at = 0;
      for (const p of this.parts) {
        data.set(p, at);
        at += p.length;
      }
      return { data, ends: Uint32Array.from(this.ends) };
    }
  }

  const slice = (c, i) => c.data.subarray(i ? c.ends[i - 1] : 0, c.ends[i]);

  // Rethrows what user code threw: a Flowgate failure as the WIT error; anything else is a
  // bug, which traps the call, so it is logged first (with its stack) to be found.
  const rethrow = (e) => {
    if (e && e.flowgateFailure) throw { tag: e.tag, val: e.val };
    flowgateLog('error', `uncaught exception (the call traps): ${(e && e.stack) ? `${e}\n${e.stack}` : e}`);
    throw e;
  };

  const runInit = (pairs, init) => {
    config.clear();
    for (const [k, v] of pairs) config.set(k, v);
    if (init) {
      try {
        init(config);
      } catch (e) {
        throw { tag: 'fatal', val: e && e.flowgateFailure ? e.val : String(e) };
      }
    }
  };

  // A new array of output headers, their values as bytes.
  const outHeaders = (headers) => {
    if (!Array.isArray(headers)) throw new TypeError('headers must be an array of { name, value }');
    for (let i = 0; i < headers.length; i++) {
      if (typeof headers[i].value === 'string' || typeof headers[i].name !== 'string') {
        return headers.map(({ name, value }) => {
          if (typeof name !== 'string') throw new TypeError('a header name must be a string');
          return { name, value: bytes(value) };
        });
      }
    }
    return headers.slice();
  };

  // The rows of a batch as events (`onBatch` reads its rows inline, a little faster).
  function forRows(input, each) {
    const rows = input.timestamps.length;
    let h = 0;
    for (let row = 0; row < rows; row++) {
      const headers = [];
      for (; h < input.headerEnds[row]; h++) {
        headers.push({ name: decoder.decode(slice(input.headerNames, h)), value: slice(input.headerValues, h) });
      }
      each(row, {
        key: input.hasKey[row] ? slice(input.keys, row) : undefined,
        value: slice(input.values, row),
        timestamp: input.timestamps[row],
        headers,
      });
    }
  }

  // A key as bytes; undefined (none) for null or undefined.
  const keyOf = (k) => (k === undefined || k === null ? undefined : bytes(k));

  // An output event: what `emit` was given, the other fields `event`'s (as `process` left it).
  // Its headers are a copy of the array, as the batch path reads them at the call.
  const output = (event, out) => {
    if (isBytes(out) || typeof out === 'string') {
      return { key: keyOf(event.key), value: bytes(out), timestamp: event.timestamp, headers: event.headers.slice() };
    }
    if (out === null || typeof out !== 'object') {
      throw new TypeError(
        `emit takes a Uint8Array, a string or an event { key, value, timestamp, headers }, not ${out === null ? 'null' : typeof out}`,
      );
    }
    const { key, value, timestamp, headers } = out;
    return {
      key: keyOf(key === undefined ? event.key : key),
      value: value === undefined ? event.value : bytes(value),
      timestamp: timestamp === undefined ? event.timestamp : typeof timestamp === 'bigint' ? timestamp : BigInt(timestamp),
      headers: outHeaders(headers === undefined ? event.headers : headers),
    };
  };

  function stage(process, init) {
    return {
      init(pairs) {
        runInit(pairs, init);
      },
      onEvent(event) {
        const outs = [];
        const emit = (out) => outs.push(output(event, out));
        try {
          process(event, emit);
        } catch (e) {
          rethrow(e);
        }
        return outs;
      },
      onBatch(input) {
        const values = new Column(), keys = new Column(), names = new Column(), hvalues = new Column();
        const hasKey = [], timestamps = [], headerEnds = [], origins = [], failures = [];
        // One `emit` for the whole batch (no closure per row): it reads the current row.
        let event = null;
        let row = 0;
        const emit = (out) => {
          let key, value, timestamp = event.timestamp, headers = event.headers;
          if (isBytes(out) || typeof out === 'string') {
            key = keyOf(event.key);
            value = bytes(out);
          } else ({ key, value, timestamp, headers } = output(event, out));
          values.push(value);
          keys.push(key || EMPTY);
          hasKey.push(key ? 1 : 0);
          timestamps.push(timestamp);
          for (const hd of headers) {
            names.push(encoder.encode(hd.name));
            hvalues.push(hd.value);
          }
          headerEnds.push(names.length);
          origins.push(row);
        };
        const rows = input.timestamps.length;
        let h = 0;
        for (row = 0; row < rows; row++) {
          const headers = [];
          for (; h < input.headerEnds[row]; h++) {
            headers.push({ name: decoder.decode(slice(input.headerNames, h)), value: slice(input.headerValues, h) });
          }
          event = {
            key: input.hasKey[row] ? slice(input.keys, row) : undefined,
            value: slice(input.values, row),
            timestamp: input.timestamps[row],
            headers,
          };
          const outputs = origins.length, headerRows = names.length;
          try {
            process(event, emit);
          } catch (e) {
            if (!(e && e.flowgateFailure) || e.tag === 'fatal') rethrow(e);
            // The row's outputs so far are dropped: a failed row has none.
            values.rollback(outputs);
            keys.rollback(outputs);
            names.rollback(headerRows);
            hvalues.rollback(headerRows);
            hasKey.length = timestamps.length = headerEnds.length = origins.length = outputs;
            failures.push({ row, error: { tag: e.tag, val: e.val } });
          }
        }
        return {
          output: {
            values: values.finish(),
            keys: keys.finish(),
            hasKey: Uint8Array.from(hasKey),
            timestamps: BigInt64Array.from(timestamps),
            headerEnds: Uint32Array.from(headerEnds),
            headerNames: names.finish(),
            headerValues: hvalues.finish(),
          },
          origins: Uint32Array.from(origins),
          failures,
        };
      },
    };
  }

  // The world of a filter: `keep(event)` true keeps the event as it is, false drops it.
  // `keepBatch` reads each row (`forRows`) and collects only the indices of those kept.
  function filter(keep, init) {
    return {
      init(pairs) {
        runInit(pairs, init);
      },
      keep(event) {
        try {
          return !!keep(event);
        } catch (e) {
          rethrow(e);
        }
      },
      keepBatch(input) {
        const kept = [], failures = [];
        forRows(input, (row, event) => {
          try {
            if (keep(event)) kept.push(row);
          } catch (e) {
            if (!(e && e.flowgateFailure) || e.tag === 'fatal') rethrow(e);
            failures.push({ row, error: { tag: e.tag, val: e.val } });
          }
        });
        return { kept: Uint32Array.from(kept), failures };
      },
    };
  }

  // A copy of a JSON accumulator that `add` may change in place.
  const copy = (acc) => {
    if (acc === null || typeof acc !== 'object') return acc;
    if (Array.isArray(acc)) return acc.map(copy);
    const c = {};
    for (const k in acc) c[k] = copy(acc[k]);
    return c;
  };

  // The world of an aggregation over windows. `create()` is the accumulator of an empty
  // window: a JSON value, or a Uint8Array. `add(acc, event)` changes `acc` in place or returns
  // the new accumulator; when it throws, the accumulator stays as it was. `merge(a, b)`
  // (optional; session windows need it) returns one accumulator holding both, or undefined.
  // `finish(acc, key, window)` returns a window's value: a Uint8Array or string as it is, any
  // other value as JSON. JSON accumulators are decoded once per call and encoded after it.
  function aggregator({ init, create, add, merge, finish }) {
    let raw; // true when `create` returns a Uint8Array: accumulators are then passed as they are.
    const fresh = () => {
      const acc = create();
      if (raw === undefined) raw = isBytes(acc);
      return acc;
    };
    const encode = (acc) => {
      if (raw) {
        if (!isBytes(acc)) {
          throw { tag: 'fatal', val: 'an accumulator is not a Uint8Array, as the one `create` returns' };
        }
        return acc;
      }
      let text;
      try {
        text = JSON.stringify(acc);
      } catch (e) {
        text = undefined;
      }
      if (text === undefined) {
        throw {
          tag: 'fatal',
          val: 'an accumulator does not encode as JSON: keep it to objects, arrays, strings, numbers, booleans and null (a BigInt as a string), or return a Uint8Array from `create`',
        };
      }
      return encoder.encode(text);
    };
    const decode = (b) => {
      if (raw) return b;
      try {
        return JSON.parse(decoder.decode(b));
      } catch (e) {
        throw {
          tag: 'fatal',
          val: `an accumulator does not decode as JSON (${e}); was it written by another version of this plugin?`,
        };
      }
    };
    const ready = () => {
      if (raw === undefined) fresh();
    };
    return {
      init(pairs) {
        runInit(pairs, init);
      },
      create() {
        let acc;
        try {
          acc = fresh();
        } catch (e) {
          rethrow(e);
        }
        return encode(acc);
      },
      add(accumulators, input, slots) {
        ready();
        if (slots.length !== input.timestamps.length || slots.some((s) => s >= accumulators.length)) {
          throw { tag: 'fatal', val: 'host sent slots that do not match the batch' };
        }
        const accs = accumulators.map(decode);
        const failures = [];
        forRows(input, (row, event) => {
          const slot = slots[row];
          const acc = raw ? accs[slot].slice() : copy(accs[slot]);
          let next;
          try {
            next = add(acc, event);
          } catch (e) {
            if (!(e && e.flowgateFailure) || e.tag === 'fatal') rethrow(e);
            failures.push({ row, error: { tag: e.tag, val: e.val } });
            return;
          }
          accs[slot] = next === undefined ? acc : next;
        });
        return { accumulators: accs.map(encode), failures };
      },
      merge(a, b) {
        if (!merge) return undefined;
        ready();
        let x, y;
        try {
          x = decode(a);
          y = decode(b);
        } catch (e) {
          return undefined;
        }
        let m;
        try {
          m = merge(x, y);
        } catch (e) {
          rethrow(e);
        }
        return m === undefined ? undefined : encode(m);
      },
      finish(panes) {
        ready();
        return panes.map((p) => {
          let v;
          try {
            v = finish(decode(p.accumulator), p.key, p.window);
          } catch (e) {
            rethrow(e);
          }
          if (isBytes(v)) return v;
          if (typeof v === 'string') return encoder.encode(v);
          let text;
          try {
            text = JSON.stringify(v);
          } catch (e) {
            text = undefined;
          }
          if (text === undefined) throw { tag: 'fatal', val: "a window's value does not encode as JSON" };
          return encoder.encode(text);
        });
      },
    };
  }

  return {
    stage,
    filter,
    aggregator,
    config,
    invalidInput: failure('invalid-input'),
    retryable: failure('retryable'),
    fatal: failure('fatal'),
  };
})();
