//! Round trips through the real `xz` (what the packer runs), and damaged streams.

use super::*;

/// `data` as xz packs it, with the size written into the header.
fn pack(data: &[u8], options: &str) -> Vec<u8> {
    let mut packed = crate::pack::xz(data, options).unwrap();
    packed[5..13].copy_from_slice(&(data.len() as u64).to_le_bytes());
    packed
}

fn unpack(packed: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0; header(packed)?.size];
    let mut probs = Box::new([0u16; MAX_PROBS]);
    decode(packed, &mut out, &mut probs)?;
    Ok(out)
}

/// A deterministic byte source (xorshift), so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text-like data with repeats at every distance class, literals after matches, runs of one
/// byte (overlapping copies) and long matches: every branch of the decoder.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out: Vec<u8> = Vec::with_capacity(len);
    while out.len() < len {
        match rng.next() % 5 {
            0 => out.extend((0..rng.next() % 40).map(|_| (rng.next() % 256) as u8)),
            1 => out.extend(std::iter::repeat_n(
                (rng.next() % 256) as u8,
                (rng.next() % 300) as usize,
            )),
            2 => out.extend_from_slice(b"function call(session) { return session.accept(); }\n"),
            _ if out.len() > 16 => {
                let from = (rng.next() as usize) % out.len();
                let n = ((rng.next() % 400) as usize).min(out.len() - from);
                let copy = out[from..from + n].to_vec();
                out.extend(copy);
            }
            _ => out.push(b'x'),
        }
    }
    out.truncate(len);
    out
}

#[test]
fn what_xz_packs_comes_back_byte_for_byte() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "preset=9e,lc=4,lp=0,pb=0"),
        (b"a".to_vec(), "preset=9e,lc=4,lp=0,pb=0"),
        (sample(300_000, 1), "preset=9e,lc=4,lp=0,pb=0"),
        // xz's defaults (lc 3, lp 0, pb 2) and the other position models.
        (sample(100_000, 2), "preset=6"),
        (sample(100_000, 3), "preset=9e,lc=0,lp=4,pb=4"),
        (sample(100_000, 4), "preset=1,lc=2,lp=2,pb=1"),
        // Incompressible: all literals, some matches by chance.
        (
            (0..70_000)
                .map(|i| (Rng(i + 1).next() >> 20) as u8)
                .collect(),
            "preset=9e,lc=4,lp=0,pb=0",
        ),
    ];
    for (data, options) in cases {
        let packed = pack(&data, options);
        assert_eq!(header(&packed).unwrap().size, data.len());
        assert!(
            unpack(&packed).unwrap() == data,
            "{options}, {} bytes",
            data.len()
        );
    }
}

#[test]
fn a_truncated_stream_is_an_error_at_every_cut() {
    let data = sample(20_000, 5);
    let packed = pack(&data, "preset=9e,lc=4,lp=0,pb=0");
    // xz's end marker (a few bytes) is never read: cuts into it still decode.
    let needed = (0..packed.len())
        .find(|&n| unpack(&packed[..n]).is_ok())
        .unwrap();
    assert!(
        packed.len() - needed <= 8,
        "{} bytes unread",
        packed.len() - needed
    );
    assert_eq!(unpack(&packed[..needed]).unwrap(), data);
    for n in 0..needed {
        assert!(
            unpack(&packed[..n]).is_err(),
            "cut at {n} of {needed} decoded"
        );
    }
    assert_eq!(unpack(&packed[..12]), Err(Error::Truncated));
}

#[test]
fn damaged_streams_end_in_an_error_or_wrong_bytes_never_a_panic() {
    let data = sample(30_000, 6);
    let packed = pack(&data, "preset=9e,lc=4,lp=0,pb=0");
    let mut rng = Rng(7);
    let (mut errors, mut decoded) = (0, 0);
    for _ in 0..3_000 {
        let mut bad = packed.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = HEADER_BYTES + 1 + (rng.next() as usize) % (bad.len() - HEADER_BYTES - 1);
            bad[at] ^= 1 << (rng.next() % 8);
        }
        match unpack(&bad) {
            Err(_) => errors += 1,
            Ok(_) => decoded += 1,
        }
    }
    // Most flips derail the range coder into an impossible distance or the stream's end.
    assert!(errors > 2_000, "{errors} errors, {decoded} decoded");
}

#[test]
fn bad_headers_are_refused() {
    let packed = pack(b"hello hello hello", "preset=9e,lc=4,lp=0,pb=0");
    let with = |i: usize, v: u8| {
        let mut p = packed.clone();
        p[i] = v;
        p
    };
    assert_eq!(unpack(&with(0, 225)), Err(Error::Header));
    // lc 4 + lp 1: a larger model than the unpacker holds.
    assert_eq!(unpack(&with(0, 4 + 9)), Err(Error::Unsupported));
    // xz's own "size unknown" header (all ones): the packer must write the size.
    let mut unknown = packed.clone();
    unknown[5..13].fill(0xff);
    assert_eq!(unpack(&unknown), Err(Error::Header));
    // The range coder's first byte is always 0.
    assert_eq!(unpack(&with(HEADER_BYTES, 1)), Err(Error::Header));
    // A size larger than the stream holds: the stream runs out (or hits its end marker).
    let mut longer = packed.clone();
    longer[5] += 1;
    assert!(unpack(&longer).is_err());
    // A buffer of the wrong size.
    let mut probs = Box::new([0u16; MAX_PROBS]);
    assert_eq!(decode(&packed, &mut [0; 3], &mut probs), Err(Error::Header));
}
