#!/usr/bin/env node
// Call-setup benchmark: N 1:1 video calls through the real rcall-server + SDK (npm/dist/cdn), and
// the same N calls with a plain hand-written WebRTC page pair + a trivial WebSocket relay that
// negotiates only after the callee accepts (the baseline), interleaved in one headless Chromium.
//
//   node bench/call-setup/run.mjs [N]        (N calls per side, default 20; after 1 warm-up call each)
//
// Re-executes itself inside `unshare -n` (loopback only; needs root) unless RCALL_NO_NETNS=1.
// Needs `bash npm/build.sh` and `cargo build --release -p rcall-server` first. Prints medians and
// p95s and writes them to BENCHMARKS.md, section "Call setup (browser)" (RCALL_BENCH_NO_WRITE=1: don't).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { ensureNetns, median, quantile, fmt, mdTable, writeBenchmarkSection, keptNotes, machineInfo, loadAvg, ROOT } from '../lib.mjs';
import { APP_KEY, SDK_DIR, SERVER_BIN, startServer, getToken, launchBrowser, requireFile, sleep, uid } from '../../tests/e2e/helpers.mjs';

ensureNetns();

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, 'pages');
const N = Math.max(1, parseInt(process.argv[2] || '20', 10) || 20);
const WARMUP = 1;
const RING_MS = 1000; // the callee "picks up" this long after onSession (pre-connect has time to finish)
const WAIT_MS = 15000;
const WASM_SAMPLES = 9;

// ------------------------------------------------------------------------------------------------
// The baseline's server: static pages + a WebSocket relay (room = URL path; every message goes to
// the other sockets of the room).
async function startRelay() {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
  const http = createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(PAGES, path.normalize(p));
    if (!file.startsWith(PAGES + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    res.end(fs.readFileSync(file));
  });
  const wss = new WebSocketServer({ server: http });
  const rooms = new Map();
  wss.on('connection', (ws, req) => {
    const room = req.url;
    if (!rooms.has(room)) rooms.set(room, new Set());
    const peers = rooms.get(room);
    peers.add(ws);
    ws.on('message', (data) => { for (const p of peers) if (p !== ws) p.send(data.toString()); });
    ws.on('close', () => peers.delete(ws));
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const port = http.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    close: () => new Promise((r) => { for (const c of wss.clients) c.terminate(); wss.close(); http.close(r); }),
  };
}

async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const resp = await page.goto(url);
  if (!resp || !resp.ok()) throw new Error(`GET ${url} → HTTP ${resp && resp.status()}`);
  await page.waitForFunction(() => window.B && window.B.ready, null, { timeout: 10000 });
  page.logs = logs;
  return page;
}

/** Polls fn in the page until it returns a truthy value. */
async function waitFor(page, what, fn, arg, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) {
      const evs = await page.evaluate(() => B.C.events).catch(() => []);
      throw new Error(`no ${what} within ${timeout} ms; events: ${JSON.stringify(evs)}; console: ${page.logs.slice(-10).join(' | ')}`);
    }
    await sleep(10);
  }
}

