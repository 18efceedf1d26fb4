// Offline push end to end: a page sets a full IPushConfig (iOS, Android vendor channels,
// HarmonyOS, an unknown key) and calls a user who has no online device; the server POSTs the push
// to the app's webhook — a local receiver here that checks RongCloud's callback signature — with
// the caller, call id, media type and the whole config. Online callees get no push.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { APP_KEY, APP_SECRET, SUCCESS, MediaType, browserSuite, getToken, withDiagnostics, sleep, uid } from './helpers.mjs';

/** A webhook receiver on 127.0.0.1 that records every request. */
async function startReceiver() {
  const hits = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      hits.push({ url: req.url, headers: req.headers, body: JSON.parse(body) });
      res.writeHead(200).end('{"code":200}');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/push`;
  return {
    url,
    hits,
    close: () => new Promise((r) => server.close(r)),
    async next(from, timeout = 10000) {
      const deadline = Date.now() + timeout;
      while (hits.length <= from) {
        if (Date.now() > deadline) throw new Error(`no push within ${timeout} ms (got ${hits.length})`);
        await sleep(50);
      }
      return hits[from];
    },
  };
}

/** What an app's backend checks: hex SHA1(appSecret + Nonce + Timestamp). */
function assertSigned(hit) {
  const h = hit.headers;
  assert.equal(h['app-key'], APP_KEY);
  const expected = createHash('sha1').update(APP_SECRET + h.nonce + h.timestamp).digest('hex');
  assert.equal(h.signature, expected, 'signature');
  assert.ok(Math.abs(Date.now() - Number(h.timestamp)) < 60000, 'fresh timestamp');
}

const callPush = {
  pushTitle: 'ignored: the per-call title wins',
  pushContent: 'Tap to answer',
  pushData: 'app-data',
  iOSConfig: { threadId: 'calls', apnsCollapseId: 'c1', interruptionLevel: 'time-sensitive' },
  androidConfig: {
    channelIdHW: 'hw', categoryHW: 'VOIP', importanceHW: 'NORMAL', typeVivo: '1', categoryVivo: 'IM',
    googleConfig: { collapseKey: 'k', priority: 'high' }, channelIdNewVendor: 'nv',
  },
  harmonyOSConfig: { category: 'VOIP', imageUrl: 'https://example.com/i.png' },
  forceShowDetailContent: true,
  templateId: 'tpl',
  futureKey: { any: 1 },
};

describe('offline push through the app webhook', () => {
  const serverOptions = { extraArgs: [] };
  let receiver;
  before(async () => {
    receiver = await startReceiver();
    serverOptions.extraArgs.push('--push-webhook-url', receiver.url);
  });
  after(() => receiver?.close());
  const suite = browserSuite({ serverOptions });
  const diag = (name, fn) => withDiagnostics(name, () => suite.clients, suite.server, fn);

  test('calling an offline user posts the invite, then the hangup, with the full IPushConfig', { timeout: 30000 }, async () => {
    const b = uid('push-b');
    const A = await suite.user('A');
    await diag('push-offline', async () => {
      await A.eval((cfg) => H.caller.setPushConfig(cfg.call, cfg.hangup),
        { call: callPush, hangup: { pushTitle: 'Missed call', androidConfig: { categoryHW: 'MISSED' } } });
      const from = receiver.hits.length;
      const res = await A.eval(([t, m]) => H.callWith({ targetId: t, mediaType: m, pushTitle: 'Ann calls you' }), [b, MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS, JSON.stringify(res));
      const callId = res.session.sessionId;
      const hit = await receiver.next(from);
      assertSigned(hit);
      const p = hit.body;
      assert.equal(p.event, 'invite');
      assert.deepEqual(p.toUserIds, [b]);
      assert.equal(p.callerId, A.userId);
      assert.equal(p.callId, callId);
      assert.equal(p.mediaType, MediaType.AUDIO_VIDEO);
      assert.equal(p.pushTitle, 'Ann calls you');
      assert.equal(p.pushContent, 'Tap to answer');
      assert.equal(JSON.parse(p.pushData).callId, callId, 'the call data mobile CallLibs read');
      const c = p.pushConfig;
      assert.equal(c.pushData, 'app-data');
      assert.deepEqual(c.iOSConfig, callPush.iOSConfig);
      assert.deepEqual(c.androidConfig, callPush.androidConfig);
      assert.deepEqual(c.harmonyOSConfig, callPush.harmonyOSConfig);
      assert.equal(c.forceShowDetailContent, true);
      assert.equal(c.templateId, 'tpl');
      assert.deepEqual(c.futureKey, { any: 1 });
      // The caller cancels: the hangup push from hungupPushConfig.
      assert.equal((await A.eval(() => H.hungup())).code, SUCCESS);
      const hang = await receiver.next(from + 1);
      assertSigned(hang);
      assert.equal(hang.body.event, 'hangup');
      assert.equal(hang.body.callId, callId);
      assert.equal(hang.body.reason, 1);
      assert.equal(hang.body.pushTitle, 'Missed call');
      assert.deepEqual(hang.body.pushConfig.androidConfig, { categoryHW: 'MISSED' });
      await sleep(500);
      assert.equal(receiver.hits.length, from + 2, 'one POST each');
    });
  });

  test('an online callee gets no push; wrong IPushConfig types throw the named error', { timeout: 30000 }, async () => {
    const A = await suite.user('A');
    const B = await suite.user('B');
    await diag('push-online', async () => {
      const err = await A.eval(() => {
        try {
          H.caller.setPushConfig({ iOSConfig: { threadId: 5 }, androidConfig: { importanceHW: 'HIGH' } }, 'x');
          return null;
        } catch (e) { return e.message; }
      });
      assert.equal(err, '[RCCallClient setPushConfig] callPushConfig.iOSConfig.threadId must be a string\n' +
        "callPushConfig.androidConfig.importanceHW must be one of 'NORMAL', 'LOW'\n" +
        'hungupPushConfig must be an object');
      await A.eval((cfg) => H.caller.setPushConfig(cfg, undefined), callPush);
      const from = receiver.hits.length;
      const res = await A.eval(([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO]);
      assert.equal(res.code, SUCCESS);
      await B.waitEvent('onSession');
      await sleep(1000);
      assert.equal(receiver.hits.length, from, 'no push for a user with an online device');
      assert.equal((await A.eval(() => H.hungup())).code, SUCCESS);
    });
  });
});
