// Flowgate plugins in AssemblyScript: write one function over an event, get both entry points.
//
//   import { Event, Emitter, Failure, stage } from "./flowgate";
//   export { init, on_event, on_batch, cabi_realloc } from "./flowgate";
//
//   function process(e: Event, out: Emitter): Failure | null {
//     out.emit(e.value);                        // zero or more outputs: key, time, headers kept
//     out.emitEvent(null, v, e.timestamp, []);  // or whole events: here no key, no headers
//     return null;                              // or invalidInput("why")
//   }
//   stage(process);
//
// A filter (`world = "filter"` in flowgate.toml) registers one function that says whether to
// keep an event, with `filter(keep)`, and exports `cabi_realloc, init, keep, keep_batch`: kept
// events go on from the host's own copy.
//
// An aggregator over windows registers four functions with `aggregator(create, add, merge,
// finish)` and exports `cabi_realloc, init, create, add, merge, finish` instead.
//
// `flowgate plugin build` puts this file next to your plugin.ts and compiles it with asc.
// It implements the `flowgate:plugin` worlds' canonical ABI by hand (`on_event`, `on_batch` and
// `keep_batch` become `on-event`, `on-batch` and `keep-batch` when Flowgate makes the
// component). Argument memory the host allocates is freed after each call; results are freed
// at the next call.

export class Header {
  constructor(public name: string, public value: Uint8Array) {}
}

const EMPTY = new Uint8Array(0);

/**
 * One event: the input of a plugin function. The helper reuses the object (and its `headers`
 * array) for the next event: keep its fields, not the object.
 */
