// Cluster mode end to end (issue 15): a private Redis on a unix socket, three rcall-server nodes
// on it, and HAProxy in front of them with the documented config (examples/cluster/haproxy.cfg,
// addresses from the environment). Every page is loaded from, and connects through, the one
// HAProxy address; `balance leastconn` puts each page's WebSocket on another node, which the
// test checks in the nodes' logs. Real Chromium, the real SDK: a 1:1 video call between two
// nodes, a 3-member group call with one member on each node, a node killed under a call and a
// node frozen under a call (a partition, healed afterwards).
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import {
  ROOT, SDK_DIR, SUCCESS, MediaType, EndReason, Client, startServer, startRedis, stopProcess, findBinary, freePort,
  getToken, createGroup, launchBrowser, requireFile, withDiagnostics, sleep, uid,
} from './helpers.mjs';

const HAPROXY_CFG = path.join(ROOT, 'examples/cluster/haproxy.cfg');
const NODES = 3;

/** A child process whose output is kept for the diagnostics. */
function child(bin, args, env = {}) {
  const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  proc.stdout.on('data', (b) => log.push(b.toString()));
  proc.stderr.on('data', (b) => log.push(b.toString()));
  return { proc, log, logText: () => log.join(''), stop: () => stopProcess(proc) };
}

/** HAProxy with examples/cluster/haproxy.cfg in front of `nodes`; resolves once it forwards. */
async function startHaproxy(nodes) {
  const bin = findBinary('haproxy', ['/usr/sbin', '/usr/bin']);
  const port = await freePort();
  const env = { RCALL_LB_BIND: `127.0.0.1:${port}` };
  nodes.forEach((n, i) => { env[`RCALL_NODE${i + 1}`] = new URL(n.url).host; });
  const h = child(bin, ['-f', HAPROXY_CFG, '-db'], env);
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (h.proc.exitCode !== null) throw new Error(`haproxy exited at start:\n${h.logText()}`);
    if (Date.now() - t0 > 10000) throw new Error(`haproxy does not forward within 10 s:\n${h.logText()}`);
    await sleep(50);
  }
  return { ...h, url };
}

