//! The split, the container and the join, on modules assembled here with every kind of
//! instruction the opcode table knows; damage never panics nor loops.

use super::*;
use crate::streams::join;
use crate::tests::Rng;
use crate::Error;

/// LEB128, signed or not.
fn leb(v: i64, signed: bool) -> Vec<u8> {
    let mut buf = [0; 10];
    let n = shortest(v, signed, &mut buf);
    buf[..n].to_vec()
}

/// A section: id, size, body.
fn section(id: u8, body: &[u8]) -> Vec<u8> {
    [&[id][..], &leb(body.len() as i64, false), body].concat()
}

/// A module whose code section holds `bodies` (each: locals declarations, then instructions,
/// ending in `end`), with a type and a data section around it. Not valid for an engine (no
/// function section): the split only reads the code section's syntax.
fn module(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut code = leb(bodies.len() as i64, false);
    for b in bodies {
        code.extend(leb(b.len() as i64, false));
        code.extend(b);
    }
    [
        &b"\0asm\x01\0\0\0"[..],
        &section(1, &[1, 0x60, 0, 0]),
        &section(10, &code),
        &section(11, b"\x01\x00\x41\x08\x0b\x05hello"),
        &section(0, b"\x04name\x01\x02\x01\x00"),
    ]
    .concat()
}

