// npm/strip-decode-context.mjs on a small hand-assembled module shaped like the SDK's: an imported
// function first (so function indices are offset), prost's `DecodeError::push` writing what it is
// given, a caller reading it back, and the name section wasm-bindgen keeps.
// Run: node --test npm/test/
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { leb, name } from '../wasm-module.mjs';

/** The runs' files, removed when the tests end. */
const scratch = mkdtempSync(join(tmpdir(), 'strip-decode-context-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const script = fileURLToPath(new URL('../strip-decode-context.mjs', import.meta.url));
const PUSH = '<prost[0123456789abcdef]::error::DecodeError>::push';

const vec = (items) => Buffer.concat([leb(items.length), ...items]);
const section = (id, body) => Buffer.concat([Buffer.from([id]), leb(body.length), body]);
const I32 = 0x7f;

/** The module; `pushResults` value types returned by push (none in prost). */
function module(pushName, pushResults = []) {
  const types = vec([
    Buffer.from([0x60, 1, I32, 0]), // 0: (i32) -> ()        the import
    Buffer.from([0x60, 1, I32, pushResults.length, ...pushResults]), // 1: push
    Buffer.from([0x60, 0, 1, I32]), // 2: () -> i32           decode
  ]);
  const imports = vec([Buffer.concat([name('env'), name('log'), Buffer.from([0, 0])])]);
  const funcs = vec([leb(1), leb(2)]);
  const memory = vec([Buffer.from([0x00, 1])]);
  const exports = vec([Buffer.concat([name('decode'), Buffer.from([0, 2])])]);
  // push(v): memory[0] = v (and returns it when it has a result).
  const pushCode = [0x41, 0, 0x20, 0, 0x36, 2, 0, ...(pushResults.length ? [0x20, 0] : []), 0x0b];
  // decode(): push(7) (dropping a result if any), then memory[0].
  const decodeCode = [0x41, 7, 0x10, 1, ...(pushResults.length ? [0x1a] : []), 0x41, 0, 0x28, 2, 0, 0x0b];
  const body = (code) => Buffer.concat([leb(code.length + 1), Buffer.from([0, ...code])]);
  const code = vec([body(pushCode), body(decodeCode)]);
  const names = vec([
    Buffer.concat([leb(0), name('env::log')]),
    Buffer.concat([leb(1), name(pushName)]),
    Buffer.concat([leb(2), name('decode')]),
  ]);
  const nameSection = Buffer.concat([name('name'), Buffer.from([1]), leb(names.length), names]);
  return Buffer.concat([
    Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
    section(1, types), section(2, imports), section(3, funcs), section(5, memory),
    section(7, exports), section(10, code), section(0, nameSection),
  ]);
}

const decode = async (bytes) =>
  (await WebAssembly.instantiate(bytes, { env: { log() {} } })).instance.exports.decode();

function strip(bytes) {
  const path = join(mkdtempSync(join(scratch, 'run-')), 'm.wasm');
  writeFileSync(path, bytes);
  const run = spawnSync(process.execPath, [script, path], { encoding: 'utf8' });
  return { ...run, bytes: readFileSync(path) };
}

test('push is emptied: what it was given is never written, the rest of the module runs', async () => {
  const before = module(PUSH);
  assert.equal(await decode(before), 7);
  const { status, stderr, bytes } = strip(before);
  assert.equal(status, 0, stderr);
  assert.ok(WebAssembly.validate(bytes));
  assert.equal(await decode(bytes), 0);
  assert.equal(bytes.length, before.length - 7); // push: 10 bytes with its size, now 3
});

test('no function named like prost push: a clear error, the module untouched', () => {
  const before = module('<prost[0123456789abcdef]::error::DecodeError>::new');
  const { status, stderr, bytes } = strip(before);
  assert.equal(status, 1);
  assert.match(stderr, /expected one function named like/);
  assert.deepEqual(bytes, before);
});

test('a push that returns a value is not emptied (the module would not validate)', () => {
  const before = module(PUSH, [I32]);
  const { status, stderr, bytes } = strip(before);
  assert.equal(status, 1);
  assert.match(stderr, /returns a value/);
  assert.deepEqual(bytes, before);
});

test('not a wasm module: a clear error', () => {
  const { status, stderr } = strip(Buffer.from('not wasm at all'));
  assert.equal(status, 1);
  assert.match(stderr, /not a wasm module/);
});
