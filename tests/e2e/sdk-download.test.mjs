// The CDN build's download (issue 13): rcall_bg.wasm is the unpacker module with the SDK's module
// LZMA-compressed inside (npm/pack-wasm.mjs, crates/unpack). A page that loads rcall.js unpacks it
// and runs; a damaged or missing rcall_bg.wasm makes the SDK's calls reject with an error that
// names the file (and the console says so), never a hang.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SDK_DIR, launchBrowser, requireFile, serveDirectory } from './helpers.mjs';

describe('CDN download', () => {
  let browser, site, tmp;

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall_bg.wasm'), 'run `bash npm/build.sh` first');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-download-'));
    const wasm = fs.readFileSync(path.join(SDK_DIR, 'rcall_bg.wasm'));
    const page = '<!doctype html><script src="rcall.js"></script>';
    // good: the build; cut: the download stops at 60 %; flipped: bytes of the compressed module
    // changed (what a proxy rewriting the body would do); missing: a 404.
    const variants = {
      good: wasm,
      cut: wasm.subarray(0, Math.floor(wasm.length * 0.6)),
      flipped: Buffer.from(wasm).map((b, i) => (i > wasm.length - 40_000 && i % 97 === 0 ? b ^ 0x5a : b)),
      missing: null,
    };
    for (const [name, bytes] of Object.entries(variants)) {
      const dir = path.join(tmp, name);
      fs.mkdirSync(dir);
      fs.copyFileSync(path.join(SDK_DIR, 'rcall.js'), path.join(dir, 'rcall.js'));
      fs.writeFileSync(path.join(dir, 'index.html'), page);
      if (bytes) fs.writeFileSync(path.join(dir, 'rcall_bg.wasm'), bytes);
    }
    site = await serveDirectory(tmp);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await site?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Opens the variant's page and waits for a call that needs the module: resolved or rejected. */
  async function load(name) {
    const page = await browser.newPage();
    const errors = [];
    // (The browser's own 404 for /favicon.ico is not the SDK's.)
    page.on('console', (m) => { if (m.type() === 'error' && m.text().includes('rcall')) errors.push(m.text()); });
    await page.goto(`${site.url}/${name}/`);
    const outcome = await page.evaluate(() => {
      RongIMLib.init({ appkey: 'download-test' });
      return RongIMLib.disconnect().then(
        () => ({ ok: true, version: typeof RCCall.installer }),
        (e) => ({ ok: false, message: String(e && e.message) }),
      );
    });
    await page.close();
    return { ...outcome, errors };
  }

  test('the packed module unpacks and the SDK runs', async () => {
    const r = await load('good');
    assert.deepEqual(r, { ok: true, version: 'object', errors: [] });
  });

  test('a truncated download rejects the SDK calls, naming the file', async () => {
    const r = await load('cut');
    assert.equal(r.ok, false);
    assert.match(r.message, /^rcall: loading \S+\/rcall_bg\.wasm failed: .*(Data|past end|unpack error -1)/);
    assert.ok(r.errors.some((e) => e.includes('failed to load the SDK module')), r.errors.join('\n'));
  });

  test('a corrupted download rejects the SDK calls', async () => {
    const r = await load('flipped');
    assert.equal(r.ok, false);
    // The decoder finds most damage itself; damage it decodes through leaves a module
    // WebAssembly refuses.
    assert.match(r.message, /^rcall: loading \S+\/rcall_bg\.wasm failed: (unpack error -\d|WebAssembly)/);
  });

  test('a missing file rejects the SDK calls with the HTTP status', async () => {
    const r = await load('missing');
    assert.equal(r.ok, false);
    assert.match(r.message, /^rcall: loading \S+\/rcall_bg\.wasm failed: HTTP 404$/);
  });
});
