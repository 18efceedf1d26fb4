// A private Janus for the SFU tests and the group benchmark (tests/e2e/sfu.test.mjs,
// bench/mesh/run.mjs --sfu): a generated config with the videoroom plugin and the HTTP API on
// 127.0.0.1 only, and a veth pair for its ICE.
//
// Janus's ICE (libnice) gathers no candidates on `lo`, so its media need an interface with a
// private address; `addVeth` makes one that exists only in the caller's own network namespace
// (run under `unshare -n`; see privateNetns in helpers.mjs and notes/toolchain.md "janus").
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  APP_KEY, SDK_DIR, SUCCESS, MediaType, Client, freePort, launchBrowser, requireFile, sleep, stopProcess, getToken, createGroup,
  everyVideoAdvancing, uid,
} from './helpers.mjs';

export const JANUS_API_SECRET = 'e2e-janus-api-secret';
export const JANUS_ADMIN_KEY = 'e2e-janus-admin-key';
export const JANUS_VETH = 'rcsfu0';
const VETH_PEER = 'rcsfu1';

export function janusBin() {
  for (const d of (process.env.PATH || '').split(':').concat(['/usr/bin'])) {
    const p = path.join(d, 'janus');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('janus not found: run scripts/setup.sh (apt-get install janus)');
}

/** Adds the veth pair `rcsfu0`/`rcsfu1` (10.99.0.1/2) for Janus's ICE; returns `remove`.
 *  Only call it inside a private network namespace.
 *
 *  It returns once the pair is settled, because Chromium fails every request still waiting for
 *  a socket when the machine's links or addresses change (ERR_NETWORK_CHANGED: a page's
 *  `fetch` of the SDK rejects with "Failed to fetch"; it broke CI once). Left to itself the
 *  kernel adds each end's IPv6 link-local address ~1.1 s after the link comes up (after DAD),
 *  just when a browser launched next loads its pages: so no IPv6 address is generated (ICE uses
 *  10.99.0.x) and this waits until both ends report carrier (`state UP`). */
export function addVeth() {
  const ip = (args) => execFileSync('ip', args.split(' '), { stdio: 'pipe' }).toString();
  ip(`link add ${JANUS_VETH} type veth peer name ${VETH_PEER}`);
  const remove = () => { try { execFileSync('ip', ['link', 'del', JANUS_VETH], { stdio: 'pipe' }); } catch {} };
  try {
    for (const dev of [JANUS_VETH, VETH_PEER]) ip(`link set ${dev} addrgenmode none`);
    ip(`addr add 10.99.0.1/24 dev ${JANUS_VETH}`);
    ip(`addr add 10.99.0.2/24 dev ${VETH_PEER}`);
    ip(`link set ${JANUS_VETH} up`);
    ip(`link set ${VETH_PEER} up`);
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let waited = 0; ; waited += 20) {
      const links = ip('-o link show type veth');
      if ([JANUS_VETH, VETH_PEER].every((d) => new RegExp(`: ${d}@\\S+: .* state UP `).test(links))) break;
      if (waited >= 5000) throw new Error(`the veth pair did not come up within 5 s:\n${links}`);
      Atomics.wait(pause, 0, 0, 20);
    }
  } catch (e) {
    remove();
    throw e;
  }
  return remove;
}

/** The rcall-server flags that point at these Janus servers (one, or a list: `--janus A,B`). */
export function janusServerArgs(...janus) {
  return ['--janus', janus.map((j) => j.url).join(','), '--janus-api-secret', JANUS_API_SECRET, '--janus-admin-key', JANUS_ADMIN_KEY];
}

/** Starts a private Janus: videoroom (`string_ids`, admin key) + HTTP transport on 127.0.0.1
 *  with `api_secret`, ICE only on the veth, media on UDP `rtpPorts` (several Janus on the one
 *  veth need distinct ranges). Returns `{dir, port, url, proc, log(), start(), kill(), stop(),
 *  serverArgs}`; `serverArgs` are the rcall-server flags that point at it. `debugLevel`:
 *  Janus's log level (4 = info). */
