// The user refuses camera/microphone access: call() and accept() report CallLib's capture codes
// (53303 for audio+video), a refused accept ends the call with 8 and the caller hears 18.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  CHROMIUM_ARGS, SDK_DIR, SUCCESS, MediaType, Client, startServer, getToken, launchBrowser, requireFile,
  withDiagnostics, uid,
} from './helpers.mjs';

describe('capture permission denied', () => {
  let server, browser, denying;
  const clients = [];
  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    server = await startServer();
    browser = await launchBrowser();
    // A browser whose user says "Block" to every camera/microphone prompt.
    denying = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      headless: false,
      args: CHROMIUM_ARGS.filter((a) => a !== '--use-fake-ui-for-media-stream').concat('--deny-permission-prompts'),
    });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await denying?.close().catch(() => {});
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  test('a refused capture gives 53303 on call() and on accept() (→ 8 / 18)', { timeout: 30000 }, async () => {
    const [a, b] = [uid('perm-a'), uid('perm-b')];
    const A = await Client.open(browser, 'A', `${server.url}/`);
    const B = await Client.open(denying, 'B', `${server.url}/`);
    clients.push(A, B);
    await A.login(a, await getToken(server.url, a));
    await B.login(b, await getToken(server.url, b));
    await withDiagnostics('permission', () => clients, server, async () => {
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
