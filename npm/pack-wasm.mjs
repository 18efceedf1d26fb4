// Packs the CDN build's wasm (issue 13): rcall_bg.wasm becomes the unpacker module
// (crates/unpack, a few KB) with the SDK's module in a data segment, compressed with LZMA by xz
// (`.lzma` format): 96 KB against 118 KB gzip-9 for the SDK's module alone. The page instantiates
// it, calls `unpack()` and instantiates the bytes it returns (npm/src/cdn-entry.js). The packed
// module is run here once and its output compared with the SDK's module byte for byte, so a
// build never ships a file the page cannot read.
// Usage: node npm/pack-wasm.mjs UNPACKER.wasm SDK.wasm OUT.wasm
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Cursor, assemble, leb, sections, sleb } from './wasm-module.mjs';

/**
 * lc=4 lp=0 pb=0: wasm's bytes are not aligned to any width, so positions say nothing (pb, lp
 * 0) and the previous byte says most about the next (lc 4, the most crates/unpack holds):
 * −257 B against xz's defaults (BENCHMARKS.md "Session 17: size").
 */
export const LZMA_OPTIONS = 'preset=9e,lc=4,lp=0,pb=0';

const fail = (message) => {
  throw new Error(`pack-wasm: ${message}`);
};

/** `bytes` as an `.lzma` file, with its size in the header (xz writes "unknown"). */
export function lzma(bytes) {
  const out = execFileSync('xz', ['--format=lzma', `--lzma1=${LZMA_OPTIONS}`, '--stdout'], {
    input: bytes,
    maxBuffer: 1 << 30,
  });
  out.writeBigUInt64LE(BigInt(bytes.length), 5);
  return out;
}

/**
 * The unpacker module with `payload` (the `.lzma` file, after its length as a u32) in an
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
  const [unpacker, sdk, output] = process.argv.slice(2);
  if (!output) {
    console.error('usage: node npm/pack-wasm.mjs UNPACKER.wasm SDK.wasm OUT.wasm');
    process.exit(2);
  }
  const module = readFileSync(sdk);
  const packed = withPayload(readFileSync(unpacker), lzma(module));
  if (Buffer.compare(unpack(packed), module) !== 0) fail(`${output} does not unpack to ${sdk}`);
  writeFileSync(output, packed);
}
