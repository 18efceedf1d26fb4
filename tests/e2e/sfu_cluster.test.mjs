// SFU mode's unhappy paths across processes (issue 12, docs/sfu.md "Cluster mode" and
// "Restarts"), in real Chromium with a private Janus on a veth pair (tests/e2e/janus.mjs):
//
// - cluster mode: a private Redis on a unix socket and two rcall-server nodes with the same
//   `--janus`; a 4-member video group call with two members on each node; Redis restarted
//   (empty) under the call; one node SIGKILLed, its pages reconnecting to the other (navi list);
// - a single node (SQLite) restarted under the call, gracefully and with SIGKILL.
//
// Every page must get every remote video back, with no hangup. Times to media back are printed
// (upper bounds, polled), never asserted. Needs `unshare -n` like sfu.test.mjs.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SDK_DIR, PAGES_DIR, SUCCESS, startServer, startRestartableServer, startRedis, stopProcess, serveDirectory,
  withDiagnostics, allVideosAdvance, everyVideoAdvancing, sleep, uid, privateNetns,
} from './helpers.mjs';
import { startSfuRig, sfuScenario } from './janus.mjs';

const skip = privateNetns() ? false : 'needs root in a loopback-only network namespace (run under `unshare -n`, as scripts/test.sh does)';
const TEST_TIMEOUT = 200000;

describe('issue 12: SFU calls across two nodes (Redis + Janus)', { skip }, () => {
  let rig, janus, redis, statics, browser;
  let nodes = [];
  let clients = [];
  const s = sfuScenario(() => clients, () => browser);

  before(async () => {
    rig = await startSfuRig();
    ({ janus, browser } = rig);
    redis = await startRedis();
    statics = await serveDirectory({ '/sdk/': SDK_DIR, '/': PAGES_DIR });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await statics?.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
    await rig?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    await Promise.all(nodes.map((n) => n.stop()));
    nodes = [];
  });

  const node = async () => {
    const n = await startServer({ extraArgs: ['--redis', redis.url, ...janus.serverArgs] });
    nodes.push(n);
    return n;
  };
  const diag = (name, fn) => withDiagnostics(name, () => clients, {
    logText: () => [
      ...nodes.map((n, i) => `--- node ${i + 1}:\n${n.logText().split('\n').slice(-80).join('\n')}`),
      `--- redis:\n${redis.logText().split('\n').slice(-20).join('\n')}`,
      `--- janus log (tail):\n${janus.log().split('\n').slice(-60).join('\n')}`,
    ].join('\n'),
  }, fn, { timeout: TEST_TIMEOUT - 10000 });

  /** A, C on node 1 and B, D on node 2 (each page's navi lists its node first, then the other),
   *  in one group call, every remote video advancing. */
  async function callAcrossNodes(tag) {
    const [n1, n2] = [await node(), await node()];
    const page = `${statics.url}/index.html`;
    const pages = [];
    for (const [name, home, other] of [['A', n1, n2], ['B', n2, n1], ['C', n1, n2], ['D', n2, n1]]) {
      pages.push(await s.open(name, page, uid(`${tag}-${name.toLowerCase()}`), home.url, { navi: [home.url, other.url] }));
    }
    for (const [i, c] of pages.entries()) {
      const home = i % 2 === 0 ? n1 : n2;
      const connected = home.logText().split('\n').some((l) => / connected /.test(l) && l.includes(c.userId));
      assert.ok(connected, `${c.name}: connected to node ${1 + (i % 2)} (its first navi)`);
    }
    await s.groupCall(pages, n1.url);
    await allVideosAdvance(pages, 'with members on two nodes');
    return { pages, n1, n2 };
  }

  test('Redis restarts empty mid-call: media goes on (Janus kept the room), no hangup, the call still works', { timeout: TEST_TIMEOUT }, async () => {
    await diag('sfu-cluster-redis-restart', async () => {
      const { pages } = await callAcrossNodes('sfrr');
      const [A, B, C, D] = pages;
      const ready = async () => Promise.all(pages.map((c) => c.eventsOf('onTrackReady', { local: false })));
      const readyBefore = await ready();
      await redis.restart();
      const restartedAt = Date.now();
      // The nodes find Redis again, rebuild what they need; the room on Janus was never touched.
      await sleep(8000);
      await everyVideoAdvancing(pages, 'after the Redis restart');
      console.log(`# Redis restart → every remote video advancing on every page: ${Date.now() - restartedAt} ms (includes an 8 s wait)`);
      await s.noHangup(pages, 'after the Redis restart');
      // Nothing was set up again: the room and every member's connections on Janus stayed.
      const readyAfter = await ready();
      pages.forEach((c, i) => assert.equal(readyAfter[i].length, readyBefore[i].length,
        `${c.name}: no remote track set up again after the Redis restart: ${JSON.stringify(readyAfter[i].slice(readyBefore[i].length))}`));
      // The call's signalling and its room still follow membership: D leaves, the others keep
      // their video and see D go.
      assert.equal((await D.eval(() => H.hungup())).code, SUCCESS, 'D: hungup()');
      for (const c of [A, B, C]) await c.waitEvent('onHungup', { userId: D.userId }, 20000);
      const rest = [A, B, C];
      await everyVideoAdvancing(rest, 'after D left (post Redis restart)');
    });
  });

  test('a node is killed mid-call: its pages reconnect to the other node, publish and subscribe again, video comes back everywhere, no hangup', { timeout: TEST_TIMEOUT }, async () => {
    await diag('sfu-cluster-node-kill', async () => {
      const { pages, n2 } = await callAcrossNodes('sfnk');
      const [A, B, C, D] = pages;
      const marks = await Promise.all([B, D].map((c) => c.mark()));
      const before = await s.videoTracks(pages);
      const killedAt = Date.now();
      n2.proc.kill('SIGKILL');
      for (const [i, c] of [B, D].entries()) await c.waitEvent('im:CONNECTED', {}, 30000, { since: marks[i] });
      console.log(`# node killed → B and D connected to node 1: ${Date.now() - killedAt} ms`);
      await s.videoBack(pages, [B, D], before, 'after their node was killed');
      console.log(`# node killed → every remote video advancing again on every page: ${Date.now() - killedAt} ms (upper bound, polled)`);
      // Past a lost device's grace nobody is hung up for.
      await sleep(6000);
      await s.noHangup(pages, 'after the node kill');
      await everyVideoAdvancing(pages, 'well after the node kill');
      assert.equal((await A.eval(() => H.hungup())).code, SUCCESS, 'A: hungup()');
      for (const c of [B, C, D]) await c.waitEvent('onHungup', { userId: A.userId }, 20000);
    });
  });
});

