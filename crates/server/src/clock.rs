//! The server's clocks, read in this shell only: the delivery core takes their readings as
//! input ([`delivery::Now`]). Every `ServerFrame.server_time` and every message's `sent_time`
//! comes from the wall clock here, so clients can derive one consistent offset (CallLib orders
//! call messages by it).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A monotonic clock starting at its first reading in this process.
pub fn mono() -> Duration {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

/// [`mono`] in milliseconds (liveness).
pub fn mono_ms() -> u64 {
    mono().as_millis() as u64
}

/// Both clocks, read once, as the delivery core takes them.
pub fn now() -> delivery::Now {
    delivery::Now {
        wall_us: now_us(),
        mono: mono(),
    }
}
