// The dead letters of a dead-letter topic as a table: time, stage, plugin and hash, error kind
// and message, input coordinates, redrive count; a row's content on click; the selected ones
// (or all shown) sent back to the stage that failed them.
import { useEffect, useState } from 'preact/hooks';
import { api, enc } from './api.js';

const LIMIT = 500;

function time(ms) {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

export function DeadLetters({ topics }) {
  const [topic, setTopic] = useState(topics[0] || '');
  const [rows, setRows] = useState([]);
  const [error, setError] = useState(null);
  const [picked, setPicked] = useState(new Set());
  const [shown, setShown] = useState(null);
  const [said, setSaid] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!topic && topics[0]) setTopic(topics[0]);
  }, [topics.join()]);

  const load = async () => {
    if (!topic) return;
    try {
      const d = await api(`/admin/dlq/${enc(topic)}?limit=${LIMIT}`);
      setRows(d.dead_letters);
      setError(null);
    } catch (e) {
      setError(e.message);
    }
  };
  useEffect(() => {
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, [topic]);

  const id = (d) => `${d.partition}:${d.offset}`;
  const toggle = (d) => {
    const next = new Set(picked);
    if (next.has(id(d))) next.delete(id(d));
    else next.add(id(d));
    setPicked(next);
  };
  const redrive = async (which) => {
    setBusy(true);
    setSaid(null);
    try {
      const at = which ? `?at=${enc([...which].join(','))}` : '';
      const d = await api(`/admin/dlq/${enc(topic)}/replay${at}`, { method: 'POST' });
      setSaid({ ok: true, text: `redrive: sent ${d.sent}, skipped ${d.skipped}, sent before ${d.already_sent}` });
      setPicked(new Set());
      load();
    } catch (e) {
      setSaid({ ok: false, text: `redrive refused: ${e.message}` });
    } finally {
      setBusy(false);
    }
  };

  if (topics.length === 0) return <p class="quiet">No stage of this pipeline sends failures to a dead-letter topic.</p>;
  return (
    <div class="dead-letters">
      <div class="bar">
        <label>topic <select value={topic} onChange={(e) => setTopic(e.currentTarget.value)}>{topics.map((t) => <option key={t}>{t}</option>)}</select></label>
        <button onClick={load} data-testid="dlq-refresh">Refresh</button>
        <button disabled={busy || picked.size === 0} onClick={() => redrive(picked)} data-testid="dlq-redrive-selected">Redrive selected ({picked.size})</button>
        <button disabled={busy || rows.length === 0} onClick={() => redrive(null)}>Redrive all</button>
        <span class="quiet">{rows.length}{rows.length >= LIMIT ? '+' : ''} dead letters</span>
        {said && <span class={said.ok ? 'said ok' : 'said bad'} data-testid="dlq-said">{said.text}</span>}
        {error && <span class="said bad">{error}</span>}
      </div>
      <table class="dlq">
        <thead><tr><th></th><th>time</th><th>stage</th><th>plugin</th><th>hash</th><th>kind</th><th>error</th><th>input</th><th>redriven</th><th>at</th></tr></thead>
        <tbody>
          {rows.map((d) => (
            <tr key={id(d)} data-dlq={id(d)} data-value={typeof d.value === 'string' ? d.value : ''} class={shown && id(shown) === id(d) ? 'shown' : ''} onClick={() => setShown(d)}>
              <td onClick={(e) => e.stopPropagation()}><input type="checkbox" checked={picked.has(id(d))} onChange={() => toggle(d)} data-testid={`dlq-pick-${id(d)}`} /></td>
              <td>{time(d.time)}</td><td>{d.stage}</td><td>{d.plugin}</td><td class="mono">{(d.hash || '').slice(0, 12)}</td>
              <td>{d.kind}</td><td class="error">{d.error}</td>
              <td>{d.input.topic}/{d.input.partition}@{d.input.offset}</td><td class="num">{d.redriven}</td><td>{id(d)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown && (
        <div class="content" data-testid="dlq-content">
          <div class="bar"><strong>{topic} {id(shown)}</strong><button onClick={() => setShown(null)}>Close</button></div>
          <pre>{JSON.stringify({ key: shown.key, value: shown.value, error: shown.error, input: shown.input }, null, 2)}</pre>
        </div>
      )}
    </div>
  );
}
