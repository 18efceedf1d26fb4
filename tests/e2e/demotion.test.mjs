// isAllowDemotionGetStream: when the camera cannot be captured, accept() carries on with the
// microphone only instead of failing (spec A.3, D.1); without the option it fails with 53303.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, MediaType, browserSuite, withDiagnostics, uid } from './helpers.mjs';

const NO_CAMERA = { video: { cameraId: 'no-such-camera', frameRate: 'FPS_15', resolution: 'W640_H480' } };

describe('capture demotion', () => {
  const suite = browserSuite();
  const diag = (name, fn) => withDiagnostics(name, () => suite.clients, suite.server, fn);

  async function pair(demote) {
    const users = [uid('dem-a'), uid('dem-b')];
    const A = await suite.user('A', users[0]);
    const B = await suite.user('B', users[1], { callOptions: { isAllowDemotionGetStream: demote } });
    const res = await A.eval(([t, m]) => H.call(t, m), [users[1], MediaType.AUDIO_VIDEO]);
    assert.equal(res.code, SUCCESS, JSON.stringify(res));
    await B.waitEvent('onSession');
    return [A, B, users];
  }

  test('with the option, a missing camera still answers with audio; the call stays a video call', { timeout: 30000 }, async () => {
    const [A, B, users] = await pair(true);
    await diag('demotion-on', async () => {
      const acc = await B.eval((c) => H.sessionCall('accept', [c]), NO_CAMERA);
      assert.equal(acc.code, SUCCESS, `accept() → ${JSON.stringify(acc)}`);
      await A.waitEvent('onAccept', { userId: users[1] });
      const local = (await B.events()).filter((e) => e.type === 'onTrackReady' && e.local);
      assert.deepEqual(local.map((e) => e.kind), ['audio'], 'B captured the microphone only');
      await A.waitEvent('onTrackReady', { local: false, kind: 'audio', userId: users[1] });
      assert.equal((await B.eval(() => H.sessionInfo())).mediaType, 2, 'the session stays AUDIO_VIDEO');
      // B still receives A's camera.
      await B.waitRemoteVideo(users[0]);
      // Camera-off mode (the default): enableVideoTrack() captures a new camera, also for a
      // member that never had one (no disableVideoTrack() first: it used to do nothing).
      const en = await B.eval(() => H.sessionCall('enableVideoTrack'));
      assert.equal(en.code, SUCCESS, `enableVideoTrack() → ${JSON.stringify(en)}`);
      await B.waitEvent('onTrackReady', { local: true, kind: 'video' });
      await A.waitRemoteVideo(users[1], { minFrames: 3, timeout: 20000 });
    });
  });

  test('without it, the same accept() fails with 53303 and ends with 8', { timeout: 30000 }, async () => {
    const [A, B, users] = await pair(false);
    await diag('demotion-off', async () => {
      const acc = await B.eval((c) => H.sessionCall('accept', [c]), NO_CAMERA);
      assert.equal(acc.code, 53303);
      assert.equal((await B.waitEvent('onSessionClose')).summary.endReason, 8);
      assert.equal((await A.waitEvent('onHungup', { userId: users[1] })).reason, 18);
    });
  });
});
