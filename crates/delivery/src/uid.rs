//! Message UIDs. RongCloud's `messageUId` looks like `BTP6-KQ3E-7GO5-2RT9`; we keep that shape
//! (16 Crockford base32 chars in 4 groups = 80 bits) so apps that display or parse it keep working.
//!
//! Bits: a 56-bit counter that starts at `startup_ms << 12` (so UIDs stay unique across restarts
//! unless a previous run averaged more than 4096 messages per ms) and 24 random bits per process
//! (so two servers started in the same ms still differ). The shell draws them (the core reads no
//! randomness, so the simulator stays deterministic).

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const COUNTER_BITS: u32 = 56;

#[derive(Debug)]
pub struct UidGen {
    counter: u64,
    salt: u32,
}

impl UidGen {
    /// Counter from `now_ms`; the low 24 bits of `salt` tell processes apart.
    pub fn new(now_ms: i64, salt: u32) -> Self {
        let salt = salt & 0x00FF_FFFF;
        let counter = ((now_ms.max(0) as u64) << 12) & ((1u64 << COUNTER_BITS) - 1);
        Self { counter, salt }
    }

    pub fn next_uid(&mut self) -> String {
        self.counter = (self.counter + 1) & ((1u64 << COUNTER_BITS) - 1);
        let value: u128 = (u128::from(self.counter) << 24) | u128::from(self.salt);
        let mut out = String::with_capacity(19);
        for i in 0..16 {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let shift = 5 * (15 - i);
            out.push(ALPHABET[((value >> shift) & 31) as usize] as char);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_uniqueness() {
        let mut g = UidGen::new(1_700_000_000_000, 7);
        let a = g.next_uid();
        let b = g.next_uid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19);
        assert_eq!(a.split('-').count(), 4);
        assert!(a.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))));
    }
}