/// One body with every kind of immediate, LEB128 numbers of every length included.
fn every_instruction() -> Vec<u8> {
    let mut b = vec![2, 1, 0x7f, 3, 0x7e]; // locals: 1 i32, 3 i64
    let mut op = |bytes: &[u8]| b.extend(bytes);
    op(&[0x02, 0x40, 0x03, 0x7f, 0x04, 0x00]); // block, loop i32, if (type 0)
    op(&[0x0c, 0x00, 0x0d, 0x81, 0x01]); // br 0, br_if 129
    op(&[0x0e, 0x02, 0x00, 0x01, 0x02]); // br_table [0 1] 2
    op(&[0x10, 0x05, 0x10, 0x80, 0x01, 0x10, 0xff, 0xff, 0x03]); // call 5, 128, 65535
    op(&[0x11, 0x02, 0x00, 0x1c, 0x01, 0x7f, 0x1b]); // call_indirect, select i32, select
    op(&[
        0x20, 0x00, 0x21, 0x90, 0x03, 0x22, 0x02, 0x23, 0x00, 0x24, 0x01,
    ]);
    op(&[
        0x28, 0x02, 0x08, 0x36, 0x02, 0xa0, 0x9c, 0x01, 0x3e, 0x01, 0x00,
    ]); // loads, stores
    op(&[0x3f, 0x00, 0x40, 0x00, 0x1a]); // memory.size, memory.grow, drop
    for v in [
        0i64,
        -1,
        63,
        64,
        -65,
        65_536,
        -65_536,
        65_537,
        -65_537,
        1 << 20,
        i32::MAX.into(),
        i32::MIN.into(),
    ] {
        op(&[0x41]);
        op(&leb(v, true));
    }
    op(&[0x41, 0x80, 0x80, 0x84, 0x80, 0x00]); // 65,536 << 1 in a padded (not shortest) LEB128
    op(&[
        0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f,
    ]); // i64::MIN
    op(&[0x43, 0, 0, 0x80, 0x3f, 0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    op(&[
        0xfc, 0x00, 0xfc, 0x07, 0xfc, 0x08, 0x00, 0x00, 0xfc, 0x09, 0x00,
    ]);
    op(&[
        0xfc, 0x0a, 0x00, 0x00, 0xfc, 0x0b, 0x00, 0x6a, 0xc4, 0x0f, 0x05, 0x0b,
    ]);
    b
}

fn sample() -> Vec<u8> {
    let mut bodies = vec![every_instruction(), vec![0, 0x0b]];
    // Look-alike bodies, so the streams have repeats for LZMA to find.
    for i in 0..200i64 {
        bodies.push(
            [
                &[1, 1, 0x7f][..],
                &[0x41],
                &leb(i * 977, true),
                &[0x21, 0, 0x10],
                &leb(i, false),
                &[0x0b],
            ]
            .concat(),
        );
    }
    module(&bodies)
}

/// Where each stream ends when they lie one after the other.
fn ends_of(streams: &[Vec<u8>; STREAMS]) -> [usize; STREAMS] {
    let mut ends = [0; STREAMS];
    let mut at = 0;
    for (end, stream) in ends.iter_mut().zip(streams) {
        at += stream.len();
        *end = at;
    }
    ends
}

/// Split, then join without compression.
fn round_trip(m: &[u8]) -> Result<Vec<u8>, Error> {
    let s = split(m).unwrap();
    let ends = ends_of(&s.streams);
    let mut out = vec![0; m.len()];
    join(&s.streams.concat(), ends, s.prefix, s.code_len, &mut out)?;
    Ok(out)
}

#[test]
fn split_and_join_give_the_module_back_byte_for_byte() {
    let m = sample();
    assert_eq!(round_trip(&m).unwrap(), m);
    // And through the container, each stream compressed by xz.
    let payload = pack(&m).unwrap();
    assert_eq!(unpack(&payload).unwrap(), m);
    assert!(
        payload.len() < m.len() / 2,
        "{} B for {} B",
        payload.len(),
        m.len()
    );
}

#[test]
fn the_streams_hold_what_the_table_says() {
    let s = split(&module(&[vec![
        0, 0x41, 0x81, 0x80, 0x04, 0x41, 0x05, 0x10, 0x81, 0x01, 0x28, 0x02, 0x10, 0x0b,
    ]]))
    .unwrap();
    // i32.const 65,537 goes wide (its opcode the marker), 5 stays; call 129 is 2 bytes.
    assert_eq!(s.streams[OPS], [WIDE_I32, 0x41, 0x10, 0x28, 0x02, 0x0b]);
    assert_eq!(s.streams[I32_WIDE], 65_537i32.to_be_bytes());
    assert_eq!(s.streams[I32], [0x05]);
    assert_eq!(s.streams[CALL], [0, 129]);
    assert_eq!(s.streams[OFFSET], [0x10]);
    // Call targets 65,536 and more, or padded (the linker's, before wasm-opt), go as they are.
    let body = vec![
        0, 0x10, 0x80, 0x80, 0x04, 0x10, 0x85, 0x00, 0x10, 0x05, 0x0b,
    ];
    let m = module(&[body]);
    let s = split(&m).unwrap();
    assert_eq!(s.streams[OPS], [RAW_CALL, RAW_CALL, 0x10, 0x0b]);
    assert_eq!(s.streams[MISC], [0x80, 0x80, 0x04, 0x85, 0x00]);
    assert_eq!(s.streams[CALL], [0, 5]);
    assert_eq!(round_trip(&m).unwrap(), m);
}

#[test]
fn modules_the_packer_cannot_restore_are_refused_with_the_reason() {
    let one = |body: &[u8]| split(&module(&[body.to_vec()]));
    assert!(matches!(
        one(&[0, 0x06, 0x0b]),
        Err(PackError::UnknownOpcode { op: 0x06, .. })
    ));
    assert!(matches!(
        one(&[0, 0xfc, 0x0c, 0, 0, 0x0b]),
        Err(PackError::UnknownOpcode { op: 0xfc0c, .. })
    ));
    assert!(matches!(
        one(&[0, WIDE_I32, 0x0b]),
        Err(PackError::Marker { .. })
    ));
    assert!(matches!(
        one(&[0, RAW_CALL, 0x0b]),
        Err(PackError::Marker { .. })
    ));
    assert!(matches!(one(&[0, 0x41]), Err(PackError::Malformed(_))));
    assert!(matches!(split(b"\0asm\x01\0\0\0"), Err(PackError::NoCode)));
    assert!(matches!(split(b"hello world"), Err(PackError::NotWasm)));
    assert!(PackError::UnknownOpcode { op: 6, at: 9 }
        .to_string()
        .contains("0x06 at byte 9"));
}

#[test]
fn a_payload_cut_anywhere_is_an_error() {
    let m = sample();
    let payload = pack(&m).unwrap();
    for n in 0..payload.len() {
        let cut = &payload[..n];
        assert!(
            unpack(cut).is_err(),
            "cut at {n} of {} unpacked",
            payload.len()
        );
    }
}

#[test]
fn damaged_payloads_and_streams_end_in_an_error_or_wrong_bytes_never_a_panic() {
    let m = sample();
    let payload = pack(&m).unwrap();
    let mut rng = Rng(11);
    let mut errors = 0;
    for _ in 0..2_000 {
        let mut bad = payload.clone();
        for _ in 0..1 + rng.next() % 3 {
            let at = (rng.next() as usize) % bad.len();
            bad[at] ^= 1 << (rng.next() % 8);
        }
        // Lengths up to 4 GB are read from damaged headers: allocate only plausible ones.
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut probs = Box::new([0u16; crate::MAX_PROBS]);
        let unpacked = crate::container::unpack(&bad, &mut probs, |m, s| {
            (m + s <= 1 << 22).then(|| sized(&mut out, m, &mut scratch, s))
        });
        errors += usize::from(unpacked.is_err());
    }
    assert!(errors > 1_000, "{errors} errors");
    // The join alone on damaged streams: every stream's bytes flipped, cut or lengthened.
    let s = split(&m).unwrap();
    for round in 0..3_000 {
        let mut streams = s.streams.clone();
        let i = (rng.next() as usize) % STREAMS;
        match round % 3 {
            0 if !streams[i].is_empty() => {
                let at = (rng.next() as usize) % streams[i].len();
                streams[i][at] ^= 1 << (rng.next() % 8);
            }
            1 => _ = streams[i].pop(),
            _ => streams[i].push(rng.next() as u8),
        }
        let ends = ends_of(&streams);
        let mut out = vec![0; m.len()];
        let joined = join(&streams.concat(), ends, s.prefix, s.code_len, &mut out);
        assert!(
            joined.is_err() || out != m || streams == s.streams,
            "round {round}: damage went unnoticed"
        );
    }
}

#[test]
fn the_join_checks_its_arguments() {
    let m = sample();
    let s = split(&m).unwrap();
    let bytes = s.streams.concat();
    let ends = ends_of(&s.streams);
    let mut out = vec![0; m.len()];
    assert_eq!(join(&bytes, ends, s.prefix, s.code_len, &mut out), Ok(()));
    // An output one byte short or long, a wrong code length, ends past the bytes.
    for len in [m.len() - 1, m.len() + 1] {
        let mut wrong = vec![0; len];
        assert_eq!(
            join(&bytes, ends, s.prefix, s.code_len, &mut wrong),
            Err(Error::Corrupt)
        );
    }
    assert_eq!(
        join(&bytes, ends, s.prefix, s.code_len + 1, &mut out),
        Err(Error::Corrupt)
    );
    // A prefix one byte long moves a byte of OTHER's tail before the code: lengths all agree,
    // so the join cannot tell, and the module comes out wrong (the page's compile refuses it).
    let shifted = join(&bytes, ends, s.prefix + 1, s.code_len, &mut out);
    assert!(shifted.is_err() || out != m);
    let mut far = ends;
    far[STREAMS - 1] += 1000;
    assert_eq!(
        join(&bytes, far, s.prefix, s.code_len, &mut out),
        Err(Error::Corrupt)
    );
    assert_eq!(
        join(
            &bytes,
            [usize::MAX; STREAMS],
            usize::MAX,
            usize::MAX,
            &mut out
        ),
        Err(Error::Corrupt)
    );
}
