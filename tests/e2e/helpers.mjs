// Shared pieces of the e2e tests: the real rcall-server (release build, or RCALL_SERVER_BIN: CI
// runs its debug build) on 127.0.0.1:0, signed tokens from its Server API, headless Chromium via
// playwright-core, and a Client wrapper around one harness page (tests/e2e/pages) per user.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { before, after, afterEach } from 'node:test';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PAGES_DIR = path.join(ROOT, 'tests/e2e/pages');
export const SDK_DIR = process.env.RCALL_SDK_DIR || path.join(ROOT, 'npm/dist/cdn');
export const SERVER_BIN = process.env.RCALL_SERVER_BIN || path.join(ROOT, 'target/release/rcall-server');
export const OUT_DIR = path.join(ROOT, 'tests/out');

export const APP_KEY = 'e2e-app-key';
export const APP_SECRET = 'e2e-app-secret-0123456789';

// CallLib constants (spec A.8 / E), used to check the values the SDK exposes too.
export const SUCCESS = 10000;
export const MediaType = { AUDIO: 1, AUDIO_VIDEO: 2 };
export const EndReason = {
  CANCEL: 1, REJECT: 2, HANGUP: 3, BUSY_LINE: 4, REMOTE_CANCEL: 11, REMOTE_REJECT: 12, REMOTE_HANGUP: 13,
  REMOTE_BUSY_LINE: 14, ACCEPT_BY_OTHER_CLIENT: 101, HANGUP_BY_OTHER_CLIENT: 102,
};
export const ErrorCode = {
  SUCCESS: 10000, STATE_MACHINE_EXIT: 53200, SEND_MSG_ERROR: 53201, NOT_IN_GROUP: 53203, MISSING_VIDEO_TRACK_ERROR: 53309,
  CONVERSATION_NOT_GROUP_ERROR: 53311, PARAM_ERROR: 53312,
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uid = (prefix) => `${prefix}-${randomBytes(3).toString('hex')}`;

/** Rejects with `message` if `promise` has not settled within `ms` (an SDK promise that never
 *  settles must fail its step, not hang the scenario). */
export function within(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${message} (not settled within ${ms} ms)`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

export function requireFile(p, hint) {
  if (!fs.existsSync(p)) throw new Error(`${path.relative(ROOT, p)} is missing: ${hint}`);
}

// ------------------------------------------------------------------------------------------------
// Child processes

/** Sends `signal` to `proc` and resolves once it exited (at once if it had); fails if it has
 *  not within `ms`. */
export async function stopProcess(proc, signal = 'SIGKILL', ms = 15000) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill(signal);
  await within(exited, ms, `${path.basename(proc.spawnfile)} did not exit after ${signal}`);
}

/** A Debian binary on PATH or in one of `dirs`; fails with the setup advice otherwise. */
export function findBinary(name, dirs) {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`]).toString().trim();
  } catch { /* not on PATH */ }
  const found = dirs.map((d) => path.join(d, name)).find((p) => fs.existsSync(p));
  if (!found) throw new Error(`${name} not found: run scripts/setup.sh (it installs Debian's ${name})`);
  return found;
}

/** A 127.0.0.1 port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves true if a Redis on `socket` answers PING. */
function redisPing(socket) {
  return new Promise((resolve) => {
    const c = net.connect({ path: socket });
    let got = '';
    c.setTimeout(1000, () => { c.destroy(); resolve(false); });
    c.on('error', () => resolve(false));
    c.on('connect', () => c.write('*1\r\n$4\r\nPING\r\n'));
    c.on('data', (b) => {
      got += b.toString();
      if (got.includes('\r\n')) { c.destroy(); resolve(got.startsWith('+PONG')); }
    });
  });
}

/** A private Redis on a unix socket in a temp dir (no TCP port), no persistence, for the
 *  cluster tests: `{url, proc, logText(), kill(), restart(), stop()}`. `kill()` is a SIGKILL;
 *  `restart()` kills it and starts an empty one on the same socket (what a Redis without AOF
 *  comes back as). */
