// Flowgate plugins in AssemblyScript: write one function over an event, get both entry points.
//
//   import { Event, Emitter, Failure, stage } from "./flowgate";
//   export { init, on_event, on_batch, cabi_realloc } from "./flowgate";
//
//   function process(e: Event, out: Emitter): Failure | null {
//     out.emit(e.value);                 // zero, one or more outputs
//     return null;                       // or invalidInput("why")
//   }
//   stage(process);
//
// `flowgate plugin build` puts this file next to your plugin.ts and compiles it with asc.
// It implements the `flowgate:plugin/stage` world's canonical ABI by hand (`on_event` and
// `on_batch` become `on-event` and `on-batch` when Flowgate makes the component). Argument
// memory the host allocates is freed after each call; results are freed at the next call.

export class Header {
  constructor(public name: string, public value: Uint8Array) {}
}

export class Event {
  key: Uint8Array | null = null;
  value: Uint8Array = new Uint8Array(0);
  timestamp: i64 = 0;
  headers: Header[] = [];
}

export class Failure {
  constructor(public kind: u8, public message: string) {}
}

/** Fails the event for good: it goes to the dead-letter topic. */
export function invalidInput(message: string): Failure {
  return new Failure(1, message);
}

/** Asks the host to retry the event later. */
export function retryable(message: string): Failure {
  return new Failure(0, message);
}

/** Stops the stage. */
export function fatal(message: string): Failure {
  return new Failure(2, message);
}

/** Where outputs go. */
export class Emitter {
  values: Uint8Array[] = [];
  /** Outputs the event with a new value (key, time and headers kept). */
  emit(value: Uint8Array): void {
    this.values.push(value);
  }
}

/** The stage's config. */
export const config = new Map<string, string>();

let processFn: ((e: Event, out: Emitter) => Failure | null) | null = null;

/** Makes `p` the plugin. */
export function stage(p: (e: Event, out: Emitter) => Failure | null): void {
  processFn = p;
}

// --- keyed state (stages with `state = true`) ------------------------------------------------

@external("flowgate:plugin/state@0.1.0", "get")
declare function stateGet(keyPtr: usize, keyLen: usize, ret: usize): void;

@external("flowgate:plugin/state@0.1.0", "put")
declare function statePut(keyPtr: usize, keyLen: usize, valPtr: usize, valLen: usize): void;

/** The value stored under `key`, or null. */
export function getState(key: Uint8Array): Uint8Array | null {
  const ret = heap.alloc(12);
  stateGet(key.dataStart, key.length, ret);
  let out: Uint8Array | null = null;
  if (load<u8>(ret) != 0) {
    out = copyIn(load<u32>(ret, 4), load<u32>(ret, 8));
  }
  heap.free(ret);
  return out;
}

/** Stores `value` under `key`. */
export function putState(key: Uint8Array, value: Uint8Array): void {
  statePut(key.dataStart, key.length, value.dataStart, value.length);
}

// --- memory ---------------------------------------------------------------------------------

const argBlocks = new Array<usize>();
const resultBlocks = new Array<usize>();

export function cabi_realloc(old: usize, oldSize: usize, align: usize, size: usize): usize {
  if (old != 0) {
    const p = heap.realloc(old, size);
    for (let i = 0; i < argBlocks.length; i++) {
      if (argBlocks[i] == old) argBlocks[i] = p;
    }
    return p;
  }
  const p = heap.alloc(size > 0 ? size : 1);
  argBlocks.push(p);
  return p;
}

function endCall(): void {
  for (let i = 0; i < argBlocks.length; i++) heap.free(argBlocks[i]);
  argBlocks.length = 0;
}

let eventsSinceCollect = 0;

/**
 * Frees the last call's results; collects garbage (the `minimal` runtime collects only when
 * told, and an entry point's start is a point with no object on the stack) before every batch
 * and every 1,024 events.
 */
function startCall(events: i32): void {
  for (let i = 0; i < resultBlocks.length; i++) heap.free(resultBlocks[i]);
  resultBlocks.length = 0;
  eventsSinceCollect += events;
  if (eventsSinceCollect >= 1024) {
    __collect();
    eventsSinceCollect = 0;
  }
}

