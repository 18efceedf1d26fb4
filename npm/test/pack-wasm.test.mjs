// npm/pack-wasm.mjs: the CDN's rcall_bg.wasm is crates/unpack's module with the SDK's module
// in a data segment (rcall-pack's payload: the code section split into streams, each
// LZMA-compressed). On the built files (bash npm/build.sh first; skipped without them, except
// under CI): the CDN module unpacks to exactly the module the npm package ships, damage is
// reported with the unpacker's codes, the memory grows to fit, and the packer's refusals.
// Run: node --test npm/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cursor, assemble, leb, sections } from '../wasm-module.mjs';
import { unpack, withPayload } from '../pack-wasm.mjs';

const dist = (p) => fileURLToPath(new URL(`../dist/${p}`, import.meta.url));
const built = existsSync(dist('cdn/rcall_bg.wasm')) && existsSync(dist('esm/rcall_sdk_bg.wasm'));
const skip = built || process.env.CI ? false : 'npm/dist is missing: run bash npm/build.sh';
const fail = (m) => { throw new Error(m); };

/**
 * The packed module's unpacker alone — its own data segments, without the last one, which
 * withPayload added — and that segment's payload.
 */
function split(packed) {
  const parts = [];
  let payload;
  for (const s of sections(packed, fail)) {
    const c = new Cursor(packed, s.start);
    if (s.id === 12) {
      parts.push([12, leb(c.u32() - 1)]);
    } else if (s.id === 11) {
      const n = c.u32();
      let last = c.p;
      for (let i = 0; i < n; i++) {
        last = c.p;
        c.byte(); c.byte(); c.s32(); c.byte(); // active, i32.const offset, end
        const len = c.u32();
        payload = packed.subarray(c.p + 4, c.p + 4 + packed.readUInt32LE(c.p));
        c.p += len;
      }
      parts.push([11, Buffer.concat([leb(n - 1), packed.subarray(new Cursor(packed, s.start).p + leb(n).length, last)])]);
    } else {
      parts.push([s.id, packed.subarray(s.start, s.end)]);
    }
  }
  return { unpacker: assemble(packed, parts), payload };
}

test('the CDN module unpacks to the npm package\'s module, byte for byte', { skip }, () => {
  const packed = readFileSync(dist('cdn/rcall_bg.wasm'));
  const module = readFileSync(dist('esm/rcall_sdk_bg.wasm'));
  assert.ok(packed.length < module.length / 3, `${packed.length} B packed for ${module.length} B`);
  assert.ok(Buffer.compare(unpack(packed), module) === 0);
  assert.ok(WebAssembly.validate(unpack(packed)));
  // The unpacker and its payload, put together again: the same module (the test's own reading).
  const { unpacker, payload } = split(packed);
  assert.ok(Buffer.compare(unpack(withPayload(unpacker, payload)), module) === 0);
});

test('a damaged payload is reported with the unpacker\'s code, not a hang or a trap', { skip }, () => {
  const { unpacker, payload } = split(readFileSync(dist('cdn/rcall_bg.wasm')));
  // Cut short (a truncated download): "truncated".
  assert.throws(() => unpack(withPayload(unpacker, payload.subarray(0, payload.length >> 1))), /unpack failed with -1/);
  assert.throws(() => unpack(withPayload(unpacker, Buffer.alloc(0))), /unpack failed with -1/);
  // A module length of 4 GB or more: "header".
  const huge = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]), payload.subarray(3)]);
  assert.throws(() => unpack(withPayload(unpacker, huge)), /unpack failed with -2/);
  // Streams that do not add up to the scratch length the header gives: "header".
  const longer = Buffer.from(payload);
  const c = new Cursor(longer, 0);
  c.u32();
  const at = c.p;
  assert.ok(longer[at] < 0xff);
  longer[at] += 1;
  assert.throws(() => unpack(withPayload(unpacker, longer)), /unpack failed with -2/);
});

test('the memory grows to hold the streams and the module', { skip }, () => {
  const packed = readFileSync(dist('cdn/rcall_bg.wasm'));
  const { payload } = split(packed);
  const c = new Cursor(payload, 0);
  const [moduleLen, scratchLen] = [c.u32(), c.u32()];
  const u = new WebAssembly.Instance(new WebAssembly.Module(packed), {}).exports;
  const before = u.memory.buffer.byteLength;
  const need = u.__heap_base.value + 4 + payload.length + scratchLen + moduleLen;
  assert.ok(before < need, `${before} B before`);
  assert.ok(u.unpack() > 0);
  assert.ok(u.memory.buffer.byteLength >= need, `${u.memory.buffer.byteLength} B after, ${need} needed`);
  assert.equal(u.unpacked_len(), moduleLen);
});

test('a module without __heap_base is refused', () => {
  // (module (memory 1)): nothing tells the packer where its data may go.
  const bare = Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1]);
  assert.throws(() => withPayload(bare, Buffer.from('x')), /exports no __heap_base/);
});
