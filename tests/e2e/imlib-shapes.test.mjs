// The IMLib 4.X and 2.X entry points (seed: "CallLib 配合 IMLib 4.X / 2.X", "建立 IM 连接"): an app
// written against either shape connects, calls a 5.X-shaped user and is called by one, from the CDN
// script and from the npm package (ESM); their error paths give RongCloud's codes and callbacks.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  APP_KEY, ROOT, PAGES_DIR, SDK_DIR, SUCCESS, MediaType, EndReason, Client, startServer, getToken,
  launchBrowser, requireFile, withDiagnostics, within, sleep, uid, fmtMs, startRestartableServer, serveDirectory } from './helpers.mjs';

const TIMEOUT = 45000;
const ESM_DIR = process.env.RCALL_ESM_DIR || path.join(ROOT, 'npm/dist/esm');
// IMLib 2.X / 4.X ConnectionStatus.
const Status = { CONNECTED: 0, CONNECTING: 1, DISCONNECTED: 2, NETWORK_UNAVAILABLE: 3 };

/** A static server on another origin: tests/e2e/pages at /, the npm package (npm/dist/esm) at /esm/. */
const startEsmServer = () => serveDirectory({ '/esm/': ESM_DIR, '/': PAGES_DIR });

describe('IMLib 4.X and 2.X entry points', () => {
  let server, esm, browser;
  let clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    requireFile(path.join(ESM_DIR, 'index.js'), 'run `bash npm/build.sh` first');
    server = await startServer();
    esm = await startEsmServer();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await esm?.close();
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });

  const diag = (name, fn) => withDiagnostics(name, () => clients, server, fn, { timeout: TIMEOUT - 3000 });

  /** Opens a page; `legacy`: an IMLib 4.X/2.X page (waits for imlib-harness.js too). */
  async function open(name, url, { legacy = true } = {}) {
    const c = await Client.open(browser, name, url);
    clients.push(c);
    if (legacy) await c.page.waitForFunction(() => window.H && window.H.legacyReady, null, { timeout: 10000 });
    const sdk = await c.eval(() => window.__sdkLoadError || null);
    assert.equal(sdk, null, `${name}: page failed to load the SDK`);
    return c;
  }

  /** A 5.X-shaped user on the ordinary harness page. */
  async function open5(tag) {
    const c = await open('B (5.X)', `${server.url}/`, { legacy: false });
    const userId = uid(`${tag}-b5`);
    await c.login(userId, await getToken(server.url, userId));
    return c;
  }

  async function loginV4(c, userId, navi) {
    c.userId = userId;
    await c.eval((o) => H.setupV4(o), { appkey: APP_KEY, navi });
    const res = await c.eval((t) => H.connectV4(t), await getToken(server.url, userId));
    assert.deepEqual({ ok: res.ok, id: res.id }, { ok: true, id: userId }, `${c.name}: imClient.connect({token}) → ${JSON.stringify(res)}`);
    return res;
  }

  async function loginV2(c, userId, navi) {
    c.userId = userId;
    await c.eval((o) => H.setupV2(o), { appkey: APP_KEY, navi });
    const token = await getToken(server.url, userId);
    const res = await within(c.eval((t) => H.connectV2(t), token), 12000, `${c.name}: RongIMClient.connect called no callback`);
    assert.deepEqual({ cb: res.cb, userId: res.userId, args: res.args }, { cb: 'onSuccess', userId, args: 1 },
      `${c.name}: RongIMClient.connect → ${JSON.stringify(res)}`);
    return res;
  }

  /** `from` calls `to` (audio+video), `to` accepts, both decode the other's video, `from` hangs up. */
  async function callAndHangUp(from, to, label) {
    const [sf, st] = await Promise.all([from.mark(), to.mark()]);
    const callRes = await from.eval(([t, m]) => H.call(t, m), [to.userId, MediaType.AUDIO_VIDEO]);
    assert.equal(callRes.code, SUCCESS, `${label}: ${from.name} call() → ${JSON.stringify(callRes)}`);
    const onSession = await to.waitEvent('onSession', {}, 10000, { since: st });
    assert.equal(onSession.callerId, from.userId, `${label}: ${to.name} session.getCallerId()`);
    const acc = await to.eval(() => H.accept());
    assert.equal(acc.code, SUCCESS, `${label}: ${to.name} accept() → ${JSON.stringify(acc)}`);
    await from.waitEvent('onAccept', { userId: to.userId }, 10000, { since: sf });
    const [vf, vt] = await Promise.all([from.waitRemoteVideo(to.userId), to.waitRemoteVideo(from.userId)]);
    console.log(`  ${label}: accept() → first remote frame: ${from.name} ${fmtMs(vf.firstFrameAt - acc.t0)}, ${to.name} ${fmtMs(vt.firstFrameAt - acc.t0)}`);
    const h = await from.eval(() => H.hungup());
    assert.equal(h.code, SUCCESS, `${label}: ${from.name} hungup() → ${JSON.stringify(h)}`);
    assert.equal((await from.waitEvent('onSessionClose', {}, 10000, { since: sf })).summary.endReason, EndReason.HANGUP);
    assert.equal((await to.waitEvent('onHungup', { userId: from.userId }, 10000, { since: st })).reason, EndReason.REMOTE_HANGUP);
    assert.equal((await to.waitEvent('onSessionClose', {}, 10000, { since: st })).summary.endReason, EndReason.REMOTE_HANGUP);
    // The next call must not see this one's videos.
    await Promise.all([from, to].map((c) => c.eval(() => {
      Object.keys(H.videos).forEach((k) => { H.videos[k].el.remove(); delete H.videos[k]; });
    })));
  }

  const statuses = async (c, type) => (await c.eventsOf(type)).map((e) => e.status);

  test('(a) IMLib 4.X: init() → install RTC + Call → connect({token}) → user.id; calls a 5.X user and is called by one', { timeout: TIMEOUT }, async () => {
    await diag('imlib-v4', async () => {
      const A = await open('A (4.X)', `${server.url}/imlib.html`);
      const aId = uid('v4-a');
      const login = await loginV4(A, aId, server.url);
      console.log(`  (a) 4.X connect took ${fmtMs(login.ms)}`);
      const B = await open5('v4');
      assert.equal(await A.eval(() => H.imClient.getCurrentUserId()), aId, 'A: imClient.getCurrentUserId()');
      await A.waitEvent('v4:status', { status: Status.CONNECTED });
      assert.deepEqual(await statuses(A, 'v4:status'), [Status.CONNECTING, Status.CONNECTED], 'A: watch({status}) during connect');

      await callAndHangUp(A, B, '(a) 4.X → 5.X');
      await callAndHangUp(B, A, '(a) 5.X → 4.X');

      await A.eval(() => H.imClient.disconnect());
      await A.waitEvent('v4:status', { status: Status.DISCONNECTED });
      assert.equal(await A.eval(() => H.imClient.getConnectionStatus()), Status.DISCONNECTED);
      assert.equal((await A.eventsOf('v4:message')).length, 0, 'call messages are not surfaced as IM messages');
    });
  });

  test('(b) IMLib 2.X: RongIMClient.init(appkey, null, {navi}) → getInstance().install → connect(token, callbacks); calls a 5.X user and is called by one', { timeout: TIMEOUT }, async () => {
    await diag('imlib-v2', async () => {
      const A = await open('A (2.X)', `${server.url}/imlib.html`);
      const aId = uid('v2-a');
      // IMLib 2.X apps give navi as a bare host[:port].
      const login = await loginV2(A, aId, new URL(server.url).host);
      console.log(`  (b) 2.X connect took ${fmtMs(login.ms)}`);
      const B = await open5('v2');
      assert.equal(await A.eval(() => RongIMLib.RongIMClient.getInstance().getCurrentUserId()), aId);
      await A.waitEvent('v2:status', { status: Status.CONNECTED });
      assert.deepEqual(await statuses(A, 'v2:status'), [Status.CONNECTING, Status.CONNECTED], 'A: onChanged during connect');
      assert.equal(await A.eval(() => RongIMLib.RongIMClient.getInstance().getCurrentConnectionStatus()), Status.CONNECTED);

      await callAndHangUp(A, B, '(b) 2.X → 5.X');
      await callAndHangUp(B, A, '(b) 5.X → 2.X');

      await A.eval(() => RongIMLib.RongIMClient.getInstance().disconnect());
      await A.waitEvent('v2:status', { status: Status.DISCONNECTED });
      assert.equal(await A.eval(() => H.v2Callbacks), 1, 'connect callbacks: exactly one');
    });
  });

  test('(c) error paths: 4.X rejects {code, msg}, 2.X calls onTokenIncorrect / onError; 5.X unchanged', { timeout: TIMEOUT }, async () => {
    await diag('imlib-errors', async () => {
      // 5.X: connect('garbage') still resolves {code: 31004}; init() now returns the 4.X client.
      const P5 = await open('P5', `${server.url}/`, { legacy: false });
      const init5 = await P5.eval((appkey) => { const r = RongIMLib.init({ appkey }); return typeof r; }, APP_KEY);
      assert.equal(init5, 'object', 'RongIMLib.init() returns the IM client');
      const r5 = await P5.eval(async () => { const r = await RongIMLib.connect('garbage'); return { code: r.code, isOk: r.isOk }; });
      assert.deepEqual(r5, { code: 31004, isOk: false }, '5.X connect with a bad token');

      // 4.X
      const P4 = await open('P4', `${server.url}/imlib.html`);
      await P4.eval((o) => H.setupV4(o), { appkey: APP_KEY });
      const bad4 = await P4.eval(() => H.connectV4('garbage'));
      assert.equal(bad4.ok, false, `4.X connect with a bad token resolved: ${JSON.stringify(bad4)}`);
      assert.equal(bad4.code, 31004, `4.X rejection ${JSON.stringify(bad4)}`);
      assert.equal(bad4.isError, false, '4.X rejects a plain {code, msg}');
      assert.match(bad4.msg, /TOKEN_INCORRECT/, '4.X rejection msg');
      const none4 = await P4.eval(() => H.connectV4(undefined));
      assert.deepEqual({ ok: none4.ok, code: none4.code }, { ok: false, code: 33003 }, `4.X connect({}) → ${JSON.stringify(none4)}`);
      assert.ok(!(await statuses(P4, 'v4:status')).includes(Status.CONNECTED), 'never connected');

      // 2.X: connect before init → onError(33001 BIZ_ERROR_CLIENT_NOT_INIT).
      const P2 = await open('P2', `${server.url}/imlib.html`);
      const early = await within(P2.eval(() => H.connectV2('whatever')), 5000, 'connect before init');
      assert.deepEqual({ cb: early.cb, code: early.code }, { cb: 'onError', code: 33001 }, JSON.stringify(early));
      await P2.eval((o) => H.setupV2(o), { appkey: APP_KEY });
      const bad2 = await within(P2.eval(() => H.connectV2('garbage')), 12000, '2.X connect with a bad token');
      assert.deepEqual({ cb: bad2.cb, args: bad2.args }, { cb: 'onTokenIncorrect', args: 0 }, JSON.stringify(bad2));
      const empty2 = await within(P2.eval(() => H.connectV2('')), 5000, '2.X connect with no token');
      assert.deepEqual({ cb: empty2.cb, code: empty2.code }, { cb: 'onError', code: 33003 }, JSON.stringify(empty2));
      await sleep(300);
      assert.equal(await P2.eval(() => H.v2Callbacks), 1, 'each connect calls one callback once');
      // A callbacks object without the one needed: a warning, no exception.
      await P2.eval(() => RongIMLib.RongIMClient.connect('garbage', {}));
      await sleep(1000);
      assert.deepEqual(await P2.eval(() => H.errors()), [], 'no page errors');
    });
  });

  test('(d) npm package (ESM): a 4.X-shaped module app connects, calls a 5.X user and is called by one', { timeout: TIMEOUT }, async () => {
    await diag('imlib-esm', async () => {
      const A = await open('A (ESM 4.X)', `${esm.url}/imlib-esm.html`);
      assert.notEqual(new URL(esm.url).origin, new URL(server.url).origin);
      const aId = uid('esm-a');
      await loginV4(A, aId, server.url);
      const B = await open5('esm');
      await callAndHangUp(A, B, '(d) ESM 4.X → 5.X');
      await callAndHangUp(B, A, '(d) 5.X → ESM 4.X');
    });
  });
});

