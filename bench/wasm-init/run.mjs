// How long the SDK's wasm takes to become usable in Chromium once its bytes are in memory (the
// download excluded): wasm-bindgen's init (compile + instantiate + the module's start function)
// → ready, each run in a fresh browser so no compiled-module cache helps (V8 shares compiled
// modules between the pages of one process). Chromium compiles wasm functions lazily (on first
// call); the second figure forces eager compilation of the whole module, the worst case. The CDN
// build's rcall_bg.wasm is the unpacker carrying the module LZMA-compressed (crates/unpack): its
// figures add the unpacker's instantiation and `unpack()` (measured apart too) before the same init.
// Issue 13's goal is ≤ 30 ms. Needs `bash npm/build.sh` first.
// Then, with the download included: the module from fetch to ready over a link of a given
// bandwidth (the server paces the gzip-compressed body, as a CDN would send it), the npm
// package's module (compiled while it streams in) against the CDN's packed file (unpacked once
// downloaded). RCALL_BENCH_MBITS=2,10,50 sets the bandwidths (Mbit/s; empty: skipped).
// RCALL_BENCH_PACKED=A.wasm,B.wasm compares packed files' unpack + init instead (see below).
//   node bench/wasm-init/run.mjs [runs]      (re-runs itself in a loopback-only namespace)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';
import { ROOT, ensureNetns, median } from '../lib.mjs';

