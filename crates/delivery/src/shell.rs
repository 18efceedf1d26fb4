//! The one seam between the delivery core and the world: [`Shell`] is where frames go and where
//! durable state lives. `rcall-server` implements it over its connections' outboxes and SQLite;
//! the simulator over in-memory queues and an in-memory store that survives its restarts.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rtc_core::proto::ErrorFrame;

use crate::frame::Outgoing;

/// Why a push to a connection failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// Too many frames wait: the client stopped reading.
    Full,
    /// The connection is closing and takes nothing more.
    Closed,
}

/// Events the shell may count (metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    ConnectionAccepted,
    MessageRouted,
    /// Messages stored for a user or device (first stored copy each).
    OfflineStored,
    /// Messages queued by replays.
    Replayed(u64),
    /// An error answered with this code.
    Error(i32),
}

/// A write the core asks for when a message must wait in the store for devices that are away.
#[derive(Debug, Clone)]
pub struct StoreOffline {
    pub user: Arc<str>,
    pub seq: u64,
    /// The sending device (a copy stored for the sender's other devices).
    pub exclude_device: Option<Arc<str>>,
    pub sent_time: i64,
    pub expires_at: i64,
    /// Encoded `Delivered`.
    pub payload: Bytes,
    /// Trim the user's stored messages to this many, oldest first.
    pub max_per_user: usize,
    /// Record the sender's `client_seq` as accepted in the same transaction.
    pub sender: Option<SenderSeq>,
}

/// Who sent a message, for the exactly-once record.
#[derive(Debug, Clone)]
pub struct SenderSeq {
    pub user: Arc<str>,
    pub device: Arc<str>,
    pub instance: u64,
    pub client_seq: u64,
}

/// One stored message, as read back for a sync.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    /// The device that sent it (for a copy stored for the sender's other devices), else `""`.
    pub exclude_device: String,
    /// Encoded `Delivered`.
    pub payload: Vec<u8>,
}

/// What a connecting device needs from the store.
#[derive(Debug, Default)]
pub struct SyncData {
    /// The device's last persisted ack.
    pub acked: u64,
    /// Stored messages above the cursor, oldest first.
    pub messages: Vec<StoredMessage>,
    /// Every device id this user has connected with.
    pub devices: Vec<String>,
    /// The page was full: more stored messages follow the last one in `messages`.
    pub more: bool,
}

/// Policy state of one app, loaded at startup.
#[derive(Debug, Default)]
pub struct PolicyRows {
    pub token_expiry: HashMap<String, i64>,
    pub blocks: HashMap<String, i64>,
    pub blacklists: Vec<(String, String)>,
    pub groups: Vec<String>,
    pub members: Vec<(String, String)>,
}

/// What the core needs done. Store writes are queued in call order and commit in that order;
/// each returns a *ticket*, and [`Shell::committed`] says up to which ticket they are durable.
pub trait Shell {
    /// A connection as the shell knows it (the server: its outbox).
    type Conn;

    /// Queues `item` to `conn`; `bounded` refuses it once the connection's queue is full.
    fn push(&mut self, conn: &Self::Conn, item: Outgoing, bounded: bool) -> Result<(), PushError>;
    /// [`Self::push`] of the reply to what `conn` itself just sent (the server's connection
    /// task takes its queue before it waits again: no wake-up needed).
    fn push_reply(&mut self, conn: &Self::Conn, item: Outgoing) -> Result<(), PushError> {
        self.push(conn, item, true)
    }
    /// Drops what `conn` has queued; `err` is its last frame, then it closes.
    fn abort(&mut self, conn: &Self::Conn, err: ErrorFrame);
    /// `conn` writes what is queued, then closes (shutdown).
    fn close(&mut self, conn: &Self::Conn);
    /// `conn` drops what is queued and closes now.
    fn kill(&mut self, conn: &Self::Conn);

    /// Tickets up to this one are durable.
    fn committed(&self) -> u64;
    /// Writes queued and not committed yet.
    fn pending(&self) -> u64;
    /// Payload bytes of every stored message (all apps).
    fn offline_bytes(&self) -> u64;

    /// Stores a message for a user with no connected device (or for the sender's other
    /// devices); returns the write's ticket.
    fn store_offline(&mut self, m: StoreOffline) -> u64;
    /// Stores `m` (unless already there) for `device`, which left without acking it, and
    /// records that the row waits for `device`'s ack.
    fn keep_for_device(&mut self, device: Arc<str>, m: StoreOffline);
    /// Stored rows above `acked` were replayed to `device`, which left without acking them:
    /// they wait for its ack too.
    fn keep_stored_for_device(&mut self, user: Arc<str>, device: Arc<str>, acked: u64);
    /// `device` acked everything up to `upto`: rows nobody else waits for go.
    fn delete_offline_upto(&mut self, user: Arc<str>, device: Arc<str>, upto: u64);
    /// The device's ack cursor (also: the user has this device).
    fn save_cursor(&mut self, user: Arc<str>, device: Arc<str>, acked: u64, now_ms: i64);
    /// The highest accepted `client_seq` of each `(instance, client_seq)` of a device.
    fn save_client_seqs(&mut self, user: Arc<str>, device: Arc<str>, seqs: Vec<(u64, u64)>, now_ms: i64);

    /// A routed call message, or a grace that ran out, took a member out of a call or ended
    /// one (single node, [`crate::rooms::Rooms::departures`]): keeps `event` (that message, or
    /// [`crate::rooms::GraceEnd::event`], replayed over the last saved rooms at the next start)
    /// durably, as of the rooms' change count `version`
    /// and wall time `t_ms`; returns the write's ticket, which the message's confirmation
    /// waits for (0, the default: the rooms are not kept).
    fn log_departure(&mut self, _version: u64, _t_ms: i64, _event: crate::rooms::RoomsEvent) -> u64 {
        0
    }

    /// Counts an event (metrics); nothing by default.
    fn count(&mut self, _what: Count) {}
}
