// Packs the CDN build's wasm (issue 13): rcall_bg.wasm becomes the unpacker module
// (crates/unpack, a few KB) with the SDK's module in a data segment — its code section split into
// streams of like values, each LZMA-compressed (`rcall-pack`, crates/unpack/src/pack.rs): 88 KB
// against 118 KB gzip-9 for the SDK's module alone. The page instantiates it, calls `unpack()`
// and instantiates the bytes it returns (npm/src/cdn-entry.js). The packed module is run here
// once and its output compared with the SDK's module byte for byte, so a build never ships a
// file the page cannot read.
// Usage: node npm/pack-wasm.mjs UNPACKER.wasm PAYLOAD SDK.wasm OUT.wasm
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, assemble, leb, sections, sleb } from './wasm-module.mjs';

const fail = (message) => {
  throw new Error(`pack-wasm: ${message}`);
};

/**
 * The unpacker module with `payload` (rcall-pack's output, after its length as a u32) in an
 * active data segment at its `__heap_base`, where crates/unpack's `unpack` reads it; the
 * memory's minimum covers the segment.
 */
export function withPayload(unpacker, payload) {
  const at = new WebAssembly.Instance(new WebAssembly.Module(unpacker), {}).exports.__heap_base?.value;
  if (typeof at !== 'number') fail('the unpacker exports no __heap_base');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(payload.length);
  const bytes = Buffer.concat([len, payload]);
  const segment = Buffer.concat([Buffer.from([0, 0x41]), sleb(at), Buffer.from([0x0b]), leb(bytes.length), bytes]);
  const pages = Math.ceil((at + bytes.length) / 65536);
  const parts = [];
  let added = false;
  for (const s of sections(unpacker, fail)) {
    let body = unpacker.subarray(s.start, s.end);
    const c = new Cursor(unpacker, s.start);
    if (s.id === 5) {
      if (c.u32() !== 1) fail('the unpacker must have one memory');
      const flags = c.byte();
      if (flags !== 0) fail('the unpacker memory must have no maximum (nor be shared or 64-bit)');
      body = Buffer.concat([leb(1), Buffer.from([0]), leb(Math.max(c.u32(), pages))]);
    } else if (s.id === 12) {
      body = leb(c.u32() + 1);
    } else if (s.id === 11) {
      const n = c.u32();
      body = Buffer.concat([leb(n + 1), unpacker.subarray(c.p, s.end), segment]);
      added = true;
    } else if (!added && (s.id === 0 || s.id > 11)) {
      // No data section yet: it goes after the code section, before custom sections.
      parts.push([11, Buffer.concat([leb(1), segment])]);
      added = true;
    }
    parts.push([s.id, body]);
  }
  if (!added) parts.push([11, Buffer.concat([leb(1), segment])]);
  return assemble(unpacker, parts);
}

/** Runs the packed module as the page does: the bytes `unpack()` returns. */
export function unpack(packed) {
  const u = new WebAssembly.Instance(new WebAssembly.Module(packed), {}).exports;
  const at = u.unpack();
  if (at < 0) fail(`unpack failed with ${at}`);
  return Buffer.from(u.memory.buffer, at, u.unpacked_len());
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [unpacker, payload, sdk, output] = process.argv.slice(2);
  if (!output) {
    console.error('usage: node npm/pack-wasm.mjs UNPACKER.wasm PAYLOAD SDK.wasm OUT.wasm');
    process.exit(2);
  }
  const module = readFileSync(sdk);
  const packed = withPayload(readFileSync(unpacker), readFileSync(payload));
  if (Buffer.compare(unpack(packed), module) !== 0) fail(`${output} does not unpack to ${sdk}`);
  writeFileSync(output, packed);
}
