//! Per-user mailboxes in Redis and the `route` script (docs/cluster.md, "The shape"): what
//! replaces the single node's in-memory window and SQLite's offline table in cluster mode.
//! The server uses them in cluster mode through [`super::routing`].
//!
//! - [`Mailboxes::route`] accepts a message in one Lua script (`route.lua`; several per call:
//!   [`Mailboxes::route_many`], `cluster/route_batch.rs`):
//!   exactly-once check, `sent_time`, then for each copy a per-user `seq`, an `XADD` to the
//!   user's stream (entry id `<seq>-0`, value the encoded `Delivered`) and a `PUBLISH` on the
//!   user's channel, then the sender's reply marker on the sender's channel (in the header of
//!   the sender's own copy when there is one: one publish, [`UserEvent::decode_pair`]). Because the script
//!   runs alone, every pair of recipients sees any two messages in the same relative order.
//! - [`Mailboxes::read_above`] replays a device from its cursor; [`Mailboxes::ack`]
//!   (`ack.lua`) moves a device's cursor and trims the stream below the lowest
//!   cursor of the user's known devices; [`Mailboxes::ack_many`] does it for many devices in
//!   one script call (a node's batch).
//! - [`UserEvent::decode`] reads what arrives on a user channel.
//!
//! The `Delivered` is encoded by Rust without `seq` and `sent_time` (known only inside the
//! script) as two pieces, fields 2–9 and 11–13; the script writes field 1 and field 10 around
//! them, which gives exactly the bytes prost writes for the whole message. Stored and published
//! copies are then ready to send: no receiver re-encodes anything.
//!
//! What callers must keep in mind:
//! - One connection's tracked sends must reach Redis in `client_seq` order (route them one at a
//!   time per connection, as the single node does): a later `client_seq` accepted first makes
//!   the earlier one a duplicate, and it would never be routed.
//! - The sender's own copy is stored only when the sender has another known device (it is
//!   for them); it then waits in the sender's mailbox until the sending device's cursor passes
//!   it (that device never gets it, so only a later ack moves past it), or until count or age
//!   trims it. Without a sibling it is only published (a device that joins later gets only
//!   `offline` copies of what came before it). An ack that empties a mailbox deletes its
//!   stream (an emptied stream keeps its last node's bytes).
//! - A known device that never comes back holds the trimming back until the cursor hash
//!   expires (state TTL after the user's last ack); count and age still bound the stream.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use delivery::uid::UidGen;
use redis::Value;
use rtc_core::proto::Delivered;

use super::{keys, Bus, ClusterError, Lane, LuaScript, NodeId, MAX_SEQ};

/// Key kind of a user's mailbox stream ([`mailbox_key`]).
pub const KIND_MAILBOX: &str = "mbox";
/// Key kind of a user's device cursors ([`cursor_key`]).
pub const KIND_CURSOR: &str = "cursor";
/// Key kind of one SDK instance's highest accepted `client_seq` ([`upto_key`]).
pub const KIND_UPTO: &str = "upto";
/// Key kind of an app's last `sent_time` ([`sent_time_key`]).
pub const KIND_SENT: &str = "sent";

/// `rcall:{app}:mbox:<user>`: stream, entry id `<seq>-0`, fields `d` (the encoded `Delivered`)
/// and, on the sender's own copy, `x` (the sending device, which never gets it).
pub fn mailbox_key(app: &str, user: &str) -> String {
    keys::app_key(app, KIND_MAILBOX, &[user])
}

/// `rcall:{app}:cursor:<user>`: hash, device → highest acked seq. Its fields are the user's
/// known devices: the stream keeps what any of them has not acked.
pub fn cursor_key(app: &str, user: &str) -> String {
    keys::app_key(app, KIND_CURSOR, &[user])
}

/// `rcall:{app}:upto:<user>:<device>:<instance>`: the instance's highest accepted `client_seq`,
/// then that message's uid and its copies' offline flags (`'0'`/`'1'` each, in copy order):
/// `<client_seq> <uid> <flags>` (route.lua).
pub fn upto_key(app: &str, user: &str, device: &str, instance: u64) -> String {
    keys::app_key(app, KIND_UPTO, &[user, device, &instance.to_string()])
}

