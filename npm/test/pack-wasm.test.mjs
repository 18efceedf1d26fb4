// npm/pack-wasm.mjs: the CDN's rcall_bg.wasm is crates/unpack's module with the SDK's module
// LZMA-compressed in a data segment. On the built files (bash npm/build.sh first; skipped
// without them, except under CI): the CDN module unpacks to exactly the module the npm package
// ships, any payload round-trips, damage is reported, and the packer's refusals.
// Run: node --test npm/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cursor, assemble, sections } from '../wasm-module.mjs';
import { lzma, unpack, withPayload } from '../pack-wasm.mjs';

const dist = (p) => fileURLToPath(new URL(`../dist/${p}`, import.meta.url));
const built = existsSync(dist('cdn/rcall_bg.wasm')) && existsSync(dist('esm/rcall_sdk_bg.wasm'));
const skip = built || process.env.CI ? false : 'npm/dist is missing: run bash npm/build.sh';
const fail = (m) => { throw new Error(m); };

/** The packed module's unpacker alone: its own sections, the payload's data section dropped. */
function unpackerOf(packed) {
  const parts = sections(packed, fail)
    .filter((s) => s.id !== 11)
    .map((s) => [s.id, packed.subarray(s.start, s.end)]);
  return assemble(packed, parts);
}

test('the CDN module unpacks to the npm package\'s module, byte for byte', { skip }, () => {
  const packed = readFileSync(dist('cdn/rcall_bg.wasm'));
  const module = readFileSync(dist('esm/rcall_sdk_bg.wasm'));
  assert.ok(packed.length < module.length / 2, `${packed.length} B packed for ${module.length} B`);
  assert.ok(Buffer.compare(unpack(packed), module) === 0);
  assert.ok(WebAssembly.validate(unpack(packed)));
});

test('any payload round-trips through the unpacker, and damage is reported', { skip }, () => {
  const unpacker = unpackerOf(readFileSync(dist('cdn/rcall_bg.wasm')));
  const text = Buffer.from('rcall '.repeat(5000) + Array.from({ length: 3000 }, (_, i) => i * i).join(','));
  const packed = withPayload(unpacker, lzma(text));
  assert.ok(Buffer.compare(unpack(packed), text) === 0);
  // A payload cut short: the unpacker's "truncated" code, not a hang or a trap.
  const cut = lzma(text);
  assert.throws(() => unpack(withPayload(unpacker, cut.subarray(0, cut.length >> 1))), /unpack failed with -1/);
  // xz's own header says "size unknown": the packer writes the size, the unpacker needs it.
  const unknown = lzma(text);
  unknown.fill(0xff, 5, 13);
  assert.throws(() => unpack(withPayload(unpacker, unknown)), /unpack failed with -2/);
});

test('the memory grows to fit a payload larger than the unpacker\'s memory', { skip }, () => {
  const unpacker = unpackerOf(readFileSync(dist('cdn/rcall_bg.wasm')));
  // Incompressible (SHA-256 in counter mode): the payload is as large as the bytes.
  const noise = Buffer.concat(Array.from({ length: 300_000 / 32 }, (_, i) => createHash('sha256').update(String(i)).digest()));
  const packed = withPayload(unpacker, lzma(noise));
  let pages;
  for (const s of sections(packed, fail)) {
    if (s.id === 5) { const c = new Cursor(packed, s.start); c.u32(); c.byte(); pages = c.u32(); }
  }
  const heapBase = new WebAssembly.Instance(new WebAssembly.Module(unpacker), {}).exports.__heap_base.value;
  assert.ok(pages * 65536 >= heapBase + noise.length, `${pages} pages`);
  assert.ok(Buffer.compare(unpack(packed), noise) === 0);
});

test('a module without __heap_base is refused', () => {
  // (module (memory 1)): nothing tells the packer where its data may go.
  const bare = Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1]);
  assert.throws(() => withPayload(bare, Buffer.from('x')), /exports no __heap_base/);
});
