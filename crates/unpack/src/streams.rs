//! The code section taken apart into streams of like values: opcodes beside opcodes, local
//! indices beside local indices, call targets beside call targets… LZMA predicts each stream
//! far better than their interleaving, where every opcode sits between unrelated numbers: the
//! SDK's module packs to ~88 KB instead of 96 (BENCHMARKS.md "Session 18: size").
//! [`join`] (the unpacker, in the page) puts the section back byte for byte; `split` (the
//! packer, native only: `crate::pack`) takes it apart. Both walk the instructions with one
//! opcode table, [`immediates`].
//!
//! Beyond the split, each measured on the SDK's module (LZMA bytes saved):
//! - a memory access's alignment stays in the opcode stream, where the opcode predicts it (1.0 K);
//! - call targets are 2 big-endian bytes, not LEB128: the high byte says which neighbourhood of
//!   the module is called, the low byte which function in it (0.3 K);
//! - `i32.const` values outside ±65,536 — addresses of static data, hashes — go as 4 big-endian
//!   bytes to a stream of their own, their opcode written as [`WIDE_I32`] (1.0 K);
//! - `local.get` apart from `local.set`/`local.tee` (0.2 K), and the locals declarations apart
//!   from the bodies' sizes (0.3 K).
//!
//! Measured and dropped (same module): memory offsets split by loads and stores (+0.4 K) or in
//! the opcode stream (+3.3 K), block types, branch depths or local indices in the opcode stream
//! (+0.1 K, +0.4 K, +1.1 K), call targets as deltas from the caller (+2.1 K) or move-to-front
//! coded (+0.9 K), `i32.const` split three ways (+0.3 K), the data section apart (+0.0 K).

use crate::Error;

/// The streams, in the order the packed payload carries them.
pub const STREAMS: usize = 17;
/// The module's bytes but the code section's body: everything before it, then everything after.
pub const OTHER: usize = 0;
/// The number of functions, then each body's size.
pub const SIZES: usize = 1;
/// Each body's locals declarations.
pub const LOCALS: usize = 2;
/// Opcodes, with the `0xFC` prefix's sub-opcodes and the memory accesses' alignments.
pub const OPS: usize = 3;
pub const LOCAL_GET: usize = 4;
/// `local.set` and `local.tee` indices.
pub const LOCAL_SET: usize = 5;
/// Call targets, 2 bytes big-endian.
pub const CALL: usize = 6;
/// `i32.const` immediates within ±65,536, as LEB128.
pub const I32: usize = 7;
/// The other `i32.const` immediates, 4 bytes big-endian.
pub const I32_WIDE: usize = 8;
/// Memory accesses' offsets.
pub const OFFSET: usize = 9;
pub const GLOBAL: usize = 10;
/// Block types of `block`, `loop` and `if`.
pub const BLOCK: usize = 11;
pub const I64: usize = 12;
/// `br` and `br_if` depths.
pub const BRANCH: usize = 13;
/// `br_table` lists.
pub const BRANCH_TABLE: usize = 14;
/// `f32.const`/`f64.const` bytes.
pub const FLOAT: usize = 15;
/// The rest: `call_indirect`'s type and table, typed `select`, memory indices, bulk memory.
pub const MISC: usize = 16;

/// The opcode the opcode stream uses for an `i32.const` whose value is in [`I32_WIDE`]. In
/// WebAssembly it is a reference-type instruction (`ref.as_non_null`), which the SDK's module,
/// built without reference types, cannot hold; the packer refuses a module that has it.
pub const WIDE_I32: u8 = 0xD3;

/// The opcode the opcode stream uses for a call whose target is not in [`CALL`] — 65,536 or
/// more, or written padded (as the linker writes them before wasm-opt): its LEB128 goes to
/// [`MISC`] as it is. In WebAssembly it is a typed-function-reference instruction (`br_on_null`),
/// which the SDK's module cannot hold either.
pub const RAW_CALL: u8 = 0xD4;

/// Bounds of an `i32.const` kept as LEB128 (3 bytes or fewer); the rest go to [`I32_WIDE`].
const NARROW: core::ops::RangeInclusive<i32> = -65_536..=65_536;

