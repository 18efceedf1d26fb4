// Empties prost's `DecodeError::push` in the SDK's wasm (before wasm-opt, which then drops every
// call to it): usage `node npm/strip-decode-context.mjs MODULE.wasm` (the module's name section is
// needed to find the function; wasm-opt drops it afterwards).
// Why: prost's derived decoders record on a failed decode which (message, field) it was in, a
// call with two names per decoded field (113 of them). Only prost's Debug and Display print that
// context, and the wasm has neither (`-Zfmt-debug=none`; `js::Detail` for DecodeError is a fixed
// text), so the wasm never reads what push() writes: a decode still fails the same way, with the
// same text. −1,001 B gzip (BENCHMARKS.md "Session 13: size").
// The names stay in the data section (wasm-opt cannot tell they are unused): with a second
// argument, `node npm/strip-decode-context.mjs MODULE.wasm NAMES.json`, the (address, length) of
// each constant name given to push is written there as JSON `[[address, length], ...]`, for
// `npm/blank-data.mjs` to zero after wasm-opt has dropped the calls (session 16).
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, assemble, leb, sections } from './wasm-module.mjs';

const [wasmPath, namesPath] = process.argv.slice(2);
if (!wasmPath) {
  console.error('usage: node npm/strip-decode-context.mjs MODULE.wasm [NAMES.json]');
  process.exit(2);
}
const fail = (msg) => { console.error(`strip-decode-context: ${wasmPath}: ${msg}`); process.exit(1); };

/** prost's method, by its demangled name (crate hash in brackets). */
const PUSH = /^<prost\[[0-9a-f]+\]::error::DecodeError>::push$/;
/** An empty body: no locals, `end`. */
const EMPTY = Buffer.from([0x02, 0x00, 0x0b]);

const buf = readFileSync(wasmPath);
const list = sections(buf, fail);
let importedFuncs = 0;
const types = []; // result count of each type
const funcTypes = []; // type index of each defined function
const named = []; // function indices (imports first) whose name matches
for (const { id, start } of list) {
  const c = new Cursor(buf, start);
  if (id === 1) {
    for (let i = c.u32(); i > 0; i--) {
      if (c.byte() !== 0x60) fail('a type that is not a function type');
      const params = c.u32(); // value types: one byte each
      c.p += params;
      const results = c.u32();
      c.p += results;
      types.push(results);
    }
  } else if (id === 2) {
    for (let i = c.u32(); i > 0; i--) {
      c.str(); c.str();
      if (c.importDesc(fail) === 0) importedFuncs++;
    }
  } else if (id === 3) {
    for (let i = c.u32(); i > 0; i--) funcTypes.push(c.u32());
  } else if (id === 0 && c.str() === 'name') {
    const end = list.find((s) => s.start === start).end;
    while (c.p < end) {
      const sub = c.byte(), size = c.u32(), next = c.p + size;
      if (sub === 1) {
        for (let i = c.u32(); i > 0; i--) {
          const index = c.u32();
          if (PUSH.test(c.str())) named.push(index);
        }
      }
      c.p = next;
    }
  }
}
if (named.length !== 1) {
  fail(`expected one function named like ${PUSH} in the name section, found ${named.length} ` +
    '(keep the name section through wasm-bindgen; a prost upgrade may have renamed or inlined it)');
}
const target = named[0] - importedFuncs;
if (target < 0 || target >= funcTypes.length) fail('DecodeError::push is not a defined function');
if (types[funcTypes[target]] !== 0) fail('DecodeError::push returns a value: its body cannot be emptied');

/**
 * The constant names given to push: each call `push(error, i32.const ptr, i32.const len,
 * i32.const ptr, i32.const len)` as (address, length) pairs, found as that byte pattern in `code`
 * (a false match only names a range blank-data.mjs still checks is unreferenced).
 */
function pushedNames(code) {
  const call = Buffer.concat([Buffer.from([0x10]), leb(named[0])]);
  const found = new Map();
  for (let p = 0; p < code.length; p++) {
    if (code[p] !== 0x41) continue;
    const c = new Cursor(code, p);
    const args = [];
    while (args.length < 4 && code[c.p] === 0x41) { c.p++; args.push(c.s32()); }
    if (args.length === 4 && code.subarray(c.p, c.p + call.length).equals(call)) {
      for (const [ptr, len] of [[args[0], args[1]], [args[2], args[3]]]) {
        if (ptr > 0 && len > 0) found.set(`${ptr},${len}`, [ptr, len]);
      }
    }
  }
  return [...found.values()].sort((a, b) => a[0] - b[0]);
}
if (namesPath) {
  const { start, end } = list.find((s) => s.id === 10);
  writeFileSync(namesPath, JSON.stringify(pushedNames(buf.subarray(start, end))));
}

const parts = list.map(({ id, start, end }) => {
  if (id !== 10) return [id, buf.subarray(start, end)];
  const c = new Cursor(buf, start);
  const count = c.u32();
  const body = [leb(count)];
  for (let i = 0; i < count; i++) {
    const size = c.u32();
    body.push(i === target ? EMPTY : Buffer.concat([leb(size), buf.subarray(c.p, c.p + size)]));
    c.p += size;
  }
  return [id, Buffer.concat(body)];
});
writeFileSync(wasmPath, assemble(buf, parts));
