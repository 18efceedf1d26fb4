// How long the SDK's wasm takes to become usable in Chromium once its bytes are in memory (the
// download excluded): wasm-bindgen's init (compile + instantiate + the module's start function)
// → ready, each run in a fresh browser so no compiled-module cache helps (V8 shares compiled
// modules between the pages of one process). Chromium compiles wasm functions lazily (on first
// call); the second figure forces eager compilation of the whole module, the worst case. The CDN
// build's rcall_bg.wasm is the unpacker carrying the module LZMA-compressed (crates/unpack): its
// figures add the unpacker's instantiation and `unpack()` (measured apart too) before the same init.
// Issue 13's goal is ≤ 30 ms. Needs `bash npm/build.sh` first.
//   node bench/wasm-init/run.mjs [runs]      (re-runs itself in a loopback-only namespace)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
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
</script>`;
const srv = http.createServer((q, r) => {
  if (q.url === '/') { r.setHeader('content-type', 'text/html'); r.end(page); return; }
  const f = path.join(dist, path.normalize(q.url).replace(/^[/\\]+/, ''));
  if (!f.startsWith(dist) || !fs.existsSync(f)) { r.statusCode = 404; r.end(); return; }
  r.setHeader('content-type', f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
  r.end(fs.readFileSync(f));
}).listen(0, '127.0.0.1');
await new Promise((r) => srv.once('listening', r));

async function measure(runs, extraArgs, fn = 'measure') {
  const ms = [];
  for (let i = 0; i <= runs; i++) {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium', headless: false, args: ['--headless=new', '--no-sandbox', ...extraArgs],
    });
    const p = await browser.newPage();
    await p.goto(`http://127.0.0.1:${srv.address().port}/`);
    await p.waitForFunction(() => typeof window.measure === 'function');
    const t = await p.evaluate((f) => window[f](), fn);
    if (i > 0) ms.push(t); // the first run warms the machine's file cache up
    await browser.close();
  }
  return ms;
}
const runs = +process.argv[2] || 10;
const lazy = await measure(runs, []);
const eager = await measure(runs, ['--js-flags=--no-wasm-lazy-compilation']);
const packed = await measure(runs, [], 'measurePacked');
srv.close();
const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(', ');
console.log(`rcall_sdk_bg.wasm ${fs.statSync(path.join(dist, 'esm/rcall_sdk_bg.wasm')).size} B, ${runs} fresh browsers each`);
console.log(`init → ready (Chromium's default, lazy compilation): median ${median(lazy).toFixed(1)} ms (${fmt(lazy)})`);
console.log(`init → ready (eager compilation of every function): median ${median(eager).toFixed(1)} ms (${fmt(eager)})`);
const cdn = path.join(dist, 'cdn/rcall_bg.wasm');
console.log(`CDN rcall_bg.wasm (packed) ${fs.statSync(cdn).size} B: unpack + init → ready (lazy): median ${median(packed.map(([a]) => a)).toFixed(1)} ms (${fmt(packed.map(([a]) => a))}), of which unpacker instantiate + unpack() median ${median(packed.map(([, b]) => b)).toFixed(1)} ms (${fmt(packed.map(([, b]) => b))})`);