ensureNetns();
const dist = path.join(ROOT, 'npm/dist');
if (!fs.existsSync(path.join(dist, 'esm/rcall_sdk_bg.wasm'))) {
  console.error('npm/dist/esm is missing: run bash npm/build.sh first');
  process.exit(2);
}
const page = `<!doctype html><script type="module">
  import init from '/esm/rcall_sdk.js';
  window.measure = async () => {
    const bytes = await (await fetch('/esm/rcall_sdk_bg.wasm')).arrayBuffer();
    const t = performance.now();
    await init({ module_or_path: bytes });
    return performance.now() - t;
  };
  // The CDN build's path (npm/src/cdn-entry.js), with the ESM glue: the same module inside.
  window.measurePacked = async () => {
    const bytes = await (await fetch('/cdn/rcall_bg.wasm')).arrayBuffer();
    const t = performance.now();
    const u = (await WebAssembly.instantiate(bytes)).instance.exports;
    const at = u.unpack();
    if (at < 0) throw new Error('unpack error ' + at);
    const unpacked = performance.now() - t;
    await init({ module_or_path: new Uint8Array(u.memory.buffer, at, u.unpacked_len()) });
    return [performance.now() - t, unpacked];
  };
  // Fetch → ready over a paced link (/slow/<kbit/s>/…): the npm package's way (instantiateStreaming
  // through the glue) and the CDN loader's.
  window.loadPlain = async (kbps) => {
    const t = performance.now();
    await init({ module_or_path: fetch('/slow/' + kbps + '/esm/rcall_sdk_bg.wasm') });
    return performance.now() - t;
  };
  window.loadPacked = async (kbps) => {
    const t = performance.now();
    const bytes = await (await fetch('/slow/' + kbps + '/cdn/rcall_bg.wasm')).arrayBuffer();
    const u = (await WebAssembly.instantiate(bytes)).instance.exports;
    const at = u.unpack();
    if (at < 0) throw new Error('unpack error ' + at);
    await init({ module_or_path: new Uint8Array(u.memory.buffer, at, u.unpacked_len()) });
    return performance.now() - t;
  };
</script>`;
const gzipped = new Map();
/** Sends `file` gzip-9 compressed at `kbps`, a slice every 5 ms. */
function paced(r, file, kbps) {
  if (!gzipped.has(file)) gzipped.set(file, zlib.gzipSync(fs.readFileSync(file), { level: 9 }));
  const body = gzipped.get(file);
  r.writeHead(200, { 'content-type': 'application/wasm', 'content-encoding': 'gzip', 'content-length': body.length });
  const slice = Math.max(1, Math.round((kbps * 1000 / 8) * 0.005));
  let at = 0;
  const tick = () => {
    r.write(body.subarray(at, at + slice));
    at += slice;
    if (at < body.length) setTimeout(tick, 5); else r.end();
  };
  tick();
}
const srv = http.createServer((q, r) => {
  if (q.url === '/') { r.setHeader('content-type', 'text/html'); r.end(page); return; }
  const slow = q.url.match(/^\/slow\/(\d+)(\/.*)$/);
  if (slow) { paced(r, path.join(dist, path.normalize(slow[2])), +slow[1]); return; }
  const f = path.join(dist, path.normalize(q.url).replace(/^[/\\]+/, ''));
  if (!f.startsWith(dist) || !fs.existsSync(f)) { r.statusCode = 404; r.end(); return; }
  r.setHeader('content-type', f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
  r.end(fs.readFileSync(f));
}).listen(0, '127.0.0.1');
await new Promise((r) => srv.once('listening', r));

async function measure(runs, extraArgs, fn = 'measure', arg = undefined) {
  const ms = [];
  for (let i = 0; i <= runs; i++) {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium', headless: false, args: ['--headless=new', '--no-sandbox', ...extraArgs],
    });
    const p = await browser.newPage();
    await p.goto(`http://127.0.0.1:${srv.address().port}/`);
    await p.waitForFunction(() => typeof window.measure === 'function');
    const t = await p.evaluate(([f, a]) => window[f](a), [fn, arg]);
    if (i > 0) ms.push(t); // the first run warms the machine's file cache up
    await browser.close();
  }
  return ms;
}
const runs = +process.argv[2] || 10;
// RCALL_BENCH_PACKED=A.wasm,B.wasm: only the CDN path, for each packed file in turn (three rounds,
// alternating), to compare unpackers in one run: each file is served as cdn/rcall_bg.wasm, so
// each must carry the module npm/dist/esm's glue expects. npm/dist/cdn is restored after.
if (process.env.RCALL_BENCH_PACKED) {
  const cdnFile = path.join(dist, 'cdn/rcall_bg.wasm');
  const kept = fs.readFileSync(cdnFile);
  try {
    for (let round = 1; round <= 3; round++) {
      for (const f of process.env.RCALL_BENCH_PACKED.split(',')) {
        fs.copyFileSync(f, cdnFile);
        const t = await measure(runs, [], 'measurePacked');
        console.log(`round ${round} ${f}: unpack + init → ready median ${median(t.map(([a]) => a)).toFixed(1)} ms, of which instantiate + unpack() ${median(t.map(([, b]) => b)).toFixed(1)} ms`);
      }
    }
  } finally {
    fs.writeFileSync(cdnFile, kept);
  }
  srv.close();
  process.exit(0);
}
const lazy = await measure(runs, []);
const eager = await measure(runs, ['--js-flags=--no-wasm-lazy-compilation']);
const packed = await measure(runs, [], 'measurePacked');
const mbits = (process.env.RCALL_BENCH_MBITS ?? '2,10,50').split(',').filter(Boolean).map(Number);
const links = [];
for (const m of mbits) {
  links.push([m, await measure(runs, [], 'loadPlain', m * 1000), await measure(runs, [], 'loadPacked', m * 1000)]);
}
srv.close();
const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(', ');
console.log(`rcall_sdk_bg.wasm ${fs.statSync(path.join(dist, 'esm/rcall_sdk_bg.wasm')).size} B, ${runs} fresh browsers each`);
console.log(`init → ready (Chromium's default, lazy compilation): median ${median(lazy).toFixed(1)} ms (${fmt(lazy)})`);
console.log(`init → ready (eager compilation of every function): median ${median(eager).toFixed(1)} ms (${fmt(eager)})`);
const cdn = path.join(dist, 'cdn/rcall_bg.wasm');
console.log(`CDN rcall_bg.wasm (packed) ${fs.statSync(cdn).size} B: unpack + init → ready (lazy): median ${median(packed.map(([a]) => a)).toFixed(1)} ms (${fmt(packed.map(([a]) => a))}), of which unpacker instantiate + unpack() median ${median(packed.map(([, b]) => b)).toFixed(1)} ms (${fmt(packed.map(([, b]) => b))})`);
const gz = (f) => zlib.gzipSync(fs.readFileSync(path.join(dist, f)), { level: 9 }).length;
for (const [m, plain, pk] of links) {
  console.log(`${m} Mbit/s, fetch → ready: npm module (${gz('esm/rcall_sdk_bg.wasm')} B gzip, compiled while streaming) median ${median(plain).toFixed(1)} ms (${fmt(plain)}); CDN packed (${gz('cdn/rcall_bg.wasm')} B gzip, unpacked after the download) median ${median(pk).toFixed(1)} ms (${fmt(pk)})`);
}
