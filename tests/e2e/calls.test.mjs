// End-to-end 1:1 calls: two real browser contexts (two users) on the harness page, the real
// rcall-server, the real SDK (npm/dist/cdn/rcall.js). Each scenario asserts what the CallLib 5.X
// app observes (spec A.4–A.8, C.13.1–C.13.4).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { APP_KEY, SUCCESS, MediaType, EndReason, browserSuite, sleep, uid, fmtMs } from './helpers.mjs';

const TIMEOUT = 30000;

describe('1:1 calls (same origin)', () => {
  const suite = browserSuite();
  const openUser = (name, tag) => suite.user(name, uid(`${tag}-${name.toLowerCase()}`));
  const pair = (tag) => Promise.all([openUser('A', tag), openUser('B', tag)]);
  const diag = suite.diag;

  /** A calls B; returns {callRes, onSession} once B has the incoming session. */
  async function dial(A, B, mediaType) {
    const callRes = await A.eval(([t, m]) => H.call(t, m), [B.userId, mediaType]);
    assert.equal(callRes.code, SUCCESS, `A: caller.call() → ${JSON.stringify(callRes)}`);
    assert.ok(callRes.hasSession, 'A: call() resolved without a session');
    const onSession = await B.waitEvent('onSession');
    assert.equal(onSession.callerId, A.userId, 'B: session.getCallerId()');
    assert.equal(onSession.targetId, A.userId, 'B: session.getTargetId() of a 1:1 call is the peer');
    assert.equal(onSession.mediaType, mediaType, 'B: session.getMediaType()');
    assert.equal(onSession.conversationType, 1, 'B: session.getConversationType() is PRIVATE');
    assert.equal(onSession.sessionId, callRes.session.sessionId, 'both sides share one session id');
    return { callRes, onSession };
  }

  function checkSummary(who, summary, { endReason, targetId, mediaType, connected }) {
    assert.ok(summary && typeof summary === 'object', `${who}: onSessionClose without a summary`);
    assert.equal(summary.endReason, endReason, `${who}: summary.endReason (summary ${JSON.stringify(summary)})`);
    assert.equal(summary.conversationType, 1, `${who}: summary.conversationType`);
    assert.equal(summary.targetId, targetId, `${who}: summary.targetId`);
    assert.equal(summary.mediaType, mediaType, `${who}: summary.mediaType`);
    if (connected) assert.ok(summary.duration > 0, `${who}: a connected call has duration > 0 (summary ${JSON.stringify(summary)})`);
    else assert.equal(summary.duration, 0, `${who}: an unanswered call has duration 0`);
  }

  /** Frames of a remote <video> keep advancing (not just one frame, not frozen). */
  async function assertFramesAdvance(c, fromUser) {
    const pick = async () => (await c.eval(() => H.videoState())).find((v) => !v.local && v.userId === fromUser);
    const v1 = await pick();
    await sleep(1000);
    const v2 = await pick();
    assert.ok(v2.frames > v1.frames, `${c.name}: remote video from ${fromUser} frozen: ${v1.frames} → ${v2.frames} frames in 1 s`);
    if (v1.totalVideoFrames != null) {
      assert.ok(v2.totalVideoFrames > v1.totalVideoFrames, `${c.name}: getVideoPlaybackQuality().totalVideoFrames ${v1.totalVideoFrames} → ${v2.totalVideoFrames}`);
    }
    assert.ok(v2.videoWidth > 0, `${c.name}: videoWidth ${v2.videoWidth}`);
    return v2;
  }

  /** Remote audio from `fromUser` arrived (onTrackReady + play() ok) and RTP audio is flowing. */
  async function assertRemoteAudio(c, fromUser) {
    await c.waitEvent('onTrackReady', { local: false, kind: 'audio', userId: fromUser });
    const play = await c.waitEvent('play', { local: false, kind: 'audio', userId: fromUser });
    assert.equal(play.code, SUCCESS, `${c.name}: remote audio track.play() → ${JSON.stringify(play)}`);
    const audioIn = async () => {
      const stats = await c.eval(() => H.rtcStats());
      const inbound = stats.flatMap((s) => s.inbound.filter((i) => i.kind === 'audio'));
      const receivers = stats.flatMap((s) => s.receivers.filter((r) => r.kind === 'audio'));
      return {
        packets: inbound.reduce((n, i) => n + (i.packetsReceived || 0), 0),
        energy: inbound.reduce((n, i) => n + (i.totalAudioEnergy || 0), 0),
        live: receivers.some((r) => r.readyState === 'live'),
        stats,
      };
    };
    let a1 = await audioIn();
    for (let i = 0; i < 50 && a1.packets === 0; i++) { await sleep(100); a1 = await audioIn(); }
    await sleep(1000);
    const a2 = await audioIn();
    assert.ok(a2.live, `${c.name}: no live remote audio MediaStreamTrack; rtc ${JSON.stringify(a2.stats)}`);
    assert.ok(a2.packets > a1.packets && a1.packets > 0, `${c.name}: inbound audio RTP not flowing: ${a1.packets} → ${a2.packets} packets; rtc ${JSON.stringify(a2.stats)}`);
    return a2;
  }

  test('(a) audio+video call: B accepts, remote video decodes on both sides, A hangs up (3 / 13)', { timeout: TIMEOUT }, async () => {
    await diag('a-video-call', async () => {
      const [A, B] = await pair('a');
      const { callRes, onSession } = await dial(A, B, MediaType.AUDIO_VIDEO);
      console.log(`  (a) call() → B onSession: ${fmtMs(onSession.t - callRes.t0)}`);
      await A.waitEvent('onRinging', { userId: B.userId });

      // The caller's local tracks come before call() resolves, without a session (spec D.3).
      const aLocal = (await A.events()).filter((e) => e.type === 'onTrackReady' && e.local);
      assert.deepEqual(aLocal.map((e) => e.kind).sort(), ['audio', 'video'], `A: local onTrackReady ${JSON.stringify(aLocal)}`);
      assert.equal(callRes.session.state, 0, 'A: session.getState() is WAITING before the answer');
      // getRTCSessionId(): the caller is in its room from call(); the ringing callee is not yet.
      const rtcId = (c) => c.eval(() => H.session.getRTCSessionId());
      assert.equal(await rtcId(A), callRes.session.sessionId, 'A: getRTCSessionId() while ringing');
      assert.equal(await rtcId(B), undefined, 'B: getRTCSessionId() before accept()');
      // getJoinedUserInfo(): the same view from the server, asked by the other side.
      const joined = (c, uid) => c.eval((u) => H.caller.getJoinedUserInfo(u), uid);
      const aJoined = await joined(B, A.userId);
      assert.equal(aJoined.code, SUCCESS, `B: getJoinedUserInfo(A) → ${JSON.stringify(aJoined)}`);
      assert.deepEqual(aJoined.data.map((d) => d.roomId), [callRes.session.sessionId], 'A is in the call it placed');
      assert.ok(aJoined.data[0].deviceId && aJoined.data[0].joinTime >= callRes.t0 - 5000, JSON.stringify(aJoined));
      assert.deepEqual((await joined(A, B.userId)).data, [], 'the ringing callee is in no call');
      await assert.rejects(B.eval(() => H.caller.getJoinedUserInfo(42)), /getJoinedUserInfo\] userId must be a string/);

      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: session.accept() → ${JSON.stringify(acc)}`);
      await A.waitEvent('onAccept', { userId: B.userId });
      assert.equal((await A.eval(() => H.sessionInfo())).state, 1, 'A: session.getState() is KEEPING after onAccept');
      assert.equal((await B.eval(() => H.sessionInfo())).state, 1, 'B: session.getState() is KEEPING after accept()');

      assert.equal(await rtcId(B), callRes.session.sessionId, 'B: getRTCSessionId() after accept()');
      assert.deepEqual((await joined(A, B.userId)).data.map((d) => d.roomId), [callRes.session.sessionId], 'B is in the call after accept()');
      const [va, vb] = await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
      for (const [c, from] of [[A, B], [B, A]]) {
        const play = await c.waitEvent('play', { local: false, kind: 'video', userId: from.userId });
        assert.equal(play.code, SUCCESS, `${c.name}: remote video track.play(el) → ${JSON.stringify(play)}`);
      }
      console.log(`  (a) accept() → first remote frame: A ${fmtMs(va.firstFrameAt - acc.t0)}, B ${fmtMs(vb.firstFrameAt - acc.t0)}`);
      const [fa, fb] = await Promise.all([assertFramesAdvance(A, B.userId), assertFramesAdvance(B, A.userId)]);
      const pairs = (await A.eval(() => H.rtcStats())).map((p) => p.pair);
      console.log(`  (a) remote video: A sees ${fa.videoWidth}x${fa.videoHeight}, B sees ${fb.videoWidth}x${fb.videoHeight}; A's ICE pair ${pairs.join(', ')}`);
      await Promise.all([assertRemoteAudio(A, B.userId), assertRemoteAudio(B, A.userId)]);

      const h = await A.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `A: session.hungup() → ${JSON.stringify(h)}`);
      const aClose = await A.waitEvent('onSessionClose');
      checkSummary('A', aClose.summary, { endReason: EndReason.HANGUP, targetId: B.userId, mediaType: 2, connected: true });
      const bHung = await B.waitEvent('onHungup', { userId: A.userId });
      assert.equal(bHung.reason, EndReason.REMOTE_HANGUP, `B: onHungup reason`);
      const bClose = await B.waitEvent('onSessionClose');
      checkSummary('B', bClose.summary, { endReason: EndReason.REMOTE_HANGUP, targetId: A.userId, mediaType: 2, connected: true });
      assert.equal((await A.eval(() => H.sessionInfo())).state, 2, 'A: session.getState() is END after close');
      assert.equal((await B.eval(() => H.sessionInfo())).state, 2, 'B: session.getState() is END after close');
      assert.deepEqual((await joined(B, A.userId)).data, [], 'A left the call with its hangup');
      console.log(`  (a) A hungup() → B onSessionClose: ${fmtMs(bClose.t - h.t0)}`);
    });
  });

  test('(b) audio-only call: remote audio is live on both sides, B hangs up (3 / 13)', { timeout: TIMEOUT }, async () => {
    await diag('b-audio-call', async () => {
      const [A, B] = await pair('b');
      const { callRes, onSession } = await dial(A, B, MediaType.AUDIO);
      console.log(`  (b) call() → B onSession: ${fmtMs(onSession.t - callRes.t0)}`);
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: session.accept() → ${JSON.stringify(acc)}`);
      await A.waitEvent('onAccept', { userId: B.userId });

      const [aa, ab] = await Promise.all([assertRemoteAudio(A, B.userId), assertRemoteAudio(B, A.userId)]);
      const readyA = await A.waitEvent('onTrackReady', { local: false, kind: 'audio' });
      const readyB = await B.waitEvent('onTrackReady', { local: false, kind: 'audio' });
      console.log(`  (b) accept() → remote audio onTrackReady: A ${fmtMs(readyA.t - acc.t0)}, B ${fmtMs(readyB.t - acc.t0)}; ` +
        `audio energy A ${aa.energy.toFixed(4)}, B ${ab.energy.toFixed(4)}`);
      for (const c of [A, B]) {
        const video = (await c.events()).filter((e) => e.type === 'onTrackReady' && e.kind === 'video');
        assert.deepEqual(video, [], `${c.name}: an audio call produced video tracks`);
      }

      const h = await B.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `B: session.hungup() → ${JSON.stringify(h)}`);
      const bClose = await B.waitEvent('onSessionClose');
      checkSummary('B', bClose.summary, { endReason: EndReason.HANGUP, targetId: A.userId, mediaType: 1, connected: true });
      const aHung = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(aHung.reason, EndReason.REMOTE_HANGUP, 'A: onHungup reason');
      const aClose = await A.waitEvent('onSessionClose');
      checkSummary('A', aClose.summary, { endReason: EndReason.REMOTE_HANGUP, targetId: B.userId, mediaType: 1, connected: true });
    });
  });

  test('(c) B rejects: B summary 2, A gets onHungup(B, 12) and summary 12', { timeout: TIMEOUT }, async () => {
    await diag('c-reject', async () => {
      const [A, B] = await pair('c');
      await dial(A, B, MediaType.AUDIO_VIDEO);
      await A.waitEvent('onRinging', { userId: B.userId });
      const h = await B.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `B: session.hungup() (reject) → ${JSON.stringify(h)}`);
      const bClose = await B.waitEvent('onSessionClose');
      checkSummary('B', bClose.summary, { endReason: EndReason.REJECT, targetId: A.userId, mediaType: 2, connected: false });
      const aHung = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(aHung.reason, EndReason.REMOTE_REJECT, 'A: onHungup reason');
      const aClose = await A.waitEvent('onSessionClose');
      checkSummary('A', aClose.summary, { endReason: EndReason.REMOTE_REJECT, targetId: B.userId, mediaType: 2, connected: false });
      console.log(`  (c) B hungup() → A onHungup: ${fmtMs(aHung.t - h.t0)}`);
    });
  });

  test('(d) A cancels before B answers: A summary 1, B gets onHungup(A, 11) and summary 11', { timeout: TIMEOUT }, async () => {
    await diag('d-cancel', async () => {
      const [A, B] = await pair('d');
      await dial(A, B, MediaType.AUDIO);
      const h = await A.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS, `A: session.hungup() (cancel) → ${JSON.stringify(h)}`);
      const aClose = await A.waitEvent('onSessionClose');
      checkSummary('A', aClose.summary, { endReason: EndReason.CANCEL, targetId: B.userId, mediaType: 1, connected: false });
      const bHung = await B.waitEvent('onHungup', { userId: A.userId });
      assert.equal(bHung.reason, EndReason.REMOTE_CANCEL, 'B: onHungup reason');
      const bClose = await B.waitEvent('onSessionClose');
      checkSummary('B', bClose.summary, { endReason: EndReason.REMOTE_CANCEL, targetId: A.userId, mediaType: 1, connected: false });
      console.log(`  (d) A hungup() → B onHungup: ${fmtMs(bHung.t - h.t0)}`);
    });
  });

  // The outage is made with `tc` on the loopback device: only where that cannot touch anyone
  // else's traffic, i.e. as root inside a namespace holding nothing but `lo` (scripts/test.sh).
  const privateNetns = () => {
    try {
      const links = execFileSync('ip', ['-o', 'link', 'show']).toString().trim().split('\n');
      return process.getuid?.() === 0 && links.every((l) => /^\d+: lo:/.test(l));
    } catch { return false; }
  };
  test('(f) the network drops UDP mid-call: the caller restarts ICE, media comes back, the call goes on', {
    timeout: 60000,
    skip: privateNetns() ? false : 'needs root in a loopback-only network namespace (run under `unshare -n`, as scripts/test.sh does)',
  }, async () => {
    // All UDP on loopback is dropped for a while (tc, inside the test's own network namespace):
    // both links go disconnected; the caller (the link's offerer) restarts ICE through the
    // signalling server, which still works; once UDP flows again media resumes on the new ICE
    // generation. The app sees no hangup.
    // (htb + u32 only: kernels without the tc drop action or netem still have these.) UDP goes
    // to a class whose queue holds no packet (`pfifo limit 0`), i.e. it is dropped; TCP is untouched.
    const tc = (args) => execFileSync('tc', args.split(' '), { stdio: 'pipe' });
    const dropUdp = () => {
      tc('qdisc add dev lo root handle 1: htb default 10');
      tc('class add dev lo parent 1: classid 1:10 htb rate 10gbit');
      tc('class add dev lo parent 1: classid 1:20 htb rate 8bit ceil 8bit');
      tc('qdisc add dev lo parent 1:20 handle 20: pfifo limit 0');
      tc('filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:20');
    };
    const restoreUdp = () => { try { tc('qdisc del dev lo root'); } catch { /* not set */ } };
    await diag('f-ice-restart', async () => {
      const [A, B] = await pair('f');
      const { callRes } = await dial(A, B, MediaType.AUDIO_VIDEO);
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS);
      await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
      const link = async (c) => (await c.eval(() => H.rtcStats())).find((p) => p.connectionState !== 'closed');
      const before = await link(B);
      const waitIce = async (c, ok, what, ms) => {
        const t0 = Date.now();
        for (;;) {
          const l = await link(c);
          if (ok(l)) return l;
          assert.ok(Date.now() - t0 < ms, `${c.name}: ${what} within ${ms} ms (ICE ${l.iceConnectionState})`);
          await sleep(100);
        }
      };
      let lostAt, restartAt;
      try {
        dropUdp();
        await waitIce(A, (l) => ['disconnected', 'failed'].includes(l.iceConnectionState), 'link lost', 20000);
        lostAt = Date.now();
        // Keep UDP down past the grace period, so the restart offer goes out meanwhile.
        await waitIce(B, (l) => l.remoteUfrag !== before.remoteUfrag, 'a restart offer from A', 10000);
        restartAt = Date.now();
      } finally {
        restoreUdp();
      }
      const back = await Promise.all([A, B].map((c) => waitIce(c, (l) => ['connected', 'completed'].includes(l.iceConnectionState), 'reconnected', 20000)));
      const backAt = Date.now();
      // Video resumes once a keyframe got through the congestion controller's post-outage
      // estimate: give it time (the figure is printed), then it must keep advancing.
      const frames = async (c, from) => (await c.eval(() => H.videoState())).find((v) => !v.local && v.userId === from).frames;
      const resumed = await Promise.all([[A, B], [B, A]].map(async ([c, from]) => {
        const f0 = await frames(c, from.userId);
        for (;;) {
          if ((await frames(c, from.userId)) >= f0 + 5) return Date.now() - backAt;
          assert.ok(Date.now() - backAt < 15000, `${c.name}: video from ${from.name} did not resume within 15 s of reconnecting`);
          await sleep(100);
        }
      }));
      console.log(`  (f) restart offer at B ${fmtMs(restartAt - lostAt)} after the loss; ICE ufrag ${before.remoteUfrag} → ${back[1].remoteUfrag}; ` +
        `video resumed ${fmtMs(resumed[0])} (A) / ${fmtMs(resumed[1])} (B) after reconnecting`);
      await Promise.all([assertFramesAdvance(A, B.userId), assertFramesAdvance(B, A.userId)]);
      for (const c of [A, B]) {
        assert.equal((await c.eval(() => H.sessionInfo())).state, 1, `${c.name}: session still KEEPING`);
        assert.deepEqual((await c.events()).filter((e) => e.type === 'onHungup' || e.type === 'onSessionClose'), [], `${c.name}: no hangup`);
      }
      assert.ok(callRes.session.sessionId);
      await A.eval(() => H.hungup());
      await B.waitEvent('onSessionClose');
    });
  });

  test('(e) RongIMLib.connect("garbage") resolves promptly with 31004', { timeout: TIMEOUT }, async () => {
    await diag('e-bad-token', async () => {
      const A = await suite.open('A');
      await A.eval((appkey) => H.setup({ appkey }), APP_KEY);
      const res = await A.eval(() => H.connect('garbage'));
      console.log(`  (e) connect('garbage') → code ${res.code} in ${fmtMs(res.ms)}`);
      assert.equal(res.code, 31004, `connect('garbage') → ${JSON.stringify(res)}`);
      assert.ok(res.ms < 2000, `connect('garbage') took ${res.ms} ms (must be well under 2 s)`);
    });
  });
});
