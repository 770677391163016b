// The pipeline as a graph: sources → topics → stages → sinks, laid out by dagre, with the
// events/s of every edge. The layout is made again only when the pipeline's shape changes.
import { useMemo } from 'preact/hooks';
import { graphlib, layout } from '@dagrejs/dagre';
import { fmtRate, topics } from './api.js';

const CHAR = 7.4;

function shape(status) {
  const nodes = [];
  const edges = [];
  for (const t of topics(status)) nodes.push({ id: `topic:${t}`, kind: 'topic', label: t });
  for (const s of status.sources) {
    nodes.push({ id: `source:${s.source}`, kind: 'source', label: s.source, sub: s.type });
    edges.push({ from: `source:${s.source}`, to: `topic:${s.topic}`, rate: [`source:${s.source}`, 'events'] });
  }
  for (const s of status.stages) {
    const id = `stage:${s.stage}`;
    nodes.push({ id, kind: 'stage', label: s.stage, sub: `v${s.live?.version} ${(s.live?.hash || '').slice(0, 8)}` });
    edges.push({ from: `topic:${s.input}`, to: id, rate: [id, 'in'] });
    for (const o of s.outputs || []) edges.push({ from: id, to: `topic:${o}`, rate: [id, 'out'] });
    if (s.dead_letter_topic) edges.push({ from: id, to: `topic:${s.dead_letter_topic}`, rate: [id, 'dead'], dead: true });
  }
  for (const s of status.sinks) {
    nodes.push({ id: `sink:${s.sink}`, kind: 'sink', label: s.sink, sub: s.type });
    edges.push({ from: `topic:${s.input}`, to: `sink:${s.sink}`, rate: [`sink:${s.sink}`, 'events'] });
  }
  return { nodes, edges };
}

function place({ nodes, edges }) {
  const g = new graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'LR', nodesep: 24, ranksep: 70, edgesep: 16, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) {
    const chars = Math.max(n.label.length, (n.sub || '').length);
    g.setNode(n.id, { width: Math.max(70, chars * CHAR + 24), height: n.sub ? 44 : 30 });
  }
  edges.forEach((e, i) => g.setEdge(e.from, e.to, { width: 64, height: 16, labelpos: 'c' }, `e${i}`));
  layout(g);
  const at = new Map(nodes.map((n) => [n.id, g.node(n.id)]));
  const paths = edges.map((e, i) => g.edge(e.from, e.to, `e${i}`));
  const { width, height } = g.graph();
  return { at, paths, width, height };
}

function pathOf(points) {
  const [first, ...rest] = points;
  if (rest.length === 0) return '';
  // A smooth curve through dagre's points: a quadratic segment through each midpoint.
  let d = `M${first.x},${first.y}`;
  for (let i = 0; i < rest.length - 1; i++) {
    const p = rest[i];
    const q = rest[i + 1];
    d += ` Q${p.x},${p.y} ${(p.x + q.x) / 2},${(p.y + q.y) / 2}`;
  }
  const last = rest[rest.length - 1];
  return `${d} L${last.x},${last.y}`;
}

export function Graph({ status, rates }) {
  const key = JSON.stringify(shape(status));
  const s = useMemo(() => JSON.parse(key), [key]);
  const placed = useMemo(() => place(s), [s]);
  return (
    <svg class="graph" viewBox={`0 0 ${placed.width} ${placed.height}`} width={placed.width} height={placed.height} role="img" aria-label="the pipeline's graph">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
        </marker>
      </defs>
      {s.edges.map((e, i) => {
        const p = placed.paths[i];
        const [node, key] = e.rate;
        const r = rates?.get(node)?.[key] ?? 0;
        const name = `${e.from}->${e.to}`;
        return (
          <g class={`edge${e.dead ? ' dead' : ''}${r > 0 ? ' flowing' : ''}`} key={name}>
            <path d={pathOf(p.points)} marker-end="url(#arrow)" />
            <text x={p.x} y={p.y + 4} data-edge={name} data-rate={r.toFixed(3)}>{fmtRate(r)}</text>
          </g>
        );
      })}
      {s.nodes.map((n) => {
        const a = placed.at.get(n.id);
        return (
          <g class={`node ${n.kind}`} data-node={n.id} key={n.id} transform={`translate(${a.x - a.width / 2},${a.y - a.height / 2})`}>
            <rect width={a.width} height={a.height} rx={n.kind === 'topic' ? a.height / 2 : 6} />
            <text x={a.width / 2} y={n.sub ? 18 : 19}>{n.label}</text>
            {n.sub && <text class="sub" x={a.width / 2} y={34}>{n.sub}</text>}
          </g>
        );
      })}
    </svg>
  );
}
