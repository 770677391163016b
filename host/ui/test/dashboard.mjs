// The dashboard in headless Chromium (Debian's, driven by playwright-core), against a running
// `flowgate run` that tests/all/ui.rs started. Every step waits on what the page shows, with a
// deadline, and fails naming what it did not see.
//
// Environment: FLOWGATE_URL (http://host:port), FLOWGATE_TOKEN (the admin token),
// FLOWGATE_FIX (a plugin for the stage `check` that passes what it rejected), FLOWGATE_SINK (the
// sink's file), FLOWGATE_SCREENSHOTS (a directory), CHROMIUM (the browser; /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const url = process.env.FLOWGATE_URL;
const token = process.env.FLOWGATE_TOKEN;
const fix = process.env.FLOWGATE_FIX;
const sink = process.env.FLOWGATE_SINK;
const shots = process.env.FLOWGATE_SCREENSHOTS;
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const DEADLINE_MS = 60_000;

for (const [k, v] of Object.entries({ FLOWGATE_URL: url, FLOWGATE_TOKEN: token, FLOWGATE_FIX: fix, FLOWGATE_SINK: sink, FLOWGATE_SCREENSHOTS: shots })) {
  if (!v) throw new Error(`${k} is not set (tests/all/ui.rs sets it)`);
}
if (!existsSync(browserPath)) {
  throw new Error(`no browser at ${browserPath}: install Debian's chromium (apt-get install chromium), or run scripts/install-test-deps`);
}
mkdirSync(shots, { recursive: true });

const step = (what) => console.log(`dashboard test: ${what}`);

