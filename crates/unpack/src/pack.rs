//! The packer's side (native only; `npm/build.sh` runs it through the `rcall-pack` binary):
//! the module split into [`streams`](crate::streams), each compressed by the `xz` tool under the
//! LZMA model that packs it smallest, laid out as [`container`](crate::container) reads it —
//! and checked by unpacking it again, so a build never ships a payload the page cannot read.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::container;
use crate::streams::*;
use crate::{HEADER_BYTES, MAX_PROBS};

/// Why a module could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("not a wasm module (no \\0asm header)")]
    NotWasm,
    #[error("the module ends inside {0} (a truncated or malformed module)")]
    Malformed(&'static str),
    #[error("the module has no code section")]
    NoCode,
    #[error("opcode {op:#04x} at byte {at} is not one crates/unpack/src/streams.rs knows (a new wasm feature? add it to `immediates`)")]
    UnknownOpcode { op: u32, at: usize },
    #[error("opcode {op:#04x} at byte {at} is one of the packer's markers (streams::WIDE_I32, streams::RAW_CALL)")]
    Marker { op: u8, at: usize },
    #[error("xz failed ({0}): apt install xz-utils (scripts/setup.sh installs it)")]
    Xz(String),
    #[error("the packed module does not unpack to the module ({0})")]
    RoundTrip(String),
}

/// A module taken apart: the streams and where the code section's body was.
pub struct Split {
    pub streams: [Vec<u8>; STREAMS],
    pub prefix: usize,
    pub code_len: usize,
}

/// The module's bytes, read forward.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, PackError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(PackError::Malformed("a byte"))?;
        self.at += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], PackError> {
        let b = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or(PackError::Malformed("a constant"))?;
        self.at += n;
        Ok(b)
    }

    /// A LEB128 number: its bytes and its value (sign-extended when `signed`).
    fn leb(&mut self, signed: bool) -> Result<(&'a [u8], i64), PackError> {
        let start = self.at;
        let (mut v, mut shift) = (0i64, 0u32);
        loop {
            let b = self.byte()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if signed && shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Ok((&self.bytes[start..self.at], v));
            }
            if shift >= 70 {
                return Err(PackError::Malformed("a LEB128 number"));
            }
        }
    }
}

/// Takes `module` apart ([`join`] puts it back).
pub fn split(module: &[u8]) -> Result<Split, PackError> {
    if module.get(..4) != Some(b"\0asm") || module.len() < 8 {
        return Err(PackError::NotWasm);
    }
    let mut c = Cursor {
        bytes: module,
        at: 8,
    };
    let (prefix, code_len) = loop {
        if c.at >= module.len() {
            return Err(PackError::NoCode);
        }
        let id = c.byte()?;
        let size = c.leb(false)?.1 as usize;
        if id == 10 {
            break (c.at, size);
        }
        c.at += size;
    };
    let end = prefix + code_len;
    if end > module.len() {
        return Err(PackError::Malformed("the code section"));
    }
    let mut s: [Vec<u8>; STREAMS] = Default::default();
    s[OTHER] = [&module[..prefix], &module[end..]].concat();
    let mut c = Cursor {
        bytes: &module[..end],
        at: prefix,
    };
    let (raw, functions) = c.leb(false)?;
    s[SIZES].extend(raw);
    for _ in 0..functions {
        let (raw, size) = c.leb(false)?;
        s[SIZES].extend(raw);
        let body_end = c.at + size as usize;
        let (raw, decls) = c.leb(false)?;
        s[LOCALS].extend(raw);
        for _ in 0..decls {
            let raw = c.leb(false)?.0;
            s[LOCALS].extend(raw);
            let ty = c.byte()?;
            s[LOCALS].push(ty);
        }
        while c.at < body_end {
            instruction(&mut c, &mut s)?;
        }
        if c.at != body_end {
            return Err(PackError::Malformed("a function body"));
        }
    }
    if c.at != end {
        return Err(PackError::Malformed("the code section"));
    }
    Ok(Split {
        streams: s,
        prefix,
        code_len,
    })
}

