// The admin API the dashboard reads (docs/admin-api.md). A 401 means the sign-in cookie is gone:
// the page goes back to the sign-in form.

export async function api(path, options = {}) {
  const r = await fetch(path, { credentials: 'same-origin', ...options });
  if (r.status === 401) {
    location.assign('/ui');
    throw new Error('signed out');
  }
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text };
  }
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

export const enc = encodeURIComponent;

// Counters of one status snapshot, by graph node: `stage:<name>` → {in, out, dead},
// `source:<name>` / `sink:<name>` → {events}.
function counters(status) {
  const c = new Map();
  for (const s of status.stages) {
    const e = s.events || {};
    c.set(`stage:${s.stage}`, { in: e.in || 0, out: e.out || 0, dead: e.dead_letters || 0, errors: e.errors || 0 });
  }
  for (const s of status.sources) c.set(`source:${s.source}`, { events: s.events || 0 });
  for (const s of status.sinks) c.set(`sink:${s.sink}`, { events: s.events || 0 });
  return c;
}

// Per second between two snapshots `dt` seconds apart; a counter that went down (a restart)
// counts as 0.
export function rates(before, after, dt) {
  const a = counters(before);
  const out = new Map();
  for (const [node, now] of counters(after)) {
    const was = a.get(node);
    const r = {};
    for (const [k, v] of Object.entries(now)) r[k] = was && dt > 0 ? Math.max(0, (v - (was[k] || 0)) / dt) : 0;
    out.set(node, r);
  }
  return out;
}

export function fmtRate(r) {
  if (r >= 1e6) return `${(r / 1e6).toFixed(2)} M/s`;
  if (r >= 1e4) return `${(r / 1e3).toFixed(1)} k/s`;
  if (r >= 100) return `${Math.round(r)}/s`;
  return `${r.toFixed(1)}/s`;
}

export function fmtCount(n) {
  return (n ?? 0).toLocaleString('en');
}

// Every topic the pipeline names, with what writes to it and reads it.
export function topics(status) {
  const t = new Set();
  for (const s of status.sources) t.add(s.topic);
  for (const s of status.stages) {
    t.add(s.input);
    for (const o of s.outputs || []) t.add(o);
    if (s.dead_letter_topic) t.add(s.dead_letter_topic);
    if (s.late_output) t.add(s.late_output);
  }
  for (const s of status.sinks) t.add(s.input);
  t.delete(undefined);
  t.delete(null);
  t.delete('');
  return [...t].sort();
}

// Events/s into each topic (what its writers append), from node rates.
export function topicRates(status, r) {
  const into = new Map();
  const add = (t, v) => into.set(t, (into.get(t) || 0) + v);
  for (const s of status.sources) add(s.topic, r?.get(`source:${s.source}`)?.events || 0);
  for (const s of status.stages) {
    const x = r?.get(`stage:${s.stage}`) || {};
    for (const o of s.outputs || []) add(o, x.out || 0);
    if (s.dead_letter_topic) add(s.dead_letter_topic, x.dead || 0);
  }
  return into;
}
