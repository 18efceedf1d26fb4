//! The wasm unpacker (issue 13's download budget). The CDN's `rcall_bg.wasm` is not the SDK's
//! module itself but this crate built for wasm32 — a few KB — with the SDK's module in a data
//! segment: its code section split into streams of like values ([`streams`]), each compressed
//! with LZMA ([`container`]), 88 KB against 118 KB gzip-9 for the same module. The page
//! instantiates it, calls `unpack`, and instantiates the bytes it returns
//! (`npm/src/cdn-entry.js`; the packing is [`pack`], run by `npm/build.sh` as `rcall-pack`, and
//! `npm/pack-wasm.mjs`).
//!
//! Why a decoder of our own: the reference LZMA decoder is small (this is a port of the format
//! specification's `LzmaSpec.cpp`, public domain), while the crates that decode LZMA bring `std`
//! I/O and an allocator, tens of KB that would eat the saving; and in wasm it decodes the SDK in a
//! few milliseconds from the first call, where the same decoder in JS took ~60 ms cold in V8.
//!
//! Decoding is bounded: every step writes at least one byte of the output, whose size the header
//! gives, and reads only input that is there; bad input is an [`Error`], never a panic or a loop.
#![cfg_attr(all(target_arch = "wasm32", not(test)), no_std)]

pub mod container;
#[cfg(not(target_arch = "wasm32"))]
pub mod pack;
pub mod streams;
#[cfg(target_arch = "wasm32")]
mod wasm;

/// Why a `.lzma` stream could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the stream ends before its header's size is decoded (truncated download?)")]
    Truncated,
    #[error("a bad header: LZMA properties past lc 8 / lp 4 / pb 4, a size of 4 GB or more, no range coder start, or stream lengths that do not add up")]
    Header,
    #[error(
        "lc + lp is above 4: pack with lc + lp <= 4 (crates/unpack/src/pack.rs) so the model fits"
    )]
    Unsupported,
    #[error("corrupt data: a match reaching before the start or past the end of a stream, or streams that do not join into the module")]
    Corrupt,
    #[error("the page could not grow the unpacker's memory to hold the module")]
    OutOfMemory,
}

impl Error {
    /// The negative code the wasm export returns for this error (the page prints it).
    pub fn code(self) -> i32 {
        match self {
            Error::Truncated => -1,
            Error::Header => -2,
            Error::Unsupported => -3,
            Error::Corrupt => -4,
            Error::OutOfMemory => -5,
        }
    }
}

/// Bytes of the `.lzma` header: properties, dictionary size (u32), uncompressed size (u64).
pub const HEADER_BYTES: usize = 13;

// Offsets of each model in the one probability array.
const IS_MATCH: usize = 0;
const IS_REP: usize = 192;
const IS_REP_G0: usize = 204;
const IS_REP_G1: usize = 216;
const IS_REP_G2: usize = 228;
const IS_REP0_LONG: usize = 240;
const POS_SLOT: usize = 432;
const POS_SPECIAL: usize = 688;
const ALIGN: usize = 803;
const LEN: usize = 819;
const REP_LEN: usize = 1333;
const LITERAL: usize = 1847;

/// Probabilities the largest supported model needs (lc + lp = 4).
pub const MAX_PROBS: usize = LITERAL + (0x300 << 4);

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    lc: u32,
    lp: u32,
    pb: u32,
    /// Length of the decoded bytes.
    pub size: usize,
}

/// Reads a `.lzma` header. The dictionary size is not checked: the whole output stays in
/// memory, so any distance up to the position is valid.
pub fn header(input: &[u8]) -> Result<Header, Error> {
    let h = input.get(..HEADER_BYTES).ok_or(Error::Truncated)?;
    let mut header = properties(h[0])?;
    let size = u64::from_le_bytes(h[5..13].try_into().unwrap_or_default());
    // xz writes all ones for "unknown"; the packer writes the size.
    header.size = u32::try_from(size).map_err(|_| Error::Header)? as usize;
    Ok(header)
}

/// The model a properties byte (the header's first) selects: `(pb * 5 + lp) * 9 + lc`.
fn properties(props: u8) -> Result<Header, Error> {
    let props = u32::from(props);
    if props >= 9 * 5 * 5 {
        return Err(Error::Header);
    }
    let (lc, lp, pb) = (props % 9, props / 9 % 5, props / 45);
    if lc + lp > 4 {
        return Err(Error::Unsupported);
    }
    Ok(Header {
        lc,
        lp,
        pb,
        size: 0,
    })
}

/// Decodes a whole `.lzma` file into `out`, which must be [`Header::size`] long. Bytes after
/// the output is complete (xz's end marker) are not read.
pub fn decode(input: &[u8], out: &mut [u8], probs: &mut [u16; MAX_PROBS]) -> Result<(), Error> {
    let h = header(input)?;
    if out.len() != h.size {
        return Err(Error::Header);
    }
    // The range coder's first byte is always 0.
    if input.get(HEADER_BYTES) != Some(&0) {
        return Err(if input.len() > HEADER_BYTES {
            Error::Header
        } else {
            Error::Truncated
        });
    }
    decode_raw(input[0], &input[HEADER_BYTES + 1..], out, probs)
}