fn instruction(c: &mut Cursor, s: &mut [Vec<u8>; STREAMS]) -> Result<(), PackError> {
    let at = c.at;
    let op = c.byte()?;
    if original(op) != op {
        return Err(PackError::Marker { op, at });
    }
    if op == 0x41 || op == 0x10 {
        // A wide constant or a call target in its fixed-width stream, under the opcode the join
        // reads it by; anything else (a narrow constant, a target of 65,536 or more, a LEB128 the
        // join would not write back byte for byte) as it is.
        let signed = op == 0x41;
        let (raw, v) = c.leb(signed)?;
        let fixed = if signed {
            let wide = i32::try_from(v).ok().filter(|&v| !narrow(v));
            wide.map(|v| (WIDE_I32, I32_WIDE, v.to_be_bytes().to_vec()))
        } else {
            u16::try_from(v)
                .ok()
                .map(|t| (op, CALL, t.to_be_bytes().to_vec()))
        };
        let raw_form = if signed { (op, I32) } else { (RAW_CALL, MISC) };
        let (code, stream, bytes) = fixed.filter(|_| is_shortest(raw, v, signed)).unwrap_or((
            raw_form.0,
            raw_form.1,
            raw.to_vec(),
        ));
        s[OPS].push(code);
        s[stream].extend(bytes);
        return Ok(());
    }
    s[OPS].push(op);
    let steps = immediates(op).ok_or(PackError::UnknownOpcode { op: op.into(), at })?;
    split_steps(steps, c, s, at)
}

/// One instruction's immediates, from the module to their streams ([`join`]'s `steps` backwards).
fn split_steps(
    steps: &[Step],
    c: &mut Cursor,
    s: &mut [Vec<u8>; STREAMS],
    at: usize,
) -> Result<(), PackError> {
    let leb = |i: u8, c: &mut Cursor, s: &mut [Vec<u8>; STREAMS]| -> Result<u64, PackError> {
        let (raw, v) = c.leb(false)?;
        s[usize::from(i)].extend(raw);
        Ok(v as u64)
    };
    for &step in steps {
        match step {
            Step::Leb(i) => _ = leb(i, c, s)?,
            Step::Bytes(i, n) => {
                let b = c.bytes(n.into())?;
                s[usize::from(i)].extend(b);
            }
            Step::LebList(i) => {
                for _ in 0..=leb(i, c, s)? {
                    leb(i, c, s)?;
                }
            }
            Step::ByteList(i) => {
                let n = leb(i, c, s)?;
                let b = c.bytes(n as usize)?;
                s[usize::from(i)].extend(b);
            }
            Step::Call => unreachable!("0x10 is split before its steps"),
            Step::Wide => unreachable!("0x41 is split before its steps"),
            Step::Prefixed => {
                let sub = leb(OPS as u8, c, s)?;
                let steps =
                    u32::try_from(sub)
                        .ok()
                        .and_then(prefixed)
                        .ok_or(PackError::UnknownOpcode {
                            op: 0xFC00 | sub as u32,
                            at,
                        })?;
                split_steps(steps, c, s, at)?;
            }
        }
    }
    Ok(())
}

/// Whether `raw` is `v`'s shortest LEB128, the form [`join`] writes back.
fn is_shortest(raw: &[u8], v: i64, signed: bool) -> bool {
    let mut buf = [0u8; 10];
    let n = shortest(v, signed, &mut buf);
    raw == &buf[..n]
}