export async function startRedis() {
  const bin = findBinary('redis-server', ['/usr/bin', '/usr/sbin']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-e2e-redis-'));
  const socket = path.join(dir, 'redis.sock');
  const log = [];
  const r = { url: `unix://${socket}`, proc: null, logText: () => log.join('') };
  r.start = async () => {
    r.proc = spawn(bin, ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    r.proc.stdout.on('data', (b) => log.push(b.toString()));
    r.proc.stderr.on('data', (b) => log.push(b.toString()));
    const t0 = Date.now();
    while (!(await redisPing(socket))) {
      if (r.proc.exitCode !== null) throw new Error(`redis-server exited at start:\n${r.logText()}`);
      if (Date.now() - t0 > 10000) throw new Error(`redis-server did not answer PING within 10 s:\n${r.logText()}`);
      await sleep(20);
    }
  };
  r.kill = () => stopProcess(r.proc);
  r.restart = async () => { await r.kill(); fs.rmSync(socket, { force: true }); await r.start(); };
  r.stop = async () => { await r.kill(); fs.rmSync(dir, { recursive: true, force: true }); };
  await r.start();
  return r;
}

// ------------------------------------------------------------------------------------------------
// The server

/** Starts target/release/rcall-server on 127.0.0.1:0 with a temp SQLite db; resolves once it printed
 *  `rcall-server listening on http://ADDR`. */
export async function startServer({ webDir = PAGES_DIR, extraArgs = [], env = {} } = {}) {
  requireFile(SERVER_BIN, 'run `cargo build --release -p rcall-server` first');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-e2e-'));
  const args = [
    '--listen', '127.0.0.1:0',
    '--db', path.join(tmp, 'rcall.db'),
    '--app-key', APP_KEY,
    '--app-secret', APP_SECRET,
    '--sdk-dir', SDK_DIR,
    '--web-dir', webDir,
    ...extraArgs,
  ];
  // Keep the inherited RCALL_* env from overriding what the tests set up.
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RCALL_')));
  const proc = spawn(SERVER_BIN, args, { cwd: ROOT, env: { RUST_LOG: 'info', ...childEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  let url = null;
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rcall-server did not print its address within 15 s:\n${log.join('')}`)), 15000);
    const onData = (buf) => {
      const s = buf.toString();
      log.push(s);
      const m = !url && log.join('').match(/rcall-server listening on (http:\/\/[^\s]+)/);
      if (m) {
        url = m[1].replace(/\/$/, '');
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code, sig) => {
      clearTimeout(timer);
      if (!url) reject(new Error(`rcall-server exited (code ${code}, signal ${sig}) before listening:\n${log.join('')}`));
    });
  });
  const server = {
    proc,
    tmp,
    log,
    get url() { return url; },
    logText: () => log.join(''),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const exited = new Promise((r) => proc.once('exit', r));
        if ((await Promise.race([exited.then(() => true), sleep(3000).then(() => false)])) === false) {
          proc.kill('SIGKILL');
          await exited;
        }
      }
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
  try {
    await started;
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/** RongCloud Server API signature: lowercase hex SHA-1(appSecret + nonce + timestamp). */
export function signHeaders(appKey = APP_KEY, appSecret = APP_SECRET) {
  const nonce = String(Math.floor(Math.random() * 1e9));
  const timestamp = String(Date.now());
  const signature = createHash('sha1').update(appSecret + nonce + timestamp).digest('hex');
  return { 'App-Key': appKey, Nonce: nonce, Timestamp: timestamp, Signature: signature };
}

/** POST /user/getToken.json, signed; returns {status, body}. */
export async function getTokenRaw(baseUrl, userId, { headers = signHeaders() } = {}) {
  const res = await fetch(`${baseUrl}/user/getToken.json`, {
    method: 'POST',
    headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ userId, name: `User ${userId}`, portraitUri: '' }).toString(),
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}

export async function getToken(baseUrl, userId) {
  const { status, body } = await getTokenRaw(baseUrl, userId);
  if (status !== 200 || !body || body.code !== 200 || typeof body.token !== 'string') {
    throw new Error(`getToken(${userId}) failed: HTTP ${status} ${JSON.stringify(body)}`);
  }
  return body.token;
}

/** POST /group/create.json, signed (form: `userId` repeated, `groupId`, `groupName`). Group
 *  calls need the group: the server rejects GROUP messages to unknown groups and from
 *  non-members (22406 → NOT_IN_GROUP 53203). */
export async function createGroup(baseUrl, groupId, userIds, groupName = `Group ${groupId}`) {
  const form = new URLSearchParams();
  for (const u of userIds) form.append('userId', u);
  form.append('groupId', groupId);
  form.append('groupName', groupName);
  const res = await fetch(`${baseUrl}/group/create.json`, {
    method: 'POST',
    headers: { ...signHeaders(), 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form.toString(),
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  if (res.status !== 200 || !body || body.code !== 200) {
    throw new Error(`group/create(${groupId}, [${userIds}]) failed: HTTP ${res.status} ${JSON.stringify(body)}`);
  }
  return body;
}

// ------------------------------------------------------------------------------------------------
// A static server on another origin (scenario f): serves tests/e2e/pages, with the SDK <script>
// pointed at the rcall server.

export async function startStaticServer(sdkOrigin) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css' };
  const srv = createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    let p = decodeURIComponent(u.pathname);
    if (p.endsWith('/')) p += 'index.html';
    const file = path.join(PAGES_DIR, path.normalize(p));
    if (!file.startsWith(PAGES_DIR) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    let body = fs.readFileSync(file);
    if (file.endsWith('.html')) body = body.toString().replaceAll('src="/sdk/', `src="${sdkOrigin}/sdk/`);
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    res.end(body);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => srv.close(r)) };
}

// ------------------------------------------------------------------------------------------------
// The browser

/**
 * Serves files on 127.0.0.1 (built apps, the npm package): `mounts` is a directory, or URL
 * prefixes mapped to directories (`{ '/esm/': esmDir, '/': pagesDir }`, longest prefix wins).
 * Resolves `{ url, close }`.
 */
export function serveDirectory(mounts) {
  const table = Object.entries(typeof mounts === 'string' ? { '/': mounts } : mounts)
    .sort(([a], [b]) => b.length - a.length);
  const types = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css',
    '.wasm': 'application/wasm', '.svg': 'image/svg+xml', '.json': 'application/json',
  };
  const srv = createServer((req, res) => {
    let p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (p.endsWith('/')) p += 'index.html';
    const [prefix, dir] = table.find(([pre]) => p.startsWith(pre)) || ['', null];
    const file = dir && path.join(dir, path.normalize(p.slice(prefix.length)));
    if (!file || !file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${srv.address().port}`,
    close: () => new Promise((r) => srv.close(r)),
  })));
}

export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
];

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: false,
    args: CHROMIUM_ARGS,
  });
}

const now = () => performance.timeOrigin + performance.now();

/** One user: its own browser context + a harness page. */
export class Client {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.console = [];
    page.on('console', (m) => this.console.push(`[${new Date().toISOString().slice(11, 23)}] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => this.console.push(`[${new Date().toISOString().slice(11, 23)}] pageerror: ${e.stack || e.message}`));
    page.on('requestfailed', (r) => this.console.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => { if (r.status() >= 400) this.console.push(`HTTP ${r.status()} ${r.url()}`); });
    page.on('websocket', (ws) => {
      this.console.push(`websocket open ${ws.url()}`);
      ws.on('close', () => this.console.push(`websocket closed ${ws.url()}`));
      ws.on('socketerror', (e) => this.console.push(`websocket error ${ws.url()}: ${e}`));
    });
  }

  static async open(browser, name, pageUrl) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const c = new Client(name, context, page);
    const resp = await page.goto(pageUrl);
    if (!resp || !resp.ok()) throw new Error(`${name}: GET ${pageUrl} → HTTP ${resp && resp.status()}`);
    await page.waitForFunction(() => window.H && window.H.ready, null, { timeout: 5000 });
    return c;
  }

  eval(fn, arg) { return this.page.evaluate(fn, arg); }

  /** init + installPlugin(RCRTC) + installPlugin(RCCall) + connect; asserts the connect result. */
  async login(userId, token, { navi, rtcOptions, callOptions } = {}) {
    this.userId = userId;
    await this.eval(({ appkey, navi, rtcOptions, callOptions }) => H.setup({ appkey, navi, rtcOptions, callOptions }),
      { appkey: APP_KEY, navi, rtcOptions, callOptions });
    const res = await this.eval((t) => H.connect(t), token);
    if (res.code !== 0 || res.userId !== userId) {
      throw new Error(`${this.name}: RongIMLib.connect → ${JSON.stringify(res)}, expected {code: 0, data.userId: ${userId}}`);
    }
    return res;
  }

  events() { return this.eval(() => H.events); }

  /** Number of events recorded so far (a `since` mark for waitEvent). */
  async mark() { return this.eval(() => H.events.length); }

  /** Waits for the first event of `type` whose fields equal those in `match` (only events
   *  recorded at index >= `since`, see mark()). */
  async waitEvent(type, match = {}, timeout = 10000, { since = 0 } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const evs = await this.events();
      const ev = evs.find((e, i) => i >= since && e.type === type && Object.entries(match).every(([k, v]) => e[k] === v));
      if (ev) return ev;
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: no ${type} ${JSON.stringify(match)} within ${timeout} ms; events so far:\n` +
          evs.map((e) => '    ' + JSON.stringify(e)).join('\n'));
      }
      await sleep(50);
    }
  }

  /** Waits until the remote <video> from `fromUser` has decoded `minFrames` frames with videoWidth > 0. */
  async waitRemoteVideo(fromUser, { minFrames = 3, timeout = 15000 } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const vs = await this.eval(() => H.videoState());
      const v = vs.find((x) => !x.local && x.userId === fromUser);
      if (v && v.videoWidth > 0 && v.frames >= minFrames) return v;
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: remote video from ${fromUser} not decoding within ${timeout} ms; ` +
          `videos: ${JSON.stringify(vs)}; rtc: ${JSON.stringify(await this.eval(() => H.rtcStats()))}`);
      }
      await sleep(100);
    }
  }

  /** Events of `type` whose fields equal those in `match`. */
  async eventsOf(type, match = {}) {
    return (await this.events()).filter((e) => e.type === type && Object.entries(match).every(([k, v]) => e[k] === v));
  }

  /** The remote <video> of `fromUser` (harness videoState entry), or undefined. */
  async remoteVideo(fromUser) {
    return (await this.eval(() => H.videoState())).find((x) => !x.local && x.userId === fromUser);
  }

  /** Asserts the remote video from `fromUser` keeps decoding: more frames (requestVideoFrameCallback
   *  and getVideoPlaybackQuality) after `windowMs`, with videoWidth > 0. */
  async assertVideoAdvancing(fromUser, { windowMs = 1000, what = '' } = {}) {
    const v1 = await this.remoteVideo(fromUser);
    if (!v1) throw new Error(`${this.name}: no remote <video> for ${fromUser} ${what}`);
    await sleep(windowMs);
    const v2 = await this.remoteVideo(fromUser);
    const ok = v2.frames > v1.frames && v2.videoWidth > 0 &&
      (v1.totalVideoFrames == null || v2.totalVideoFrames > v1.totalVideoFrames);
    if (!ok) {
      throw new Error(`${this.name}: remote video from ${fromUser} not advancing ${what}: frames ${v1.frames} → ${v2.frames}, ` +
        `totalVideoFrames ${v1.totalVideoFrames} → ${v2.totalVideoFrames}, videoWidth ${v2.videoWidth}; ` +
        `rtc: ${JSON.stringify(await this.eval(() => H.rtcStats()))}`);
    }
    return v2;
  }

  /** Waits until the remote video from `fromUser` has stopped advancing: no new frame during
   *  `quietMs` (polled until `timeout`). Frames already in flight when the sender stopped may
   *  still land, so this waits for a quiet window rather than sampling once. */
  async waitVideoStalled(fromUser, { quietMs = 1500, timeout = 8000, what = '' } = {}) {
    const deadline = Date.now() + timeout;
    let last = await this.remoteVideo(fromUser);
    let since = Date.now();
    for (;;) {
      await sleep(250);
      const v = await this.remoteVideo(fromUser);
      if (!v || !last || v.frames !== last.frames) {
        last = v;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) {
        return v;
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: remote video from ${fromUser} still advancing ${what} after ${timeout} ms ` +
          `(frames ${v && v.frames}); rtc: ${JSON.stringify(await this.eval(() => H.rtcStats()))}`);
      }
    }
  }

  /** Waits until the remote video from `fromUser` decodes 5 more frames than now, polled for up
   *  to `timeout` (a loaded 2-core machine can stall every page for a second or two). */
  async waitVideoAdvancing(fromUser, { what = '', timeout = 30000 } = {}) {
    const v = await this.remoteVideo(fromUser);
    if (!v) throw new Error(`${this.name}: no remote <video> for ${fromUser} ${what}`);
    return this.waitVideoResumed(fromUser, v.frames, { minFrames: 5, timeout, what });
  }

  /** Waits until the remote video from `fromUser` advances again after frame count `fromFrames`. */
  async waitVideoResumed(fromUser, fromFrames, { minFrames = 5, timeout = 15000, what = '' } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const v = await this.remoteVideo(fromUser);
      if (v && v.videoWidth > 0 && v.frames >= fromFrames + minFrames) return v;
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: remote video from ${fromUser} did not advance again ${what} within ${timeout} ms ` +
          `(frames ${fromFrames} → ${v && v.frames}); videos ${JSON.stringify(await this.eval(() => H.videoState()))}; ` +
          `rtc: ${JSON.stringify(await this.eval(() => H.rtcStats()))}`);
      }
      await sleep(100);
    }
  }

  async dump() {
    let evs = [], errs = [], stats = [];
    try {
      [evs, errs, stats] = await Promise.all([this.events(), this.eval(() => H.errors()), this.eval(() => H.rtcStats())]);
    } catch (e) {
      evs = [`(could not read events: ${e.message})`];
    }
    return [
      `--- ${this.name} (${this.userId}) events:`,
      ...evs.map((e) => '  ' + JSON.stringify(e)),
      `--- ${this.name} page errors:`,
      ...errs.map((e) => '  ' + JSON.stringify(e)),
      `--- ${this.name} rtc: ${JSON.stringify(stats)}`,
      `--- ${this.name} console:`,
      ...this.console.map((l) => '  ' + l),
    ].join('\n');
  }

  async close() {
    await this.context.close().catch(() => {});
  }
}