/// `rcall:{app}:sent`: the app's last `sent_time` (ms), so it never goes backwards.
pub fn sent_time_key(app: &str) -> String {
    keys::app_key(app, KIND_SENT, &[])
}

/// `rcall:{app}:ch:u:<user>`: the user's channel (its deliveries and its reply markers). A
/// node subscribes to it while it holds a connection of the user.
pub fn user_channel(app: &str, user: &str) -> String {
    keys::app_key(app, keys::KIND_CHANNEL, &["u", user])
}

static ACK: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new("ack", include_str!("ack.lua")));

/// How much a mailbox keeps, and for how long per-user state outlives its last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Entries per user (approximate: Redis trims whole stream nodes), as
    /// `offline_max_per_user`.
    pub max_len: usize,
    /// Entries older than this are trimmed, and an idle mailbox expires after it, as
    /// `offline_ttl`.
    pub max_age: Duration,
    /// Device cursors, accepted `client_seq`s and seq keys expire this long after their last
    /// use (at least `max_age`, so a seq key outlives the entries it numbered).
    pub state_ttl: Duration,
}

impl Default for MailboxLimits {
    /// The single node's defaults (`offline_max_per_user`, `offline_ttl`, its cursor TTL).
    fn default() -> Self {
        let week = Duration::from_secs(7 * 24 * 3600);
        MailboxLimits {
            max_len: 1000,
            max_age: week,
            state_ttl: week,
        }
    }
}

/// One connection of one node: where a reply goes, and which connection a copy skips.
/// Written `<node>.<conn>` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub node: NodeId,
    pub conn: u64,
}

impl ConnRef {
    pub(super) fn token(&self) -> String {
        format!("{}.{}", self.node, self.conn)
    }

    fn parse(s: &str) -> Option<ConnRef> {
        let (node, conn) = s.split_once('.')?;
        if node.is_empty() || !node.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(ConnRef {
            node: NodeId(node.to_owned()),
            conn: conn.parse().ok()?,
        })
    }
}

/// The sending connection.
#[derive(Debug, Clone)]
pub struct Sender<'a> {
    pub user: &'a str,
    pub device: &'a str,
    /// `Authenticate.instance` (0 = untracked: no exactly-once record).
    pub instance: u64,
    pub conn: ConnRef,
}

/// One recipient's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user: String,
    /// The `Delivered.offline` flag of this copy.
    pub offline: bool,
}

/// The sender's own copy, for its other devices (never for the sending device: its entry
/// carries the device, and the live copy skips the sending connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCopy {
    /// The conversation's target as the sender addressed it.
    pub target_id: String,
    pub offline: bool,
    /// For the sending device too (a hangup the server sends on a gone device's behalf).
    pub all_devices: bool,
}

/// One message to route.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    pub app: &'a str,
    pub from: Sender<'a>,
    /// `SendMessage.client_seq` (0 = untracked).
    pub client_seq: u64,
    /// Publish the sender's reply marker with this request id ([`UserEvent::Reply`]).
    pub request_id: Option<u32>,
    /// The message as recipients see it: its `conversation_type`, `target_id`, `channel_id`,
    /// `message_type` and `content` are used. The sender fields come from `from`; `seq`,
    /// `sent_time` and `message_uid` are the route's; `offline` is per copy.
    pub message: Delivered,
    /// Distinct users other than the sender.
    pub recipients: Vec<Recipient>,
    pub own_copy: Option<OwnCopy>,
    /// No seq below this (µs): the caller's guard against a Redis that lost its keys.
    pub floor_us: u64,
    /// Also flag `offline` the copy of every recipient that is on no node (its presence hash,
    /// [`super::presence::presence_key`], is empty), decided inside the script: atomic with
    /// the route, like the single node's check under its lock.
    pub presence: bool,
    /// A call message's encoded [`delivery::rooms::RoomsEvent`], appended to the app's rooms
    /// log in the script's order ([`super::rooms`]).
    pub rooms_event: Option<Vec<u8>>,
}