describe('IMLib 4.X and 2.X status across a server restart', () => {
  let server, browser, tmp;
  let clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-imlib-'));
    server = await startRestartableServer('127.0.0.1:0', path.join(tmp, 'rcall.db'));
    browser = await launchBrowser();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await browser?.close().catch(() => {});
    await server?.kill();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('(e) watch({status}) and onChanged see NETWORK_UNAVAILABLE → CONNECTING → CONNECTED; a 4.X user then calls a 2.X user', { timeout: TIMEOUT }, async () => {
    await withDiagnostics('imlib-restart', () => clients, server, async () => {
      const open = async (name) => {
        const c = await Client.open(browser, name, `${server.url}/imlib.html`);
        clients.push(c);
        await c.page.waitForFunction(() => window.H && window.H.legacyReady, null, { timeout: 10000 });
        return c;
      };
      const [A, B] = await Promise.all([open('A (4.X)'), open('B (2.X)')]);
      A.userId = uid('rs-a4');
      B.userId = uid('rs-b2');
      await A.eval((o) => H.setupV4(o), { appkey: APP_KEY });
      await B.eval((o) => H.setupV2(o), { appkey: APP_KEY });
      const a = await A.eval((t) => H.connectV4(t), await getToken(server.url, A.userId));
      assert.equal(a.id, A.userId, JSON.stringify(a));
      const b = await within(B.eval((t) => H.connectV2(t), await getToken(server.url, B.userId)), 12000, 'B connect');
      assert.equal(b.userId, B.userId, JSON.stringify(b));
      await A.waitEvent('v4:status', { status: Status.CONNECTED });
      await B.waitEvent('v2:status', { status: Status.CONNECTED });
      const [ma, mb] = await Promise.all([A.mark(), B.mark()]);

      await server.kill();
      await A.waitEvent('v4:status', { status: Status.NETWORK_UNAVAILABLE }, 10000, { since: ma });
      await B.waitEvent('v2:status', { status: Status.NETWORK_UNAVAILABLE }, 10000, { since: mb });
      // While the server is down the SDK keeps retrying, so the current status flips between
      // NETWORK_UNAVAILABLE and CONNECTING; it is never CONNECTED or DISCONNECTED.
      const now = await B.eval(() => RongIMLib.RongIMClient.getInstance().getCurrentConnectionStatus());
      assert.ok([Status.NETWORK_UNAVAILABLE, Status.CONNECTING].includes(now), `status while the server is down: ${now}`);
      await server.restart();
      await A.waitEvent('v4:status', { status: Status.CONNECTED }, 15000, { since: ma });
      await B.waitEvent('v2:status', { status: Status.CONNECTED }, 15000, { since: mb });
      for (const [c, type, since] of [[A, 'v4:status', ma], [B, 'v2:status', mb]]) {
        const seen = (await c.events()).slice(since).filter((e) => e.type === type).map((e) => e.status);
        assert.deepEqual([seen[0], seen.at(-2), seen.at(-1)], [Status.NETWORK_UNAVAILABLE, Status.CONNECTING, Status.CONNECTED],
          `${c.name}: statuses across the restart ${JSON.stringify(seen)}`);
        assert.ok(!seen.includes(Status.DISCONNECTED), `${c.name}: a dropped link is not DISCONNECTED ${JSON.stringify(seen)}`);
      }

      // 4.X calls 2.X over the resumed links.
      const callRes = await A.eval(([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      assert.equal(callRes.code, SUCCESS, JSON.stringify(callRes));
      assert.equal((await B.waitEvent('onSession')).callerId, A.userId);
      assert.equal((await B.eval(() => H.accept())).code, SUCCESS);
      await A.waitEvent('onAccept', { userId: B.userId });
      assert.equal((await B.eval(() => H.hungup())).code, SUCCESS);
      assert.equal((await A.waitEvent('onSessionClose')).summary.endReason, EndReason.REMOTE_HANGUP);
    });
  });
});
