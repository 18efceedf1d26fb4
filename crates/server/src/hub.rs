//! The routing table and delivery state, per app: which connections each user has, the
//! enforcement policy (groups, blacklists, blocks, token expiries), and every user's recent
//! message log.
//!
//! One mutex per app guards all of that *and* the acceptance of a message (its `sent_time`,
//! UID and per-user `seq`), and delivery is a non-blocking push into each connection's ordered
//! [`Outbox`] while that lock is held. That single critical section is what makes every device
//! see messages in exactly the order the server accepted them, with increasing `sent_time` and
//! `seq`, and makes policy changes (a block, a group quit) take effect between two messages.
//!
//! Delivery model (see `rtc_core::proto::envelope` for the client's side):
//! - `seq` is per user, shared by the user's devices, and derived from the microsecond clock
//!   (`max(last + 1, now_µs, floor)`), so it keeps increasing across restarts without a write
//!   per message; the floor persisted in SQLite covers a clock that steps back.
//! - Every message routed to a user is kept in that user's in-memory *window* (bounded by count
//!   and age) so a device that reconnects can resume from its last ack.
//! - A message for a user with no live device is also stored in SQLite (TTL, per-user cap) and
//!   flagged `offline`. A copy of a message a user sent is stored for the user's other devices
//!   when none of them is connected but one is known.
//! - A connecting device is registered *syncing*: it receives no live traffic until its replay
//!   (stored rows ∪ window above its cursor, in seq order) and `SyncDone` are queued, which
//!   happens atomically under the lock, so nothing is lost or duplicated at the seam.
//! - When a device's last connection goes (whatever the reason), every window message above its
//!   acked cursor that is not stored yet is stored, so a connection that was dead for a while
//!   loses nothing that was routed to it, even past the window's TTL. Until then the window
//!   keeps such messages past its limits (up to twice its count limit).
//! - A stored message is deleted by an ack covering it, except while a device it is for has
//!   not acked it: one it was stored or replayed for that left without acking it (its rows in
//!   `offline_pending`), or another connected device whose cursor is below it. Otherwise its
//!   TTL removes it.
//! - Exactly once: per (user, device, SDK instance) the highest accepted `client_seq` is kept
//!   (the last `MAX_INSTANCES_PER_DEVICE` instances per device); a `client_seq` not above it
//!   is a resend, confirmed again but not routed. It is persisted in the transaction of the
//!   message's first stored copy and, for every instance, when the device's last connection
//!   goes; after a crash an instance whose messages were all delivered live reads 0, and
//!   receivers drop the resends by `(sender_instance, client_seq)`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message as _;
use rtc_core::proto::conversation_type;
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{
    error_code, AuthResult, Delivered, ErrorFrame, JoinedDevice, Kicked, SendMessage, SyncDone,
};

use crate::clock::{now_ms, now_us, MonotonicMs};
use crate::metrics::Metrics;
use crate::rooms::{self, Rooms};
use crate::store::{PolicyRows, SenderSeq, Store, SyncData};
use crate::uid::UidGen;

/// IMLib `BIZ_ERROR_INVALID_PARAMETER`.
pub const CODE_INVALID_PARAMETER: i32 = 33003;
/// IMLib `REJECTED_BY_BLACKLIST`.
pub const CODE_REJECTED_BY_BLACKLIST: i32 = 405;
/// IMLib `NOT_IN_GROUP`.
pub const CODE_NOT_IN_GROUP: i32 = 22406;
/// RongCloud "send frequency too fast".
pub const CODE_SEND_TOO_FAST: i32 = 20604;
/// IMLib `RC_CONN_SERVER_UNAVAILABLE` (used when an app's connection cap is reached).
pub const CODE_SERVER_UNAVAILABLE: i32 = 31003;
/// IMLib `RC_CONN_USER_BLOCKED`.
pub const CODE_USER_BLOCKED: i32 = 31009;
/// IMLib `RC_CONN_TOKEN_EXPIRED`.
pub const CODE_TOKEN_EXPIRED: i32 = 31020;
/// rcall: a call message for a call the sender is not a participant of (IMLib has no such
/// code; 404-like so it cannot be mistaken for one of its codes).
pub const CODE_NOT_IN_CALL: i32 = 40403;
/// rcall: the message needs a stored copy for an offline recipient and the sender used up its
/// quota of messages stored for others in the current window (nothing delivered).
pub const CODE_OFFLINE_QUOTA: i32 = 40507;
/// rcall: the byte quota of all stored offline messages is used up (nothing delivered).
pub const CODE_OFFLINE_FULL: i32 = 40508;
/// rcall: the database write queue is full; a message that needs a stored copy is refused
/// rather than queued without bound (nothing delivered; retry shortly).
pub const CODE_STORE_BUSY: i32 = 40509;

/// Live frames waiting to be written to one connection. A client that stops reading is
/// disconnected (it can resume) rather than growing the server's memory.
pub const OUTBOX_CAPACITY: usize = 1024;
/// Devices remembered per user in memory (the rest live in SQLite).
const MAX_DEVICES_IN_MEMORY: usize = 32;
/// SDK instances (page loads) per device whose accepted `client_seq` is kept in memory: a
/// device rarely has more than a few tabs or reloads in flight; older ones are in SQLite if
/// they sent anything that was stored, or when their device disconnected.
const MAX_INSTANCES_PER_DEVICE: usize = 4;

/// Milliseconds on a monotonic clock starting at the first call (for liveness).
pub fn mono_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// [`mono_ms`] as of the last liveness sweep: connections stamp every frame with it, without
/// reading the clock per frame (it is at most one sweep tick behind).
static LIVENESS_NOW: AtomicU64 = AtomicU64::new(0);

/// Advances the liveness clock (by the sweep) and returns it.
pub fn tick_liveness_clock() -> u64 {
    let now = mono_ms();
    LIVENESS_NOW.fetch_max(now, Ordering::Relaxed);
    now
}

pub type AppId = usize;
pub type ConnId = u64;

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

/// One item of a connection's outbox.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded `server_frame::Body` (one oneof field); the writer prepends `server_time`.
    /// `accepted` is when the server accepted the message, for the latency histogram.
    Frame {
        body: Bytes,
        accepted: Option<Instant>,
    },
    /// Written, then the connection is closed.
    Fatal(ErrorFrame),
    /// A frame that confirms something (a `SendResult`, `accepted_upto`): written only once
    /// the store has committed `ticket`, holding everything queued after it.
    Durable { body: Bytes, ticket: u64 },
    /// A WebSocket Ping (the connection has been silent).
    Ping,
}

impl Outgoing {
    /// `body` as a frame, or held until `ticket` is committed if it is not yet.
    pub fn confirming(body: Bytes, ticket: u64, store: &Store) -> Self {
        if ticket > store.committed() {
            Outgoing::Durable { body, ticket }
        } else {
            Outgoing::Frame {
                body,
                accepted: None,
            }
        }
    }
}

/// Encodes a frame body once so it can be queued to many connections.
pub fn encode_body(body: &Body) -> Bytes {
    let mut buf = BytesMut::with_capacity(body.encoded_len());
    body.encode(&mut buf);
    buf.freeze()
}

/// `Body::Deliver(d)` encoded, and the offset of the `Delivered` bytes inside it.
fn encode_delivered(d: &Delivered) -> (Bytes, usize) {
    let len = d.encoded_len();
    let prefix = 1 + prost::encoding::encoded_len_varint(len as u64);
    let mut buf = BytesMut::with_capacity(prefix + len);
    prost::encoding::message::encode(DELIVER_TAG, d, &mut buf);
    (buf.freeze(), prefix)
}

/// Oneof tag of `ServerFrame.body` = `Deliver`.
const DELIVER_TAG: u32 = 3;

/// A `Body::Deliver` from stored `Delivered` bytes.
fn deliver_body_from_payload(payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 6);
    prost::encoding::encode_key(
        DELIVER_TAG,
        prost::encoding::WireType::LengthDelimited,
        &mut buf,
    );
    prost::encoding::encode_varint(payload.len() as u64, &mut buf);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// Why a push into an outbox failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

#[derive(Default)]
struct OutQ {
    items: VecDeque<Outgoing>,
    closed: bool,
    aborted: bool,
    /// The connection task, while it waits for items (or for a stuck write, for an abort).
    /// Taken by the first push or close that follows, so a burst wakes it once.
    waker: Option<Waker>,
}

/// A connection's ordered queue of frames to write. Empty when idle (no allocation), so idle
/// connections stay small.
#[derive(Default)]
pub struct Outbox {
    q: Mutex<OutQ>,
    /// When the client last sent anything, frames or pongs ([`mono_ms`]).
    last_heard: AtomicU64,
    /// When the server last pinged it ([`mono_ms`]).
    last_ping: AtomicU64,
}

