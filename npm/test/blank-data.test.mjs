// npm/blank-data.mjs and the name list strip-decode-context.mjs writes for it, on small
// hand-assembled modules: data segments of names, code that reads some of them by constant
// address, a pointer to one stored in data, and prost's push called with constant names.
// Run: node --test npm/test/
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { leb, name } from '../wasm-module.mjs';

/** The runs' files, removed when the tests end. */
const scratch = mkdtempSync(join(tmpdir(), 'blank-data-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const blank = fileURLToPath(new URL('../blank-data.mjs', import.meta.url));
const strip = fileURLToPath(new URL('../strip-decode-context.mjs', import.meta.url));
const PUSH = '<prost[0123456789abcdef]::error::DecodeError>::push';

const vec = (items) => Buffer.concat([leb(items.length), ...items]);
const section = (id, body) => Buffer.concat([Buffer.from([id]), leb(body.length), body]);
const body = (code) => Buffer.concat([leb(code.length + 1), Buffer.from([0, ...code])]);
/** i32.const n (signed LEB128). */
const i32 = (n) => {
  const out = [0x41];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
};
const HEADER = Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
const BASE = 1048600; // where the names start: 3-byte addresses, as in the SDK

// The names, one after the other from BASE.
const NAMES = ['SfuFeed', 'track_id', 'used_name', 'stored_ptr', 'elsewhere'];
const at = (n) => BASE + NAMES.slice(0, NAMES.indexOf(n)).join('').length;
const ranges = NAMES.map((n) => [at(n), n.length]);

/**
 * A module with the names in one data segment, a pointer to `stored_ptr` in a second one, and
 * `read()` returning the first byte at `used_name` (by a constant address) plus the stored pointer.
 */
function module() {
  const types = vec([Buffer.from([0x60, 0, 1, 0x7f])]);
  const funcs = vec([leb(0)]);
  const memory = vec([Buffer.from([0x00, 17])]);
  const exports = vec([Buffer.concat([name('read'), Buffer.from([0, 0])]), Buffer.concat([name('mem'), Buffer.from([2, 0])])]);
  const read = [...i32(at('used_name')), 0x2d, 0, 0, ...i32(16), 0x28, 2, 0, 0x6a, 0x0b]; // load8_u + load
  const code = vec([body(read)]);
  const ptr = Buffer.alloc(4);
  ptr.writeUInt32LE(at('stored_ptr'));
  const seg = (addr, bytes) => Buffer.concat([Buffer.from([0]), Buffer.from(i32(addr)), Buffer.from([0x0b]), leb(bytes.length), bytes]);
  // The segment starts 4 bytes before the names: its own offset counts as a pointer (kept).
  const data = vec([seg(BASE - 4, Buffer.from('pad!' + NAMES.join(''))), seg(16, ptr)]);
  return Buffer.concat([HEADER, section(1, types), section(3, funcs), section(5, memory), section(7, exports), section(10, code), section(11, data)]);
}

function run(script, bytes, extra) {
  const dir = mkdtempSync(join(scratch, 'run-'));
  const path = join(dir, 'm.wasm'), json = join(dir, 'ranges.json');
  writeFileSync(path, bytes);
  if (extra !== undefined && script === blank) writeFileSync(json, JSON.stringify(extra));
  const r = spawnSync(process.execPath, [script, path, json], { encoding: 'utf8' });
  return { ...r, bytes: readFileSync(path), json: () => JSON.parse(readFileSync(json, 'utf8')) };
}

const memoryText = async (bytes) => {
  const { instance } = await WebAssembly.instantiate(bytes);
  const text = Buffer.from(instance.exports.mem.buffer, BASE, NAMES.join('').length).toString('latin1');
  return { text, read: instance.exports.read() };
};

test('unreferenced ranges are zeroed; one read by a constant address or pointed to from data stays', async () => {
  const before = module();
  const old = await memoryText(before);
  const { status, stderr, bytes } = run(blank, before, ranges);
  assert.equal(status, 0, stderr);
  assert.equal(bytes.length, before.length);
  assert.ok(WebAssembly.validate(bytes));
  const now = await memoryText(bytes);
  const zeros = (n) => '\0'.repeat(n.length);
  assert.equal(now.text, [zeros('SfuFeed'), zeros('track_id'), 'used_name', 'stored_ptr', zeros('elsewhere')].join(''));
  assert.equal(now.read, old.read); // 'u' + the stored pointer, unchanged
  assert.match(stderr, /zeroed 24 of 43 bytes \(3 of 5 ranges\)/);
});

test('a range outside every data segment, or not listed, is left alone', async () => {
  const before = module();
  const { status, bytes } = run(blank, before, [[at('SfuFeed'), 200], [4000, 8]]);
  assert.equal(status, 0);
  assert.deepEqual(bytes, before);
});

test('bad arguments: usage, or not a wasm module', () => {
  const usage = spawnSync(process.execPath, [blank], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
  const notWasm = run(blank, Buffer.from('not wasm at all'), []);
  assert.equal(notWasm.status, 1);
  assert.match(notWasm.stderr, /not a wasm module/);
});

test('strip-decode-context lists the constant names given to push, once each', () => {
  // push(error, msg ptr, msg len, field ptr, field len), called twice with the same message.
  const types = vec([Buffer.from([0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0]), Buffer.from([0x60, 0, 0])]);
  const funcs = vec([leb(0), leb(1)]);
  const memory = vec([Buffer.from([0x00, 17])]);
  const call = (field) => [0x20, 0, ...i32(at('SfuFeed')), ...i32(7), ...i32(at(field)), ...i32(field.length), 0x10, 0];
  const decodeBody = [1, 1, 0x7f, ...call('track_id'), ...call('used_name'), 0x0b]; // one i32 local
  const code = vec([body([0x0b]), Buffer.concat([leb(decodeBody.length), Buffer.from(decodeBody)])]);
  const names = vec([Buffer.concat([leb(0), name(PUSH)]), Buffer.concat([leb(1), name('decode')])]);
  const nameSection = Buffer.concat([name('name'), Buffer.from([1]), leb(names.length), names]);
  const m = Buffer.concat([HEADER, section(1, types), section(3, funcs), section(5, memory), section(10, code), section(0, nameSection)]);
  assert.ok(WebAssembly.validate(m));
  const { status, stderr, bytes, json } = run(strip, m);
  assert.equal(status, 0, stderr);
  assert.ok(WebAssembly.validate(bytes));
  assert.deepEqual(json(), [[at('SfuFeed'), 7], [at('track_id'), 8], [at('used_name'), 9]]);
});
