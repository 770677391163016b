// Conformance: a header added to the input's. The output's headers are the input's, in order,
// then `route`: `json` when the value starts with `{`, else `text` (also for an empty value).
// Key, value and time kept.
import { Emitter, Event, Failure, Header, stage } from "./flowgate";
export { cabi_realloc, init, on_batch, on_event } from "./flowgate";

const JSON_TAG = Uint8Array.wrap(String.UTF8.encode("json"));
const TEXT_TAG = Uint8Array.wrap(String.UTF8.encode("text"));

function process(e: Event, out: Emitter): Failure | null {
  const v = e.value;
  const headers = e.headers.slice();
  headers.push(new Header("route", v.length > 0 && v[0] == 123 ? JSON_TAG : TEXT_TAG));
  out.emitEvent(e.key, v, e.timestamp, headers);
  return null;
}

stage(process);
