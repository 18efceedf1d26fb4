// Renames the wasm module's imports and exports to short names ("a", "b", … "aa", …) and rewrites
// the wasm-bindgen JS glue to match: usage `node npm/shorten-names.mjs MODULE.wasm GLUE.js...`.
// Why: wasm-bindgen names every import `__wbg_<name>_<16 hex digits>`; ~200 of them appear once in
// the wasm and once in the JS, and the hex does not compress (about 7 KB of the gzip download).
// Binaryen's --minify-imports-and-exports prints its map once per --converge round, so the rename
// is done here, where it can also check that the glue used every name it rewrites.
import { readFileSync, writeFileSync } from 'node:fs';

const [wasmPath, ...gluePaths] = process.argv.slice(2);
if (!wasmPath || gluePaths.length === 0) {
  console.error('usage: node npm/shorten-names.mjs MODULE.wasm GLUE.js...');
  process.exit(2);
}
const fail = (msg) => { console.error(`shorten-names: ${msg}`); process.exit(1); };

const buf = readFileSync(wasmPath);
if (buf.readUInt32LE(0) !== 0x6d736100) fail(`${wasmPath} is not a wasm module`);
let p;
const u32 = () => { let r = 0, s = 0, b; do { b = buf[p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80); return r; };
const str = () => { const n = u32(); const v = buf.toString('utf8', p, p + n); p += n; return v; };
const leb = (n) => { const out = []; do { let b = n & 0x7f; n = Math.floor(n / 128); if (n) b |= 0x80; out.push(b); } while (n); return Buffer.from(out); };
const name = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([leb(b.length), b]); };
const limits = () => { const flags = buf[p++]; u32(); if (flags & 1) u32(); };

const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const short = (i) => { let s = ''; do { s = alphabet[i % 52] + s; i = Math.floor(i / 52) - 1; } while (i >= 0); return s; };

const renamed = { modules: new Map(), imports: new Map(), exports: new Map() };
const sections = [];
p = 8;
while (p < buf.length) {
  const id = buf[p++];
  const size = u32();
  const start = p, end = p + size;
  if (id === 2) { // imports: module, field, then a descriptor copied as is
    const count = u32();
    const parts = [leb(count)];
    for (let i = 0; i < count; i++) {
      const mod = str(), field = str();
      const desc = p;
      const kind = buf[p++];
      if (kind === 0) u32();
      else if (kind === 1) { p++; limits(); }
      else if (kind === 2) limits();
      else if (kind === 3) p += 2;
      else if (kind === 4) { p++; u32(); }
      else fail(`unknown import kind ${kind}`);
      if (!renamed.modules.has(mod)) renamed.modules.set(mod, short(renamed.modules.size));
      const key = `${mod}\0${field}`;
      if (!renamed.imports.has(key)) renamed.imports.set(key, short(renamed.imports.size));
      parts.push(name(renamed.modules.get(mod)), name(renamed.imports.get(key)), buf.subarray(desc, p));
    }
    sections.push(id, parts);
  } else if (id === 7) { // exports: name, kind, index
    const count = u32();
    const parts = [leb(count)];
    for (let i = 0; i < count; i++) {
      const field = str();
      const desc = p;
      p++; u32();
      renamed.exports.set(field, short(renamed.exports.size));
      parts.push(name(renamed.exports.get(field)), buf.subarray(desc, p));
    }
    sections.push(id, parts);
  } else {
    sections.push(id, [buf.subarray(start, end)]);
  }
  if (p !== end && (id === 2 || id === 7)) fail(`section ${id} parsed to ${p}, expected ${end}`);
  p = end;
}
const out = [buf.subarray(0, 8)];
for (let i = 0; i < sections.length; i += 2) {
  const body = Buffer.concat(sections[i + 1]);
  out.push(Buffer.from([sections[i]]), leb(body.length), body);
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
for (const path of gluePaths) {
  let js = readFileSync(path, 'utf8');
  for (const [mod, to] of renamed.modules) {
    const key = `"${mod}":`;
    if (!js.includes(key)) fail(`${path} has no import object for module "${mod}"`);
    js = js.split(key).join(`"${to}":`);
  }
  for (const [key, to] of renamed.imports) {
    const field = key.split('\0')[1];
    const re = new RegExp(`(^|[^\\w$])${escape(field)}(?=\\s*:)`, 'g');
    let n = 0;
    js = js.replace(re, (_, pre) => { n++; return pre + to; });
    if (n !== 1) fail(`${path}: import ${field} found ${n} times as an object key (expected once)`);
  }
  for (const [field, to] of renamed.exports) {
    js = js.replace(new RegExp(`\\bwasm\\.${escape(field)}(?![\\w$])`, 'g'), `wasm.${to}`);
  }
  const left = js.match(/__wbg_\w+_[0-9a-f]{16}\b/);
  if (left) fail(`${path} still names ${left[0]}`);
  writeFileSync(path, js);
}
writeFileSync(wasmPath, Buffer.concat(out));