/** Every page of `pages` decodes 5 more frames of every other page's video than now (each
 *  polled for up to `timeout`). */
export async function everyVideoAdvancing(pages, what, timeout = 30000) {
  for (const c of pages) for (const o of pages) if (o !== c) await c.waitVideoAdvancing(o.userId, { what, timeout });
}

/** Every page decodes every other page's video (its first frames within `timeout`), then keeps
 *  decoding it. */
export async function allVideosAdvance(pages, what, timeout = 60000) {
  for (const c of pages) for (const o of pages) if (o !== c) await c.waitRemoteVideo(o.userId, { minFrames: 3, timeout });
  await everyVideoAdvancing(pages, what);
}

/** Runs a scenario body; on failure prints every client's events/console and the server log
 *  (also written to tests/out/<name>.log), then rethrows. RCALL_E2E_VERBOSE=1 prints the clients'
 *  events on success too. */
export async function withDiagnostics(name, clients, server, fn, { timeout = 27000 } = {}) {
  let timer;
  try {
    // Fail (with diagnostics) a little before node:test's own 30 s timeout would cancel the test
    // silently, e.g. when an SDK promise never settles.
    const out = await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`scenario still running after ${timeout} ms (an SDK promise or event never came)`)), timeout);
      }),
    ]);
    if (process.env.RCALL_E2E_VERBOSE) {
      const parts = [`### ${name} passed`];
      for (const c of clients()) parts.push(await c.dump());
      console.log(parts.join('\n'));
    }
    return out;
  } catch (e) {
    const parts = [`### ${name} FAILED: ${e.stack || e.message}`];
    for (const c of clients()) parts.push(await c.dump());
    if (server) parts.push('--- server log (tail):', server.logText().split('\n').slice(-80).join('\n'));
    const text = parts.join('\n');
    try {
      fs.mkdirSync(OUT_DIR, { recursive: true });
      fs.writeFileSync(path.join(OUT_DIR, `${name.replace(/[^a-z0-9]+/gi, '_')}.log`), text);
    } catch {}
    console.log(text);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

export const fmtMs = (ms) => (ms == null || Number.isNaN(ms) ? 'n/a' : `${Math.round(ms)} ms`);
export { now };

/**
 * The lifecycle most e2e files share: one real server and one browser for the file, every page
 * opened through `open()` closed after each test. Call it inside `describe()`; the returned
 * object's `server`/`browser` are set once `before` has run. `page`: the harness page `open()`
 * and `user()` load by default (`media.html`: the media harness).
 */
export function browserSuite({ serverOptions, page: defaultPage = '' } = {}) {
  const suite = { server: null, browser: null, clients: [] };
  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    suite.server = await startServer(serverOptions);
    suite.browser = await launchBrowser();
  });
  after(async () => {
    await suite.browser?.close().catch(() => {});
    await suite.server?.stop();
  });
  afterEach(async () => {
    await Promise.all(suite.clients.map((c) => c.close()));
    suite.clients = [];
  });
  /** A harness page (`page` under the server's web dir) in its own browser context. */
  suite.open = async (name, page = defaultPage) => {
    const c = await Client.open(suite.browser, name, `${suite.server.url}/${page}`);
    suite.clients.push(c);
    return c;
  };
  /** A page logged in as `userId` (default: a fresh id). */
  suite.user = async (name, userId = uid(`u-${name.toLowerCase()}`), loginOptions = {}) => {
    const c = await suite.open(name);
    await c.login(userId, await getToken(suite.server.url, userId), loginOptions);
    return c;
  };
  /** `fn` under withDiagnostics: on failure every open page's events and console, and the
   *  server's log. */
  suite.diag = (name, fn, options) => withDiagnostics(name, () => suite.clients, suite.server, fn, options);
  return suite;
}