describe('cluster: Redis + 3 nodes behind HAProxy', () => {
  let redis, nodes = [], lb, browser;
  let clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    requireFile(HAPROXY_CFG, 'the documented HAProxy config');
    redis = await startRedis();
    for (let i = 0; i < NODES; i++) nodes.push(await startServer({ extraArgs: ['--redis', redis.url] }));
    lb = await startHaproxy(nodes);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await lb?.stop();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    // The closed pages' WebSockets are gone from every node before the next test's pages
    // connect (leastconn then spreads them again).
    await sleep(300);
  });

  /** Every process's log, for the diagnostics. */
  const logs = {
    logText: () => [
      ...nodes.map((n, i) => `--- node ${i + 1}:\n${n.logText().split('\n').slice(-60).join('\n')}`),
      `--- haproxy:\n${lb?.logText() ?? ''}`,
    ].join('\n'),
  };
  const diag = (name, fn) => withDiagnostics(name, () => clients, logs, fn, { timeout: 85000 });

  /** A page loaded through HAProxy, logged in through it. */
  async function openUser(name, tag) {
    const userId = uid(`${tag}-${name.toLowerCase()}`);
    const c = await Client.open(browser, name, `${lb.url}/`);
    clients.push(c);
    await c.login(userId, await getToken(lb.url, userId), { navi: lb.url });
    return c;
  }

  /** Index of the node whose log says `userId` connected there (the latest such node). */
  async function nodeOf(c) {
    const t0 = Date.now();
    for (;;) {
      let at = -1;
      nodes.forEach((n, i) => {
        if (n.logText().split('\n').some((l) => / connected /.test(l) && l.includes(c.userId))) at = i;
      });
      if (at >= 0) return at;
      if (Date.now() - t0 > 5000) throw new Error(`${c.name}: no node logged ${c.userId} connecting`);
      await sleep(50);
    }
  }

  async function onDistinctNodes(cs) {
    const at = await Promise.all(cs.map(nodeOf));
    assert.equal(new Set(at).size, cs.length, `pages on nodes ${at.map((i) => i + 1)}: expected one node each`);
    return at;
  }

  async function allDecode(pairs, what) {
    await Promise.all(pairs.map(([viewer, from]) => viewer.waitRemoteVideo(from.userId)));
    await Promise.all(pairs.map(([viewer, from]) => viewer.assertVideoAdvancing(from.userId, { what })));
  }

  test('a 1:1 video call between pages on two nodes', { timeout: 90000 }, async () => {
    await diag('cluster-1to1', async () => {
      const A = await openUser('A', 'cl1');
      const B = await openUser('B', 'cl1');
      const at = await onDistinctNodes([A, B]);
      console.log(`  (1:1) A on node ${at[0] + 1}, B on node ${at[1] + 1}`);

      const callRes = await A.eval(([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO_VIDEO]);
      assert.equal(callRes.code, SUCCESS, `A: call() → ${JSON.stringify(callRes)}`);
      const onSession = await B.waitEvent('onSession', { sessionId: callRes.session.sessionId });
      assert.equal(onSession.callerId, A.userId);
      await A.waitEvent('onRinging', { userId: B.userId });
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
      await A.waitEvent('onAccept', { userId: B.userId });
      await allDecode([[A, B], [B, A]], 'in the 1:1 call across nodes');

      assert.equal((await B.eval(() => H.hungup())).code, SUCCESS);
      const h = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(h.reason, EndReason.REMOTE_HANGUP);
      await A.waitEvent('onSessionClose');
      await B.waitEvent('onSessionClose');
    });
  });

  test('a group call with one member on each of the three nodes', { timeout: 90000 }, async () => {
    await diag('cluster-group', async () => {
      const A = await openUser('A', 'clg');
      const B = await openUser('B', 'clg');
      const C = await openUser('C', 'clg');
      const at = await onDistinctNodes([A, B, C]);
      console.log(`  (group) A on node ${at[0] + 1}, B on node ${at[1] + 1}, C on node ${at[2] + 1}`);
      const groupId = uid('clg-group');
      // Created through HAProxy on one node; the group is shared through Redis.
      await createGroup(lb.url, groupId, [A.userId, B.userId, C.userId]);

      const callRes = await A.eval(([g, u, m]) => H.callInGroup(g, u, m), [groupId, [B.userId, C.userId], MediaType.AUDIO_VIDEO]);
      assert.equal(callRes.code, SUCCESS, `A: callInGroup() → ${JSON.stringify(callRes)}`);
      const sessionId = callRes.session.sessionId;
      for (const c of [B, C]) {
        const s = await c.waitEvent('onSession');
        assert.equal(s.sessionId, sessionId, `${c.name}: onSession for the group call`);
        assert.equal(s.targetId, groupId, `${c.name}: session.getTargetId()`);
      }
      await A.waitEvent('onRinging', { userId: B.userId });
      await A.waitEvent('onRinging', { userId: C.userId });

      assert.equal((await B.eval(() => H.accept())).code, SUCCESS, 'B: accept()');
      await A.waitEvent('onAccept', { userId: B.userId });
      await C.waitEvent('onAccept', { userId: B.userId });
      assert.equal((await C.eval(() => H.accept())).code, SUCCESS, 'C: accept()');
      await A.waitEvent('onAccept', { userId: C.userId });
      await B.waitEvent('onAccept', { userId: C.userId });
      await allDecode([[A, B], [A, C], [B, A], [B, C], [C, A], [C, B]], 'with all three in the call');

      // B leaves: A and C hear it and keep talking.
      assert.equal((await B.eval(() => H.hungup())).code, SUCCESS, 'B: hungup()');
      for (const c of [A, C]) {
        const h = await c.waitEvent('onHungup', { userId: B.userId });
        assert.equal(h.reason, EndReason.REMOTE_HANGUP, `${c.name}: onHungup(B) reason`);
      }
      await A.assertVideoAdvancing(C.userId, { what: 'after B left' });
      assert.deepEqual(await A.eventsOf('onSessionClose'), [], 'A: the call goes on with C');
    });
  });

  /** A (`tag`-a) calls B on another node, B accepts, and both see the other's video (`what`):
   *  { A, B, bNode } (B's node's index). */
  async function callAcrossNodes(tag, what) {
    const A = await openUser('A', tag);
    const B = await openUser('B', tag);
    const [, bNode] = await onDistinctNodes([A, B]);
    const callRes = await A.eval(([t, m]) => H.call(t, m), [B.userId, MediaType.AUDIO_VIDEO]);
    assert.equal(callRes.code, SUCCESS, `A: call() → ${JSON.stringify(callRes)}`);
    await B.waitEvent('onSession', { sessionId: callRes.session.sessionId });
    assert.equal((await B.eval(() => H.accept())).code, SUCCESS, 'B: accept()');
    await A.waitEvent('onAccept', { userId: B.userId });
    await allDecode([[A, B], [B, A]], what);
    return { A, B, bNode };
  }

  test('the callee\'s node is killed: its page reconnects through HAProxy and the call goes on', { timeout: 90000 }, async () => {
    await diag('cluster-kill', async () => {
      const { A, B, bNode } = await callAcrossNodes('clk', 'before the kill');

      // B's node dies without a goodbye; HAProxy sends B's reconnect to a live node.
      const mark = await B.mark();
      const killedAt = Date.now();
      nodes[bNode].proc.kill('SIGKILL');
      await B.waitEvent('im:SUSPEND', {}, 10000, { since: mark });
      await B.waitEvent('im:CONNECTED', {}, 20000, { since: mark });
      console.log(`  (kill) node ${bNode + 1} killed; B connected again after ${Date.now() - killedAt} ms`);
      // Media is peer to peer: it never stopped. Nobody hangs up on B's behalf, not even once
      // a lost device's grace (5 s) is over; the call's signalling goes on: B's hangup reaches
      // A through B's new node.
      await sleep(6000);
      await allDecode([[A, B], [B, A]], 'after the kill');
      for (const c of [A, B]) assert.deepEqual(await c.eventsOf('onHungup'), [], `${c.name}: no hangup before B's own`);
      assert.equal((await B.eval(() => H.hungup())).code, SUCCESS, 'B: hungup()');
      const h = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(h.reason, EndReason.REMOTE_HANGUP);
      await A.waitEvent('onSessionClose');
    });
  });

  test('a frozen node (a partition): HAProxy takes it out, its page reconnects elsewhere, the call goes on', { timeout: 90000 }, async () => {
    await diag('cluster-freeze', async () => {
      const { A, B, bNode } = await callAcrossNodes('clf', 'before the freeze');

      // B's node stops answering anything, its sockets stay open: HAProxy's checks fail and it
      // closes the sockets through that node, so B reconnects (to a node that answers).
      const mark = await B.mark();
      const frozenAt = Date.now();
      const frozen = nodes[bNode].proc;
      frozen.kill('SIGSTOP');
      try {
        await B.waitEvent('im:SUSPEND', {}, 20000, { since: mark });
        await B.waitEvent('im:CONNECTED', {}, 20000, { since: mark });
        console.log(`  (freeze) node ${bNode + 1} frozen; B connected again after ${Date.now() - frozenAt} ms`);
        await allDecode([[A, B], [B, A]], 'after the freeze');
      } finally {
        frozen.kill('SIGCONT');
      }
      // The node runs again and finds B's old socket closed: no hangup on B's behalf (past a
      // lost device's grace), and B's own hangup reaches A through B's new node.
      await sleep(6000);
      for (const c of [A, B]) assert.deepEqual(await c.eventsOf('onHungup'), [], `${c.name}: no hangup before B's own`);
      assert.equal((await B.eval(() => H.hungup())).code, SUCCESS, 'B: hungup()');
      const h = await A.waitEvent('onHungup', { userId: B.userId });
      assert.equal(h.reason, EndReason.REMOTE_HANGUP);
    });
  });
});
