//! The payload the packed module carries: the SDK's module split into streams
//! ([`crate::streams`]), each LZMA-compressed on its own under the model that suits it (the
//! opcodes predict nothing from their position, the big-endian call targets do: the packer tries
//! several and keeps the smallest).
//!
//! Layout, numbers in LEB128: the module's length, the decoded streams' total length, the code
//! section body's offset (`prefix`) and length; then for each of the [`STREAMS`] streams its LZMA
//! properties byte, decoded length, packed length and packed bytes (none for an empty stream): the
//! range coder's bytes without their first, always 0, and without xz's end marker.
//! Read front to back in one pass, with no table of offsets: the unpacker stays small.

use crate::streams::{join, STREAMS};
use crate::{decode_raw, Error, MAX_PROBS};

/// A LEB128 number below 4 GB at `at`.
#[inline(never)]
fn number(payload: &[u8], at: &mut usize) -> Result<usize, Error> {
    let (mut v, mut shift) = (0u64, 0u32);
    loop {
        let b = *payload.get(*at).ok_or(Error::Truncated)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return u32::try_from(v)
                .map(|v| v as usize)
                .map_err(|_| Error::Header);
        }
        if shift > 28 {
            return Err(Error::Header);
        }
    }
}

/// Decodes every stream into scratch space and joins them into the module. `memory` is given
/// the module's length and the scratch space the streams need (the header's first two numbers)
/// and returns the two buffers of those lengths, or `None` if it cannot
/// ([`Error::OutOfMemory`]): the page grows the unpacker's memory there.
pub fn unpack<'m>(
    payload: &[u8],
    probs: &mut [u16; MAX_PROBS],
    memory: impl FnOnce(usize, usize) -> Option<(&'m mut [u8], &'m mut [u8])>,
) -> Result<&'m mut [u8], Error> {
    let mut at = 0;
    let mut header = [0usize; 4];
    for h in &mut header {
        *h = number(payload, &mut at)?;
    }
    let [module_len, scratch_len, prefix, code_len] = header;
    let (out, scratch) = memory(module_len, scratch_len).ok_or(Error::OutOfMemory)?;
    if out.len() != module_len || scratch.len() != scratch_len {
        return Err(Error::Header);
    }
    let mut ends = [0usize; STREAMS];
    let mut start = 0usize;
    for end in &mut ends {
        let props = *payload.get(at).ok_or(Error::Truncated)?;
        at += 1;
        let len = number(payload, &mut at)?;
        let packed = number(payload, &mut at)?;
        *end = start.checked_add(len).ok_or(Error::Header)?;
        let to = scratch.get_mut(start..*end).ok_or(Error::Header)?;
        // (Checked: on wasm32 a damaged length could wrap the sum.)
        let from = at
            .checked_add(packed)
            .and_then(|e| payload.get(at..e))
            .ok_or(Error::Truncated)?;
        if len > 0 {
            decode_raw(props, from, to, probs)?;
        }
        at += packed;
        start = *end;
    }
    if start != scratch_len {
        return Err(Error::Header);
    }
    join(scratch, ends, prefix, code_len, out)?;
    Ok(out)
}
