// A reconnect attempt the network holds (its WebSocket handshake never answered) is given up
// after the SDK's 3 s attempt timeout, and its socket is closed then: nothing keeps a login
// half-open that nobody listens to, and a late handshake cannot become a second live link.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { browserSuite, getToken, within, withDiagnostics } from './helpers.mjs';

const suite = browserSuite();

/** A TCP proxy to the server on 127.0.0.1 that numbers the connections it accepts. While
 *  `hold` is true a new connection is accepted and read but never forwarded (a handshake with
 *  no answer). `closed(n)` resolves when the client closes connection n. */
async function holdingProxy(target) {
  const { hostname, port } = new URL(target);
  const conns = [];
  const waiters = [];
  const proxy = { hold: false, conns };
  const server = net.createServer((client) => {
    const n = conns.length;
    let closedBy;
    const c = { client, closed: new Promise((r) => { closedBy = r; }) };
    conns.push(c);
    client.on('error', () => {});
    client.on('close', () => closedBy());
    if (proxy.hold) {
      client.on('data', () => {}); // read, never answer
    } else {
      const upstream = net.connect(Number(port), hostname);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
      c.upstream = upstream;
    }
    waiters.filter((w) => w.n === n).forEach((w) => w.resolve(c));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  /** Connection n (0-based), once accepted. */
  proxy.conn = (n) => (conns[n] ? Promise.resolve(conns[n]) : new Promise((resolve) => waiters.push({ n, resolve })));
  proxy.close = () => { conns.forEach((c) => { c.client.destroy(); c.upstream?.destroy(); }); server.close(); };
  return proxy;
}

test('a reconnect attempt that times out closes its socket before the next one', { timeout: 60000 }, async () => {
  const proxy = await holdingProxy(suite.server.url);
  try {
    const A = await suite.open('A');
    const a = `rt-${Date.now()}`;
    await withDiagnostics('reconnect-timeout', () => suite.clients, suite.server, async () => {
      await A.login(a, await getToken(suite.server.url, a), { navi: proxy.url });
      const first = await proxy.conn(0);
      // The link breaks; every reconnect attempt from now on is held.
      proxy.hold = true;
      const mark = await A.mark();
      first.client.destroy();
      first.upstream.destroy();
      await A.waitEvent('im:SUSPEND', {}, 10000, { since: mark });
      const held = await within(proxy.conn(1), 10000, 'the first reconnect attempt');
      // The SDK gives it up after its attempt timeout and tries again: by then (or at least
      // soon after: the browser closes asynchronously) the held socket is closed.
      await within(proxy.conn(2), 20000, 'a second reconnect attempt after the first timed out');
      await within(held.closed, 5000, 'the timed-out attempt\'s socket closed by the SDK');
      // Once the network answers again the SDK connects, on one socket.
      proxy.hold = false;
      await A.waitEvent('im:CONNECTED', {}, 30000, { since: mark });
      const open = proxy.conns.filter((c) => !c.client.destroyed && c.client.readyState === 'open');
      assert.equal(open.length, 1, `sockets still open: ${open.length} of ${proxy.conns.length}`);
    }, { timeout: 55000 });
  } finally {
    proxy.close();
  }
});