impl Outbox {
    pub fn new() -> Self {
        let o = Self::default();
        o.last_heard.store(mono_ms(), Ordering::Relaxed);
        o
    }

    /// The client sent something: it is alive.
    pub fn heard(&self) {
        let now = LIVENESS_NOW.load(Ordering::Relaxed);
        if self.last_heard.load(Ordering::Relaxed) < now {
            self.last_heard.store(now, Ordering::Relaxed);
        }
    }

    /// Liveness check at `now` ([`mono_ms`]): queues a Ping once per `ping_ms` of silence;
    /// kills the connection after `dead_ms` of silence. True when it was killed just now.
    pub fn check_alive(&self, now: u64, ping_ms: u64, dead_ms: u64) -> bool {
        let silent = now.saturating_sub(self.last_heard.load(Ordering::Relaxed));
        if silent >= dead_ms {
            let mut q = self.lock();
            if q.aborted {
                return false;
            }
            q.items.clear();
            q.closed = true;
            q.aborted = true;
            Self::wake(q);
            return true;
        }
        if silent >= ping_ms
            && now.saturating_sub(self.last_ping.load(Ordering::Relaxed)) >= ping_ms
        {
            self.last_ping.store(now, Ordering::Relaxed);
            let _ = self.push(Outgoing::Ping, false);
        }
        false
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Killed or aborted: nothing more is written.
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutQ> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`; `bounded` refuses it once [`OUTBOX_CAPACITY`] items wait.
    pub fn push(&self, item: Outgoing, bounded: bool) -> Result<(), PushError> {
        self.push_inner(item, bounded, true)
    }

    /// [`Self::push`] from the connection's own task, which takes its queue before it waits
    /// again: no wake-up needed.
    pub fn push_own(&self, item: Outgoing, bounded: bool) -> Result<(), PushError> {
        self.push_inner(item, bounded, false)
    }

    fn push_inner(&self, item: Outgoing, bounded: bool, wake: bool) -> Result<(), PushError> {
        let mut q = self.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if bounded && q.items.len() >= OUTBOX_CAPACITY {
            return Err(PushError::Full);
        }
        q.items.push_back(item);
        let waker = if wake { q.waker.take() } else { None };
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Wakes the connection task (after a state change under the lock).
    fn wake(mut q: std::sync::MutexGuard<'_, OutQ>) {
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Drops everything queued and makes `err` the last frame.
    pub fn abort_with(&self, err: ErrorFrame) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        q.items.clear();
        q.items.push_back(Outgoing::Fatal(err));
        q.closed = true;
        q.aborted = true;
        Self::wake(q);
    }

    /// Drops what is queued and closes: the connection closes without writing more.
    pub fn kill(&self) {
        let mut q = self.lock();
        q.items.clear();
        q.closed = true;
        q.aborted = true;
        Self::wake(q);
    }

    /// No more items: the writer drains what is queued, then closes the connection.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        Self::wake(q);
    }

    /// Moves every queued item into `out`; true once closed (nothing more will come).
    pub fn take(&self, out: &mut Vec<Outgoing>) -> bool {
        let mut q = self.lock();
        if !q.items.is_empty() {
            out.extend(q.items.drain(..));
            // An idle connection keeps no buffer.
            q.items = VecDeque::new();
        }
        q.closed
    }

    /// Ready when items are queued or the outbox is closed; otherwise wakes the task of `cx`
    /// on the next push, close or abort.
    pub fn poll_pending(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.lock();
        if !q.items.is_empty() || q.closed {
            return Poll::Ready(());
        }
        Self::register(&mut q, cx);
        Poll::Pending
    }

    /// Ready once the outbox was aborted; otherwise wakes the task of `cx` on the next push,
    /// close or abort (a spurious wake-up for anything but the abort).
    pub fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.lock();
        if q.aborted {
            return Poll::Ready(());
        }
        Self::register(&mut q, cx);
        Poll::Pending
    }

    fn register(q: &mut OutQ, cx: &mut Context<'_>) {
        match &mut q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }

    /// Resolves when items are queued or the outbox is closed (tests; the connection task
    /// polls [`Self::poll_pending`]).
    #[cfg(test)]
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| self.poll_pending(cx)).await
    }

    /// Resolves once the outbox was aborted (tests; the connection task polls
    /// [`Self::poll_aborted`]).
    #[cfg(test)]
    pub async fn aborted(&self) {
        std::future::poll_fn(|cx| self.poll_aborted(cx)).await
    }
}

/// Why a `SendMessage` was refused; nothing was delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    #[error("the recipient has blacklisted the sender")]
    RejectedByBlacklist,
    #[error("the sender is not a member of the group")]
    NotInGroup,
    #[error("the sender is not a participant of the call")]
    NotInCall,
    #[error("the user sends too fast (over all its connections)")]
    TooFast,
    #[error("the sender's quota of messages stored for offline users is used up")]
    OfflineQuota,
    #[error("offline storage is full")]
    OfflineFull,
    #[error("the database write queue is full")]
    StoreBusy,
}

impl RouteError {
    /// IMLib code for `SendResult.code`.
    pub fn imlib_code(&self) -> i32 {
        match self {
            RouteError::InvalidParameter(_) => CODE_INVALID_PARAMETER,
            RouteError::RejectedByBlacklist => CODE_REJECTED_BY_BLACKLIST,
            RouteError::NotInGroup => CODE_NOT_IN_GROUP,
            RouteError::NotInCall => CODE_NOT_IN_CALL,
            RouteError::TooFast => CODE_SEND_TOO_FAST,
            RouteError::OfflineQuota => CODE_OFFLINE_QUOTA,
            RouteError::OfflineFull => CODE_OFFLINE_FULL,
            RouteError::StoreBusy => CODE_STORE_BUSY,
        }
    }
}

/// Why an authenticated token still may not connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    #[error("user is blocked")]
    Blocked,
    #[error("token was expired by the operator")]
    TokenExpired,
    #[error("connection limit of this app reached")]
    TooManyConnections,
    #[error("connection limit of this user reached")]
    TooManyUserConnections,
    #[error("connection limit of this device reached")]
    TooManyDeviceConnections,
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl AuthRefusal {
    pub fn imlib_code(&self) -> i32 {
        match self {
            AuthRefusal::Blocked => CODE_USER_BLOCKED,
            AuthRefusal::TokenExpired => CODE_TOKEN_EXPIRED,
            AuthRefusal::TooManyConnections
            | AuthRefusal::TooManyUserConnections
            | AuthRefusal::TooManyDeviceConnections
            | AuthRefusal::ShuttingDown => CODE_SERVER_UNAVAILABLE,
        }
    }
}

/// The authenticated identity of a connection (never taken from the client's frames).
#[derive(Debug, Clone)]
pub struct Origin {
    pub app: AppId,
    pub conn_id: ConnId,
    pub user_id: Arc<str>,
    pub device_id: Arc<str>,
    /// `Authenticate.instance` (0 = untracked).
    pub instance: u64,
}

/// What the server assigned to an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sent_time: i64,
    pub message_uid: String,
    /// Number of connections the message was pushed to.
    pub delivered_to: usize,
    /// Store ticket that must commit before the message is confirmed (0 = nothing stored).
    pub ticket: u64,
    /// A resend of a `client_seq` already accepted: nothing was routed, `sent_time` is the
    /// server's clock now and `message_uid` is empty (the original ones are not kept).
    pub duplicate: bool,
}

/// A registered (still syncing) connection.
#[derive(Debug, Clone)]
pub struct Registered {
    pub conn_id: ConnId,
    pub user_id: Arc<str>,
    pub device_id: Arc<str>,
    /// Replay everything above this.
    pub cursor: u64,
    /// The server had never seen this device (in memory); a new device gets only stored
    /// messages, not what the user's other devices received live before it existed.
    pub new_device: bool,
}

/// Delivery limits, from the config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub offline_ttl_ms: i64,
    pub offline_max_per_user: usize,
    pub window_ttl: Duration,
    pub window_max: usize,
    pub max_connections_per_app: usize,
    /// Graces of a call member whose connections closed cleanly / were lost (see [`rooms`]).
    pub left_grace: Duration,
    pub lost_grace: Duration,
    /// Authenticated connections per user (all devices) and per device.
    pub max_connections_per_user: usize,
    pub max_connections_per_device: usize,
    /// Per-user send rate (messages/s) and burst, shared by the user's connections.
    pub user_rate_per_sec: u32,
    pub user_rate_burst: u32,
    /// Messages one sender may get stored for other users per window.
    pub offline_quota_per_sender: u32,
    pub offline_quota_window: Duration,
    /// Payload bytes of all stored messages.
    pub offline_max_bytes: u64,
    /// Database writes waiting at most.
    pub store_queue_max: usize,
}

impl Limits {
    /// Every limit at the config's default (tests).
    pub fn from_config(c: &crate::Config) -> Self {
        Self {
            offline_ttl_ms: i64::try_from(c.offline_ttl.as_millis()).unwrap_or(i64::MAX),
            offline_max_per_user: c.offline_max_per_user,
            window_ttl: c.resume_window,
            window_max: c.resume_window_messages,
            max_connections_per_app: c.max_connections_per_app,
            left_grace: c.left_grace,
            lost_grace: c.lost_grace,
            max_connections_per_user: c.max_connections_per_user,
            max_connections_per_device: c.max_connections_per_device,
            user_rate_per_sec: c.user_rate_per_sec,
            user_rate_burst: c.user_rate_burst,
            offline_quota_per_sender: c.offline_quota_per_sender,
            offline_quota_window: c.offline_quota_window,
            offline_max_bytes: c.offline_max_bytes,
            store_queue_max: c.store_queue_max,
        }
    }
}

struct ConnSlot {
    id: ConnId,
    /// When the token it authenticated with was issued (`/user/token/expire.json`).
    token_iat: i64,
    device: Arc<str>,
    outbox: Arc<Outbox>,
    /// Gets live traffic (false while syncing and once aborted).
    live: bool,
    /// Its replay has been queued.
    synced: bool,
}

struct DeviceCursor {
    id: Arc<str>,
    acked: u64,
    /// A device new to the server gets nothing routed before this seq (see `new_device`).
    since: u64,
    /// Highest accepted `client_seq` per SDK instance, most recently used last.
    instances: Vec<InstanceSeq>,
}

/// What the server accepted from one SDK instance of a device.
#[derive(Debug, Clone, Copy)]
struct InstanceSeq {
    instance: u64,
    upto: u64,
    /// Store ticket covering the stored messages up to `upto`.
    ticket: u64,
}

impl DeviceCursor {
    fn new(id: Arc<str>) -> Self {
        Self {
            id,
            acked: 0,
            since: 0,
            instances: Vec::new(),
        }
    }

    fn instance(&self, instance: u64) -> Option<&InstanceSeq> {
        self.instances.iter().find(|i| i.instance == instance)
    }

    /// The record of `instance` (created at 0), now the most recently used.
    fn instance_mut(&mut self, instance: u64) -> &mut InstanceSeq {
        let last = self.instances.len().wrapping_sub(1);
        let rec = match self.instances.iter().position(|i| i.instance == instance) {
            Some(i) if i == last => return &mut self.instances[i],
            Some(i) => self.instances.remove(i),
            None => {
                if self.instances.len() >= MAX_INSTANCES_PER_DEVICE {
                    self.instances.remove(0);
                }
                if self.instances.capacity() == 0 {
                    // Most devices run one instance at a time.
                    self.instances.reserve_exact(1);
                }
                InstanceSeq {
                    instance,
                    upto: 0,
                    ticket: 0,
                }
            }
        };
        self.instances.push(rec);
        self.instances.last_mut().expect("just pushed")
    }
}

struct Entry {
    seq: u64,
    /// Also stored in SQLite (no live device when accepted).
    offline: bool,
    /// Stored later, for a device that left without acking it.
    stored: bool,
    /// The sending device, for a copy in the sender's own log.
    exclude_device: Option<Arc<str>>,
    accepted: Instant,
    body: Bytes,
}

struct UserState {
    id: Arc<str>,
    last_seq: u64,
    conns: Vec<ConnSlot>,
    window: VecDeque<Entry>,
    devices: Vec<DeviceCursor>,
    /// Highest seq stored offline for this user (0 = none known).
    offline_upto: u64,
    /// Highest seq up to which a delete of acked stored messages was issued.
    deleted_upto: u64,
    /// The user's send bucket, shared by its connections: (tokens, last refill).
    send_tokens: f64,
    send_refill: Instant,
}

impl UserState {
    fn new(id: Arc<str>) -> Self {
        Self {
            id,
            last_seq: 0,
            conns: Vec::new(),
            window: VecDeque::new(),
            devices: Vec::new(),
            offline_upto: 0,
            deleted_upto: 0,
            send_tokens: f64::MAX,
            send_refill: Instant::now(),
        }
    }

    /// Takes one send from the user's bucket (`rate`/s, `burst`); false when it is empty.
    fn take_send(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let dt = now
            .saturating_duration_since(self.send_refill)
            .as_secs_f64();
        self.send_refill = now;
        self.send_tokens = (self.send_tokens + dt * f64::from(rate)).min(f64::from(burst));
        if self.send_tokens >= 1.0 {
            self.send_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_seq(&mut self, floor: u64) -> u64 {
        self.last_seq = self.last_seq.saturating_add(1).max(now_us()).max(floor);
        self.last_seq
    }

    fn device_mut(&mut self, device: &str) -> &mut DeviceCursor {
        if let Some(i) = self.devices.iter().position(|d| &*d.id == device) {
            return &mut self.devices[i];
        }
        if self.devices.len() >= MAX_DEVICES_IN_MEMORY {
            // Forget a disconnected device (its cursor is in SQLite).
            let conns = &self.conns;
            if let Some(i) = self
                .devices
                .iter()
                .position(|d| !conns.iter().any(|c| c.device == d.id))
            {
                self.devices.swap_remove(i);
            }
        }
        if self.devices.capacity() == 0 {
            self.devices.reserve_exact(1);
        }
        self.devices.push(DeviceCursor::new(Arc::from(device)));
        self.devices.last_mut().expect("just pushed")
    }

    /// No other device of the user is live, but the user has other known devices: the copy of
    /// a message sent from `device` must be stored for them, like a message for an offline user.
    fn needs_copy_stored_for_other_devices(&self, device: &str) -> bool {
        !self.conns.iter().any(|c| c.live && &*c.device != device)
            && self.devices.iter().any(|d| &*d.id != device)
    }

    /// Whether the copy of a message sent from connection `conn` (device `device`) has any
    /// use: another live connection gets it now, or another device of the user could get it
    /// later (stored or replayed from the window). The in-memory device list holds every device
    /// the user ever connected with (loaded from SQLite at connect, added at register) unless it
    /// is at its cap, where devices may live only in SQLite. A device id never seen before gets
    /// only stored messages, and a copy is stored only for another known device, so with no
    /// other device known the copy can only reach the sending device, which never gets it.
    fn copy_needed(&self, conn: ConnId, device: &str) -> bool {
        self.devices.len() >= MAX_DEVICES_IN_MEMORY
            || self.devices.iter().any(|d| &*d.id != device)
            || self.conns.iter().any(|c| c.live && c.id != conn)
    }

    fn prune_window(&mut self, limits: &Limits, now: Instant) {
        // A syncing connection will replay from the window what its database read could not
        // see yet (stored after the read was queued): keep everything until it is live.
        if self.conns.iter().any(|c| !c.synced) {
            return;
        }
        while let Some(front) = self.window.front() {
            if self.window.len() > limits.window_max
                || now.duration_since(front.accepted) > limits.window_ttl
            {
                // A connected device that has not acked it may be on a dead connection: keep
                // it (up to twice the limit) until `unregister` stores it for that device.
                if self.window.len() <= limits.window_max.saturating_mul(2)
                    && unacked_by_a_connected_device(&self.conns, &self.devices, front)
                {
                    break;
                }
                self.window.pop_front();
            } else {
                break;
            }
        }
        if self.window.is_empty() && self.window.capacity() > 0 {
            self.window = VecDeque::new();
        }
    }

    fn idle(&self) -> bool {
        self.conns.is_empty() && self.window.is_empty() && self.last_seq <= now_us()
    }
}

/// Whether a device with a connection has not acked `e` yet (and `e` is not stored).
fn unacked_by_a_connected_device(conns: &[ConnSlot], devices: &[DeviceCursor], e: &Entry) -> bool {
    !e.offline
        && !e.stored
        && conns.iter().any(|c| {
            e.exclude_device.as_ref() != Some(&c.device)
                && e.seq
                    > devices
                        .iter()
                        .find(|d| d.id == c.device)
                        .map_or(0, |d| d.acked.max(d.since))
        })
}

/// The `Delivered` bytes inside an encoded `Body::Deliver`.
fn delivered_payload(body: &Bytes) -> Bytes {
    let mut rest = &body[1..];
    let before = rest.len();
    let len = prost::encoding::decode_varint(&mut rest).unwrap_or(0) as usize;
    let at = 1 + before - rest.len();
    body.slice(at..(at + len).min(body.len()))
}

/// What the hub enforces for one app.
#[derive(Default)]
struct Policy {
    /// user → tokens issued before this (ms) are expired.
    token_expiry: HashMap<String, i64>,
    /// user → blocked until (ms).
    blocks: HashMap<String, i64>,
    /// user → the users they blacklisted.
    blacklists: HashMap<String, HashSet<String>>,
    /// group → members.
    groups: HashMap<String, HashSet<String>>,
}

impl Policy {
    fn blacklisted(&self, owner: &str, other: &str) -> bool {
        self.blacklists
            .get(owner)
            .is_some_and(|s| s.contains(other))
    }

    fn blocked(&self, user: &str, now_ms: i64) -> bool {
        self.blocks.get(user).is_some_and(|until| *until > now_ms)
    }
}

struct Table {
    users: HashMap<Arc<str>, UserState>,
    policy: Policy,
    clock: MonotonicMs,
    uids: UidGen,
    max_issued: u64,
    /// Which call each device is in (`getJoinedUserInfo`).
    rooms: Rooms,
    /// Per sender: (window start, messages stored for other users in it).
    offline_quota: HashMap<Arc<str>, (Instant, u32)>,
}

/// One app's share of the hub.
pub struct AppShard {
    pub key: Arc<str>,
    secret: String,
    conns: AtomicUsize,
    table: Mutex<Table>,
}

impl AppShard {
    pub fn secret(&self) -> &str {
        &self.secret
    }
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }
}

pub struct Hub {
    apps: Vec<AppShard>,
    by_key: HashMap<String, AppId>,
    limits: Limits,
    store: Store,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    seq_floor: AtomicU64,
    /// Shutting down: no new connections.
    closing: std::sync::atomic::AtomicBool,
    /// Offline pushes to the apps' webhooks (none configured: unset).
    pusher: std::sync::OnceLock<Arc<crate::push::Pusher>>,
}

impl Hub {
    /// A hub for `apps` (`(key, secret)`, the primary app first).
    pub fn new(
        apps: Vec<(String, String)>,
        limits: Limits,
        store: Store,
        metrics: Arc<Metrics>,
        seq_floor: u64,
    ) -> Self {
        let now = now_ms();
        let by_key = apps
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let apps = apps
            .into_iter()
            .map(|(key, secret)| AppShard {
                key: Arc::from(key.as_str()),
                secret,
                conns: AtomicUsize::new(0),
                table: Mutex::new(Table {
                    users: HashMap::new(),
                    policy: Policy::default(),
                    clock: MonotonicMs::default(),
                    uids: UidGen::new(now),
                    max_issued: 0,
                    rooms: Rooms::new(limits.left_grace, limits.lost_grace),
                    offline_quota: HashMap::new(),
                }),
            })
            .collect();
        Self {
            apps,
            by_key,
            limits,
            store,
            metrics,
            next_conn: AtomicU64::new(0),
            seq_floor: AtomicU64::new(seq_floor.saturating_add(1)),
            closing: std::sync::atomic::AtomicBool::new(false),
            pusher: std::sync::OnceLock::new(),
        }
    }

    /// Hands offline pushes of accepted messages to `pusher` (once, at startup).
    pub fn set_pusher(&self, pusher: Arc<crate::push::Pusher>) {
        let _ = self.pusher.set(pusher);
    }

    pub fn app_by_key(&self, key: &str) -> Option<AppId> {
        self.by_key.get(key).copied()
    }

    pub fn app(&self, app: AppId) -> &AppShard {
        &self.apps[app]
    }

    pub fn apps(&self) -> &[AppShard] {
        &self.apps
    }

    fn table(&self, app: AppId) -> std::sync::MutexGuard<'_, Table> {
        // Nothing under this lock can leave the table inconsistent midway, so a poisoned lock
        // (a panic elsewhere) is still safe to use; refusing would take the whole server down.
        self.apps[app]
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the persisted policy of `app` (at startup).
    pub fn load_policy(&self, app: AppId, rows: PolicyRows) {
        let mut t = self.table(app);
        let p = &mut t.policy;
        p.token_expiry = rows.token_expiry;
        p.blocks = rows.blocks;
        for (owner, other) in rows.blacklists {
            p.blacklists.entry(owner).or_default().insert(other);
        }
        for g in rows.groups {
            p.groups.entry(g).or_default();
        }
        for (g, u) in rows.members {
            p.groups.entry(g).or_default().insert(u);
        }
    }

    // ---- connections -------------------------------------------------------------------

    /// Adds an authenticated connection in the *syncing* state and queues `auth_ok` as its
    /// first frame, or refuses it. `token_iat` is when its token was issued. `stored` is the
    /// persisted `(accepted client_seq, read ticket)` of `(device, instance)`: `auth_ok` gets
    /// the larger of it and what memory knows as `accepted_upto`, held until durable.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        app: AppId,
        user_id: &str,
        device_id: &str,
        token_iat: i64,
        resume_from: u64,
        outbox: Arc<Outbox>,
        mut auth_ok: AuthResult,
        instance: u64,
        stored: (u64, u64),
    ) -> Result<Registered, AuthRefusal> {
        let shard = &self.apps[app];
        let mut t = self.table(app);
        if self.closing.load(Ordering::SeqCst) {
            return Err(AuthRefusal::ShuttingDown);
        }
        let now = now_ms();
        if t.policy.blocked(user_id, now) {
            return Err(AuthRefusal::Blocked);
        }
        if t.policy
            .token_expiry
            .get(user_id)
            .is_some_and(|before| token_iat < *before)
        {
            return Err(AuthRefusal::TokenExpired);
        }
        if let Some(st) = t.users.get(user_id) {
            if st.conns.len() >= self.limits.max_connections_per_user {
                return Err(AuthRefusal::TooManyUserConnections);
            }
            if st.conns.iter().filter(|c| &*c.device == device_id).count()
                >= self.limits.max_connections_per_device
            {
                return Err(AuthRefusal::TooManyDeviceConnections);
            }
        }
        if shard.conns.fetch_add(1, Ordering::Relaxed) >= self.limits.max_connections_per_app {
            shard.conns.fetch_sub(1, Ordering::Relaxed);
            return Err(AuthRefusal::TooManyConnections);
        }
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let floor = self.seq_floor.load(Ordering::Relaxed);
        if !t.users.contains_key(user_id) {
            let id: Arc<str> = Arc::from(user_id);
            t.users.insert(id.clone(), UserState::new(id));
        }
        t.rooms.connected(user_id, device_id);
        let st = t.users.get_mut(user_id).expect("just inserted");
        // A client cannot claim to have seen more than the server ever issued.
        let ceiling = st.last_seq.max(floor).max(now_us());
        let new_device = !st.devices.iter().any(|d| &*d.id == device_id);
        let last_seq = st.last_seq;
        let dev = st.device_mut(device_id);
        if new_device {
            dev.since = last_seq;
        }
        let cursor = resume_from.min(ceiling).max(dev.acked);
        let device = dev.id.clone();
        let mut ticket = 0;
        if instance != 0 {
            let (upto, t) = dev
                .instance(instance)
                .map_or((0, 0), |r| (r.upto, r.ticket));
            // A record only when there is something to remember (idle connections stay small).
            if stored.0 > upto {
                let rec = dev.instance_mut(instance);
                rec.upto = stored.0;
                rec.ticket = rec.ticket.max(stored.1);
            }
            auth_ok.accepted_upto = upto.max(stored.0);
            ticket = t.max(stored.1);
        }
        let auth_ok = encode_body(&Body::AuthResult(auth_ok));
        let _ = outbox.push(Outgoing::confirming(auth_ok, ticket, &self.store), false);
        if st.conns.capacity() == 0 {
            st.conns.reserve_exact(1);
        }
        st.conns.push(ConnSlot {
            id: conn_id,
            token_iat,
            device: device.clone(),
            outbox,
            live: false,
            synced: false,
        });
        Metrics::inc(&self.metrics.connections_accepted);
        Ok(Registered {
            conn_id,
            user_id: st.id.clone(),
            device_id: device,
            cursor,
            new_device,
        })
    }

    /// Queues the replay (stored ∪ retained messages above the cursor, in seq order) and
    /// `SyncDone`, and makes the connection live. Returns how many messages were replayed.
    ///
    /// With `page_end` (a page of a longer replay, whose stored messages end at that seq) only
    /// the messages up to `page_end` are queued, and the connection stays syncing: the caller
    /// writes them, then calls again for the next page with the cursor at `page_end`.
    pub fn finish_sync(
        &self,
        app: AppId,
        reg: &Registered,
        data: SyncData,
        page_end: Option<u64>,
    ) -> usize {
        let mut t = self.table(app);
        let Some(st) = t.users.get_mut(&*reg.user_id) else {
            return 0;
        };
        if !st.conns.iter().any(|c| c.id == reg.conn_id) {
            return 0;
        }
        for d in &data.devices {
            if st.devices.len() < MAX_DEVICES_IN_MEMORY && !st.devices.iter().any(|x| *x.id == **d)
            {
                st.devices.push(DeviceCursor::new(Arc::from(d.as_str())));
            }
        }
        let user = st.id.clone();
        let dev = st.device_mut(&reg.device_id);
        dev.acked = dev.acked.max(data.acked);
        let cursor = reg.cursor.max(dev.acked);
        // Remember the device (so the user's other devices store copies for it while it is
        // away) and keep its cursor fresh.
        self.store.save_cursor(
            self.apps[app].key.clone(),
            user,
            dev.id.clone(),
            dev.acked,
            now_ms(),
        );
        let device: &str = &reg.device_id;

        let mut items: Vec<(u64, Bytes)> = Vec::new();
        for m in &data.messages {
            st.offline_upto = st.offline_upto.max(m.seq);
            if m.seq > cursor && m.exclude_device != device {
                items.push((m.seq, deliver_body_from_payload(&m.payload)));
            }
        }
        let now = Instant::now();
        st.prune_window(&self.limits, now);
        let new_device = reg.new_device && !data.devices.iter().any(|d| d == device);
        if !new_device {
            // Known in SQLite: it gets the window too.
            if let Some(d) = st.devices.iter_mut().find(|d| &*d.id == device) {
                d.since = 0;
            }
        }
        for e in &st.window {
            if e.seq > cursor
                && e.exclude_device.as_deref() != Some(device)
                && (e.offline || !new_device)
            {
                items.push((e.seq, e.body.clone()));
            }
        }
        if let Some(end) = page_end {
            items.retain(|(seq, _)| *seq <= end);
        }
        items.sort_by_key(|(seq, _)| *seq);
        items.dedup_by_key(|(seq, _)| *seq);
        let n = items.len();
        let slot = st
            .conns
            .iter_mut()
            .find(|c| c.id == reg.conn_id)
            .expect("checked above");
        for (_, body) in items {
            let _ = slot.outbox.push(
                Outgoing::Frame {
                    body,
                    accepted: None,
                },
                false,
            );
        }
        if page_end.is_some() {
            self.metrics
                .offline_replayed
                .fetch_add(n as u64, Ordering::Relaxed);
            return n;
        }
        let _ = slot.outbox.push(
            Outgoing::Frame {
                body: encode_body(&Body::SyncDone(SyncDone {})),
                accepted: None,
            },
            false,
        );
        slot.live = true;
        slot.synced = true;
        self.metrics
            .offline_replayed
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Removes a closed connection and persists its device's cursor. `departure` says how the
    /// connection ended, which decides how soon a device that is gone leaves its call.
    pub fn unregister(&self, app: AppId, user_id: &str, conn_id: ConnId, departure: Departure) {
        let shard = &self.apps[app];
        let mut t = self.table(app);
        let Some(st) = t.users.get_mut(user_id) else {
            return;
        };
        let Some(i) = st.conns.iter().position(|c| c.id == conn_id) else {
            return;
        };
        let slot = st.conns.swap_remove(i);
        shard.conns.fetch_sub(1, Ordering::Relaxed);
        let device_gone = !st.conns.iter().any(|c| c.device == slot.device);
        if device_gone {
            if let Some(d) = st.devices.iter().find(|d| d.id == slot.device) {
                self.store.save_cursor(
                    shard.key.clone(),
                    st.id.clone(),
                    d.id.clone(),
                    d.acked,
                    now_ms(),
                );
            }
            self.keep_for_departed_device(&shard.key, st, &slot.device);
        }
        st.prune_window(&self.limits, Instant::now());
        // Everything else is in SQLite and reloaded on the next connect.
        if st.idle() {
            t.users.remove(user_id);
        }
        // A shutdown does not end calls: they go on and are learned again after the restart.
        if device_gone && !self.closing.load(Ordering::SeqCst) {
            let user: Arc<str> = Arc::from(user_id);
            t.rooms
                .disconnected(&user, &slot.device, departure, Instant::now());
        }
    }

    /// A device's last connection went: persists its instances' accepted `client_seq`s, and
    /// stores every message in the window it has not acked (and that is not stored yet), so
    /// it gets them when it resumes after the window's TTL. Each such row waits for the ack
    /// of every device it was kept for (or its TTL): an ack from another device of the user
    /// does not delete it.
    fn keep_for_departed_device(&self, key: &Arc<str>, st: &mut UserState, device: &Arc<str>) {
        let Some(d) = st.devices.iter().find(|d| d.id == *device) else {
            return;
        };
        let now = now_ms();
        if !d.instances.is_empty() {
            let seqs = d.instances.iter().map(|i| (i.instance, i.upto)).collect();
            self.store
                .save_client_seqs(key.clone(), st.id.clone(), device.clone(), seqs, now);
        }
        // Only what was routed to it (a new device never got the window from before it came).
        let acked = d.acked.max(d.since);
        let expires_at = now.saturating_add(self.limits.offline_ttl_ms);
        for e in st.window.iter_mut() {
            if e.seq <= acked || e.offline || e.exclude_device.as_ref() == Some(device) {
                continue;
            }
            // Also when already kept for another device: the row must wait for this one too
            // (and is written again if that device's ack deleted it).
            let payload = delivered_payload(&e.body);
            let sent_time = Delivered::decode(&payload[..]).map_or(now, |m| m.sent_time);
            self.store.keep_for_device(
                key.clone(),
                st.id.clone(),
                device.clone(),
                e.seq,
                e.exclude_device.clone(),
                sent_time,
                expires_at,
                payload,
                self.limits.offline_max_per_user,
            );
            if !e.stored {
                Metrics::inc(&self.metrics.offline_stored);
            }
            e.stored = true;
            st.offline_upto = st.offline_upto.max(e.seq);
        }
        // Rows stored before (for an offline user) that it was replayed and did not ack.
        self.store
            .keep_stored_for_device(key.clone(), st.id.clone(), device.clone(), acked);
    }

    /// The highest `client_seq` accepted from `origin`'s instance, and the store ticket it
    /// needs committed (for `Pong.accepted_upto`).
    pub fn accepted_upto(&self, origin: &Origin) -> (u64, u64) {
        if origin.instance == 0 {
            return (0, 0);
        }
        let t = self.table(origin.app);
        t.users
            .get(&*origin.user_id)
            .and_then(|st| st.devices.iter().find(|d| d.id == origin.device_id))
            .and_then(|d| d.instance(origin.instance))
            .map_or((0, 0), |i| (i.upto, i.ticket))
    }

    /// Records that a device processed everything up to `seq`, and drops stored messages it
    /// covers that no other device still needs (see the module docs).
    pub fn ack(&self, origin: &Origin, seq: u64) {
        let shard = &self.apps[origin.app];
        let mut t = self.table(origin.app);
        let Some(st) = t.users.get_mut(&*origin.user_id) else {
            return;
        };
        // Nobody can have seen more than the server issued. `last_seq` alone is 0 once the
        // user's state was dropped (window expired) and reloaded: clamped to it, the acks of
        // the stored messages replayed then were ignored, so they were replayed again and
        // never deleted. Same ceiling as `register`.
        let floor = self.seq_floor.load(Ordering::Relaxed);
        let seq = seq.min(st.last_seq.max(floor).max(now_us()));
        if let Some(d) = st.devices.iter_mut().find(|d| d.id == origin.device_id) {
            d.acked = d.acked.max(seq);
        }
        // Another connected device that has not acked them yet may be on a dead connection:
        // they stay until it acks them or leaves (then they wait for it: `keep_stored_for_device`).
        let others_acked = st
            .conns
            .iter()
            .filter(|c| c.device != origin.device_id)
            .filter_map(|c| st.devices.iter().find(|d| d.id == c.device))
            .map(|d| d.acked.max(d.since))
            .min()
            .unwrap_or(u64::MAX);
        let upto = seq.min(st.offline_upto).min(others_acked);
        if st.offline_upto > st.deleted_upto && upto > st.deleted_upto {
            self.store.delete_offline_upto(
                shard.key.clone(),
                st.id.clone(),
                origin.device_id.clone(),
                upto,
            );
            st.deleted_upto = upto;
            // The same messages leave the window: stored messages are gone once acked.
            let dev = &origin.device_id;
            st.window.retain(|e| {
                !(e.offline && e.seq <= upto && e.exclude_device.as_ref() != Some(dev))
            });
            if upto >= st.offline_upto {
                st.offline_upto = 0;
                st.deleted_upto = 0;
            }
        }
    }

    /// Number of connections of `user_id` in the primary app (for tests).
    pub fn connection_count(&self, user_id: &str) -> usize {
        self.connection_count_in(0, user_id)
    }

    pub fn connection_count_in(&self, app: AppId, user_id: &str) -> usize {
        self.table(app)
            .users
            .get(user_id)
            .map_or(0, |u| u.conns.len())
    }

    // ---- routing -----------------------------------------------------------------------

    /// Accepts a message and pushes a `Delivered` to every live connection of every recipient
    /// and to the sender's other connections; stores it for recipients with none.
    pub fn route(&self, from: &Origin, msg: SendMessage) -> Result<Accepted, RouteError> {
        if msg.target_id.is_empty() {
            return Err(RouteError::InvalidParameter("empty target id"));
        }
        let bad_id = match msg.conversation_type {
            conversation_type::PRIVATE => !rooms::valid_user_id(&msg.target_id),
            _ => !msg
                .directional_user_ids
                .iter()
                .all(|u| rooms::valid_user_id(u)),
        };
        if bad_id {
            return Err(RouteError::InvalidParameter("invalid user id"));
        }
        if msg.message_type.is_empty() {
            return Err(RouteError::InvalidParameter("empty message type"));
        }
        let mut recipients: Vec<&str> = match msg.conversation_type {
            conversation_type::PRIVATE => vec![msg.target_id.as_str()],
            conversation_type::GROUP => msg
                .directional_user_ids
                .iter()
                .map(String::as_str)
                .filter(|u| !u.is_empty())
                .collect(),
            _ => {
                return Err(RouteError::InvalidParameter(
                    "unsupported conversation type",
                ))
            }
        };
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(RouteError::InvalidParameter("no recipients"));
        }
        // The sender's own devices are served below, with the original target id.
        recipients.retain(|u| *u != &*from.user_id);
        // Decoded outside the lock.
        let call_msg =
            rooms::parse(&msg.message_type, &msg.content).map_err(RouteError::InvalidParameter)?;

        // Offline push: only for push-carrying invites, member invites and hangups of an app
        // with a webhook (the recipients' online state is read under the lock below).
        let pusher = self.pusher.get().filter(|p| {
            msg.push.is_some()
                && p.wants(from.app)
                && call_msg.as_ref().is_some_and(|m| {
                    matches!(
                        m.kind,
                        rooms::Kind::Invite | rooms::Kind::ModifyMem | rooms::Kind::Hangup
                    )
                })
        });

        let shard = &self.apps[from.app];
        let mut guard = self.table(from.app);
        let t = &mut *guard;
        // Exactly once: a resend of what this instance already got accepted is confirmed again,
        // not routed again (before any policy check: it was accepted when it came first).
        let tracked = from.instance != 0 && msg.client_seq != 0;
        if tracked {
            if let Some(rec) = t
                .users
                .get(&*from.user_id)
                .and_then(|st| st.devices.iter().find(|d| d.id == from.device_id))
                .and_then(|d| d.instance(from.instance))
                .filter(|rec| msg.client_seq <= rec.upto)
            {
                return Ok(Accepted {
                    sent_time: now_ms(),
                    message_uid: String::new(),
                    delivered_to: 0,
                    ticket: rec.ticket,
                    duplicate: true,
                });
            }
        }
        // One bucket per user, whatever the number of its connections.
        if let Some(st) = t.users.get_mut(&*from.user_id) {
            let l = &self.limits;
            if !st.take_send(l.user_rate_per_sec, l.user_rate_burst, Instant::now()) {
                return Err(RouteError::TooFast);
            }
        }
        match msg.conversation_type {
            conversation_type::PRIVATE => {
                if recipients
                    .first()
                    .is_some_and(|r| t.policy.blacklisted(r, &from.user_id))
                {
                    return Err(RouteError::RejectedByBlacklist);
                }
            }
            _ => {
                let members = t
                    .policy
                    .groups
                    .get(&msg.target_id)
                    .ok_or(RouteError::NotInGroup)?;
                if !members.contains(&*from.user_id) {
                    return Err(RouteError::NotInGroup);
                }
                let policy = &t.policy;
                recipients
                    .retain(|r| members.contains(*r) && !policy.blacklisted(r, &from.user_id));
            }
        }

        // Offline storage is bounded: per sender (copies for others), in bytes overall, and by
        // the write queue. Checked before anything is accepted; messages that need no stored
        // copy are never refused here.
        let for_others = recipients
            .iter()
            .filter(|r| {
                t.users
                    .get(**r)
                    .is_none_or(|st| !st.conns.iter().any(|c| c.live))
            })
            .count();
        let for_self = t.users.get(&*from.user_id).is_some_and(|st| {
            st.copy_needed(from.conn_id, &from.device_id)
                && st.needs_copy_stored_for_other_devices(&from.device_id)
        });
        let copies = for_others + usize::from(for_self);
        if copies > 0 {
            let l = &self.limits;
            if self.store.pending() >= l.store_queue_max as u64 {
                return Err(RouteError::StoreBusy);
            }
            let size = (msg.content.len() + msg.message_type.len() + 128) as u64;
            let stored = u64::try_from(self.store.offline_bytes()).unwrap_or(0);
            if stored.saturating_add(size.saturating_mul(copies as u64)) > l.offline_max_bytes {
                return Err(RouteError::OfflineFull);
            }
            if for_others > 0 {
                let now = Instant::now();
                let q = t
                    .offline_quota
                    .entry(from.user_id.clone())
                    .or_insert((now, 0));
                if now.duration_since(q.0) >= l.offline_quota_window {
                    *q = (now, 0);
                }
                let n = u32::try_from(for_others).unwrap_or(u32::MAX);
                if q.1.saturating_add(n) > l.offline_quota_per_sender {
                    return Err(RouteError::OfflineQuota);
                }
                q.1 += n;
            }
        }
        let now = now_ms();
        if let Some(call_msg) = &call_msg {
            let route = rooms::route_of(msg.conversation_type, &msg.target_id, &msg.channel_id);
            t.rooms
                .admit(
                    &from.user_id,
                    &from.device_id,
                    call_msg,
                    &route,
                    &recipients,
                    now,
                )
                .map_err(|r| match r {
                    rooms::Refusal::NotInCall => RouteError::NotInCall,
                    rooms::Refusal::TooManyInvitees => {
                        RouteError::InvalidParameter("too many invitees")
                    }
                })?;
        }
        // Recipients with no online device, as for stored copies.
        let offline: Vec<String> = match pusher {
            Some(_) => recipients
                .iter()
                .filter(|r| {
                    t.users
                        .get(**r)
                        .is_none_or(|st| !st.conns.iter().any(|c| c.live))
                })
                .map(|r| (*r).to_owned())
                .collect(),
            None => Vec::new(),
        };
        let sent_time = t.clock.next(now);
        let message_uid = t.uids.next_uid();
        let accepted = Instant::now();
        let floor = self.seq_floor.load(Ordering::Relaxed);

        let mut template = Delivered {
            seq: 0,
            message_uid: message_uid.clone(),
            sender_user_id: from.user_id.to_string(),
            sender_device_id: from.device_id.to_string(),
            conversation_type: msg.conversation_type,
            // What each recipient sees as the conversation's target.
            target_id: match msg.conversation_type {
                conversation_type::PRIVATE => from.user_id.to_string(),
                _ => msg.target_id.clone(),
            },
            channel_id: msg.channel_id,
            message_type: msg.message_type,
            content: msg.content,
            sent_time,
            offline: false,
            sender_instance: from.instance,
            client_seq: msg.client_seq,
        };
        let mut ctx = DeliverCtx {
            hub: self,
            shard,
            sent_time,
            accepted,
            floor,
            delivered_to: 0,
            max_issued: t.max_issued,
            ticket: 0,
            record: tracked.then_some((from.instance, msg.client_seq)),
            sender_seq: tracked.then(|| SenderSeq {
                user: from.user_id.clone(),
                device: from.device_id.clone(),
                instance: from.instance,
                client_seq: msg.client_seq,
            }),
        };
        for user in &recipients {
            ctx.deliver(&mut t.users, user, &mut template, None);
        }
        template.target_id = msg.target_id;
        ctx.deliver(
            &mut t.users,
            &from.user_id,
            &mut template,
            Some((from.conn_id, &from.device_id)),
        );
        t.max_issued = ctx.max_issued;
        let (delivered_to, ticket) = (ctx.delivered_to, ctx.ticket);
        drop(guard);
        Metrics::inc(&self.metrics.messages_routed);
        if let (Some(pusher), Some(push), false) = (pusher, &msg.push, offline.is_empty()) {
            pusher.enqueue(
                from.app,
                crate::push::PushedMessage {
                    message_type: &template.message_type,
                    message_uid: &message_uid,
                    from_user_id: &from.user_id,
                    conversation_type: template.conversation_type,
                    target_id: &template.target_id,
                    channel_id: &template.channel_id,
                    content: &template.content,
                    push,
                    offline: &offline,
                    sent_time,
                },
            );
        }
        Ok(Accepted {
            sent_time,
            message_uid,
            delivered_to,
            ticket,
            duplicate: false,
        })
    }

    /// The devices of `user_id` that are in a call, as `asker` may see them (see
    /// [`crate::rooms`]).
    pub fn joined_user_info(&self, app: AppId, asker: &str, user_id: &str) -> Vec<JoinedDevice> {
        self.table(app).rooms.of(asker, user_id)
    }

    /// (calls, member devices, ringing users) the rooms of `app` hold (tests).
    pub fn rooms_size(&self, app: AppId) -> (usize, usize, usize) {
        self.table(app).rooms.size()
    }

    /// Ends the calls of devices whose grace is over: sends each one's `RC:VCHangup` (the
    /// server's timer, every [`crate::GRACE_TICK`]).
    pub fn end_gone_participants(&self) {
        let now = Instant::now();
        for app in 0..self.apps.len() {
            let mut guard = self.table(app);
            if !guard.rooms.has_graces() {
                continue;
            }
            let t = &mut *guard;
            for ended in t.rooms.due(now) {
                tracing::info!(
                    user_id = &*ended.user,
                    device_id = &*ended.device,
                    reason = ended.reason,
                    "participant gone; hanging up for it"
                );
                self.hang_up_for(app, t, ended);
            }
        }
    }

    /// Routes the server-made hangup of a gone device like a message that device sent, but to
    /// every device of its user, itself included (it learns on reconnect that its
    /// participation ended).
    fn hang_up_for(&self, app: AppId, t: &mut Table, e: rooms::Ended) {
        let content = rtc_core::proto::CallContent {
            platform: "Server".into(),
            device_id: e.device.to_string(),
            call_id: e.call_id,
            user: e.profile,
            body: Some(rtc_core::proto::call_content::Body::Hangup(
                rtc_core::proto::Hangup { reason: e.reason },
            )),
        };
        let sent_time = t.clock.next(now_ms());
        let mut template = Delivered {
            seq: 0,
            message_uid: t.uids.next_uid(),
            sender_user_id: e.user.to_string(),
            sender_device_id: e.device.to_string(),
            conversation_type: e.route.conversation_type,
            target_id: match e.route.conversation_type {
                conversation_type::PRIVATE => e.user.to_string(),
                _ => e.route.target_id.clone(),
            },
            channel_id: e.route.channel_id,
            message_type: rtc_core::proto::object_name::HANGUP.to_owned(),
            content: content.to_bytes(),
            sent_time,
            offline: false,
            sender_instance: 0,
            client_seq: 0,
        };
        let mut ctx = DeliverCtx {
            hub: self,
            shard: &self.apps[app],
            sent_time,
            accepted: Instant::now(),
            floor: self.seq_floor.load(Ordering::Relaxed),
            delivered_to: 0,
            max_issued: t.max_issued,
            // Nobody waits for this message's confirmation, and it has no sender stream.
            ticket: 0,
            record: None,
            sender_seq: None,
        };
        for user in &e.recipients {
            ctx.deliver(&mut t.users, user, &mut template, None);
        }
        template.target_id = e.route.target_id;
        ctx.deliver(&mut t.users, &e.user, &mut template, None);
        t.max_issued = ctx.max_issued;
        Metrics::inc(&self.metrics.messages_routed);
    }

    // ---- operator actions ---------------------------------------------------------------

    /// Sends `Kicked { call_id }` to every connection of `user_id`; returns how many.
    pub fn kick(&self, app: AppId, user_id: &str, call_id: &str) -> usize {
        let body = encode_body(&Body::Kicked(Kicked {
            call_id: call_id.to_owned(),
        }));
        let t = self.table(app);
        let Some(st) = t.users.get(user_id) else {
            return 0;
        };
        st.conns
            .iter()
            .filter(|c| {
                c.outbox
                    .push(
                        Outgoing::Frame {
                            body: body.clone(),
                            accepted: None,
                        },
                        false,
                    )
                    .is_ok()
            })
            .count()
    }

    /// Blocks `users` until `until_ms` and disconnects their connections with 31009.
    pub fn block(&self, app: AppId, users: &[String], until_ms: i64) {
        let mut t = self.table(app);
        for u in users {
            t.policy.blocks.insert(u.clone(), until_ms);
            if let Some(st) = t.users.get_mut(u.as_str()) {
                for c in &mut st.conns {
                    c.live = false;
                    c.outbox.abort_with(ErrorFrame {
                        code: error_code::USER_BLOCKED,
                        message: "the user has been blocked".into(),
                    });
                }
            }
        }
    }

    pub fn unblock(&self, app: AppId, users: &[String]) {
        let mut t = self.table(app);
        for u in users {
            t.policy.blocks.remove(u);
        }
    }

    /// `(user, blocked until ms)` of currently blocked users.
    pub fn blocked_users(&self, app: AppId) -> Vec<(String, i64)> {
        let now = now_ms();
        let t = self.table(app);
        let mut v: Vec<_> = t
            .policy
            .blocks
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(u, until)| (u.clone(), *until))
            .collect();
        v.sort();
        v
    }

    /// Tokens of `users` issued before `before_ms` stop working: new connections with them
    /// are refused (31020) and live connections that authenticated with one are closed after
    /// an `ErrorFrame` 31020.
    pub fn expire_tokens(&self, app: AppId, users: &[String], before_ms: i64) {
        let mut t = self.table(app);
        for u in users {
            t.policy.token_expiry.insert(u.clone(), before_ms);
            if let Some(st) = t.users.get_mut(u.as_str()) {
                for c in st.conns.iter_mut().filter(|c| c.token_iat < before_ms) {
                    c.live = false;
                    c.outbox.abort_with(ErrorFrame {
                        code: CODE_TOKEN_EXPIRED,
                        message: "the token of this connection was expired".into(),
                    });
                }
            }
        }
    }

    pub fn blacklist(&self, app: AppId, owner: &str, others: &[String], add: bool) {
        let mut t = self.table(app);
        if add {
            t.policy
                .blacklists
                .entry(owner.to_owned())
                .or_default()
                .extend(others.iter().cloned());
        } else if let Some(set) = t.policy.blacklists.get_mut(owner) {
            for o in others {
                set.remove(o);
            }
            if set.is_empty() {
                t.policy.blacklists.remove(owner);
            }
        }
    }

    pub fn blacklist_of(&self, app: AppId, owner: &str) -> Vec<String> {
        let t = self.table(app);
        let mut v: Vec<String> = t
            .policy
            .blacklists
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn group_join(&self, app: AppId, group: &str, users: &[String]) {
        let mut t = self.table(app);
        t.policy
            .groups
            .entry(group.to_owned())
            .or_default()
            .extend(users.iter().cloned());
    }

    pub fn group_quit(&self, app: AppId, group: &str, users: &[String]) {
        let mut t = self.table(app);
        if let Some(m) = t.policy.groups.get_mut(group) {
            for u in users {
                m.remove(u);
            }
        }
    }

    pub fn group_dismiss(&self, app: AppId, group: &str) {
        self.table(app).policy.groups.remove(group);
    }

    /// Members of `group`, or `None` if it does not exist.
    pub fn group_members(&self, app: AppId, group: &str) -> Option<Vec<String>> {
        let t = self.table(app);
        t.policy.groups.get(group).map(|m| {
            let mut v: Vec<String> = m.iter().cloned().collect();
            v.sort();
            v
        })
    }

    // ---- housekeeping --------------------------------------------------------------------

    /// Prunes message windows, forgets idle users and expired blocks; returns the highest seq
    /// issued so far (to persist as the floor).
    pub fn sweep(&self) -> u64 {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut max = self.seq_floor.load(Ordering::Relaxed);
        for app in 0..self.apps.len() {
            let mut t = self.table(app);
            max = max.max(t.max_issued);
            t.users.retain(|_, st| {
                st.prune_window(&self.limits, now);
                !st.idle()
            });
            t.policy.blocks.retain(|_, until| *until > now_ms);
            let window = self.limits.offline_quota_window;
            t.offline_quota
                .retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        max
    }

    /// Graceful shutdown: refuses new connections, takes every connection out of routing (so
    /// messages for its user are stored from now on) and tells it to flush and close.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for app in 0..self.apps.len() {
            let mut t = self.table(app);
            for st in t.users.values_mut() {
                for c in &mut st.conns {
                    c.live = false;
                    c.outbox.close();
                }
            }
        }
    }

    /// Shutdown timeout: every connection drops what is queued and closes now.
    pub fn abort_all(&self) {
        for app in 0..self.apps.len() {
            let t = self.table(app);
            for st in t.users.values() {
                for c in &st.conns {
                    c.outbox.kill();
                }
            }
        }
    }
}

/// Per-message state while fanning out under the lock.
struct DeliverCtx<'a> {
    hub: &'a Hub,
    shard: &'a AppShard,
    sent_time: i64,
    accepted: Instant,
    floor: u64,
    delivered_to: usize,
    max_issued: u64,
    /// Highest store ticket this message caused.
    ticket: u64,
    /// `(instance, client_seq)` to record as accepted when serving the sender.
    record: Option<(u64, u64)>,
    /// Recorded with the first stored copy, in the same transaction.
    sender_seq: Option<SenderSeq>,
}

impl DeliverCtx<'_> {
    /// Gives `user_id` the next seq, pushes the message to its live connections (except
    /// `sender`'s connection), keeps it in the window, and stores it if nobody who should get
    /// it later is connected.
    fn deliver(
        &mut self,
        users: &mut HashMap<Arc<str>, UserState>,
        user_id: &str,
        template: &mut Delivered,
        sender: Option<(ConnId, &Arc<str>)>,
    ) {
        let st = match users.get_mut(user_id) {
            Some(st) => st,
            None => {
                let id: Arc<str> = Arc::from(user_id);
                users
                    .entry(id.clone())
                    .or_insert_with(|| UserState::new(id))
            }
        };
        let limits = &self.hub.limits;
        let seq = st.next_seq(self.floor);
        self.max_issued = self.max_issued.max(seq);
        if let (Some((_, device)), Some((instance, client_seq))) = (sender, self.record) {
            // Exactly once: the sender's state is at hand here (no second lookup). Served last,
            // so the recipients' store tickets are known; its own copy's follows below.
            if let Some(d) = st.devices.iter_mut().find(|d| d.id == *device) {
                let rec = d.instance_mut(instance);
                rec.upto = rec.upto.max(client_seq);
                rec.ticket = rec.ticket.max(self.ticket);
            }
        }
        if let Some((conn, device)) = sender {
            if !st.copy_needed(conn, device) {
                // Nobody but the sending connection could ever see this copy.
                return;
            }
        }
        let store = match sender {
            Some((_, device)) => st.needs_copy_stored_for_other_devices(device),
            None => !st.conns.iter().any(|c| c.live),
        };
        template.seq = seq;
        template.offline = store;
        let (body, payload_at) = encode_delivered(template);
        let skip = sender.map(|(id, _)| id);
        for c in st.conns.iter_mut() {
            if !c.live || Some(c.id) == skip {
                continue;
            }
            let item = Outgoing::Frame {
                body: body.clone(),
                accepted: Some(self.accepted),
            };
            match c.outbox.push(item, true) {
                Ok(()) => self.delivered_to += 1,
                Err(PushError::Full) => {
                    tracing::warn!(conn_id = c.id, "outbox full, disconnecting slow client");
                    self.hub.metrics.error(error_code::SLOW_CONSUMER);
                    c.live = false;
                    c.outbox.abort_with(ErrorFrame {
                        code: error_code::SLOW_CONSUMER,
                        message: "too many unread frames; reconnect and resume".into(),
                    });
                }
                // Already closing; it is about to unregister.
                Err(PushError::Closed) => {}
            }
        }
        if store {
            let ticket = self.hub.store.store_offline(
                self.shard.key.clone(),
                st.id.clone(),
                seq,
                sender.map(|(_, d)| d.clone()),
                self.sent_time,
                now_ms().saturating_add(limits.offline_ttl_ms),
                body.slice(payload_at..),
                limits.offline_max_per_user,
                self.sender_seq.take(),
            );
            self.ticket = self.ticket.max(ticket);
            if let (Some((_, device)), Some((instance, _))) = (sender, self.record) {
                let rec = st
                    .devices
                    .iter_mut()
                    .find(|d| d.id == *device)
                    .and_then(|d| d.instances.iter_mut().find(|i| i.instance == instance));
                if let Some(rec) = rec {
                    rec.ticket = rec.ticket.max(ticket);
                }
            }
            st.offline_upto = seq;
            Metrics::inc(&self.hub.metrics.offline_stored);
        }
        st.window.push_back(Entry {
            seq,
            offline: store,
            stored: false,
            exclude_device: sender.map(|(_, d)| d.clone()),
            accepted: self.accepted,
            body,
        });
        st.prune_window(limits, self.accepted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_body_round_trips() {
        let d = Delivered {
            seq: 42,
            message_uid: "U".into(),
            content: vec![1; 300],
            offline: true,
            ..Default::default()
        };
        let (body, at) = encode_delivered(&d);
        let rebuilt = deliver_body_from_payload(&body[at..]);
        assert_eq!(body, rebuilt);
        assert_eq!(encode_body(&Body::Deliver(d.clone())), body);
        // The writer's framing equals prost's encoding of the whole ServerFrame.
        let frame = rtc_core::proto::ServerFrame::new(7, Body::Deliver(d));
        let mut manual = vec![0x08, 7];
        manual.extend_from_slice(&body);
        assert_eq!(frame.to_bytes(), manual);
    }

    #[test]
    fn a_device_remembers_its_most_recent_instances() {
        let mut d = DeviceCursor::new("d".into());
        for i in 1..=5u64 {
            d.instance_mut(i).upto = i * 10;
        }
        assert!(
            d.instance(1).is_none(),
            "the least recently used is forgotten"
        );
        assert_eq!(d.instance(5).map(|r| r.upto), Some(50));
        d.instance_mut(2); // used again: now the most recent
        d.instance_mut(6);
        assert!(d.instance(3).is_none());
        assert_eq!(d.instance(2).map(|r| r.upto), Some(20));
        assert_eq!(d.instances.len(), MAX_INSTANCES_PER_DEVICE);
    }

    #[test]
    fn liveness_pings_once_per_interval_then_kills() {
        let o = Outbox::new();
        let t0 = o.last_heard.load(Ordering::Relaxed);
        assert!(!o.check_alive(t0 + 99, 100, 300));
        assert!(!o.check_alive(t0 + 100, 100, 300));
        assert!(!o.check_alive(t0 + 150, 100, 300));
        let mut v = Vec::new();
        o.take(&mut v);
        assert_eq!(v.len(), 1, "one ping per interval");
        assert!(matches!(v[0], Outgoing::Ping));
        assert!(o.check_alive(t0 + 300, 100, 300), "killed");
        assert!(o.is_aborted());
        assert!(!o.check_alive(t0 + 400, 100, 300), "only once");
    }

    #[tokio::test]
    async fn a_waiting_connection_is_woken_by_a_push_and_by_an_abort() {
        let o = Arc::new(Outbox::new());
        let frame = || Outgoing::Frame {
            body: Bytes::new(),
            accepted: None,
        };
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.notified().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "nothing queued yet");
        o.push(frame(), true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        // A push from the connection's own task queues without waking.
        let mut v = Vec::new();
        o.take(&mut v);
        o.push_own(frame(), true).unwrap();
        assert_eq!(o.lock().items.len(), 1);
        // A task waiting for an abort is woken (spuriously) by pushes and for good by the abort.
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.aborted().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        o.push(frame(), true).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a push is not an abort");
        o.abort_with(ErrorFrame::default());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn outbox_is_bounded_ordered_and_drains_after_close() {
        let o = Outbox::new();
        for i in 0..OUTBOX_CAPACITY {
            o.push(
                Outgoing::Frame {
                    body: Bytes::from(vec![i as u8]),
                    accepted: None,
                },
                true,
            )
            .unwrap();
        }
        let extra = || Outgoing::Frame {
            body: Bytes::new(),
            accepted: None,
        };
        assert_eq!(o.push(extra(), true), Err(PushError::Full));
        assert!(o.push(extra(), false).is_ok());
        o.close();
        assert_eq!(o.push(extra(), false), Err(PushError::Closed));
        let mut v = Vec::new();
        assert!(o.take(&mut v), "closed");
        assert_eq!(v.len(), OUTBOX_CAPACITY + 1);
        v.clear();
        assert!(o.take(&mut v));
        assert!(v.is_empty());
        // Closed: waiting returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), o.notified())
            .await
            .unwrap();
    }
}
