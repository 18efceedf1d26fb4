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
//   node bench/mesh/run.mjs [MAX=6] [MIN=2]                  the mesh (P2P), as before
//   node bench/mesh/run.mjs --sfu [MAX=8] [MIN=2]            through a private Janus (SFU mode)
//   node bench/mesh/run.mjs --both [MAX=8] [MIN=2]           both, side by side (mesh then SFU per size)
//   node bench/mesh/run.mjs --sfu --audio [MAX=16] [MIN=16]  an audio-only group through Janus
// (MODE=mesh|sfu|both and AUDIO=1 do the same as the flags.)
//
// Re-executes itself inside `unshare -n` (loopback only; needs root) unless RCALL_NO_NETNS=1; SFU
// mode needs that namespace (it adds a veth pair for Janus's ICE: tests/e2e/janus.mjs, shared with
// tests/e2e/sfu.test.mjs). A size "holds" when every remote video stream on every page decodes
// ≥ 10 fps over the window (audio: every remote audio stream receives ≥ 40 of Opus's 50 packets/s,
// and the pages that play their remote audio conceal ≤ 10 % of each stream's samples);
// the script prints the largest size that holds per mode.
// Audio only: 16 pages in one browser on 2 cores play out 240 remote streams (16 fake output
// devices, 16 mixers), 16 times what one participant's machine plays; on this host that playout
// alone takes ~70 % of the machine (RCALL_BENCH_THREADS=1 prints CPU per process type and thread)
// and starves everything else. So by default only the first 4 pages play their remote audio (each a
// whole participant's receive path: 15 streams decoded, mixed, played) and the other 12 receive
// every stream without a sink (transport only, their packets still counted);
// RCALL_BENCH_LISTENERS=k changes the count (16: every page plays, the old measurement).
// Writes the table to BENCHMARKS.md (RCALL_BENCH_NO_WRITE=1: don't): mesh alone → section "Group
// mesh" (its "### Conclusion" subsection is kept: written by hand from the numbers); --sfu/--both →
// section "Group calls through Janus (SFU)", subsection "### Video" or "### Audio only" (the other
// subsection and the hand-written "### Verdict" are kept).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureNetns, median, quantile, fmt, mdTable, writeBenchmarkSection, keptNotes, machineInfo, loadAvg, ROOT } from '../lib.mjs';
import { APP_KEY, SDK_DIR, SERVER_BIN, startServer, getToken, createGroup, launchBrowser, requireFile, sleep, uid, privateNetns } from '../../tests/e2e/helpers.mjs';
import { addVeth, startJanus } from '../../tests/e2e/janus.mjs';

ensureNetns();

const FLAGS = new Set(process.argv.slice(2).filter((a) => a.startsWith('--')));
const POS = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const MODE = FLAGS.has('--both') ? 'both' : FLAGS.has('--sfu') ? 'sfu' : (process.env.MODE || 'mesh');
if (!['mesh', 'sfu', 'both'].includes(MODE)) throw new Error(`MODE must be mesh, sfu or both, not ${MODE}`);
const AUDIO = FLAGS.has('--audio') || process.env.AUDIO === '1';
const MODES = MODE === 'both' ? ['mesh', 'sfu'] : [MODE];
const HOLD_FPS = 10;
const HOLD_AUDIO_PPS = 40;
/** Most of a played stream's samples that may be concealment (lost or late audio) for a size to
 *  hold: stricter than the packet rule (which lets a fifth go missing), well above the ~2 % a
 *  3-member audio call conceals here (fake microphones, a shared machine). */
const HOLD_AUDIO_CONCEALED = 0.1;
/** Pages that play their remote audio (audio only; see the header). */
const AUDIO_LISTENERS = Number.parseInt(process.env.RCALL_BENCH_LISTENERS || '4', 10);
/** Print the browser's CPU per process type and thread over the window. */
const THREADS = process.env.RCALL_BENCH_THREADS === '1';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, '../call-setup/pages');
const LIMIT = AUDIO ? 16 : 8;
const DEF_MAX = AUDIO ? 16 : MODE === 'mesh' ? 6 : 8;
const MAX = Math.min(LIMIT, Math.max(2, parseInt(POS[0] || String(DEF_MAX), 10) || DEF_MAX));
const MIN = Math.min(MAX, Math.max(2, parseInt(POS[1] || '2', 10) || 2));
const RAMP_MS = 5000;
const WINDOW_MS = 10000;
const CLK_TCK = 100; // USER_HZ on Linux