async function post(topic, values) {
  const body = values.map((v) => JSON.stringify({ value: v })).join('\n') + '\n';
  const r = await fetch(`${url}/topics/${topic}/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
  if (!r.ok) throw new Error(`posting to ${topic}: ${r.status} ${await r.text()}`);
}

// Polls `check` (async, true when done) until it holds, failing after the deadline.
async function until(what, check, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > end) throw new Error(`after ${ms / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({ executablePath: browserPath, headless: true, args: ['--no-sandbox'] });
const problems = [];
try {
  // Without the token: the page is the sign-in form, answered 401.
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const first = await page.goto(`${url}/ui`);
  if (first.status() !== 401) throw new Error(`/ui without the token answered ${first.status()}, not 401`);
  await page.locator('input[name=token]').waitFor();
  await page.fill('input[name=token]', 'not-the-token');
  await page.click('button[type=submit]');
  await page.locator('#message', { hasText: 'not the admin token' }).waitFor();
  await page.screenshot({ path: join(shots, '1-sign-in-refused.png') });
  step('without the token: 401 and the sign-in form; a wrong token is refused');

  // From here on, no console error and no page error may happen.
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} from ${r.url()}`); });

  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(`${url}/ui`), page.click('button[type=submit]')]);
  for (const node of ['source:api', 'topic:clicks', 'stage:check', 'topic:checked', 'stage:shout', 'topic:shouted', 'sink:out', 'topic:dead-letters']) {
    await page.locator(`[data-node="${node}"]`).waitFor({ timeout: DEADLINE_MS });
  }
  step('signed in: the graph shows every source, topic, stage and sink');

  // Rates that rise while events flow: the edge into `check` is at 0 before, above 0 while
  // events are posted, and the count of `shout` goes up.
  const edge = page.locator('[data-edge="topic:clicks->stage:check"]');
  const rate = async () => Number(await edge.getAttribute('data-rate'));
  const before = await rate();
  let posted = 0;
  const feeding = setInterval(() => {
    const n = posted;
    posted += 200;
    post('clicks', Array.from({ length: 200 }, (_, i) => `good-${n + i}`)).catch((e) => problems.push(e.message));
  }, 100);
  let seen;
  try {
    seen = await until('the rate on the edge clicks → check rises above 0 while events flow', async () => {
      const r = await rate();
      return r > 100 ? r : null;
    });
    await page.screenshot({ path: join(shots, '2-graph-with-rates.png'), fullPage: true });
  } finally {
    clearInterval(feeding);
  }
  step(`rates rise while events flow: the edge clicks → check went from ${before}/s to ${seen.toFixed(0)}/s`);
  await until('the chart has drawn', async () => (await page.locator('[data-testid=rate-chart] canvas').count()) > 0);

  // The tap shows posted events.
  // Every event (the default, auto, samples at the rate just seen).
  await page.selectOption('[data-testid=tap-topic]', 'clicks');
  await page.selectOption('[data-testid=tap-sample]', '1');
  await page.click('[data-testid=tap-start]');
  await page.locator('[data-testid=tap-on]').waitFor();
  await post('clicks', ['tap-probe-1', 'tap-probe-2', 'tap-probe-3']);
  await page.locator('[data-testid=tap-lines]', { hasText: 'tap-probe-3' }).waitFor({ timeout: DEADLINE_MS });
  const tapped = await page.locator('[data-testid=tap-lines]').textContent();
  for (const v of ['tap-probe-1', 'tap-probe-2', 'tap-probe-3']) if (!tapped.includes(v)) throw new Error(`the tap missed ${v}: ${tapped}`);
  await page.locator('#tap').screenshot({ path: join(shots, '3-tap.png') });
  await page.click('[data-testid=tap-stop]');
  step('the tap showed the three events posted while it ran');

  // A poison event lands in the dead-letter table; a click shows its content.
  await post('clicks', ['bad-poison-1']);
  const row = page.locator('tr[data-value="bad-poison-1"]');
  await until('the poison event in the dead-letter table', async () => {
    if ((await row.count()) > 0) return true;
    await page.click('[data-testid=dlq-refresh]');
    return false;
  });
  const kind = await row.locator('td').nth(5).textContent();
  if (kind !== 'invalid-input') throw new Error(`the dead letter's kind is ${kind}, not invalid-input`);
  await row.locator('td').nth(6).click();
  await page.locator('[data-testid=dlq-content]', { hasText: 'bad-poison-1' }).waitFor();
  await page.locator('#dead-letters').screenshot({ path: join(shots, '4-dead-letter.png') });
  step('the poison event is in the dead-letter table (invalid-input), its content shown on click');

  // A deploy through the upload replaces the live version shown.
  const live = page.locator('[data-testid=live-check]');
  const oldHash = await live.getAttribute('data-hash');
  const oldVersion = await live.getAttribute('data-version');
  await page.setInputFiles('[data-testid=deploy-file-check]', fix);
  await page.click('[data-testid=deploy-check]');
  await page.locator('[data-testid=deploy-said-check]', { hasText: 'on probation' }).waitFor({ timeout: DEADLINE_MS });
  await until('the live version of check changes after the deploy', async () => (await live.getAttribute('data-version')) !== oldVersion);
  const newHash = await live.getAttribute('data-hash');
  if (newHash === oldHash) throw new Error('the deploy left the same hash live');
  await page.locator('#stages').screenshot({ path: join(shots, '5-deployed.png') });
  step(`the upload deployed ${newHash.slice(0, 12)} in place of ${oldHash.slice(0, 12)} (version ${oldVersion} → ${await live.getAttribute('data-version')})`);

  // The redrive of the selected poison event makes it reach the sink, through the fixed plugin.
  const at = await row.getAttribute('data-dlq');
  await page.check(`[data-testid="dlq-pick-${at}"]`);
  await page.click('[data-testid=dlq-redrive-selected]');
  await page.locator('[data-testid=dlq-said]', { hasText: 'sent 1,' }).waitFor({ timeout: DEADLINE_MS });
  const reached = await until('the redriven poison event at the sink', async () => {
    const lines = existsSync(sink) ? readFileSync(sink, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    return lines.find((l) => typeof l.value === 'string' && l.value.includes('BAD-POISON-1'));
  });
  await page.locator('#dead-letters').screenshot({ path: join(shots, '6-redriven.png') });
  step(`the redrive sent the selected dead letter; it reached the sink as ${JSON.stringify(reached.value)} (redriven ${reached.headers?.['x-flowgate-redriven']})`);

  // The roll-back button makes the first version's component live again.
  await page.click('[data-testid=rollback-check]');
  await until('the roll-back brings the first hash back', async () => (await live.getAttribute('data-hash')) === oldHash);
  await page.screenshot({ path: join(shots, '7-rolled-back.png'), fullPage: true });
  step(`roll-back: ${oldHash.slice(0, 12)} is live again (version ${await live.getAttribute('data-version')})`);

  if (problems.length) throw new Error(`the page reported errors:\n${problems.join('\n')}`);
  step(`no console errors; screenshots in ${shots}`);
} finally {
  await browser.close();
}
