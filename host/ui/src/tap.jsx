// A live tap of a topic: the events appended from now on, through server-sent events. Bounded
// twice: the server holds at most 4,096 lines for a slow page (and says how many it dropped),
// and the page keeps the newest 200. At high rates it asks for a sample: by default one event
// in however many keeps it near 20 a second.
import { useEffect, useRef, useState } from 'preact/hooks';
import { enc } from './api.js';

const KEEP = 200;
const WANTED_PER_SECOND = 20;

export function Tap({ topics, topicRates }) {
  const [topic, setTopic] = useState(topics[0] || '');
  const [sample, setSample] = useState('auto');
  const [on, setOn] = useState(null);
  const [lines, setLines] = useState([]);
  const [dropped, setDropped] = useState(0);
  const [error, setError] = useState(null);
  const source = useRef(null);

  const stop = () => {
    source.current?.close();
    source.current = null;
    setOn(null);
  };
  useEffect(() => stop, []);

  const start = () => {
    stop();
    const rate = topicRates.get(topic) || 0;
    const n = sample === 'auto' ? Math.max(1, Math.ceil(rate / WANTED_PER_SECOND)) : Number(sample);
    setLines([]);
    setDropped(0);
    setError(null);
    const es = new EventSource(`/admin/tap/${enc(topic)}?sample=${n}`);
    es.onmessage = (m) => {
      let v;
      try {
        v = JSON.parse(m.data);
      } catch {
        return;
      }
      if (v.tap) {
        if (v.tap.dropped) setDropped((d) => d + v.tap.dropped);
        else setOn({ topic, sample: n, from: v.tap.from });
        return;
      }
      setLines((l) => [m.data, ...l].slice(0, KEEP));
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        setError('the tap closed (the pipeline stopped, or the sign-in expired)');
        setOn(null);
      }
    };
    source.current = es;
  };

  return (
    <div class="tap">
      <div class="bar">
        <label>topic <select value={topic} onChange={(e) => setTopic(e.currentTarget.value)} data-testid="tap-topic">{topics.map((t) => <option key={t}>{t}</option>)}</select></label>
        <label>sample <select value={sample} onChange={(e) => setSample(e.currentTarget.value)} data-testid="tap-sample">
          {['auto', '1', '10', '100', '1000'].map((s) => <option key={s} value={s}>{s === 'auto' ? 'auto' : `1 in ${s}`}</option>)}
        </select></label>
        {source.current ? <button onClick={stop} data-testid="tap-stop">Stop</button> : <button disabled={!topic} onClick={start} data-testid="tap-start">Start</button>}
        {on && <span class="quiet" data-testid="tap-on">tapping {on.topic}, 1 in {on.sample}, from offsets {on.from.join(', ')}</span>}
        {dropped > 0 && <span class="said bad">{dropped} dropped (the page read too slowly)</span>}
        {error && <span class="said bad">{error}</span>}
      </div>
      <pre class="lines" data-testid="tap-lines">{lines.join('\n')}</pre>
    </div>
  );
}
