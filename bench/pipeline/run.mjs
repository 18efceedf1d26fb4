// How long a sender's media pipeline takes to start on an already connected peer connection, in
// one page (no network, no signalling): attach a camera track with replaceTrack() vs. flip an
// already attached track's encodings from inactive to active, until the receiving <video> shows
// its first frame. This is the floor under rcall's accept() → first frame: with pre-connected
// links nothing else is left after accept().
//   unshare -n bash -c 'ip link set lo up; node bench/pipeline/run.mjs'
import http from 'node:http'; import fs from 'node:fs';
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const here = path.dirname(fileURLToPath(import.meta.url));
const srv = http.createServer((q, r) => { r.setHeader('content-type', 'text/html'); r.end(fs.readFileSync(path.join(here, 'page.html'))); }).listen(0, '127.0.0.1');
await new Promise(r => srv.once('listening', r));
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: false, args: ['--headless=new','--no-sandbox','--use-fake-ui-for-media-stream','--use-fake-device-for-media-stream','--allow-loopback-in-peer-connection','--autoplay-policy=no-user-gesture-required'] });
const p = await b.newPage(); await p.goto(`http://127.0.0.1:${srv.address().port}/`);
const res = { replace: [], inactive: [] };
for (let i = 0; i < 8; i++) for (const m of ['replace', 'inactive']) res[m].push(Math.round(await p.evaluate((m) => run(m), m)));
console.log(JSON.stringify(res));
const med = a => a.slice().sort((x,y)=>x-y)[a.length>>1];
console.log('median replace', med(res.replace), 'inactive', med(res.inactive));
await b.close(); srv.close();
