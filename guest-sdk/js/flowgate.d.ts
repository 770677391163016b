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
  headers: FlowgateHeader[];
}

/** Outputs the event with a new value (key, time and headers kept). */
type FlowgateEmit = (value: Uint8Array | string) => void;

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

declare const flowgate: {
  stage(
    process: (event: FlowgateEvent, emit: FlowgateEmit) => void,
    init?: (config: Map<string, string>) => void,
  ): FlowgateWorld;
  config: Map<string, string>;
  /** Fails one event: it goes to the dead-letter topic. */
  invalidInput(message: string): FlowgateFailure;
  /** A passing problem: the host may retry the event. */
  retryable(message: string): FlowgateFailure;
  /** The plugin cannot go on: the stage stops. */
  fatal(message: string): FlowgateFailure;
};

declare module 'flowgate:plugin/state@0.1.0' {
  export function get(key: Uint8Array): Uint8Array | undefined;
  export function put(key: Uint8Array, value: Uint8Array): void;
  function remove(key: Uint8Array): void;
  export { remove as delete };
  export function scan(start: Uint8Array, end: Uint8Array | undefined, limit: number): [Uint8Array, Uint8Array][];
}
