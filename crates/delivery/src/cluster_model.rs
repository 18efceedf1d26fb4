//! An in-memory model of cluster mode's Redis side (docs/cluster.md, "Sans-IO"): the per-user
//! mailboxes, the `route` script and the `ack` script of `crates/server/src/cluster/` with the
//! same semantics, so the simulator can run several nodes (each its own [`crate::AppCore`])
//! over it, and the server's tests can check the Lua scripts against it.
//!
//! What it keeps, as the scripts do: the app's last `sent_time`; per (user, device, instance)
//! the highest accepted `client_seq` (`upto`); per user the last `seq`, the mailbox (seq →
//! encoded `Delivered`, with the sending device on the sender's own copy, stored only while the
//! sender has another known device) and the device cursors. Every route is one atomic step, like a script: it returns what the script returns
//! and the channel publishes in the script's order (each copy on its user's channel, then the
//! sender's reply marker on the sender's channel, behind the sender's own copy).
//!
//! It also keeps the app's **rooms log** (`rcall:{app}:rooms:log`, docs/cluster.md "Step 3,
//! rooms": events numbered `n + 1`, the first one at the clock in µs; a call message's event
//! appended by the route script itself, [`ClusterModel::route_call`]; others by the append
//! script, [`ClusterModel::rooms_append`]) and the **node heartbeats** (`rcall:{nodes}:live`,
//! [`ClusterModel::beat`]).
//!
//! Differences from Redis, on purpose: the clock is the caller's (`now_us`, Redis's `TIME`);
//! trimming by count is exact (Redis's `MAXLEN ~` keeps at least `max_len`, whole stream
//! nodes); keys never expire (the scripts' TTLs are a week); the message UID is the caller's
//! (the server's `Mailboxes` makes it).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use prost::Message as _;
use rtc_core::proto::Delivered;

use crate::rooms::RoomsEvent;

/// One connection of one node: where a reply goes, which connection a live copy skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeConn {
    pub node: u64,
    pub conn: u64,
}

/// One message to route ([`ClusterModel::route`]), as `Mailboxes::route` takes it.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub user: String,
    pub device: String,
    /// `Authenticate.instance` (0 = untracked).
    pub instance: u64,
    pub conn: NodeConn,
    /// `SendMessage.client_seq` (0 = untracked).
    pub client_seq: u64,
    /// Publish the sender's reply marker with this request id.
    pub request_id: Option<u32>,
    /// The message as recipients see it (`conversation_type`, `target_id`, `channel_id`,
    /// `message_type`, `content` are used; the rest is the route's).
    pub message: Delivered,
    /// Distinct users other than the sender, each with its copy's `offline` flag.
    pub recipients: Vec<(String, bool)>,
    /// The sender's own copy for its other devices: (target id as addressed, offline).
    pub own_copy: Option<(String, bool)>,
    /// No seq below this (µs).
    pub floor_us: u64,
    pub message_uid: String,
}

/// What the route did (the script's reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRouted {
    Accepted {
        sent_time: i64,
        /// Each recipient's seq, in [`ModelRoute::recipients`] order.
        seqs: Vec<(String, u64)>,
        own_seq: Option<u64>,
    },
    /// `client_seq` was accepted before from this instance: nothing was routed.
    Duplicate { sent_time: i64, upto: u64 },
}

/// What a user channel carries (`UserEvent` on the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A copy for the user's live connections, but `skip` (the sending connection).
    Deliver { seq: u64, skip: Option<NodeConn>, delivered: Bytes },
    /// The sender's `SendResult` (code 0) for `conn`; an empty `message_uid` is a duplicate's.
    Reply { conn: NodeConn, request_id: u32, sent_time: i64, message_uid: String },
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub seq: u64,
    /// The encoded `Delivered` (its `seq` is `seq`).
    pub delivered: Bytes,
    /// The sending device, on the sender's own copy: never replayed to it.
    pub exclude_device: Option<String>,
}

