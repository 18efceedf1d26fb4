// How long the SDK's wasm takes to become usable in Chromium once its bytes are in memory (the
// download excluded): wasm-bindgen's init (compile + instantiate + the module's start function)
// → ready, each run in a fresh browser so no compiled-module cache helps (V8 shares compiled
// modules between the pages of one process). Chromium compiles wasm functions lazily (on first
// call); the second figure forces eager compilation of the whole module, the worst case.
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
</script>`;
const srv = http.createServer((q, r) => {
  if (q.url === '/') { r.setHeader('content-type', 'text/html'); r.end(page); return; }
  const f = path.join(dist, path.normalize(q.url).replace(/^[/\\]+/, ''));
  if (!f.startsWith(dist) || !fs.existsSync(f)) { r.statusCode = 404; r.end(); return; }
  r.setHeader('content-type', f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
  r.end(fs.readFileSync(f));
}).listen(0, '127.0.0.1');
await new Promise((r) => srv.once('listening', r));

async function measure(runs, extraArgs) {
  const ms = [];
  for (let i = 0; i <= runs; i++) {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium', headless: false, args: ['--headless=new', '--no-sandbox', ...extraArgs],
    });
    const p = await browser.newPage();
    await p.goto(`http://127.0.0.1:${srv.address().port}/`);
    await p.waitForFunction(() => typeof window.measure === 'function');
    const t = await p.evaluate(() => window.measure());
    if (i > 0) ms.push(t); // the first run warms the machine's file cache up
    await browser.close();
  }
  return ms;
}
const runs = +process.argv[2] || 10;
const lazy = await measure(runs, []);
const eager = await measure(runs, ['--js-flags=--no-wasm-lazy-compilation']);
srv.close();
const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(', ');
console.log(`rcall_sdk_bg.wasm ${fs.statSync(path.join(dist, 'esm/rcall_sdk_bg.wasm')).size} B, ${runs} fresh browsers each`);
console.log(`init → ready (Chromium's default, lazy compilation): median ${median(lazy).toFixed(1)} ms (${fmt(lazy)})`);
console.log(`init → ready (eager compilation of every function): median ${median(eager).toFixed(1)} ms (${fmt(eager)})`);