/// One part of what follows an opcode, and the stream it lives in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// A LEB128 number, as it is.
    Leb(u8),
    /// Single bytes (a memory index, a float's bytes).
    Bytes(u8, u8),
    /// A LEB128 count, then one LEB128 number more than it counts (`br_table`: its targets,
    /// then the default).
    LebList(u8),
    /// A LEB128 count, then as many single bytes (a typed `select`'s types).
    ByteList(u8),
    /// A call target: 2 bytes big-endian in [`CALL`], LEB128 in the module (see also
    /// [`RAW_CALL`]).
    Call,
    /// A wide `i32.const`'s value: 4 bytes big-endian in [`I32_WIDE`], signed LEB128 in the
    /// module (whose opcode is 0x41, not [`WIDE_I32`]).
    Wide,
    /// `0xFC`'s sub-opcode (LEB128, in [`OPS`]), then [`prefixed`]'s steps for it.
    Prefixed,
}

use Step::*;

/// The one opcode table, for both directions: the steps after `op`. The instructions a Rust
/// module built for wasm32 without reference types uses (MVP, sign extension, saturating
/// conversions, bulk memory); `None` for any other, which the packer refuses and the unpacker
/// calls corrupt.
pub const fn immediates(op: u8) -> Option<&'static [Step]> {
    Some(match op {
        0x00 | 0x01 | 0x05 | 0x0B | 0x0F | 0x1A | 0x1B | 0x45..=0xC4 => &[],
        0x02..=0x04 => &[Leb(BLOCK as u8)],
        0x0C | 0x0D => &[Leb(BRANCH as u8)],
        0x0E => &[LebList(BRANCH_TABLE as u8)],
        0x10 => &[Call],
        // Type index, table index.
        0x11 => &[Leb(MISC as u8), Leb(MISC as u8)],
        0x1C => &[ByteList(MISC as u8)],
        0x20 => &[Leb(LOCAL_GET as u8)],
        0x21 | 0x22 => &[Leb(LOCAL_SET as u8)],
        0x23 | 0x24 => &[Leb(GLOBAL as u8)],
        // Alignment (beside its opcode), offset.
        0x28..=0x3E => &[Leb(OPS as u8), Leb(OFFSET as u8)],
        0x3F | 0x40 => &[Bytes(MISC as u8, 1)],
        0x41 => &[Leb(I32 as u8)],
        WIDE_I32 => &[Wide],
        RAW_CALL => &[Leb(MISC as u8)],
        0x42 => &[Leb(I64 as u8)],
        0x43 => &[Bytes(FLOAT as u8, 4)],
        0x44 => &[Bytes(FLOAT as u8, 8)],
        0xFC => &[Prefixed],
        _ => return None,
    })
}

/// The module's opcode for an opcode of the stream: the markers stand for `i32.const` and `call`.
pub fn original(op: u8) -> u8 {
    match op {
        WIDE_I32 => 0x41,
        RAW_CALL => 0x10,
        _ => op,
    }
}

/// [`immediates`] for the join's hot path, one byte per opcode: no immediates ([`NONE`]), one
/// LEB128 number from the stream in the low 5 bits ([`ONE`]), or anything else ([`STEPS`]),
/// which takes the list of steps. Two thirds of the instructions are the first two kinds.
static PLAN: [u8; 256] = {
    let mut plan = [0u8; 256];
    let mut op = 0;
    while op < 256 {
        plan[op] = match immediates(op as u8) {
            Some([]) => NONE,
            Some([Leb(s)]) if *s != OPS as u8 => ONE | *s,
            _ => STEPS,
        };
        op += 1;
    }
    plan
};
const NONE: u8 = 0;
const ONE: u8 = 0x20;
const STEPS: u8 = 0x40;

/// The steps after `0xFC`'s sub-opcode `sub`; `None` for a sub-opcode not handled.
pub fn prefixed(sub: u32) -> Option<&'static [Step]> {
    Some(match sub {
        // Saturating float-to-int conversions.
        0..=7 => &[],
        // memory.init: data index, memory index.
        8 => &[Leb(MISC as u8), Bytes(MISC as u8, 1)],
        // data.drop.
        9 => &[Leb(MISC as u8)],
        // memory.copy: two memory indices; memory.fill: one.
        10 => &[Bytes(MISC as u8, 2)],
        11 => &[Bytes(MISC as u8, 1)],
        _ => return None,
    })
}

