// End-to-end CallLib call semantics (issue 3): group calls, busy line, two devices of one user,
// crossing calls, mid-call invites, downgrade to audio, mute. Real Chromium pages (one browser
// context per device, so each has its own localStorage and CallLib device id), the real
// rcall-server and the real SDK. Each scenario asserts what the CallLib 5.X app observes
// (spec A.5–A.8, C.6, C.7, C.9, C.13.5, C.13.6, D.4, D.5).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, MediaType, EndReason, ErrorCode, browserSuite, createGroup, within, sleep, uid, fmtMs } from './helpers.mjs';

// node:test cancels a test after TEST_TIMEOUT; withDiagnostics fails it (with every page's
// events, console and the server log) a little earlier. Single steps fail much sooner: 10 s for
// an event, 15 s for a first video frame.
const TEST_TIMEOUT = 60000;
const SCENARIO_TIMEOUT = 55000;
const GROUP = 3;

describe('issue 3: CallLib call semantics', () => {
  const suite = browserSuite();
  /** Opens a page (own browser context) and logs `userId` in. */
  const openAs = (name, userId) => suite.user(name, userId);
  const openUsers = (tag, ...names) => Promise.all(names.map((n) => openAs(n, uid(`${tag}-${n.toLowerCase()}`))));
  // Every scenario ends by checking that no page had an uncaught error (a wasm panic aborts the
  // SDK's instance for the rest of the page's life, even if the scenario's events came through).
  const diag = (name, fn) => suite.diag(name, async () => {
    await fn();
    await noPageErrors(suite.clients);
  }, { timeout: SCENARIO_TIMEOUT });

  async function noPageErrors(cs) {
    for (const c of cs) {
      const errs = await c.eval(() => H.errors());
      assert.deepEqual(errs.map((e) => e.message), [], `${c.name}: uncaught page errors: ${JSON.stringify(errs)}`);
    }
  }

  /** Runs an SDK command on a page (H.call, H.accept, …); fails the step if its promise does not
   *  settle within 10 s (e.g. after a wasm panic). */
  async function sdk(c, fn, arg) {
    try {
      return await within(c.eval(fn, arg), 10000, `${c.name}: ${String(fn).replace(/\s+/g, ' ')} with ${JSON.stringify(arg)}`);
    } catch (e) {
      await noPageErrors([c]); // a panic explains a promise that never settled better
      throw e;
    }
  }

  function expectCode(who, what, res, code) {
    assert.equal(res.code, code, `${who.name}: ${what} → ${JSON.stringify(res)}, expected code ${code}`);
  }

  /** The one onSessionClose of a page (fails if there are several). */
  async function theClose(c, match = {}) {
    const ev = await c.waitEvent('onSessionClose', match);
    await sleep(200); // a duplicate would come right after the first
    const all = await c.eventsOf('onSessionClose', match);
    assert.equal(all.length, 1, `${c.name}: onSessionClose fired ${all.length} times: ${JSON.stringify(all)}`);
    return ev;
  }

  function checkReason(who, close, endReason) {
    assert.ok(close.summary && typeof close.summary === 'object', `${who.name}: onSessionClose without a summary`);
    assert.equal(close.summary.endReason, endReason, `${who.name}: summary.endReason (summary ${JSON.stringify(close.summary)})`);
  }

  /** For each [viewer, from] pair: the viewer decodes video from `from` (videoWidth > 0, frames
   *  advancing) and its track.play(el) resolved 10000. */
  async function allDecode(pairs, what) {
    await Promise.all(pairs.map(([viewer, from]) => viewer.waitRemoteVideo(from.userId)));
    await Promise.all(pairs.map(([viewer, from]) => viewer.assertVideoAdvancing(from.userId, { what })));
    for (const [viewer, from] of pairs) {
      const play = await viewer.waitEvent('play', { local: false, kind: 'video', userId: from.userId });
      assert.equal(play.code, SUCCESS, `${viewer.name}: remote video track.play(el) for ${from.name} → ${JSON.stringify(play)}`);
    }
  }

  /** 1:1 video call A → B, answered; both decode each other. Returns the session id. */
  async function connectedVideoCall(A, B) {
    const callRes = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO_VIDEO]);
    expectCode(A, 'caller.call()', callRes, SUCCESS);
    const onSession = await B.waitEvent('onSession', { sessionId: callRes.session.sessionId });
    assert.equal(onSession.callerId, A.userId, `${B.name}: session.getCallerId()`);
    const acc = await sdk(B, () => H.accept());
    expectCode(B, 'session.accept()', acc, SUCCESS);
    await A.waitEvent('onAccept', { userId: B.userId });
    await allDecode([[A, B], [B, A]], 'in the 1:1 call');
    return callRes.session.sessionId;
  }

  // ----------------------------------------------------------------------------------------------
  test('(g1) group call A → {B, C}: everyone rings everyone, all decode all, B leaves (13), C leaves → A closes with 13', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g1-group-call', async () => {
      const [A, B, C] = await openUsers('g1', 'A', 'B', 'C');
      const groupId = uid('g1-group');
      await createGroup(suite.server.url, groupId, [A.userId, B.userId, C.userId]);

      const callRes = await sdk(A, ([g, u, m]) => H.callInGroup(g, u, m), [groupId, [B.userId, C.userId], MediaType.AUDIO_VIDEO]);
      expectCode(A, 'caller.callInGroup()', callRes, SUCCESS);
      assert.ok(callRes.hasSession, 'A: callInGroup() resolved without a session');
      assert.equal(callRes.session.conversationType, GROUP, 'A: session.getConversationType() is GROUP');
      assert.equal(callRes.session.targetId, groupId, 'A: session.getTargetId() is the group id');
      const sessionId = callRes.session.sessionId;

      for (const c of [B, C]) {
        const s = await c.waitEvent('onSession');
        assert.equal(s.sessionId, sessionId, `${c.name}: onSession for the group call's id`);
        assert.equal(s.callerId, A.userId, `${c.name}: session.getCallerId()`);
        assert.equal(s.targetId, groupId, `${c.name}: session.getTargetId() is the group id`);
        assert.equal(s.conversationType, GROUP, `${c.name}: session.getConversationType()`);
        assert.equal(s.mediaType, MediaType.AUDIO_VIDEO, `${c.name}: session.getMediaType()`);
      }
      // Every invitee rings back to everyone else (spec C.13.6 step 2).
      await A.waitEvent('onRinging', { userId: B.userId });
      await A.waitEvent('onRinging', { userId: C.userId });
      await B.waitEvent('onRinging', { userId: C.userId });
      await C.waitEvent('onRinging', { userId: B.userId });

      expectCode(B, 'session.accept()', await sdk(B, () => H.accept()), SUCCESS);
      await A.waitEvent('onAccept', { userId: B.userId });
      await C.waitEvent('onAccept', { userId: B.userId }); // C still rings and learns B is in
      const accC = await sdk(C, () => H.accept());
      expectCode(C, 'session.accept()', accC, SUCCESS);
      await A.waitEvent('onAccept', { userId: C.userId });
      await B.waitEvent('onAccept', { userId: C.userId });

      await allDecode([[A, B], [A, C], [B, A], [B, C], [C, A], [C, B]], 'with all three in the call');
      const ids = await Promise.all([A, B, C].map((c) => c.eval(() => H.sessionInfo())));
      for (const [i, c] of [A, B, C].entries()) {
        assert.equal(ids[i].state, 1, `${c.name}: session.getState() is KEEPING (${JSON.stringify(ids[i])})`);
      }
      const first = (await Promise.all([A, B, C].map((c) => c.eval(() => H.videoState())))).flat().filter((v) => !v.local);
      console.log(`  (g1) C accept() → all six remote videos decoding; sizes ${first.map((v) => `${v.videoWidth}x${v.videoHeight}`).join(', ')}; ` +
        `last first frame ${fmtMs(Math.max(...first.map((v) => v.firstFrameAt)) - accC.t0)} after C's accept`);

      // B hangs up: A and C drop B and keep talking.
      const markA = await A.mark(), markC = await C.mark();
      expectCode(B, 'session.hungup()', await sdk(B, () => H.hungup()), SUCCESS);
      checkReason(B, await theClose(B), EndReason.HANGUP);
      for (const c of [A, C]) {
        const h = await c.waitEvent('onHungup', { userId: B.userId }, 10000, { since: c === A ? markA : markC });
        assert.equal(h.reason, EndReason.REMOTE_HANGUP, `${c.name}: onHungup(B) reason`);
      }
      await Promise.all([A.assertVideoAdvancing(C.userId, { what: 'after B left' }), C.assertVideoAdvancing(A.userId, { what: 'after B left' })]);
      for (const c of [A, C]) {
        assert.deepEqual(await c.eventsOf('onSessionClose'), [], `${c.name}: the call must go on after B left (2 remain)`);
        assert.equal((await c.eval(() => H.sessionInfo())).state, 1, `${c.name}: session.getState() still KEEPING after B left`);
      }

      // C hangs up: A is alone, its session ends with REMOTE_HANGUP.
      expectCode(C, 'session.hungup()', await sdk(C, () => H.hungup()), SUCCESS);
      checkReason(C, await theClose(C), EndReason.HANGUP);
      const hc = await A.waitEvent('onHungup', { userId: C.userId });
      assert.equal(hc.reason, EndReason.REMOTE_HANGUP, 'A: onHungup(C) reason');
      const aClose = await theClose(A);
      checkReason(A, aClose, EndReason.REMOTE_HANGUP);
      assert.equal(aClose.summary.conversationType, GROUP, 'A: summary.conversationType');
      assert.equal(aClose.summary.targetId, groupId, 'A: summary.targetId');
      assert.ok(aClose.summary.duration > 0, `A: connected group call has duration > 0 (${JSON.stringify(aClose.summary)})`);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('(g2) busy line: C calls B during A–B → B onSession + onSessionClose(4), C onRinging + onHungup(B, 14) + close 14; A call() → 53200', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g2-busy', async () => {
      const [A, B, C] = await openUsers('g2', 'A', 'B', 'C');
      const firstId = await connectedVideoCall(A, B);

      // A is in a call: another call() is refused with STATE_MACHINE_EXIT and no session.
      const again = await sdk(A, ([t, m]) => H.call(t, m), [C.userId, MediaType.AUDIO_VIDEO]);
      expectCode(A, 'caller.call() during a call', again, ErrorCode.STATE_MACHINE_EXIT);
      assert.equal(again.hasSession, false, 'A: a refused call() has no session');

      const markA = await A.mark(), markB = await B.mark();
      const cRes = await sdk(C, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO_VIDEO]);
      expectCode(C, 'caller.call() to a busy user', cRes, SUCCESS);
      const secondId = cRes.session.sessionId;
      assert.notEqual(secondId, firstId);

      // B: the second session is handed out, then closed at once as BUSY_LINE.
      const bSession = await B.waitEvent('onSession', { sessionId: secondId });
      assert.equal(bSession.callerId, C.userId, 'B: second session.getCallerId()');
      const bClose = await B.waitEvent('onSessionClose', { sessionId: secondId });
      checkReason(B, bClose, EndReason.BUSY_LINE);
      assert.equal(bClose.summary.duration, 0, 'B: busy session duration');
      const bEvents = await B.events();
      assert.ok(bEvents.indexOf(bEvents.find((e) => e.type === 'onSession' && e.sessionId === secondId)) <
        bEvents.indexOf(bEvents.find((e) => e.type === 'onSessionClose' && e.sessionId === secondId)), 'B: onSession before onSessionClose');

      // C: rung, then hung up on as REMOTE_BUSY_LINE.
      const cRing = await C.waitEvent('onRinging', { userId: B.userId });
      const cHung = await C.waitEvent('onHungup', { userId: B.userId });
      assert.equal(cHung.reason, EndReason.REMOTE_BUSY_LINE, 'C: onHungup(B) reason');
      assert.ok(cRing.t <= cHung.t, 'C: onRinging before onHungup');
      const cClose = await theClose(C);
      checkReason(C, cClose, EndReason.REMOTE_BUSY_LINE);

      // The first call is untouched.
      await sleep(500);
      const bAfter = (await B.events()).slice(markB);
      assert.deepEqual(bAfter.filter((e) => e.sessionId === firstId && ['onHungup', 'onSessionClose'].includes(e.type)), [],
        'B: the first call got no hangup/close');
      assert.deepEqual((await A.events()).slice(markA).filter((e) => ['onHungup', 'onSessionClose', 'onSession'].includes(e.type)), [],
        'A: the first call got no hangup/close/session');
      for (const c of [A, B]) {
        const info = await c.eval((id) => H.sessionInfo(id), firstId);
        assert.equal(info.state, 1, `${c.name}: first session still KEEPING (${JSON.stringify(info)})`);
      }
      await Promise.all([A.assertVideoAdvancing(B.userId, { what: 'after the busy call' }), B.assertVideoAdvancing(A.userId, { what: 'after the busy call' })]);

      expectCode(A, 'session.hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      checkReason(B, await B.waitEvent('onSessionClose', { sessionId: firstId }), EndReason.REMOTE_HANGUP);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('(g3) two devices of B: both ring, B1 accepts → B2 closes with 101 and no onHungup; A and B1 talk', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g3-multi-device', async () => {
      const aId = uid('g3-a'), bId = uid('g3-b');
      const [A, B1, B2] = await Promise.all([openAs('A', aId), openAs('B1', bId), openAs('B2', bId)]);
      const devices = await Promise.all([B1, B2].map((c) => c.eval(() => localStorage.getItem('RCCallDeviceId'))));
      assert.ok(devices[0] && devices[1] && devices[0] !== devices[1], `B1 and B2 have different device ids: ${JSON.stringify(devices)}`);

      const callRes = await sdk(A, ([t, m]) => H.call(t, m), [bId, MediaType.AUDIO_VIDEO]);
      expectCode(A, 'caller.call()', callRes, SUCCESS);
      const sessionId = callRes.session.sessionId;
      for (const c of [B1, B2]) {
        const s = await c.waitEvent('onSession', { sessionId });
        assert.equal(s.callerId, aId, `${c.name}: session.getCallerId()`);
      }
      await A.waitEvent('onRinging', { userId: bId });

      expectCode(B1, 'session.accept()', await sdk(B1, () => H.accept()), SUCCESS);
      const b2Close = await theClose(B2);
      checkReason(B2, b2Close, EndReason.ACCEPT_BY_OTHER_CLIENT);
      assert.equal(b2Close.summary.duration, 0, 'B2: duration of a call answered elsewhere');
      await A.waitEvent('onAccept', { userId: bId });
      await allDecode([[A, B1], [B1, A]], 'between A and B1');
      assert.deepEqual(await B2.eventsOf('onHungup'), [], 'B2: no onHungup when the other device answered');
      assert.deepEqual(await A.eventsOf('onSessionClose'), [], 'A: the call goes on');

      const h = await sdk(A, () => H.hungup());
      expectCode(A, 'session.hungup()', h, SUCCESS);
      checkReason(B1, await theClose(B1), EndReason.REMOTE_HANGUP);
      await sleep(300);
      assert.equal((await B2.eventsOf('onSessionClose')).length, 1, 'B2: one onSessionClose only');
      assert.deepEqual(await B2.eventsOf('onHungup'), [], 'B2: still no onHungup after the call ended');
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('(g4) crossing calls: A calls B while B calls A → one connected call, same session id, no onSession/onSessionClose', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g4-crossing', async () => {
      const [A, B] = await openUsers('g4', 'A', 'B');
      // Both dial at once: neither call() is awaited before the other is fired, and both pages
      // fire at the same wall-clock millisecond. (Two page.evaluate calls alone land up to ~20 ms
      // apart, longer than an invite takes to arrive; a call() made after the peer's invite has
      // arrived is not a crossing call but a 53200 next to an incoming onSession.)
      const at = Date.now() + 400;
      const [aRes, bRes] = await Promise.all([
        sdk(A, ([at, t, m]) => H.callAt(at, t, m), [at, B.userId, MediaType.AUDIO_VIDEO]),
        sdk(B, ([at, t, m]) => H.callAt(at, t, m), [at, A.userId, MediaType.AUDIO_VIDEO]),
      ]);
      console.log(`  (g4) call() fired ${fmtMs(Math.abs(aRes.t0 - bRes.t0))} apart; ids at resolve: A ${aRes.session?.sessionId}, B ${bRes.session?.sessionId}`);
      expectCode(A, 'caller.call() (crossing)', aRes, SUCCESS);
      expectCode(B, 'caller.call() (crossing)', bRes, SUCCESS);
      assert.ok(aRes.hasSession && bRes.hasSession, 'both call()s resolve with a session');

      // Both sessions end up as the same, connected call (the loser's session is re-keyed).
      const deadline = Date.now() + 10000;
      let ia, ib;
      for (;;) {
        [ia, ib] = await Promise.all([A.eval(() => H.sessionInfo()), B.eval(() => H.sessionInfo())]);
        if ((ia.sessionId === ib.sessionId && ia.state === 1 && ib.state === 1) || Date.now() > deadline) break;
        await noPageErrors([A, B]); // e.g. a panic while merging: fail now, with its message
        await sleep(100);
      }
      assert.equal(ia.sessionId, ib.sessionId, `A and B hold the same call: A ${JSON.stringify(ia)}, B ${JSON.stringify(ib)}`);
      assert.equal(ia.state, 1, `A: session KEEPING (${JSON.stringify(ia)})`);
      assert.equal(ib.state, 1, `B: session KEEPING (${JSON.stringify(ib)})`);

      await allDecode([[A, B], [B, A]], 'in the merged call');
      for (const c of [A, B]) {
        assert.deepEqual(await c.eventsOf('onSession'), [], `${c.name}: no onSession for a crossing call`);
        assert.deepEqual(await c.eventsOf('onSessionClose'), [], `${c.name}: no onSessionClose for the merged-away call`);
      }

      expectCode(A, 'session.hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      checkReason(A, await theClose(A), EndReason.HANGUP);
      const bHung = await B.waitEvent('onHungup', { userId: A.userId });
      assert.equal(bHung.reason, EndReason.REMOTE_HANGUP, 'B: onHungup(A) reason');
      const bClose = await theClose(B);
      checkReason(B, bClose, EndReason.REMOTE_HANGUP);
      assert.equal(bClose.sessionId, ia.sessionId, 'B: the closed session is the merged one');
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('(g5) mid-call invite: A invites C into A–B group call, B onMemberModify, C joins, all decode; re-invite 53312, 1:1 invite 53311', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g5-invite', async () => {
      const [A, B, C] = await openUsers('g5', 'A', 'B', 'C');
      const groupId = uid('g5-group');
      await createGroup(suite.server.url, groupId, [A.userId, B.userId, C.userId]);

      const callRes = await sdk(A, ([g, u, m]) => H.callInGroup(g, u, m), [groupId, [B.userId], MediaType.AUDIO_VIDEO]);
      expectCode(A, 'caller.callInGroup()', callRes, SUCCESS);
      const sessionId = callRes.session.sessionId;
      await B.waitEvent('onSession', { sessionId });
      expectCode(B, 'session.accept()', await sdk(B, () => H.accept()), SUCCESS);
      await A.waitEvent('onAccept', { userId: B.userId });
      await allDecode([[A, B], [B, A]], 'before the invite');

      const inv = await sdk(A, (u) => H.sessionCall('invite', [u]), [C.userId]);
      expectCode(A, 'session.invite([C])', inv, SUCCESS);
      const mm = await B.waitEvent('onMemberModify', { userId: A.userId });
      assert.deepEqual((mm.invited || []).map((u) => u.userId), [C.userId], `B: onMemberModify invitedUsers ${JSON.stringify(mm.invited)}`);
      const cs = await C.waitEvent('onSession', { sessionId });
      assert.equal(cs.callerId, A.userId, 'C: session.getCallerId() is the original caller');
      assert.equal(cs.targetId, groupId, 'C: session.getTargetId()');
      assert.equal(cs.conversationType, GROUP, 'C: session.getConversationType()');

      // Inviting someone already in the call is a parameter error; nothing is sent.
      const dup = await sdk(A, (u) => H.sessionCall('invite', [u]), [B.userId]);
      expectCode(A, 'session.invite([B]) (already in the call)', dup, ErrorCode.PARAM_ERROR);

      expectCode(C, 'session.accept()', await sdk(C, () => H.accept()), SUCCESS);
      await A.waitEvent('onAccept', { userId: C.userId });
      await B.waitEvent('onAccept', { userId: C.userId });
      await allDecode([[A, B], [A, C], [B, A], [B, C], [C, A], [C, B]], 'after C joined');
      assert.deepEqual(await A.eventsOf('onMemberModify'), [], 'A: the inviter gets no onMemberModify for its own invite');
      assert.equal((await B.eventsOf('onMemberModify')).length, 1, 'B: exactly one onMemberModify');

      // Everyone leaves: A and B hang up, then C is alone and its session ends.
      expectCode(A, 'session.hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      checkReason(A, await theClose(A), EndReason.HANGUP);
      expectCode(B, 'session.hungup()', await sdk(B, () => H.hungup()), SUCCESS);
      checkReason(B, await theClose(B), EndReason.HANGUP);
      checkReason(C, await theClose(C), EndReason.REMOTE_HANGUP);

      // invite() on a 1:1 session: CONVERSATION_NOT_GROUP_ERROR (a code, not an exception).
      const one = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      expectCode(A, 'caller.call() (1:1)', one, SUCCESS);
      const inv1 = await sdk(A, (u) => H.sessionCall('invite', [u]), [C.userId]);
      expectCode(A, 'session.invite([C]) on a 1:1 call', inv1, ErrorCode.CONVERSATION_NOT_GROUP_ERROR);
      expectCode(A, 'session.hungup() (cancel)', await sdk(A, () => H.hungup()), SUCCESS);
      checkReason(A, await A.waitEvent('onSessionClose', { sessionId: one.session.sessionId }), EndReason.CANCEL);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('(g6) descendAbility: A gets onMediaModify(B, 1), mediaType 1 on both, B camera stopped, video from B stops', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g6-downgrade', async () => {
      const [A, B] = await openUsers('g6', 'A', 'B');
      await connectedVideoCall(A, B);
      const bLocalVideo = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.ok(bLocalVideo.length > 0 && bLocalVideo.every((t) => t.readyState === 'live'),
        `B: a live local video track before the downgrade: ${JSON.stringify(bLocalVideo)}`);

      const d = await sdk(B, () => H.sessionCall('descendAbility'));
      expectCode(B, 'session.descendAbility()', d, SUCCESS);
      const mm = await A.waitEvent('onMediaModify', { userId: B.userId });
      assert.equal(mm.mediaType, MediaType.AUDIO, 'A: onMediaModify mediaType');
      assert.equal((await B.eval(() => H.sessionInfo())).mediaType, MediaType.AUDIO, 'B: session.getMediaType() after descendAbility');
      assert.equal((await A.eval(() => H.sessionInfo())).mediaType, MediaType.AUDIO, 'A: session.getMediaType() after onMediaModify');

      const bVideo = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.ok(bVideo.length > 0 && bVideo.every((t) => t.readyState === 'ended'),
        `B: local video MediaStreamTrack stopped after descendAbility: ${JSON.stringify(bVideo)}`);
      await A.waitVideoStalled(B.userId, { what: 'after B descendAbility()' });

      // Spec D.5 step 3: the receiver tears its own local video down too.
      const aVideo = (await A.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.ok(aVideo.length > 0 && aVideo.every((t) => t.readyState === 'ended'),
        `A: local video MediaStreamTrack stopped after onMediaModify (spec D.5): ${JSON.stringify(aVideo)}`);
      await B.waitVideoStalled(A.userId, { what: 'after the downgrade (A stops sending too)' });
      assert.equal((await A.eval(() => H.sessionInfo())).state, 1, 'A: the call goes on as audio');

      expectCode(A, 'session.hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      const bClose = await theClose(B);
      checkReason(B, bClose, EndReason.REMOTE_HANGUP);
      assert.equal(bClose.summary.mediaType, MediaType.AUDIO, 'B: summary.mediaType is the final (downgraded) type');
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('(g7) mute: disableAudioTrack → onAudioMuteChange, disableVideoTrack → onVideoMuteChange + video stops, enableVideoTrack → new track, video resumes', { timeout: TEST_TIMEOUT }, async () => {
    await diag('g7-mute', async () => {
      const [A, B] = await openUsers('g7', 'A', 'B');
      await connectedVideoCall(A, B);
      const aRemoteAudio = await A.waitEvent('onTrackReady', { local: false, kind: 'audio', userId: B.userId });
      const aRemoteVideo = await A.waitEvent('onTrackReady', { local: false, kind: 'video', userId: B.userId });
      const oldLocal = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.ok(oldLocal.length > 0, 'B: a local video track');

      let mark = await A.mark();
      expectCode(B, 'session.disableAudioTrack()', await sdk(B, () => H.sessionCall('disableAudioTrack')), SUCCESS);
      const am = await A.waitEvent('onAudioMuteChange', { userId: B.userId, muted: true }, 10000, { since: mark });
      assert.equal(am.kind, 'audio', `A: onAudioMuteChange kind (${JSON.stringify(am)})`);
      assert.equal(am.trackId, aRemoteAudio.trackId, `A: onAudioMuteChange trackId is B's audio track (${JSON.stringify(am)})`);

      mark = await A.mark();
      expectCode(B, 'session.disableVideoTrack()', await sdk(B, () => H.sessionCall('disableVideoTrack')), SUCCESS);
      const vm = await A.waitEvent('onVideoMuteChange', { userId: B.userId, muted: true }, 10000, { since: mark });
      assert.equal(vm.kind, 'video', `A: onVideoMuteChange kind (${JSON.stringify(vm)})`);
      assert.equal(vm.trackId, aRemoteVideo.trackId, `A: onVideoMuteChange trackId is B's video track (${JSON.stringify(vm)})`);
      const stalled = await A.waitVideoStalled(B.userId, { what: 'after B disableVideoTrack()' });
      // isOffCameraWhenVideoDisable defaults to true: the camera is released.
      const released = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.ok(released.every((t) => t.readyState === 'ended'), `B: camera released after disableVideoTrack(): ${JSON.stringify(released)}`);

      mark = await A.mark();
      const markB = await B.mark();
      expectCode(B, 'session.enableVideoTrack()', await sdk(B, () => H.sessionCall('enableVideoTrack')), SUCCESS);
      const fresh = await B.waitEvent('onTrackReady', { local: true, kind: 'video' }, 10000, { since: markB });
      assert.ok(fresh.withSession, 'B: the new camera track comes with the session');
      assert.ok(fresh.mstId && !oldLocal.some((t) => t.mstId === fresh.mstId),
        `B: enableVideoTrack() hands out a NEW local video track (${fresh.mstId} vs ${oldLocal.map((t) => t.mstId)})`);
      const unm = await A.waitEvent('onVideoMuteChange', { userId: B.userId, muted: false }, 10000, { since: mark });
      assert.equal(unm.kind, 'video');
      await A.waitVideoResumed(B.userId, stalled.frames, { what: 'after B enableVideoTrack()' });
      await A.assertVideoAdvancing(B.userId, { what: 'after B enableVideoTrack()' });

      mark = await A.mark();
      expectCode(B, 'session.enableAudioTrack()', await sdk(B, () => H.sessionCall('enableAudioTrack')), SUCCESS);
      await A.waitEvent('onAudioMuteChange', { userId: B.userId, muted: false }, 10000, { since: mark });

      expectCode(B, 'session.hungup()', await sdk(B, () => H.hungup()), SUCCESS);
      checkReason(A, await theClose(A), EndReason.REMOTE_HANGUP);
    });
  });
});