describe('issue 12: a single SFU node restarted mid-call (SQLite)', { skip }, () => {
  let rig, janus, browser, tmp, server;
  let clients = [];
  const s = sfuScenario(() => clients, () => browser);

  before(async () => {
    rig = await startSfuRig();
    ({ janus, browser } = rig);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-e2e-sfu-restart-'));
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server?.kill();
    await rig?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const diag = (name, fn) => withDiagnostics(name, () => clients, {
    logText: () => `${server?.logText() ?? ''}\n--- janus log (tail):\n${janus.log().split('\n').slice(-60).join('\n')}`,
  }, fn, { timeout: TEST_TIMEOUT - 10000 });

  test('restarted gracefully, then killed and restarted: every page gets its media back, no hangup', { timeout: TEST_TIMEOUT + 60000 }, async () => {
    server = await startRestartableServer('127.0.0.1:0', path.join(tmp, 'rcall.db'), janus.serverArgs);
    await diag('sfu-server-restart', async () => {
      const pages = [];
      for (const name of ['A', 'B', 'C']) pages.push(await s.open(name, `${server.url}/`, uid(`sfsr-${name.toLowerCase()}`), server.url));
      await s.groupCall(pages, server.url);
      await allVideosAdvance(pages, 'before the restarts');
      let round = 0;
      for (const [how, stop] of [['graceful', () => stopProcess(server.proc, 'SIGTERM')], ['SIGKILL', () => server.kill()]]) {
        round++;
        const marks = await Promise.all(pages.map((c) => c.mark()));
        const before = await s.videoTracks(pages);
        await stop();
        const stoppedAt = Date.now();
        await server.restart();
        for (const [i, c] of pages.entries()) await c.waitEvent('im:CONNECTED', {}, 30000, { since: marks[i] });
        console.log(`# (${how}) server stopped → every page connected again: ${Date.now() - stoppedAt} ms`);
        // Every page publishes and subscribes again (the new process's room), then decodes
        // every other page's video.
        await s.videoBack(pages, pages, before, `after the ${how} restart`);
        console.log(`# (${how}) server stopped → every remote video advancing again on every page: ${Date.now() - stoppedAt} ms (upper bound, polled)`);
        await s.noHangup(pages, `after the ${how} restart (round ${round})`);
      }
    });
  });
});
