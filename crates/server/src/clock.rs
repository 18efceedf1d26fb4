//! The server clock. Every `ServerFrame.server_time` and every message's `sent_time` comes from
//! here, so clients can derive one consistent offset (CallLib orders call messages by it).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Hands out message times that never go backwards, even if the wall clock does
/// (NTP step): delivery order and `sent_time` order must agree.
#[derive(Debug, Default)]
pub struct MonotonicMs {
    last: i64,
}

impl MonotonicMs {
    /// The next time: `max(now, previous)`.
    pub fn next(&mut self, now: i64) -> i64 {
        self.last = self.last.max(now);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let mut c = MonotonicMs::default();
        assert_eq!(c.next(100), 100);
        assert_eq!(c.next(90), 100);
        assert_eq!(c.next(101), 101);
    }
}