/// The join in progress: the decoded streams (one after the other in `bytes`, stream `i` read up
/// to `at[i]` of `end[i]`) and the module written so far. A read past a stream's end or a write
/// past the module's end sets `bad` and yields zeros, which every loop checks: one flag instead
/// of an error path at each byte keeps the unpacker small (BENCHMARKS.md "Session 18: size").
struct Join<'a> {
    bytes: &'a [u8],
    at: [usize; STREAMS],
    end: [usize; STREAMS],
    out: &'a mut [u8],
    written: usize,
    bad: bool,
}

impl Join<'_> {
    #[inline(never)]
    fn byte(&mut self, i: usize) -> u8 {
        let b = match self.bytes.get(self.at[i]) {
            Some(&b) if self.at[i] < self.end[i] => b,
            _ => {
                self.bad = true;
                return 0;
            }
        };
        self.at[i] += 1;
        b
    }

    /// `N` bytes, big-endian, as a number.
    fn be<const N: usize>(&mut self, i: usize) -> u32 {
        let mut v = 0u32;
        for _ in 0..N {
            v = (v << 8) | u32::from(self.byte(i));
        }
        v
    }

    #[inline(never)]
    fn put(&mut self, b: u8) {
        match self.out.get_mut(self.written) {
            Some(o) => {
                *o = b;
                self.written += 1;
            }
            None => self.bad = true,
        }
    }

    /// Copies one LEB128 number from stream `i` to the module and returns its low 32 bits (a
    /// count the caller loops over while nothing went wrong: every iteration writes, so the
    /// output's end bounds it).
    #[inline(never)]
    fn copy(&mut self, i: usize) -> u32 {
        let (mut value, mut shift) = (0u32, 0u32);
        loop {
            let b = self.byte(i);
            self.put(b);
            value |= u32::from(b & 0x7f).wrapping_shl(shift);
            shift += 7;
            // An i64's LEB128 is at most 10 bytes.
            if b & 0x80 == 0 || self.bad || shift >= 70 {
                self.bad |= b & 0x80 != 0;
                return value;
            }
        }
    }

    /// Copies `n` single bytes.
    #[inline(never)]
    fn copy_bytes(&mut self, i: usize, n: u32) {
        for _ in 0..n {
            if self.bad {
                return;
            }
            let b = self.byte(i);
            self.put(b);
        }
    }

    /// `v` as LEB128, signed or not (the shortest form, as compilers write it).
    fn leb(&mut self, v: i64, signed: bool) {
        leb(v, signed, |b| self.put(b));
    }

    /// A function body's instructions up to `end`: the unpacking's hot loop, written for V8's
    /// baseline compiler (Liftoff), which runs the unpacker. Liftoff spills at every call and
    /// branch merge and reads `self`'s fields from memory each time, so the common instructions
    /// (no immediates, or one LEB128 number) are done in [`Self::run`] on locals; the rest take
    /// [`Self::steps`]. In Chromium this took the join from ~7 to ~3 ms.
    #[inline(never)]
    fn body(&mut self, end: usize) {
        loop {
            match self.run(end) {
                Some(op) => self.steps(immediates(op)),
                None => return,
            }
            if self.bad {
                return;
            }
        }
    }

    /// Instructions of no immediates or one LEB128 number, up to `end`, on
    /// locals (the positions, the output); stops at one that needs [`Self::steps`] and returns its
    /// opcode (written), or `None` at `end` or at an error (`bad` then set).
    #[inline(always)]
    fn run(&mut self, end: usize) -> Option<u8> {
        let Join {
            bytes,
            at,
            end: ends,
            out,
            written,
            bad,
        } = self;
        let (bytes, out) = (*bytes, &mut **out);
        let (mut w, mut o) = (*written, at[OPS]);
        let (o_end, out_len) = (ends[OPS], out.len().min(end));
        let mut found = None;
        'ops: while w < out_len {
            if o >= o_end {
                break;
            }
            let op = bytes[o];
            o += 1;
            out[w] = original(op);
            w += 1;
            let plan = PLAN[usize::from(op)];
            // The stream of its one number, if that is all it has.
            let i = match plan & 0x60 {
                NONE => continue,
                ONE => usize::from(plan & 31),
                _ => {
                    found = Some(op);
                    break;
                }
            };
            // One LEB128 number from stream `i`.
            // (No length limit: the ends of the stream and of the body bound it.)
            let (mut a, e) = (at[i], ends[i]);
            loop {
                if a >= e || w >= out_len {
                    *bad = true;
                    break 'ops;
                }
                let b = bytes[a];
                a += 1;
                out[w] = b;
                w += 1;
                if b < 0x80 {
                    break;
                }
            }
            at[i] = a;
        }
        (*written, at[OPS]) = (w, o);
        found
    }

    /// One instruction's immediates, from their streams to the module.
    #[inline(never)]
    fn steps(&mut self, list: Option<&[Step]>) {
        let Some(list) = list else {
            self.bad = true;
            return;
        };
        for &step in list {
            match step {
                Leb(i) => _ = self.copy(i.into()),
                Bytes(i, n) => self.copy_bytes(i.into(), n.into()),
                LebList(i) => {
                    for _ in 0..=self.copy(i.into()) {
                        if self.bad {
                            return;
                        }
                        self.copy(i.into());
                    }
                }
                ByteList(i) => {
                    let n = self.copy(i.into());
                    self.copy_bytes(i.into(), n);
                }
                Call => {
                    let target = self.be::<2>(CALL);
                    self.leb(target.into(), false);
                }
                Wide => {
                    let v = self.be::<4>(I32_WIDE) as i32;
                    self.leb(v.into(), true);
                }
                // (prefixed's steps hold no Prefixed: one level deep.)
                Prefixed => {
                    let sub = self.copy(OPS);
                    self.steps(prefixed(sub));
                }
            }
        }
    }
}

