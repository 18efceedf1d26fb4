#!/usr/bin/env node
// Group mesh benchmark: a P2P mesh group video call (callInGroup) with 2…6 participants, each a
// page (own browser context) in one headless Chromium, through the real rcall-server + SDK.
// Per participant count it reports, over a 10 s window after a 5 s ramp-up:
//   - the whole browser's CPU (sum over the Chromium process tree, from /proc/<pid>/stat; 100 % =
//     one core) and RSS at the end,
//   - per page: send / receive bitrate (the SDK's onRTCStateReport, iceCandidatePair.bitrateSend /
//     bitrateRecv, summed over the page's peer connections, averaged over the window),
//   - decoded frame rate per remote stream (inbound-rtp framesDecoded over the window), rendered
//     frame rate (requestVideoFrameCallback on the <video> fed by track.play(el)), and the received
//     width (the SDK's receivers[].frameWidth).
//
//   node bench/mesh/run.mjs [MAX=6] [MIN=2]
//
// Re-executes itself inside `unshare -n` (loopback only; needs root) unless RCALL_NO_NETNS=1.
// Writes the table to BENCHMARKS.md, section "Group mesh" (RCALL_BENCH_NO_WRITE=1: don't); the
// section's "### Conclusion" subsection is kept from the previous version of the file (it is written
// by hand from the numbers).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureNetns, median, fmt, mdTable, writeBenchmarkSection, keptNotes, machineInfo, loadAvg, ROOT } from '../lib.mjs';
import { APP_KEY, SDK_DIR, SERVER_BIN, startServer, getToken, signHeaders, launchBrowser, requireFile, sleep, uid } from '../../tests/e2e/helpers.mjs';

ensureNetns();

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, '../call-setup/pages');
const MAX = Math.min(8, Math.max(2, parseInt(process.argv[2] || '6', 10) || 6));
const MIN = Math.min(MAX, Math.max(2, parseInt(process.argv[3] || '2', 10) || 2));
const RAMP_MS = 5000;
const WINDOW_MS = 10000;
const CLK_TCK = 100; // USER_HZ on Linux

// ------------------------------------------------------------------------------------------------
// CPU of the Chromium process tree: every descendant of this node process except the server.

function procChildren() {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {}
  }
  return kids;
}

function browserPids(excludePid) {
  const kids = procChildren();
  const out = [];
  const walk = (pid) => {
    for (const k of kids.get(pid) || []) {
      if (k === excludePid) continue;
      out.push(k);
      walk(k);
    }
  };
  walk(process.pid);
  return out;
}

/** {ticks (utime+stime, all listed pids), rssKb} */
function sampleCpu(pids) {
  let ticks = 0;
  let rssKb = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(rest[11]) + Number(rest[12]); // utime, stime (fields 14, 15)
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      rssKb += Number((status.match(/VmRSS:\s+(\d+)/) || [])[1] || 0);
    } catch {}
  }
  return { ticks, rssKb };
}

// ------------------------------------------------------------------------------------------------

async function createGroup(baseUrl, groupId, userIds) {
  const body = new URLSearchParams();
  for (const u of userIds) body.append('userId', u);
  body.append('groupId', groupId);
  body.append('groupName', groupId);
  const res = await fetch(`${baseUrl}/group/create.json`, {
    method: 'POST',
    headers: { ...signHeaders(), 'Content-Type': 'application/x-www-form-urlencoded' },
    body: body.toString(),
  });
  const text = await res.text();
  if (res.status !== 200 || !/"code"\s*:\s*200/.test(text)) throw new Error(`group/create.json → HTTP ${res.status} ${text}`);
}

async function openUser(browser, server, userId) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.logs = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') page.logs.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => page.logs.push(`pageerror: ${e.message}`));
  await page.goto(`${server.url}/sdk.html`);
  await page.waitForFunction(() => window.B && window.B.ready, null, { timeout: 10000 });
  await page.evaluate((k) => window.B.setup(k), APP_KEY);
  const res = await page.evaluate((t) => window.B.connect(t), await getToken(server.url, userId));
  if (res.code !== 0) throw new Error(`connect(${userId}) → ${JSON.stringify(res)}`);
  page.userId = userId;
  return page;
}