/** One call A → B on a system {name, A, B, aId, bId}; returns its timings (ms). */
async function oneCall(sys) {
  const { A, B, aId, bId } = sys;
  await Promise.all([A.evaluate(() => window.B.reset()), B.evaluate(() => window.B.reset())]);
  const call = await A.evaluate((t) => window.B.call(t), bId);
  if (call.code !== 10000) throw new Error(`${sys.name}: call() → ${JSON.stringify(call)}`);
  const onSession = await waitFor(B, 'onSession', () => window.B.C.firstEvent('onSession'));
  const onRinging = await waitFor(A, 'onRinging', () => window.B.C.firstEvent('onRinging'));
  await sleep(RING_MS);
  const gumBeforeAccept = await B.evaluate(() => window.B.C.gumCalls.length);
  const remoteBeforeAccept = await B.evaluate(() => Object.values(window.B.C.videos).filter((v) => !v.local).length);
  const camStart = await B.evaluate(() => window.B.C.camStart());
  await sleep(100);
  const acc = await B.evaluate(() => window.B.accept());
  if (acc.code !== 10000) throw new Error(`${sys.name}: accept() → ${JSON.stringify(acc)}`);
  const frameAtB = await waitFor(B, 'first remote frame at the callee', (id) => window.B.C.videos['remote-' + id]?.firstFrameAt, aId);
  const frameAtA = await waitFor(A, 'first remote frame at the caller', (id) => window.B.C.videos['remote-' + id]?.firstFrameAt, bId);
  const callerGum = await A.evaluate(() => window.B.C.gumCalls.map((g) => g.t1 - g.t0));
  const onAccept = await A.evaluate(() => window.B.C.firstEvent('onAccept'));

  const trackAtB = await B.evaluate(() => window.B.C.firstEvent('onTrackReady', { local: false, kind: 'video' }));
  const trackAtA = await A.evaluate(() => window.B.C.firstEvent('onTrackReady', { local: false, kind: 'video' }));
  const attachB = await B.evaluate(() => window.B.C.firstEvent('replaceTrack', { kind: 'video', captured: true }));
  const attachA = await A.evaluate(() => window.B.C.firstEvent('replaceTrack', { kind: 'video', captured: true }));
  const calleeGum = await B.evaluate(() => window.B.C.gumCalls.map((g) => [g.t0, g.t1]));
  await A.evaluate(() => window.B.hungup());
  await waitFor(A, 'caller onSessionClose', () => window.B.C.firstEvent('onSessionClose'));
  await waitFor(B, 'callee onSessionClose', () => window.B.C.firstEvent('onSessionClose'));
  await sleep(300);
  return {
    toSession: onSession.t - call.t0,
    toRinging: onRinging.t - call.t0,
    calleeFrame: frameAtB - acc.t0,
    callerFrame: frameAtA - acc.t0,
    callerFrameMinusCam: frameAtA - acc.t0 - camStart,
    camStart,
    callerGum: callerGum[0],
    acceptReturned: acc.t1 - acc.t0,
    toAccept: onAccept ? onAccept.t - acc.t0 : NaN,
    calleeTrack: trackAtB ? trackAtB.t - acc.t0 : NaN,
    callerTrack: trackAtA ? trackAtA.t - acc.t0 : NaN,

    callerAttach: attachA ? attachA.t - acc.t0 : NaN,
    calleeAttach: attachB ? attachB.t - acc.t0 : NaN,
    calleeGumStart: calleeGum.length ? calleeGum[0][0] - acc.t0 : NaN,
    calleeGumEnd: calleeGum.length ? calleeGum[0][1] - acc.t0 : NaN,
    gumBeforeAccept,
    remoteBeforeAccept,
  };
}

function gzipSizes() {
  const js = path.join(SDK_DIR, 'rcall.js');
  const wasm = path.join(SDK_DIR, 'rcall_bg.wasm');
  const gz = (f) => zlib.gzipSync(fs.readFileSync(f), { level: 9 }).length;
  return { js: fs.statSync(js).size, jsGz: gz(js), wasm: fs.statSync(wasm).size, wasmGz: gz(wasm) };
}

