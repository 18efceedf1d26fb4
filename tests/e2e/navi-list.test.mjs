// `navi` as a list of servers (issue 15): the SDK tries the URLs in turn, so a page whose first
// navi is dead still connects, and a page whose node dies reconnects to the next one. The pages
// are served by a plain static server, so the SDK's fallback (the page's own origin) is no
// rcall server and only the navi list can make them connect.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import {
  APP_KEY, PAGES_DIR, SDK_DIR, SUCCESS, MediaType, EndReason, Client, startServer, getToken, launchBrowser,
  requireFile, serveDirectory, withDiagnostics, uid,
} from './helpers.mjs';

/** A 127.0.0.1 port with nothing listening (it was free a moment ago). */
function deadUrl() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(`http://127.0.0.1:${port}`));
    });
  });
}

const hostOf = (url) => new URL(url).host;
/** The WebSocket URLs the page opened (Client records them from playwright's events), in order. */
const socketsOpened = (c) => c.console.filter((l) => l.startsWith('websocket open ')).map((l) => l.slice('websocket open '.length));

describe('navi list', () => {
  let servers = [], statics, browser;
  let clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    statics = await serveDirectory({ '/sdk/': SDK_DIR, '/': PAGES_DIR });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await statics?.close();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    await Promise.all(servers.map((s) => s.stop()));
    servers = [];
  });

  async function server() {
    const s = await startServer();
    servers.push(s);
    return s;
  }
  async function open(name, page = 'index.html') {
    const c = await Client.open(browser, name, `${statics.url}/${page}`);
    clients.push(c);
    return c;
  }
  const diag = (name, fn) => withDiagnostics(name, () => clients, servers[0], fn, { timeout: 40000 });

  test('a dead first navi is skipped: 5.X array, 4.X navigators, 2.X comma list', { timeout: 45000 }, async () => {
    const live = await server();
    const dead = await deadUrl();
    await diag('navi-list-dead-first', async () => {
      // 5.X: navi: [dead, live].
      const a = uid('nl-a');
      const A = await open('A (5.X)');
      await A.login(a, await getToken(live.url, a), { navi: [dead, live.url] });
      assert.deepEqual(socketsOpened(A).map(hostOf), [hostOf(dead), hostOf(live.url)], 'A: dead first, then live');

      // IMLib 4.X: navigators: [dead, live] (every entry is used, not only the first).
      const b = uid('nl-b');
      const B = await open('B (4.X)', 'imlib.html');
      await B.page.waitForFunction(() => window.H && window.H.legacyReady);
      await B.eval((o) => H.setupV4(o), { appkey: APP_KEY, navi: [dead, live.url] });
      const v4 = await B.eval((t) => H.connectV4(t), await getToken(live.url, b));
      assert.deepEqual({ ok: v4.ok, id: v4.id }, { ok: true, id: b }, `B: imClient.connect → ${JSON.stringify(v4)}`);

      // IMLib 2.X: navi as one comma-separated string of bare hosts.
      const c = uid('nl-c');
      const C = await open('C (2.X)', 'imlib.html');
      await C.page.waitForFunction(() => window.H && window.H.legacyReady);
      await C.eval((o) => H.setupV2(o), { appkey: APP_KEY, navi: `${hostOf(dead)}, ${hostOf(live.url)}` });
      const v2 = await C.eval((t) => H.connectV2(t), await getToken(live.url, c));
      assert.deepEqual({ cb: v2.cb, userId: v2.userId }, { cb: 'onSuccess', userId: c }, `C: RongIMClient.connect → ${JSON.stringify(v2)}`);

      // The list really is in use: A calls B (both on the live server).
      const res = await A.eval(([t, m]) => H.call(t, m), [b, MediaType.AUDIO]);
      assert.equal(res.code, SUCCESS, `A: call() → ${JSON.stringify(res)}`);
      await B.waitEvent('onSession', { callerId: a });
    });
  });

  test('an invalid navi entry throws at init, naming it (5.X, 4.X and 2.X shapes)', { timeout: 20000 }, async () => {
    await diag('navi-list-invalid', async () => {
      const A = await open('A');
      const errors = await A.eval(async (appkey) => {
        await RCRTC.device.getCameras(); // the SDK module has loaded: init() runs synchronously
        const attempt = (f) => { try { f(); return null; } catch (e) { return String(e && e.message); } };
        return {
          v5: attempt(() => RongIMLib.init({ appkey, navi: ['http://127.0.0.1:1', 'not a url'] })),
          v5comma: attempt(() => RongIMLib.init({ appkey, navi: 'http://127.0.0.1:1,ftp://x' })),
          v5type: attempt(() => RongIMLib.init({ appkey, navi: ['http://127.0.0.1:1', 42] })),
          v4: attempt(() => RongIMLib.init({ appkey, navigators: ['http://a:99999'] })),
          v2: attempt(() => RongIMLib.RongIMClient.init(appkey, null, { navi: 'bad host:1' })),
          ok: attempt(() => RongIMLib.init({ appkey, navi: ['http://127.0.0.1:1', '127.0.0.1:2'] })),
        };
      }, APP_KEY);
      assert.match(errors.v5, /^\[RongIMLib init\] navi entry "not a url" is not a server URL/);
      assert.match(errors.v5comma, /navi entry "ftp:\/\/x"/);
      assert.match(errors.v5type, /navi\[1\] must be a string/);
      assert.match(errors.v4, /navi entry "http:\/\/a:99999"/);
      assert.match(errors.v2, /navi entry "bad host:1"/);
      assert.equal(errors.ok, null);
    });
  });

  test('the node dies: the page reconnects to the next navi and is called there', { timeout: 60000 }, async () => {
    const A = await server();
    const B = await server();
    const p = uid('nl-p');
    const q = uid('nl-q');
    await withDiagnostics('navi-list-failover', () => clients, B, async () => {
      const P = await open('P (navi: [A, B])');
      await P.login(p, await getToken(A.url, p), { navi: [A.url, B.url] });
      assert.deepEqual(socketsOpened(P).map(hostOf), [hostOf(A.url)], 'P connects to the first navi');
      const Q = await open('Q (on B)');
      await Q.login(q, await getToken(B.url, q), { navi: B.url });

      // A dies without a goodbye.
      const mark = await P.mark();
      const before = socketsOpened(P).length;
      A.proc.kill('SIGKILL');
      const suspend = await P.waitEvent('im:SUSPEND', {}, 10000, { since: mark });
      assert.equal(suspend.code, 30002);
      await P.waitEvent('im:CONNECTED', {}, 15000, { since: mark });
      assert.equal(await P.eval(() => RongIMLib.getConnectionStatus()), 0, 'P: CONNECTED again');
      const after = socketsOpened(P).slice(before).map(hostOf);
      assert.equal(after[0], hostOf(B.url), `P: the dead node is not retried first (sockets after the loss: ${after})`);

      // P is reachable on B: Q calls, P accepts, Q sees the accept.
      const res = await Q.eval(([t, m]) => H.call(t, m), [p, MediaType.AUDIO]);
      assert.equal(res.code, SUCCESS, `Q: call() → ${JSON.stringify(res)}`);
      await P.waitEvent('onSession', { callerId: q }, 10000);
      const acc = await P.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `P: accept() → ${JSON.stringify(acc)}`);
      await Q.waitEvent('onAccept', { userId: p }, 10000);
      const h = await Q.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS);
      assert.equal((await P.waitEvent('onHungup', { userId: q })).reason, EndReason.REMOTE_HANGUP);
    }, { timeout: 55000 });
  });
});
