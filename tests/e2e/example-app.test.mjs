// Click-through of the demo app (examples/web) as a person uses it: the server in --dev mode serves
// it, users log in through the form (token from GET /dev/token) and use only the page's controls.
// 1:1: ring tone and incoming panel, reject, then accept, both videos, stats overlay, a microphone switch, mute
// and camera toggles seen on the other side, downgrade to audio, hang up with the reason in words.
// Group: a group created through POST /dev/group, a mid-call invite, a tile per member everywhere.
import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT, APP_KEY, SDK_DIR, startServer, launchBrowser, requireFile, uid } from './helpers.mjs';

describe('examples/web demo app', () => {
  let server, browser;
  let pages = [];
  let logs = [];

  before(async () => {
    requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
    server = await startServer({ webDir: path.join(ROOT, 'examples/web'), extraArgs: ['--dev'] });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });
  afterEach(async () => {
    for (const p of pages) await p.context().close().catch(() => {});
    pages = [];
    logs = [];
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
  const waitStatus = (p, re, timeout = 10000) =>
    p.waitForFunction((src) => new RegExp(src).test(document.querySelector('#status').textContent), re.source, { timeout });
  const tileSel = (user) => `#tiles .tile[data-user="${user}"]`;
  const hasClass = (p, user, cls) => p.$eval(tileSel(user), (el, c) => el.classList.contains(c), cls);
  const waitClass = (p, user, cls, on = true) =>
    p.waitForFunction(([sel, c, want]) => document.querySelector(sel)?.classList.contains(c) === want, [tileSel(user), cls, on], { timeout: 10000 });
  const tileUsers = (p) => p.$$eval('#tiles .tile', (els) => els.map((e) => e.dataset.user).sort());
  // The member's tile plays video: decoded frames keep coming.
  async function videoPlays(p, user) {
    const frames = () => p.$eval(`${tileSel(user)} video`, (v) => (v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0));
    await p.waitForFunction((sel) => {
      const v = document.querySelector(`${sel} video`);
      return v && v.videoWidth > 0 && v.currentTime > 0;
    }, tileSel(user), { timeout: 15000 });
    const f0 = await frames();
    await p.waitForFunction(([sel, n]) => document.querySelector(`${sel} video`).getVideoPlaybackQuality().totalVideoFrames > n + 3,
      [tileSel(user), f0], { timeout: 10000 });
  }
  async function incoming(p, re) {
    await p.waitForFunction(() => !document.querySelector('#incoming').hidden && !document.querySelector('#accept').disabled, null, { timeout: 10000 });
    assert.match(await p.textContent('#incoming-text'), re);
    // The ring tone plays (WebAudio, context running) while the panel is up.
    assert.equal(await p.evaluate(() => document.body.dataset.ring), 'running');
  }
  async function diagnose(e) {
    console.log(['### demo app FAILED', ...logs, '--- server log:', server.logText().split('\n').slice(-40).join('\n')].join('\n'));
    for (const [i, p] of pages.entries()) console.log(`--- page ${i} event log:\n${await p.textContent('#log').catch(() => '?')}`);
    throw e;
  }

  test('1:1: ring, reject, ring, accept, videos and stats, mic switch, mute / camera off seen remotely, downgrade, hang up', { timeout: 90000 }, async () => {
    const a = uid('demo-a'), b = uid('demo-b');
    try {
      const A = await openUser('A', a);
      const B = await openUser('B', b);
      await A.fill('#target-id', b);
      // First B rejects: the panel goes, the tone stops, both read why the call ended.
      await A.click('#audio-call');
      await incoming(B, new RegExp(`^Incoming audio call from ${a}`));
      assert.equal(await B.isDisabled('#cam-select'), false, 'B may pick the camera for accept()');
      await B.click('#reject');
      await waitStatus(B, /Call ended: you rejected \(2\)/);
      await waitStatus(A, /Call ended: the callee rejected \(12\)/);
      assert.equal(await B.isHidden('#incoming'), true);
      assert.equal(await B.evaluate(() => document.body.dataset.ring), undefined, 'B: the ring tone stops');

      await A.click('#video-call');
      await incoming(B, new RegExp(`^Incoming video call from ${a}`));
      assert.match(await status(B), new RegExp(`Incoming video call from ${a}`));
      await waitClass(A, b, 'ringing'); // A: the callee's tile says ringing
      await B.click('#accept');
      assert.equal(await B.evaluate(() => document.body.dataset.ring), undefined, 'B: the ring tone stops on accept');
      assert.equal(await B.isHidden('#incoming'), true);
      await videoPlays(A, b);
      await videoPlays(B, a);
      await waitStatus(A, new RegExp(`In call with ${b}`));
      assert.deepEqual(await tileUsers(A), [a, b].sort());
      assert.equal(await hasClass(A, b, 'ringing'), false);

      // Stats overlay from onRTCStateReport: bitrates, the remote resolution, rtt.
      await A.waitForFunction((sel) => /↓ [1-9]\d* kbps {2}\d+×\d+/.test(document.querySelector(`${sel} .stats`).textContent), tileSel(b), { timeout: 10000 });
      assert.match(await A.textContent(`${tileSel(b)} .stats`), /↑ \d+ kbps\nrtt (\d+|–) ms · udp/);
      assert.equal(await A.isVisible(`${tileSel(b)} .stats`), true);
      await A.click('#show-stats');
      assert.equal(await A.isVisible(`${tileSel(b)} .stats`), false, 'the stats checkbox hides the overlay');

      // Microphone picker: labelled devices after capture; switching mid-call (changeAudioDevice).
      const mics = await A.$$eval('#mic-select option', (os) => os.map((o) => [o.value, o.textContent]));
      assert.ok(mics.length >= 2 && mics.slice(1).every(([id, label]) => id && label), `A: microphones ${JSON.stringify(mics)}`);
      assert.ok((await A.$$eval('#cam-select option', (os) => os.length)) >= 2, 'A: cameras listed');
      assert.equal(await A.isDisabled('#cam-select'), true, 'no camera switch during a call (CallLib 5.X)');
      await A.selectOption('#mic-select', mics.at(-1)[0]);
      await A.waitForFunction((l) => document.querySelector('#log').textContent.includes(`Microphone: ${l}`), mics.at(-1)[1], { timeout: 10000 });

      // Mute and camera toggles: A's own tile and B's view of A.
      await A.click('#toggle-mic');
      await waitClass(B, a, 'mic-muted');
      assert.equal(await hasClass(A, a, 'mic-muted'), true);
      assert.equal(await A.textContent('#toggle-mic'), 'Unmute');
      await A.click('#toggle-mic');
      await waitClass(B, a, 'mic-muted', false);
      await A.click('#toggle-cam');
      await waitClass(B, a, 'cam-off');
      assert.equal(await B.isVisible(`${tileSel(a)} .b-cam`), true, 'B sees the camera-off badge');
      await A.click('#toggle-cam');
      await waitClass(B, a, 'cam-off', false);
      await videoPlays(B, a); // video comes back after the camera is on again
      await videoPlays(A, a);

      // Downgrade by B: both sides turn audio only.
      await B.click('#downgrade');
      for (const p of [A, B]) {
        await p.waitForFunction(() => document.querySelector('#tiles').classList.contains('audio-only'), null, { timeout: 10000 });
        assert.equal(await p.isDisabled('#toggle-cam'), true);
        assert.equal(await p.isDisabled('#downgrade'), true);
      }

      await A.click('#hangup');
      await waitStatus(A, /Call ended: you hung up \(3\)/);
      await waitStatus(B, /Call ended: the other side hung up \(13\)/);
      assert.deepEqual(await tileUsers(A), []);
      assert.equal(await A.isDisabled('#video-call'), false);
    } catch (e) {
      await diagnose(e);
    }
  });

  test('group: a group from the dev server, a mid-call invite, a tile per member on every page', { timeout: 120000 }, async () => {
    const a = uid('demo-ga'), b = uid('demo-gb'), c = uid('demo-gc');
    try {
      const A = await openUser('A', a);
      const B = await openUser('B', b);
      const C = await openUser('C', c);
      await A.check('#group');
      await A.fill('#target-id', b);
      await A.click('#video-call');
      const groupId = await A.inputValue('#group-id');
      assert.match(groupId, /^group-\w+$/);
      await incoming(B, new RegExp(`^Incoming group video call from ${a} in ${groupId}`));
      await B.click('#accept');
      await videoPlays(A, b);
      await videoPlays(B, a);
      assert.equal(await A.isDisabled('#invite'), false, 'A: Invite is enabled in a group call');

      // A invites C mid-call (joined to the group through the dev server first).
      await A.fill('#invite-id', c);
      await A.click('#invite');
      await incoming(C, new RegExp(`^Incoming group video call from ${a} in ${groupId} with ${b}`));
      await B.waitForSelector(tileSel(c), { timeout: 10000 }); // onMemberModify → a tile for the invitee
      await waitClass(B, c, 'ringing');
      await C.click('#accept');
      for (const [p, others] of [[A, [b, c]], [B, [a, c]], [C, [a, b]]]) {
        for (const o of others) await videoPlays(p, o);
      }
      for (const p of [A, B, C]) assert.deepEqual(await tileUsers(p), [a, b, c].sort());
      await waitClass(B, c, 'ringing', false);

      // Mute in a group reaches every other member.
      await C.click('#toggle-mic');
      await waitClass(A, c, 'mic-muted');
      await waitClass(B, c, 'mic-muted');

      // A leaves: the others keep talking, A's tile goes away.
      await A.click('#hangup');
      await waitStatus(A, /Call ended: you hung up \(3\)/);
      for (const p of [B, C]) await p.waitForFunction((sel) => !document.querySelector(sel), tileSel(a), { timeout: 10000 });
      assert.deepEqual(await tileUsers(B), [b, c].sort());
      await B.click('#hangup');
      await waitStatus(B, /Call ended: you hung up \(3\)/);
      await waitStatus(C, /Call ended: the other side hung up \(13\)/); // the last one left
    } catch (e) {
      await diagnose(e);
    }
  });
});
