// Calls that reach a user who is offline: the server stores the call messages, the SDK gets them
// as one batch at login and turns them into offline records — and into a live incoming call when
// it still rings (spec B.7, C.12).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, MediaType, browserSuite, getToken, withDiagnostics, sleep, uid } from './helpers.mjs';

describe('offline calls', () => {
  const suite = browserSuite();
  const open = (name) => suite.open(name);
  const diag = (name, fn) => withDiagnostics(name, () => suite.clients, suite.server, fn);

  test('a call cancelled while the callee was offline becomes an offline record', { timeout: 30000 }, async () => {
    const [a, b] = [uid('off-a'), uid('off-b')];
    const A = await open('A');
    const B = await open('B');
    await A.login(a, await getToken(suite.server.url, a));
    await diag('offline-cancelled', async () => {
      const res = await A.eval(([t, m]) => H.call(t, m), [b, MediaType.AUDIO]);
      assert.equal(res.code, SUCCESS, JSON.stringify(res));
      await sleep(300);
      assert.equal((await A.eval(() => H.hungup())).code, SUCCESS);
      await A.waitEvent('onSessionClose');
      // B connects afterwards: one record, reason REMOTE_CANCEL, no incoming call.
      await B.login(b, await getToken(suite.server.url, b));
      const rec = await B.waitEvent('onOfflineRecord');
      assert.equal(rec.callId, res.session.sessionId);
      assert.equal(rec.inviterId, a);
      assert.equal(rec.endReason, 11);
      assert.equal(rec.conversationType, 1);
      assert.equal(rec.mediaType, 1);
      assert.equal(rec.duration, 0);
      await sleep(500);
      assert.deepEqual((await B.events()).filter((e) => e.type === 'onSession'), []);
    });
  });

  test('a call still ringing when the callee connects rings, and can be answered', { timeout: 30000 }, async () => {
    const [a, b] = [uid('off-a'), uid('off-b')];
    const A = await open('A');
    const B = await open('B');
    await A.login(a, await getToken(suite.server.url, a));
    await diag('offline-ringing', async () => {
      const res = await A.eval(([t, m]) => H.call(t, m), [b, MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS, JSON.stringify(res));
      await sleep(1000);
      await B.login(b, await getToken(suite.server.url, b));
      const ses = await B.waitEvent('onSession');
      assert.equal(ses.callerId, a);
      const rec = await B.waitEvent('onOfflineRecord');
      assert.equal(rec.callId, res.session.sessionId);
      assert.equal(rec.endReason, 5, 'unanswered, from the callee\'s view (G.7 decision)');
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS);
      await A.waitEvent('onAccept', { userId: b });
      await Promise.all([A.waitRemoteVideo(b), B.waitRemoteVideo(a)]);
      assert.equal((await B.eval(() => H.hungup())).code, SUCCESS);
      assert.equal((await A.waitEvent('onSessionClose')).summary.endReason, 13);
    });
  });
});