/// The ack script's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelAcked {
    pub cursor: u64,
    pub lowest: u64,
    pub trimmed: u64,
}

/// One entry of the rooms log (and its publication on the rooms channel).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomsEntry {
    pub n: u64,
    /// The script's clock (ms): `sent_time` for a call message.
    pub t_ms: i64,
    pub event: RoomsEvent,
}

/// A route's call-message parts ([`ClusterModel::route_call`]).
#[derive(Debug, Clone, Default)]
pub struct CallParts {
    /// The sender's own copy goes to its sending device too (the hangup a node sends on a gone
    /// device's behalf: `OwnCopy::all_devices`).
    pub own_all_devices: bool,
    /// The call message's rooms event, appended to the rooms log in the script.
    pub rooms_event: Option<RoomsEvent>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ClusterModel {
    /// Entries per mailbox (`MailboxLimits::max_len`).
    pub max_len: usize,
    /// Entries older than this (µs by seq) are trimmed at the next route to that mailbox.
    pub max_age_us: u64,
    sent: i64,
    upto: HashMap<(String, String, u64), u64>,
    seqs: HashMap<String, u64>,
    mailboxes: HashMap<String, BTreeMap<u64, ModelEntry>>,
    cursors: HashMap<String, BTreeMap<String, u64>>,
    rooms_log: Vec<RoomsEntry>,
    /// Node id → heartbeat deadline (ms).
    live: BTreeMap<String, i64>,
}

impl Default for ClusterModel {
    /// The server's default limits (1,000 entries, a week).
    fn default() -> Self {
        Self::new(1000, 7 * 24 * 3600 * 1_000_000)
    }
}

impl ClusterModel {
    pub fn new(max_len: usize, max_age_us: u64) -> Self {
        Self {
            max_len,
            max_age_us,
            sent: 0,
            upto: HashMap::new(),
            seqs: HashMap::new(),
            mailboxes: HashMap::new(),
            cursors: HashMap::new(),
            rooms_log: Vec::new(),
            live: BTreeMap::new(),
        }
    }

    /// `route.lua`: returns its reply and the publishes, in order, as (user channel, event).
    pub fn route(&mut self, now_us: u64, r: &ModelRoute) -> (ModelRouted, Vec<(String, ChannelEvent)>) {
        let (routed, published, _) = self.route_call(now_us, r, CallParts::default());
        (routed, published)
    }

    /// [`Self::route`] with a call message's parts: its rooms event, appended to the rooms log
    /// when the message is accepted (in script order: the order of the deliveries), stamped
    /// with its `sent_time`, and returned for the rooms channel.
    pub fn route_call(
        &mut self,
        now_us: u64,
        r: &ModelRoute,
        call: CallParts,
    ) -> (ModelRouted, Vec<(String, ChannelEvent)>, Option<RoomsEntry>) {
        let (routed, published) = self.route_copies(now_us, r, call.own_all_devices);
        let entry = match (&routed, call.rooms_event) {
            (ModelRouted::Accepted { sent_time, .. }, Some(event)) => Some(self.push_rooms(now_us, *sent_time, event)),
            _ => None,
        };
        (routed, published, entry)
    }

    /// The rooms append script (`cluster/rooms.rs`, `APPEND`): numbered `n + 1`, the first at
    /// the clock (µs), stamped with the clock (ms).
    pub fn rooms_append(&mut self, now_us: u64, event: RoomsEvent) -> RoomsEntry {
        self.push_rooms(now_us, (now_us / 1000) as i64, event)
    }

    fn push_rooms(&mut self, now_us: u64, t_ms: i64, event: RoomsEvent) -> RoomsEntry {
        let n = self.rooms_log.last().map_or(now_us, |e| e.n + 1);
        let entry = RoomsEntry { n, t_ms, event };
        self.rooms_log.push(entry.clone());
        entry
    }

