// (f) A page served from ANOTHER origin (a plain node http server on another 127.0.0.1 port) loads
// the SDK from the rcall server's /sdk/rcall.js, passes `navi`, connects and makes a video call.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, MediaType, EndReason, Client, browserSuite, startStaticServer, getToken, uid, fmtMs } from './helpers.mjs';

describe('cross-origin app page', () => {
  const suite = browserSuite();
  let statics;
  before(async () => { statics = await startStaticServer(suite.server.url); });
  after(async () => { await statics?.close(); });

  test('(f) page on another origin (SDK + navi from the rcall server) connects and calls', { timeout: 30000 }, async () => {
    const aId = uid('f-a'), bId = uid('f-b');
    const { server } = suite;
    const navi = server.url;
    // A: the cross-origin app page. B: an ordinary same-origin page.
    await suite.diag('f-cross-origin', async () => {
      const A = await Client.open(suite.browser, 'A (other origin)', `${statics.url}/index.html?navi=${encodeURIComponent(navi)}`);
      suite.clients.push(A);
      const B = await suite.open('B');
      assert.notEqual(new URL(statics.url).origin, new URL(server.url).origin);
      const setup = await A.login(aId, await getToken(server.url, aId), { navi });
      await B.login(bId, await getToken(server.url, bId));
      console.log(`  (f) cross-origin connect took ${fmtMs(setup.ms)}`);

      const callRes = await A.eval(([t, m]) => H.call(t, m), [bId, MediaType.AUDIO_VIDEO]);
      assert.equal(callRes.code, SUCCESS, `A: call() → ${JSON.stringify(callRes)}`);
      const onSession = await B.waitEvent('onSession');
      assert.equal(onSession.callerId, aId);
      console.log(`  (f) call() → B onSession: ${fmtMs(onSession.t - callRes.t0)}`);
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
      await A.waitEvent('onAccept', { userId: bId });
      const [va, vb] = await Promise.all([A.waitRemoteVideo(bId), B.waitRemoteVideo(aId)]);
      console.log(`  (f) accept() → first remote frame: A ${fmtMs(va.firstFrameAt - acc.t0)}, B ${fmtMs(vb.firstFrameAt - acc.t0)}`);

      const h = await A.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `A: hungup() → ${JSON.stringify(h)}`);
      assert.equal((await A.waitEvent('onSessionClose')).summary.endReason, EndReason.HANGUP);
      assert.equal((await B.waitEvent('onHungup', { userId: aId })).reason, EndReason.REMOTE_HANGUP);
      assert.equal((await B.waitEvent('onSessionClose')).summary.endReason, EndReason.REMOTE_HANGUP);
    });
  });
});
