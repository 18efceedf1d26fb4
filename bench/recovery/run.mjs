#!/usr/bin/env node
// Recovery benchmark (issue 10): how fast calls recover from, or end after, a fault, over N runs
// each, through the real rcall-server and SDK in headless Chromium.
//
//   node bench/recovery/run.mjs [N] [what]   N runs per measure (default 10); what = any of
//                                            reconnect,tab,crash,silent (default all)
//
// - reconnect: mid-call SIGKILL of the server, restart on the same address and database →
//   both pages CONNECTED again (from the server printing its listening line);
// - tab: B's tab closed mid-call → A's onSessionClose;
// - crash: B's renderer crashed (CDP Page.crash) → A's onSessionClose;
// - silent: B's TCP to the server dropped with tc (media still flows) → A's onSessionClose and
//   B's own (its cut-off).
// Re-executes itself inside `unshare -n` (loopback only; root). Needs `bash npm/build.sh` and
// `cargo build --release -p rcall-server`. Prints p50/p95 and writes the BENCHMARKS.md section
// "Recovery (browser)" (RCALL_BENCH_NO_WRITE=1: don't).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureNetns, quantile, fmt, mdTable, writeBenchmarkSection, keptNotes, machineInfo, loadAvg, ROOT } from '../lib.mjs';
import {
  SDK_DIR, SERVER_BIN, MediaType, Client, getToken, launchBrowser, requireFile, sleep, uid, now,
  startRestartableServer, cutTcpOf127002,
} from '../../tests/e2e/helpers.mjs';

ensureNetns();

const N = Math.max(1, parseInt(process.argv[2] || '10', 10) || 10);
const WHAT = (process.argv[3] || 'reconnect,tab,crash,silent').split(',');

async function main() {
  requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
  requireFile(SERVER_BIN, 'run `cargo build --release -p rcall-server` first');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-bench-recovery-'));
  const browser = await launchBrowser();
  const browserVersion = browser.version();
  const server = await startRestartableServer('0.0.0.0:0', path.join(tmp, 'rcall.db'));
  const load0 = loadAvg();
  const results = {};
  const open = [];
  const user = async (name, origin = server.url) => {
    const id = uid(`r-${name.toLowerCase()}`);
    const c = await Client.open(browser, name, `${origin}/`);
    open.push(c);
    await c.login(id, await getToken(server.url, id));
    return c;
  };
  const connected = async (origin) => {
    const A = await user('A');
    const B = await user('B', origin);
    const res = await A.eval(([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO_VIDEO]);
    if (res.code !== 10000) throw new Error(`call() → ${JSON.stringify(res)}`);
    await B.waitEvent('onSession');
    await B.eval(() => H.accept());
    await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
    return [A, B];
  };
  const closeAll = async () => { await Promise.all(open.splice(0).map((c) => c.close())); };
  const record = (k, v) => { (results[k] ||= []).push(v); console.log(`  ${k}: ${fmt(v)} ms`); };
  try {
    for (let i = 0; i < N; i++) {
      console.log(`run ${i + 1}/${N}`);
      if (WHAT.includes('reconnect')) {
        const [A, B] = await connected();
        const marks = [await A.mark(), await B.mark()];
        await server.kill();
        await Promise.all([A, B].map((c, j) => c.waitEvent('im:SUSPEND', {}, 5000, { since: marks[j] })));
        await sleep(1000);
        await server.restart();
        const back = await Promise.all([A, B].map((c, j) => c.waitEvent('im:CONNECTED', {}, 15000, { since: marks[j] })));
        for (const e of back) record('server listening → CONNECTED', e.t - server.listeningAt);
        await closeAll();
      }
      if (WHAT.includes('tab')) {
        const [A, B] = await connected();
        const t0 = now();
        await B.page.close();
        record('tab closed → other side onSessionClose', (await A.waitEvent('onSessionClose', {}, 10000)).t - t0);
        await closeAll();
      }
      if (WHAT.includes('crash')) {
        const [A, B] = await connected();
        const cdp = await B.context.newCDPSession(B.page);
        const t0 = now();
        cdp.send('Page.crash').catch(() => {});
        record('renderer crash → other side onSessionClose', (await A.waitEvent('onSessionClose', {}, 20000)).t - t0);
        await closeAll();
      }
      if (WHAT.includes('silent')) {
        const [A, B] = await connected(`http://127.0.0.2:${server.port}`);
        const t0 = now();
        const restore = cutTcpOf127002();
        try {
          const [a, b] = await Promise.all([A.waitEvent('onSessionClose', {}, 45000), B.waitEvent('onSessionClose', {}, 45000)]);
          record('silent signalling loss → other side onSessionClose', a.t - t0);
          record('silent signalling loss → cut-off side onSessionClose (7)', b.t - t0);
        } finally {
          restore();
        }
        await closeAll();
      }
    }
  } finally {
    await closeAll();
    await browser.close().catch(() => {});
    await server.kill();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const bounds = {
    'server listening → CONNECTED': '1 s',
    'tab closed → other side onSessionClose': '2 s',
    'renderer crash → other side onSessionClose': '10 s',
    'silent signalling loss → other side onSessionClose': '30 s',
    'silent signalling loss → cut-off side onSessionClose (7)': '30 s after it last heard the server',
  };
  const rows = Object.entries(results).map(([k, xs]) => [k, xs.length, fmt(quantile(xs, 0.5)), fmt(quantile(xs, 0.95)), fmt(Math.max(...xs)), bounds[k] || '']);
  const table = mdTable(['measure', 'n', 'p50 ms', 'p95 ms', 'max ms', 'bound'], rows, ['l', 'r', 'r', 'r', 'r', 'l']);
  console.log('\n' + table);
  if (process.env.RCALL_BENCH_NO_WRITE === '1') return;
  const notes = keptNotes('Recovery (browser)', '### Notes', '### Notes\n\n(none yet)');
  const body = [
    `\`node bench/recovery/run.mjs ${N}\` — ${machineInfo(browserVersion)}, load average ${load0} → ${loadAvg()}.`,
    '',
    table,
    '',
    notes,
  ].join('\n');
  const file = writeBenchmarkSection('Recovery (browser)', body);
  console.log(`\nwrote section "Recovery (browser)" of ${path.relative(ROOT, file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