export class Event {
  /** null: no key, which differs from an empty key. */
  key: Uint8Array | null = null;
  value: Uint8Array = EMPTY;
  /** Milliseconds since the Unix epoch. */
  timestamp: i64 = 0;
  /** In order; names may repeat. */
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

/** The stage's config. */
export const config = new Map<string, string>();

let initFn: (() => Failure | null) | null = null;

/**
 * Makes `check` run once the config is set, before any event; a failure it returns keeps the
 * plugin from loading.
 */
export function onInit(check: () => Failure | null): void {
  initFn = check;
}

// --- keyed state (stages with `state = true`) ------------------------------------------------

@external("flowgate:plugin/state@0.1.1", "get")
declare function stateGet(keyPtr: usize, keyLen: usize, ret: usize): void;

@external("flowgate:plugin/state@0.1.1", "put")
declare function statePut(keyPtr: usize, keyLen: usize, valPtr: usize, valLen: usize): void;

@external("flowgate:plugin/state@0.1.1", "delete")
declare function stateDelete(keyPtr: usize, keyLen: usize): void;

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

/** Removes `key`. */
export function deleteState(key: Uint8Array): void {
  stateDelete(key.dataStart, key.length);
}

// --- logging --------------------------------------------------------------------------------

export enum LogLevel { Trace, Debug, Info, Warn, Error }

@external("flowgate:plugin/log@0.1.1", "log")
declare function logLine(level: i32, msgPtr: usize, msgLen: usize): void;

/** Writes one line into the host's logs, tagged with the plugin's name. */
export function log(level: LogLevel, message: string): void {
  const b = String.UTF8.encode(message);
  logLine(level, changetype<usize>(b), b.byteLength);
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

/** Memory for a result, zeroed, 8-aligned, kept until the next call. */
function alloc(size: usize): usize {
  const p = heap.alloc(size + 8);
  resultBlocks.push(p);
  const a = (p + 7) & ~(<usize>7);
  memory.fill(a, 0, size);
  return a;
}

function copyIn(ptr: usize, len: usize): Uint8Array {
  if (len == 0) return EMPTY;
  const a = new Uint8Array(<i32>len);
  memory.copy(a.dataStart, ptr, len);
  return a;
}

function putList(at: usize, ptr: usize, len: usize): void {
  store<u32>(at, <u32>ptr);
  store<u32>(at, <u32>len, 4);
}

/** A result copy of `bytes` as a list at `at`. */
function putBytes(at: usize, bytes: Uint8Array): void {
  const p = alloc(bytes.length);
  memory.copy(p, bytes.dataStart, bytes.length);
  putList(at, p, bytes.length);
}

/** An `error` variant at `at`. */
function putFailure(at: usize, f: Failure): void {
  store<u8>(at, f.kind);
  putBytes(at + 4, Uint8Array.wrap(String.UTF8.encode(f.message)));
}

/** The rows of a batch that failed, for `on-batch` and `keep-batch`. */
class RowFailures {
  rows: u32[] = [];
  failures: Failure[] = [];

  /**
   * Records that `row` failed with `f`. A fatal failure ends the call instead: the error
   * result (`size` bytes, the case byte then the error at 4) is returned, to be returned at
   * once; otherwise 0.
   */
  fail(row: u32, f: Failure, size: usize): usize {
    if (f.kind == 2) {
      endCall();
      const area = alloc(size);
      store<u8>(area, 1);
      putFailure(area + 4, f);
      return area;
    }
    this.rows.push(row);
    this.failures.push(f);
    return 0;
  }

  /** The list<row-error> at `at`. */
  put(at: usize): void {
    const n = this.failures.length;
    const f = alloc(16 * n);
    for (let i = 0; i < n; i++) {
      store<u32>(f + 16 * i, this.rows[i]);
      putFailure(f + 16 * i + 4, this.failures[i]);
    }
    putList(at, f, n);
  }
}

/** list<list<u8>> as a result: one buffer and the records into it. */
function putBytesList(at: usize, items: Uint8Array[]): void {
  let total = 0;
  for (let i = 0; i < items.length; i++) total += items[i].length;
  const data = alloc(total);
  const records = alloc(8 * items.length);
  let n: usize = 0;
  for (let i = 0; i < items.length; i++) {
    const b = items[i];
    memory.copy(data + n, b.dataStart, b.length);
    putList(records + 8 * i, data + n, b.length);
    n += b.length;
  }
  putList(at, records, items.length);
}

// --- init (every world) ---------------------------------------------------------------------

export function init(ptr: usize, n: u32): usize {
  startCall(0);
  for (let i: u32 = 0; i < n; i++) {
    const e = ptr + 16 * i;
    const k = String.UTF8.decodeUnsafe(load<u32>(e), load<u32>(e, 4));
    const v = String.UTF8.decodeUnsafe(load<u32>(e, 8), load<u32>(e, 12));
    config.set(k, v);
  }
  endCall();
  const area = alloc(16);
  if (initFn != null) {
    const f = initFn!();
    if (f != null) {
      store<u8>(area, 1);
      putFailure(area + 4, f);
    }
  }
  return area;
}

// --- events in ------------------------------------------------------------------------------

/** An `event` passed flat (an on-event or keep call's arguments), copied into the reused input. */
function readEvent(
  keyTag: i32, keyPtr: usize, keyLen: u32, valPtr: usize, valLen: u32, ts: i64, hPtr: usize, hLen: u32,
): Event {
  const e = inEvent;
  e.key = keyTag != 0 ? copyIn(keyPtr, keyLen) : null;
  e.value = copyIn(valPtr, valLen);
  e.timestamp = ts;
  e.headers.length = 0;
  for (let i: u32 = 0; i < hLen; i++) {
    const h = hPtr + 16 * i;
    e.headers.push(new Header(String.UTF8.decodeUnsafe(load<u32>(h), load<u32>(h, 4)), copyIn(load<u32>(h, 8), load<u32>(h, 12))));
  }
  return e;
}

// --- batches in -----------------------------------------------------------------------------

/** Bytes `i` of a `bytes-column` record at `col`, copied. */
function cell(col: usize, i: u32): Uint8Array {
  const ends = load<u32>(col, 8);
  const start = i > 0 ? load<u32>(ends + 4 * (i - 1)) : 0;
  return copyIn(load<u32>(col) + start, load<u32>(ends + 4 * i) - start);
}

function cellString(col: usize, i: u32): string {
  const ends = load<u32>(col, 8);
  const start = i > 0 ? load<u32>(ends + 4 * (i - 1)) : 0;
  return String.UTF8.decodeUnsafe(load<u32>(col) + start, load<u32>(ends + 4 * i) - start);
}

const inEvent = new Event();
let nextHeader: u32 = 0;

/** Row `row` of the `batch` record at `b` into the reused input event; rows in order. */
function readRow(b: usize, row: u32): Event {
  const e = inEvent;
  e.value = cell(b, row);
  e.key = load<u8>(load<u32>(b, 32) + row) != 0 ? cell(b + 16, row) : null;
  e.timestamp = load<i64>(load<u32>(b, 40) + 8 * row);
  e.headers.length = 0;
  const end = load<u32>(load<u32>(b, 48) + 4 * row);
  for (; nextHeader < end; nextHeader++) {
    e.headers.push(new Header(cellString(b + 56, nextHeader), cell(b + 72, nextHeader)));
  }
  return e;
}

// --- stage: outputs -------------------------------------------------------------------------

/** Output bytes of a column, reused from call to call: data (grown by doubling) and ends. */
class Column {
  data: Uint8Array = new Uint8Array(1024);
  len: i32 = 0;
  ends: u32[] = [];
  /** Room for n more bytes; where they go. */
  grow(n: i32): usize {
    const need = this.len + n;
    if (need > this.data.length) {
      let cap = this.data.length * 2;
      while (cap < need) cap *= 2;
      const grown = new Uint8Array(cap);
      memory.copy(grown.dataStart, this.data.dataStart, this.len);
      this.data = grown;
    }
    const at = this.data.dataStart + this.len;
    this.len = need;
    this.ends.push(need);
    return at;
  }
  push(b: Uint8Array): void {
    memory.copy(this.grow(b.length), b.dataStart, b.length);
  }
  pushString(s: string): void {
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.grow(String.UTF8.byteLength(s)));
  }
  /** Keeps the first n entries. */
  truncate(n: i32): void {
    this.len = n > 0 ? this.ends[n - 1] : 0;
    this.ends.length = n;
  }
  /** Where entry i starts. */
  start(i: i32): u32 {
    return i > 0 ? this.ends[i - 1] : 0;
  }
  /** Writes the column as a `bytes-column` record at `at` (in place: kept until the next call). */
  put(at: usize): void {
    putList(at, this.data.dataStart, this.len);
    putList(at + 8, this.ends.dataStart, this.ends.length);
  }
}

/** A call's output events in columns. */
class Outputs {
  values: Column = new Column();
  keys: Column = new Column();
  names: Column = new Column();
  hvalues: Column = new Column();
  hasKey: u8[] = [];
  stamps: i64[] = [];
  headerEnds: u32[] = [];
  origins: u32[] = [];