// ------------------------------------------------------------------------------------------------
// CPU of the Chromium process tree: every descendant of this node process except the server.

/** A `/proc/…/stat` file: the name in parentheses, and the fields after it (`rest[1]` ppid,
 *  `rest[11]` + `rest[12]` utime + stime). */
function procStat(file) {
  const stat = fs.readFileSync(file, 'utf8');
  return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), rest: stat.slice(stat.lastIndexOf(')') + 2).split(' ') };
}

const ticksOf = (rest) => Number(rest[11]) + Number(rest[12]);

function procChildren() {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const { rest } = procStat(`/proc/${d}/stat`);
      const ppid = Number(rest[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {}
  }
  return kids;
}

/** Descendants of this process except the processes in `exclude` (servers, Janus) and theirs. */
function browserPids(exclude) {
  const ex = new Set([].concat(exclude));
  const kids = procChildren();
  const out = [];
  const walk = (pid) => {
    for (const k of kids.get(pid) || []) {
      if (ex.has(k)) continue;
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
      ticks += ticksOf(procStat(`/proc/${pid}/stat`).rest);
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      rssKb += Number((status.match(/VmRSS:\s+(\d+)/) || [])[1] || 0);
    } catch {}
  }
  return { ticks, rssKb };
}

/** RCALL_BENCH_THREADS=1: CPU ticks per (process type, thread name) of `pids`, to see where a
 *  saturated browser's time goes (renderer vs network service vs audio service, and which thread). */
function sampleThreads(pids) {
  const out = new Map();
  for (const pid of pids) {
    let type = 'browser';
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/);
      const t = (cmd.find((a) => a.startsWith('--type=')) || '').slice(7);
      const sub = (cmd.find((a) => a.startsWith('--utility-sub-type=')) || '').slice(19).replace(/\.mojom\..*$/, '');
      if (t) type = sub ? `${t}:${sub}` : t;
      for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
        const { comm, rest } = procStat(`/proc/${pid}/task/${tid}/stat`);
        const key = `${type} / ${comm.replace(/[0-9]+$/, '#')}`;
        out.set(key, (out.get(key) || 0) + ticksOf(rest));
      }
    } catch {}
  }
  return out;
}