/// What the route script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    Accepted {
        /// Redis's clock (ms), never backwards within the app.
        sent_time: i64,
        message_uid: String,
        /// Each recipient's seq, in [`RouteRequest::recipients`] order.
        seqs: Vec<(String, u64)>,
        /// The sender's own copy's seq.
        own_seq: Option<u64>,
        /// The recipients whose copy went out flagged `offline` (asked for, or on no node
        /// with [`RouteRequest::presence`]): who gets a push.
        offline: Vec<String>,
    },
    /// `client_seq` was already accepted from this instance: nothing was routed.
    Duplicate {
        /// Redis's clock now (ms).
        sent_time: i64,
        /// The instance's highest accepted `client_seq`.
        upto: u64,
        /// When `client_seq` is `upto` (the resend of a route whose reply was lost): the uid
        /// it was routed with and the recipients its copies flagged `offline` (their push is
        /// still to be made); else empty.
        message_uid: String,
        offline: Vec<String>,
    },
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    pub seq: u64,
    /// The encoded `Delivered` (its `seq` is `seq`).
    pub delivered: Bytes,
    /// The sending device, on the sender's own copy: not replayed to it.
    pub exclude_device: Option<String>,
}

/// The result of [`Mailboxes::join_device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The device's cursor (what it acked).
    pub cursor: u64,
    /// The device was not a known device of the user before.
    pub new: bool,
    /// The user's last issued seq when the device joined (0 if none or expired).
    pub last_seq: u64,
}

/// The result of [`Mailboxes::open_device`].
#[derive(Debug)]
pub struct Opened {
    pub joined: Joined,
    /// The user's known devices before the join.
    pub devices: Vec<String>,
    /// The first page of the mailbox above the read's start.
    pub entries: Vec<MailboxEntry>,
    /// The highest `client_seq` the route script accepted from the SDK instance (0 for
    /// instance 0, none yet, or unreadable): `AuthResult.accepted_upto` on whichever node.
    pub accepted: u64,
    /// The user's profile as the Server API registered it on any node (none: never, or empty):
    /// `AuthResult.profile`.
    pub profile: Option<rtc_core::proto::UserProfile>,
}

/// The result of [`Mailboxes::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The device's cursor now (acks are cumulative and capped at what was issued).
    pub cursor: u64,
    /// The lowest cursor of the user's known devices: the stream holds only entries above it.
    pub lowest: u64,
    /// Entries this ack trimmed.
    pub trimmed: u64,
}

/// What arrives on a [`user_channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    /// A copy for the user's live connections (except `skip`, the sending connection).
    Deliver {
        seq: u64,
        skip: Option<ConnRef>,
        delivered: Bytes,
    },
    /// The sender's `SendResult` (code 0), for connection `conn`. Comes after every copy of the
    /// message on the sender's channel. An empty `message_uid` means a duplicate.
    Reply {
        conn: ConnRef,
        request_id: u32,
        sent_time: i64,
        message_uid: String,
    },
}

