// Issue 11, item 1: a user who is not in a call cannot get into it. A third user of the same app
// speaks the wire protocol directly (a raw WebSocket in its own page, frames encoded by hand
// below) and sends a live 1:1 call's participants what once made a victim connect to it:
// RC:VCModifyMem listing itself CONNECTED, RC:VCAccept, an RCall:Media offer and RC:VCHangup.
// The server refuses each (SendResult 40403 NOT_IN_CALL) and the call's pages never show it as a
// member nor open a peer connection to it; the call goes on.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SUCCESS, MediaType, browserSuite, getToken, withDiagnostics, sleep, uid } from './helpers.mjs';

const NOT_IN_CALL = 40403;

/** Runs in the attacker's page: a minimal protobuf writer/reader for the envelope (field
 *  numbers from crates/rtc-core/src/proto/{envelope,call}.rs) and a raw WebSocket session. */
async function attack({ wsUrl, token, callId, victim, victimDevice, caller, me }) {
  const enc = new TextEncoder();
  const varint = (n) => { const out = []; n = BigInt(n); do { let b = Number(n & 0x7fn); n >>= 7n; if (n) b |= 0x80; out.push(b); } while (n); return out; };
  const key = (field, wire) => varint((field << 3) | wire);
  const bytes = (field, b) => [...key(field, 2), ...varint(b.length), ...b];
  const str = (field, s) => bytes(field, [...enc.encode(s)]);
  const num = (field, n) => [...key(field, 0), ...varint(n)];
  const msg = (field, parts) => bytes(field, parts.flat());
  const content = (body) => [str(1, 'Web'), str(2, 'm1'), str(3, callId), body].flat();
  const send = (requestId, type, body) => msg(2, [num(1, requestId), num(2, 1), str(3, victim), str(6, type), bytes(7, content(body))]);
  const read = (buf) => { // top-level fields of one message: {field: [value]} (varints as Number, bytes as Uint8Array)
    const out = {}; let i = 0;
    const rv = () => { let n = 0n, s = 0n, b; do { b = buf[i++]; n |= BigInt(b & 0x7f) << s; s += 7n; } while (b & 0x80); return n; };
    while (i < buf.length) {
      const k = Number(rv()), f = k >> 3, w = k & 7;
      let v;
      if (w === 0) v = Number(rv());
      else if (w === 2) { const len = Number(rv()); v = buf.subarray(i, i + len); i += len; }
      else throw new Error(`wire type ${w}`);
      (out[f] = out[f] || []).push(v);
    }
    return out;
  };
  const ws = new WebSocket(wsUrl);
  ws.binaryType = 'arraybuffer';
  const frames = [];
  let wake = () => {};
  ws.onmessage = (e) => { frames.push(read(new Uint8Array(e.data))); wake(); };
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = () => j(new Error('attacker socket failed')); });
  const next = async (field) => {
    for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
      const i = frames.findIndex((f) => f[field]);
      if (i >= 0) return read(frames.splice(i, 1)[0][field][0]);
      await new Promise((r) => { wake = r; setTimeout(r, 100); });
    }
    throw new Error(`no frame with field ${field}`);
  };
  ws.send(new Uint8Array(msg(1, [str(1, token), str(2, 'm1')])));
  const auth = await next(2);
  if ((auth[1] || [0])[0] !== 0) throw new Error(`attacker login refused: ${auth[1]}`);
  const attempts = {
    // "I am in this call too": lists itself CONNECTED in existedUserPofiles.
    modifyMem: send(1, 'RC:VCModifyMem', msg(14, [num(1, 4), num(3, 2), str(4, victim), str(4, me), str(6, caller), num(7, 1),
      msg(8, [str(1, me), num(2, 2), num(3, 4)]), msg(8, [str(1, caller), num(2, 2), num(3, 4)])])),
    accept: send(2, 'RC:VCAccept', msg(12, [num(1, 2)])),
    offer: send(3, 'RCall:Media', msg(16, [str(1, victim), str(2, victimDevice), str(3, 'v=0\r\n')])),
    hangup: send(4, 'RC:VCHangup', msg(13, [num(1, 3)])),
  };
  const codes = {};
  for (const [name, frame] of Object.entries(attempts)) {
    ws.send(new Uint8Array(frame));
    const r = await next(4);
    codes[name] = (r[2] || [0])[0];
  }
  ws.close(1000);
  return codes;
}

describe('issue 11: strangers stay out of calls', () => {
  const suite = browserSuite();

  test('a third user of the app cannot join, connect to or end a 1:1 call', { timeout: 60000 }, async () => {
    await withDiagnostics('stranger', () => suite.clients, suite.server, async () => {
      const A = await suite.user('A');
      const B = await suite.user('B');
      const res = await A.eval(([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS, `A: call() → ${JSON.stringify(res)}`);
      await B.waitEvent('onSession');
      assert.equal((await B.eval(() => H.accept())).code, SUCCESS);
      await Promise.all([A.waitRemoteVideo(B.userId), B.waitRemoteVideo(A.userId)]);
      const callId = (await A.eval(() => H.sessionInfo())).sessionId;
      const pcs = async (c) => c.eval(() => window.__pcs.length);
      const before = [await pcs(A), await pcs(B)];

      const me = uid('mallory');
      const M = await suite.open('M');
      const codes = await M.eval(attack, {
        wsUrl: suite.server.url.replace(/^http/, 'ws') + '/ws',
        token: await getToken(suite.server.url, me),
        callId,
        victim: B.userId,
        victimDevice: await B.eval(() => localStorage.getItem('RCCallDeviceId')),
        caller: A.userId,
        me,
      });
      assert.deepEqual(codes, { modifyMem: NOT_IN_CALL, accept: NOT_IN_CALL, offer: NOT_IN_CALL, hangup: NOT_IN_CALL },
        'the server refuses every call message of a non-participant');

      await sleep(1000);
      for (const c of [A, B]) {
        const evs = await c.events();
        const touched = evs.filter((e) => JSON.stringify(e).includes(me));
        assert.deepEqual(touched, [], `${c.name}: saw the stranger`);
        assert.deepEqual(await c.eventsOf('onMemberModify'), [], `${c.name}: no member change`);
        assert.deepEqual(await c.eventsOf('onSessionClose'), [], `${c.name}: the call goes on`);
      }
      assert.deepEqual([await pcs(A), await pcs(B)], before, 'no peer connection opened toward the stranger');
      await A.assertVideoAdvancing(B.userId, { what: 'after the attempts' });
      await B.assertVideoAdvancing(A.userId, { what: 'after the attempts' });
    });
  });
});
