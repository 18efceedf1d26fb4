// A call hung up while the caller's camera is still opening. rcall sends the invite while
// getUserMedia runs (the callee rings at once), and the app has no session object until call()
// resolves, so `RongIMLib.disconnect()` or leaving the page is how the caller gives up then.
// Either must cancel the call at once with the caller's own Hangup (the callee sees
// REMOTE_CANCEL 11), and the camera that opens afterwards must be stopped, never attached to a
// peer connection. The server would hang up for a caller whose connection closed too, with the
// same 11, after its 1 s grace: here that grace is a minute, so only the caller's own Hangup can
// end the callee's ringing within the test's wait.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MediaType, EndReason, ErrorCode, browserSuite, sleep, uid, fmtMs, now } from './helpers.mjs';

/** How long the caller's getUserMedia takes (a permission prompt, a slow camera). */
const GUM_DELAY_MS = 3000;
/** The server's grace for a member whose connection closed cleanly (default 1 s). */
const LEFT_GRACE_MS = 60000;

describe('hangup while the caller\'s camera opens', () => {
  const suite = browserSuite({ serverOptions: { extraArgs: ['--left-grace-ms', String(LEFT_GRACE_MS)] } });
  const user = (name) => suite.user(name, uid(`ho-${name.toLowerCase()}`));
  const diag = (name, fn) => suite.diag(name, fn, { timeout: 40000 });

  /** Makes the page's getUserMedia answer `ms` late, keeping every stream it hands out
   *  (`window.__slowGum`) so the test can see whether its tracks were stopped. */
  function slowCamera(c, ms) {
    return c.eval((ms) => {
      const md = navigator.mediaDevices;
      const orig = md.getUserMedia.bind(md);
      window.__slowGum = [];
      md.getUserMedia = async (constraints) => {
        const rec = { asked: Date.now(), stream: null };
        window.__slowGum.push(rec);
        await new Promise((r) => setTimeout(r, ms));
        rec.stream = await orig(constraints);
        return rec.stream;
      };
    }, ms);
  }
  const gumStates = (c) => c.eval(() => window.__slowGum.map((r) => ({
    opened: !!r.stream,
    states: r.stream ? r.stream.getTracks().map((t) => `${t.kind}:${t.readyState}`) : [],
  })));

  /** A calls B with a slow camera; resolves once B rings (A's call() still pending). */
  async function ringingWhileOpening(A, B) {
    await slowCamera(A, GUM_DELAY_MS);
    const t0 = now();
    await A.eval(([t, m]) => { window.__callResult = H.call(t, m); }, [B.userId, MediaType.AUDIO_VIDEO]);
    await B.waitEvent('onSession', {}, 5000);
    const pending = await A.eval(() => H.events.some((e) => e.type === 'callResult'));
    assert.equal(pending, false, 'A: call() resolved before its camera opened; the test needs it pending');
    return t0;
  }

  test('disconnect() while getUserMedia is pending: the callee sees 11 at once, call() → 53201, the camera is stopped when it opens', { timeout: 45000 }, async () => {
    await diag('hangup-opening-disconnect', async () => {
      const A = await user('A');
      const B = await user('B');
      const t0 = await ringingWhileOpening(A, B);
      const tHang = now();
      await A.eval(() => RongIMLib.disconnect());
      const close = await B.waitEvent('onSessionClose', {}, 5000);
      const hung = await B.waitEvent('onHungup', { userId: A.userId }, 5000);
      console.log(`  B rang ${fmtMs((await B.waitEvent('onSession')).t - t0)} after call(); ` +
        `A disconnect() → B onSessionClose(${close.summary.endReason}) ${fmtMs(close.t - tHang)}`);
      assert.equal(close.summary.endReason, EndReason.REMOTE_CANCEL, 'B: ended by the caller\'s cancel');
      assert.equal(hung.reason, EndReason.REMOTE_CANCEL);

      const res = await A.eval(() => window.__callResult);
      assert.equal(res.code, ErrorCode.SEND_MSG_ERROR, `A: call() → ${JSON.stringify(res)}`);
      assert.equal(res.hasSession, false);
      // The camera opens after the hang-up: its tracks are stopped, nothing announced, no link.
      await sleep(Math.max(0, GUM_DELAY_MS - (now() - t0)) + 500);
      let states = await gumStates(A);
      for (let i = 0; i < 20 && !states.every((s) => s.opened); i++) { await sleep(250); states = await gumStates(A); }
      assert.ok(states.length >= 1 && states.every((s) => s.opened), `A: getUserMedia calls ${JSON.stringify(states)}`);
      assert.ok(states.every((s) => s.states.length > 0 && s.states.every((x) => x.endsWith(':ended'))),
        `A: tracks of the camera opened after the hang-up: ${JSON.stringify(states)}`);
      const aEvents = await A.events();
      assert.ok(!aEvents.some((e) => e.type === 'onTrackReady' || e.type === 'onSessionClose'),
        `A: the app heard of a call it never got: ${JSON.stringify(aEvents.map((e) => e.type))}`);
      assert.equal(await A.eval(() => window.__pcs.length), 0, 'A: a peer connection was made for the cancelled call');
      assert.deepEqual(await A.eval(() => H.errors()), []);
    });
  });

  test('the caller\'s tab closes while getUserMedia is pending: the callee sees 11 at once (pagehide)', { timeout: 45000 }, async () => {
    await diag('hangup-opening-pagehide', async () => {
      const A = await user('A');
      const B = await user('B');
      await ringingWhileOpening(A, B);
      const tHang = now();
      await A.page.close(); // runs pagehide
      const close = await B.waitEvent('onSessionClose', {}, 5000);
      const hung = await B.waitEvent('onHungup', { userId: A.userId }, 5000);
      console.log(`  A's tab closed → B onSessionClose(${close.summary.endReason}) ${fmtMs(close.t - tHang)}`);
      assert.equal(close.summary.endReason, EndReason.REMOTE_CANCEL, 'B: ended by the caller\'s cancel');
      assert.equal(hung.reason, EndReason.REMOTE_CANCEL);
    });
  });
});
