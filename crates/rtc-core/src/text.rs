//! Strings built without `core::fmt`, for code that ships in the browser SDK.
//!
//! `format!` keeps `core::fmt` (its `write`, padding and integer formatting) in the wasm and
//! costs code at every call site; the SDK's messages are plain concatenations, so
//! `[a, b, c].concat()` and [`int`] build them instead (BENCHMARKS.md "SDK size", session 9).
//! `core::fmt` only leaves the wasm once no reachable code formats anything.

/// The decimal form of `n` (`n.to_string()` without `core::fmt`).
#[inline(never)]
pub fn int(n: i64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(21 - i);
    if n < 0 {
        out.push('-');
    }
    // ASCII digits only.
    digits[i..].iter().for_each(|&d| out.push(d as char));
    out
}

/// `parts.join(sep)` for owned strings. `[String]::join` is a generic of its own in the wasm
/// (~0.9 KB raw next to the `[&str]` one every `concat` already uses); this loop is ~0.1 KB.
#[inline(never)]
pub fn join(parts: &[String], sep: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{int, join};

    #[test]
    fn join_matches_std() {
        for parts in [vec![], vec!["a".to_string()], vec!["a".into(), "".into(), "bc".into()]] {
            for sep in ["", ",", "\n", "', '"] {
                assert_eq!(join(&parts, sep), parts.join(sep));
            }
        }
    }

    #[test]
    fn int_matches_to_string() {
        for n in [0, 1, -1, 9, 10, -10, 99, 100, 12_345, i64::from(i32::MIN), i64::from(u32::MAX), i64::MAX, i64::MIN] {
            assert_eq!(int(n), n.to_string());
        }
    }
}