async function waitFor(page, what, fn, arg, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${page.userId}: no ${what} within ${timeout} ms; console: ${page.logs.slice(-5).join(' | ')}`);
    await sleep(50);
  }
}

const videoFrames = (page) => page.evaluate(() => Object.fromEntries(window.B.C.videoState().filter((v) => !v.local).map((v) => [v.userId, v])));

async function runMesh(browser, server, n) {
  const tag = uid(`mesh${n}`);
  const ids = Array.from({ length: n }, (_, i) => `${tag}-u${i + 1}`);
  const groupId = `${tag}-group`;
  await createGroup(server.url, groupId, ids);
  const pages = [];
  const notes = [];
  try {
    for (const id of ids) pages.push(await openUser(browser, server, id));
    const [caller, ...callees] = pages;
    const t0 = Date.now();
    const res = await caller.evaluate(([g, u]) => window.B.callInGroup(g, u), [groupId, ids.slice(1)]);
    if (res.code !== 10000) throw new Error(`callInGroup → ${JSON.stringify(res)}`);
    await Promise.all(callees.map((p) => waitFor(p, 'onSession', () => window.B.C.firstEvent('onSession'), null, 15000)));
    await Promise.all(callees.map((p) => p.evaluate(() => window.B.accept())));
    // Every page decodes every other participant's video.
    const setupTimeout = 20000 + 5000 * n;
    const ok = await Promise.all(pages.map(async (p) => {
      const others = ids.filter((u) => u !== p.userId);
      try {
        await waitFor(p, `remote video from all of ${others.join(', ')}`,
          (o) => o.every((u) => (window.B.C.videos['remote-' + u] || {}).frames > 0), others, setupTimeout);
        return true;
      } catch (e) {
        notes.push(e.message.split(';')[0]);
        return false;
      }
    }));
    const allUp = ok.every(Boolean);
    const setupMs = Date.now() - t0;
    await sleep(RAMP_MS);

    // Measurement window.
    const pids = browserPids(server.proc.pid);
    await Promise.all(pages.map((p) => p.evaluate(() => { window.B.reports = []; window.B.collectReports = true; })));
    const f1 = await Promise.all(pages.map(videoFrames));
    const d1 = await Promise.all(pages.map((p) => p.evaluate(() => window.B.C.decoded())));
    const c1 = sampleCpu(pids);
    const w0 = Date.now();
    await sleep(WINDOW_MS);
    const c2 = sampleCpu(browserPids(server.proc.pid));
    const wMs = Date.now() - w0;
    const f2 = await Promise.all(pages.map(videoFrames));
    const d2 = await Promise.all(pages.map((p) => p.evaluate(() => window.B.C.decoded())));
    const reports = await Promise.all(pages.map((p) => p.evaluate(() => { window.B.collectReports = false; return window.B.reports; })));
    const cpuPct = ((c2.ticks - c1.ticks) / CLK_TCK) / (wMs / 1000) * 100;
    const load = loadAvg();

    const perPage = pages.map((p, i) => {
      const rs = reports[i].map((r) => r.report);
      const byPc = new Map();
      for (const r of rs) {
        if (!byPc.has(r.pcName)) byPc.set(r.pcName, []);
        byPc.get(r.pcName).push(r);
      }
      // Bitrates: per peer connection the mean over its reports (skipping a first 0 sample), summed.
      let send = 0;
      let recv = 0;
      const sdkFps = [];
      const widths = [];
      for (const list of byPc.values()) {
        const pairs = list.map((r) => r.iceCandidatePair).filter(Boolean);
        const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
        send += mean(pairs.map((x) => x.bitrateSend).filter((x, j) => j > 0 || x > 0));
        recv += mean(pairs.map((x) => x.bitrateRecv).filter((x, j) => j > 0 || x > 0));
        for (const r of list) {
          for (const rc of r.receivers || []) {
            if (rc.kind !== 'video') continue;
            if (Number.isFinite(rc.frameRate)) sdkFps.push(rc.frameRate);
            if (rc.frameWidth) widths.push(rc.frameWidth);
          }
        }
      }
      const fps = Object.keys(f2[i]).map((u) => ((f2[i][u].frames - ((f1[i][u] || {}).frames || 0)) * 1000) / wMs);
      const decodedFps = d2[i].streams ? ((d2[i].framesDecoded - d1[i].framesDecoded) * 1000) / wMs / d2[i].streams : NaN;
      const dropped = d2[i].framesDropped - d1[i].framesDropped;
      return { send, recv, fps, decodedFps, dropped, sdkFps: median(sdkFps), width: median(widths), reportsPerPcPerSec: rs.length / Math.max(1, byPc.size) / (wMs / 1000), pcs: byPc.size };
    });
    const allFps = perPage.flatMap((p) => p.fps);
    return {
      n, allUp, setupMs, cpuPct, load, rssMb: c2.rssKb / 1024, procs: pids.length, notes,
      sendKbps: median(perPage.map((p) => p.send)),
      recvKbps: median(perPage.map((p) => p.recv)),
      decodedFps: median(perPage.map((p) => p.decodedFps)),
      decodedFpsMin: Math.min(...perPage.map((p) => p.decodedFps)),
      fpsMedian: median(allFps),
      fpsMin: Math.min(...allFps),
      sdkFps: median(perPage.map((p) => p.sdkFps)),
      width: median(perPage.map((p) => p.width)),
      streams: allFps.length,
      reportsPerPcPerSec: median(perPage.map((p) => p.reportsPerPcPerSec)),
    };
  } finally {
    await Promise.all(pages.map((p) => p.evaluate(() => window.B.hungup()).catch(() => {})));
    await sleep(500);
    await Promise.all(pages.map((p) => p.context().close().catch(() => {})));
    await sleep(1000);
  }
}

async function main() {
  requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
  requireFile(SERVER_BIN, 'run `cargo build --release -p rcall-server` first');
  const server = await startServer({ webDir: PAGES, env: { RUST_LOG: 'warn' } });
  const browser = await launchBrowser();
  const rows = [];
  try {
    // Idle browser baseline.
    const idle0 = sampleCpu(browserPids(server.proc.pid));
    await sleep(3000);
    const idle1 = sampleCpu(browserPids(server.proc.pid));
    console.log(`idle browser: ${fmt(((idle1.ticks - idle0.ticks) / CLK_TCK / 3) * 100)} % CPU, ${fmt(idle1.rssKb / 1024)} MB RSS`);
    for (let n = MIN; n <= MAX; n++) {
      let r;
      try {
        r = await runMesh(browser, server, n);
      } catch (e) {
        r = { n, error: e.message };
      }
      rows.push(r);
      console.log(JSON.stringify(r));
    }
    report(rows, browser.version());
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
}

function report(rows, version) {
  const table = mdTable(
    ['participants', 'remote videos up', 'browser CPU (100 % = 1 core)', 'CPU per page', 'RSS MB', 'send kbit/s per page', 'recv kbit/s per page', 'decoded fps per stream (median / worst page)', 'rendered fps (rVFC, median / min)', 'recv width', 'setup s', 'load avg'],
    rows.map((r) => r.error
      ? [r.n, 'error', r.error.slice(0, 120), '', '', '', '', '', '', '', '', '']
      : [r.n, `${r.streams}/${r.n * (r.n - 1)}${r.allUp ? '' : ' (!)'}`, `${fmt(r.cpuPct)} %`, `${fmt(r.cpuPct / r.n)} %`, fmt(r.rssMb), fmt(r.sendKbps), fmt(r.recvKbps),
        `${fmt(r.decodedFps, 1)} / ${fmt(r.decodedFpsMin, 1)}`, `${fmt(r.fpsMedian, 1)} / ${fmt(r.fpsMin, 1)}`, fmt(r.width), fmt(r.setupMs / 1000, 1), fmt(r.load, 1)]),
    ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
  console.log(`\nGroup mesh (P2P), ${machineInfo(version)}; window ${WINDOW_MS / 1000} s after ${RAMP_MS / 1000} s ramp-up\n`);
  console.log(table);
  const notes = rows.filter((r) => r.notes && r.notes.length).map((r) => `- ${r.n} participants: ${r.notes.join('; ')}`);
  if (notes.length) console.log('\n' + notes.join('\n'));
  if (process.env.RCALL_BENCH_NO_WRITE === '1') return;

  // Keep the hand-written conclusion (from "### Conclusion" on) of the existing section.
  const conclusion = keptNotes('Group mesh', '### Conclusion', '### Conclusion\n\n_To be written from the numbers above._');
  const date = new Date().toISOString().slice(0, 10);
  const body = `
Measured ${date} on ${machineInfo(version)}, inside \`unshare -n\` (loopback only), with

\`\`\`sh
bash npm/build.sh && cargo build --release -p rcall-server
node bench/mesh/run.mjs ${MAX} ${MIN}     # re-execs itself under \`unshare -n\` (root)
\`\`\`

For each size, N users (one page each, own browser context, all in one headless Chromium with the fake
640x480 camera) join a group created with \`/group/create.json\`: the first calls
\`callInGroup\` (audio+video, \`{frameRate: 'FPS_15', resolution: 'W640_H480'}\`), the others accept at once.
The SDK builds a full mesh: every page encodes its camera once per peer connection (N−1 encodes) and decodes
N−1 streams, so the one browser runs N·(N−1) encodes and decodes. After every remote video decodes and a
${RAMP_MS / 1000} s ramp-up, a ${WINDOW_MS / 1000} s window measures: CPU of the whole Chromium process tree
(utime+stime from \`/proc\`, 100 % = one core, ${os.cpus().length} cores in all; "per page" = that / N, what one participant
would cost on its own machine, roughly), RSS at the end, each page's send/receive
bitrate (the SDK's \`onRTCStateReport\`: \`iceCandidatePair.bitrateSend/bitrateRecv\` summed over its peer
connections; median over pages), the decoded frame rate per remote stream (\`framesDecoded\` of the inbound
video over the window, averaged over a page's streams; median over pages and the worst page), the rendered
frame rate of every remote \`<video>\` fed by \`track.play(el)\` (\`requestVideoFrameCallback\`; headless Chromium
composites fewer frames than it decodes), and the received width (the SDK's \`receivers[].frameWidth\`).
"setup s" is \`callInGroup()\` → every page decoding every remote video. The fake camera sends ~15 fps.
"load avg" is the machine's 1-minute load average at the end of the window (this benchmark's own
browser included; anything else running on the machine skews the figures).

${table}
${notes.length ? '\n' + notes.join('\n') + '\n' : ''}
${conclusion}
`;
  const file = writeBenchmarkSection('Group mesh', body);
  console.log(`\nwrote section "Group mesh" of ${path.relative(ROOT, file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