    /// The rooms log's entries above `n`, in order (the model keeps the whole log).
    pub fn rooms_log_above(&self, n: u64) -> &[RoomsEntry] {
        let i = self.rooms_log.partition_point(|e| e.n <= n);
        &self.rooms_log[i..]
    }

    /// The rooms log's last number (its counter), 0 before any event.
    pub fn rooms_last(&self) -> u64 {
        self.rooms_log.last().map_or(0, |e| e.n)
    }

    /// The heartbeat script (`cluster/presence.rs`): `node`'s deadline becomes now + 3
    /// periods; every node whose deadline passed is taken out and returned, to this node only
    /// (scripts run one at a time: each dead node is claimed once).
    pub fn beat(&mut self, now_ms: i64, node: &str, period_ms: i64) -> Vec<String> {
        self.live.insert(node.to_owned(), now_ms + 3 * period_ms);
        let dead: Vec<String> = self.live.iter().filter(|(_, d)| **d < now_ms).map(|(n, _)| n.clone()).collect();
        for n in &dead {
            self.live.remove(n);
        }
        dead
    }

    /// The nodes in the heartbeat set, lowest id first.
    pub fn live_nodes(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    fn route_copies(&mut self, now_us: u64, r: &ModelRoute, own_all_devices: bool) -> (ModelRouted, Vec<(String, ChannelEvent)>) {
        let now_ms = (now_us / 1000) as i64;
        let mut published = Vec::new();
        let marker = |sent_time: i64, uid: &str| {
            r.request_id.map(|request_id| {
                (r.user.clone(), ChannelEvent::Reply { conn: r.conn, request_id, sent_time, message_uid: uid.to_owned() })
            })
        };
        // 1. Exactly once.
        let key = (r.user.clone(), r.device.clone(), r.instance);
        let tracked = r.instance != 0 && r.client_seq != 0;
        let client_seq = if tracked { r.client_seq } else { 0 };
        if client_seq > 0 {
            let upto = self.upto.get(&key).copied().unwrap_or(0);
            if client_seq <= upto {
                published.extend(marker(now_ms, ""));
                return (ModelRouted::Duplicate { sent_time: now_ms, upto }, published);
            }
        }
        // 2. sent_time never goes backwards within the app.
        let sent = now_ms.max(self.sent);
        self.sent = sent;
        // 3-4. Per copy: seq, mailbox, publish.
        // Per copy: (user, target id, offline, skipped connection, excluded device).
        type Copy<'a> = (&'a str, &'a str, bool, Option<NodeConn>, Option<&'a str>);
        let mut copies: Vec<Copy<'_>> =
            r.recipients.iter().map(|(u, offline)| (u.as_str(), r.message.target_id.as_str(), *offline, None, None)).collect();
        if let Some((target, offline)) = &r.own_copy {
            let exclude = if own_all_devices { None } else { Some(r.device.as_str()) };
            copies.push((r.user.as_str(), target.as_str(), *offline, Some(r.conn), exclude));
        }
        let min_id = now_us.saturating_sub(self.max_age_us);
        let mut seqs = Vec::with_capacity(copies.len());
        for (user, target, offline, skip, exclude) in copies {
            let last = self.seqs.get(user).copied().unwrap_or(0);
            let seq = (last + 1).max(now_us).max(r.floor_us);
            self.seqs.insert(user.to_owned(), seq);
            let delivered = Delivered {
                seq,
                message_uid: r.message_uid.clone(),
                sender_user_id: r.user.clone(),
                sender_device_id: r.device.clone(),
                conversation_type: r.message.conversation_type,
                target_id: target.to_owned(),
                channel_id: r.message.channel_id.clone(),
                message_type: r.message.message_type.clone(),
                content: r.message.content.clone(),
                sent_time: sent,
                offline,
                sender_instance: if tracked { r.instance } else { 0 },
                client_seq,
            };
            let delivered = Bytes::from(delivered.encode_to_vec());
            // The sender's own copy is for its other devices: stored only when it has one.
            let store = exclude.is_none_or(|d| self.cursors.get(user).is_some_and(|c| c.keys().any(|k| k != d)));
            if store {
                let mbox = self.mailboxes.entry(user.to_owned()).or_default();
                mbox.insert(seq, ModelEntry { seq, delivered: delivered.clone(), exclude_device: exclude.map(str::to_owned) });
                while mbox.len() > self.max_len {
                    mbox.pop_first();
                }
                while mbox.first_key_value().is_some_and(|(s, _)| *s < min_id) {
                    mbox.pop_first();
                }
            }
            published.push((user.to_owned(), ChannelEvent::Deliver { seq, skip, delivered }));
            seqs.push((user.to_owned(), seq));
        }
        // 5. Record the client_seq, then the reply marker behind every copy.
        if client_seq > 0 {
            self.upto.insert(key, client_seq);
        }
        published.extend(marker(sent, &r.message_uid));
        let own_seq = r.own_copy.as_ref().map(|_| seqs.pop().expect("own copy").1);
        (ModelRouted::Accepted { sent_time: sent, seqs, own_seq }, published)
    }

