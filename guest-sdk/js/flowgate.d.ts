// Types of the Flowgate JavaScript helper and of the host imports, for TypeScript plugins.
// `flowgate plugin build` writes this file next to the sources it compiles.

interface FlowgateHeader {
  name: string;
  value: Uint8Array;
}

interface FlowgateEvent {
  /** Partitioning key; undefined when the event has none. */
  key: Uint8Array | undefined;
  /** Payload bytes. */
  value: Uint8Array;
  /** Event time, milliseconds since the Unix epoch. */
  timestamp: bigint;
  /** Headers in order; names may repeat. */
  headers: FlowgateHeader[];
}

/** A header of an output event; a string value is written as UTF-8. */
interface FlowgateHeaderOut {
  name: string;
  value: Uint8Array | string;
}

/**
 * An output event for `emit`. A field left out (or undefined) is the input's; `key: null` means
 * no key (an empty key is a key). Strings are written as UTF-8.
 */
interface FlowgateOutput {
  key?: Uint8Array | string | null;
  value?: Uint8Array | string;
  timestamp?: bigint | number;
  headers?: FlowgateHeaderOut[];
}

/**
 * Outputs an event: a value alone keeps the input's key, time and headers; an object sets the
 * fields it has (so `emit(event)` outputs an event as it is).
 */
type FlowgateEmit = (out: Uint8Array | string | FlowgateOutput) => void;

interface FlowgateFailure {
  flowgateFailure: true;
  tag: 'invalid-input' | 'retryable' | 'fatal';
  val: string;
}

interface FlowgateWorld {
  init(config: [string, string][]): void;
  onEvent(event: FlowgateEvent): FlowgateEvent[];
  onBatch(input: unknown): unknown;
}

interface FlowgateFilterWorld {
  init(config: [string, string][]): void;
  keep(event: FlowgateEvent): boolean;
  keepBatch(input: unknown): unknown;
}

/** A value JSON can hold. */
type FlowgateJson = null | boolean | number | string | FlowgateJson[] | { [key: string]: FlowgateJson };

/** A window's bounds, milliseconds since the Unix epoch (`end` exclusive). */
interface FlowgateWindow {
  start: bigint;
  end: bigint;
}

/** An aggregation over windows, around an accumulator `A` of your own. */
interface FlowgateAggregator<A> {
  /** Checks the config once, at load time: a throw keeps the plugin from loading. */
  init?(config: Map<string, string>): void;
  /** The accumulator of an empty window. */
  create(): A;
  /**
   * Adds an event: changes `acc` in place or returns the new accumulator. When it throws,
   * the accumulator stays as it was.
   */
  add(acc: A, event: FlowgateEvent): A | void;
  /** One accumulator holding both (session windows need it), or undefined when it cannot. */
  merge?(a: A, b: A): A | undefined;
  /** A window's value: a Uint8Array or string as it is, any other value as JSON. */
  finish(acc: A, key: Uint8Array | undefined, window: FlowgateWindow): unknown;
}

/** `T` with every part JSON cannot hold (a BigInt, a function, undefined) as `never`. */
type FlowgateAsJson<T> = T extends string | number | boolean | null
  ? T
  : T extends undefined | bigint | symbol | ((...args: never[]) => unknown)
    ? never
    : T extends readonly (infer U)[]
      ? FlowgateAsJson<U>[]
      : { [K in keyof T]: FlowgateAsJson<T[K]> };

/** Refuses (at `create`) an accumulator that is neither JSON nor a Uint8Array, such as a BigInt. */
type FlowgateEncodable<A> = [A] extends [Uint8Array]
  ? unknown
  : [A] extends [FlowgateAsJson<A>]
    ? unknown
    : { create(): FlowgateJson | Uint8Array };

interface FlowgateAggregatorWorld {
  init(config: [string, string][]): void;
  create(): Uint8Array;
  add(accumulators: Uint8Array[], input: unknown, slots: Uint32Array): unknown;
  merge(a: Uint8Array, b: Uint8Array): Uint8Array | undefined;
  finish(panes: unknown[]): Uint8Array[];
}

declare const flowgate: {
  stage(
    process: (event: FlowgateEvent, emit: FlowgateEmit) => void,
    init?: (config: Map<string, string>) => void,
  ): FlowgateWorld;
  /**
   * The world of a filter (`world = "filter"`): `keep` returns true to keep the event as it is,
   * false to drop it; a throw fails it. Only the indices of the rows kept leave the plugin.
   */
  filter(
    keep: (event: FlowgateEvent) => boolean,
    init?: (config: Map<string, string>) => void,
  ): FlowgateFilterWorld;
  /** The world of an aggregator; its accumulators are JSON, or bytes when `create` returns a Uint8Array. */
  aggregator<A>(aggregation: FlowgateAggregator<A> & FlowgateEncodable<A>): FlowgateAggregatorWorld;
  config: Map<string, string>;
  /** Fails one event: it goes to the dead-letter topic. */
  invalidInput(message: string): FlowgateFailure;
  /** A passing problem: the host may retry the event. */
  retryable(message: string): FlowgateFailure;
  /** The plugin cannot go on: the stage stops. */
  fatal(message: string): FlowgateFailure;
};

declare module 'flowgate:plugin/state@0.1.1' {
  export function get(key: Uint8Array): Uint8Array | undefined;
  export function put(key: Uint8Array, value: Uint8Array): void;
  function remove(key: Uint8Array): void;
  export { remove as delete };
  export function scan(start: Uint8Array, end: Uint8Array | undefined, limit: number): [Uint8Array, Uint8Array][];
}

declare module 'flowgate:plugin/log@0.1.1' {
  /** Writes one line into the host's logs, tagged with the plugin's name. */
  export function log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string): void;
}

// Sources written against contract 0.1.0 import the same interfaces by their old version: the
// build takes them as 0.1.1, which only adds to 0.1.0.
declare module 'flowgate:plugin/state@0.1.0' {
  export * from 'flowgate:plugin/state@0.1.1';
}

declare module 'flowgate:plugin/log@0.1.0' {
  export * from 'flowgate:plugin/log@0.1.1';
}
