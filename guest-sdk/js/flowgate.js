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
// `value` (Uint8Array), `timestamp` (BigInt, ms) and `headers` ([{name, value}]); `emit(value)`
// outputs the event with a new value (key, time and headers kept). `on-batch` runs the same
// function on each row, so both give the same output. Throw `flowgate.invalidInput("why")` to
// fail one event (to the dead-letter topic), `flowgate.retryable(..)` to have it retried,
// `flowgate.fatal(..)` to stop the stage. `flowgate.config` is the stage's config (a Map).
const flowgate = (() => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const failure = (tag) => (message) => ({ flowgateFailure: true, tag, val: String(message) });
  const config = new Map();

  const bytes = (v) => (typeof v === 'string' ? encoder.encode(v) : v);

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

  // Rethrows what `process` threw: a Flowgate failure as the WIT error, anything else as it is.
  const rethrow = (e) => {
    throw e && e.flowgateFailure ? { tag: e.tag, val: e.val } : e;
  };

  function stage(process, init) {
    return {
      init(pairs) {
        config.clear();
        for (const [k, v] of pairs) config.set(k, v);
        if (init) {
          try {
            init(config);
          } catch (e) {
            throw { tag: 'fatal', val: e && e.flowgateFailure ? e.val : String(e) };
          }
        }
      },
      onEvent(event) {
        const outs = [];
        const emit = (value) =>
          outs.push({ key: event.key, value: bytes(value), timestamp: event.timestamp, headers: event.headers });
        try {
          process(event, emit);
        } catch (e) {
          rethrow(e);
        }
        return outs;
      },
      onBatch(input) {
        const rows = input.timestamps.length;
        const values = new Column(), keys = new Column(), names = new Column(), hvalues = new Column();
        const hasKey = [], timestamps = [], headerEnds = [], origins = [], failures = [];
        // One `emit` for the whole batch (no closure per row): it reads the current row.
        let event = null;
        let row = 0;
        const emit = (value) => {
          values.push(bytes(value));
          keys.push(event.key || EMPTY);
          hasKey.push(event.key ? 1 : 0);
          timestamps.push(event.timestamp);
          for (const hd of event.headers) {
            names.push(encoder.encode(hd.name));
            hvalues.push(hd.value);
          }
          headerEnds.push(names.length);
          origins.push(row);
        };
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

  return {
    stage,
    config,
    invalidInput: failure('invalid-input'),
    retryable: failure('retryable'),
    fatal: failure('fatal'),
  };
})();
