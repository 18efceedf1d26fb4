// RCTrack's API beyond play(): ids and tag, publisher vs local mute state, destroy() and the
// "not ready" code of a stopped track (spec A.5, D.7); a session that ended has no video track
// to switch (53309).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, ErrorCode, MediaType, browserSuite, withDiagnostics, uid } from './helpers.mjs';

describe('RCTrack', () => {
  const suite = browserSuite();

  test('ids, tag, mute state as the publisher set it, destroy() → 53020; video switches after the call → 53309', { timeout: 30000 }, async () => {
    const [a, b] = [uid('trk-a'), uid('trk-b')];
    const A = await suite.user('A', a);
    const B = await suite.user('B', b);
    await withDiagnostics('track-api', () => suite.clients, suite.server, async () => {
      const res = await A.eval(([t, m]) => H.call(t, m), [b, MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS);
      await B.waitEvent('onSession');
      assert.equal((await B.eval(() => H.accept())).code, SUCCESS);
      await A.waitEvent('onTrackReady', { local: false, kind: 'audio', userId: b });
      const remoteAudio = () => A.eval((user) => {
        const t = H.tracks.find((x) => !x.info.local && x.info.kind === 'audio' && x.info.userId === user).track;
        return { id: t.getTrackId(), stream: t.getStreamId(), tag: t.getTag(), owner: t.isOwnerMuted(), local: t.isLocalMuted(), ready: t.isReady() };
      }, b);
      assert.deepEqual(await remoteAudio(), {
        id: `${b}_RongCloudRTC_0`, stream: `${b}_RongCloudRTC`, tag: 'RongCloudRTC', owner: false, local: false, ready: true,
      });
      assert.equal((await B.eval(() => H.sessionCall('disableAudioTrack', []))).code, SUCCESS);
      await A.waitEvent('onAudioMuteChange', { userId: b });
      const muted = await remoteAudio();
      assert.equal(muted.owner, true, 'A sees B muted at the source');
      assert.equal(muted.local, false, 'A did not mute it locally');
      // B's own microphone track reports its local mute.
      const own = await B.eval(() => H.tracks.find((x) => x.info.local && x.info.kind === 'audio').track.isLocalMuted());
      assert.equal(own, true);
      // A destroyed local track cannot be played: 53020.
      const code = await B.eval(async () => {
        const t = H.tracks.find((x) => x.info.local && x.info.kind === 'video').track;
        t.destroy();
        const el = document.createElement('video');
        return (await t.play(el)).code;
      });
      assert.equal(code, 53020);
      // The call over, B's session has no room and no camera (it answered PARAM_ERROR 53312).
      assert.equal((await A.eval(() => H.hungup())).code, SUCCESS);
      await B.waitEvent('onSessionClose');
      for (const method of ['disableVideoTrack', 'enableVideoTrack']) {
        const res = await B.eval((m) => H.sessionCall(m, []), method);
        assert.equal(res.code, ErrorCode.MISSING_VIDEO_TRACK_ERROR, `B: ${method}() after the call`);
      }
    });
  });
});
