// Conformance: setting a header. The output has the input's headers in order, then `route` =
// `json` when the value starts with `{` and `text` otherwise (also when it is empty). Key, value
// and time kept.
function process(event, emit) {
  const route = event.value[0] === 123 ? 'json' : 'text'; // '{'
  emit({ headers: [...event.headers, { name: 'route', value: route }] });
}

export const { init, onEvent, onBatch } = flowgate.stage(process);
