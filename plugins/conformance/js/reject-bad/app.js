// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
function notBad(event) {
  const v = event.value;
  if (v.length >= 3 && v[0] === 98 && v[1] === 97 && v[2] === 100) {
    throw flowgate.invalidInput('bad event');
  }
  return true;
}

export const { init, keep, keepBatch } = flowgate.filter(notBad);
