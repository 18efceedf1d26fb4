// The server's HTTP surface the SDK and apps rely on (no browser needed): health, the signed
// RongCloud Server API getToken, and the static routes the e2e pages use.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { APP_KEY, startServer, getTokenRaw, signHeaders } from './helpers.mjs';

describe('rcall-server HTTP', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await server?.stop(); });

  test('GET /healthz → 200', async () => {
    const res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 200);
  });

  test('POST /user/getToken.json with a valid signature → {code: 200, userId, token}', async () => {
    const { status, body } = await getTokenRaw(server.url, 'alice');
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.code, 200);
    assert.equal(body.userId, 'alice');
    assert.equal(typeof body.token, 'string');
    assert.ok(body.token.length > 0);
    const other = await getTokenRaw(server.url, 'bob');
    assert.notEqual(other.body.token, body.token, 'two users got the same token');
  });

  test('POST /user/getToken.json with a bad signature → HTTP 401 JSON', async () => {
    const headers = signHeaders();
    headers.Signature = '0'.repeat(40);
    const { status, body } = await getTokenRaw(server.url, 'mallory', { headers });
    assert.equal(status, 401);
    assert.equal(typeof body, 'object', `401 body is not JSON: ${body}`);
    const wrongSecret = await getTokenRaw(server.url, 'mallory', { headers: signHeaders(APP_KEY, 'not-the-secret') });
    assert.equal(wrongSecret.status, 401);
  });

  test('serves the web dir at / (the e2e harness page)', async () => {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /<script src="\/sdk\/rcall\.js"/);
  });
});
