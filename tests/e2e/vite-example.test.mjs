// examples/vite: the npm package (npm/dist/esm) bundled by Vite. Builds the example (tsc --noEmit
// against index.d.ts + vite build, into a temp dir), serves the built files from a tiny static
// server on another 127.0.0.1 port, points the app's `navi` at the rcall server (run with --dev, for
// GET /dev/token), and makes a video call between two pages through the app's own UI.
//
// The example's node_modules come from scripts/setup.sh (npm ci, outside the network namespace).
// Without them the test tries `npm --prefix examples/vite ci` (works offline from npm's cache); if that fails too it skips
// with a message, except under CI (CI set), where it fails.
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, requireFile, uid } from './helpers.mjs';
import { run, builtApp, remoteVideoDecoding } from './vite-apps.mjs';

const EXAMPLE = path.join(ROOT, 'examples/vite');
const ESM = path.join(ROOT, 'npm/dist/esm');
const TIMEOUT = 120000;

/** Returns null when the example's build deps are there (installing them if possible), else why not. */
function ensureDeps() {
  const haveVite = () => fs.existsSync(path.join(EXAMPLE, 'node_modules/.bin/vite')) && fs.existsSync(path.join(EXAMPLE, 'node_modules/.bin/tsc'));
  if (haveVite()) return null;
  const r = run('npm', ['--prefix', EXAMPLE, 'ci', '--no-audit', '--no-fund', '--prefer-offline'], { timeout: 60000 });
  if (r.ok && haveVite()) return null;
  return `examples/vite/node_modules is missing and \`npm --prefix examples/vite install\` failed ` +
    `(run \`bash scripts/setup.sh\` or that command outside the network namespace):\n${r.out.slice(-600)}`;
}

describe('examples/vite (npm package bundled by Vite)', () => {
  let skipReason = null;
  const app = builtApp('rcall-vite-');

  before(async () => {
    requireFile(path.join(ESM, 'index.js'), 'run `bash npm/build.sh` first');
    const missing = ensureDeps();
    if (missing) {
      if (process.env.CI) throw new Error(`CI is set, so the Vite example must build: ${missing}`);
      skipReason = missing;
      return;
    }
    const outDir = app.makeDir();
    const b = run('npm', ['--prefix', EXAMPLE, 'run', 'build', '--', '--outDir', outDir, '--emptyOutDir'], { timeout: 90000 });
    if (!b.ok) throw new Error(`npm --prefix examples/vite run build failed (exit ${b.status}):\n${b.out.slice(-3000)}`);
    const assets = fs.readdirSync(path.join(outDir, 'assets'));
    assert.ok(assets.some((f) => f.endsWith('.wasm')), `vite build emitted no .wasm asset: ${assets.join(', ')}\n${b.out}`);
    await app.serve();
  });

  test('vite build; two pages of the built app make a video call and decode each other\'s video', { timeout: TIMEOUT }, async (t) => {
    if (skipReason) {
      t.skip(skipReason);
      return;
    }
    await app.diag('vite-example', async () => {
      const tag = uid('vite');
      const aId = `${tag}-alice`;
      const bId = `${tag}-bob`;
      const open = (name, user, target) => app.open(name, user, target, (page, c) => {
        c.wasmResponses = [];
        page.on('response', (r) => { if (r.url().endsWith('.wasm')) c.wasmResponses.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'] }); });
      });
      const A = await open('A', aId, bId);
      const B = await open('B', bId, aId);
      for (const c of [A, B]) {
        const w = c.wasmResponses.find((r) => r.url.startsWith(app.web.url));
        assert.ok(w, `${c.name}: the wasm was not fetched from the Vite build (${JSON.stringify(c.wasmResponses)})`);
        assert.equal(w.status, 200, `${c.name}: ${JSON.stringify(w)}`);
        assert.match(w.url, /\/assets\/.*\.wasm$/, `${c.name}: wasm URL`);
      }

      await A.page.click('#call');
      await B.page.waitForFunction(() => !document.getElementById('accept').disabled, null, { timeout: 10000 });
      assert.match(await B.page.textContent('#status'), new RegExp(`Incoming call from ${aId}`));
      await B.page.click('#accept');

      const [qa, qb] = await Promise.all([remoteVideoDecoding(A), remoteVideoDecoding(B)]);
      console.log(`  vite example: remote video A ${qa.w}px wide (${qa.frames} frames), B ${qb.w}px wide (${qb.frames} frames)`);
      assert.match(await A.page.textContent('#status'), new RegExp(`In call with ${bId}`));

      await A.page.click('#hangup');
      for (const c of [A, B]) {
        await c.page.waitForFunction(() => /Call ended/.test(document.getElementById('status').textContent), null, { timeout: 10000 });
      }
      assert.match(await A.page.textContent('#status'), /Call ended \(3\)/);
      assert.match(await B.page.textContent('#status'), /Call ended \(13\)/);
    }, { timeout: TIMEOUT - 5000 });
  });
});
