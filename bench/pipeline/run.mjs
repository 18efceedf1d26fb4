// How long a sender's media pipeline takes to start on an already connected peer connection, in
// one page (no network, no signalling), until the receiving <video> shows its first frame. This
// is the floor under rcall's accept() → first frame: with pre-connected links nothing else is
// left after accept(). Each variant isolates one choice rcall makes (see BENCHMARKS.md).
//   unshare -n bash -c 'ip link set lo up; node bench/pipeline/run.mjs [runs]'
import http from 'node:http'; import fs from 'node:fs';
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const here = path.dirname(fileURLToPath(import.meta.url));
// The warm-up worker is web-rtc's own (the raw string WORKER_JS in warmup.rs), not a copy.
const warmupRs = fs.readFileSync(path.join(here, '../../crates/web-rtc/src/warmup.rs'), 'utf8');
const workerJs = /const WORKER_JS: &str = r#"([\s\S]*?)"#;/.exec(warmupRs)[1];
const srv = http.createServer((q, r) => {
  if (q.url === '/warmup-worker.js') { r.setHeader('content-type', 'text/javascript'); r.end(workerJs); return; }
  r.setHeader('content-type', 'text/html'); r.end(fs.readFileSync(path.join(here, 'page.html')));
}).listen(0, '127.0.0.1');
await new Promise(r => srv.once('listening', r));
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: false, args: ['--headless=new','--no-sandbox','--use-fake-ui-for-media-stream','--use-fake-device-for-media-stream','--allow-loopback-in-peer-connection','--autoplay-policy=no-user-gesture-required'] });
const p = await b.newPage(); await p.goto(`http://127.0.0.1:${srv.address().port}/`);
const variants = [
  ['running camera (15 fps): replaceTrack(track) on a pre-negotiated sendrecv transceiver', { mode: 'replace', fps: 15 }],
  ['… and start bitrate 1500 kbit/s in the remote descriptions (rcall)', { mode: 'replace', fps: 15, kbps: 1500 }],
  ['… and the camera still at its fast-start rate (ideal 30: the fake camera\'s 20 fps) (rcall\'s caller before warm-up)', { mode: 'replace', fps: 30, kbps: 1500 }],
  ['running camera: track attached up front, encodings inactive → active', { mode: 'inactive', fps: 15 }],
  ['running camera: the same sender\'s second start (it had sent before)', { mode: 'second', fps: 15, kbps: 1500 }],
  ['fresh camera (getUserMedia inside the timing) at 15 fps, replaceTrack', { mode: 'replace', fps: 15, fresh: true }],
  ['fresh camera at the fast-start rate + start bitrate 1500 (rcall\'s callee before warm-up)', { mode: 'replace', fps: 30, fresh: true, kbps: 1500 }],
  ['running camera, encoder warmed while ringing (gated blank track) + keyframe request (rcall\'s caller)', { mode: 'warm', fps: 30, kbps: 1500 }],
  ['fresh camera, encoder warmed while ringing + keyframe request (rcall\'s callee)', { mode: 'warm', fps: 30, fresh: true, kbps: 1500 }],
];
const N = +process.argv[2] || 8;
const res = variants.map(() => []);
for (let i = 0; i < N + 1; i++) for (const [k, [, o]] of variants.entries()) {
  const ms = Math.round(await p.evaluate((o) => run(o), o));
  if (i > 0) res[k].push(ms); // the first round warms the page up
}
const med = a => a.slice().sort((x, y) => x - y)[a.length >> 1];
console.log('| way to start sending | median ms | runs (ms) |\n|---|---:|---|');
for (const [k, [name]] of variants.entries()) console.log(`| ${name} | ${med(res[k])} | ${res[k].join(', ')} |`);
await b.close(); srv.close();