/// `data` as xz's `.lzma` file under `options` (`--lzma1=` syntax).
pub fn xz(data: &[u8], options: &str) -> Result<Vec<u8>, PackError> {
    let fail = |e: &dyn std::fmt::Display| PackError::Xz(e.to_string());
    let mut child = Command::new("xz")
        .args(["--format=lzma", &format!("--lzma1={options}"), "--stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(&e))?;
    let mut stdin = child.stdin.take().ok_or_else(|| fail(&"no stdin"))?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| fail(&e))?;
    writer
        .join()
        .map_err(|_| fail(&"writer panicked"))?
        .map_err(|e| fail(&e))?;
    if !out.status.success() || out.stdout.len() < HEADER_BYTES {
        return Err(fail(&out.status));
    }
    Ok(out.stdout)
}

/// The LZMA models tried on each stream (lc + lp <= 4, what the unpacker holds): no position
/// model, or one matching 2- and 4-byte values (call targets, wide constants).
const MODELS: [&str; 12] = [
    "lc=0,lp=0,pb=0",
    "lc=1,lp=0,pb=0",
    "lc=2,lp=0,pb=0",
    "lc=3,lp=0,pb=0",
    "lc=4,lp=0,pb=0",
    "lc=0,lp=1,pb=1",
    "lc=1,lp=1,pb=1",
    "lc=2,lp=1,pb=1",
    "lc=3,lp=1,pb=1",
    "lc=0,lp=2,pb=2",
    "lc=1,lp=2,pb=2",
    "lc=2,lp=2,pb=2",
];

/// One stream at its smallest: (properties byte, range-coder bytes).
fn compress(data: &[u8]) -> Result<(u8, Vec<u8>), PackError> {
    let mut best: Option<Vec<u8>> = None;
    // Each model with xz's longest matches (nice 273, the preset's), shorter ones, and a
    // 2-byte match finder: −72 B in all (BENCHMARKS.md "Session 18: size").
    let tries = MODELS
        .iter()
        .flat_map(|m| ["", ",nice=64", ",mf=bt2"].map(|x| format!("{m}{x}")));
    for model in tries {
        // The dictionary only needs to hold the stream (the preset's 64 MB costs memory, not bytes).
        let packed = xz(data, &format!("preset=9e,dict=1MiB,{model}"))?;
        if best.as_ref().is_none_or(|b| packed.len() < b.len()) {
            best = Some(packed);
        }
    }
    let best = best.expect("MODELS is not empty");
    // xz ends a stream with an end marker the unpacker never reads (it stops at the length):
    // its bytes go, as many as the stream decodes without (~5 B a stream).
    // So does the range coder's first byte, always 0.
    if best.get(HEADER_BYTES) != Some(&0) {
        return Err(PackError::RoundTrip(
            "xz's stream does not start with 0".into(),
        ));
    }
    let (props, mut bytes) = (best[0], best[HEADER_BYTES + 1..].to_vec());
    let mut probs = Box::new([0u16; MAX_PROBS]);
    let mut out = vec![0; data.len()];
    let decodes = |bytes: &[u8], out: &mut [u8], probs: &mut [u16; MAX_PROBS]| {
        crate::decode_raw(props, bytes, out, probs).is_ok() && out == data
    };
    if !decodes(&bytes, &mut out, &mut probs) {
        return Err(PackError::RoundTrip("xz's stream does not decode".into()));
    }
    while bytes.len() > 4 && decodes(&bytes[..bytes.len() - 1], &mut out, &mut probs) {
        bytes.pop();
    }
    Ok((props, bytes))
}

/// The payload for `module`, checked by unpacking it.
pub fn pack(module: &[u8]) -> Result<Vec<u8>, PackError> {
    let split = split(module)?;
    let packed: Vec<(u8, Vec<u8>)> = std::thread::scope(|scope| {
        let jobs: Vec<_> = split
            .streams
            .iter()
            .map(|s| {
                scope.spawn(move || {
                    if s.is_empty() {
                        Ok((0, Vec::new()))
                    } else {
                        compress(s)
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("a compression thread panicked"))
            .collect::<Result<_, _>>()
    })?;
    let mut out = Vec::new();
    let mut buf = [0u8; 10];
    let mut number = |out: &mut Vec<u8>, v: usize| {
        let n = shortest(v as i64, false, &mut buf);
        out.extend(&buf[..n]);
    };
    let scratch: usize = split.streams.iter().map(Vec::len).sum();
    for v in [module.len(), scratch, split.prefix, split.code_len] {
        number(&mut out, v);
    }
    for (stream, (props, bytes)) in split.streams.iter().zip(&packed) {
        out.push(*props);
        number(&mut out, stream.len());
        number(&mut out, bytes.len());
        out.extend(bytes);
    }
    let back = unpack(&out).map_err(|e| PackError::RoundTrip(e.to_string()))?;
    if back != module {
        return Err(PackError::RoundTrip("different bytes".into()));
    }
    Ok(out)
}

/// What the page does with a payload, natively.
pub fn unpack(payload: &[u8]) -> Result<Vec<u8>, crate::Error> {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let mut probs = Box::new([0u16; MAX_PROBS]);
    container::unpack(payload, &mut probs, |m, s| {
        Some(sized(&mut out, m, &mut scratch, s))
    })?;
    Ok(out)
}

/// `a` and `b` resized to `m` and `n` bytes, as slices.
pub fn sized<'a>(
    a: &'a mut Vec<u8>,
    m: usize,
    b: &'a mut Vec<u8>,
    n: usize,
) -> (&'a mut [u8], &'a mut [u8]) {
    a.resize(m, 0);
    b.resize(n, 0);
    (a, b)
}

#[cfg(test)]
mod tests;