/// Puts the module back into `out` (its exact length) from the decoded streams, which lie one
/// after the other in `streams`, stream `i` ending at `ends[i]`: the first `prefix` bytes of
/// [`OTHER`], the code section's body (`code_len` bytes), the rest of [`OTHER`]. Bad streams are
/// [`Error::Corrupt`]: nothing is read or written out of bounds, and every stream must be used
/// up exactly.
#[inline(never)]
pub fn join(
    streams: &[u8],
    ends: [usize; STREAMS],
    prefix: usize,
    code_len: usize,
    out: &mut [u8],
) -> Result<(), Error> {
    let mut at = [0; STREAMS];
    at[1..].copy_from_slice(&ends[..STREAMS - 1]);
    let mut j = Join {
        bytes: streams,
        at,
        end: ends,
        out,
        written: 0,
        bad: false,
    };
    // The head of OTHER, byte by byte (the same checks as every other byte).
    for _ in 0..prefix {
        let b = j.byte(OTHER);
        j.put(b);
        if j.bad {
            return Err(Error::Corrupt);
        }
    }
    let code_end = prefix.saturating_add(code_len);
    let functions = j.copy(SIZES);
    for _ in 0..functions {
        let size = j.copy(SIZES) as usize;
        let end = j.written.saturating_add(size);
        let decls = j.copy(LOCALS);
        for _ in 0..decls {
            j.copy(LOCALS);
            j.copy_bytes(LOCALS, 1);
            if j.bad {
                break;
            }
        }
        j.body(end);
        if j.written != end || end > code_end || j.bad {
            return Err(Error::Corrupt);
        }
    }
    if j.written != code_end {
        return Err(Error::Corrupt);
    }
    // The tail of OTHER.
    while j.at[OTHER] < j.end[OTHER] && !j.bad {
        let b = j.byte(OTHER);
        j.put(b);
    }
    if j.bad || j.written != j.out.len() || (0..STREAMS).any(|i| j.at[i] != j.end[i]) {
        return Err(Error::Corrupt);
    }
    Ok(())
}

/// Whether `v` belongs in [`I32`] (the packer's side of the rule [`join`] relies on).
pub fn narrow(v: i32) -> bool {
    NARROW.contains(&v)
}

/// `v` as LEB128, signed or not, in its shortest form (as compilers write it), byte by byte.
fn leb(mut v: i64, signed: bool, mut put: impl FnMut(u8)) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let sign = signed && b & 0x40 != 0;
        if (v == 0 && !sign) || (signed && v == -1 && sign) {
            return put(b);
        }
        put(b | 0x80);
    }
}

/// `v`'s shortest LEB128 (as [`join`] writes it) in `buf` (10 bytes hold any i64); its length.
pub fn shortest(v: i64, signed: bool, buf: &mut [u8; 10]) -> usize {
    let mut n = 0;
    leb(v, signed, |b| {
        buf[n] = b;
        n += 1;
    });
    n
}