/// Decodes one LZMA stream without its `.lzma` header — the range coder's bytes after the
/// first (always 0), under the model `props` names (the header's first byte) — until `out` is
/// full: the packed module's
/// streams ([`container`]) carry their sizes elsewhere. A function of its own, with nothing
/// but the decoding loop: V8 runs the unpacker in its baseline compiler (Liftoff), which
/// allocates registers poorly across a large function's branches — inlined beside the join,
/// the same loop took ~40 % longer (BENCHMARKS.md "Session 18: size").
#[inline(never)]
pub fn decode_raw(
    props: u8,
    input: &[u8],
    out: &mut [u8],
    probs: &mut [u16; MAX_PROBS],
) -> Result<(), Error> {
    let h = properties(props)?;
    // Only the literal contexts this model uses: 17 streams, mostly lc 0, would otherwise reset
    // 14,135 probabilities each (a loop V8's baseline tier runs slowly).
    probs[..LITERAL + (0x300 << (h.lc + h.lp))].fill(1024);
    let mut rc = RangeDecoder::new(input)?;
    let done = symbols(&mut rc, h, out, probs);
    // Whatever went wrong after the stream ran out, the cause is the missing bytes.
    if rc.truncated {
        return Err(Error::Truncated);
    }
    done
}

/// Decodes LZMA symbols (literals, matches, repeats) until `out` is full.
fn symbols(
    rc: &mut RangeDecoder,
    h: Header,
    out: &mut [u8],
    probs: &mut [u16; MAX_PROBS],
) -> Result<(), Error> {
    let (mut pos, mut state) = (0usize, 0usize);
    // The last four match distances (minus one), most recent first.
    let mut reps = [0usize; 4];
    let (pb_mask, lp_mask) = ((1usize << h.pb) - 1, (1usize << h.lp) - 1);
    while pos < out.len() {
        let pos_state = pos & pb_mask;
        if rc.bit(&mut probs[IS_MATCH + (state << 4) + pos_state]) == 0 {
            // A literal, coded against the byte at rep0 after a match.
            let prev = if pos > 0 { out[pos - 1] as usize } else { 0 };
            let ctx = ((pos & lp_mask) << h.lc) + (prev >> (8 - h.lc));
            let lit = &mut probs[LITERAL + 0x300 * ctx..][..0x300];
            let mut s = 1usize;
            if state >= 7 {
                let mut matched = out[pos - reps[0] - 1] as usize;
                while s < 0x100 {
                    let mb = (matched >> 7) & 1;
                    matched <<= 1;
                    let b = rc.bit(&mut lit[((1 + mb) << 8) + s]);
                    s = (s << 1) | b;
                    if mb != b {
                        break;
                    }
                }
            }
            while s < 0x100 {
                s = (s << 1) | rc.bit(&mut lit[s]);
            }
            out[pos] = s as u8;
            pos += 1;
            state = match state {
                0..=3 => 0,
                4..=9 => state - 3,
                _ => state - 6,
            };
            continue;
        }
        let len;
        if rc.bit(&mut probs[IS_REP + state]) == 1 {
            if pos == 0 {
                return Err(Error::Corrupt);
            }
            if rc.bit(&mut probs[IS_REP_G0 + state]) == 0 {
                if rc.bit(&mut probs[IS_REP0_LONG + (state << 4) + pos_state]) == 0 {
                    // A "short rep": one byte from rep0.
                    state = if state < 7 { 9 } else { 11 };
                    out[pos] = out[pos - reps[0] - 1];
                    pos += 1;
                    continue;
                }
            } else {
                let dist = if rc.bit(&mut probs[IS_REP_G1 + state]) == 0 {
                    reps[1]
                } else if rc.bit(&mut probs[IS_REP_G2 + state]) == 0 {
                    let d = reps[2];
                    reps[2] = reps[1];
                    d
                } else {
                    let d = reps[3];
                    reps[3] = reps[2];
                    reps[2] = reps[1];
                    d
                };
                reps[1] = reps[0];
                reps[0] = dist;
            }
            len = rc.length(&mut probs[REP_LEN..LITERAL], pos_state);
            state = if state < 7 { 8 } else { 11 };
        } else {
            reps = [0, reps[0], reps[1], reps[2]];
            len = rc.length(&mut probs[LEN..REP_LEN], pos_state);
            state = if state < 7 { 7 } else { 10 };
            // The distance: a 6-bit slot per length class, then its low bits.
            let slot = rc.tree(&mut probs[POS_SLOT + len.min(3) * 64..][..64], 6);
            let dist = if slot < 4 {
                slot
            } else {
                let n = (slot >> 1) - 1;
                let base = (2 | (slot & 1)) << n;
                if slot < 14 {
                    base + rc.reverse(&mut probs[POS_SPECIAL + base - slot..], n)
                } else {
                    base + (rc.direct(n - 4) << 4) + rc.reverse(&mut probs[ALIGN..], 4)
                }
            };
            // (The end marker, distance 2^32 - 1, lands here too: nothing may end early.)
            if dist >= pos {
                return Err(Error::Corrupt);
            }
            reps[0] = dist;
        }
        let len = len + 2;
        if len > out.len() - pos {
            return Err(Error::Corrupt);
        }
        let from = pos - reps[0] - 1;
        if reps[0] + 1 >= len {
            out.copy_within(from..from + len, pos);
        } else {
            // Overlapping: each byte may be one this match just wrote.
            for i in 0..len {
                out[pos + i] = out[from + i];
            }
        }
        pos += len;
    }
    Ok(())
}