/// A user-channel message that is not one [`Mailboxes::route`] publishes.
#[derive(Debug, thiserror::Error)]
#[error("malformed user-channel event: {0}")]
pub struct MalformedEvent(&'static str);

impl UserEvent {
    /// Parses one publish on a user channel: `R <sent_time> <conn> <request_id> <uid>`, a copy
    /// `D <seq> <skip>\n<Delivered>`, or the sender's own copy with its reply marker folded in,
    /// `D <seq> <skip> <sent_time> <request_id> <uid>\n<Delivered>`: the copy, then the reply
    /// to connection `<skip>` (one publish where there were two). The second event is that
    /// reply.
    pub fn decode_pair(payload: &Bytes) -> Result<(UserEvent, Option<UserEvent>), MalformedEvent> {
        if payload.first() != Some(&b'D') {
            return Ok((Self::decode(payload)?, None));
        }
        let nl = payload
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(MalformedEvent("no header end"))?;
        let head =
            std::str::from_utf8(&payload[..nl]).map_err(|_| MalformedEvent("header not UTF-8"))?;
        let mut parts = head.split(' ');
        let (Some("D"), Some(seq), Some(skip)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(MalformedEvent("bad delivery header"));
        };
        let seq = seq.parse().map_err(|_| MalformedEvent("bad seq"))?;
        let skip = match skip {
            "" => None,
            s => Some(ConnRef::parse(s).ok_or(MalformedEvent("bad skip"))?),
        };
        let reply = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (None, ..) => None,
            (Some(sent), Some(req), Some(uid), None) => Some(UserEvent::Reply {
                conn: skip
                    .clone()
                    .ok_or(MalformedEvent("reply without a connection"))?,
                request_id: req.parse().map_err(|_| MalformedEvent("bad request id"))?,
                sent_time: sent.parse().map_err(|_| MalformedEvent("bad sent_time"))?,
                message_uid: uid.to_owned(),
            }),
            _ => return Err(MalformedEvent("bad delivery header")),
        };
        let deliver = UserEvent::Deliver {
            seq,
            skip,
            delivered: payload.slice(nl + 1..),
        };
        Ok((deliver, reply))
    }

    /// [`Self::decode_pair`]'s events in order.
    pub fn decode_all(payload: &Bytes) -> Result<Vec<UserEvent>, MalformedEvent> {
        let (first, second) = Self::decode_pair(payload)?;
        Ok(std::iter::once(first).chain(second).collect())
    }

    /// Parses a publish that holds one event (`R …` or a copy without a reply marker); a copy
    /// with one is an error here ([`Self::decode_pair`] reads both).
    pub fn decode(payload: &Bytes) -> Result<UserEvent, MalformedEvent> {
        match payload.first() {
            Some(b'D') => match Self::decode_pair(payload)? {
                (d, None) => Ok(d),
                (_, Some(_)) => Err(MalformedEvent("two events: use decode_pair")),
            },
            Some(b'R') => {
                let text =
                    std::str::from_utf8(payload).map_err(|_| MalformedEvent("reply not UTF-8"))?;
                let mut parts = text.split(' ');
                let (Some("R"), Some(sent), Some(conn), Some(req), Some(uid), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(MalformedEvent("bad reply"));
                };
                Ok(UserEvent::Reply {
                    conn: ConnRef::parse(conn).ok_or(MalformedEvent("bad reply conn"))?,
                    request_id: req.parse().map_err(|_| MalformedEvent("bad request id"))?,
                    sent_time: sent.parse().map_err(|_| MalformedEvent("bad sent_time"))?,
                    message_uid: uid.to_owned(),
                })
            }
            _ => Err(MalformedEvent("unknown kind")),
        }
    }
}