function printThreads(t1, t2, wMs) {
  const rows = [...t2].map(([k, v]) => [k, ((v - (t1.get(k) || 0)) / CLK_TCK) / (wMs / 1000) * 100]).filter(([, v]) => v > 0.5);
  rows.sort((a, b) => b[1] - a[1]);
  const byType = new Map();
  for (const [k, v] of rows) { const t = k.split(' / ')[0]; byType.set(t, (byType.get(t) || 0) + v); }
  console.log('  CPU by process type: ' + [...byType].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(1)} %`).join(', '));
  for (const [k, v] of rows.slice(0, 30)) console.log(`    ${v.toFixed(1).padStart(6)} %  ${k}`);
}

// ------------------------------------------------------------------------------------------------

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

async function runMesh(browser, server, n, mode, exclude, janus) {
  const tag = uid(`${mode}${n}`);
  const ids = Array.from({ length: n }, (_, i) => `${tag}-u${i + 1}`);
  const groupId = `${tag}-group`;
  await createGroup(server.url, groupId, ids, groupId);
  const pages = [];
  const notes = [];
  try {
    for (const id of ids) pages.push(await openUser(browser, server, id));
    // Audio only: the first AUDIO_LISTENERS pages play their remote audio (see the header).
    const listeners = AUDIO ? Math.min(n, AUDIO_LISTENERS) : n;
    for (const [i, p] of pages.entries()) if (i >= listeners) await p.evaluate(() => { window.B.playAudio = false; });
    const [caller, ...callees] = pages;
    const t0 = Date.now();
    const res = await caller.evaluate(([g, u, m]) => window.B.callInGroup(g, u, m), [groupId, ids.slice(1), AUDIO ? 1 : 2]);
    if (res.code !== 10000) throw new Error(`callInGroup → ${JSON.stringify(res)}`);
    await Promise.all(callees.map((p) => waitFor(p, 'onSession', () => window.B.C.firstEvent('onSession'), null, 15000)));
    await Promise.all(callees.map((p) => p.evaluate(() => window.B.accept())));
    // Every page decodes every other participant's video.
    const setupTimeout = 20000 + 5000 * n;
    const ok = await Promise.all(pages.map(async (p) => {
      const others = ids.filter((u) => u !== p.userId);
      try {
        if (AUDIO) {
          // Audio: n−1 inbound audio streams, each with packets.
          await waitFor(p, `remote audio from all of ${others.join(', ')}`, async (k) => {
            const d = await window.B.C.decoded();
            return Object.values(d.audioPackets).filter((x) => x > 0).length >= k;
          }, others.length, setupTimeout);
        } else {
          await waitFor(p, `remote video from all of ${others.join(', ')}`,
            (o) => o.every((u) => (window.B.C.videos['remote-' + u] || {}).frames > 0), others, setupTimeout);
        }
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
    const pids = browserPids(exclude);
    const janusPid = janus && janus.proc ? [janus.proc.pid] : [];
    const j1 = sampleCpu(janusPid);
    await Promise.all(pages.map((p) => p.evaluate(() => { window.B.reports = []; window.B.collectReports = true; })));
    const f1 = await Promise.all(pages.map(videoFrames));
    const d1 = await Promise.all(pages.map((p) => p.evaluate(() => window.B.C.decoded())));
    const c1 = sampleCpu(pids);
    const t1 = THREADS ? sampleThreads(pids) : null;
    const w0 = Date.now();
    await sleep(WINDOW_MS);
    const c2 = sampleCpu(browserPids(exclude));
    if (THREADS) printThreads(t1, sampleThreads(browserPids(exclude)), Date.now() - w0);
    const j2 = sampleCpu(janusPid);
    const wMs = Date.now() - w0;
    const f2 = await Promise.all(pages.map(videoFrames));
    const d2 = await Promise.all(pages.map((p) => p.evaluate(() => window.B.C.decoded())));
    const reports = await Promise.all(pages.map((p) => p.evaluate(() => { window.B.collectReports = false; return window.B.reports; })));
    const cpuPct = ((c2.ticks - c1.ticks) / CLK_TCK) / (wMs / 1000) * 100;
    const janusCpuPct = janus ? ((j2.ticks - j1.ticks) / CLK_TCK) / (wMs / 1000) * 100 : NaN;
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
      // The counters' own interval (the page's clock between its two reads), not the CPU window's.
      const sMs = d2[i].at - d1[i].at;
      const decodedFps = d2[i].streams ? ((d2[i].framesDecoded - d1[i].framesDecoded) * 1000) / sMs / d2[i].streams : NaN;
      const dropped = d2[i].framesDropped - d1[i].framesDropped;
      // Per remote stream (a stream that appeared in the window counts from 0).
      const streamFps = Object.keys(d2[i].perStream).map((k) => ((d2[i].perStream[k] - (d1[i].perStream[k] || 0)) * 1000) / sMs);
      const audioPps = Object.keys(d2[i].audioPackets).map((k) => ((d2[i].audioPackets[k] - (d1[i].audioPackets[k] || 0)) * 1000) / sMs);
      // Share of the played-out samples that were concealed (lost or late), per stream, in the window.
      const concealed = Object.keys(d2[i].audioSamples).map((k) => {
        const total = d2[i].audioSamples[k] - (d1[i].audioSamples[k] || 0);
        return total > 0 ? (d2[i].audioConcealed[k] - (d1[i].audioConcealed[k] || 0)) / total : NaN;
      }).filter(Number.isFinite);
      return { pcNames: [...byPc.keys()].sort(), streamFps, audioPps, concealed, send, recv, fps, decodedFps, dropped, sdkFps: median(sdkFps), width: median(widths), reportsPerPcPerSec: rs.length / Math.max(1, byPc.size) / (wMs / 1000), pcs: byPc.size };
    });
    const allFps = perPage.flatMap((p) => p.fps);
    const streamFps = perPage.flatMap((p) => p.streamFps);
    // Only streams that carry media: the mesh may keep an idle inbound stream (0 fps) of a
    // replaced connection; a stream that should be there and is not shows as fewer streams.
    const audioPps = perPage.flatMap((p) => p.audioPps).filter((x) => x > 0);
    const expected = n * (n - 1);
    const holds = allUp && (AUDIO
      ? audioPps.length >= expected && Math.min(...audioPps) >= HOLD_AUDIO_PPS
        && perPage.slice(0, listeners).every((p) => p.concealed.length === n - 1 && Math.max(...p.concealed) <= HOLD_AUDIO_CONCEALED)
      : streamFps.filter((x) => x >= HOLD_FPS).length >= expected);
    return {
      pcNames: perPage[0].pcNames, remoteDescriptionsInWindow: d2.map((d, i) => d.remoteDescriptions - d1[i].remoteDescriptions), audioStreamsPerPage: perPage.map((p) => p.audioPps.filter((x) => x > 0).length),
      n, mode, allUp, holds, setupMs, cpuPct, janusCpuPct, load,
      streamFpsMin: streamFps.length ? quantile(streamFps, 0) : NaN,
      streamFpsLowN: streamFps.length >= expected ? streamFps.sort((a, b) => b - a)[expected - 1] : 0,
      concealedByListener: perPage.slice(0, listeners).map((p) => p.concealed.map((x) => Math.round(x * 1000) / 10)),
      audioConcealedMedian: median(perPage.flatMap((p) => p.concealed)), audioConcealedMax: Math.max(...perPage.flatMap((p) => p.concealed)), audioPlayedStreams: perPage.flatMap((p) => p.concealed).length, listeners,
      audioStreams: audioPps.length, audioPpsMin: audioPps.length ? Math.min(...audioPps) : NaN, audioPpsMedian: median(audioPps), rssMb: c2.rssKb / 1024, procs: pids.length, notes,
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
  if (MODES.includes('sfu') && !privateNetns()) {
    console.error('SFU mode adds a veth pair for Janus: run it in its own network namespace (without RCALL_NO_NETNS)');
    process.exit(2);
  }
  const servers = {};
  let janus = null;
  let removeVeth = null;
  const rows = [];
  let browser;
  try {
    if (MODES.includes('mesh')) servers.mesh = await startServer({ webDir: PAGES, env: { RUST_LOG: 'warn' } });
    if (MODES.includes('sfu')) {
      removeVeth = addVeth();
      janus = await startJanus({ debugLevel: 3 });
      servers.sfu = await startServer({ webDir: PAGES, env: { RUST_LOG: 'warn' }, extraArgs: janus.serverArgs });
    }
    const exclude = Object.values(servers).map((s) => s.proc.pid).concat(janus ? [janus.proc.pid] : []);
    browser = await launchBrowser();
    // Idle browser baseline.
    const idle0 = sampleCpu(browserPids(exclude));
    await sleep(3000);
    const idle1 = sampleCpu(browserPids(exclude));
    console.log(`idle browser: ${fmt(((idle1.ticks - idle0.ticks) / CLK_TCK / 3) * 100)} % CPU, ${fmt(idle1.rssKb / 1024)} MB RSS`);
    for (let n = MIN; n <= MAX; n++) {
      for (const mode of MODES) {
        let r;
        try {
          r = await runMesh(browser, servers[mode], n, mode, exclude, mode === 'sfu' ? janus : null);
        } catch (e) {
          r = { n, mode, error: e.message, load: loadAvg() };
        }
        rows.push(r);
        console.log(JSON.stringify(r));
      }
    }
    for (const mode of MODES) {
      console.log(`largest group that holds (${mode}, ${AUDIO ? `every remote audio stream ≥ ${HOLD_AUDIO_PPS} packets/s, ≤ ${HOLD_AUDIO_CONCEALED * 100} % concealed on the ${AUDIO_LISTENERS} pages that play` : `every remote video stream ≥ ${HOLD_FPS} fps decoded`}): ` +
        `${held(rows, mode)} of ${MIN}–${MAX}`);
    }
    if (MODE === 'mesh' && !AUDIO) report(rows, browser.version());
    else reportSfu(rows, browser.version());
  } finally {
    await browser?.close().catch(() => {});
    for (const s of Object.values(servers)) await s.stop();
    await janus?.stop();
    removeVeth?.();
  }
}

/** "N (held at a, b, …)": the largest size that held in `mode`, and every size that did (on a
 *  shared machine a size can fail between two that hold). */
function held(rows, mode) {
  const ok = rows.filter((r) => r.mode === mode && r.holds).map((r) => r.n);
  return ok.length ? `${Math.max(...ok)} (held at ${ok.join(', ')})` : 'none';
}

/** The `### ` subsections of section `## <title>` whose heading `pick`s, in order, each as
 *  `### …` text (to the next `###`). */
function subsections(title, pick) {
  try {
    const text = fs.readFileSync(path.join(ROOT, 'BENCHMARKS.md'), 'utf8');
    const sec = text.split(/^## /m).find((x) => x.startsWith(`${title}\n`)) || '';
    return sec.split(/^### /m).slice(1).filter(pick).map((x) => `### ${x.trim()}`);
  } catch { return []; }
}

/** The text of subsection `### <sub>` of section `## <title>`, or ''. */
const keptSubsection = (title, sub) => subsections(title, (x) => x.startsWith(`${sub}\n`))[0] || '';

const SFU_TITLE = 'Group calls through Janus (SFU)';

function reportSfu(rows, version) {
  const largest = (mode) => held(rows, mode);
  let table;
  if (AUDIO) {
    table = mdTable(
      ['mode', 'participants', 'pages playing', 'remote audio streams up', 'holds', 'browser CPU', 'Janus CPU', 'RSS MB', 'send kbit/s per page', 'recv kbit/s per page', 'audio packets/s per stream (median / worst)', 'concealed samples, played streams (median / worst)', 'setup s', 'load avg'],
      rows.map((r) => r.error
        ? [r.mode, r.n, '', 'error', 'no', r.error.slice(0, 100), '', '', '', '', '', '', '', fmt(r.load, 1)]
        : [r.mode, r.n, `${r.listeners}`, `${r.audioStreams}/${r.n * (r.n - 1)}${r.allUp ? '' : ' (!)'}`, r.holds ? 'yes' : 'no', `${fmt(r.cpuPct)} %`, `${fmt(r.janusCpuPct)} %`, fmt(r.rssMb), fmt(r.sendKbps), fmt(r.recvKbps),
          `${fmt(r.audioPpsMedian, 1)} / ${fmt(r.audioPpsMin, 1)}`, `${fmt(r.audioConcealedMedian * 100, 1)} % / ${fmt(r.audioConcealedMax * 100, 1)} %`, fmt(r.setupMs / 1000, 1), fmt(r.load, 1)]),
      ['l', 'r', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    );
  } else {
    table = mdTable(
      ['mode', 'participants', 'remote videos up', 'holds (all ≥ 10 fps)', 'browser CPU', 'CPU per page', 'Janus CPU', 'RSS MB', 'send kbit/s per page', 'recv kbit/s per page', 'decoded fps per stream (median page / worst stream)', 'rendered fps (median / min)', 'recv width', 'setup s', 'load avg'],
      rows.map((r) => r.error
        ? [r.mode, r.n, 'error', 'no', r.error.slice(0, 100), '', '', '', '', '', '', '', '', '', fmt(r.load, 1)]
        : [r.mode, r.n, `${r.streams}/${r.n * (r.n - 1)}${r.allUp ? '' : ' (!)'}`, r.holds ? 'yes' : 'no', `${fmt(r.cpuPct)} %`, `${fmt(r.cpuPct / r.n)} %`, r.mode === 'sfu' ? `${fmt(r.janusCpuPct)} %` : '–', fmt(r.rssMb), fmt(r.sendKbps), fmt(r.recvKbps),
          `${fmt(r.decodedFps, 1)} / ${fmt(r.streamFpsLowN, 1)}`, `${fmt(r.fpsMedian, 1)} / ${fmt(r.fpsMin, 1)}`, fmt(r.width), fmt(r.setupMs / 1000, 1), fmt(r.load, 1)]),
      ['l', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    );
  }
  const verdictLine = MODES.map((m) => `${m}: ${largest(m)}`).join(', ');
  console.log(`\n${SFU_TITLE} (${AUDIO ? 'audio only' : 'video'}), ${machineInfo(version)}; window ${WINDOW_MS / 1000} s after ${RAMP_MS / 1000} s ramp-up\n`);
  console.log(table);
  const notes = rows.filter((r) => r.notes && r.notes.length).map((r) => `- ${r.mode} ${r.n}: ${r.notes.join('; ')}`);
  if (notes.length) console.log('\n' + notes.join('\n'));
  console.log(`\nlargest group that holds, ${MIN}–${MAX}: ${verdictLine}`);
  if (process.env.RCALL_BENCH_NO_WRITE === '1') return;

  const date = new Date().toISOString().slice(0, 10);
  const args = [MODE === 'both' ? '--both' : '--sfu', AUDIO ? '--audio' : '', MAX, MIN].filter((x) => x !== '').join(' ');
  const sub = `### ${AUDIO ? 'Audio only' : 'Video'}

Measured ${date} (\`node bench/mesh/run.mjs ${args}\`), ${machineInfo(version)}. Largest group that holds
(${AUDIO ? `every remote audio stream ≥ ${HOLD_AUDIO_PPS} packets/s, ≤ ${HOLD_AUDIO_CONCEALED * 100} % concealed where played` : `every remote video stream ≥ ${HOLD_FPS} fps decoded`}), ${MIN}–${MAX}: **${verdictLine}**.
${AUDIO ? `
The first ${AUDIO_LISTENERS} pages play their remote audio; the others receive every stream without
playing it: 16 pages playing 240 streams on one 2-core machine is 16 participants' playout on one
box, and that playout alone took ~70 % of this machine (\`RCALL_BENCH_THREADS=1\`).
\`RCALL_BENCH_LISTENERS=16\` measures with every page playing.
` : ''}
${table}
${notes.length ? '\n' + notes.join('\n') + '\n' : ''}`;
  const video = AUDIO ? keptSubsection(SFU_TITLE, 'Video') : sub;
  const audio = AUDIO ? sub : keptSubsection(SFU_TITLE, 'Audio only');
  const verdict = keptSubsection(SFU_TITLE, 'Verdict') || '### Verdict\n\n_To be written from the numbers above._';
  // Hand-written notes of each session's fixes and runs ("### Session …"), kept like the verdict.
  const sessions = subsections(SFU_TITLE, (x) => x.startsWith('Session '));
  const body = `
Same calls as "Group mesh" (one page per participant, all in one headless Chromium, fake 640x480
camera at ~15 fps, \`callInGroup\` then every callee accepts; the same 10 s window after a 5 s
ramp-up), with the server in SFU mode: a private Janus 1.1 (videoroom, \`string_ids\`, admin
key, HTTP API with \`api_secret\` on 127.0.0.1, ICE on a veth pair that exists only in the
benchmark's network namespace: \`tests/e2e/janus.mjs\`, shared with \`tests/e2e/sfu.test.mjs\`)
and \`rcall-server --janus …\`. \`--both\` runs the mesh and the SFU alternately per size in the
same browser. Each page has one publishing connection (video simulcast) and one receiving
connection. "Janus CPU" is the Janus process over the window (100 % = one core); "browser CPU" is
the whole Chromium tree (all N participants on this 2-core machine). "decoded fps … worst stream"
is the (N·(N−1))-th best per-stream \`framesDecoded\` rate over every page's inbound video: a size
"holds" when it is ≥ ${HOLD_FPS} and every page decoded every remote video at setup. "load avg" is
the 1-minute load average at the end of the window (the machine is shared).

\`\`\`sh
bash npm/build.sh && cargo build --release -p rcall-server
node bench/mesh/run.mjs --both 8 2           # mesh and SFU side by side, 2–8 participants
node bench/mesh/run.mjs --sfu --audio 16 16  # audio-only group of 16 through Janus
\`\`\`

${video}

${audio}

${verdict}
${sessions.map((x) => `\n${x}\n`).join('')}`;
  const file = writeBenchmarkSection(SFU_TITLE, body, { after: 'Group mesh' });
  console.log(`\nwrote section "${SFU_TITLE}" of ${path.relative(ROOT, file)}`);
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