    /// `ack.lua`: `device`'s cumulative ack (capped at what was issued), then the mailbox is
    /// trimmed to the lowest cursor of the user's known devices.
    pub fn ack(&mut self, now_us: u64, user: &str, device: &str, seq: u64) -> ModelAcked {
        let issued = self.seqs.get(user).copied().unwrap_or(0);
        let seq = seq.min(issued.max(now_us));
        let cursors = self.cursors.entry(user.to_owned()).or_default();
        let mut cursor = cursors.get(device).copied().unwrap_or(0);
        if seq > cursor {
            cursor = seq;
            cursors.insert(device.to_owned(), cursor);
        }
        let lowest = cursors.values().copied().fold(cursor, u64::min);
        if cursors.is_empty() {
            self.cursors.remove(user);
        }
        let mut trimmed = 0;
        if let Some(mbox) = self.mailboxes.get_mut(user) {
            while mbox.first_key_value().is_some_and(|(s, _)| *s <= lowest) {
                mbox.pop_first();
                trimmed += 1;
            }
        }
        ModelAcked { cursor, lowest, trimmed }
    }

    /// `Mailboxes::register_device`: `device` becomes a known device of `user` with cursor
    /// `initial` unless it is known; returns its cursor.
    pub fn register_device(&mut self, user: &str, device: &str, initial: u64) -> u64 {
        *self.cursors.entry(user.to_owned()).or_default().entry(device.to_owned()).or_insert(initial)
    }

    /// `user`'s known devices and their cursors, sorted by device.
    pub fn known_devices(&self, user: &str) -> Vec<(String, u64)> {
        self.cursors.get(user).map(|c| c.iter().map(|(d, s)| (d.clone(), *s)).collect()).unwrap_or_default()
    }

    /// Up to `limit` entries of `user`'s mailbox above `seq`, in seq order.
    pub fn read_above(&self, user: &str, seq: u64, limit: usize) -> Vec<ModelEntry> {
        self.mailboxes.get(user).map(|m| m.range(seq.saturating_add(1)..).take(limit).map(|(_, e)| e.clone()).collect()).unwrap_or_default()
    }

    /// The user's last seq, if any was issued.
    pub fn last_seq(&self, user: &str) -> Option<u64> {
        self.seqs.get(user).copied()
    }

    /// The highest accepted `client_seq` of (user, device, instance).
    pub fn upto(&self, user: &str, device: &str, instance: u64) -> u64 {
        self.upto.get(&(user.to_owned(), device.to_owned(), instance)).copied().unwrap_or(0)
    }

