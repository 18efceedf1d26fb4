// What the tests of the two Vite-built apps share (examples/vite: vite-example.test.mjs, and its
// CallLib app examples/vite/calllib-app: npm-package.test.mjs): running their build tools, and
// driving their page as a person does. Both pages have the same controls: #login, #call,
// #accept, #hangup, a #status line and the #remote <video>; query parameters navi, appkey, user
// and target.
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { APP_KEY, Client, ROOT, sleep } from './helpers.mjs';

/** Runs `cmd` to its end (from the repo's root unless `opts.cwd`): { ok, out (stdout + stderr), status }. */
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 120000, ...opts });
  return { ok: r.status === 0, out: `${r.stdout || ''}${r.stderr || ''}${r.error ? String(r.error) : ''}`, status: r.status };
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