export async function startJanus({ debugLevel = 4, rtpPorts = '20000-20999' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcall-e2e-janus-'));
  const port = await freePort();
  const off = (names, suffix = '') => names.map((p) => `libjanus_${p}${suffix}.so`).join(',');
  fs.writeFileSync(path.join(dir, 'janus.jcfg'), [
    `general: {\n\tconfigs_folder = "${dir}"\n\tlog_to_stdout = false\n\tdebug_level = ${debugLevel}\n\tapi_secret = "${JANUS_API_SECRET}"\n\tserver_name = "rcall-e2e"\n}`,
    `media: {\n\trtp_port_range = "${rtpPorts}"\n}`,
    `nat: {\n\tice_enforce_list = "${JANUS_VETH}"\n\tnice_debug = false\n}`,
    `plugins: {\n\tdisable = "${off(['audiobridge', 'duktape', 'echotest', 'lua', 'nosip', 'recordplay', 'sip', 'streaming', 'textroom', 'videocall', 'voicemail'])}"\n}`,
    `transports: {\n\tdisable = "${off(['websockets', 'pfunix', 'mqtt', 'nanomsg', 'rabbitmq'])}"\n}`,
    'loggers: {\n\tdisable = "libjanus_jsonlog.so"\n}',
    `events: {\n\tbroadcast = false\n\tdisable = "${off(['gelfevh', 'mqttevh', 'nanomsgevh', 'rabbitmqevh', 'sampleevh', 'wsevh'])}"\n}`,
  ].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'janus.transport.http.jcfg'),
    `general: {\n\tjson = "plain"\n\tbase_path = "/janus"\n\thttp = true\n\tport = ${port}\n\tip = "127.0.0.1"\n\thttps = false\n}\n` +
    'admin: {\n\tadmin_http = false\n\tadmin_https = false\n}\n');
  fs.writeFileSync(path.join(dir, 'janus.plugin.videoroom.jcfg'), `general: {\n\tstring_ids = true\n\tadmin_key = "${JANUS_ADMIN_KEY}"\n}\n`);
  const janus = { dir, port, url: `http://127.0.0.1:${port}/janus`, proc: null };
  janus.serverArgs = janusServerArgs(janus);
  janus.log = () => { try { return fs.readFileSync(path.join(dir, 'janus.log'), 'utf8'); } catch { return ''; } };
  janus.start = async () => {
    janus.proc = spawn(janusBin(), ['-F', dir, '-C', path.join(dir, 'janus.jcfg'), '-N', '-o', '-L', path.join(dir, 'janus.log')],
      { stdio: 'ignore' });
    const deadline = Date.now() + 15000;
    for (;;) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/janus/info`);
        if ((await r.text()).includes('server_info')) return;
      } catch {}
      if (Date.now() > deadline) throw new Error(`Janus did not answer within 15 s:\n${janus.log().slice(-3000)}`);
      await sleep(50);
    }
  };
  /** SIGKILL, as a crash. */
  janus.kill = () => stopProcess(janus.proc);
  /** Kills it and removes its config and log. */
  janus.stop = async () => {
    await janus.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  await janus.start();
  return janus;
}

/** The Janus room of call `callId` (docs/sfu.md "Trust model": `rcall-` + the first 16 bytes of
 *  SHA-256(app key, 0, call id), hex). */
export function janusRoomId(callId, appKey = APP_KEY) {
  return `rcall-${createHash('sha256').update(appKey).update(Buffer.from([0])).update(callId).digest('hex').slice(0, 32)}`;
}

/** What `janus` itself says of call `callId`'s room: null when it does not exist, else the ids
 *  of its participants. The test asks Janus directly (a session of its own, with the API
 *  secret), as an operator would; the browsers never can. */
export async function janusRoomParticipants(janus, callId) {
  const room = janusRoomId(callId);
  let tx = 0;
  const post = async (suffix, body) => {
    const r = await fetch(`${janus.url}${suffix}`, {
      method: 'POST',
      body: JSON.stringify({ ...body, apisecret: JANUS_API_SECRET, transaction: `e2e-${++tx}` }),
    });
    const reply = await r.json();
    if (reply.janus === 'error') throw new Error(`Janus refused ${JSON.stringify(body)}: ${JSON.stringify(reply.error)}`);
    return reply;
  };
  const session = (await post('', { janus: 'create' })).data.id;
  try {
    const handle = (await post(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.videoroom' })).data.id;
    const ask = async (request) => (await post(`/${session}/${handle}`, { janus: 'message', body: { request, room } })).plugindata.data;
    if (!(await ask('exists')).exists) return null;
    return (await ask('listparticipants')).participants.map((p) => p.id);
  } finally {
    await post(`/${session}`, { janus: 'destroy' }).catch(() => {});
  }
}

/** What every SFU suite starts first (inside its private namespace): the SDK build checked, the
 *  veth, a private Janus and Chromium. Returns `{janus, browser, stop()}`; `stop()` undoes it
 *  (also what was started when a later step failed). */
export async function startSfuRig() {
  requireFile(path.join(SDK_DIR, 'rcall.js'), 'run `bash npm/build.sh` first');
  const rig = { removeVeth: addVeth(), janus: null, browser: null };
  rig.stop = async () => {
    await rig.browser?.close().catch(() => {});
    await rig.janus?.stop();
    rig.removeVeth();
  };
  try {
    rig.janus = await startJanus();
    rig.browser = await launchBrowser();
  } catch (e) {
    await rig.stop();
    throw e;
  }
  return rig;
}

/** What the SFU suites that break something mid-call share (sfu_cluster.test.mjs,
 *  sfu_pool.test.mjs): pages, the group call, and what "video comes back" means. */
export function sfuScenario(getClients, getBrowser) {
  const s = {};
  s.open = async (name, url, userId, tokenUrl, loginOptions = {}) => {
    const c = await Client.open(getBrowser(), name, url);
    getClients().push(c);
    await c.login(userId, await getToken(tokenUrl, userId), loginOptions);
    return c;
  };
  /** pages[0] calls the others in a group video call; everyone accepts. */
  s.groupCall = async (pages, groupUrl) => {
    const [A, ...rest] = pages;
    const groupId = uid('sfc-group');
    await createGroup(groupUrl, groupId, pages.map((p) => p.userId));
    const res = await A.eval(([g, u, m]) => H.callInGroup(g, u, m), [groupId, rest.map((p) => p.userId), MediaType.AUDIO_VIDEO]);
    assert.equal(res.code, SUCCESS, `A: callInGroup() → ${JSON.stringify(res)}`);
    const sessionId = res.session.sessionId;
    for (const c of rest) {
      await c.waitEvent('onSession', { sessionId }, 20000);
      const acc = await c.eval(() => H.accept());
      assert.equal(acc.code, SUCCESS, `${c.name}: accept() → ${JSON.stringify(acc)}`);
    }
    for (const c of rest) await A.waitEvent('onAccept', { userId: c.userId }, 20000);
    return sessionId;
  };
  /** The remote video tracks every page was given so far (its remote onTrackReady events). */
  s.videoTracks = (pages) => Promise.all(pages.map((c) => c.eventsOf('onTrackReady', { local: false, kind: 'video' })));
  /** Every page of `restarted` set its SFU connections up again (a new remote onTrackReady for
   *  every other page's video since `before`, from s.videoTracks), then every page decodes every
   *  other page's video again. Returns when that was seen. */
  s.videoBack = async (pages, restarted, before, what, timeout = 60000) => {
    for (const c of restarted) {
      for (const o of pages) {
        if (o === c) continue;
        const had = before[pages.indexOf(c)].filter((e) => e.userId === o.userId).length;
        const deadline = Date.now() + timeout;
        while ((await c.eventsOf('onTrackReady', { local: false, userId: o.userId, kind: 'video' })).length <= had) {
          if (Date.now() > deadline) {
            throw new Error(`${c.name}: did not subscribe to ${o.name}'s video again ${what}; rtc ${JSON.stringify(await c.eval(() => H.rtcStats()))}`);
          }
          await sleep(250);
        }
      }
    }
    await everyVideoAdvancing(pages, what, timeout);
  };
  s.noHangup = async (pages, what) => {
    for (const c of pages) {
      assert.deepEqual(await c.eventsOf('onHungup'), [], `${c.name}: no hangup ${what}`);
      assert.deepEqual(await c.eventsOf('onSessionClose'), [], `${c.name}: the call goes on ${what}`);
      assert.deepEqual(await c.eventsOf('onTrackPublishFail'), [], `${c.name}: no publish failure ${what}`);
      assert.deepEqual(await c.eventsOf('onTrackSubscribeFail'), [], `${c.name}: no subscribe failure ${what}`);
    }
  };
  return s;
}
