// Renames the functions in a wasm module's name section so that sorting them by name (binaryen's
// `--reorder-functions-by-name`, the next build step) puts them in the order that compresses best:
// usage `node npm/order-functions.mjs MODULE.wasm`.
// Why: LLVM lays the ~2,000 functions out in roughly source order, so look-alike bodies (drop glue,
// getters, one generic's instantiations, async state machines) sit far apart, while a compressor
// codes a repeat more cheaply the closer and the more often it recurs (gzip sees only 32 KB back).
// The order: by body size in two-octave classes; within a class, from the first by name (crate
// hashes and leading `<&*( ` dropped), each next function the one whose body shares the most
// 4-byte sequences with the last (a MinHash estimate over 512 hashes). Tuned for what the page
// downloads: since session 17 the module ships LZMA-compressed (npm/pack-wasm.mjs), where this
// order gives 96,020 B against 97,038 B with session 15's (half-octave classes, 64 hashes, tuned
// for gzip) and 99,814 B with LLVM's (BENCHMARKS.md "Session 17: size"). Only the order of the
// code section changes: no body is touched, and the name section is dropped by the next wasm-opt.
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, assemble, leb, name, sections } from './wasm-module.mjs';

const [wasmPath] = process.argv.slice(2);
if (!wasmPath) {
  console.error('usage: node npm/order-functions.mjs MODULE.wasm');
  process.exit(2);
}
const fail = (msg) => { console.error(`order-functions: ${wasmPath}: ${msg}`); process.exit(1); };

/** A function's size class: two octaves of its body's bytes. */
const sizeClass = (bytes) => Math.floor(Math.log2(bytes + 1) / 2);
/** A name without crate hashes and leading `<&*( `, so one generic's copies sort together. */
const plain = (fnName) => fnName.replace(/\[[0-9a-f]+\]/g, '').replace(/^[<&*( ]+/, '');

/** MinHash signature of a body: per seed, the least hash of its 4-byte sequences. */
const SEEDS = 512;
function signature(body) {
  const sig = new Uint32Array(SEEDS).fill(0xffffffff);
  for (let p = 0; p + 4 <= body.length; p++) {
    let h = 2166136261; // FNV-1a of the 4 bytes
    for (let q = 0; q < 4; q++) h = Math.imul(h ^ body[p + q], 16777619) >>> 0;
    for (let k = 0; k < SEEDS; k++) {
      let v = Math.imul(h ^ Math.imul(k + 1, 0x9e3779b9), 0x85ebca6b) >>> 0;
      v = (v ^ (v >>> 13)) >>> 0;
      if (v < sig[k]) sig[k] = v;
    }
  }
  return sig;
}
const similarity = (a, b) => { let same = 0; for (let k = 0; k < SEEDS; k++) if (a[k] === b[k]) same++; return same; };

const buf = readFileSync(wasmPath);
const list = sections(buf, fail);
let importedFuncs = 0;
const bodies = []; // each defined function's body
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
      bodies.push(buf.subarray(c.p, c.p + size));
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

const classes = new Map(); // size class → function indices, by plain name
bodies.forEach((body, i) => {
  const c = sizeClass(body.length);
  if (!classes.has(c)) classes.set(c, []);
  classes.get(c).push(i);
});
const plainNames = bodies.map((_, i) => plain(names.get(importedFuncs + i) ?? ''));
const byName = (a, b) => (plainNames[a] < plainNames[b] ? -1 : plainNames[a] > plainNames[b] ? 1 : a - b);
const order = [];
for (const c of [...classes.keys()].sort((a, b) => a - b)) {
  const left = classes.get(c).sort(byName);
  const sigs = new Map(left.map((i) => [i, signature(bodies[i])]));
  let last = left.shift();
  order.push(last);
  while (left.length) {
    let best = 0;
    for (let j = 1; j < left.length; j++) {
      if (similarity(sigs.get(last), sigs.get(left[j])) > similarity(sigs.get(last), sigs.get(left[best]))) best = j;
    }
    [last] = left.splice(best, 1);
    order.push(last);
  }
}
const width = String(bodies.length).length;
const ranked = new Array(bodies.length);
order.forEach((f, rank) => { ranked[f] = String(rank).padStart(width, '0'); });

// The name section keeps only the function names, now ranks (imports keep theirs: the order of
// imports is fixed by the import section).
const entries = [];
for (const [index, n] of [...names].sort((a, b) => a[0] - b[0])) {
  if (index < importedFuncs) entries.push(Buffer.concat([leb(index), name(n)]));
}
for (let i = 0; i < bodies.length; i++) entries.push(Buffer.concat([leb(importedFuncs + i), name(ranked[i])]));
const sub = Buffer.concat([leb(entries.length), ...entries]);
const nameSection = Buffer.concat([name('name'), Buffer.from([1]), leb(sub.length), sub]);
const parts = list.map(({ id, start, end }) => {
  const c = new Cursor(buf, start);
  if (id === 0 && c.str() === 'name') return [0, nameSection];
  return [id, buf.subarray(start, end)];
});
writeFileSync(wasmPath, assemble(buf, parts));
