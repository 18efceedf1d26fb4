// A call forced through TURN: coturn on 127.0.0.1 with a shared secret, rcall-server handing out
// time-limited credentials for it at login, both pages with `iceTransportPolicy: 'relay'`.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SDK_DIR, SUCCESS, MediaType, Client, startServer, getToken, launchBrowser, requireFile,
  withDiagnostics, sleep, uid,
} from './helpers.mjs';

const TURN_SECRET = 'e2e-turn-secret';
const TURN_PORT = 3479;

function haveTurnserver() {
  try {
    execFileSync('sh', ['-c', 'command -v turnserver'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('TURN relay', () => {
  let server, browser, turn, tmp;
  const clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    if (!haveTurnserver()) {
      if (process.env.CI) throw new Error('turnserver (Debian coturn) is missing; scripts/setup.sh installs it');
      return;
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-turn-'));
    turn = spawn('turnserver', [
      '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${TURN_PORT}`,
      '--min-port=49160', '--max-port=49260', '--use-auth-secret', `--static-auth-secret=${TURN_SECRET}`,
      '--realm=rcall.test', '--fingerprint', '--allow-loopback-peers', '--no-tls', '--no-dtls', '--no-cli',
      '--no-tcp-relay', '--log-file=stdout', '--simple-log', '--verbose', `--pidfile=${tmp}/turn.pid`, `--userdb=${tmp}/turndb`,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    turn.log = [];
    turn.stdout.on('data', (b) => turn.log.push(b.toString()));
    await sleep(300);
    server = await startServer({
      extraArgs: ['--turn-url', `turn:127.0.0.1:${TURN_PORT}?transport=udp`, '--turn-secret', TURN_SECRET],
    });
    browser = await launchBrowser();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await browser?.close().catch(() => {});
    await server?.stop();
    turn?.kill('SIGTERM');
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a call with iceTransportPolicy relay goes through coturn with the server\'s credentials', { timeout: 45000 }, async (t) => {
    if (!turn) return t.skip('turnserver not installed (outside CI)');
    const users = [uid('turn-a'), uid('turn-b')];
    const [A, B] = await Promise.all(users.map(async (u, i) => {
      const c = await Client.open(browser, i ? 'B' : 'A', `${server.url}/`);
      clients.push(c);
      // No iceServers from the app: the SDK uses the TURN server the rcall server announced.
      await c.login(u, await getToken(server.url, u), { rtcOptions: { iceTransportPolicy: 'relay' } });
      return c;
    }));
    await withDiagnostics('turn', () => clients, server, async () => {
      const res = await A.eval(([to, m]) => H.call(to, m), [users[1], MediaType.AUDIO_VIDEO]);
      assert.equal(res.code, SUCCESS, JSON.stringify(res));
      await B.waitEvent('onSession');
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS);
      await Promise.all([A.waitRemoteVideo(users[1]), B.waitRemoteVideo(users[0])]);
      const stats = await A.eval(() => H.rtcStats());
      const types = stats.map((s) => s.pairTypes).filter(Boolean);
      assert.ok(types.length > 0, `no selected candidate pair: ${JSON.stringify(stats)}`);
      for (const pair of types) assert.deepEqual(pair, ['relay', 'relay'], `selected pair ${JSON.stringify(stats)}`);
      assert.match(turn.log.join(''), /ALLOCATE processed, success/, 'coturn allocated relays');
      console.log(`  TURN: selected pairs ${stats.map((s) => s.pair).join(', ')}`);
    }, { timeout: 40000 });
  });
});