/// Mailboxes over one node's [`Bus`].
pub struct Mailboxes {
    bus: Bus,
    limits: MailboxLimits,
    uids: Mutex<UidGen>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes")
            .field("bus", &self.bus)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn bad(msg: impl Into<String>) -> ClusterError {
    ClusterError::OutOfRange(msg.into())
}

/// The `client_seq` in the value of `key` ([`upto_key`]: `<client_seq> <uid> <flags>`; none: 0).
fn accepted_of(key: &str, v: Option<&str>) -> Result<u64, ClusterError> {
    let seq = v.and_then(|v| v.split(' ').next()).unwrap_or("0");
    seq.parse()
        .map_err(|_| bad(format!("{key} holds {v:?}, not a client_seq")))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Mailboxes {
    pub fn new(bus: Bus, limits: MailboxLimits) -> Result<Self, ClusterError> {
        if limits.max_len == 0 || limits.max_age.is_zero() {
            return Err(bad("mailbox limits: max_len and max_age must be > 0"));
        }
        if limits.state_ttl < limits.max_age {
            return Err(bad("mailbox limits: state_ttl must be at least max_age"));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut salt = [0u8; 4];
        let _ = getrandom::fill(&mut salt);
        Ok(Mailboxes {
            bus,
            limits,
            uids: Mutex::new(UidGen::new(now_ms, u32::from_le_bytes(salt))),
        })
    }

    pub fn limits(&self) -> MailboxLimits {
        self.limits
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Routes one message (see the module docs): a batch of one
    /// ([`Self::route_many`], `cluster/route_batch.rs`). Not retried on a lost connection: the
    /// script may have run. A tracked message (`instance` and `client_seq` set) can be sent
    /// again safely; the resend is then reported as [`Routed::Duplicate`].
    pub async fn route(&self, req: &RouteRequest<'_>) -> Result<Routed, ClusterError> {
        let p = self.prepare_route(req)?;
        self.route_prepared(&[&p])
            .await?
            .pop()
            .unwrap_or_else(|| Err(bad("route: no reply")))
    }

    /// A new message uid (`Delivered.message_uid`).
    pub(super) fn next_uid(&self) -> String {
        self.uids.lock().expect("uid lock").next_uid()
    }

    /// Up to `limit` entries of `user`'s mailbox with a seq above `seq`, in seq order (a
    /// login's later replay pages: on [`Lane::Login`]).
    pub async fn read_above(
        &self,
        app: &str,
        user: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<MailboxEntry>, ClusterError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = mailbox_key(app, user);
        let reply: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({seq}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.bus.lane(Lane::Login))
            .await
            .map_err(|e| ClusterError::command(&self.bus.url, format!("XRANGE {key}"), e))?;
        parse_range(reply).ok_or_else(|| bad(format!("XRANGE {key}: unexpected reply")))
    }

    /// [`Self::read_above`] for many users in one round trip (one pipeline): each `(user,
    /// seq)` gets up to `limit` entries above its `seq`, in the same order. A node re-reading
    /// every local user's mailbox after a gap takes hundreds per round trip, not one.
    pub async fn read_above_many(
        &self,
        app: &str,
        users: &[(&str, u64)],
        limit: usize,
    ) -> Result<Vec<Vec<MailboxEntry>>, ClusterError> {
        if users.is_empty() || limit == 0 {
            return Ok(vec![Vec::new(); users.len()]);
        }
        let mut p = redis::pipe();
        for (user, seq) in users {
            p.cmd("XRANGE")
                .arg(mailbox_key(app, user))
                .arg(format!("({seq}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(limit);
        }
        let replies: Vec<Value> = p
            .query_async(&mut self.bus.conn.clone())
            .await
            .map_err(|e| ClusterError::command(&self.bus.url, "XRANGE (pipelined)", e))?;
        replies
            .into_iter()
            .map(|r| parse_range(r).ok_or_else(|| bad("XRANGE (pipelined): unexpected reply")))
            .collect()
    }

    /// `device` of `user` acked everything up to `seq` (cumulative; capped at what was
    /// issued); the mailbox keeps only what some known device has not acked.
    pub async fn ack(
        &self,
        app: &str,
        user: &str,
        device: &str,
        seq: u64,
    ) -> Result<Acked, ClusterError> {
        let mut acked = self.ack_many(app, &[(user, device, seq)]).await?;
        acked.pop().ok_or_else(|| bad("ack: empty reply"))
    }

    /// [`Self::ack`] for several `(user, device, seq)` of one app in one script call (applied
    /// in order; results in the same order): a node sends every device acked since its last
    /// call together, so Redis runs one script per round trip rather than one per delivery.
    pub async fn ack_many(
        &self,
        app: &str,
        acks: &[(&str, &str, u64)],
    ) -> Result<Vec<Acked>, ClusterError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = ACK.call();
        for (user, device, _) in acks {
            if device.is_empty() {
                return Err(bad("ack: empty device"));
            }
            call = call
                .key(cursor_key(app, user))
                .key(mailbox_key(app, user))
                .key(keys::user_seq(app, user));
        }
        call = call.arg(ms(self.limits.state_ttl));
        for (_, device, seq) in acks {
            call = call.arg(*device).arg((*seq).min(MAX_SEQ));
        }
        let out: Vec<u64> = self.bus.run(&call).await?;
        if out.len() != 3 * acks.len() {
            return Err(bad(format!(
                "ack: reply of {} values for {} acks",
                out.len(),
                acks.len()
            )));
        }
        Ok(out
            .chunks(3)
            .map(|c| Acked {
                cursor: c[0],
                lowest: c[1],
                trimmed: c[2],
            })
            .collect())
    }

    /// Makes `device` a known device of `user` with cursor `initial`, unless it is known
    /// already; returns its cursor. A known device holds back the trimming of what it has not
    /// acked.
    pub async fn register_device(
        &self,
        app: &str,
        user: &str,
        device: &str,
        initial: u64,
    ) -> Result<u64, ClusterError> {
        Ok(self.join_device(app, user, device, initial).await?.cursor)
    }

    /// [`Self::register_device`], also saying whether the device was new and, in the same
    /// atomic step, the user's last issued seq: a new device's history boundary (what was
    /// routed up to it is history; a new device gets only its `offline` copies).
    pub async fn join_device(
        &self,
        app: &str,
        user: &str,
        device: &str,
        initial: u64,
    ) -> Result<Joined, ClusterError> {
        if device.is_empty() {
            return Err(bad("register_device: empty device"));
        }
        let key = cursor_key(app, user);
        let (added, _, cursor, last_seq): (i64, i64, u64, Option<u64>) = redis::pipe()
            .atomic()
            .hset_nx(&key, device, initial)
            .pexpire(&key, ms(self.limits.state_ttl) as i64)
            .hget(&key, device)
            .get(keys::user_seq(app, user))
            .query_async(&mut self.bus.conn.clone())
            .await
            .map_err(|e| ClusterError::command(&self.bus.url, format!("HSETNX {key}"), e))?;
        Ok(Joined {
            cursor,
            new: added == 1,
            last_seq: last_seq.unwrap_or(0),
        })
    }

    /// A connecting device's start in one round trip: [`Self::join_device`] with cursor 0,
    /// the user's known devices (before it joined: a new device is left out), up to `page`
    /// entries of the mailbox above `above` (read after the join, in the same MULTI) and, for
    /// an SDK `instance` (not 0), what the route script accepted from it ([`Opened::accepted`]).
    /// The caller reads from the device's own `resume_from`; entries at or below the returned
    /// cursor are its to skip. (Three round trips per login made a reconnect surge wait on a
    /// busy Redis three times over; the accepted `client_seq` was a fourth, as slow as the
    /// join in a storm, until session 17.) `before` adds commands run first in the same
    /// `MULTI` (their replies ignored): the connection's presence write. On [`Lane::Login`].
    #[allow(clippy::too_many_arguments)]
    pub async fn open_device(
        &self,
        app: &str,
        user: &str,
        device: &str,
        instance: u64,
        above: u64,
        page: usize,
        before: impl FnOnce(&mut redis::Pipeline),
    ) -> Result<Opened, ClusterError> {
        if device.is_empty() {
            return Err(bad("register_device: empty device"));
        }
        let key = cursor_key(app, user);
        let mbox = mailbox_key(app, user);
        let mut p = redis::pipe();
        p.atomic();
        before(&mut p);
        p.hkeys(&key)
            .hset_nx(&key, device, 0)
            .pexpire(&key, ms(self.limits.state_ttl) as i64)
            .hget(&key, device)
            .get(keys::user_seq(app, user));
        p.cmd("XRANGE")
            .arg(&mbox)
            .arg(format!("({above}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(page.max(1));
        let upto = (instance != 0).then(|| upto_key(app, user, device, instance));
        if let Some(upto) = &upto {
            p.get(upto);
        }
        // The user's profile, last (popped first below).
        p.cmd("HMGET")
            .arg(super::shared::profile_key(app, user))
            .arg("name")
            .arg("portrait");
        // (One MULTI: the read follows the join atomically.)
        let mut replies: Vec<Value> = p
            .query_async(&mut self.bus.lane(Lane::Login))
            .await
            .map_err(|e| ClusterError::command(&self.bus.url, format!("HSETNX {key}"), e))?;
        // What the Server API registered on any node; a field never set is `None`, and an
        // unreadable reply costs a warning, not the login (the SDK then sends no profile).
        let profile = replies
            .pop()
            .map(redis::from_redis_value::<(Option<String>, Option<String>)>)
            .transpose()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cluster: reading the user's profile failed");
                None
            })
            .and_then(|(name, portrait_uri)| {
                let some = |s: Option<String>| s.filter(|s| !s.is_empty());
                let profile = rtc_core::proto::UserProfile {
                    name: some(name),
                    portrait_uri: some(portrait_uri),
                    extra: None,
                };
                (profile != rtc_core::proto::UserProfile::default()).then_some(profile)
            });
        // What the instance got accepted: harmless when unreadable (the client then resends
        // what it holds unconfirmed, and the route script answers it as duplicates), so a bad
        // value costs a warning, not the login.
        let accepted = match upto.as_deref().map(|k| (k, replies.pop())) {
            None => 0,
            Some((k, v)) => {
                let v = v.and_then(|v| redis::from_redis_value::<Option<String>>(v).ok());
                accepted_of(k, v.flatten().as_deref()).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cluster: reading accepted client seqs failed");
                    0
                })
            }
        };
        #[allow(clippy::type_complexity)]
        let (devices, added, _, cursor, last_seq, range): (
            Vec<String>,
            i64,
            i64,
            u64,
            Option<u64>,
            Value,
        ) = redis::from_redis_value(Value::Array(replies))
            .map_err(|e| bad(format!("HSETNX {key}: unexpected reply: {e}")))?;
        let entries =
            parse_range(range).ok_or_else(|| bad(format!("XRANGE {mbox}: unexpected reply")))?;
        let joined = Joined {
            cursor,
            new: added == 1,
            last_seq: last_seq.unwrap_or(0),
        };
        Ok(Opened {
            joined,
            devices,
            entries,
            accepted,
            profile,
        })
    }

    /// `user`'s known devices and their cursors, sorted by device.
    pub async fn known_devices(
        &self,
        app: &str,
        user: &str,
    ) -> Result<Vec<(String, u64)>, ClusterError> {
        let key = cursor_key(app, user);
        let map: std::collections::BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.bus.conn.clone())
            .await
            .map_err(|e| ClusterError::command(&self.bus.url, format!("HGETALL {key}"), e))?;
        Ok(map.into_iter().collect())
    }
}

/// XRANGE's reply: `[[id, [field, value, …]], …]`.
fn parse_range(reply: Value) -> Option<Vec<MailboxEntry>> {
    stream_entries(reply, |seq, fields| {
        let (mut delivered, mut exclude_device) = (None, None);
        for (k, v) in fields {
            match k.as_slice() {
                b"d" => delivered = Some(Bytes::from(bytes_of(v)?)),
                b"x" => exclude_device = Some(String::from_utf8(bytes_of(v)?).ok()?),
                _ => {}
            }
        }
        Some(MailboxEntry {
            seq,
            delivered: delivered?,
            exclude_device,
        })
    })
}

/// The entries of an XRANGE reply whose ids are `<n>-0` (rcall's streams number their entries
/// themselves), each made by `entry(n, fields)`; None if the reply or any entry is malformed.
pub(super) fn stream_entries<T>(
    reply: Value,
    mut entry: impl FnMut(u64, Vec<(Vec<u8>, Value)>) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            return None;
        };
        if pair.len() != 2 {
            return None;
        }
        let fields = pair.pop()?;
        let id = bytes_of(pair.pop()?)?;
        let n = std::str::from_utf8(&id)
            .ok()?
            .strip_suffix("-0")?
            .parse()
            .ok()?;
        let flat: Vec<Value> = match fields {
            Value::Array(v) => v,
            Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return None,
        };
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((bytes_of(k)?, v));
        }
        out.push(entry(n, pairs)?);
    }
    Some(out)
}

