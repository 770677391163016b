// Events/s into each stage over the last minutes, drawn by uPlot.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

const COLORS = ['#2f6fdf', '#d9822b', '#2e9e5b', '#b83280', '#7a5af8', '#c53030', '#0f8a8a', '#6b7280'];

// history: { t: [seconds], series: Map(stage → [events/s]) }
export function RateChart({ history }) {
  const box = useRef(null);
  const plot = useRef(null);
  const names = [...history.series.keys()];
  const key = names.join('\n');

  useEffect(() => {
    if (!box.current) return undefined;
    const opts = {
      width: Math.max(300, box.current.clientWidth),
      height: 200,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{}, { size: 70, values: (u, ticks) => ticks.map((v) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : v)) }],
      series: [{}, ...names.map((n, i) => ({ label: `${n} in/s`, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } }))],
      legend: { live: false },
    };
    plot.current = new uPlot(opts, [history.t, ...names.map((n) => history.series.get(n))], box.current);
    const resize = () => plot.current?.setSize({ width: Math.max(300, box.current.clientWidth), height: 200 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [key]);

  useEffect(() => {
    plot.current?.setData([history.t, ...names.map((n) => history.series.get(n))]);
  });

  return <div class="chart" ref={box} data-testid="rate-chart" />;
}
