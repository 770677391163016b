// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object".
// JSON is UTF-8: a value that is not (fatal) or starts with a byte-order mark (kept) is not JSON.
const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function keepFlag(event) {
  let value;
  try {
    value = JSON.parse(text.decode(event.value));
  } catch {
    value = undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw flowgate.invalidInput('not a JSON object');
  }
  return value.keep === true;
}

export const { init, keep, keepBatch } = flowgate.filter(keepFlag);
