// End-to-end media behaviour of the SDK (own harness page: tests/e2e/pages/media.html): device
// lists, onRTCStateReport / onICEConnectionStateChange, changeAudioDevice, capture failure on
// accept(), track.play() / accept() argument errors, and the pre-connect contract (nothing captured
// on the callee before accept()). Two Chromium users through the real rcall-server and SDK.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, MediaType, browserSuite, sleep, uid, fmtMs } from './helpers.mjs';

const TIMEOUT = 40000;
const CAPTURE_FAILED = 53303; // RCCallErrorCode: getUserMedia failed on accept()
const END_NO_DEVICE = 8; // RCCallEndReason: could not open camera/microphone
const END_REMOTE_NO_DEVICE = 18;
const VIDEO_MISSING_ELEMENT = 53021; // RCRTCCode.VIDEO_TRACK_MISS_MEDIA_ELEMENT

describe('media (devices, stats, device switch, capture errors, pre-connect)', () => {
  const suite = browserSuite({ page: 'media.html' });
  const openUser = (name, tag) => suite.user(name, uid(`${tag}-${name.toLowerCase()}`));
  const pair = (tag) => Promise.all([openUser('A', tag), openUser('B', tag)]);
  const diag = (name, fn) => suite.diag(`media-${name}`, fn, { timeout: TIMEOUT - 3000 });

  /** A calls B (audio+video); resolves once B has the incoming session and A heard onRinging. */
  async function dial(A, B, mediaType = MediaType.AUDIO_VIDEO) {
    const res = await A.eval(([t, m]) => H.call(t, m), [B.userId, mediaType]);
    assert.equal(res.code, SUCCESS, `A: caller.call() → ${JSON.stringify(res)}`);
    const onSession = await B.waitEvent('onSession');
    await A.waitEvent('onRinging', { userId: B.userId });
    return { res, onSession };
  }

  /** dial + B accepts + both decode remote video. */
  async function connected(A, B) {
    await dial(A, B);
    const acc = await B.eval(() => H.accept());
    assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
    await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
    return acc;
  }

  const inboundAudio = async (c) => {
    const stats = await c.eval(() => H.rtcStats());
    const inb = stats.flatMap((s) => s.inbound.filter((i) => i.kind === 'audio'));
    return {
      packets: inb.reduce((n, i) => n + (i.packetsReceived || 0), 0),
      energy: inb.reduce((n, i) => n + (i.totalAudioEnergy || 0), 0),
      stats,
    };
  };

  function checkDevice(who, d, kind) {
    assert.deepEqual(Object.keys(d).sort(), ['deviceId', 'groupId', 'kind', 'label'], `${who}: device entry keys ${JSON.stringify(d)}`);
    for (const k of ['deviceId', 'groupId', 'label']) assert.equal(typeof d[k], 'string', `${who}: ${k} of ${JSON.stringify(d)}`);
    assert.equal(d.kind, kind, `${who}: kind of ${JSON.stringify(d)}`);
  }

  test('(a) RCRTC.device.getCameras/getMicrophones/getSpeakers list the fake devices as {deviceId, groupId, kind, label}', { timeout: TIMEOUT }, async () => {
    await diag('a-devices', async () => {
      const A = await openUser('A', 'ma');
      const check = (lists, when, { labels }) => {
        for (const [m, kind] of [['getCameras', 'videoinput'], ['getMicrophones', 'audioinput'], ['getSpeakers', 'audiooutput']]) {
          const list = lists[m];
          assert.ok(Array.isArray(list), `${when}: RCRTC.device.${m}() → ${JSON.stringify(list)}`);
          assert.ok(list.length > 0, `${when}: RCRTC.device.${m}() is empty`);
          for (const d of list) checkDevice(`${when}: ${m}`, d, kind);
          if (labels) {
            for (const d of list) {
              assert.ok(d.label.length > 0 && d.deviceId.length > 0, `${when}: ${m}: label/deviceId empty after capture permission: ${JSON.stringify(d)}`);
            }
          }
        }
      };
      const before = await A.eval(() => H.devices());
      check(before, 'before any capture', { labels: false });
      // Labels (and real ids) only show once the page has been granted capture permission.
      await A.eval(() => navigator.mediaDevices.getUserMedia({ audio: true, video: true }).then((s) => s.getTracks().forEach((t) => t.stop())));
      const after = await A.eval(() => H.devices());
      check(after, 'after a capture', { labels: true });
      console.log(`  (a) cameras ${after.getCameras.map((d) => d.label).join(', ')}; microphones ${after.getMicrophones.length}; speakers ${after.getSpeakers.length}`);
    });
  });

  test('(b) onRTCStateReport about once a second per peer connection with the documented shape; onICEConnectionStateChange connected', { timeout: TIMEOUT }, async () => {
    await diag('b-stats', async () => {
      const [A, B] = await pair('mb');
      const acc = await connected(A, B);
      await sleep(4000);
      for (const [c, peer] of [[A, B], [B, A]]) {
        const reports = await c.eval(() => H.reports);
        const mine = reports.filter((r) => r.pcName === peer.userId);
        assert.ok(mine.length > 0, `${c.name}: no onRTCStateReport with pcName ${peer.userId}; pcNames seen: ${JSON.stringify([...new Set(reports.map((r) => r.pcName))])}`);
        assert.deepEqual([...new Set(reports.map((r) => r.pcName))], [peer.userId], `${c.name}: a 1:1 call has one peer connection, named after the remote user`);
        // About once a second (one per engine tick), asserted as behaviour, not as a count over
        // wall time (a loaded page runs late ticks together: 7 reports in 4 s once at load
        // 48–55): each report is a fresh sample, in order, and they keep coming.
        const stamps = mine.map((r) => r.report.timestamp);
        assert.ok(stamps.every((s, i) => i === 0 || s >= stamps[i - 1]), `${c.name}: reports out of order: ${JSON.stringify(stamps)}`);
        const more = await c.eval((name) => new Promise((resolve) => {
          const mine = () => H.reports.filter((r) => r.pcName === name);
          const last = Math.max(...mine().map((r) => r.t)); // (H.reports is capped: no count)
          const poll = setInterval(() => {
            if (mine().filter((r) => r.t > last).length >= 2) { clearInterval(poll); resolve(true); }
          }, 100);
          setTimeout(() => { clearInterval(poll); resolve(false); }, 20000);
        }), peer.userId);
        assert.ok(more, `${c.name}: onRTCStateReport stopped after ${mine.length} reports`);
        const last = mine[mine.length - 1].report;
        assert.equal(typeof last.timestamp, 'number', `${c.name}: report.timestamp ${JSON.stringify(last)}`);
        assert.ok(Array.isArray(last.senders) && Array.isArray(last.receivers), `${c.name}: senders/receivers arrays: ${JSON.stringify(last)}`);
        const p = last.iceCandidatePair;
        assert.ok(p && typeof p === 'object', `${c.name}: no iceCandidatePair in ${JSON.stringify(last)}`);
        assert.equal(p.IP, '127.0.0.1', `${c.name}: iceCandidatePair.IP ${JSON.stringify(p)}`);
        assert.equal(p.remoteIP, '127.0.0.1', `${c.name}: iceCandidatePair.remoteIP ${JSON.stringify(p)}`);
        assert.ok(Number.isInteger(p.port) && p.port > 0 && Number.isInteger(p.remotePort) && p.remotePort > 0, `${c.name}: ports ${JSON.stringify(p)}`);
        assert.ok(typeof p.protocol === 'string' && ['udp', 'tcp'].includes(p.protocol), `${c.name}: protocol ${JSON.stringify(p)}`);
        assert.ok(typeof p.bitrateSend === 'number' && typeof p.bitrateRecv === 'number', `${c.name}: bitrates ${JSON.stringify(p)}`);
        const lateRecv = mine.filter((r) => r.t > acc.t0 + 2500).map((r) => r.report.iceCandidatePair?.bitrateRecv);
        assert.ok(lateRecv.some((b) => b > 0), `${c.name}: bitrateRecv never > 0 a few seconds into the call: ${JSON.stringify(lateRecv)}`);
        const video = last.receivers.find((r) => r.kind === 'video');
        assert.ok(video, `${c.name}: no video receiver stat: ${JSON.stringify(last.receivers)}`);
        assert.ok(video.frameWidth > 0, `${c.name}: receiver video frameWidth ${JSON.stringify(video)}`);
        assert.equal(video.remoteResource, true, `${c.name}: receivers[].remoteResource ${JSON.stringify(video)}`);
        assert.equal(typeof video.trackId, 'string', `${c.name}: receivers[].trackId ${JSON.stringify(video)}`);
        assert.ok(last.receivers.some((r) => r.kind === 'audio'), `${c.name}: no audio receiver stat: ${JSON.stringify(last.receivers)}`);
        assert.deepEqual(last.senders.map((s) => s.kind).sort(), ['audio', 'video'], `${c.name}: senders ${JSON.stringify(last.senders)}`);
        const ice = (await c.events()).filter((e) => e.type === 'onICEConnectionStateChange').map((e) => e.state);
        assert.ok(ice.includes('connected') || ice.includes('completed'), `${c.name}: onICEConnectionStateChange states ${JSON.stringify(ice)}`);
        console.log(`  (b) ${c.name}: ${mine.length} reports, last pair ${p.IP}:${p.port} ↔ ${p.remoteIP}:${p.remotePort} ${p.protocol}, ` +
          `send ${Math.round(p.bitrateSend)} / recv ${Math.round(p.bitrateRecv)} kbit/s, video ${video.frameWidth}x${video.frameHeight}; ICE ${ice.join(' → ')}`);
      }
      await A.eval(() => H.hungup());
      await B.waitEvent('onSessionClose');
    });
  });

  test('(c) changeAudioDevice({micphoneId}) → 10000, a new local audio track, and the remote side keeps receiving audio', { timeout: TIMEOUT }, async () => {
    await diag('c-change-mic', async () => {
      const [A, B] = await pair('mc');
      await connected(A, B);
      const oldLocal = await A.waitEvent('onTrackReady', { local: true, kind: 'audio' });
      const mics = (await A.eval(() => H.devices())).getMicrophones;
      assert.ok(Array.isArray(mics) && mics.length > 0, `A: getMicrophones() → ${JSON.stringify(mics)}`);
      // Another microphone than the one in use, if there is one.
      const mic = mics.find((d) => d.deviceId && d.deviceId !== oldLocal.deviceId && d.deviceId !== 'default') || mics[mics.length - 1];
      const a0 = await inboundAudio(B);
      const mark = (await A.events()).length;
      const res = await A.eval((id) => H.changeAudioDevice({ micphoneId: id }), mic.deviceId);
      assert.equal(res.code, SUCCESS, `A: changeAudioDevice({micphoneId: ${mic.deviceId} (${mic.label})}) → ${JSON.stringify(res)}`);
      let newLocal = null;
      for (let i = 0; i < 50 && !newLocal; i++) {
        newLocal = (await A.events()).slice(mark).find((e) => e.type === 'onTrackReady' && e.local && e.kind === 'audio');
        if (!newLocal) await sleep(100);
      }
      assert.ok(newLocal, `A: no onTrackReady(local audio) after changeAudioDevice; events: ${JSON.stringify((await A.events()).slice(mark))}`);
      assert.notEqual(newLocal.mstId, oldLocal.mstId, 'A: the new local audio track is a new MediaStreamTrack');
      assert.equal(newLocal.readyState, 'live', `A: new local audio track ${JSON.stringify(newLocal)}`);
      if (mic.deviceId && newLocal.deviceId) assert.equal(newLocal.deviceId, mic.deviceId, `A: the new track comes from the chosen microphone (${mic.label})`);
      const gum = (await A.eval(() => H.gumCalls())).at(-1);
      assert.equal(gum.result, 'ok', `A: the SDK's getUserMedia for the new microphone: ${JSON.stringify(gum)}`);
      // The peer connection now sends the new track (replaceTrack, no renegotiation) …
      await sleep(300);
      const aStats = await A.eval(() => H.rtcStats());
      const audioSenders = aStats.flatMap((s) => s.senders.filter((x) => x.kind === 'audio'));
      assert.ok(audioSenders.some((s) => s.trackId === newLocal.mstId && s.readyState === 'live'),
        `A: no audio sender carries the new track ${newLocal.mstId}: ${JSON.stringify(audioSenders)}`);
      // … and B keeps receiving audio RTP (packets keep increasing, with sound energy).
      const a1 = await inboundAudio(B);
      await sleep(1500);
      const a2 = await inboundAudio(B);
      assert.ok(a1.packets > a0.packets && a2.packets > a1.packets, `B: inbound audio packets ${a0.packets} → ${a1.packets} → ${a2.packets} around the switch; rtc ${JSON.stringify(a2.stats)}`);
      assert.ok(a2.energy > a1.energy, `B: inbound audio energy not increasing after the switch: ${a1.energy} → ${a2.energy}`);
      // The SDK's own view on B: a report taken over an interval that started after the switch
      // shows audio arriving (reports come about once a second; wait up to 6 s for one).
      let recvAudio = [];
      for (let i = 0; i < 60; i++) {
        recvAudio = (await B.eval(() => H.reports)).filter((r) => r.t > newLocal.t + 1100)
          .flatMap((r) => r.report.receivers.filter((x) => x.kind === 'audio').map((x) => x.bitrate));
        if (recvAudio.some((b) => b > 0)) break;
        await sleep(100);
      }
      assert.ok(recvAudio.some((b) => b > 0), `B: onRTCStateReport receivers' audio bitrate after the switch: ${JSON.stringify(recvAudio)}; ` +
        `all B reports: ${JSON.stringify((await B.eval(() => H.reports)).map((r) => ({ t: Math.round(r.t - newLocal.t), audio: r.report.receivers.filter((x) => x.kind === 'audio') })))}`);
      console.log(`  (c) switched A to "${mic.label}": B audio packets ${a1.packets} → ${a2.packets} in 1.5 s, receiver audio ${Math.round(recvAudio.at(-1))} kbit/s`);
      await A.eval(() => H.hungup());
      await B.waitEvent('onSessionClose');
    });
  });

  test('(d) accept() with a camera that does not exist → 53303; callee closes with 8, caller gets onHungup(callee, 18)', { timeout: TIMEOUT }, async () => {
    await diag('d-capture-failure', async () => {
      const [A, B] = await pair('md');
      await dial(A, B);
      const acc = await B.eval(() => H.accept({ video: { cameraId: 'no-such-camera', frameRate: 'FPS_15', resolution: 'W640_H480' } }));
      assert.equal(acc.code, CAPTURE_FAILED, `B: accept() with cameraId 'no-such-camera' → ${JSON.stringify(acc)}`);
      const bClose = await B.waitEvent('onSessionClose');
      assert.equal(bClose.summary && bClose.summary.endReason, END_NO_DEVICE, `B: onSessionClose summary ${JSON.stringify(bClose.summary)}`);
      const aHung = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(aHung.reason, END_REMOTE_NO_DEVICE, `A: onHungup(B) reason`);
      const aClose = await A.waitEvent('onSessionClose');
      assert.equal(aClose.summary && aClose.summary.endReason, END_REMOTE_NO_DEVICE, `A: onSessionClose summary ${JSON.stringify(aClose.summary)}`);
      const gum = await B.eval(() => H.gumCalls());
      assert.ok(gum.length >= 1 && gum.every((g) => g.result !== 'ok'), `B: getUserMedia calls ${JSON.stringify(gum)}`);
      const live = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.readyState === 'live');
      assert.deepEqual(live, [], 'B: no local track left capturing');
      console.log(`  (d) B accept() → ${acc.code}; B getUserMedia: ${gum.map((g) => g.result).join(', ')}`);
    });
  });

  test('(e) track.play() of remote video without an element → 53021; accept() with invalid constraints throws "[RCCallSession accept] …"', { timeout: TIMEOUT }, async () => {
    await diag('e-argument-errors', async () => {
      const [A, B] = await pair('me');
      await dial(A, B);
      const bad = await B.eval(() => H.accept({ video: { frameRate: 'FPS_99' } }));
      assert.ok(bad.threw !== undefined, `B: accept({video: {frameRate: 'FPS_99'}}) did not throw: ${JSON.stringify(bad)}`);
      assert.ok(bad.isError, `B: accept() threw a non-Error: ${JSON.stringify(bad)}`);
      assert.ok(bad.threw.startsWith('[RCCallSession accept]'), `B: error message ${JSON.stringify(bad.threw)}`);
      assert.equal((await B.eval(() => H.gumCalls())).length, 0, 'B: invalid constraints must not capture');
      assert.equal(await B.eval(() => H.session.getState()), 0, 'B: the session is still ringing (WAITING) after the rejected accept()');

      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
      await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
      for (const c of [A, B]) {
        const r = await c.eval(() => H.playWithoutElement('video'));
        assert.deepEqual(r, { code: VIDEO_MISSING_ELEMENT }, `${c.name}: remote video track.play() without an element`);
      }
      console.log(`  (e) accept(FPS_99) threw: ${bad.threw.split('\n')[0]}`);
      await A.eval(() => H.hungup());
      await B.waitEvent('onSessionClose');
    });
  });

  test('(f) pre-connect: before accept() the callee captured nothing and got no remote track; accept() captures exactly once', { timeout: TIMEOUT }, async () => {
    await diag('f-preconnect', async () => {
      const [A, B] = await pair('mf');
      const { onSession } = await dial(A, B);
      // Let the ringing phase run: the SDK pre-connects the peer connection meanwhile.
      let pcs = [];
      for (let i = 0; i < 30; i++) {
        pcs = await B.eval(() => H.rtcStats());
        if (pcs.some((p) => ['connected', 'completed'].includes(p.iceConnectionState))) break;
        await sleep(100);
      }
      await sleep(1000);
      pcs = await B.eval(() => H.rtcStats());
      const gumBefore = await B.eval(() => H.gumCalls());
      const remoteBefore = (await B.events()).filter((e) => e.type === 'onTrackReady' && !e.local);
      const localBefore = (await B.events()).filter((e) => e.type === 'onTrackReady' && e.local);
      assert.deepEqual(gumBefore, [], 'B: getUserMedia called before accept()');
      assert.deepEqual(remoteBefore, [], 'B: remote track handed to the app before accept()');
      assert.deepEqual(localBefore, [], 'B: local track before accept()');
      const inboundBefore = pcs.flatMap((p) => p.inbound).reduce((n, i) => n + (i.packetsReceived || 0), 0);
      assert.equal(inboundBefore, 0, `B: media received before accept(): ${JSON.stringify(pcs)}`);
      // Both video encoders run meanwhile (warm-up on a blank track behind a closed gate), and
      // still nothing reaches the caller either.
      const pcsA = await A.eval(() => H.rtcStats());
      const inboundA = pcsA.flatMap((p) => p.inbound).reduce((n, i) => n + (i.packetsReceived || 0), 0);
      assert.equal(inboundA, 0, `A: media received before accept(): ${JSON.stringify(pcsA)}`);
      for (const [who, list] of [['A', pcsA], ['B', pcs]]) {
        const video = list.flatMap((p) => p.outbound).filter((o) => o.kind === 'video');
        assert.ok(video.some((o) => o.framesEncoded >= 1), `${who}: video encoder not warmed up: ${JSON.stringify(video)}`);
        assert.ok(video.every((o) => !o.packetsSent && !o.bytesSent), `${who}: video sent before accept(): ${JSON.stringify(video)}`);
      }
      const preconnected = pcs.some((p) => ['connected', 'completed'].includes(p.iceConnectionState));
      console.log(`  (f) B while ringing: ${pcs.length} peer connection(s), ICE ${pcs.map((p) => p.iceConnectionState).join(', ')} (pre-connected: ${preconnected})`);

      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
      const [va, vb] = await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
      await sleep(1000);
      const gumAfter = await B.eval(() => H.gumCalls());
      assert.equal(gumAfter.length, 1, `B: getUserMedia calls after accept(): ${JSON.stringify(gumAfter)}`);
      assert.equal(gumAfter[0].result, 'ok', `B: ${JSON.stringify(gumAfter[0])}`);
      assert.ok(gumAfter[0].t >= acc.t0, 'B: the one getUserMedia call came after accept()');
      const firstRemote = (await B.events()).find((e) => e.type === 'onTrackReady' && !e.local);
      assert.ok(firstRemote.t >= acc.t0, 'B: first remote onTrackReady after accept()');
      console.log(`  (f) onSession after ${fmtMs(onSession.t - (await A.events()).find((e) => e.type === 'call').t)}; ` +
        `accept() → first remote frame: B ${fmtMs(vb.firstFrameAt - acc.t0)}, A ${fmtMs(va.firstFrameAt - acc.t0)}`);
      await A.eval(() => H.hungup());
      await B.waitEvent('onSessionClose');
    });
  });
});
