// The IM link survives a server restart: both pages reconnect by themselves (same token, resume
// from the last message processed) and can call each other afterwards. The app follows it with
// IMLib 5's connection events and status (CONNECTING, CONNECTED, SUSPEND(30002), DISCONNECT(2)).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  APP_KEY, APP_SECRET, PAGES_DIR, ROOT, SDK_DIR, SERVER_BIN, SUCCESS, MediaType, Client, getToken,
  launchBrowser, requireFile, withDiagnostics, sleep, uid, freePort,
} from './helpers.mjs';

/** rcall-server on a fixed port and database, so it can be restarted in place. */
async function startAt(port, db) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RCALL_')));
  const proc = spawn(SERVER_BIN, [
    '--listen', `127.0.0.1:${port}`, '--db', db, '--app-key', APP_KEY, '--app-secret', APP_SECRET,
    '--sdk-dir', SDK_DIR, '--web-dir', PAGES_DIR,
  ], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line:\n${log.join('')}`)), 15000);
    const onData = (b) => {
      log.push(b.toString());
      if (log.join('').includes('rcall-server listening on')) { clearTimeout(timer); resolve(); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (c) => { clearTimeout(timer); reject(new Error(`exited ${c}:\n${log.join('')}`)); });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    logText: () => log.join(''),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

describe('IM reconnect', () => {
  let server, browser, tmp;
  let clients = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    requireFile(SERVER_BIN, 'run `cargo build --release -p rcall-server` first');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-e2e-reconnect-'));
    browser = await launchBrowser();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await browser?.close().catch(() => {});
    await server?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a server restart is survived: both sides reconnect and then call', { timeout: 60000 }, async () => {
    const port = await freePort();
    const db = path.join(tmp, 'rcall.db');
    server = await startAt(port, db);
    const a = uid('rc-a');
    const b = uid('rc-b');
    const A = await Client.open(browser, 'A', `${server.url}/`);
    const B = await Client.open(browser, 'B', `${server.url}/`);
    clients.push(A, B);
    await A.login(a, await getToken(server.url, a));
    await B.login(b, await getToken(server.url, b));
    const status = (c) => c.eval(() => RongIMLib.getConnectionStatus());
    await withDiagnostics('reconnect', () => clients, server, async () => {
      // Login: CONNECTING then CONNECTED, status CONNECTED (0).
      const login = (await A.events()).filter((e) => e.type.startsWith('im:')).map((e) => e.type);
      assert.deepEqual(login, ['im:CONNECTING', 'im:CONNECTED']);
      assert.equal(await status(A), 0);
      // The server dies without a goodbye: SUSPEND(RC_NET_UNAVAILABLE) while the SDK retries
      // (status SUSPENDED 3 or CONNECTING 1)...
      const mark = await A.mark();
      await server.stop();
      const suspend = await A.waitEvent('im:SUSPEND', {}, 5000, { since: mark });
      assert.equal(suspend.code, 30002);
      assert.ok([1, 3].includes(await status(A)), `status while the server is down: ${await status(A)}`);
      await A.waitEvent('im:CONNECTING', {}, 5000, { since: mark });
      // ...and comes back on the same address and database: CONNECTED again.
      await sleep(500);
      server = await startAt(port, db);
      await A.waitEvent('im:CONNECTED', {}, 20000, { since: mark });
      assert.equal(await status(A), 0);
      // The SDK retries after 1 s, then backs off; give it a few attempts.
      const deadline = Date.now() + 20000;
      let res;
      while (Date.now() < deadline) {
        res = await A.eval(([t, m]) => H.call(t, m), [b, MediaType.AUDIO_VIDEO]);
        if (res.code === SUCCESS) break;
        await sleep(1000);
      }
      assert.equal(res.code, SUCCESS, `A: call() after the restart → ${JSON.stringify(res)}`);
      await B.waitEvent('onSession', {}, 10000);
      const acc = await B.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `B: accept() → ${JSON.stringify(acc)}`);
      await Promise.all([A.waitRemoteVideo(b), B.waitRemoteVideo(a)]);
      const h = await A.eval(() => H.hungup());
      assert.equal(h.code, SUCCESS);
      const close = await B.waitEvent('onSessionClose');
      assert.equal(close.summary.endReason, 13);
      // disconnect(): DISCONNECT(ACTIVE_DISCONNECT 2), status DISCONNECTED (2); nothing reconnects.
      const before = await B.mark();
      await B.eval(() => RongIMLib.disconnect());
      const bye = await B.waitEvent('im:DISCONNECT', {}, 5000, { since: before });
      assert.equal(bye.code, 2);
      assert.equal(await status(B), 2);
      await sleep(1500);
      const after = (await B.events()).slice(before).filter((e) => e.type.startsWith('im:')).map((e) => e.type);
      assert.deepEqual(after, ['im:DISCONNECT']);
    }, { timeout: 50000 });
  });
});