/** Memory for a result, kept until the next call. */
function alloc(size: usize): usize {
  const p = heap.alloc(size > 0 ? size : 1);
  memory.fill(p, 0, size);
  resultBlocks.push(p);
  return p;
}

function copyIn(ptr: usize, len: usize): Uint8Array {
  const a = new Uint8Array(<i32>len);
  if (len > 0) memory.copy(a.dataStart, ptr, len);
  return a;
}

/** A result copy of `bytes`; its address. */
function copyOut(bytes: Uint8Array): usize {
  const p = alloc(bytes.length);
  if (bytes.length > 0) memory.copy(p, bytes.dataStart, bytes.length);
  return p;
}

function putBytes(at: usize, bytes: Uint8Array): void {
  store<u32>(at, <u32>copyOut(bytes));
  store<u32>(at, bytes.length, 4);
}

function putFailure(at: usize, f: Failure): void {
  store<u8>(at, f.kind);
  putBytes(at + 4, Uint8Array.wrap(String.UTF8.encode(f.message)));
}

// --- init -----------------------------------------------------------------------------------

export function init(ptr: usize, n: u32): usize {
  startCall(0);
  for (let i: u32 = 0; i < n; i++) {
    const e = ptr + 16 * i;
    const k = String.UTF8.decodeUnsafe(load<u32>(e), load<u32>(e, 4));
    const v = String.UTF8.decodeUnsafe(load<u32>(e, 8), load<u32>(e, 12));
    config.set(k, v);
  }
  endCall();
  return alloc(16);
}

// --- on-event -------------------------------------------------------------------------------

export function on_event(
  keyTag: i32, keyPtr: usize, keyLen: u32, valPtr: usize, valLen: u32, ts: i64, hPtr: usize, hLen: u32,
): usize {
  startCall(1);
  const e = new Event();
  if (keyTag != 0) e.key = copyIn(keyPtr, keyLen);
  e.value = copyIn(valPtr, valLen);
  e.timestamp = ts;
  for (let i: u32 = 0; i < hLen; i++) {
    const h = hPtr + 16 * i;
    e.headers.push(new Header(String.UTF8.decodeUnsafe(load<u32>(h), load<u32>(h, 4)), copyIn(load<u32>(h, 8), load<u32>(h, 12))));
  }
  endCall();
  const out = new Emitter();
  const failure = processFn!(e, out);
  const area = alloc(16);
  if (failure != null) {
    store<u8>(area, 1);
    putFailure(area + 4, failure);
    return area;
  }
  const headers = alloc(16 * e.headers.length);
  for (let i = 0; i < e.headers.length; i++) {
    putBytes(headers + 16 * i, Uint8Array.wrap(String.UTF8.encode(e.headers[i].name)));
    putBytes(headers + 16 * i + 8, e.headers[i].value);
  }
  const n = out.values.length;
  const events = alloc(40 * n + 8);
  const list = (events + 7) & ~(<usize>7);
  for (let i = 0; i < n; i++) {
    const o = list + 40 * i;
    if (e.key != null) {
      store<u8>(o, 1);
      putBytes(o + 4, e.key!);
    }
    putBytes(o + 12, out.values[i]);
    store<i64>(o, e.timestamp, 24);
    store<u32>(o, <u32>headers, 32);
    store<u32>(o, e.headers.length, 36);
  }
  store<u32>(area, <u32>list, 4);
  store<u32>(area, n, 8);
  return area;
}

// --- on-batch -------------------------------------------------------------------------------

function cell(data: usize, ends: usize, i: u32): Uint8Array {
  const start = i > 0 ? load<u32>(ends + 4 * (i - 1)) : 0;
  return copyIn(data + start, load<u32>(ends + 4 * i) - start);
}

