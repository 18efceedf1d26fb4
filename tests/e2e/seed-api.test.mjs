// Issue 14, items 5–8 and 11: the seed's API that rcall lacked or left untested, end to end in
// Chromium against the real server — ISenderInfo profiles, the `OnRTCStateReport` spelling,
// the optional mute listeners, the install options (validation, log output, lang,
// isOffCameraWhenVideoDisable), getUserState/getRemoteUsers, and the codes a call can end with
// that no other test reaches: 53202/103 (blacklist), 53203 (not in group), 102 (my other device
// hung up), 23/33 (kicked by the Server API).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  browserSuite, getToken, createGroup, signHeaders, uid, sleep, within, withDiagnostics,
  SUCCESS, MediaType, EndReason, ErrorCode,
} from './helpers.mjs';

const TIMEOUT = 60000;
const RCCallUserState = { NONE: 0, WAITING: 1, KEEPING: 2 };

describe('issue 14: the seed API', () => {
  const suite = browserSuite();
  const diag = (name, fn) => withDiagnostics(name, () => suite.clients, suite.server, async () => {
    await fn();
    for (const c of suite.clients) {
      const errs = await c.eval(() => H.errors());
      assert.deepEqual(errs.map((e) => e.message), [], `${c.name}: uncaught page errors`);
    }
  }, { timeout: 55000 });

  /** A signed Server API POST that must answer {code: 200}. */
  async function api(path, form) {
    const body = new URLSearchParams();
    for (const [k, v] of form) body.append(k, v);
    const res = await fetch(`${suite.server.url}${path}`, {
      method: 'POST',
      headers: { ...signHeaders(), 'Content-Type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    const json = await res.json();
    assert.equal(json.code, 200, `${path} ${JSON.stringify(form)} → ${JSON.stringify(json)}`);
    return json;
  }

  const sdk = (c, fn, arg) => within(c.eval(fn, arg), 10000, `${c.name}: ${String(fn).replace(/\s+/g, ' ')}`);
  const code = (c, what, res, want) => assert.equal(res.code, want, `${c.name}: ${what} → ${JSON.stringify(res)}`);

  async function closeOf(c, match = {}) {
    const ev = await c.waitEvent('onSessionClose', match);
    await sleep(200);
    assert.equal((await c.eventsOf('onSessionClose', match)).length, 1, `${c.name}: one onSessionClose`);
    return ev.summary.endReason;
  }

  /** Audio call A → B, answered; returns the session id. */
  async function connected(A, B, mediaType = MediaType.AUDIO) {
    const res = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, mediaType]);
    code(A, 'call()', res, SUCCESS);
    await B.waitEvent('onSession', { sessionId: res.session.sessionId });
    code(B, 'accept()', await sdk(B, () => H.accept()), SUCCESS);
    await A.waitEvent('onAccept', { userId: B.userId });
    return res.session.sessionId;
  }

  // ----------------------------------------------------------------------------------------------
  test('ISenderInfo: registerUserInfo and the getToken profile reach onRinging/onAccept/onHungup and getRemoteUsers; getUserState', { timeout: TIMEOUT }, async () => {
    await diag('seed-sender-info', async () => {
      // getToken registers `User <id>` as each user's name (helpers.getToken); B overrides it.
      const A = await suite.user('A');
      const B = await suite.user('B');
      const bob = { name: 'Bob', portraitUri: 'http://img.example/bob.png', extra: '{"level":3}' };
      await B.eval((p) => H.caller.registerUserInfo(p), bob);

      const res = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      code(A, 'call()', res, SUCCESS);
      const sid = res.session.sessionId;
      const ringing = await A.waitEvent('onRinging', { userId: B.userId });
      assert.deepEqual([ringing.name, ringing.portraitUri, ringing.extra], [bob.name, bob.portraitUri, bob.extra], 'A: onRinging sender');

      // B knows A by the name A's backend registered (A never called registerUserInfo).
      await B.waitEvent('onSession', { sessionId: sid });
      const bView = await B.eval(() => ({
        users: H.session.getRemoteUsers(),
        a: H.session.getUserState(H.session.getCallerId()),
        self: H.session.getUserState(RongIMLib.getCurrentUserId()),
        stranger: H.session.getUserState('nobody-here'),
      }));
      assert.deepEqual(bView.users, [{ userId: A.userId, state: RCCallUserState.WAITING, isCaller: true, isRemote: true, name: `User ${A.userId}` }],
        'B: getRemoteUsers() while ringing');
      assert.deepEqual([bView.a, bView.self, bView.stranger], [RCCallUserState.WAITING, RCCallUserState.WAITING, RCCallUserState.NONE], 'B: getUserState()');
      const thrown = await B.eval(() => { try { H.session.getUserState(42); return null; } catch (e) { return String(e.message); } });
      assert.match(thrown || '', /getUserState/, 'B: getUserState(non-string) throws');

      code(B, 'accept()', await sdk(B, () => H.accept()), SUCCESS);
      const accept = await A.waitEvent('onAccept', { userId: B.userId });
      assert.deepEqual([accept.name, accept.portraitUri, accept.extra], [bob.name, bob.portraitUri, bob.extra], 'A: onAccept sender (ISenderInfo, not just userId)');
      const aView = await A.eval((b) => ({ users: H.session.getRemoteUsers(), b: H.session.getUserState(b) }), B.userId);
      assert.deepEqual(aView.users, [{ userId: B.userId, state: RCCallUserState.KEEPING, isCaller: false, isRemote: true, ...bob }], 'A: getRemoteUsers() in the call');
      assert.equal(aView.b, RCCallUserState.KEEPING, 'A: getUserState(B) in the call');

      code(A, 'hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      const hungup = await B.waitEvent('onHungup', { userId: A.userId });
      assert.equal(hungup.reason, EndReason.REMOTE_HANGUP);
      assert.equal(hungup.name, `User ${A.userId}`, 'B: onHungup sender carries A\'s registered name');
      assert.equal(await closeOf(B), EndReason.REMOTE_HANGUP);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('listener keys: OnRTCStateReport (the seed\'s spelling) gets the stats; onAudio/VideoMuteChange are optional; missing required keys are named', { timeout: TIMEOUT }, async () => {
    await diag('seed-listener-keys', async () => {
      const A = await suite.user('A');
      const B = await suite.user('B');
      const missing = await A.eval(async (target) => {
        try {
          await H.caller.call({ targetId: target, mediaType: 1, listener: { onRinging() {}, onHungup() {}, onMemberModify() {}, onMediaModify() {} } });
          return 'resolved';
        } catch (e) { return String(e.message); }
      }, B.userId);
      assert.match(missing, /^\[RCCallClient call\] listener missing function -> "onAccept,onTrackReady"$/, 'A: call() with a listener lacking required keys');

      // Only the six required keys plus the seed's capitalised stats key.
      const res = await sdk(A, async (target) => {
        const res = await H.caller.call({
          targetId: target, mediaType: 1,
          listener: {
            onRinging() {}, onAccept(s) { H.log('onAccept', { userId: s.userId }); }, onHungup() {},
            onMemberModify() {}, onMediaModify() {}, onTrackReady(t) { if (!t.isLocalTrack()) t.play(); },
            OnRTCStateReport(report, session) {
              H.log('OnRTCStateReport', {
                senders: Array.isArray(report.senders) ? report.senders.length : -1,
                receivers: Array.isArray(report.receivers) ? report.receivers.length : -1,
                sessionId: session && session.getSessionId(),
              });
            },
          },
        });
        return { code: res.code, sessionId: res.session && res.session.getSessionId() };
      }, B.userId);
      code(A, 'call() without onAudioMuteChange/onVideoMuteChange', res, SUCCESS);
      await B.waitEvent('onSession', { sessionId: res.sessionId });
      code(B, 'accept()', await sdk(B, () => H.accept()), SUCCESS);
      await A.waitEvent('onAccept', { userId: B.userId });
      await A.waitEvent('OnRTCStateReport', {}, 10000);
      // The first reports may come before media flows; one with both directions must follow.
      let report;
      for (let i = 0; i < 40 && !report; i++) {
        report = (await A.eventsOf('OnRTCStateReport')).find((r) => r.senders >= 1 && r.receivers >= 1);
        if (!report) await sleep(250);
      }
      assert.ok(report, `A: a report with senders and receivers: ${JSON.stringify(await A.eventsOf('OnRTCStateReport'))}`);
      assert.equal(report.sessionId, res.sessionId, 'A: the report comes with the session');
      // B mutes: A has no mute listener, and nothing breaks.
      code(B, 'disableAudioTrack()', await sdk(B, () => H.sessionCall('disableAudioTrack')), SUCCESS);
      await sleep(500);
      code(B, 'hungup()', await sdk(B, () => H.hungup()), SUCCESS);
      assert.equal(await closeOf(A), EndReason.REMOTE_HANGUP);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('install options are validated like the seed\'s installer; logOutputLevel / logLevel / logStdout govern the SDK\'s log output', { timeout: TIMEOUT }, async () => {
    await diag('seed-install-options', async () => {
      const P = await suite.open('P');
      const out = await P.eval(async (appkey) => {
        RongIMLib.init({ appkey });
        const rtcClient = RongIMLib.installPlugin(RCRTC.installer, {});
        const errors = [];
        const warnings = [];
        const origError = console.error;
        const origWarn = console.warn;
        console.error = (...a) => { errors.push(a.map((x) => String(x && x.message || x)).join(' ')); };
        console.warn = (...a) => { warnings.push(a.map(String).join(' ')); };
        const tick = () => new Promise((r) => setTimeout(r, 50));
        const base = { rtcClient, onSession() {}, onSessionClose() {} };
        const setup = async (options) => {
          errors.length = 0;
          const api = RCCall.installer.setup(options);
          await tick();
          // A client that was set up answers getJoinedUserInfo's own validation; a failed
          // setup rejects every method with "plugin setup failed".
          const probe = await api.getJoinedUserInfo(5).then(() => 'resolved', (e) => String(e.message));
          return { errors: errors.slice(), probe };
        };
        // Warnings the SDK prints: a non-function event listener.
        const warnCount = async () => {
          warnings.length = 0;
          RongIMLib.addEventListener(RongIMLib.Events.CONNECTED, 42);
          await tick();
          return warnings.filter((w) => w.includes('not a function')).length;
        };
        const r = {};
        r.bad = await setup({
          ...base, lang: 'fr', joinType: 5, isAllowPublishRetry: 'yes', isAllowSubscribeRetry: 1,
          isOffCameraWhenVideoDisable: 'no', isAllowDemotionGetStream: 0, logLevel: 5, logStdout: 'stdout', logOutputLevel: 0,
        });
        r.missing = await setup({ onSession() {}, lang: 'en' });
        r.good = await setup({ ...base, lang: 'en', joinType: 0, isAllowPublishRetry: true, isAllowSubscribeRetry: false, isOffCameraWhenVideoDisable: false, isAllowDemotionGetStream: true, logOutputLevel: 4 });
        r.warnDefault = (await setup(base), await warnCount());
        r.warnLogLError = (await setup({ ...base, logOutputLevel: 1 }), await warnCount());
        r.warnLogLWarn = (await setup({ ...base, logOutputLevel: 2 }), await warnCount());
        r.warnLevelError = (await setup({ ...base, logLevel: 3 }), await warnCount());
        r.warnLevelNone = (await setup({ ...base, logLevel: 1000 }), await warnCount());
        r.warnOutputWins = (await setup({ ...base, logLevel: 1000, logOutputLevel: 4 }), await warnCount());
        const sunk = [];
        await setup({ ...base, logOutputLevel: 3, logStdout: (level, content) => sunk.push([level, content]) });
        r.warnWithSink = await warnCount();
        r.sunk = sunk.filter(([, c]) => String(c).includes('not a function'));
        console.error = origError;
        console.warn = origWarn;
        return r;
      }, 'e2e-app-key');

      const bad = out.bad.errors.join('\n');
      for (const key of ['lang', 'joinType', 'isAllowPublishRetry', 'isAllowSubscribeRetry', 'isOffCameraWhenVideoDisable',
        'isAllowDemotionGetStream', 'logLevel', 'logStdout', 'logOutputLevel']) {
        assert.match(bad, new RegExp(`\\b${key} must be`), `bad options: the error names ${key}:\n${bad}`);
      }
      assert.match(bad, /^\[RCCallLib installer steup\] /, 'bad options: the installer prefix');
      assert.match(out.bad.probe, /plugin setup failed/, 'bad options: the client is not usable');
      assert.match(out.missing.errors.join('\n'), /Initialization missing parameter -> "rtcClient,onSessionClose"/, 'missing keys named');
      assert.deepEqual(out.good.errors, [], 'valid options: no error');
      assert.match(out.good.probe, /getJoinedUserInfo\] userId must be a string/, 'valid options: a working client');

      assert.equal(out.warnDefault, 1, 'default: warnings are printed');
      assert.equal(out.warnLogLError, 0, 'logOutputLevel ERROR (1): no warnings');
      assert.equal(out.warnLogLWarn, 1, 'logOutputLevel WARN (2): warnings');
      assert.equal(out.warnLevelError, 0, 'logLevel ERROR (3): no warnings');
      assert.equal(out.warnLevelNone, 0, 'logLevel NONE (1000): nothing');
      assert.equal(out.warnOutputWins, 1, 'logOutputLevel wins over the deprecated logLevel');
      assert.equal(out.warnWithSink, 0, 'logStdout: the console gets nothing');
      assert.equal(out.sunk.length, 1, `logStdout got the warning: ${JSON.stringify(out.sunk)}`);
      assert.equal(out.sunk[0][0], 2, 'logStdout level is LogLevel WARN (2)');
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('lang: the default push title of an invite follows lang (en / zh)', { timeout: TIMEOUT }, async () => {
    await diag('seed-lang', async () => {
      const sentBy = async (name, callOptions) => {
        const c = await suite.open(name);
        const frames = [];
        c.page.on('websocket', (ws) => ws.on('framesent', (f) => frames.push(Buffer.from(f.payload))));
        const userId = uid(`u-${name.toLowerCase()}`);
        await c.login(userId, await getToken(suite.server.url, userId), { callOptions });
        c.frames = frames;
        return c;
      };
      const A = await sentBy('A', { lang: 'en' });
      const B = await sentBy('B', {});
      const has = (c, text) => c.frames.some((f) => f.includes(Buffer.from(text, 'utf8')));

      const r1 = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      code(A, 'call()', r1, SUCCESS);
      await B.waitEvent('onSession', { sessionId: r1.session.sessionId });
      assert.ok(has(A, 'You have a voice call'), 'A (lang en): English default push title on the invite');
      assert.ok(!has(A, '您有一条音频通话'), 'A (lang en): no Chinese title');
      code(A, 'hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      await closeOf(B);

      const r2 = await sdk(B, ([t, m]) => H.call(t, m), [A.userId, MediaType.AUDIO_VIDEO]);
      code(B, 'call()', r2, SUCCESS);
      await A.waitEvent('onSession', { sessionId: r2.session.sessionId });
      assert.ok(has(B, '您有一条视频通话'), 'B (default lang zh): Chinese default push title');
      code(B, 'hungup()', await sdk(B, (sid) => H.hungup(sid), r2.session.sessionId), SUCCESS);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('53202 / 103: calling a user who blacklisted me fails; accepting a caller who blacklisted me ends with 103', { timeout: TIMEOUT }, async () => {
    await diag('seed-blacklist', async () => {
      const A = await suite.user('A');
      const B = await suite.user('B');
      await api('/user/blacklist/add.json', [['userId', B.userId], ['blackUserId', A.userId]]);
      const refused = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      assert.deepEqual([refused.code, refused.hasSession], [53202, false], `A: call() to a user who blacklisted A → ${JSON.stringify(refused)}`);
      await sleep(500);
      assert.deepEqual(await B.eventsOf('onSession'), [], 'B: no onSession from a blacklisted caller');
      assert.deepEqual(await A.eventsOf('onSessionClose'), [], 'A: no session, so no onSessionClose');
      await api('/user/blacklist/remove.json', [['userId', B.userId], ['blackUserId', A.userId]]);

      const res = await sdk(A, ([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      code(A, 'call() after the blacklist was lifted', res, SUCCESS);
      await B.waitEvent('onSession', { sessionId: res.session.sessionId });
      // A blacklists B while B's phone rings: B's Accept is refused.
      await api('/user/blacklist/add.json', [['userId', A.userId], ['blackUserId', B.userId]]);
      const acc = await sdk(B, () => H.accept());
      assert.equal(acc.code, 53202, `B: accept() refused by the blacklist → ${JSON.stringify(acc)}`);
      assert.equal(await closeOf(B), 103, 'B: ends with ADDED_TO_BLACKLIST');
      await sleep(300);
      assert.deepEqual(await A.eventsOf('onAccept'), [], 'A: never hears an accept');
      code(A, 'hungup()', await sdk(A, () => H.hungup()), SUCCESS);
      assert.equal(await closeOf(A), EndReason.CANCEL);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('53203: callInGroup from a user who is not in the group', { timeout: TIMEOUT }, async () => {
    await diag('seed-not-in-group', async () => {
      const [A, B, C] = [await suite.user('A'), await suite.user('B'), await suite.user('C')];
      const groupId = uid('g');
      await createGroup(suite.server.url, groupId, [B.userId, C.userId]);
      const res = await sdk(A, ([g, u, m]) => H.callInGroup(g, u, m), [groupId, [B.userId, C.userId], MediaType.AUDIO]);
      assert.deepEqual([res.code, res.hasSession], [ErrorCode.NOT_IN_GROUP, false], `A: callInGroup → ${JSON.stringify(res)}`);
      await sleep(500);
      for (const c of [B, C]) assert.deepEqual(await c.eventsOf('onSession'), [], `${c.name}: nothing rings`);
      // A member can call the same group.
      const ok = await sdk(B, ([g, u, m]) => H.callInGroup(g, u, m), [groupId, [C.userId], MediaType.AUDIO]);
      code(B, 'callInGroup() by a member', ok, SUCCESS);
      await C.waitEvent('onSession', { sessionId: ok.session.sessionId });
      code(B, 'hungup()', await sdk(B, () => H.hungup()), SUCCESS);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('102: my other device rejects the call → this device ends with HANGUP_BY_OTHER_CLIENT; the caller sees 12', { timeout: TIMEOUT }, async () => {
    await diag('seed-102', async () => {
      const A = await suite.user('A');
      const bId = uid('u-b');
      const B1 = await suite.user('B1', bId);
      const B2 = await suite.user('B2', bId);
      const res = await sdk(A, ([t, m]) => H.call(t, m), [bId, MediaType.AUDIO]);
      code(A, 'call()', res, SUCCESS);
      const sid = res.session.sessionId;
      await Promise.all([B1.waitEvent('onSession', { sessionId: sid }), B2.waitEvent('onSession', { sessionId: sid })]);
      code(B2, 'hungup() (reject)', await sdk(B2, () => H.hungup()), SUCCESS);
      assert.equal(await closeOf(B2), EndReason.REJECT);
      assert.equal(await closeOf(B1), EndReason.HANGUP_BY_OTHER_CLIENT, 'B1: closed by its other device');
      assert.deepEqual(await B1.eventsOf('onHungup'), [], 'B1: no onHungup for its own user');
      const h = await A.waitEvent('onHungup', { userId: bId });
      assert.equal(h.reason, EndReason.REMOTE_REJECT);
      assert.equal(await closeOf(A), EndReason.REMOTE_REJECT);
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('23 / 33: the Server API kicks B out of the call (/rtc/user/kick.json)', { timeout: TIMEOUT }, async () => {
    await diag('seed-kick', async () => {
      const A = await suite.user('A');
      const B = await suite.user('B');
      const sid = await connected(A, B);
      const kicked = await api('/rtc/user/kick.json', [['roomId', sid], ['userId', B.userId]]);
      assert.equal(kicked.devices, 1, 'kick reached B\'s one device');
      assert.equal(await closeOf(B), 23, 'B: KICKED_BY_SERVER');
      const h = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(h.reason, 33, 'A: onHungup(B, REMOTE_KICKED_BY_SERVER)');
      assert.equal(await closeOf(A), 33, 'A: the 1:1 call ends with 33');
    });
  });

  // ----------------------------------------------------------------------------------------------
  test('isOffCameraWhenVideoDisable: false keeps the camera on (disabled) across disableVideoTrack / enableVideoTrack', { timeout: TIMEOUT }, async () => {
    await diag('seed-camera-kept', async () => {
      const A = await suite.user('A');
      const B = await suite.user('B', undefined, { callOptions: { isOffCameraWhenVideoDisable: false } });
      await connected(A, B, MediaType.AUDIO_VIDEO);
      await A.waitRemoteVideo(B.userId);
      const before = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.equal(before.length, 1, 'B: one local video track');

      let mark = await A.mark();
      const markB = await B.mark();
      code(B, 'disableVideoTrack()', await sdk(B, () => H.sessionCall('disableVideoTrack')), SUCCESS);
      await A.waitEvent('onVideoMuteChange', { userId: B.userId, muted: true }, 10000, { since: mark });
      const off = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.deepEqual(off.map((t) => [t.mstId, t.readyState, t.enabled]), [[before[0].mstId, 'live', false]],
        'B: the camera track stays live, only disabled');

      mark = await A.mark();
      code(B, 'enableVideoTrack()', await sdk(B, () => H.sessionCall('enableVideoTrack')), SUCCESS);
      await A.waitEvent('onVideoMuteChange', { userId: B.userId, muted: false }, 10000, { since: mark });
      const on = (await B.eval(() => H.trackStates())).filter((t) => t.local && t.kind === 'video');
      assert.deepEqual(on.map((t) => [t.mstId, t.readyState, t.enabled]), [[before[0].mstId, 'live', true]], 'B: the same track, enabled again');
      assert.ok((await B.events()).slice(markB).every((e) => !(e.type === 'onTrackReady' && e.local)), 'B: no onTrackReady for a new local track');
      await A.assertVideoAdvancing(B.userId, { what: 'after enableVideoTrack()' });
      code(A, 'hungup()', await sdk(A, () => H.hungup()), SUCCESS);
    });
  });
});
