// Renames the wasm module's imports and exports to short names ("a", "b", … "aa", …) and rewrites
// the wasm-bindgen JS glue to match: usage `node npm/shorten-names.mjs MODULE.wasm GLUE.js...`.
// Why: wasm-bindgen names every import `__wbg_<name>_<16 hex digits>`; ~200 of them appear once in
// the wasm and once in the JS, and the hex does not compress (about 7 KB of the gzip download).
// Binaryen's --minify-imports-and-exports prints its map once per --converge round, so the rename
// is done here, where it can also check that the glue used every name it rewrites.
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, assemble, leb, name, sections } from './wasm-module.mjs';

const [wasmPath, ...gluePaths] = process.argv.slice(2);
if (!wasmPath || gluePaths.length === 0) {
  console.error('usage: node npm/shorten-names.mjs MODULE.wasm GLUE.js...');
  process.exit(2);
}
const fail = (msg) => { console.error(`shorten-names: ${msg}`); process.exit(1); };

const buf = readFileSync(wasmPath);
const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const short = (i) => { let s = ''; do { s = alphabet[i % 52] + s; i = Math.floor(i / 52) - 1; } while (i >= 0); return s; };

const renamed = { modules: new Map(), imports: new Map(), exports: new Map() };
const parts = [];
for (const { id, start, end } of sections(buf, (m) => fail(`${wasmPath}: ${m}`))) {
  const c = new Cursor(buf, start);
  if (id === 2) { // imports: module, field, then a descriptor copied as is
    const count = c.u32();
    const body = [leb(count)];
    for (let i = 0; i < count; i++) {
      const mod = c.str(), field = c.str();
      const desc = c.p;
      c.importDesc(fail);
      if (!renamed.modules.has(mod)) renamed.modules.set(mod, short(renamed.modules.size));
      const key = `${mod}\0${field}`;
      if (!renamed.imports.has(key)) renamed.imports.set(key, short(renamed.imports.size));
      body.push(name(renamed.modules.get(mod)), name(renamed.imports.get(key)), buf.subarray(desc, c.p));
    }
    parts.push([id, Buffer.concat(body)]);
  } else if (id === 7) { // exports: name, kind, index
    const count = c.u32();
    const body = [leb(count)];
    for (let i = 0; i < count; i++) {
      const field = c.str();
      const desc = c.p;
      c.byte(); c.u32();
      renamed.exports.set(field, short(renamed.exports.size));
      body.push(name(renamed.exports.get(field)), buf.subarray(desc, c.p));
    }
    parts.push([id, Buffer.concat(body)]);
  } else {
    parts.push([id, buf.subarray(start, end)]);
  }
  if (c.p !== end && (id === 2 || id === 7)) fail(`section ${id} parsed to ${c.p}, expected ${end}`);
}
const out = assemble(buf, parts);

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
writeFileSync(wasmPath, out);
