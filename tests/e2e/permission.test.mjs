// The user refuses camera/microphone access: call() and accept() report CallLib's capture codes
// (53303 for audio+video), a refused accept ends the call with 8 and the caller hears 18.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, SUCCESS, MediaType, Client, browserSuite, getToken, uid } from './helpers.mjs';

describe('capture permission denied', () => {
  const suite = browserSuite();
  let denying;
  before(async () => {
    // A browser whose user says "Block" to every camera/microphone prompt.
    denying = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      headless: false,
      args: CHROMIUM_ARGS.filter((a) => a !== '--use-fake-ui-for-media-stream').concat('--deny-permission-prompts'),
    });
  });
  after(async () => { await denying?.close().catch(() => {}); });

  test('a refused capture gives 53303 on call() and on accept() (→ 8 / 18)', { timeout: 30000 }, async () => {
    const [a, b] = [uid('perm-a'), uid('perm-b')];
    const A = await suite.open('A');
    const B = await Client.open(denying, 'B', `${suite.server.url}/`);
    suite.clients.push(B);
    await A.login(a, await getToken(suite.server.url, a));
    await B.login(b, await getToken(suite.server.url, b));
    await suite.diag('permission', async () => {
      // B cannot place a video call.
      const out = await B.eval(([t, m]) => H.call(t, m), [a, MediaType.AUDIO_VIDEO]);
      assert.equal(out.code, 53303, JSON.stringify(out));
      assert.ok(!out.hasSession, 'no session for a call that never started');
      // (Its invite went out while the camera was asked for, so A rang briefly and was told 18.)
      await A.waitEvent('onSessionClose');
      // Nor answer one.
      const since = await A.mark();
      const res = await A.eval(([t, m]) => H.call(t, m), [b, MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS, JSON.stringify(res));
      await B.waitEvent('onSession', { callerId: a });
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, 53303);
      assert.equal((await B.waitEvent('onSessionClose', { sessionId: res.session.sessionId })).summary.endReason, 8);
      const hung = await A.waitEvent('onHungup', { userId: b, sessionId: res.session.sessionId }, 10000, { since });
      assert.equal(hung.reason, 18);
    });
  });
});
