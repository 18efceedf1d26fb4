// What the tests of the two Vite-built apps share (examples/vite: vite-example.test.mjs, and its
// CallLib app examples/vite/calllib-app: npm-package.test.mjs): running their build tools, the
// rig that serves a build, and driving its page as a person does. Both pages have the same
// controls: #login, #call, #accept, #hangup, a #status line and the #remote <video>; query
// parameters navi, appkey, user and target.
import { after } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { APP_KEY, Client, ROOT, launchBrowser, serveDirectory, sleep, startServer, withDiagnostics } from './helpers.mjs';

/** Runs `cmd` to its end (from the repo's root unless `opts.cwd`): { ok, out (stdout + stderr), status }. */
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 120000, ...opts });
  return { ok: r.status === 0, out: `${r.stdout || ''}${r.stderr || ''}${r.error ? String(r.error) : ''}`, status: r.status };
}

/**
 * Call inside describe(): a built app's rig. `makeDir()` makes `dir`, a temp dir to build into;
 * `serve()` starts the rcall server (--dev, for GET /dev/token), a static server of `dir` (`web`)
 * and a browser; `open(name, user, target, beforeLoad)` is openApp on them; `diag` is
 * withDiagnostics over its pages. All closed, and `dir` removed, after the suite.
 */
export function builtApp(prefix) {
  const app = { dir: null, server: null, web: null, browser: null, clients: [] };
  app.makeDir = () => (app.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  app.serve = async () => {
    app.server = await startServer({ extraArgs: ['--dev'] });
    app.web = await serveDirectory(app.dir);
    app.browser = await launchBrowser();
  };
  app.open = (name, user, target, beforeLoad) =>
    openApp(app.browser, app.clients, { name, user, target, appUrl: app.web.url, navi: app.server.url, beforeLoad });
  app.diag = (name, fn, options) => withDiagnostics(name, () => app.clients, app.server, fn, options);
  after(async () => {
    await Promise.all(app.clients.map((c) => c.close()));
    await app.browser?.close().catch(() => {});
    await app.web?.close();
    await app.server?.stop();
    if (app.dir) fs.rmSync(app.dir, { recursive: true, force: true });
  });
  return app;
}

/** The built app at `appUrl` in a new browser context, logged in as `user` (the call target
 *  `target`) through its Login button, its SDK's navi the rcall server at `navi`. `clients` gets
 *  the page (for withDiagnostics); `beforeLoad(page, client)` runs before the page loads. */
export async function openApp(browser, clients, { name, user, target, appUrl, navi, beforeLoad }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const c = new Client(name, context, page);
  c.userId = user;
  // Client.dump() reads the e2e harness's `H`; these apps have none, so give them a stand-in.
  await page.addInitScript(() => { window.H = { events: [], errors: () => [], rtcStats: async () => [] }; });
  clients.push(c);
  await beforeLoad?.(page, c);
  const q = new URLSearchParams({ navi, appkey: APP_KEY, user, target });
  const resp = await page.goto(`${appUrl}/?${q}`);
  assert.ok(resp && resp.ok(), `${name}: GET the built index.html → ${resp && resp.status()}`);
  await page.click('#login');
  await page.waitForFunction(() => /Logged in as/.test(document.getElementById('status').textContent), null, { timeout: 10000 })
    .catch(async (e) => { throw new Error(`${name}: login: status "${await page.textContent('#status')}": ${e.message}`); });
  return c;
}

/** Resolves once the page's #remote video decodes (a width, and its frame count moving on) with
 *  { w, frames }; throws after 15 s naming the page's status. */
export async function remoteVideoDecoding(c) {
  const deadline = Date.now() + 15000;
  let first = null;
  for (;;) {
    const q = await c.page.evaluate(() => {
      const v = document.getElementById('remote');
      return { w: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames };
    });
    if (q.w > 0 && q.frames > 0) {
      if (!first) first = q;
      else if (q.frames > first.frames) return q;
    }
    if (Date.now() > deadline) throw new Error(`${c.name}: remote video not decoding: ${JSON.stringify(q)}; status "${await c.page.textContent('#status')}"`);
    await sleep(200);
  }
}
