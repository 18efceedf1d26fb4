// isAllowDemotionGetStream: when the camera cannot be captured, accept() carries on with the
// microphone only instead of failing (spec A.3, D.1); without the option it fails with 53303.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  SDK_DIR, SUCCESS, MediaType, Client, startServer, getToken, launchBrowser, requireFile,
  withDiagnostics, uid,
} from './helpers.mjs';

const NO_CAMERA = { video: { cameraId: 'no-such-camera', frameRate: 'FPS_15', resolution: 'W640_H480' } };

describe('capture demotion', () => {
  let server, browser;
  let clients = [];
  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    server = await startServer();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });

  async function pair(demote) {
    const users = [uid('dem-a'), uid('dem-b')];
    const [A, B] = await Promise.all(users.map(async (u, i) => {
      const c = await Client.open(browser, i ? 'B' : 'A', `${server.url}/`);
      clients.push(c);
      await c.login(u, await getToken(server.url, u), { callOptions: i ? { isAllowDemotionGetStream: demote } : {} });
      return c;
    }));
    const res = await A.eval(([t, m]) => H.call(t, m), [users[1], MediaType.AUDIO_VIDEO]);
    assert.equal(res.code, SUCCESS, JSON.stringify(res));
    await B.waitEvent('onSession');
    return [A, B, users];
  }

  test('with the option, a missing camera still answers with audio; the call stays a video call', { timeout: 30000 }, async () => {
    const [A, B, users] = await pair(true);
    await withDiagnostics('demotion-on', () => clients, server, async () => {
      const acc = await B.eval((c) => H.sessionCall('accept', [c]), NO_CAMERA);
      assert.equal(acc.code, SUCCESS, `accept() → ${JSON.stringify(acc)}`);
      await A.waitEvent('onAccept', { userId: users[1] });
      const local = (await B.events()).filter((e) => e.type === 'onTrackReady' && e.local);
      assert.deepEqual(local.map((e) => e.kind), ['audio'], 'B captured the microphone only');
      await A.waitEvent('onTrackReady', { local: false, kind: 'audio', userId: users[1] });
      assert.equal((await B.eval(() => H.sessionInfo())).mediaType, 2, 'the session stays AUDIO_VIDEO');
      // B still receives A's camera.
      await B.waitRemoteVideo(users[0]);
    });
  });

  test('without it, the same accept() fails with 53303 and ends with 8', { timeout: 30000 }, async () => {
    const [A, B, users] = await pair(false);
    await withDiagnostics('demotion-off', () => clients, server, async () => {
      const acc = await B.eval((c) => H.sessionCall('accept', [c]), NO_CAMERA);
      assert.equal(acc.code, 53303);
      assert.equal((await B.waitEvent('onSessionClose')).summary.endReason, 8);
      assert.equal((await A.waitEvent('onHungup', { userId: users[1] })).reason, 18);
    });
  });
});