/** rcall-server on `listen` (host:port, port 0 = pick one) with the database file `db` (and
 *  `extraArgs`), for fault tests: `kill()` is a SIGKILL, `restart()` brings it back on the same
 *  address and database, `listeningAt` is when it last printed its listening line (local ms). */
export async function startRestartableServer(listen, db, extraArgs = []) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RCALL_')));
  const log = [];
  const srv = { log, logText: () => log.join(''), proc: null, addr: null, listeningAt: 0 };
  const launch = async (addr) => {
    const proc = spawn(SERVER_BIN, [
      '--listen', addr, '--db', db, '--app-key', APP_KEY, '--app-secret', APP_SECRET,
      '--sdk-dir', SDK_DIR, '--web-dir', PAGES_DIR, ...extraArgs,
    ], { cwd: ROOT, env: { RUST_LOG: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    srv.proc = proc;
    let seen = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line:\n${srv.logText()}`)), 15000);
      const onData = (b) => {
        const s = b.toString();
        log.push(s);
        seen += s;
        const m = !srv.listeningAt && seen.match(/rcall-server listening on http:\/\/([^\s/]+)/);
        if (m) {
          srv.listeningAt = now();
          srv.addr = m[1];
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      proc.once('exit', (c, sig) => { clearTimeout(timer); if (!srv.listeningAt) reject(new Error(`exited ${c} ${sig}:\n${srv.logText()}`)); });
    });
  };
  srv.kill = () => stopProcess(srv.proc);
  srv.restart = async () => {
    srv.listeningAt = 0;
    log.push('\n----- restart -----\n');
    await launch(srv.addr);
  };
  await launch(listen);
  srv.port = Number(srv.addr.split(':').pop());
  srv.url = `http://127.0.0.1:${srv.port}`;
  return srv;
}

/** Root inside a network namespace holding nothing but `lo` (scripts/test.sh runs the e2e tests
 *  under `unshare -n`): only there may a test touch `tc`. */
export function privateNetns() {
  try {
    const links = execFileSync('ip', ['-o', 'link', 'show']).toString().trim().split('\n');
    return process.getuid?.() === 0 && links.every((l) => /^\d+: lo:/.test(l));
  } catch { return false; }
}

/** Drops all TCP to and from 127.0.0.2 on `lo` (an htb class whose queue holds no packet: this
 *  kernel has no netem or drop action); UDP and 127.0.0.1 are untouched. Returns `restore`.
 *  The queue is `pfifo limit 0`, not `limit 1`: with one packet of room htb let the first few
 *  hundred bytes after the cut through on its burst (4 packets, 330 B, measured), so a page could
 *  still hear one app Pong seconds after the cut and its 30 s cut-off ran that much later.
 *  Only inside a private namespace (see privateNetns). */
export function cutTcpOf127002() {
  const tc = (args) => execFileSync('tc', args.split(' '), { stdio: 'pipe' });
  tc('qdisc add dev lo root handle 1: htb default 10');
  tc('class add dev lo parent 1: classid 1:10 htb rate 10gbit');
  tc('class add dev lo parent 1: classid 1:20 htb rate 8bit ceil 8bit');
  tc('qdisc add dev lo parent 1:20 handle 20: pfifo limit 0');
  tc('filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 6 0xff match ip dst 127.0.0.2/32 flowid 1:20');
  tc('filter add dev lo parent 1: protocol ip prio 2 u32 match ip protocol 6 0xff match ip src 127.0.0.2/32 flowid 1:20');
  return () => { try { tc('qdisc del dev lo root'); } catch { /* not set */ } };
}
