// The operator's dashboard: polls /admin/status once a second and draws the pipeline from it.
import 'uplot/dist/uPlot.min.css';
import './app.css';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, fmtCount, rates as ratesOf, topicRates, topics } from './api.js';
import { Graph } from './graph.jsx';
import { RateChart } from './chart.jsx';
import { Io, Stages } from './stages.jsx';
import { DeadLetters } from './deadletters.jsx';
import { Tap } from './tap.jsx';

const POLL_MS = 1000;
const KEEP_POINTS = 300;

function useStatus() {
  const [view, setView] = useState({ status: null, rates: null, error: null, history: { t: [], series: new Map() }, at: null });
  // The poll loop, its last snapshot and the chart's history outlive a refresh.
  const loop = useRef({ prev: null, timer: null, history: { t: [], series: new Map() }, stopped: false });
  const poll = async () => {
    const l = loop.current;
    clearTimeout(l.timer);
    try {
      const status = await api('/admin/status');
      const now = Date.now() / 1000;
      const dt = l.prev ? now - l.prev.at : 0;
      const r = l.prev ? ratesOf(l.prev.status, status, dt) : null;
      l.prev = { status, at: now };
      const h = l.history;
      // A look asked for between two polls (after a deploy) updates the page, not the chart.
      if (r && dt >= POLL_MS / 2000) {
        h.t.push(now);
        const names = status.stages.map((s) => s.stage);
        for (const n of names) {
          if (!h.series.has(n)) h.series.set(n, h.t.slice(0, -1).map(() => null));
        }
        for (const [n, points] of h.series) points.push(names.includes(n) ? r.get(`stage:${n}`)?.in ?? 0 : null);
        if (h.t.length > KEEP_POINTS) {
          h.t.shift();
          for (const points of h.series.values()) points.shift();
        }
      }
      if (!l.stopped) setView({ status, rates: r, error: null, history: { t: h.t, series: h.series }, at: new Date() });
    } catch (e) {
      if (!l.stopped) setView((v) => ({ ...v, error: e.message }));
    }
    if (!l.stopped) {
      clearTimeout(l.timer);
      l.timer = setTimeout(poll, POLL_MS);
    }
  };
  useEffect(() => {
    poll();
    return () => {
      loop.current.stopped = true;
      clearTimeout(loop.current.timer);
    };
  }, []);
  return [view, poll];
}

function Panel({ title, children, id }) {
  return (
    <section class="panel" id={id}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

function App() {
  const [{ status, rates, error, history, at }, refresh] = useStatus();
  if (!status) return <p class="loading">{error ? `The admin API does not answer: ${error}` : 'Loading the pipeline…'}</p>;
  const all = topics(status);
  const dlqTopics = [...new Set(status.stages.map((s) => s.dead_letter_topic).filter(Boolean))];
  const totals = status.stages.reduce((a, s) => ({ errors: a.errors + (s.events?.errors || 0), dead: a.dead + (s.events?.dead_letters || 0) }), { errors: 0, dead: 0 });
  return (
    <main>
      <header>
        <h1>{status.pipeline}</h1>
        <span class="quiet">{status.file}</span>
        <span class="quiet">{status.stages.length} stages, {status.sources.length} sources, {status.sinks.length} sinks</span>
        {status.processes?.length > 1 && <span class="quiet">{status.processes.length} processes</span>}
        <span class={totals.errors ? 'bad' : 'quiet'}>{fmtCount(totals.errors)} errors, {fmtCount(totals.dead)} dead letters</span>
        <span class={error ? 'said bad' : 'quiet'} data-testid="updated">{error ? `not updating: ${error}` : `updated ${at.toLocaleTimeString('en-GB')}`}</span>
      </header>
      <Panel title="Pipeline" id="graph">
        <Graph status={status} rates={rates} />
      </Panel>
      <Panel title="Events in per second, by stage" id="chart">
        <RateChart history={history} />
      </Panel>
      <Panel title="Stages" id="stages">
        <Stages status={status} rates={rates} refresh={refresh} />
      </Panel>
      <Panel title="Sources and sinks" id="io">
        <Io status={status} rates={rates} />
      </Panel>
      <Panel title="Dead letters" id="dead-letters">
        <DeadLetters topics={dlqTopics} />
      </Panel>
      <Panel title="Tap" id="tap">
        <Tap topics={all} topicRates={topicRates(status, rates)} />
      </Panel>
    </main>
  );
}

render(<App />, document.getElementById('app'));
