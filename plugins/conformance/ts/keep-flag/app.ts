// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object".
const text = new TextDecoder();

function process(event: FlowgateEvent, emit: FlowgateEmit): void {
  let value: unknown;
  try {
    value = JSON.parse(text.decode(event.value));
  } catch {
    value = undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw flowgate.invalidInput('not a JSON object');
  }
  if ((value as Record<string, unknown>).keep === true) emit(event.value);
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