  reset(): void {
    this.truncate(0);
  }
  add(key: Uint8Array | null, value: Uint8Array, timestamp: i64, headers: Header[], origin: u32): void {
    this.values.push(value);
    this.keys.push(key != null ? key : EMPTY);
    this.hasKey.push(key != null ? 1 : 0);
    this.stamps.push(timestamp);
    for (let i = 0; i < headers.length; i++) {
      this.names.pushString(headers[i].name);
      this.hvalues.push(headers[i].value);
    }
    this.headerEnds.push(this.names.ends.length);
    this.origins.push(origin);
  }
  /** Keeps the first n outputs (and their headers): drops a failing row's. */
  truncate(n: i32): void {
    const h = n > 0 ? <i32>this.headerEnds[n - 1] : 0;
    this.values.truncate(n);
    this.keys.truncate(n);
    this.names.truncate(h);
    this.hvalues.truncate(h);
    this.hasKey.length = n;
    this.stamps.length = n;
    this.headerEnds.length = n;
    this.origins.length = n;
  }
}

const outs = new Outputs();

/** Where outputs go. */
export class Emitter {
  input: Event = inEvent;
  row: u32 = 0;
  /** Outputs the event with a new value (key, time and headers kept). */
  emit(value: Uint8Array): void {
    const e = this.input;
    outs.add(e.key, value, e.timestamp, e.headers, this.row);
  }
  /** Outputs a whole event: key (null: none), value, time (ms) and headers, copied as they are. */
  emitEvent(key: Uint8Array | null, value: Uint8Array, timestamp: i64, headers: Header[]): void {
    outs.add(key, value, timestamp, headers, this.row);
  }
}

const emitter = new Emitter();

let processFn: ((e: Event, out: Emitter) => Failure | null) | null = null;

/** Makes `p` the plugin. */
export function stage(p: (e: Event, out: Emitter) => Failure | null): void {
  processFn = p;
}

// --- stage: on-event ------------------------------------------------------------------------

export function on_event(
  keyTag: i32, keyPtr: usize, keyLen: u32, valPtr: usize, valLen: u32, ts: i64, hPtr: usize, hLen: u32,
): usize {
  startCall(1);
  outs.reset();
  const e = readEvent(keyTag, keyPtr, keyLen, valPtr, valLen, ts, hPtr, hLen);
  endCall();
  emitter.row = 0;
  const failure = processFn!(e, emitter);
  const area = alloc(16);
  if (failure != null) {
    store<u8>(area, 1);
    putFailure(area + 4, failure);
    return area;
  }
  // The output events, pointing into the columns.
  const o = outs;
  const nh = o.names.ends.length;
  const headers = alloc(16 * nh);
  for (let i = 0; i < nh; i++) {
    const s = o.names.start(i), t = o.hvalues.start(i);
    putList(headers + 16 * i, o.names.data.dataStart + s, o.names.ends[i] - s);
    putList(headers + 16 * i + 8, o.hvalues.data.dataStart + t, o.hvalues.ends[i] - t);
  }
  const n = o.origins.length;
  const list = alloc(40 * n);
  let h: u32 = 0;
  for (let i = 0; i < n; i++) {
    const r = list + 40 * i;
    store<u8>(r, o.hasKey[i]);
    const k = o.keys.start(i), v = o.values.start(i);
    putList(r + 4, o.keys.data.dataStart + k, o.keys.ends[i] - k);
    putList(r + 12, o.values.data.dataStart + v, o.values.ends[i] - v);
    store<i64>(r, o.stamps[i], 24);
    const end = o.headerEnds[i];
    putList(r + 32, headers + 16 * h, end - h);
    h = end;
  }
  putList(area + 4, list, n);
  return area;
}

// --- stage: on-batch ------------------------------------------------------------------------

export function on_batch(ptr: usize): usize {
  startCall(1024);
  outs.reset();
  const rows = load<u32>(ptr, 44);
  const fails = new RowFailures();
  nextHeader = 0;
  for (let row: u32 = 0; row < rows; row++) {
    const e = readRow(ptr, row);
    const mark = outs.origins.length;
    emitter.row = row;
    const failure = processFn!(e, emitter);
    if (failure != null) {
      const fatal = fails.fail(row, failure, 108);
      if (fatal) return fatal;
      outs.truncate(mark);
    }
  }
  endCall();
  const o = outs;
  const area = alloc(108);
  o.values.put(area + 4);
  o.keys.put(area + 20);
  putList(area + 36, o.hasKey.dataStart, o.hasKey.length);
  putList(area + 44, o.stamps.dataStart, o.stamps.length);
  putList(area + 52, o.headerEnds.dataStart, o.headerEnds.length);
  o.names.put(area + 60);
  o.hvalues.put(area + 76);
  putList(area + 92, o.origins.dataStart, o.origins.length);
  fails.put(area + 100);
  return area;
}

// --- filter ---------------------------------------------------------------------------------

let keepFn: ((e: Event) => bool) | null = null;
let rejected: Failure | null = null;

/**
 * Makes `k` the plugin, in the filter world (`world = "filter"`): `k` returns true to keep the
 * event as it is (it goes on from the host's own copy: nothing is copied out of the plugin),
 * false to drop it, or `reject(..)` to fail it.
 */
export function filter(k: (e: Event) => bool): void {
  keepFn = k;
}

/**
 * From a keep function: fails the event with `f` (`return reject(invalidInput("why"))`: to the
 * dead-letter topic; `reject(fatal(..))`: the stage stops).
 */
export function reject(f: Failure): bool {
  rejected = f;
  return false;
}

/** result<bool, error>: the case byte, then at offset 4 the bool or the error; 16 bytes. */
export function keep(
  keyTag: i32, keyPtr: usize, keyLen: u32, valPtr: usize, valLen: u32, ts: i64, hPtr: usize, hLen: u32,
): usize {
  startCall(1);
  const e = readEvent(keyTag, keyPtr, keyLen, valPtr, valLen, ts, hPtr, hLen);
  endCall();
  rejected = null;
  const kept = keepFn!(e);
  const area = alloc(16);
  if (rejected != null) {
    store<u8>(area, 1);
    putFailure(area + 4, rejected!);
    return area;
  }
  store<u8>(area, kept ? 1 : 0, 4);
  return area;
}

/** The rows kept, reused from call to call: the host has read the last call's by the next one. */
const keptRows: u32[] = [];

/**
 * result<selection, error>: the case byte, then at offset 4 the selection (kept at 4, failures
 * at 12) or the error; 20 bytes.
 */
export function keep_batch(ptr: usize): usize {
  startCall(1024);
  const rows = load<u32>(ptr, 44);
  keptRows.length = 0;
  const fails = new RowFailures();
  nextHeader = 0;
  for (let row: u32 = 0; row < rows; row++) {
    const e = readRow(ptr, row);
    rejected = null;
    const kept = keepFn!(e);
    if (rejected != null) {
      const fatal = fails.fail(row, rejected!, 20);
      if (fatal) return fatal;
      continue;
    }
    if (kept) keptRows.push(row);
  }
  endCall();
  const area = alloc(20);
  putList(area + 4, keptRows.dataStart, keptRows.length);
  fails.put(area + 12);
  return area;
}

// --- aggregator -----------------------------------------------------------------------------

/** A window whose result is due: the key it groups and its bounds. */
export class Pane {
  /** null: the events have no key, which differs from an empty key. */
  key: Uint8Array | null = null;
  /** First millisecond in the window. */
  start: i64 = 0;
  /** First millisecond after the window. */
  end: i64 = 0;
}

let aggCreate: (() => Uint8Array) | null = null;
let aggAdd: ((acc: Uint8Array, e: Event) => Uint8Array) | null = null;
let aggMerge: ((a: Uint8Array, b: Uint8Array) => Uint8Array | null) | null = null;
let aggFinish: ((acc: Uint8Array, p: Pane) => Uint8Array) | null = null;

let failed: Failure | null = null;

/** From `add` or `finish`: fails the row (or, fatal or from finish, the call) with `f`. */
export function fail(f: Failure): Uint8Array {
  failed = f;
  return EMPTY;
}

/**
 * Makes the plugin an aggregation over windows, on accumulators in an encoding of your own:
 * `create` returns the accumulator of an empty window; `add` folds one event into `acc` (a
 * copy) and returns the accumulator (`acc` changed in place, or new bytes), or
 * `fail(invalidInput("why"))`: the accumulator then stays as it was; `merge` returns one
 * accumulator holding what `a` and `b` hold, or null when they cannot merge (pass null for
 * no merge: then session windows cannot run); `finish` returns the output value of a window,
 * or `fail(..)` to fail the call.
 */
export function aggregator(
  create: () => Uint8Array,
  add: (acc: Uint8Array, e: Event) => Uint8Array,
  merge: ((a: Uint8Array, b: Uint8Array) => Uint8Array | null) | null,
  finish: (acc: Uint8Array, p: Pane) => Uint8Array,
): void {
  aggCreate = create;
  aggAdd = add;
  aggMerge = merge;
  aggFinish = finish;
}

export function create(): usize {
  startCall(0);
  const area = alloc(8);
  putBytes(area, aggCreate!());
  return area;
}

function failCall(area: usize, f: Failure): usize {
  endCall();
  store<u8>(area, 1);
  putFailure(area + 4, f);
  return area;
}

export function add(ptr: usize): usize {
  startCall(1024);
  const area = alloc(20);
  const n = load<u32>(ptr, 4);
  const b = ptr + 8;
  const rows = load<u32>(b, 44);
  const slots = load<u32>(ptr, 96);
  const mismatch = "host sent slots that do not match the batch";
  if (load<u32>(ptr, 100) != rows) return failCall(area, fatal(mismatch));
  const accs = new Array<Uint8Array>(n);
  for (let i: u32 = 0; i < n; i++) {
    const a = load<u32>(ptr) + 8 * i;
    accs[i] = copyIn(load<u32>(a), load<u32>(a, 4));
  }
  const failRows: u32[] = [];
  const failures: Failure[] = [];
  let spare = EMPTY;
  nextHeader = 0;
  for (let row: u32 = 0; row < rows; row++) {
    const s = load<u32>(slots + 4 * row);
    if (s >= n) return failCall(area, fatal(mismatch));
    const e = readRow(b, row);
    // add gets a copy; the old accumulator becomes the next copy's buffer.
    const old = accs[s];
    if (spare.length != old.length) spare = new Uint8Array(old.length);
    memory.copy(spare.dataStart, old.dataStart, old.length);
    failed = null;
    const got = aggAdd!(spare, e);
    if (failed != null) {
      const f = failed!;
      if (f.kind == 2) return failCall(area, f);
      failRows.push(row);
      failures.push(f);
      continue;
    }
    accs[s] = got;
    if (got.buffer == spare.buffer) spare = old;
  }
  endCall();
  putBytesList(area + 4, accs);
  const f = alloc(16 * failures.length);
  for (let i = 0; i < failures.length; i++) {
    store<u32>(f + 16 * i, failRows[i]);
    putFailure(f + 16 * i + 4, failures[i]);
  }
  putList(area + 12, f, failures.length);
  return area;
}

export function merge(aPtr: usize, aLen: u32, bPtr: usize, bLen: u32): usize {
  startCall(0);
  const area = alloc(12);
  const a = copyIn(aPtr, aLen), b = copyIn(bPtr, bLen);
  endCall();
  if (aggMerge != null) {
    const m = aggMerge!(a, b);
    if (m != null) {
      store<u8>(area, 1);
      putBytes(area + 4, m);
    }
  }
  return area;
}

export function finish(ptr: usize, n: u32): usize {
  startCall(0);
  const area = alloc(16);
  const values = new Array<Uint8Array>(n);
  const p = new Pane();
  for (let i: u32 = 0; i < n; i++) {
    const r = ptr + 40 * i;
    p.key = load<u8>(r) != 0 ? copyIn(load<u32>(r, 4), load<u32>(r, 8)) : null;
    p.start = load<i64>(r, 16);
    p.end = load<i64>(r, 24);
    failed = null;
    const v = aggFinish!(copyIn(load<u32>(r, 32), load<u32>(r, 36)), p);
    if (failed != null) return failCall(area, failed!);
    values[i] = v;
  }
  endCall();
  putBytesList(area + 4, values);
  return area;
}
