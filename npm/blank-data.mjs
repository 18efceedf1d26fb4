// Zeroes data the module no longer refers to: usage `node npm/blank-data.mjs MODULE.wasm RANGES.json`,
// RANGES.json a list `[[address, length], ...]` of memory ranges that may have lost their last use
// (strip-decode-context.mjs writes the names given to prost's emptied `DecodeError::push`).
// Why: wasm-opt drops the calls that passed those names but cannot drop data (it does not know
// what in a segment is used), so ~780 B of message and field names shipped unread; zeroed, they
// compress to almost nothing (BENCHMARKS.md "Session 16: size").
// A range is zeroed only when no number in the module could point into it: every byte position of
// the module read as a LEB128 number (i32.const, a load's offset, a global's initialiser) and as a
// little-endian 32-bit word (a pointer stored in data) is compared with it. That over-counts
// (random bytes may look like a pointer, which only keeps a range), never under-counts a constant
// address; a pointer computed from another object's address plus an offset is the one case it
// cannot see, which Rust's string constants (each its own symbol, read from its own address) do
// not produce. Ranges outside the active data segments are left alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, sections } from './wasm-module.mjs';

const [wasmPath, rangesPath] = process.argv.slice(2);
if (!wasmPath || !rangesPath) {
  console.error('usage: node npm/blank-data.mjs MODULE.wasm RANGES.json');
  process.exit(2);
}
const fail = (msg) => { console.error(`blank-data: ${wasmPath}: ${msg}`); process.exit(1); };

const buf = readFileSync(wasmPath);
const list = sections(buf, fail);
const ranges = JSON.parse(readFileSync(rangesPath, 'utf8'))
  .filter(([addr, len]) => Number.isInteger(addr) && Number.isInteger(len) && addr > 0 && len > 0)
  .sort((a, b) => a[0] - b[0]);

/** The index of the range holding address `v`, or -1. */
function rangeOf(v) {
  let lo = 0, hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [addr, len] = ranges[mid];
    if (v < addr) hi = mid - 1;
    else if (v >= addr + len) lo = mid + 1;
    else return mid;
  }
  return -1;
}

const used = new Set();
const c = new Cursor(buf);
for (let p = 0; p < buf.length; p++) {
  c.p = p;
  const u = c.u32();
  c.p = p;
  const s = c.s32();
  for (const v of [u, s, p + 4 <= buf.length ? buf.readUInt32LE(p) : -1]) {
    const r = rangeOf(v);
    if (r >= 0) used.add(r);
  }
}

// Active segments of memory 0 with a constant offset: where each range's bytes are in the file.
const segments = []; // { addr, start, end }: memory address of the file bytes start..end
const data = list.find((s) => s.id === 11);
if (data) {
  const d = new Cursor(buf, data.start);
  for (let i = d.u32(); i > 0; i--) {
    const flags = d.u32();
    if (flags === 1) { d.p += d.u32(); continue; } // passive
    if (flags === 2) d.u32(); // memory index
    if (flags !== 0 && flags !== 2) fail(`unknown data segment kind ${flags}`);
    const op = d.byte();
    const addr = op === 0x41 ? d.s32() : null;
    if (op !== 0x41) while (d.byte() !== 0x0b); // a global.get offset: not a constant
    else if (d.byte() !== 0x0b) fail('a data segment offset that is not one i32.const');
    const size = d.u32();
    if (addr !== null) segments.push({ addr, start: d.p, end: d.p + size });
    d.p += size;
  }
}

const out = Buffer.from(buf);
let blanked = 0, blankedRanges = 0;
ranges.forEach(([addr, len], r) => {
  if (used.has(r)) return;
  const seg = segments.find((s) => addr >= s.addr && addr + len <= s.addr + (s.end - s.start));
  if (!seg) return;
  out.fill(0, seg.start + addr - seg.addr, seg.start + addr - seg.addr + len);
  blanked += len;
  blankedRanges++;
});
writeFileSync(wasmPath, out);
console.error(`blank-data: zeroed ${blanked} of ${ranges.reduce((n, [, len]) => n + len, 0)} bytes ` +
  `(${blankedRanges} of ${ranges.length} ranges)`);