async function main() {
  requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
  requireFile(SERVER_BIN, 'run `cargo build --release -p rcall-server` first');
  const server = await startServer({ webDir: PAGES, env: { RUST_LOG: 'warn' } });
  const relay = await startRelay();
  const browser = await launchBrowser();
  const pages = [];
  try {
    // rcall: two logged-in users.
    const aId = uid('bench-a');
    const bId = uid('bench-b');
    const sdk = { name: 'rcall', aId, bId };
    [sdk.A, sdk.B] = await Promise.all([openPage(browser, `${server.url}/sdk.html`), openPage(browser, `${server.url}/sdk.html`)]);
    pages.push(sdk.A, sdk.B);
    for (const [p, id] of [[sdk.A, aId], [sdk.B, bId]]) {
      await p.evaluate((k) => window.B.setup(k), APP_KEY);
      const res = await p.evaluate((t) => window.B.connect(t), await getToken(server.url, id));
      if (res.code !== 0) throw new Error(`connect(${id}) → ${JSON.stringify(res)}`);
    }
    // baseline: two pages in one relay room.
    const base = { name: 'baseline', aId: 'alice', bId: 'bob' };
    const room = `${relay.ws}/room-${uid('r')}`;
    [base.A, base.B] = await Promise.all([
      openPage(browser, `${relay.url}/baseline.html?user=alice&ws=${encodeURIComponent(room)}`),
      openPage(browser, `${relay.url}/baseline.html?user=bob&ws=${encodeURIComponent(room)}`),
    ]);
    pages.push(base.A, base.B);

    // wasm compile / instantiate, cold: each sample in a fresh context (renderer process).
    const wasm = { unpack: [], compile: [], instantiate: [], load: [], bytes: 0 };
    for (let i = 0; i < 2 * WASM_SAMPLES; i++) {
      const wp = await openPage(browser, `${server.url}/wasm.html`);
      const mode = i % 2 ? 'compile' : 'load';
      const r = await wp.evaluate((m) => window.measureWasm('/sdk/rcall_bg.wasm', m), mode);
      if (mode === 'load') wasm.load.push(r.ms);
      else {
        wasm.unpack.push(r.unpack); wasm.compile.push(r.compile); wasm.instantiate.push(r.instantiate); wasm.bytes = r.bytes;
      }
      await wp.context().close();
    }

    const load0 = loadAvg();
    const results = { rcall: [], baseline: [] };
    const failures = { rcall: [], baseline: [] };
    const total = N + WARMUP;
    for (let i = 0; i < total; i++) {
      const order = i % 2 ? [base, sdk] : [sdk, base];
      for (const sys of order) {
        try {
          const r = await oneCall(sys);
          if (i >= WARMUP) results[sys.name].push(r);
        } catch (e) {
          failures[sys.name].push(e.message);
          console.error(`  ${sys.name} call ${i}: FAILED: ${e.message}`);
          // Clean up whatever is left of the call.
          await sys.A.evaluate(() => window.B.hungup()).catch(() => {});
          await sys.B.evaluate(() => window.B.hungup()).catch(() => {});
          await sleep(1000);
        }
      }
      process.stderr.write(`\r  calls done: ${i + 1}/${total} `);
    }
    process.stderr.write('\n');

    const version = browser.version();
    report({ results, failures, wasm, gz: gzipSizes(), version, load: [load0, loadAvg()] });
  } finally {
    for (const p of pages) await p.context().close().catch(() => {});
    await browser.close().catch(() => {});
    await relay.close();
    await server.stop();
  }
}

