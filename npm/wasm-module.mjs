// Reading and rewriting a wasm module's binary sections, for the build's post-link steps
// (shorten-names.mjs, strip-decode-context.mjs): a cursor over LEB128 numbers and names, the
// section list, and the module put back together from rewritten section bodies.

/** A cursor over `buf` from `p`. */
export class Cursor {
  constructor(buf, p = 0) {
    this.buf = buf;
    this.p = p;
  }

  /** An unsigned LEB128 number. */
  u32() {
    let r = 0, s = 0, b;
    do { b = this.buf[this.p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
    return r;
  }

  /** A signed LEB128 number (an `i32.const` immediate). */
  s32() {
    let r = 0, s = 0, b;
    do { b = this.buf[this.p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
    return b & 0x40 ? r - 2 ** s : r;
  }

  byte() {
    return this.buf[this.p++];
  }

  /** A length-prefixed UTF-8 name. */
  str() {
    const n = this.u32();
    const v = this.buf.toString('utf8', this.p, this.p + n);
    this.p += n;
    return v;
  }

  /** Table or memory limits: flags, minimum, maximum if flagged. */
  limits() {
    const flags = this.byte();
    this.u32();
    if (flags & 1) this.u32();
  }

  /**
   * An import's descriptor after its module and field names; returns its kind (0 is a function).
   * `fail` is called with a message for a kind this reader does not know.
   */
  importDesc(fail) {
    const kind = this.byte();
    if (kind === 0) this.u32();
    else if (kind === 1) { this.byte(); this.limits(); }
    else if (kind === 2) this.limits();
    else if (kind === 3) this.p += 2;
    else if (kind === 4) { this.byte(); this.u32(); }
    else fail(`unknown import kind ${kind}`);
    return kind;
  }
}

/** `n` as unsigned LEB128. */
export const leb = (n) => {
  const out = [];
  do { let b = n & 0x7f; n = Math.floor(n / 128); if (n) b |= 0x80; out.push(b); } while (n);
  return Buffer.from(out);
};

/** A length-prefixed UTF-8 name. */
export const name = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([leb(b.length), b]); };

/** The module's sections in order: `{ id, start, end }`, the body's byte range in `buf`. */
export function sections(buf, fail) {
  if (buf.length < 8 || buf.readUInt32LE(0) !== 0x6d736100) fail('not a wasm module');
  const c = new Cursor(buf, 8);
  const out = [];
  while (c.p < buf.length) {
    const id = c.byte();
    const size = c.u32();
    out.push({ id, start: c.p, end: c.p + size });
    c.p += size;
  }
  if (c.p !== buf.length) fail('the last section runs past the end of the module');
  return out;
}

/** The module with the header of `buf` and these `[id, body Buffer]` sections. */
export function assemble(buf, parts) {
  const out = [buf.subarray(0, 8)];
  for (const [id, body] of parts) out.push(Buffer.from([id]), leb(body.length), body);
  return Buffer.concat(out);
}

/** `n` as signed LEB128 (an `i32.const` immediate). */
export const sleb = (n) => {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) { out.push(b); return Buffer.from(out); }
    out.push(b | 0x80);
  }
};