/// LZMA's binary range decoder over the stream after the header.
struct RangeDecoder<'a> {
    input: &'a [u8],
    at: usize,
    range: u32,
    code: u32,
    truncated: bool,
}

impl<'a> RangeDecoder<'a> {
    /// `input`: the range coder's bytes after its first, which is always 0 (the packed
    /// module's streams leave it out).
    fn new(input: &'a [u8]) -> Result<Self, Error> {
        let start = input.get(..4).ok_or(Error::Truncated)?;
        let code = u32::from_be_bytes([start[0], start[1], start[2], start[3]]);
        if code == u32::MAX {
            return Err(Error::Header);
        }
        Ok(RangeDecoder {
            input,
            at: 4,
            range: u32::MAX,
            code,
            truncated: false,
        })
    }

    /// Past the stream's end the coder reads zeros and remembers it ([`Self::truncated`]):
    /// one check per slice instead of one per bit, and the output still bounds the work.
    #[inline(always)]
    fn normalize(&mut self) {
        if self.range < 1 << 24 {
            let b = match self.input.get(self.at) {
                Some(&b) => b,
                None => {
                    self.truncated = true;
                    0
                }
            };
            self.at += 1;
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(b);
        }
    }

    /// One bit under an adaptive probability (of a 0, in 1/2048ths). Without branches: the
    /// bits are as unpredictable as compression can make them, and a mispredicted branch per
    /// bit was a seventh of the decoder's time. Not inlined: V8 runs the unpacker in its
    /// baseline tier (Liftoff), which allocates registers well in a small function and poorly
    /// across a large one's branches — one function of its own is both 1.7 KB smaller and
    /// faster there (BENCHMARKS.md "Session 17: size").
    #[inline(never)]
    fn bit(&mut self, p: &mut u16) -> usize {
        let prob = u32::from(*p);
        let bound = (self.range >> 11) * prob;
        let one = self.code >= bound;
        let mask = u32::from(one).wrapping_neg();
        self.code -= bound & mask;
        // bound <= range * 2047 / 2048: no underflow.
        self.range = (bound & !mask) | ((self.range - bound) & mask);
        // Toward 0 after a 1, toward 2048 after a 0 (prob stays in 31..=2017).
        *p = (prob - ((prob >> 5) & mask) + (((2048 - prob) >> 5) & !mask)) as u16;
        self.normalize();
        usize::from(one)
    }

    /// `bits` bits, most significant first, each under the tree node it reaches.
    fn tree(&mut self, p: &mut [u16], bits: u32) -> usize {
        let mut m = 1usize;
        for _ in 0..bits {
            m = (m << 1) | self.bit(&mut p[m]);
        }
        m - (1 << bits)
    }

    /// `bits` bits, least significant first.
    fn reverse(&mut self, p: &mut [u16], bits: usize) -> usize {
        let (mut m, mut s) = (1usize, 0usize);
        for i in 0..bits {
            let b = self.bit(&mut p[m]);
            m = (m << 1) | b;
            s |= b << i;
        }
        s
    }

    /// `bits` bits at probability one half.
    fn direct(&mut self, bits: usize) -> usize {
        let mut s = 0usize;
        for _ in 0..bits {
            self.range >>= 1;
            let b = usize::from(self.code >= self.range);
            if b == 1 {
                self.code -= self.range;
            }
            s = (s << 1) | b;
            self.normalize();
        }
        s
    }

    /// A match length minus 2: choice, choice 2, 16 low and 16 mid trees of 3 bits, one of 8.
    fn length(&mut self, p: &mut [u16], pos_state: usize) -> usize {
        if self.bit(&mut p[0]) == 0 {
            self.tree(&mut p[2 + pos_state * 8..], 3)
        } else if self.bit(&mut p[1]) == 0 {
            8 + self.tree(&mut p[130 + pos_state * 8..], 3)
        } else {
            16 + self.tree(&mut p[258..], 8)
        }
    }
}

#[cfg(test)]
mod tests;
