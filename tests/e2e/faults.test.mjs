// Issue 10: calls end (or carry on) correctly when something breaks — a tab closes, a renderer
// crashes, the app disconnects, the server restarts, the signalling path goes silent. Each
// scenario prints what it measured; pass/fail is the behaviour within the bound:
//   tab closed → the others see 13 within 2 s; renderer crash → 17 within 10 s;
//   silent signalling loss → 17 within 30 s (the cut-off side ends with 7);
//   reconnect after a server restart ≤ 1 s (asserted ≤ 3 s to absorb CI noise).
// (b) and (e) need the server's side of the issue (WebSocket pings, the lost-device grace),
// (e) also the engine's self cut-off.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SDK_DIR, SERVER_BIN, SUCCESS, MediaType, EndReason, Client, getToken, createGroup, launchBrowser, requireFile,
  withDiagnostics, sleep, uid, fmtMs, now, startRestartableServer, privateNetns, cutTcpOf127002,
} from './helpers.mjs';

const NETWORK_ERROR = 7;
const REMOTE_NETWORK_ERROR = 17;

describe('issue 10: faults', () => {
  let browser, tmp, server;
  let clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    requireFile(SERVER_BIN, 'run `cargo build --release -p rcall-server` first');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-e2e-faults-'));
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    await server?.kill();
    server = null;
  });

  const serve = async (listen = '127.0.0.1:0') => {
    server = await startRestartableServer(listen, path.join(tmp, `${uid('db')}.db`));
    return server;
  };
  /** A logged-in page; `origin` is where the page (and so its signalling) goes. */
  const user = async (name, origin = server.url) => {
    const id = uid(`f-${name.toLowerCase()}`);
    const c = await Client.open(browser, name, `${origin}/`);
    clients.push(c);
    await c.login(id, await getToken(server.url, id));
    return c;
  };
  const diag = (name, fn, timeout = 55000) => withDiagnostics(name, () => clients, server, fn, { timeout });

  /** A calls B, B accepts, media flows both ways. */
  async function connected(A, B, mediaType = MediaType.AUDIO_VIDEO) {
    const res = await A.eval(([t, m]) => H.call(t, m), [B.userId, mediaType]);
    assert.equal(res.code, SUCCESS, `A: call() → ${JSON.stringify(res)}`);
    await B.waitEvent('onSession');
    const acc = await B.eval(() => H.accept());
    assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
    await A.waitEvent('onAccept', { userId: B.userId });
    if (mediaType === MediaType.AUDIO_VIDEO) await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
    else await Promise.all([A.waitEvent('onTrackReady', { local: false, kind: 'audio' }), B.waitEvent('onTrackReady', { local: false, kind: 'audio' })]);
  }

  test('(a) B closes its tab mid-call: A gets onHungup(B, 13) and onSessionClose within 2 s', { timeout: 60000 }, async () => {
    await serve();
    await diag('faults-a-tab-closed', async () => {
      const A = await user('A');
      const B = await user('B');
      await connected(A, B);
      const t0 = now();
      await B.page.close(); // runs pagehide
      const hung = await A.waitEvent('onHungup', { userId: B.userId }, 5000);
      const close = await A.waitEvent('onSessionClose', {}, 5000);
      console.log(`  (a) B's tab closed → A onHungup(${hung.reason}) ${fmtMs(hung.t - t0)}, onSessionClose ${fmtMs(close.t - t0)}`);
      assert.equal(hung.reason, EndReason.REMOTE_HANGUP);
      assert.equal(close.summary.endReason, EndReason.REMOTE_HANGUP);
      assert.ok(close.t - t0 <= 2000, `A: the call ended ${fmtMs(close.t - t0)} after B's tab closed (bound 2 s)`);
    });
  });

  test('(b) B\'s renderer crashes mid-call: A gets onHungup(B, 17) within 10 s', { timeout: 60000 }, async () => {
    await serve();
    await diag('faults-b-crash', async () => {
      const A = await user('A');
      const B = await user('B');
      await connected(A, B);
      const cdp = await B.context.newCDPSession(B.page);
      const t0 = now();
      cdp.send('Page.crash').catch(() => {}); // never answers: the renderer is gone
      const hung = await A.waitEvent('onHungup', { userId: B.userId }, 15000);
      const close = await A.waitEvent('onSessionClose', {}, 5000);
      console.log(`  (b) B's renderer crashed → A onHungup(${hung.reason}) ${fmtMs(hung.t - t0)}, onSessionClose ${fmtMs(close.t - t0)}`);
      assert.equal(hung.reason, REMOTE_NETWORK_ERROR);
      assert.equal(close.summary.endReason, REMOTE_NETWORK_ERROR);
      assert.ok(hung.t - t0 <= 10000, `A: onHungup ${fmtMs(hung.t - t0)} after the crash (bound 10 s)`);
    });
  });

  test('(c) RongIMLib.disconnect() on B mid-call: B gets onSessionClose(3), A sees 13', { timeout: 60000 }, async () => {
    await serve();
    await diag('faults-c-disconnect', async () => {
      const A = await user('A');
      const B = await user('B');
      await connected(A, B, MediaType.AUDIO);
      const t0 = now();
      const mark = await B.mark();
      await B.eval(() => RongIMLib.disconnect());
      const bClose = await B.waitEvent('onSessionClose', {}, 2000, { since: mark });
      assert.equal(bClose.summary.endReason, EndReason.HANGUP, 'B: its own summary');
      const bye = await B.waitEvent('im:DISCONNECT', {}, 2000, { since: mark });
      assert.ok(bClose.t <= bye.t, 'B: onSessionClose before the DISCONNECT event');
      const hung = await A.waitEvent('onHungup', { userId: B.userId }, 5000);
      const aClose = await A.waitEvent('onSessionClose', {}, 5000);
      console.log(`  (c) B disconnect() → B onSessionClose ${fmtMs(bClose.t - t0)}, A onHungup(${hung.reason}) ${fmtMs(hung.t - t0)}`);
      assert.equal(hung.reason, EndReason.REMOTE_HANGUP);
      assert.equal(aClose.summary.endReason, EndReason.REMOTE_HANGUP);
      assert.equal(await B.eval(() => RongIMLib.getConnectionStatus()), 2, 'B: DISCONNECTED');
    });
  });

  test('(d) the server is killed and restarted mid-call: both are back within a second, a mute sent meanwhile arrives, a hangup right after works', { timeout: 90000 }, async () => {
    await serve();
    await diag('faults-d-server-restart', async () => {
      const A = await user('A');
      const B = await user('B');
      await connected(A, B);
      const marks = [await A.mark(), await B.mark()];
      await server.kill();
      await Promise.all([A, B].map((c, i) => c.waitEvent('im:SUSPEND', {}, 5000, { since: marks[i] })));
      // Muted while the server is down: queued, sent after the reconnect.
      const mute = A.eval(() => H.sessionCall('disableVideoTrack'));
      await sleep(1500);
      await server.restart();
      const listening = server.listeningAt;
      const back = await Promise.all([A, B].map((c, i) => c.waitEvent('im:CONNECTED', {}, 10000, { since: marks[i] })));
      const ms = back.map((e) => e.t - listening);
      console.log(`  (d) server listening → CONNECTED: A ${fmtMs(ms[0])}, B ${fmtMs(ms[1])} (target ≤ 1 s)`);
      for (const [i, c] of [A, B].entries()) assert.ok(ms[i] <= 3000, `${c.name}: CONNECTED ${fmtMs(ms[i])} after the server listened again`);
      const muteChange = await B.waitEvent('onVideoMuteChange', { userId: A.userId }, 5000);
      assert.equal(muteChange.muted, true);
      console.log(`  (d) B onVideoMuteChange ${fmtMs(muteChange.t - listening)} after the server listened again`);
      const m = await mute;
      assert.equal(m.code, SUCCESS, `A: disableVideoTrack() → ${JSON.stringify(m)}`);
      // Hang up right after being back.
      const h = await B.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `B: hungup() → ${JSON.stringify(h)}`);
      const aClose = await A.waitEvent('onSessionClose', {}, 5000);
      console.log(`  (d) B hungup() → A onSessionClose ${fmtMs(aClose.t - h.t0)}`);
      assert.equal(aClose.summary.endReason, EndReason.REMOTE_HANGUP);
      // Nothing was delivered twice: one mute change, one hangup.
      assert.equal((await B.eventsOf('onVideoMuteChange', { userId: A.userId })).length, 1, 'B: one onVideoMuteChange');
      assert.equal((await A.eventsOf('onHungup')).length, 1, 'A: one onHungup');
    }, 85000);
  });

  test('(g) while the server is down hungup() ends at once and call() fails fast; the queued hangup reaches A after the restart', { timeout: 90000 }, async () => {
    await serve();
    await diag('faults-g-hangup-while-down', async () => {
      const A = await user('A');
      const B = await user('B');
      await connected(A, B, MediaType.AUDIO);
      const marks = [await A.mark(), await B.mark()];
      await server.kill();
      await Promise.all([A, B].map((c, i) => c.waitEvent('im:SUSPEND', {}, 5000, { since: marks[i] })));
      const h = await B.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `B: hungup() while down → ${JSON.stringify(h)}`);
      const bClose = await B.waitEvent('onSessionClose', {}, 1000, { since: marks[1] });
      assert.equal(bClose.summary.endReason, EndReason.HANGUP);
      const c = await B.eval((t) => H.call(t, 1), A.userId);
      console.log(`  (g) while down: B hungup() ${fmtMs(h.ms)}, B call() → ${c.code} in ${fmtMs(c.ms)}`);
      assert.notEqual(c.code, SUCCESS, 'B: call() while the server is down fails');
      assert.ok(c.ms < 1000, `B: call() failed after ${fmtMs(c.ms)}`);
      await sleep(500);
      assert.deepEqual(await A.eventsOf('onHungup'), [], 'A: nothing yet');
      await server.restart();
      const hung = await A.waitEvent('onHungup', { userId: B.userId }, 5000);
      console.log(`  (g) A onHungup(${hung.reason}) ${fmtMs(hung.t - server.listeningAt)} after the server listened again`);
      assert.equal(hung.reason, EndReason.REMOTE_HANGUP);
      assert.equal((await A.waitEvent('onSessionClose', {}, 2000)).summary.endReason, EndReason.REMOTE_HANGUP);
      await sleep(500);
      assert.equal((await A.eventsOf('onHungup')).length, 1, 'A: one onHungup');
    }, 85000);
  });

  test('(e) B\'s signalling is cut (TCP to the server dropped) while media flows: A ends with 17 within 30 s, B with 7', {
    timeout: 120000,
    skip: privateNetns() ? false : 'needs root in a loopback-only network namespace (run under `unshare -n`, as scripts/test.sh does)',
  }, async () => {
    // The server listens on every loopback address; B's page (and so its WebSocket) talks to
    // 127.0.0.2, A's to 127.0.0.1. TCP to/from 127.0.0.2 goes to an htb class of 8 bit/s with a
    // queue that holds no packet, i.e. it is dropped (this kernel has no netem or drop action); UDP media
    // between 127.0.0.1 candidates is untouched.
    await serve('0.0.0.0:0');
    let restore = () => {};
    try {
      await diag('faults-e-signalling-cut', async () => {
        const A = await user('A');
        const B = await user('B', `http://127.0.0.2:${server.port}`);
        await connected(A, B);
        const t0 = now();
        restore = cutTcpOf127002();
        // Media keeps flowing meanwhile (RTP counted, not rendered frames: rendering stalls
        // on a loaded machine and is not what this checks).
        await sleep(2000);
        const videoPackets = async () => (await A.eval(() => H.rtcStats()))[0].inbound.find((x) => x.kind === 'video').packetsReceived;
        const p1 = await videoPackets();
        await sleep(1000);
        const p2 = await videoPackets();
        assert.ok(p2 > p1, `A: video RTP from B stopped while only B's signalling is cut (${p1} → ${p2} packets)`);
        // B's own verdict (its engine's cut-off, 30 s after it last heard the server) comes
        // last; the server's (dead connection, then the lost-device grace) should come first.
        const bClose = await B.waitEvent('onSessionClose', {}, 40000);
        console.log(`  (e) B onSessionClose(${bClose.summary.endReason}) ${fmtMs(bClose.t - t0)} after the cut`);
        assert.equal(bClose.summary.endReason, NETWORK_ERROR);
        const hung = await A.waitEvent('onHungup', { userId: B.userId }, 1000);
        console.log(`  (e) A onHungup(${hung.reason}) ${fmtMs(hung.t - t0)} after the cut`);
        assert.equal(hung.reason, REMOTE_NETWORK_ERROR);
        assert.ok(hung.t - t0 <= 30000, `A: onHungup ${fmtMs(hung.t - t0)} after the cut (bound 30 s)`);
        assert.ok(bClose.t - t0 <= 31000, `B: ended ${fmtMs(bClose.t - t0)} after the cut (cut-off 30 s after it last heard the server)`);
      }, 110000);
    } finally {
      restore();
    }
  });

  test('(f) group call of 3, C\'s tab closes: A and B get onHungup(C, 13) and stay connected', { timeout: 90000 }, async () => {
    await serve();
    await diag('faults-f-group-tab-closed', async () => {
      const A = await user('A');
      const B = await user('B');
      const C = await user('C');
      const groupId = uid('grp');
      await createGroup(server.url, groupId, [A.userId, B.userId, C.userId]);
      const res = await A.eval(([g, u, m]) => H.callInGroup(g, u, m), [groupId, [B.userId, C.userId], MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS, `A: callInGroup() → ${JSON.stringify(res)}`);
      for (const c of [B, C]) {
        await c.waitEvent('onSession');
        const acc = await c.eval(() => H.accept());
        assert.equal(acc.code, SUCCESS, `${c.name}: accept() → ${JSON.stringify(acc)}`);
      }
      await Promise.all([[A, B], [A, C], [B, A], [B, C], [C, A], [C, B]].map(([x, y]) => x.waitRemoteVideo(y.userId, { timeout: 20000 })));
      const t0 = now();
      await C.page.close();
      const hung = await Promise.all([A, B].map((c) => c.waitEvent('onHungup', { userId: C.userId }, 5000)));
      console.log(`  (f) C's tab closed → onHungup(C) at A ${fmtMs(hung[0].t - t0)}, B ${fmtMs(hung[1].t - t0)}`);
      for (const [i, c] of [A, B].entries()) {
        assert.equal(hung[i].reason, EndReason.REMOTE_HANGUP, `${c.name}: reason`);
        assert.ok(hung[i].t - t0 <= 2000, `${c.name}: onHungup(C) ${fmtMs(hung[i].t - t0)} after the tab closed (bound 2 s)`);
      }
      await A.assertVideoAdvancing(B.userId, { what: 'after C left' });
      await B.assertVideoAdvancing(A.userId, { what: 'after C left' });
      for (const c of [A, B]) {
        assert.equal((await c.eval(() => H.sessionInfo())).state, 1, `${c.name}: session still KEEPING`);
        assert.deepEqual(await c.eventsOf('onSessionClose'), [], `${c.name}: no onSessionClose`);
      }
    }, 85000);
  });
});
