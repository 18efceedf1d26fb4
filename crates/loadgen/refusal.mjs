// A busy refusal's cost in isolation (issue 15, session 17; crates/loadgen/refusal.sh runs it):
// against one cluster node whose only login slot is held by a login stuck on a paused Redis,
// N `Authenticate`s (CONC at a time, each a new WebSocket) are answered busy; prints the node's
// CPU (utime + stime from /proc) per refusal.
//   node crates/loadgen/refusal.mjs PORT NODE_PID N CONC HOLDER_TOKEN
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WebSocket = createRequire(path.join(root, 'package.json'))('ws');
const [port, pid, n, conc, token] = process.argv.slice(2);
const CLK_TCK = 100;
const cpu = () => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
};
// `ClientFrame { authenticate: Authenticate { token, device_id, instance } }`, by hand.
const varint = (v) => { const o = []; while (v >= 128) { o.push((v & 127) | 128); v >>>= 7; } o.push(v); return Buffer.from(o); };
const str = (tag, s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from([(tag << 3) | 2]), varint(b.length), b]); };
const auth = (tok, dev) => {
  const a = Buffer.concat([str(1, tok), str(2, dev), Buffer.from([4 << 3, 1])]);
  return Buffer.concat([Buffer.from([(1 << 3) | 2]), varint(a.length), a]);
};
// Resolves true when the answer was a busy refusal (its message says so).
const attempt = (dev) => new Promise((resolve) => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  let busy = false;
  ws.on('open', () => ws.send(auth('not-checked-when-busy', dev)));
  ws.on('message', (m) => { busy ||= Buffer.from(m).toString('latin1').includes('busy'); });
  ws.on('close', () => resolve(busy));
  ws.on('error', () => resolve(false));
});

const holder = new WebSocket(`ws://127.0.0.1:${port}/ws`);
await new Promise((r) => holder.on('open', r));
holder.send(auth(token, 'holder'));
await new Promise((r) => setTimeout(r, 300));
let next = 0, busy = 0, other = 0;
const c0 = cpu(), t0 = Date.now();
await Promise.all(Array.from({ length: Number(conc) }, async () => {
  while (next < Number(n)) { next++; if (await attempt(`d${next}`)) busy++; else other++; }
}));
const used = cpu() - c0;
console.log(`refusals ${n} (busy ${busy}, other ${other}) in ${((Date.now() - t0) / 1000).toFixed(2)} s; `
  + `node CPU ${used.toFixed(2)} s = ${(used / Number(n) * 1e6).toFixed(1)} us per refusal`);
holder.terminate();
process.exit(other === 0 ? 0 : 1);
