// npm/order-functions.mjs on a small hand-assembled module: an imported function first (so
// function indices are offset), defined functions of two sizes with wasm-bindgen-style names
// (crate hashes, leading `<`), and the name section; then, when the npm binaryen is installed,
// the build's reorder through wasm-opt.
// Run: node --test npm/test/
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cursor, leb, name, sections } from '../wasm-module.mjs';

/** The runs' files, removed when the tests end. */
const scratch = mkdtempSync(join(tmpdir(), 'order-functions-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const script = fileURLToPath(new URL('../order-functions.mjs', import.meta.url));
const wasmOpt = fileURLToPath(new URL('../../node_modules/.bin/wasm-opt', import.meta.url));

const vec = (items) => Buffer.concat([leb(items.length), ...items]);
const section = (id, body) => Buffer.concat([Buffer.from([id]), leb(body.length), body]);
const I32 = 0x7f;

const NOPS = new Array(20).fill(0x01);
const MANY_NOPS = new Array(60).fill(0x01);
/** `i32.const a; i32.const b; i32.add; …`: the sum of `values`. */
const sum = (values) => values.flatMap((v, i) => (i === 0 ? [0x41, v] : [0x41, v, 0x6a]));
/** Defined functions: name, body code (before `end`), and the value it returns. */
const FUNCS = [
  { fn: '<big[0123456789abcdef]::b>::run', code: [...MANY_NOPS, 0x41, 1], value: 1 }, // 64 bytes
  { fn: 'small::z', code: [0x41, 2], value: 2 }, // 4 bytes
  { fn: '&small[0123456789abcdef]::a', code: [0x41, 3], value: 3 },
  { fn: 'big::a', code: [...MANY_NOPS, 0x41, 4], value: 4 },
  { fn: 'sim::a', code: sum([1, 2, 3, 4, 5]), value: 15 }, // 16 bytes
  { fn: 'sim::b', code: [...NOPS.slice(0, 12), 0x41, 6], value: 6 },
  { fn: 'sim::c', code: sum([1, 2, 3, 4, 6]), value: 16 },
];
const DEFINED = FUNCS.map((_, i) => 1 + i);

function module({ names = true } = {}) {
  const types = vec([Buffer.from([0x60, 1, I32, 0]), Buffer.from([0x60, 0, 1, I32])]);
  const imports = vec([Buffer.concat([name('env'), name('log'), Buffer.from([0, 0])])]);
  const funcs = vec(FUNCS.map(() => leb(1)));
  const exports = vec(FUNCS.map((_, i) => Buffer.concat([name(`f${i}`), Buffer.from([0]), leb(1 + i)])));
  const body = ({ code }) => Buffer.concat([leb(code.length + 2), Buffer.from([0, ...code, 0x0b])]);
  const fnNames = vec([
    Buffer.concat([leb(0), name('env::log')]),
    ...FUNCS.map(({ fn }, i) => Buffer.concat([leb(1 + i), name(fn)])),
  ]);
  const nameSection = Buffer.concat([name('name'), Buffer.from([1]), leb(fnNames.length), fnNames]);
  return Buffer.concat([
    Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
    section(1, types), section(2, imports), section(3, funcs), section(7, exports),
    section(10, vec(FUNCS.map(body))), ...(names ? [section(0, nameSection)] : []),
  ]);
}

/** The function names of the name section, by index. */
function functionNames(bytes) {
  const out = new Map();
  for (const { id, start, end } of sections(bytes, assert.fail)) {
    const c = new Cursor(bytes, start);
    if (id !== 0 || c.str() !== 'name') continue;
    while (c.p < end) {
      const sub = c.byte(), size = c.u32(), next = c.p + size;
      if (sub === 1) for (let i = c.u32(); i > 0; i--) { const index = c.u32(); out.set(index, c.str()); }
      c.p = next;
    }
  }
  return out;
}

const section10 = (bytes) => {
  const s = sections(bytes, assert.fail).find((x) => x.id === 10);
  return bytes.subarray(s.start, s.end);
};

const results = async (bytes) => {
  const { exports } = (await WebAssembly.instantiate(bytes, { env: { log() {} } })).instance;
  return FUNCS.map((_, i) => exports[`f${i}`]());
};

function order(bytes) {
  const path = join(mkdtempSync(join(scratch, 'run-')), 'm.wasm');
  writeFileSync(path, bytes);
  const run = spawnSync(process.execPath, [script, path], { encoding: 'utf8' });
  return { ...run, path, bytes: readFileSync(path) };
}

test('names become ranks: by size class; in a class, the first by name, then the most alike', async () => {
  const before = module();
  const { status, stderr, bytes } = order(before);
  assert.equal(status, 0, stderr);
  assert.ok(WebAssembly.validate(bytes));
  const names = functionNames(bytes);
  assert.equal(names.get(0), 'env::log'); // imports keep their names
  // 4 bytes: "small::a" (from `&small[…]::a`), then "small::z"; 16 bytes: "sim::a", then "sim::c"
  // (its sums share 4-byte runs with sim::a's), then "sim::b"; 64 bytes: "big::a", then "big::b>…".
  assert.deepEqual(DEFINED.map((i) => names.get(i)), ['6', '1', '0', '5', '2', '4', '3']);
  assert.deepEqual(section10(bytes), section10(before));
  assert.deepEqual(await results(bytes), FUNCS.map((f) => f.value));
});

test('no name section: a clear error, the module untouched', () => {
  const before = module({ names: false });
  const { status, stderr, bytes } = order(before);
  assert.equal(status, 1);
  assert.match(stderr, /no name section/);
  assert.deepEqual(bytes, before);
});

test('wasm-opt --reorder-functions-by-name lays the code out in rank order', { skip: !existsSync(wasmOpt) && 'npm ci not run' }, async () => {
  const { status, stderr, path } = order(module());
  assert.equal(status, 0, stderr);
  const out = `${path}.out`;
  const run = spawnSync(wasmOpt, ['--reorder-functions-by-name', '--debuginfo', path, '-o', out], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const bytes = readFileSync(out);
  const names = functionNames(bytes);
  assert.deepEqual(DEFINED.map((i) => names.get(i)), ['0', '1', '2', '3', '4', '5', '6']);
  // The exports follow their functions: f2 (`small::a`) is now the first defined function.
  assert.deepEqual(await results(bytes), FUNCS.map((f) => f.value));
  const sizes = [];
  const s = sections(bytes, assert.fail).find((x) => x.id === 10);
  const c = new Cursor(bytes, s.start);
  for (let i = c.u32(); i > 0; i--) { const n = c.u32(); sizes.push(n); c.p += n; }
  assert.deepEqual(sizes, [4, 4, 16, 16, 16, 64, 64]);
});
