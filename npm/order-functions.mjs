// Renames the functions in a wasm module's name section so that sorting them by name (binaryen's
// `--reorder-functions-by-name`, the next build step) puts them in the order that compresses best:
// usage `node npm/order-functions.mjs MODULE.wasm`.
// Why: gzip finds repeats only within 32 KB, and LLVM lays the ~1,300 functions out in roughly
// source order, so look-alike bodies (drop glue, getters, one generic's instantiations, async
// state machines) sit far apart. Ordered by body size in half-octave classes, then by name
// (crate hashes and leading `<&*( ` dropped, so one generic's copies stay together), the same
// code is −1,964 B gzip-9 and −1,272 B brotli-11 (BENCHMARKS.md "Session 15: size"; by size
// alone −1,765, by name alone −1,240, binaryen's call-count order +1,866). Only the order of the
// code section changes: no body is touched, and the name section is dropped by the next wasm-opt.
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, assemble, leb, name, sections } from './wasm-module.mjs';

const [wasmPath] = process.argv.slice(2);
if (!wasmPath) {
  console.error('usage: node npm/order-functions.mjs MODULE.wasm');
  process.exit(2);
}
const fail = (msg) => { console.error(`order-functions: ${wasmPath}: ${msg}`); process.exit(1); };

/** A function's sort key: its size class (half octaves of the body's bytes), then its name. */
const key = (bodySize, fnName) =>
  String(Math.floor(Math.log2(bodySize + 1) * 2)).padStart(3, '0') + ' ' +
  fnName.replace(/\[[0-9a-f]+\]/g, '').replace(/^[<&*( ]+/, '');

const buf = readFileSync(wasmPath);
const list = sections(buf, fail);
let importedFuncs = 0;
const sizes = []; // body size of each defined function
const names = new Map(); // function index (imports first) → name
let hasNames = false;
for (const { id, start, end } of list) {
  const c = new Cursor(buf, start);
  if (id === 2) {
    for (let i = c.u32(); i > 0; i--) {
      c.str(); c.str();
      if (c.importDesc(fail) === 0) importedFuncs++;
    }
  } else if (id === 10) {
    for (let i = c.u32(); i > 0; i--) {
      const size = c.u32();
      sizes.push(size);
      c.p += size;
    }
  } else if (id === 0 && c.str() === 'name') {
    hasNames = true;
    while (c.p < end) {
      const sub = c.byte(), size = c.u32(), next = c.p + size;
      if (sub === 1) {
        for (let i = c.u32(); i > 0; i--) {
          const index = c.u32();
          names.set(index, c.str());
        }
      }
      c.p = next;
    }
  }
}
if (!hasNames) fail('no name section (run wasm-opt with --debuginfo before this step)');

const keys = sizes.map((size, i) => key(size, names.get(importedFuncs + i) ?? ''));
const order = sizes.map((_, i) => i).sort((a, b) => (keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : a - b));
const width = String(sizes.length).length;
const ranked = new Array(sizes.length);
order.forEach((f, rank) => { ranked[f] = String(rank).padStart(width, '0'); });

// The name section keeps only the function names, now ranks (imports keep theirs: the order of
// imports is fixed by the import section).
const entries = [];
for (const [index, n] of [...names].sort((a, b) => a[0] - b[0])) {
  if (index < importedFuncs) entries.push(Buffer.concat([leb(index), name(n)]));
}
for (let i = 0; i < sizes.length; i++) entries.push(Buffer.concat([leb(importedFuncs + i), name(ranked[i])]));
const sub = Buffer.concat([leb(entries.length), ...entries]);
const nameSection = Buffer.concat([name('name'), Buffer.from([1]), leb(sub.length), sub]);
const parts = list.map(({ id, start, end }) => {
  const c = new Cursor(buf, start);
  if (id === 0 && c.str() === 'name') return [0, nameSection];
  return [id, buf.subarray(start, end)];
});
writeFileSync(wasmPath, assemble(buf, parts));
