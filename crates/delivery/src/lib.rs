//! rcall's delivery core: who is connected, the order every device sees messages in, resume
//! after a reconnect, exactly-once acceptance, the enforcement policy and call rooms — for one
//! app, as a sans-IO state machine.
//!
//! It reads no clock and does no IO: every call takes [`Now`], and everything it does to the
//! world goes through the [`Shell`] it is given (frames to connections, durable writes,
//! counters). `rcall-server` wraps one [`AppCore`] per app in a mutex over its outboxes and
//! SQLite; the simulator (`rcall-sim`) drives the very same core on a virtual clock, so its
//! property tests exercise the server's real delivery rules rather than a model of them.
//!
//! Delivery model (see `rtc_core::proto::envelope` for the client's side):
//! - Every message is accepted (its `sent_time`, UID and per-user `seq`) and pushed to each
//!   recipient's live connections inside one call on the core, which the server makes one
//!   critical section: every device sees messages in exactly the order the server accepted them,
//!   with increasing `sent_time` and `seq`, and a policy change (a block, a group quit) takes
//!   effect between two messages. The sender's own `SendResult` is queued in the same step, so
//!   no delivery the message caused can overtake it.
//! - `seq` is per user, shared by the user's devices, and derived from the microsecond clock
//!   (`max(last + 1, now_µs, floor)`), so it keeps increasing across restarts without a write
//!   per message; the floor persisted by the shell covers a clock that steps back.
//! - Every message routed to a user stays in that user's in-memory *window* until every device
//!   it was routed to acked it (bounded by count and age), so a device that reconnects can
//!   resume from its last ack. What all devices acked leaves memory at once.
//! - A message for a user with no live device is also stored (TTL, per-user cap) and flagged
//!   `offline`. A copy of a message a user sent is stored for the user's other devices when none
//!   of them is connected but one is known.
//! - A connecting device is registered *syncing*: it receives no live traffic until its replay
//!   (stored rows ∪ window above its cursor, in seq order) and `SyncDone` are queued, which
//!   happens atomically, so nothing is lost or duplicated at the seam.
//! - When a device's last connection goes (whatever the reason), every window message above its
//!   acked cursor that is not stored yet is stored, so a connection that was dead for a while
//!   loses nothing that was routed to it, even past the window's TTL. Until then the window
//!   keeps such messages past its limits (up to twice its count limit).
//! - A stored message is deleted by an ack covering it, except while a device it is for has
//!   not acked it: one it was stored or replayed for that left without acking it, or another
//!   connected device whose cursor is below it. Otherwise its TTL removes it.
//! - Exactly once: per (user, device, SDK instance) the highest accepted `client_seq` is kept
//!   (the last [`mailbox::MAX_INSTANCES_PER_DEVICE`] instances per device); a `client_seq` not
//!   above it is a resend, confirmed again but not routed. It is persisted with the message's
//!   first stored copy and, for every instance, when the device's last connection goes; after
//!   a crash an instance whose messages were all delivered live reads 0, and receivers drop
//!   the resends by `(sender_instance, client_seq)`.

pub mod cluster_model;
pub mod codes;
pub mod frame;
pub mod incoming;
pub mod mailbox;
pub mod memory;
pub mod policy;
pub mod rooms;
pub mod rooms_node;
pub mod shell;
pub mod uid;

mod app;
mod routing;

use std::time::Duration;

pub use app::{AppCore, Limits, Registered, Sequenced};
pub use codes::{AuthRefusal, RouteError};
pub use frame::{encode_body, Outgoing};
pub use incoming::{decode_ack_frame, SendRef};
pub use routing::{Accepted, Admission, Admitted, PushInfo, RouteOptions};
pub use shell::{Count, PolicyRows, PushError, SenderSeq, Shell, StoreOffline, StoredMessage, SyncData};

/// Identifies a connection, unique for the process's life (the shell allocates them).
pub type ConnId = u64;

/// The time, as the shell read it once for this input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Wall clock, microseconds since the Unix epoch: `sent_time`, seqs, expiries.
    pub wall_us: u64,
    /// A monotonic clock since any fixed origin: rates, windows, graces, latency.
    pub mono: Duration,
}

impl Now {
    /// Wall clock in milliseconds since the Unix epoch.
    pub fn wall_ms(&self) -> i64 {
        i64::try_from(self.wall_us / 1000).unwrap_or(i64::MAX)
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// The client closed the WebSocket with 1000, as the SDK does after hanging up in
    /// `pagehide` or `disconnect()`: it meant to go. (1001 is Lost: Chromium sends it for a
    /// crashed renderer too.)
    Left,
    /// Anything else: the socket failed, the peer vanished (no FIN) and missed its ping
    /// deadline, a protocol violation, a slow consumer, or a shutdown. The device may come back.
    Lost,
}

/// The authenticated identity of a connection (never taken from the client's frames).
#[derive(Debug, Clone)]
pub struct Origin {
    /// The shell's index of the connection's app (the core serves one app and ignores it).
    pub app: usize,
    pub conn_id: ConnId,
    pub user_id: std::sync::Arc<str>,
    pub device_id: std::sync::Arc<str>,
    /// `Authenticate.instance` (0 = untracked).
    pub instance: u64,
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
    fn message_times_never_go_backwards() {
        let mut c = MonotonicMs::default();
        assert_eq!(c.next(100), 100);
        assert_eq!(c.next(90), 100);
        assert_eq!(c.next(101), 101);
    }
}
