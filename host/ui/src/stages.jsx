// Per stage: counts and rates, errors by kind, lag per partition, pauses, the live plugin
// version and its history, a deploy (upload) and a roll-back.
import { useState } from 'preact/hooks';
import { api, enc, fmtCount, fmtRate } from './api.js';

function ms(v) {
  return v == null ? '–' : `${v.toFixed(1)} ms`;
}

function Deploy({ stage, onDone }) {
  const [file, setFile] = useState(null);
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState(null);
  const run = async (what, call) => {
    setBusy(true);
    setSaid(null);
    try {
      const d = await call();
      setSaid({ ok: true, text: d.changed === false ? `${what}: that version is live already` : `${what}: version ${d.version} (${d.hash.slice(0, 12)}) is on probation` });
      onDone();
    } catch (e) {
      setSaid({ ok: false, text: `${what} refused: ${e.message}` });
    } finally {
      setBusy(false);
    }
  };
  const deploy = () => run('deploy', () => api(`/admin/stages/${enc(stage)}/plugin`, { method: 'POST', body: file }));
  const rollBack = () => run('roll-back', () => api(`/admin/stages/${enc(stage)}/rollback`, { method: 'POST' }));
  return (
    <div class="deploy">
      <input type="file" accept=".wasm,application/wasm" data-testid={`deploy-file-${stage}`} onChange={(e) => setFile(e.currentTarget.files[0] || null)} />
      <button disabled={!file || busy} onClick={deploy} data-testid={`deploy-${stage}`}>Deploy</button>
      <button disabled={busy} onClick={rollBack} data-testid={`rollback-${stage}`}>Roll back</button>
      {said && <span class={said.ok ? 'said ok' : 'said bad'} data-testid={`deploy-said-${stage}`}>{said.text}</span>}
    </div>
  );
}

function Versions({ versions }) {
  const shown = versions.slice(-6).reverse();
  return (
    <table class="versions">
      <thead><tr><th>version</th><th>hash</th><th>status</th><th>from</th><th>loaded</th><th>live after</th><th>reason</th></tr></thead>
      <tbody>
        {shown.map((v, i) => (
          <tr key={`${v.id}-${i}`} class={`status-${v.status}`}>
            <td>{v.id || '–'}</td><td class="mono">{v.hash.slice(0, 12)}</td><td>{v.status}</td><td>{v.source}</td>
            <td>{v.loaded_at.replace('T', ' ').replace('Z', '')}</td><td>{ms(v.live_after_ms)}</td><td>{v.reason || ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Stages({ status, rates, refresh }) {
  const [open, setOpen] = useState(null);
  return (
    <table class="stages">
      <thead>
        <tr><th>stage</th><th>in</th><th>in/s</th><th>out/s</th><th>errors</th><th>dead letters</th><th>lag by partition</th><th>pauses</th><th>swap pause p99</th><th>live version</th></tr>
      </thead>
      <tbody>
        {status.stages.map((s) => {
          const e = s.events || {};
          const r = rates?.get(`stage:${s.stage}`) || {};
          const kinds = Object.entries(e.errors_by_kind || {});
          const lag = (s.partitions || []).map((p) => `p${p.partition}: ${fmtCount(p.lag)}`).join(', ');
          const expanded = open === s.stage;
          return [
            <tr key={s.stage} data-stage={s.stage}>
              <td><button class="link" onClick={() => setOpen(expanded ? null : s.stage)}>{expanded ? '▾' : '▸'} {s.stage}</button></td>
              <td class="num" data-testid={`in-${s.stage}`}>{fmtCount(e.in)}</td>
              <td class="num">{fmtRate(r.in || 0)}</td>
              <td class="num">{fmtRate(r.out || 0)}</td>
              <td class="num" title={kinds.map(([k, n]) => `${k}: ${n}`).join('\n')}>
                {fmtCount(e.errors)}{kinds.length > 0 && <span class="kinds"> ({kinds.map(([k, n]) => `${k} ${n}`).join(', ')})</span>}
              </td>
              <td class="num">{fmtCount(e.dead_letters)}</td>
              <td>{lag || '–'}</td>
              <td class="num">{fmtCount(e.pauses)}</td>
              <td class="num">{ms(s.swap_pause_ms?.p99)}</td>
              <td data-testid={`live-${s.stage}`} data-version={s.live?.version} data-hash={s.live?.hash}>
                v{s.live?.version} <span class="mono">{(s.live?.hash || '').slice(0, 12)}</span>
                <span class="status">{(s.versions || []).findLast?.((v) => v.id === s.live?.version)?.status || ''}</span>
              </td>
            </tr>,
            <tr key={`${s.stage}-more`} class="more">
              <td colspan="10">
                <Deploy stage={s.stage} onDone={refresh} />
                {expanded && <Versions versions={s.versions || []} />}
              </td>
            </tr>,
          ];
        })}
      </tbody>
    </table>
  );
}

export function Io({ status, rates }) {
  return (
    <table class="io">
      <thead><tr><th>source / sink</th><th>type</th><th>topic</th><th>events</th><th>events/s</th><th>lag</th><th>state</th></tr></thead>
      <tbody>
        {status.sources.map((s) => (
          <tr key={`source:${s.source}`}>
            <td>source {s.source}</td><td>{s.type}</td><td>{s.topic}</td><td class="num">{fmtCount(s.events)}</td>
            <td class="num">{fmtRate(rates?.get(`source:${s.source}`)?.events || 0)}</td>
            <td>{s.lag ? Object.entries(s.lag).map(([p, n]) => `${p}: ${fmtCount(n)}`).join(', ') : '–'}</td>
            <td class={s.down ? 'bad' : ''}>{s.down || 'up'}</td>
          </tr>
        ))}
        {status.sinks.map((s) => (
          <tr key={`sink:${s.sink}`}>
            <td>sink {s.sink}</td><td>{s.type}</td><td>{s.input}</td><td class="num">{fmtCount(s.events)}</td>
            <td class="num">{fmtRate(rates?.get(`sink:${s.sink}`)?.events || 0)}</td>
            <td>–</td>
            <td class={s.down ? 'bad' : ''}>{s.down || 'up'}{s.dead_letters ? `, ${fmtCount(s.dead_letters)} refused` : ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