function report({ results, failures, wasm, gz, version, load }) {
  const R = results.rcall;
  const Bl = results.baseline;
  const col = (rs, k) => rs.map((r) => r[k]);
  const cell = (rs, k, q) => fmt(q === 0.5 ? median(col(rs, k)) : quantile(col(rs, k), q));
  const med = (rs, k) => median(col(rs, k));

  const tSession = med(R, 'toSession');
  const calleeRatio = med(R, 'calleeFrame') / med(Bl, 'calleeFrame');
  const callerRatio = med(R, 'callerFrameMinusCam') / med(Bl, 'callerFrameMinusCam');
  const verdict = (ok) => (ok ? 'met' : 'NOT met');
  const rows = [
    ['call() → callee onSession', cell(R, 'toSession', 0.5), cell(R, 'toSession', 0.95), cell(Bl, 'toSession', 0.5), cell(Bl, 'toSession', 0.95),
      `≤ 20 ms: ${verdict(tSession <= 20)}`],
    ['call() → caller onRinging', cell(R, 'toRinging', 0.5), cell(R, 'toRinging', 0.95), cell(Bl, 'toRinging', 0.5), cell(Bl, 'toRinging', 0.95), ''],
    ['accept() → first remote frame, callee', cell(R, 'calleeFrame', 0.5), cell(R, 'calleeFrame', 0.95), cell(Bl, 'calleeFrame', 0.5), cell(Bl, 'calleeFrame', 0.95),
      `≤ 0.5× baseline: ${fmt(calleeRatio, 2)}× ${verdict(calleeRatio <= 0.5)}`],
    ['accept() → first remote frame, caller', cell(R, 'callerFrame', 0.5), cell(R, 'callerFrame', 0.95), cell(Bl, 'callerFrame', 0.5), cell(Bl, 'callerFrame', 0.95), ''],
    ['  … minus the callee\'s camera start', cell(R, 'callerFrameMinusCam', 0.5), cell(R, 'callerFrameMinusCam', 0.95), cell(Bl, 'callerFrameMinusCam', 0.5), cell(Bl, 'callerFrameMinusCam', 0.95),
      `≤ 0.5× baseline: ${fmt(callerRatio, 2)}× ${verdict(callerRatio <= 0.5)}`],
    ['callee camera start (plain getUserMedia)', cell(R, 'camStart', 0.5), cell(R, 'camStart', 0.95), cell(Bl, 'camStart', 0.5), cell(Bl, 'camStart', 0.95), ''],
    ['accept() → caller onAccept', cell(R, 'toAccept', 0.5), cell(R, 'toAccept', 0.95), cell(Bl, 'toAccept', 0.5), cell(Bl, 'toAccept', 0.95), 'breakdown'],
    ['accept() resolved', cell(R, 'acceptReturned', 0.5), cell(R, 'acceptReturned', 0.95), cell(Bl, 'acceptReturned', 0.5), cell(Bl, 'acceptReturned', 0.95), 'breakdown'],
    ['accept() → remote video track at the callee', cell(R, 'calleeTrack', 0.5), cell(R, 'calleeTrack', 0.95), cell(Bl, 'calleeTrack', 0.5), cell(Bl, 'calleeTrack', 0.95), 'breakdown'],
    ['accept() → caller attaches its camera (replaceTrack)', cell(R, 'callerAttach', 0.5), cell(R, 'callerAttach', 0.95), '–', '–', 'breakdown'],
    ['accept() → callee getUserMedia starts / ends', cell(R, 'calleeGumStart', 0.5) + ' / ' + cell(R, 'calleeGumEnd', 0.5), '', '', '', 'breakdown'],
    ['accept() → callee attaches its camera (replaceTrack)', cell(R, 'calleeAttach', 0.5), cell(R, 'calleeAttach', 0.95), '–', '–', 'breakdown'],
    ['accept() → remote video track at the caller', cell(R, 'callerTrack', 0.5), cell(R, 'callerTrack', 0.95), cell(Bl, 'callerTrack', 0.5), cell(Bl, 'callerTrack', 0.95), 'breakdown'],
    ['caller getUserMedia (inside call() / preview)', cell(R, 'callerGum', 0.5), cell(R, 'callerGum', 0.95), cell(Bl, 'callerGum', 0.5), cell(Bl, 'callerGum', 0.95), ''],
  ];
  const table = mdTable(['ms', 'rcall median', 'rcall p95', 'baseline median', 'baseline p95', 'target'], rows, ['l', 'r', 'r', 'r', 'r', 'l']);
  const preconnect = R.every((r) => r.gumBeforeAccept === 0 && r.remoteBeforeAccept === 0);
  const sizes = `CDN build (\`npm/dist/cdn/\`): rcall.js ${gz.js} B (gzip ${gz.jsGz} B) + rcall_bg.wasm ${gz.wasm} B (gzip ${gz.wasmGz} B) = **${gz.jsGz + gz.wasmGz} B gzip** (gzip -9).`;
  const wasmLine = `wasm instantiate (${wasm.bytes} B unpacked, cold: each sample in a fresh renderer process, median of ${wasm.compile.length}): ` +
    `unpacking the CDN's rcall_bg.wasm ${fmt(median(wasm.unpack), 1)} ms + \`WebAssembly.compile\` ${fmt(median(wasm.compile), 1)} ms + \`instantiate\` ${fmt(median(wasm.instantiate), 1)} ms ` +
    `(V8 compiles wasm functions lazily, on first call, so this is mostly validation); ` +
    `fetch + unpack + compile + instantiate, as the CDN loader does, incl. the loopback fetch ${fmt(median(wasm.load), 1)} ms (p95 ${fmt(quantile(wasm.load, 0.95), 1)} ms).`;
  const fails = `Failed calls: rcall ${failures.rcall.length}, baseline ${failures.baseline.length} (of ${N} each).` +
    (failures.rcall.length + failures.baseline.length ? ' First: ' + [...failures.rcall, ...failures.baseline][0].slice(0, 300) : '');

  const loadLine = `Machine 1-minute load average at the start / end of the calls: ${fmt(load[0], 1)} / ${fmt(load[1], 1)} (other work on the machine skews the figures).`;
  console.log(`\nCall setup, ${R.length} rcall + ${Bl.length} baseline calls (640x480@15 fake camera, loopback), ${machineInfo(version)}\n`);
  console.log(table);
  console.log(`\n${sizes}\n${wasmLine}\n${fails}\n${loadLine}`);
  console.log(`Pre-connect contract (callee: no getUserMedia and no remote video before accept()): ${preconnect ? 'held in every call' : 'VIOLATED in some call'}`);

  if (process.env.RCALL_BENCH_NO_WRITE === '1') return;
  const date = new Date().toISOString().slice(0, 10);
  const body = `
Measured ${date} on ${machineInfo(version)}, inside \`unshare -n\` (loopback only), with

\`\`\`sh
bash npm/build.sh && cargo build --release -p rcall-server
node bench/call-setup/run.mjs ${N}     # re-execs itself under \`unshare -n\` (root); RCALL_NO_NETNS=1 to skip
\`\`\`

${N} 1:1 audio+video calls per side, after one warm-up call each, alternating rcall and baseline, two pages
(separate browser contexts) in one headless Chromium with the fake 640x480 camera
(\`bench/call-setup/pages/\`). **rcall**: the release \`rcall-server\` and the CDN SDK (\`/sdk/rcall.js\`),
\`call()\`/\`accept()\` with \`{video: {frameRate: 'FPS_15', resolution: 'W640_H480'}}\`. **baseline**: a
hand-written page pair (\`baseline.js\`) over a trivial \`ws\` relay that negotiates only after the callee
accepts (callee getUserMedia → both create an RTCPeerConnection with tracks → offer/answer → trickle ICE);
its caller sends the invite first and starts its own preview camera in parallel. The callee accepts
${RING_MS} ms after its \`onSession\`; right before, the callee page times a plain
\`getUserMedia({audio: true, video: {width: 640, height: 480, frameRate: 15}})\` ("camera start"), which
no SDK can avoid without capturing before accept. First frames are timed with
\`requestVideoFrameCallback\` on the \`<video>\` fed by \`track.play(el)\` (baseline: \`srcObject\`).
The "breakdown" rows are intermediate points: the caller's \`onAccept\` (baseline: the relayed "accept"),
when \`accept()\` resolved, and when each side got the remote video track (\`onTrackReady\`; baseline: \`ontrack\`).

${table}

- ${sizes}
- ${wasmLine}
- ${fails}
- ${loadLine}
- Pre-connect contract in every rcall call (callee: no getUserMedia and no remote video before \`accept()\`): ${preconnect ? 'held' : '**violated**'}.

${keptNotes('Call setup (browser)', '### Notes', '### Notes\n\n_To be written from the numbers above._')}
`;
  const file = writeBenchmarkSection('Call setup (browser)', body);
  console.log(`\nwrote section "Call setup (browser)" of ${path.relative(ROOT, file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