    /// Entries in `user`'s mailbox.
    pub fn mailbox_len(&self, user: &str) -> usize {
        self.mailboxes.get(user).map_or(0, BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(m: &mut ClusterModel, now_us: u64, from: &str, to: &[&str], client_seq: u64) -> (ModelRouted, Vec<(String, ChannelEvent)>) {
        let r = ModelRoute {
            user: from.into(),
            device: format!("{from}-d"),
            instance: 7,
            conn: NodeConn { node: 1, conn: 3 },
            client_seq,
            request_id: Some(client_seq as u32),
            message: Delivered { conversation_type: 1, target_id: from.into(), message_type: "RC:X".into(), ..Default::default() },
            recipients: to.iter().map(|u| ((*u).to_owned(), false)).collect(),
            own_copy: Some((to[0].to_owned(), false)),
            floor_us: 0,
            message_uid: format!("uid{client_seq}"),
        };
        m.route(now_us, &r)
    }

    #[test]
    fn seqs_exactly_once_marker_order_and_trimming() {
        let mut m = ClusterModel::default();
        let (r, published) = route(&mut m, 1_000_000, "a", &["b"], 1);
        assert_eq!(r, ModelRouted::Accepted { sent_time: 1000, seqs: vec![("b".into(), 1_000_000)], own_seq: Some(1_000_000) });
        let kinds: Vec<(&str, bool)> = published.iter().map(|(u, e)| (u.as_str(), matches!(e, ChannelEvent::Reply { .. }))).collect();
        assert_eq!(kinds, [("b", false), ("a", false), ("a", true)], "the marker follows the sender's own copy");
        // Same clock: last + 1; the clock going back changes nothing.
        let (r, _) = route(&mut m, 900_000, "a", &["b"], 2);
        assert_eq!(r, ModelRouted::Accepted { sent_time: 1000, seqs: vec![("b".into(), 1_000_001)], own_seq: Some(1_000_001) });
        // A resend: a duplicate, answered through the channel, nothing stored.
        let (r, published) = route(&mut m, 2_000_000, "a", &["b"], 2);
        assert_eq!(r, ModelRouted::Duplicate { sent_time: 2000, upto: 2 });
        assert!(matches!(&published[..], [(u, ChannelEvent::Reply { message_uid, .. })] if u == "a" && message_uid.is_empty()));
        assert_eq!(m.mailbox_len("b"), 2);
        // Trimming waits for every known device.
        m.register_device("b", "b1", 0);
        m.register_device("b", "b2", 0);
        assert_eq!(m.ack(3_000_000, "b", "b1", 1_000_001), ModelAcked { cursor: 1_000_001, lowest: 0, trimmed: 0 });
        assert_eq!(m.ack(3_000_000, "b", "b2", 1_000_000), ModelAcked { cursor: 1_000_000, lowest: 1_000_000, trimmed: 1 });
        assert_eq!(m.read_above("b", 0, 10).iter().map(|e| e.seq).collect::<Vec<_>>(), [1_000_001]);
        // An ack past what was issued is capped (at the clock here).
        assert_eq!(m.ack(3_000_000, "b", "b2", u64::MAX).cursor, 3_000_000);
        // The sender's copy is for its other devices: "a" has none known, so nothing is kept.
        assert_eq!(m.mailbox_len("a"), 0);
        m.register_device("a", "a-d", 0);
        let (_, published) = route(&mut m, 4_000_000, "a", &["b"], 3);
        assert!(published.iter().any(|(u, e)| u == "a" && matches!(e, ChannelEvent::Deliver { .. })), "still published");
        assert_eq!(m.mailbox_len("a"), 0, "the sending device is not another device");
        m.register_device("a", "a-other", 0);
        route(&mut m, 5_000_000, "a", &["b"], 4);
        // Stored for the sibling; the copy carries the sending device.
        assert_eq!(m.read_above("a", 0, 10)[0].exclude_device.as_deref(), Some("a-d"));
        let d = Delivered::decode(&m.read_above("a", 0, 10)[0].delivered[..]).unwrap();
        assert_eq!((d.seq, d.target_id.as_str(), d.client_seq, d.sender_instance), (5_000_000, "b", 4, 7));
    }
}