pub(super) fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_bad_ones_are_errors() {
        let d = UserEvent::decode(&Bytes::from_static(b"D 17 ab12.5\n\x08\x11rest")).unwrap();
        assert_eq!(
            d,
            UserEvent::Deliver {
                seq: 17,
                skip: Some(ConnRef {
                    node: NodeId("ab12".into()),
                    conn: 5
                }),
                delivered: Bytes::from_static(b"\x08\x11rest"),
            }
        );
        let d = UserEvent::decode(&Bytes::from_static(b"D 18 \n")).unwrap();
        assert!(matches!(
            d,
            UserEvent::Deliver {
                seq: 18,
                skip: None,
                ..
            }
        ));
        let r = UserEvent::decode(&Bytes::from_static(b"R 99 ff.1 7 AB-CD")).unwrap();
        assert_eq!(
            r,
            UserEvent::Reply {
                conn: ConnRef {
                    node: NodeId("ff".into()),
                    conn: 1
                },
                request_id: 7,
                sent_time: 99,
                message_uid: "AB-CD".into()
            }
        );
        let dup = UserEvent::decode(&Bytes::from_static(b"R 99 ff.1 7 ")).unwrap();
        assert!(matches!(dup, UserEvent::Reply { ref message_uid, .. } if message_uid.is_empty()));
        for bad in [
            &b""[..],
            b"X",
            b"D 1 x",
            b"D x \n",
            b"D 1 zz.1\n",
            b"D 1 a b\n",
            b"R 1 ff.1 7",
            b"R 1 ff 7 u",
            b"R 1 ff.1 -7 u",
        ] {
            assert!(
                UserEvent::decode(&Bytes::from(bad.to_vec())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_copy_with_its_reply_marker_is_two_events() {
        let p = Bytes::from_static(b"D 17 ab12.5 99 7 AB-CD\n\x08\x11rest");
        let conn = ConnRef {
            node: NodeId("ab12".into()),
            conn: 5,
        };
        let (d, r) = UserEvent::decode_pair(&p).unwrap();
        assert_eq!(
            d,
            UserEvent::Deliver {
                seq: 17,
                skip: Some(conn.clone()),
                delivered: Bytes::from_static(b"\x08\x11rest"),
            }
        );
        assert_eq!(
            r,
            Some(UserEvent::Reply {
                conn,
                request_id: 7,
                sent_time: 99,
                message_uid: "AB-CD".into()
            })
        );
        assert_eq!(UserEvent::decode_all(&p).unwrap().len(), 2);
        assert!(UserEvent::decode(&p).is_err(), "two events");
        for bad in [
            &b"D 17  99 7 u\n"[..],
            b"D 17 ab.5 99 7\n",
            b"D 17 ab.5 99 x u\n",
            b"D 17 ab.5 x 7 u\n",
            b"D 17 ab.5 99 7 u v\n",
        ] {
            assert!(
                UserEvent::decode_pair(&Bytes::from(bad.to_vec())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_share_the_app_tag_and_escape_users() {
        let app = "a{1}";
        let tag = keys::slot(&keys::user_seq(app, "u"));
        for k in [
            mailbox_key(app, "u:x"),
            cursor_key(app, "u}"),
            upto_key(app, "u", "d:1", 42),
            sent_time_key(app),
            user_channel(app, "u{"),
        ] {
            assert_eq!(keys::slot(&k), tag, "{k}");
        }
        assert_eq!(mailbox_key("app", "a:b"), "rcall:{app}:mbox:a%3Ab");
        assert_eq!(user_channel("app", "bob"), "rcall:{app}:ch:u:bob");
        assert_ne!(
            upto_key("app", "u", "d:1", 2),
            upto_key("app", "u:d", "1", 2)
        );
    }
}
