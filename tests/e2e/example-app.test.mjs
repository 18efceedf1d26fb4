// Smoke test of the demo app (examples/web) as a person uses it: the server in --dev mode serves
// it, two users log in through the form (token from GET /dev/token), A clicks "Video call", B
// clicks "Accept", both see the other's video, A clicks "Hang up".
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT, APP_KEY, SDK_DIR, startServer, launchBrowser, requireFile, sleep, uid } from './helpers.mjs';

describe('examples/web demo app', () => {
  let server, browser;
  const pages = [];
  const logs = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    server = await startServer({ webDir: path.join(ROOT, 'examples/web'), extraArgs: ['--dev'] });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  async function openUser(name, userId) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (m) => logs.push(`${name} ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`${name} pageerror: ${e.message}`));
    await page.goto(`${server.url}/?appkey=${encodeURIComponent(APP_KEY)}`);
    await page.fill('#user-id', userId);
    await page.click('#login-btn');
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Connected'), null, { timeout: 10000 });
    pages.push(page);
    return page;
  }
  const status = (p) => p.textContent('#status');

  test('log in, video call, accept, both videos play, hang up', { timeout: 30000 }, async () => {
    const a = uid('demo-a'), b = uid('demo-b');
    try {
      const A = await openUser('A', a);
      const B = await openUser('B', b);
      await A.fill('#target-id', b);
      await A.click('#video-call');
      await B.waitForFunction(() => !document.querySelector('#accept').disabled, null, { timeout: 10000 });
      assert.match(await status(B), new RegExp(`Incoming video call from ${a}`));
      await B.click('#accept');
      for (const p of [A, B]) {
        await p.waitForFunction(() => {
          const v = document.querySelector('#remote-video');
          return v.videoWidth > 0 && v.currentTime > 0;
        }, null, { timeout: 15000 });
      }
      assert.match(await status(A), new RegExp(`In call with ${b}`));
      await sleep(300);
      await A.click('#hangup');
      await A.waitForFunction(() => /Call ended/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
      await B.waitForFunction(() => /Call ended/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
      assert.match(await status(A), /\(3\)/);
      assert.match(await status(B), /\(13\)/);
    } catch (e) {
      console.log(['### demo app FAILED', ...logs, '--- server log:', server.logText().split('\n').slice(-40).join('\n')].join('\n'));
      for (const [i, p] of pages.entries()) console.log(`--- page ${i} event log:\n${await p.textContent('#log').catch(() => '?')}`);
      throw e;
    }
  });
});