/** Output bytes of a column: data (grown by doubling, copied in blocks) and ends. */
class Column {
  data: Uint8Array = new Uint8Array(1024);
  len: i32 = 0;
  ends: u32[] = [];
  push(b: Uint8Array): void {
    const need = this.len + b.length;
    if (need > this.data.length) {
      let cap = this.data.length * 2;
      while (cap < need) cap *= 2;
      const grown = new Uint8Array(cap);
      memory.copy(grown.dataStart, this.data.dataStart, this.len);
      this.data = grown;
    }
    memory.copy(this.data.dataStart + this.len, b.dataStart, b.length);
    this.len = need;
    this.ends.push(need);
  }
  put(at: usize): void {
    const d = alloc(this.len);
    memory.copy(d, this.data.dataStart, this.len);
    store<u32>(at, <u32>d);
    store<u32>(at, this.len, 4);
    putU32s(at + 8, this.ends);
  }
}

function putU32s(at: usize, v: u32[]): void {
  const p = alloc(4 * v.length);
  for (let i = 0; i < v.length; i++) store<u32>(p + 4 * i, v[i]);
  store<u32>(at, <u32>p);
  store<u32>(at, v.length, 4);
}

export function on_batch(ptr: usize): usize {
  startCall(1024);
  const rows = load<u32>(ptr, 44);
  const values = new Column(), keys = new Column(), names = new Column(), hvalues = new Column();
  const hasKey: u8[] = [], stamps: i64[] = [], headerEnds: u32[] = [], origins: u32[] = [];
  const failRows: u32[] = [];
  const failures: Failure[] = [];
  let h: u32 = 0;
  for (let row: u32 = 0; row < rows; row++) {
    const e = new Event();
    e.value = cell(load<u32>(ptr), load<u32>(ptr, 8), row);
    if (load<u8>(load<u32>(ptr, 32) + row) != 0) e.key = cell(load<u32>(ptr, 16), load<u32>(ptr, 24), row);
    e.timestamp = load<i64>(load<u32>(ptr, 40) + 8 * row);
    const end = load<u32>(load<u32>(ptr, 48) + 4 * row);
    for (; h < end; h++) {
      const name = cell(load<u32>(ptr, 56), load<u32>(ptr, 64), h);
      e.headers.push(new Header(String.UTF8.decode(name.buffer), cell(load<u32>(ptr, 72), load<u32>(ptr, 80), h)));
    }
    const out = new Emitter();
    const failure = processFn!(e, out);
    if (failure != null) {
      if (failure.kind == 2) {
        endCall();
        const area = alloc(108);
        store<u8>(area, 1);
        putFailure(area + 4, failure);
        return area;
      }
      failRows.push(row);
      failures.push(failure);
      continue;
    }
    for (let i = 0; i < out.values.length; i++) {
      values.push(out.values[i]);
      keys.push(e.key != null ? e.key! : new Uint8Array(0));
      hasKey.push(e.key != null ? 1 : 0);
      stamps.push(e.timestamp);
      for (let j = 0; j < e.headers.length; j++) {
        names.push(Uint8Array.wrap(String.UTF8.encode(e.headers[j].name)));
        hvalues.push(e.headers[j].value);
      }
      headerEnds.push(names.ends.length);
      origins.push(row);
    }
  }
  endCall();
  const area = alloc(108);
  values.put(area + 4);
  keys.put(area + 20);
  const hk = alloc(hasKey.length);
  for (let i = 0; i < hasKey.length; i++) store<u8>(hk + i, hasKey[i]);
  store<u32>(area, <u32>hk, 36);
  store<u32>(area, hasKey.length, 40);
  const ts = alloc(8 * stamps.length + 8);
  const tsAligned = (ts + 7) & ~(<usize>7);
  for (let i = 0; i < stamps.length; i++) store<i64>(tsAligned + 8 * i, stamps[i]);
  store<u32>(area, <u32>tsAligned, 44);
  store<u32>(area, stamps.length, 48);
  putU32s(area + 52, headerEnds);
  names.put(area + 60);
  hvalues.put(area + 76);
  putU32s(area + 92, origins);
  const f = alloc(16 * failures.length);
  for (let i = 0; i < failures.length; i++) {
    store<u32>(f + 16 * i, failRows[i]);
    putFailure(f + 16 * i + 4, failures[i]);
  }
  store<u32>(area, <u32>f, 100);
  store<u32>(area, failures.length, 104);
  return area;
}
