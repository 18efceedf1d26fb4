//! A call simulator: several engines (`rtc-core`), rcall's own server delivery core (`delivery`,
//! over an in-memory store) and fake media on one virtual clock. It sits above both: the engine's
//! flow and property tests live here (`tests/`), and nothing ships it.
//!
//! It lets an app developer (and our own tests) run whole CallLib flows natively, without a
//! browser or a network: add devices, give them commands, advance time, read what each device's
//! listeners would have seen.
//!
//! ```
//! use rcall_sim::Sim;
//! use rtc_core::types::{end_reason, MediaType};
//! use rtc_core::engine::CallEvent;
//!
//! let mut sim = Sim::new();
//! let a = sim.add_device("alice");
//! let b = sim.add_device("bob");
//! let call = sim.call(a, "bob", MediaType::AudioVideo);
//! sim.run_for(100);
//! let call_id = sim.result(a, call).unwrap().1.unwrap();
//! let accept = sim.accept(b, &call_id);
//! sim.run_for(100);
//! assert_eq!(sim.result(b, accept).unwrap().0, 10000);
//! sim.hangup(a, &call_id);
//! sim.run_for(100);
//! assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::REMOTE_HANGUP));
//! assert!(sim.events(b).iter().any(|e| matches!(e, CallEvent::Hungup { reason: 13, .. })));
//! ```
//!
//! The server here *is* rcall's: the simulator drives `rcall-server`'s own delivery core
//! ([`delivery::AppCore`], over an in-memory store with the SQLite store's semantics), so the
//! property tests exercise the server's real rules — ordering, resume, exactly-once, policy and
//! call rooms with their graces — not a model of them. Frames take `latency` ms (plus jitter)
//! each way; a device's frames stay in order, like one WebSocket.
//!
//! Connections and faults (issue 10). Each device talks to the server through a
//! [`ClientLink`] (numbering, queue while down, resend after a reconnect, delivery dedup), over
//! a "socket" that faults can break: [`Sim::drop_connection`] (closed: both sides know, frames in
//! flight are lost), [`Sim::silent_loss`] (nothing flows and nobody is told: the client notices
//! after [`CLIENT_DEAD_AFTER_MS`], the server after [`SERVER_DEAD_AFTER_MS`]),
//! [`Sim::close_tab`] (gone for good) and [`Sim::restart_server`]. The server keeps what it
//! routes to each device until the device has it (durable, so it survives a restart) and replays
//! it on reconnect from the device's resume cursor, flagged `offline` when no device of the
//! recipient was connected; it accepts each `client_seq` once per (device, instance). It
//! follows who is in which call and ends the calls of a device gone for [`CLEAN_GRACE_MS`]
//! (closed cleanly) or [`LOST_GRACE_MS`] (lost) with a Hangup on the device's behalf, to the
//! others and to the device itself (reason 3, or 1 before anyone answered, when clean; 7 when
//! lost). A restart is the server's graceful one: connections close, what it kept in memory
//! (the window, rooms) is gone, what it stored is not; calls are learned again from their
//! traffic.
//!
//! Several nodes (issue 15, docs/cluster.md "Sans-IO"): [`Sim::cluster`] runs `n` server
//! nodes, each its own `AppCore`, over [`delivery::cluster_model::ClusterModel`], the in-memory
//! model of the Redis side (mailboxes, the route and ack scripts, channel publishes), wired as
//! `crates/server/src/cluster/` wires the real ones, each node's call rooms a replica fed by the
//! model's rooms log; [`Sim::bus_latency`], [`Sim::rooms_latency`] and [`Sim::redis_latency`]
//! put the network between them, and [`Sim::kill_node`] loses a node's memory at once (its
//! clients reconnect elsewhere; another node takes its id out). One node (the default) is the
//! server as it runs without `--redis`.
//!
//! Groups: the simulated app makes every user a group message names (and its sender) a member
//! of that group, as an app would through the Server API before calling.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use delivery::cluster_model::{CallParts, ChannelEvent, ClusterModel, ModelRoute, ModelRouted, NodeConn, RoomsEntry};
use delivery::memory::{Effect, MemoryShell, MemoryStore};
use delivery::rooms::RoomsEvent;
use delivery::rooms_node::{Position, RoomsNode};
use delivery::{Admission, AppCore, ConnId, Departure, Limits, Now, Origin, Outgoing, RouteOptions, StoredMessage, SyncData};
use prost::Message as _;

use rtc_core::engine::{
    CallEvent, CallRequest, CaptureError, Command, CommandId, Engine, EngineConfig, Input, LinkState, MediaAction, MediaEvent, Millis,
    OutgoingSignal, Output, Peer, Received, TrackKind,
};
use rtc_core::link::ClientLink;
use rtc_core::proto::call_content::Body;
use rtc_core::proto::{client_frame, conversation_type, media_signal, server_frame, Ack, CallContent, ClientFrame, Delivered, ServerFrame};
use rtc_core::types::MediaType;

/// Index of a device in the simulation.
pub type DeviceId = usize;

/// A device that closed cleanly is declared gone this long after (its page is closed for good).
pub const CLEAN_GRACE_MS: Millis = 1_000;
/// A device whose connection was lost gets this long to come back before its calls end.
pub const LOST_GRACE_MS: Millis = 5_000;
/// The server notices a silently dead connection this long after its last traffic (pings).
pub const SERVER_DEAD_AFTER_MS: Millis = 15_000;
/// A client notices a silently dead connection this long after it last heard from the server.
pub const CLIENT_DEAD_AFTER_MS: Millis = 10_000;
/// Cluster mode: how often each node beats (the server's default `node_heartbeat_ms`); a node
/// that missed 3 beats is taken out by the next live node to beat.
pub const HEARTBEAT_MS: Millis = 1_000;

/// Something a device's engine produced, with the virtual time it happened.
#[allow(clippy::large_enum_variant)] // test records, kept whole for easy matching
#[derive(Debug, Clone)]
pub enum Logged {
    Event(CallEvent),
    Media(MediaAction),
    Sent(OutgoingSignal),
    Done {
        command: CommandId,
        code: i32,
        call_id: Option<String>,
    },
    /// The shell told the engine the connection went down (`LinkDown`) or came back (`LinkUp`).
    Link {
        up: bool,
    },
}

struct Device {
    user_id: String,
    device_id: String,
    engine: Engine,
    log: Vec<(Millis, Logged)>,
    deadline: Option<Millis>,
    /// When set, the next captures fail this way.
    capture_error: Option<CaptureError>,
    /// Kinds captured per call, for the fake media exchange.
    local_kinds: BTreeMap<String, Vec<TrackKind>>,
    link: ClientLink,
    /// Messages handed to the link so far (= the highest `client_seq` it numbered).
    sends: u64,
    /// The current socket; frames of an older one are lost.
    wire: u64,
    /// Silent loss: nothing flows on the current socket, and nobody has noticed yet.
    silent_until: Option<Millis>,
    silent_since: Millis,
    /// The tab is closed: nothing reaches or leaves this device any more.
    closed: bool,
    /// Highest server `seq` processed (the resume cursor).
    processed_seq: u64,
    /// A reconnect is scheduled.
    reconnecting: bool,
    /// Cluster mode: the node its next connection goes to (else one at random).
    next_node: Option<usize>,
}

/// The server's view of one device: its registered connections by socket.
#[derive(Default)]
struct ServerDevice {
    /// The socket the server last accepted from it (the device's `wire` at its last connect).
    wire: u64,
    /// Registered connections the server believes alive: socket → connection id.
    conns: BTreeMap<u64, ConnId>,
    /// Cluster mode: the connection on this socket waits for its node's rooms replica to catch
    /// up before it admits a message again ([`Recheck`]); its later frames wait here, unread.
    waiting: Option<(u64, Vec<ClientFrame>)>,
}

/// One server node: its own delivery core over its own local store. Single-node mode has one;
/// cluster mode ([`Sim::cluster`]) several, over the shared [`ClusterModel`].
struct Node {
    core: AppCore<Conn>,
    store: MemoryStore,
    /// Kills so far.
    life: u64,
    /// Its subscriber connections so far (a kill or a [`Sim::bus_gap`] starts new ones): channel
    /// events on their way to an earlier one are lost.
    sub: u64,
    /// Its subscribers are reconnecting until then: what is published meanwhile is lost to it.
    deaf_until: Millis,
    /// Route results of its connections whose reply marker has not come yet (`Replies`):
    /// answered at the next resync if it does not.
    /// Each with its user and the seq of the sender's own copy (0: none), which its marker
    /// follows.
    pending_replies: BTreeMap<(ConnId, u32), (String, rtc_core::proto::SendResult, u64)>,
    /// Cluster mode: users with connections here, and how many (the node's user-channel
    /// subscriptions: subscribed with the first, dropped with the last).
    held: BTreeMap<String, usize>,
    /// Connection → its user, for the connections that took part in `held`.
    holding: BTreeMap<ConnId, String>,
    /// When the last channel event reaches this node (one subscriber connection: in order).
    last_bus: Millis,
    /// Cluster mode: its side of the replicated rooms (connections per device, how far its
    /// replica applied the rooms log); named `n<index>.<life>`, a restarted node being a new
    /// node as a new server process is.
    rooms: RoomsNode,
    /// When the last rooms event reaches this node (its own subscriber connection).
    last_rooms: Millis,
    /// Messages its replica refused as not in the call, waiting for it to catch up.
    rechecks: Vec<Recheck>,
}

impl Node {
    fn new(core: AppCore<Conn>, name: &str) -> Self {
        Self {
            core,
            store: MemoryStore::new(),
            life: 0,
            sub: 0,
            deaf_until: 0,
            pending_replies: BTreeMap::new(),
            held: BTreeMap::new(),
            holding: BTreeMap::new(),
            last_bus: 0,
            rooms: RoomsNode::new(name),
            last_rooms: 0,
            rechecks: Vec::new(),
        }
    }
}

/// A node's name in the rooms log and the heartbeats.
fn node_name(node: usize, life: u64) -> String {
    format!("n{node}.{life}")
}

/// A call message a node's rooms replica refused `NOT_IN_CALL`, admitted again once the replica
/// applied every event the log had when it was refused (`ws.rs::recheck`, `RoomsSync::caught_up`):
/// what made its sender a participant may have reached the sender before its event reached
/// this replica. The connection reads nothing else meanwhile.
struct Recheck {
    target: u64,
    dev: DeviceId,
    wire: u64,
    conn: ConnId,
    msg: rtc_core::proto::SendMessage,
}

/// A route script on its way to Redis (cluster mode).
struct SimRoute {
    /// The sending device (for a gone device's hangup: that device).
    from: DeviceId,
    /// The users the message named.
    named: Vec<String>,
    route: ModelRoute,
    call: CallParts,
}

/// A cluster-mode connection between its registration and its replay (see
/// [`Sim::redis_latency`]).
struct Syncing {
    node: usize,
    life: u64,
    /// The connecting page (`Authenticate.instance`).
    instance: u64,
    reg: delivery::Registered,
    /// Its frames so far (the `AuthResult`): the connection's writer starts after the replay.
    held_back: Vec<(Conn, Effect)>,
    /// A paged replay past its first page ([`Sim::replay_page`]): where the next page starts.
    next_page: Option<NextPage>,
}

/// Where a paged replay stands between two page reads (`ws.rs::cluster_session`'s loop).
#[derive(Clone, Copy)]
struct NextPage {
    /// The device's cursor in Redis when its replay opened.
    acked: u64,
    /// The next page reads above this (the last seq of the page before).
    above: u64,
}

/// A frame from the server to a device.
#[allow(clippy::large_enum_variant)] // short-lived simulator values, moved once
enum Down {
    Auth { accepted_upto: u64 },
    Deliver { delivered: Delivered, server_time: Millis },
    SendResult { request_id: u32, code: i32, sent_time: Millis, server_time: Millis },
    SyncDone,
}

/// A connection as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn {
    dev: DeviceId,
    id: ConnId,
}

/// The server's limits in the simulation: the production defaults, except a resume window that
/// keeps everything a run routes (runs are short; the window's bounds are the server's own
/// tests' business) and no rate or connection caps.
fn sim_limits() -> Limits {
    Limits {
        offline_ttl_ms: 7 * 24 * 3_600_000,
        offline_max_per_user: 10_000,
        window_ttl: Duration::from_secs(24 * 3_600),
        window_max: 100_000,
        max_connections_per_app: usize::MAX,
        left_grace: Duration::from_millis(CLEAN_GRACE_MS as u64),
        lost_grace: Duration::from_millis(LOST_GRACE_MS as u64),
        max_connections_per_user: usize::MAX,
        max_connections_per_device: usize::MAX,
        user_rate_per_sec: u32::MAX,
        user_rate_burst: u32::MAX,
        offline_quota_per_sender: u32::MAX,
        offline_quota_window: Duration::from_secs(60),
        offline_max_bytes: u64::MAX,
        store_queue_max: usize::MAX,
    }
}

/// The policy a core holds, as rows to load into another (the simulated app only makes groups).
fn policy_rows(core: &AppCore<Conn>) -> delivery::PolicyRows {
    let mut rows = delivery::PolicyRows::default();
    for (group, members) in &core.policy().groups {
        rows.groups.push(group.clone());
        rows.members.extend(members.iter().map(|m| (group.clone(), m.clone())));
    }
    rows
}

/// Something due at a virtual time.
#[allow(clippy::large_enum_variant)] // short-lived simulator values, moved once
enum Event {
    /// Feed this input to this device (media, local).
    Deliver(DeviceId, Input),
    /// A frame reaches the device, if its socket is still `wire`.
    ToDevice(DeviceId, u64, Down),
    /// A device's frame reaches the server, if the socket is still `wire`.
    AtServer(DeviceId, u64, ClientFrame),
    /// The server's ping deadline for socket `wire` of a silent device; `gen` tells server runs
    /// apart across restarts.
    Notice {
        gen: u64,
        dev: DeviceId,
        wire: u64,
    },
    /// Client side: notices the silent loss of socket `wire`.
    Detect(DeviceId, u64),
    Reconnect(DeviceId),
    /// Cluster mode, with [`Sim::redis_latency`]: a connecting device's node subscribes to its
    /// user's channel, then reads its replay from the mailbox.
    Hold(Box<Syncing>),
    SyncRead(Box<Syncing>),
    /// The route script runs (sent by `from`'s node one Redis hop earlier; it runs even if that
    /// node died meanwhile: Redis had it).
    Route(Box<SimRoute>),
    /// A rooms event reaches Redis's append script (cluster mode).
    RoomsAppend(RoomsEvent),
    /// A rooms event reaches `node`'s replica, unless the node died meanwhile.
    RoomsBus {
        node: usize,
        sub: u64,
        entry: RoomsEntry,
    },
    /// `node`'s subscribers are back after a [`Sim::bus_gap`]: it resyncs.
    Resync {
        node: usize,
        sub: u64,
    },
    /// `node` beats ([`HEARTBEAT_MS`]) and takes out the nodes whose beats stopped.
    Beat {
        node: usize,
        life: u64,
    },
    /// A device's ack reaches Redis.
    RedisAck {
        user: String,
        device: String,
        seq: u64,
    },
    /// A user-channel event reaches `node` (cluster mode), unless the node died meanwhile.
    Bus {
        node: usize,
        sub: u64,
        user: String,
        event: ChannelEvent,
    },
    /// The device has been down for SELF_CUTOFF_MS: it must have no live call now.
    CutoffProbe(DeviceId, u64),
    /// A peer got the server's verdict about `gone`: it must not count `gone` in `call` now.
    VerdictProbe {
        dev: DeviceId,
        wire: u64,
        call_id: String,
        gone_user: String,
    },
}

/// A check the simulator made at the moment it applies (see [`Sim::checks`]).
#[derive(Debug, Clone)]
pub struct Check {
    pub at: Millis,
    pub dev: DeviceId,
    /// `"cutoff"`: down for `SELF_CUTOFF_MS`, no live call may remain; `"verdict"`: the gone
    /// user must be out of the call (or the call over) once the server's Hangup arrived.
    pub what: &'static str,
    pub call_id: Option<String>,
    pub ok: bool,
}

/// Exactly-once accounting over a run (see [`Sim::delivery_report`]).
#[derive(Debug, Default, Clone)]
pub struct DeliveryReport {
    /// (device, sender instance, client_seq) fed to an engine more than once.
    pub duplicates: Vec<(DeviceId, u64, u64)>,
    /// Routed by the server to a device (not closed) that never fed it to its engine.
    pub missing: Vec<(DeviceId, u64, u64)>,
    /// Devices (not closed) whose messages the server did not all accept: (device, sent, accepted).
    pub unsent: Vec<(DeviceId, u64, u64)>,
    /// Messages fed to engines (tracked ones).
    pub fed: usize,
    /// Repeats dropped by the devices' `ClientLink` dedup / by the server's.
    pub dropped_by_receivers: usize,
    pub dropped_by_server: usize,
}

/// One listener event as a short line (see [`Sim::timeline`]).
pub fn describe(e: &CallEvent) -> String {
    match e {
        CallEvent::Session { .. } => "Session".to_string(),
        CallEvent::Ringing { sender, .. } => format!("Ringing({})", sender.user_id),
        CallEvent::Accept { sender, .. } => format!("Accept({})", sender.user_id),
        CallEvent::Hungup { sender, reason, .. } => format!("Hungup({},{reason})", sender.user_id),
        CallEvent::TrackReady { track, with_session, .. } => {
            format!("Track({}/{:?}{})", track.user_id, track.kind, if *with_session { "" } else { ",nosession" })
        }
        CallEvent::SessionClosed { summary, .. } => format!("Close({})", summary.end_reason),
        CallEvent::MemberModify { sender, invited, .. } => {
            let ids: Vec<&str> = invited.iter().map(|s| s.user_id.as_str()).collect();
            format!("MemberModify({},[{}])", sender.user_id, ids.join(","))
        }
        CallEvent::MediaModify { sender, media_type, .. } => format!("MediaModify({},{})", sender.user_id, *media_type as i32),
        CallEvent::OfflineRecord(r) => format!("OfflineRecord({},{})", r.inviter_id, r.end_reason),
        CallEvent::Merged { .. } => "Merged".to_string(),
        CallEvent::PublishFail { code, .. } => format!("PublishFail({code})"),
        CallEvent::SubscribeFail { code, .. } => format!("SubscribeFail({code})"),
        CallEvent::MuteChange { user_id, kind, muted, .. } => {
            format!(
                "{}({user_id},{})",
                if *kind == TrackKind::Video { "VideoMute" } else { "AudioMute" },
                if *muted { "muted" } else { "unmuted" }
            )
        }
    }
}

/// See the module docs.
pub struct Sim {
    now: Millis,
    /// Added to the virtual clock to get the server's clock (tests clock skew).
    pub server_skew: Millis,
    /// One-way delay between a device and the server, in ms.
    pub latency: Millis,
    /// How long a capture takes, in ms.
    pub capture_delay: Millis,
    /// Extra random delay, 0..=jitter ms, added to each hop (the server still delivers each
    /// device's messages in the order it accepted them).
    pub jitter: Millis,
    /// Probability that one delivery to one device is lost (never duplicated).
    pub loss: f64,
    /// How long a client takes to reconnect once it can (after a silent loss or a restart).
    pub reconnect_delay: Millis,
    devices: Vec<Device>,
    /// Pending events: (due time, sequence, event), processed in order.
    queue: Vec<(Millis, u64, Event)>,
    seq: u64,
    rng: u64,
    /// Last delivery time per device, to keep each device's deliveries in server order.
    last_delivery: Vec<Millis>,
    /// Last arrival at the server per device: a device's sends reach the server in the order
    /// sent (one WebSocket, i.e. TCP), whatever the jitter.
    last_upload: Vec<Millis>,
    /// Deliveries dropped by `loss`.
    pub lost: usize,
    /// Open fake peer links: (device, call, peer) → negotiates video.
    links: BTreeMap<(DeviceId, String, Peer), bool>,
    /// Links whose first offer/answer completed (later ones, e.g. ICE restarts, add no tracks).
    negotiated: BTreeSet<(DeviceId, String, Peer)>,
    /// Every `RestartIce` asked for: (time, device, call, peer).
    pub restarts: Vec<(Millis, DeviceId, String, Peer)>,
    next_command: CommandId,
    next_call: u64,
    // ----- the server ---------------------------------------------------------------------
    /// rcall-server's nodes, each its own delivery core (rebuilt by a restart over the same
    /// store); one unless [`Sim::cluster`].
    nodes: Vec<Node>,
    /// Cluster mode: the shared Redis side (mailboxes, the route and ack scripts).
    model: Option<ClusterModel>,
    /// The node of every connection.
    conn_node: BTreeMap<ConnId, usize>,
    /// Cluster mode: how long a channel publish takes to reach a node, in ms.
    pub bus_latency: Millis,
    /// Cluster mode: one way between a node and Redis, in ms. 0: every script and read runs
    /// in the step that asks for it. Else, as the server's awaits: a route script runs this
    /// long after its message was admitted, an ack reaches the cursors this long after the
    /// node got it, and a connecting device is subscribed, then read from the mailbox, a hop
    /// apart (its `AuthResult` and replay go out together after that).
    pub redis_latency: Millis,
    /// Cluster mode: a connecting device's replay is read this many mailbox entries at a time
    /// (`--replay-page-messages`), each page a Redis hop after the one before, live copies
    /// arriving in between; 0: the whole mailbox in one read.
    pub replay_page: usize,
    /// Replay pages read after a full one ([`Sim::replay_page`]).
    pub replay_pages: usize,
    /// Nodes killed so far ([`Sim::kill_node`]).
    pub node_kills: usize,
    /// Cluster mode: how long a rooms event takes to reach a node, in ms (the rooms channel has
    /// its own subscriber connection: no order with the user channels).
    pub rooms_latency: Millis,
    /// Cluster mode: call messages refused by a replica that was behind, admitted again once it
    /// caught up (see [`Sim::cluster`]): how many, and how many of those went through.
    pub rechecks: usize,
    pub rechecks_admitted: usize,
    /// Cluster mode: the hangups sent for gone devices, by message uid: (gone device, its user,
    /// call, the devices live then and their sockets), so those recipients are checked once
    /// they have it live ([`Event::VerdictProbe`]; as on one node: not those that get it in a
    /// replay, whose later messages may rightly bring the user back).
    verdict_uids: BTreeMap<String, (DeviceId, String, String, BTreeMap<DeviceId, u64>)>,
    next_uid: u64,
    /// `RCALL_SIM_TRACE` set: the cluster's steps are printed (debugging a seed).
    trace: bool,
    server: Vec<ServerDevice>,
    next_conn: ConnId,
    /// Restarts so far; server timers of an older generation are void.
    gen: u64,
    /// Highest `client_seq` per device the server answered (accepted, or refused with a code).
    accepted_ever: BTreeMap<DeviceId, u64>,
    /// Every Hangup the server sent on a gone device's behalf: (time, device, call, reason).
    pub verdicts: Vec<(Millis, DeviceId, String, i32)>,
    /// Messages the server refused: (time, device, message type, code).
    pub refusals: Vec<(Millis, DeviceId, String, i32)>,
    // ----- accounting ---------------------------------------------------------------------
    /// (recipient, sender instance, client_seq) the server routed.
    routed: BTreeSet<(DeviceId, u64, u64)>,
    /// Of those, deliveries `loss` dropped on the way (not expected to be fed).
    lost_deliveries: BTreeSet<(DeviceId, u64, u64)>,
    /// What the core did during the current step, until [`Sim::flush`].
    effects: Vec<(Conn, Effect)>,
    /// How often each (recipient, sender instance, client_seq) was fed to the engine.
    fed: BTreeMap<(DeviceId, u64, u64), u32>,
    dropped_by_receivers: usize,
    dropped_by_server: usize,
    checks: Vec<Check>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// A simulation starting at t = 1_700_000_000_000 ms with 10 ms latency.
    pub fn new() -> Self {
        Self {
            now: 1_700_000_000_000,
            server_skew: 0,
            latency: 10,
            capture_delay: 5,
            jitter: 0,
            loss: 0.0,
            reconnect_delay: 500,
            devices: Vec::new(),
            queue: Vec::new(),
            seq: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            last_delivery: Vec::new(),
            last_upload: Vec::new(),
            lost: 0,
            links: BTreeMap::new(),
            negotiated: Default::default(),
            restarts: Vec::new(),
            next_command: 1,
            next_call: 1,
            nodes: vec![Node::new(AppCore::new(sim_limits(), 0, Now::default(), 0), &node_name(0, 0))],
            model: None,
            conn_node: BTreeMap::new(),
            bus_latency: 0,
            redis_latency: 0,
            replay_page: 0,
            replay_pages: 0,
            node_kills: 0,
            rooms_latency: 0,
            rechecks: 0,
            rechecks_admitted: 0,
            verdict_uids: BTreeMap::new(),
            next_uid: 0,
            trace: std::env::var_os("RCALL_SIM_TRACE").is_some(),
            server: Vec::new(),
            next_conn: 0,
            gen: 0,
            accepted_ever: BTreeMap::new(),
            verdicts: Vec::new(),
            refusals: Vec::new(),
            routed: BTreeSet::new(),
            lost_deliveries: BTreeSet::new(),
            effects: Vec::new(),
            fed: BTreeMap::new(),
            dropped_by_receivers: 0,
            dropped_by_server: 0,
            checks: Vec::new(),
        }
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    /// Seeds the random source used by `jitter`, `loss` and [`Sim::random`].
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    }

    /// A deterministic pseudo-random number (xorshift64*).
    pub fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn hop(&mut self) -> Millis {
        let extra = if self.jitter > 0 { (self.random() % (self.jitter as u64 + 1)) as Millis } else { 0 };
        self.latency + extra
    }

    /// Ids of every device of the simulation.
    pub fn devices(&self) -> std::ops::Range<DeviceId> {
        0..self.devices.len()
    }

    /// Adds a device for `user_id` (call again with the same user for multi-device). It starts
    /// connected.
    pub fn add_device(&mut self, user_id: &str) -> DeviceId {
        self.add_device_with(user_id, |_| {})
    }

    /// [`Sim::add_device`] with install options changed by `configure` (e.g. `setup_retries`).
    pub fn add_device_with(&mut self, user_id: &str, configure: impl FnOnce(&mut EngineConfig)) -> DeviceId {
        let id = self.devices.len();
        let device_id = format!("dev{id}");
        let mut config = EngineConfig::new(user_id, &device_id);
        configure(&mut config);
        let engine = Engine::new(config);
        let mut link = ClientLink::new(1000 + id as u64);
        link.connected(0);
        self.devices.push(Device {
            user_id: user_id.to_string(),
            device_id,
            engine,
            log: Vec::new(),
            deadline: None,
            capture_error: None,
            local_kinds: BTreeMap::new(),
            link,
            sends: 0,
            wire: 1,
            silent_until: None,
            silent_since: 0,
            closed: false,
            processed_seq: 0,
            reconnecting: false,
            next_node: None,
        });
        self.server.push(ServerDevice::default());
        self.last_delivery.push(0);
        self.last_upload.push(0);
        // Connected from the start: registered and synced at once (nothing to replay, and the
        // engine starts as if its link had come up before the simulation began).
        self.register_on(id, 1, true);
        self.effects.clear();
        id
    }

    /// Makes the next captures on `dev` fail (or succeed again with `None`).
    pub fn fail_capture(&mut self, dev: DeviceId, error: Option<CaptureError>) {
        self.devices[dev].capture_error = error;
    }

    pub fn engine(&self, dev: DeviceId) -> &Engine {
        &self.devices[dev].engine
    }

    /// Feeds a command now and returns its id.
    pub fn command(&mut self, dev: DeviceId, cmd: Command) -> CommandId {
        let id = self.next_command;
        self.next_command += 1;
        self.input(dev, Input::Command(id, cmd));
        id
    }

    /// `call()` to one user.
    pub fn call(&mut self, dev: DeviceId, target: &str, media_type: MediaType) -> CommandId {
        let req = self.request(conversation_type::PRIVATE, target, Vec::new(), media_type);
        self.command(dev, Command::Call(req))
    }

    /// `call()` to one user, then 100 ms for it to resolve: the new call's id. Panics if the
    /// call failed (tests that expect a failure use [`Sim::call`] and [`Sim::result`]).
    pub fn dial(&mut self, dev: DeviceId, target: &str, media_type: MediaType) -> String {
        let cmd = self.call(dev, target, media_type);
        self.started(dev, cmd, target)
    }

    /// `callInGroup()`.
    pub fn call_in_group(&mut self, dev: DeviceId, group: &str, users: &[&str], media_type: MediaType) -> CommandId {
        let users = users.iter().map(|u| u.to_string()).collect();
        let req = self.request(conversation_type::GROUP, group, users, media_type);
        self.command(dev, Command::Call(req))
    }

    /// [`Sim::dial`] for `callInGroup()`: the new group call's id, 100 ms after the command.
    pub fn dial_group(&mut self, dev: DeviceId, group: &str, users: &[&str], media_type: MediaType) -> String {
        let cmd = self.call_in_group(dev, group, users, media_type);
        self.started(dev, cmd, group)
    }

    /// 100 ms for the call command `cmd` to resolve, then the call it started: its code must be
    /// SUCCESS with a call id.
    fn started(&mut self, dev: DeviceId, cmd: CommandId, target: &str) -> String {
        self.run_for(100);
        match self.result(dev, cmd) {
            Some((rtc_core::types::error_code::SUCCESS, Some(call_id))) => call_id,
            other => panic!("the call from device {dev} to {target} did not start: {other:?}"),
        }
    }

    /// `invite()` of `users` into `call_id`, with no extra and no push texts.
    pub fn invite(&mut self, dev: DeviceId, call_id: &str, users: &[&str]) -> CommandId {
        let user_ids = users.iter().map(|u| u.to_string()).collect();
        self.command(
            dev,
            Command::Invite { call_id: call_id.to_string(), user_ids, extra: String::new(), push_title: None, push_content: None },
        )
    }

    fn request(&mut self, ct: i32, target: &str, user_ids: Vec<String>, media_type: MediaType) -> CallRequest {
        let n = self.next_call;
        self.next_call += 1;
        CallRequest {
            call_id: format!("simcall{n:016}_{}_{}", self.now, n % 1000),
            conversation_type: ct,
            target_id: target.to_string(),
            user_ids,
            media_type,
            channel_id: String::new(),
            extra: String::new(),
            push_title: None,
            push_content: None,
        }
    }

    pub fn accept(&mut self, dev: DeviceId, call_id: &str) -> CommandId {
        self.command(dev, Command::Accept { call_id: call_id.to_string() })
    }

    pub fn hangup(&mut self, dev: DeviceId, call_id: &str) -> CommandId {
        self.command(dev, Command::Hangup { call_id: call_id.to_string() })
    }

    /// Feeds an arbitrary input to `dev` now (e.g. a hand-made message "from the server").
    pub fn inject(&mut self, dev: DeviceId, input: Input) {
        self.input(dev, input);
    }

    /// Result of a command: `(code, call_id)`, once it finished.
    pub fn result(&self, dev: DeviceId, command: CommandId) -> Option<(i32, Option<String>)> {
        self.devices[dev].log.iter().find_map(|(_, l)| match l {
            Logged::Done { command: c, code, call_id } if *c == command => Some((*code, call_id.clone())),
            _ => None,
        })
    }

    /// Listener events seen by `dev`, in order.
    pub fn events(&self, dev: DeviceId) -> Vec<&CallEvent> {
        self.devices[dev].log.iter().filter_map(|(_, l)| if let Logged::Event(e) = l { Some(e) } else { None }).collect()
    }

    /// A short line per listener event seen by `dev`, in order — `"Session"`,
    /// `"Ringing(bob)"`, `"Track(bob/Video)"`, `"Hungup(bob,13)"`, `"Close(3)"`… — so a flow reads
    /// as one assertion.
    pub fn timeline(&self, dev: DeviceId) -> Vec<String> {
        self.events(dev).into_iter().map(describe).collect()
    }

    /// Everything `dev` produced, with times.
    pub fn log(&self, dev: DeviceId) -> &[(Millis, Logged)] {
        &self.devices[dev].log
    }

    /// Messages `dev` sent.
    pub fn sent(&self, dev: DeviceId) -> Vec<&OutgoingSignal> {
        self.devices[dev].log.iter().filter_map(|(_, l)| if let Logged::Sent(s) = l { Some(s) } else { None }).collect()
    }

    /// The id of the call `dev` was offered by `onSession`, if any (the latest).
    pub fn incoming(&self, dev: DeviceId) -> Option<String> {
        self.events(dev).into_iter().rev().find_map(|e| match e {
            CallEvent::Session { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
    }

    /// The end reason of `call_id` on `dev`, once `onSessionClose` fired.
    pub fn close_reason(&self, dev: DeviceId, call_id: &str) -> Option<i32> {
        self.close_at(dev, call_id).map(|(_, reason)| reason)
    }

    /// When `onSessionClose` fired for `call_id` on `dev`, and with which end reason.
    pub fn close_at(&self, dev: DeviceId, call_id: &str) -> Option<(Millis, i32)> {
        self.log(dev).iter().find_map(|(t, l)| match l {
            Logged::Event(CallEvent::SessionClosed { call_id: c, summary }) if c == call_id => Some((*t, summary.end_reason)),
            _ => None,
        })
    }

    /// A call message as the server delivers it now to a device: `body` about `call_id`, sent
    /// by `sender` (user, device) in the conversation (`conversation_type`, `target_id`), not
    /// stored offline. Tests change what differs (`Received { offline: true, ..sim.delivered(…) }`)
    /// and [`Sim::inject`] it as an [`Input::Signal`].
    pub fn delivered(&self, sender: (&str, &str), conversation_type: i32, target_id: &str, call_id: &str, body: Body) -> Received {
        Received {
            sender_user_id: sender.0.into(),
            sender_device_id: sender.1.into(),
            conversation_type,
            target_id: target_id.into(),
            channel_id: String::new(),
            sent_time: self.now,
            server_time: self.now,
            offline: false,
            content: CallContent { device_id: sender.1.into(), call_id: call_id.into(), body: Some(body), ..Default::default() },
        }
    }

    /// The browser of `dev` reports its link to device `peer_dev` (of `peer_user`) in
    /// `call_id` as `state`.
    pub fn link_state(&mut self, dev: DeviceId, call_id: &str, peer_user: &str, peer_dev: DeviceId, state: LinkState) {
        let peer = Peer { user_id: peer_user.into(), device_id: format!("dev{peer_dev}") };
        self.input(dev, Input::Media(MediaEvent::LinkState { call_id: call_id.into(), peer, state }));
    }

    /// Advances the virtual clock by `ms`, delivering everything due on the way.
    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        self.run_until(until);
    }

    pub fn run_until(&mut self, until: Millis) {
        loop {
            let next_msg = self.queue.iter().map(|(t, s, _)| (*t, *s)).min();
            // The server's grace timer counts as a timer of an extra "device" past the last one;
            // in cluster mode each node's (the graces it runs), one "device" per node.
            let server_timer =
                self.nodes[0].core.next_deadline().filter(|_| self.model.is_none()).map(|d| (d.as_millis() as Millis, self.devices.len()));
            let node_timers = self.nodes.iter().enumerate().filter(|_| self.model.is_some()).filter_map(|(i, n)| {
                n.core.rooms_next_deadline_of(n.rooms.name()).map(|d| (d.as_millis() as Millis, self.devices.len() + i))
            });
            let next_timer = self
                .devices
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.deadline.map(|t| (t, i)))
                .chain(server_timer)
                .chain(node_timers)
                .min();
            let msg_t = next_msg.map(|(t, _)| t).filter(|t| *t <= until);
            let timer_t = next_timer.map(|(t, _)| t).filter(|t| *t <= until);
            match (msg_t, timer_t) {
                (None, None) => break,
                (Some(m), t) if t.is_none_or(|t| m <= t) => {
                    let (_, seq) = next_msg.expect("some");
                    let pos = self.queue.iter().position(|(tt, s, _)| *tt == m && *s == seq).expect("queued");
                    let (t, _, event) = self.queue.remove(pos);
                    self.now = self.now.max(t);
                    self.handle(event);
                }
                _ => {
                    let (t, dev) = next_timer.expect("some");
                    self.now = self.now.max(t);
                    if dev >= self.devices.len() && self.model.is_some() {
                        self.node_graces(dev - self.devices.len());
                    } else if dev == self.devices.len() {
                        self.end_gone_participants();
                    } else {
                        self.devices[dev].deadline = None;
                        self.input(dev, Input::Timeout);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver(dev, input) => self.input(dev, input),
            Event::ToDevice(dev, wire, frame) => self.at_device(dev, wire, frame),
            Event::AtServer(from, wire, msg) => self.at_server(from, wire, msg),
            Event::Notice { gen, dev, wire } => {
                // The server's ping deadline: a silent connection is found dead.
                if gen == self.gen {
                    if let Some(conn) = self.server[dev].conns.remove(&wire) {
                        self.unregister(dev, conn, Departure::Lost);
                    }
                }
            }
            Event::Detect(dev, wire) => {
                let d = &self.devices[dev];
                if d.closed || d.wire != wire {
                    return;
                }
                let since = d.silent_since;
                let back = d.silent_until.unwrap_or(self.now).max(self.now) + self.reconnect_delay;
                self.go_down(dev, since, false);
                self.devices[dev].reconnecting = true;
                self.push(back, Event::Reconnect(dev));
            }
            Event::Reconnect(dev) => self.reconnect(dev),
            Event::Bus { node, sub, user, event } => self.at_node(node, sub, &user, event),
            Event::Hold(s) => {
                if self.hold(&s) {
                    let at = self.now + self.redis_latency;
                    self.push(at, Event::SyncRead(s));
                }
            }
            Event::SyncRead(s) => {
                self.sync_read(*s);
                self.flush();
            }
            Event::Route(r) => self.run_route(*r),
            Event::RoomsAppend(ev) => self.rooms_append(ev),
            Event::RoomsBus { node, sub, entry } => self.at_node_rooms(node, sub, entry),
            Event::Resync { node, sub } => self.resync(node, sub),
            Event::Beat { node, life } => self.beat(node, life),
            Event::RedisAck { user, device, seq } => {
                let now_us = self.server_now().wall_us;
                if let Some(model) = &mut self.model {
                    model.ack(now_us, &user, &device, seq);
                }
            }
            Event::CutoffProbe(dev, wire) => {
                let d = &self.devices[dev];
                if !d.closed && d.wire == wire {
                    let ok = !d.engine.has_live_call();
                    self.checks.push(Check { at: self.now, dev, what: "cutoff", call_id: None, ok });
                }
            }
            Event::VerdictProbe { dev, wire, call_id, gone_user } => {
                let d = &self.devices[dev];
                if !d.closed && d.wire == wire && d.silent_until.is_none() {
                    let ok = d
                        .engine
                        .session(&call_id)
                        .is_none_or(|v| v.state == rtc_core::types::SessionState::End || v.users.iter().all(|u| u.user_id != gone_user));
                    self.checks.push(Check { at: self.now, dev, what: "verdict", call_id: Some(call_id), ok });
                }
            }
        }
    }

    fn push(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.push((at, self.seq, event));
    }

    fn schedule(&mut self, at: Millis, dev: DeviceId, input: Input) {
        self.push(at, Event::Deliver(dev, input));
    }

    /// Server → device frame on socket `wire` of `dev`, kept in the server's order.
    fn send_down(&mut self, dev: DeviceId, wire: u64, frame: Down) {
        let at = (self.now + self.hop()).max(self.last_delivery[dev]);
        self.last_delivery[dev] = at;
        self.push(at, Event::ToDevice(dev, wire, frame));
    }

    /// Device → server frame on the device's current socket, in the order written.
    fn upload(&mut self, dev: DeviceId, frame: ClientFrame) {
        if self.devices[dev].silent_until.is_some() {
            return; // written into a dead socket
        }
        let at = (self.now + self.hop()).max(self.last_upload[dev]);
        self.last_upload[dev] = at;
        let wire = self.devices[dev].wire;
        self.push(at, Event::AtServer(dev, wire, frame));
    }

    /// Feeds `input` to `dev` now and handles everything it outputs.
    fn input(&mut self, dev: DeviceId, input: Input) {
        if self.devices[dev].closed {
            return;
        }
        let now = self.now;
        match &input {
            Input::LinkDown { .. } => self.devices[dev].log.push((now, Logged::Link { up: false })),
            Input::LinkUp => self.devices[dev].log.push((now, Logged::Link { up: true })),
            _ => {}
        }
        self.devices[dev].engine.handle_input(now, input);
        loop {
            let out = self.devices[dev].engine.poll_output();
            match out {
                Output::Wait(deadline) => {
                    self.devices[dev].deadline = deadline;
                    break;
                }
                Output::Send(signal) => {
                    self.devices[dev].log.push((now, Logged::Sent(signal.clone())));
                    let d = &mut self.devices[dev];
                    if let Ok(Some(frame)) = d.link.send(signal.to_send_message()) {
                        d.sends += 1;
                        self.upload(dev, frame);
                    } else {
                        d.sends += 1; // queued until the reconnect
                    }
                }
                Output::Event(ev) => self.devices[dev].log.push((now, Logged::Event(ev))),
                Output::Done { command, code, call_id } => self.devices[dev].log.push((now, Logged::Done { command, code, call_id })),
                Output::Media(action) => {
                    self.devices[dev].log.push((now, Logged::Media(action.clone())));
                    self.fake_media(dev, action);
                }
            }
        }
    }

    /// A server frame reaches `dev`, unless its socket died meanwhile.
    fn at_device(&mut self, dev: DeviceId, wire: u64, frame: Down) {
        let d = &mut self.devices[dev];
        if d.closed || d.wire != wire || d.silent_until.is_some() {
            return;
        }
        match frame {
            Down::Auth { accepted_upto } => {
                for frame in d.link.connected(accepted_upto) {
                    self.upload(dev, frame);
                }
                self.input(dev, Input::LinkUp);
            }
            Down::Deliver { delivered, server_time } => {
                let seq = delivered.seq;
                if self.trace {
                    println!(
                        "{} dev{dev} gets seq {seq} ({}#{}) processed {}",
                        self.now, delivered.sender_instance, delivered.client_seq, d.processed_seq
                    );
                }
                // Acked like the SDK does, repeats included.
                self.upload(dev, ClientFrame::new(client_frame::Body::Ack(Ack { seq })));
                let d = &mut self.devices[dev];
                if seq <= d.processed_seq {
                    return;
                }
                d.processed_seq = seq;
                if !d.link.accept_delivery(&delivered) {
                    self.dropped_by_receivers += 1;
                    return;
                }
                if delivered.client_seq != 0 {
                    *self.fed.entry((dev, delivered.sender_instance, delivered.client_seq)).or_default() += 1;
                }
                let Ok(content) = CallContent::from_bytes(&delivered.content) else { return };
                // As the SDK: stored for a call still live here is live traffic, not history.
                let live = d.engine.session(&content.call_id).is_some_and(|v| v.state != rtc_core::types::SessionState::End);
                let received = Received {
                    sender_user_id: delivered.sender_user_id,
                    sender_device_id: delivered.sender_device_id,
                    conversation_type: delivered.conversation_type,
                    target_id: delivered.target_id,
                    channel_id: delivered.channel_id,
                    sent_time: delivered.sent_time,
                    server_time,
                    offline: delivered.offline && !live,
                    content,
                };
                self.input(dev, Input::Signal(received));
            }
            Down::SendResult { request_id, code, sent_time, server_time } => {
                d.link.on_send_result(request_id);
                let result = if code == 0 { Ok(sent_time) } else { Err(code) };
                self.input(dev, Input::SendResult { request_id, server_time, result });
            }
            Down::SyncDone => self.input(dev, Input::SyncDone),
        }
    }

    // ----- the server ----------------------------------------------------------------------

    /// The server's clocks now.
    fn server_now(&self) -> Now {
        let wall_ms = (self.now + self.server_skew).max(0) as u64;
        Now { wall_us: wall_ms * 1000, mono: Duration::from_millis(self.now.max(0) as u64) }
    }

    /// Runs one input on the (single) node's core; its effects wait in `self.effects` for
    /// [`Sim::flush`].
    fn with_core<R>(&mut self, f: impl FnOnce(&mut AppCore<Conn>, &mut MemoryShell<'_, Conn>, Now) -> R) -> R {
        self.with_node(0, f)
    }

    /// Runs one input on the core of `node`.
    fn with_node<R>(&mut self, node: usize, f: impl FnOnce(&mut AppCore<Conn>, &mut MemoryShell<'_, Conn>, Now) -> R) -> R {
        let now = self.server_now();
        let n = &mut self.nodes[node];
        let mut sh = MemoryShell { store: &mut n.store, effects: &mut self.effects };
        f(&mut n.core, &mut sh, now)
    }

    /// Writes what the core queued: each frame goes down the socket of its connection (into
    /// nothing if that socket died without the server noticing yet).
    fn flush(&mut self) {
        let server_time = self.now + self.server_skew;
        for (conn, effect) in std::mem::take(&mut self.effects) {
            let Some(wire) = self.server[conn.dev].conns.iter().find(|(_, c)| **c == conn.id).map(|(w, _)| *w) else { continue };
            if matches!(effect, Effect::Closed) && self.model.is_some() && wire != self.server[conn.dev].wire {
                // Cluster mode: the core dropped a page's dead socket as the page connected
                // again (`AppCore::register`); its connection task ends, so its node lets it go
                // (`Routing::release`, `RoomsSync::release`) now, not when its pings run out.
                self.server[conn.dev].conns.remove(&wire);
                self.unregister(conn.dev, conn.id, Departure::Lost);
                continue;
            }
            let body = match effect {
                Effect::Frame(Outgoing::Frame { body, .. } | Outgoing::Durable { body, .. }) => body,
                Effect::Frame(Outgoing::Fatal(_) | Outgoing::Ping) | Effect::Closed => continue,
            };
            let Ok(frame) = ServerFrame::decode(&body[..]) else { continue };
            let down = match frame.body {
                Some(server_frame::Body::AuthResult(a)) => Down::Auth { accepted_upto: a.accepted_upto },
                Some(server_frame::Body::Deliver(d)) => {
                    if self.loss > 0.0 && (self.random() % 1_000_000) as f64 / 1_000_000.0 < self.loss {
                        self.lost += 1;
                        self.lost_deliveries.insert((conn.dev, d.sender_instance, d.client_seq));
                        continue;
                    }
                    // Cluster mode: a peer of a gone device gets the server's hangup for it, and
                    // is checked right after (as `end_gone_participants` does on one node).
                    if let Some((gone, gone_user, call_id, live)) = self.verdict_uids.get(&d.message_uid).cloned() {
                        if conn.dev != gone && self.devices[conn.dev].user_id != gone_user && live.get(&conn.dev) == Some(&wire) {
                            self.send_down(conn.dev, wire, Down::Deliver { delivered: d, server_time });
                            let at = self.last_delivery[conn.dev] + 1;
                            self.push(at, Event::VerdictProbe { dev: conn.dev, wire, call_id, gone_user });
                            continue;
                        }
                    }
                    Down::Deliver { delivered: d, server_time }
                }
                Some(server_frame::Body::SendResult(r)) => {
                    Down::SendResult { request_id: r.request_id, code: r.code, sent_time: r.sent_time, server_time }
                }
                Some(server_frame::Body::SyncDone(_)) => Down::SyncDone,
                _ => continue,
            };
            self.send_down(conn.dev, wire, down);
        }
    }

    fn origin(&self, dev: DeviceId, conn: ConnId) -> Origin {
        let d = &self.devices[dev];
        Origin {
            app: 0,
            conn_id: conn,
            user_id: Arc::from(d.user_id.as_str()),
            device_id: Arc::from(d.device_id.as_str()),
            instance: d.link.instance(),
        }
    }

    /// A device connects on socket `wire`: registered, then synced from the store (its frames
    /// wait in `self.effects`).
    fn register(&mut self, dev: DeviceId, wire: u64) {
        self.register_on(dev, wire, self.redis_latency == 0);
    }

    /// [`Sim::register`]; in cluster mode with `sync` the replay is read at once, else a Redis
    /// hop or two later.
    fn register_on(&mut self, dev: DeviceId, wire: u64, sync: bool) {
        self.next_conn += 1;
        let id = self.next_conn;
        let node = match self.devices[dev].next_node.take() {
            Some(n) => n,
            None if self.nodes.len() > 1 => (self.random() % self.nodes.len() as u64) as usize,
            None => 0,
        };
        let d = &self.devices[dev];
        let (user, device, instance, resume_from) = (d.user_id.clone(), d.device_id.clone(), d.link.instance(), d.processed_seq);
        let stored = self.nodes[node].store.accepted_upto(&user, &device, instance);
        let auth_ok = rtc_core::proto::AuthResult { user_id: user.clone(), ..Default::default() };
        let conn = Conn { dev, id };
        let reg = self
            .with_node(node, |core, sh, now| core.register(sh, now, id, conn, &user, &device, 0, resume_from, auth_ok, instance, stored));
        let reg = reg.unwrap_or_else(|e| panic!("sim: the server refused device {dev}: {e}"));
        self.server[dev].conns.insert(wire, id);
        self.server[dev].wire = wire;
        self.conn_node.insert(id, node);
        if self.model.is_none() {
            let data = self.nodes[0].store.sync_data(&user, &device, reg.cursor, self.server_now().wall_ms());
            self.with_core(|core, sh, now| core.finish_sync(sh, now, &reg, data, None));
            return;
        }
        // As `cluster_session`: the user's channel first, then the replay from the mailbox.
        let held_back = if sync {
            Vec::new()
        } else {
            let (mine, rest) = std::mem::take(&mut self.effects).into_iter().partition(|(c, _)| c.id == id);
            self.effects = rest;
            mine
        };
        let s = Syncing { node, life: self.nodes[node].life, instance, reg, held_back, next_page: None };
        if sync {
            self.hold(&s);
            self.sync_read(s);
        } else {
            let at = self.now + self.redis_latency;
            self.push(at, Event::Hold(Box::new(s)));
        }
    }

    /// `Routing::hold`: the connection's user channel is subscribed (with the user's first
    /// connection on the node). False when the connection is gone already.
    fn hold(&mut self, s: &Syncing) -> bool {
        let id = s.reg.conn_id;
        let n = &mut self.nodes[s.node];
        if n.life != s.life || self.conn_node.get(&id) != Some(&s.node) {
            return false;
        }
        let user = s.reg.user_id.to_string();
        *n.held.entry(user.clone()).or_default() += 1;
        n.holding.insert(id, user);
        // `RoomsSync::hold`: the page's first connection here is announced before its replay
        // if its device is involved (a page's announcements reach Redis in the order decided,
        // one hop later each).
        if let Some(ev) = n.rooms.hold(&n.core, id, &s.reg.user_id, &s.reg.device_id, s.instance) {
            self.via_redis(Event::RoomsAppend(ev));
        }
        true
    }

    /// `Routing::sync_data` and `Hub::finish_sync_sequenced`: the device becomes a known
    /// device, its replay is read from the mailbox above its cursor and queued with `SyncDone`,
    /// and what it had is noted, so live copies of it arriving later are not given to it. With
    /// [`Sim::replay_page`] one page per call: a full page is queued (the connection stays
    /// syncing, live copies wait in the core's window) and the next is read a Redis hop later.
    fn sync_read(&mut self, s: Syncing) {
        let Syncing { node, life, instance, reg, held_back, next_page } = s;
        if self.nodes[node].life != life || !self.nodes[node].holding.contains_key(&reg.conn_id) {
            return; // (gone meanwhile)
        }
        let model = self.model.as_mut().expect("cluster mode");
        let (user, device) = (reg.user_id.to_string(), reg.device_id.to_string());
        let (acked, start) = match next_page {
            Some(p) => (p.acked, p.above),
            None => {
                let acked = model.register_device(&user, &device, 0);
                (acked, reg.cursor.max(acked))
            }
        };
        let limit = if self.replay_page > 0 { self.replay_page } else { model.max_len.saturating_mul(2) };
        let entries = model.read_above(&user, start, limit);
        // A full page: more may follow (`SyncPage::full`).
        let more = self.replay_page > 0 && entries.len() == limit;
        let devices = model.known_devices(&user).into_iter().map(|(d, _)| d).collect();
        let floor = if next_page.is_some() { start } else { acked };
        let seen = entries.last().map_or(floor, |e| e.seq.max(floor));
        let messages: Vec<StoredMessage> = entries
            .into_iter()
            .map(|e| StoredMessage { seq: e.seq, exclude_device: e.exclude_device.unwrap_or_default(), payload: e.delivered.to_vec() })
            .collect();
        if self.trace {
            let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
            println!(
                "{} sync {device} conn {} node {node}: cursor {} acked {acked} above {start} replay {seqs:?} seen {seen} more {more}",
                self.now, reg.conn_id, reg.cursor
            );
        }
        let data = SyncData { acked, messages, devices, more };
        self.effects.extend(held_back);
        // Each page as `ws.rs` replays it: from the page's own cursor.
        let page_reg = delivery::Registered { cursor: start, ..reg.clone() };
        if more {
            self.with_node(node, |core, sh, now| core.finish_sync(sh, now, &page_reg, data, Some(seen)));
            self.flush();
            self.replay_pages += 1;
            let next = Syncing { node, life, instance, reg, held_back: Vec::new(), next_page: Some(NextPage { acked, above: seen }) };
            let at = self.now + self.redis_latency;
            self.push(at, Event::SyncRead(Box::new(next)));
            return;
        }
        self.with_node(node, |core, sh, now| {
            core.finish_sync(sh, now, &page_reg, data, None);
            core.note_sequenced(&user, reg.conn_id, seen);
        });
    }

    /// The node of connection `conn`.
    fn node_of_conn(&self, conn: ConnId) -> usize {
        self.conn_node.get(&conn).copied().unwrap_or(0)
    }

    /// The server drops connection `conn` of `dev` (already taken out of `server[dev].conns`).
    fn unregister(&mut self, dev: DeviceId, conn: ConnId, how: Departure) {
        let user = self.devices[dev].user_id.clone();
        let node = self.node_of_conn(conn);
        if self.trace {
            println!("{} unregister dev{dev} conn {conn} node {node} {how:?}", self.now);
        }
        self.conn_node.remove(&conn);
        self.with_node(node, |core, sh, now| core.unregister(sh, now, &user, conn, how));
        // `Routing::release`: the user's channel goes with its last connection here.
        let n = &mut self.nodes[node];
        let gone = if self.model.is_some() { n.rooms.release(&n.core, conn, how) } else { None };
        if let Some(user) = n.holding.remove(&conn) {
            if let Some(k) = n.held.get_mut(&user) {
                *k -= 1;
                if *k == 0 {
                    n.held.remove(&user);
                }
            }
        }
        // `RoomsSync::release`: the page's last connection here withdraws it (if announced or
        // involved).
        if let Some(ev) = gone {
            self.via_redis(Event::RoomsAppend(ev));
        }
        self.flush();
    }

    /// A frame reaches the server on socket `wire` of `from`.
    fn at_server(&mut self, from: DeviceId, wire: u64, frame: ClientFrame) {
        if self.devices[from].wire != wire {
            return; // the socket died on the way
        }
        let Some(&conn) = self.server[from].conns.get(&wire) else { return };
        if let Some((w, queue)) = &mut self.server[from].waiting {
            if *w == wire {
                queue.push(frame); // (read once its recheck is done)
                return;
            }
        }
        let origin = self.origin(from, conn);
        match frame.body {
            Some(client_frame::Body::Send(msg)) => {
                if msg.conversation_type == conversation_type::GROUP {
                    // The simulated app: whoever a group message names is in the group.
                    let mut users = msg.directional_user_ids.clone();
                    users.push(origin.user_id.to_string());
                    // (Shared policy in cluster mode: every node applies it.)
                    for n in self.nodes.iter_mut() {
                        n.core.policy_mut().group_join(&msg.target_id, &users);
                    }
                }
                let recipients: Vec<String> = match msg.conversation_type {
                    conversation_type::PRIVATE => vec![msg.target_id.clone()],
                    _ => msg.directional_user_ids.clone(),
                };
                let (client_seq, request_id, message_type) = (msg.client_seq, msg.request_id, msg.message_type.clone());
                let result = if self.model.is_some() {
                    match self.cluster_send(from, wire, conn, &origin, msg, &recipients, true) {
                        Some(r) => r,
                        None => return, // (waits for its replica: `Recheck`)
                    }
                } else {
                    let opts = RouteOptions { reply_to: Some(request_id), ..Default::default() };
                    self.with_core(|core, sh, now| core.route(sh, now, &origin, &delivery::SendRef::of(&msg), opts))
                        .map(|acc| Some(acc.duplicate))
                };
                self.answered(from, wire, origin.instance, (client_seq, request_id, message_type), &recipients, result);
                self.flush();
            }
            Some(client_frame::Body::Ack(a)) => {
                let node = self.node_of_conn(conn);
                self.with_node(node, |core, sh, now| core.ack(sh, now, &origin, a.seq));
                // Cluster mode: the device's cursor in Redis too (where any node resumes it).
                let (user, device) = (origin.user_id.to_string(), origin.device_id.to_string());
                let now_us = self.server_now().wall_us;
                match &mut self.model {
                    Some(model) if self.redis_latency == 0 => {
                        model.ack(now_us, &user, &device, a.seq);
                    }
                    Some(_) => {
                        let at = self.now + self.redis_latency;
                        self.push(at, Event::RedisAck { user, device, seq: a.seq });
                    }
                    None => {}
                }
                self.flush();
            }
            _ => {}
        }
    }

    /// The server answered `from`'s message (`(client_seq, request_id, message type)`) that
    /// named `named`: the accounting, and the refusal's `SendResult`.
    fn answered(
        &mut self,
        from: DeviceId,
        wire: u64,
        instance: u64,
        msg: (u64, u32, String),
        named: &[String],
        result: Result<Option<bool>, delivery::RouteError>,
    ) {
        let (client_seq, request_id, message_type) = msg;
        let ever = self.accepted_ever.entry(from).or_default();
        *ever = (*ever).max(client_seq);
        match result {
            Ok(None) => {} // (routed later: `Event::Route`)
            Ok(Some(true)) => self.dropped_by_server += 1,
            Ok(Some(false)) => self.note_routed(from, instance, client_seq, named),
            Err(e) => {
                // Answered with its code, like rcall-server (nothing was delivered).
                self.refusals.push((self.now, from, message_type, e.imlib_code()));
                let (code, server_time) = (e.imlib_code(), self.now + self.server_skew);
                self.send_down(from, wire, Down::SendResult { request_id, code, sent_time: 0, server_time });
            }
        }
    }

    /// Cluster mode's send, as `ws.rs` does it: admitted by the node's core, then routed by the
    /// shared route script (here the model, in the same step), whose publishes reach the nodes
    /// holding each user later ([`Sim::bus_latency`]); the reply marker becomes the sender's
    /// `SendResult` on its node. `Ok(true)` for a duplicate. A call message the node's replica
    /// refuses as not in the call while it is behind the rooms log waits for it (`None`, with
    /// `recheck`; see [`Recheck`]).
    #[allow(clippy::too_many_arguments)]
    fn cluster_send(
        &mut self,
        from: DeviceId,
        wire: u64,
        conn: ConnId,
        origin: &Origin,
        msg: rtc_core::proto::SendMessage,
        named: &[String],
        recheck: bool,
    ) -> Option<Result<Option<bool>, delivery::RouteError>> {
        let node = self.node_of_conn(conn);
        let opts = RouteOptions { reply_to: Some(msg.request_id), shared_mailboxes: true, ..Default::default() };
        let admitted = self.with_node(node, |core, sh, now| {
            Ok::<_, delivery::RouteError>(match core.admit(sh, now, origin, &delivery::SendRef::of(&msg), opts)? {
                Admission::Duplicate(_) => None, // (answered by the core)
                Admission::Route(a) => {
                    Some((a.recipients.iter().map(|u| (*u).to_owned()).collect::<Vec<String>>(), a.reply_to, a.rooms_event))
                }
            })
        });
        let target = self.model.as_ref().map_or(0, ClusterModel::rooms_last);
        if recheck && matches!(admitted, Err(delivery::RouteError::NotInCall)) && self.nodes[node].rooms.applied() < target {
            if self.trace {
                println!("{} node {node} rechecks {} of dev{from} once it applied {target}", self.now, msg.message_type);
            }
            self.rechecks += 1;
            self.server[from].waiting = Some((wire, Vec::new()));
            self.nodes[node].rechecks.push(Recheck { target, dev: from, wire, conn, msg });
            return None;
        }
        Some(self.cluster_route(from, node, conn, origin, msg, named, admitted))
    }

    /// The route script for an admitted message (now, or one Redis hop later).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn cluster_route(
        &mut self,
        from: DeviceId,
        node: usize,
        conn: ConnId,
        origin: &Origin,
        msg: rtc_core::proto::SendMessage,
        named: &[String],
        admitted: Result<Option<(Vec<String>, Option<u32>, Option<Box<delivery::rooms::MessageEvent>>)>, delivery::RouteError>,
    ) -> Result<Option<bool>, delivery::RouteError> {
        let Some((recipients, reply_to, rooms_event)) = admitted? else { return Ok(Some(true)) };
        // A call message may make its device a member: its pages here are announced first
        // (`ws.rs`'s `announce_device`, one Redis hop ahead of the route script).
        if rooms_event.is_some() {
            for ev in self.nodes[node].rooms.announce_device(&origin.user_id, &origin.device_id) {
                self.via_redis(Event::RoomsAppend(ev));
            }
        }
        let rooms_event = rooms_event.map(|m| RoomsEvent { event: Some(delivery::rooms::rooms_event::Event::Message(*m)) });
        self.next_uid += 1;
        let private = msg.conversation_type == conversation_type::PRIVATE;
        let route = ModelRoute {
            user: origin.user_id.to_string(),
            device: origin.device_id.to_string(),
            instance: origin.instance,
            conn: NodeConn { node: node as u64, conn },
            client_seq: msg.client_seq,
            request_id: reply_to,
            message: Delivered {
                conversation_type: msg.conversation_type,
                target_id: if private { origin.user_id.to_string() } else { msg.target_id.clone() },
                channel_id: msg.channel_id,
                message_type: msg.message_type,
                content: msg.content,
                ..Default::default()
            },
            recipients: recipients.into_iter().map(|u| (u, false)).collect(),
            own_copy: Some((msg.target_id, false)),
            floor_us: 0,
            message_uid: format!("SIM-{:012}", self.next_uid),
        };
        let r = SimRoute { from, named: named.to_vec(), route, call: CallParts { own_all_devices: false, rooms_event } };
        if self.redis_latency > 0 {
            self.via_redis(Event::Route(Box::new(r)));
            return Ok(None);
        }
        Ok(Some(self.route_now(r)))
    }

    /// Runs the route script now and publishes what it publishes; true for a duplicate.
    fn route_now(&mut self, r: SimRoute) -> bool {
        let now_us = self.server_now().wall_us;
        let (routed, published, rooms) = self.model.as_mut().expect("cluster mode").route_call(now_us, &r.route, r.call);
        // The routing node learns the result (`Routing::routed`): its `SendResult` if the
        // marker is lost in a subscriber gap.
        if let (Some(request_id), Some(node)) = (r.route.request_id, self.conn_node.get(&r.route.conn.conn).copied()) {
            let (sent_time, message_uid, own_seq) = match &routed {
                ModelRouted::Accepted { sent_time, own_seq, .. } => (*sent_time, r.route.message_uid.clone(), own_seq.unwrap_or(0)),
                ModelRouted::Duplicate { sent_time, .. } => (*sent_time, String::new(), 0),
            };
            if node as u64 == r.route.conn.node {
                let result = rtc_core::proto::SendResult { request_id, code: 0, sent_time, message_uid };
                self.nodes[node].pending_replies.insert((r.route.conn.conn, request_id), (r.route.user.clone(), result, own_seq));
            }
        }
        if self.trace {
            println!("{} route conn {:?} {}#{}: {routed:?}", self.now, r.route.conn, r.route.device, r.route.client_seq);
        }
        for (user, event) in published {
            self.publish(user, event);
        }
        if let Some(entry) = rooms {
            self.publish_rooms(entry);
        }
        matches!(routed, ModelRouted::Duplicate { .. })
    }

    /// [`Event::Route`]: the route script of a message admitted one Redis hop ago.
    fn run_route(&mut self, r: SimRoute) {
        let (from, instance, client_seq, named) = (r.from, r.route.instance, r.route.client_seq, r.named.clone());
        if self.route_now(r) {
            self.dropped_by_server += 1;
        } else {
            self.note_routed(from, instance, client_seq, &named);
        }
    }

    /// `event` goes to Redis: it runs there one hop from now ([`Sim::redis_latency`]).
    fn via_redis(&mut self, event: Event) {
        if self.redis_latency == 0 {
            self.handle(event);
        } else {
            let at = self.now + self.redis_latency;
            self.push(at, event);
        }
    }

    // ----- cluster mode: the rooms replica (docs/cluster.md "Step 3, rooms") ---------------

    /// The append script: `ev` joins the rooms log and goes out on the rooms channel.
    fn rooms_append(&mut self, ev: RoomsEvent) {
        let now_us = self.server_now().wall_us;
        let entry = self.model.as_mut().expect("cluster mode").rooms_append(now_us, ev);
        self.publish_rooms(entry);
    }

    /// A rooms event reaches every node, each in log order, [`Sim::rooms_latency`] later.
    fn publish_rooms(&mut self, entry: RoomsEntry) {
        if self.trace {
            println!("{} rooms log {}: {:?}", self.now, entry.n, entry.event.event);
        }
        let at = self.now + self.rooms_latency;
        for node in 0..self.nodes.len() {
            let n = &mut self.nodes[node];
            if n.deaf_until > self.now {
                continue;
            }
            let at = at.max(n.last_rooms);
            n.last_rooms = at;
            let sub = n.sub;
            self.push(at, Event::RoomsBus { node, sub, entry: entry.clone() });
        }
    }

    /// A rooms event reaches `node` (`cluster::rooms::follow`): applied in log order, a gap
    /// read from the log first.
    fn at_node_rooms(&mut self, node: usize, sub: u64, entry: RoomsEntry) {
        if self.nodes[node].sub != sub {
            return;
        }
        match self.nodes[node].rooms.position(entry.n) {
            Position::Done => {}
            Position::Next => self.apply_rooms(node, entry),
            Position::Gap => {
                let applied = self.nodes[node].rooms.applied();
                let missed = self.model.as_ref().expect("cluster mode").rooms_log_above(applied).to_vec();
                for e in missed.into_iter().take_while(|e| e.n <= entry.n) {
                    self.apply_rooms(node, e);
                }
            }
        }
    }

    /// Applies one event to `node`'s replica: a grace it ran that ended routes the hangup; the
    /// messages waiting for the replica go on once it got far enough.
    fn apply_rooms(&mut self, node: usize, entry: RoomsEntry) {
        let now = self.server_now();
        let n = &mut self.nodes[node];
        let after = n.rooms.apply(&mut n.core, entry.n, &entry.event, entry.t_ms, now);
        if let Some(ended) = after.hang_up {
            self.hang_up_for(node, ended);
        }
        // A device connected here but not announced that the event involved.
        let n = &mut self.nodes[node];
        for ev in n.rooms.announce_involved(&n.core, &after.involves) {
            self.via_redis(Event::RoomsAppend(ev));
        }
        if after.announce {
            let n = &mut self.nodes[node];
            for ev in n.rooms.announcements(&n.core) {
                self.via_redis(Event::RoomsAppend(ev));
            }
        }
        self.flush();
        let applied = self.nodes[node].rooms.applied();
        while let Some(i) = self.nodes[node].rechecks.iter().position(|r| r.target <= applied) {
            let r = self.nodes[node].rechecks.remove(i);
            self.recheck(node, r);
        }
    }

    /// A [`Recheck`] whose replica caught up: admitted again (refused for good this time), then
    /// the connection reads on.
    fn recheck(&mut self, node: usize, r: Recheck) {
        let Recheck { dev, wire, conn, msg, .. } = r;
        let waiting = self.server[dev].waiting.take().filter(|(w, _)| *w == wire).map(|(_, q)| q).unwrap_or_default();
        let registered = self.server[dev].conns.get(&wire) == Some(&conn) && self.conn_node.get(&conn) == Some(&node);
        if !registered || self.devices[dev].wire != wire {
            return; // (the connection died meanwhile: its client sends again after a reconnect)
        }
        let origin = self.origin(dev, conn);
        let named: Vec<String> = match msg.conversation_type {
            conversation_type::PRIVATE => vec![msg.target_id.clone()],
            _ => msg.directional_user_ids.clone(),
        };
        let head = (msg.client_seq, msg.request_id, msg.message_type.clone());
        let result = self.cluster_send(dev, wire, conn, &origin, msg, &named, false).expect("no recheck");
        if result.as_ref().is_ok_and(|r| *r != Some(true)) {
            self.rechecks_admitted += 1;
        }
        self.answered(dev, wire, origin.instance, head, &named, result);
        self.flush();
        for frame in waiting {
            self.at_server(dev, wire, frame);
        }
    }

    /// The hangup of a participation a grace run by `node` ended (`Follower::hang_up_for`):
    /// routed through the route script as if the gone device had sent it, to the other
    /// participants and to every device of its user, the gone one included.
    fn hang_up_for(&mut self, node: usize, e: delivery::rooms::Ended) {
        let Some(dev) = self.devices.iter().position(|d| *d.device_id == *e.device) else { return };
        self.verdicts.push((self.now, dev, e.call_id.clone(), e.reason));
        self.next_uid += 1;
        let uid = format!("SIM-{:012}", self.next_uid);
        let live: BTreeMap<DeviceId, u64> = (0..self.devices.len())
            .filter(|&j| {
                let d = &self.devices[j];
                !d.closed && d.silent_until.is_none() && self.server[j].conns.contains_key(&d.wire)
            })
            .map(|j| (j, self.devices[j].wire))
            .collect();
        self.verdict_uids.insert(uid.clone(), (dev, e.user.to_string(), e.call_id.clone(), live));
        let private = e.route.conversation_type == conversation_type::PRIVATE;
        let route = ModelRoute {
            user: e.user.to_string(),
            device: e.device.to_string(),
            instance: 0,
            // (No connection 0: every device of the user gets its copy.)
            conn: NodeConn { node: node as u64, conn: 0 },
            client_seq: 0,
            request_id: None,
            message: Delivered {
                conversation_type: e.route.conversation_type,
                target_id: if private { e.user.to_string() } else { e.route.target_id.clone() },
                channel_id: e.route.channel_id.clone(),
                message_type: rtc_core::proto::object_name::HANGUP.to_owned(),
                content: e.content(),
                ..Default::default()
            },
            recipients: e.recipients.iter().filter(|r| **r != *e.user).map(|r| (r.clone(), false)).collect(),
            own_copy: Some((e.route.target_id.clone(), false)),
            floor_us: 0,
            message_uid: uid,
        };
        let named = e.recipients.clone();
        // (Every replica ended the participation with the `GraceOver` already: no rooms event.)
        let r = SimRoute { from: dev, named, route, call: CallParts { own_all_devices: true, rooms_event: None } };
        self.via_redis(Event::Route(Box::new(r)));
    }

    /// `node`'s grace timer (`Follower::graces`): `GraceOver` for each grace it runs that is over.
    fn node_graces(&mut self, node: usize) {
        let now = self.server_now();
        let n = &mut self.nodes[node];
        for ev in n.rooms.graces_due(&mut n.core, now) {
            self.via_redis(Event::RoomsAppend(ev));
        }
    }

    /// `node` beats: the heartbeat script takes out the nodes whose beats stopped, and this
    /// node reports each to the rooms (`NodeLost`, it runs what they leave behind).
    fn beat(&mut self, node: usize, life: u64) {
        if self.nodes[node].life != life {
            return; // (a killed node's beats stop)
        }
        let me = self.nodes[node].rooms.name().to_owned();
        let now_ms = self.server_now().wall_ms();
        let dead = self.model.as_mut().expect("cluster mode").beat(now_ms, &me, HEARTBEAT_MS);
        for d in dead {
            if self.trace {
                println!("{} {me} takes out {d}", self.now);
            }
            self.via_redis(Event::RoomsAppend(delivery::rooms_node::node_lost(&me, &d)));
        }
        self.push(self.now + HEARTBEAT_MS, Event::Beat { node, life });
    }

    /// Cluster mode: `node`'s pub/sub connections to Redis drop for `gap` ms (a network blip,
    /// or a Redis restart that kept its data): what is published meanwhile, or was on its way,
    /// is lost to it; then it resyncs (`BusEvent::Resync`), as the server's subscribers do.
    pub fn bus_gap(&mut self, node: usize, gap: Millis) {
        assert!(self.model.is_some() && node < self.nodes.len(), "bus_gap: cluster mode, an existing node");
        let n = &mut self.nodes[node];
        n.sub += 1;
        n.deaf_until = self.now + gap.max(1);
        let (at, sub) = (n.deaf_until, n.sub);
        if self.trace {
            println!("{} node {node} deaf until {at}", self.now);
        }
        self.push(at, Event::Resync { node, sub });
    }

    /// After a subscriber gap (`routing::follow` and `rooms::follow` on `BusEvent::Resync`): each
    /// local user's mailbox is read above what the node has, the results whose marker was lost
    /// answered where the marker was (behind the user's copies up to the sender's own), the
    /// rooms log read above what the replica applied, and the node announces its pages again
    /// (and withdraws those the replicas think it holds but it does not).
    fn resync(&mut self, node: usize, sub: u64) {
        if self.nodes[node].sub != sub {
            return;
        }
        let mut pending: Vec<(ConnId, String, rtc_core::proto::SendResult, u64)> = std::mem::take(&mut self.nodes[node].pending_replies)
            .into_iter()
            .map(|((conn, _), (user, result, after))| (conn, user, result, after))
            .collect();
        let users: Vec<String> = self.nodes[node].held.keys().cloned().collect();
        for user in users {
            let Some(last) = self.nodes[node].core.last_seq(&user) else { continue };
            let model = self.model.as_ref().expect("cluster mode");
            let entries = model.read_above(&user, last, model.max_len.saturating_mul(2));
            for e in entries {
                let (due, rest): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut pending).into_iter().partition(|(_, u, _, after)| *u == user && *after < e.seq);
                pending = rest;
                for (conn, u, result, _) in due {
                    self.with_node(node, |core, sh, _| core.reply_to_conn(sh, &u, conn, result));
                }
                let exclude_device = e.exclude_device.as_deref().map(Arc::from);
                self.with_node(node, |core, sh, now| {
                    core.deliver_sequenced(
                        sh,
                        now,
                        delivery::Sequenced { user_id: &user, seq: e.seq, payload: &e.delivered, skip: None, exclude_device },
                    )
                });
            }
        }
        for (conn, user, result, _) in pending {
            self.with_node(node, |core, sh, _| core.reply_to_conn(sh, &user, conn, result));
        }
        self.flush();
        let applied = self.nodes[node].rooms.applied();
        let missed = self.model.as_ref().expect("cluster mode").rooms_log_above(applied).to_vec();
        for e in missed {
            self.apply_rooms(node, e);
        }
        let n = &mut self.nodes[node];
        for ev in n.rooms.announcements(&n.core) {
            self.via_redis(Event::RoomsAppend(ev));
        }
    }

    /// The server accepted `client_seq` of `from`'s `instance` for the users it named: every
    /// open device of theirs (and of the sender's user, but `from`) is owed it.
    fn note_routed(&mut self, from: DeviceId, instance: u64, client_seq: u64, named: &[String]) {
        if client_seq == 0 {
            return;
        }
        let sender = &self.devices[from].user_id;
        for (j, d) in self.devices.iter().enumerate() {
            if j != from && !d.closed && (d.user_id == *sender || named.contains(&d.user_id)) {
                self.routed.insert((j, instance, client_seq));
            }
        }
    }

    /// A publish on `user`'s channel reaches every node subscribed to it now, each in the order
    /// published.
    fn publish(&mut self, user: String, event: ChannelEvent) {
        let at = self.now + self.bus_latency;
        for node in 0..self.nodes.len() {
            let n = &mut self.nodes[node];
            if !n.held.contains_key(&user) || n.deaf_until > self.now {
                continue;
            }
            let at = at.max(n.last_bus);
            n.last_bus = at;
            let sub = n.sub;
            self.push(at, Event::Bus { node, sub, user: user.clone(), event: event.clone() });
        }
    }

    /// A channel event reaches `node`: as `cluster::routing::follow`, handed to its core.
    fn at_node(&mut self, node: usize, sub: u64, user: &str, event: ChannelEvent) {
        let n = &self.nodes[node];
        if n.sub != sub || !n.held.contains_key(user) {
            return; // (the node died, or unsubscribed meanwhile)
        }
        let me = node as u64;
        match event {
            ChannelEvent::Deliver { seq, skip, delivered } => {
                let skip = skip.filter(|c| c.node == me).map(|c| c.conn);
                if self.trace {
                    println!("{} node {node} gets {user} seq {seq} skip {skip:?}", self.now);
                }
                self.with_node(node, |core, sh, now| {
                    let exclude_device = skip.and_then(|c| core.conn_device(user, c));
                    core.deliver_sequenced(sh, now, delivery::Sequenced { user_id: user, seq, payload: &delivered, skip, exclude_device })
                });
            }
            ChannelEvent::Reply { conn, request_id, sent_time, message_uid } => {
                // (`Routing::marker`: answered once, by the marker or by a resync.)
                if conn.node == me && self.nodes[node].pending_replies.remove(&(conn.conn, request_id)).is_some() {
                    let result = rtc_core::proto::SendResult { request_id, code: 0, sent_time, message_uid };
                    self.with_node(node, |core, sh, _| core.reply_to_conn(sh, user, conn.conn, result));
                }
            }
        }
        self.flush();
    }

    /// The server's grace timer: devices gone for their grace are hung up for; the devices that
    /// get such a Hangup are checked soon after ([`Event::VerdictProbe`]).
    fn end_gone_participants(&mut self) {
        let ended = self.with_core(|core, sh, now| core.end_gone_participants(sh, now));
        let told: BTreeSet<DeviceId> = self.effects.iter().map(|(c, _)| c.dev).collect();
        self.flush();
        let max_hop = self.latency + self.jitter;
        for (user, device, call_id, reason) in ended {
            let Some(dev) = self.devices.iter().position(|d| *d.device_id == *device) else { continue };
            self.verdicts.push((self.now, dev, call_id.clone(), reason));
            for &j in &told {
                let d = &self.devices[j];
                let live_here = self.server[j].conns.contains_key(&d.wire);
                if j != dev && d.user_id != *user && live_here {
                    let probe = Event::VerdictProbe { dev: j, wire: d.wire, call_id: call_id.clone(), gone_user: user.to_string() };
                    self.push(self.now + max_hop + 1, probe);
                }
            }
        }
    }

    // ----- faults ---------------------------------------------------------------------------

    /// Client side of a lost connection: the socket is gone, the link queues, the engine hears
    /// `LinkDown { since }`.
    fn go_down(&mut self, dev: DeviceId, since: Millis, new_socket: bool) {
        let d = &mut self.devices[dev];
        if new_socket {
            d.wire += 1;
        }
        d.link.disconnected();
        let wire = d.wire;
        self.input(dev, Input::LinkDown { since });
        let probe_at = (since + rtc_core::engine::SELF_CUTOFF_MS + 1).max(self.now);
        self.push(probe_at, Event::CutoffProbe(dev, wire));
    }

    fn can_fault(&self, dev: DeviceId) -> bool {
        let d = &self.devices[dev];
        !d.closed && d.silent_until.is_none() && !d.reconnecting && d.link.is_connected()
    }

    /// The socket of `dev` closes (both sides see it at once; frames in flight either way are
    /// lost); the client reconnects `reconnect_after` ms later. Ignored (false) unless `dev` is
    /// connected.
    pub fn drop_connection(&mut self, dev: DeviceId, reconnect_after: Millis) -> bool {
        if !self.can_fault(dev) {
            return false;
        }
        let now = self.now;
        let wire = self.devices[dev].wire;
        self.go_down(dev, now, true);
        if let Some(conn) = self.server[dev].conns.remove(&wire) {
            self.unregister(dev, conn, Departure::Lost);
        }
        self.devices[dev].reconnecting = true;
        self.push(now + reconnect_after, Event::Reconnect(dev));
        true
    }

    /// Nothing flows between `dev` and the server for `duration` ms and nobody is told (no FIN):
    /// the client notices after [`CLIENT_DEAD_AFTER_MS`] and reconnects once the network is back,
    /// the server notices after [`SERVER_DEAD_AFTER_MS`]. Ignored (false) unless connected.
    pub fn silent_loss(&mut self, dev: DeviceId, duration: Millis) -> bool {
        if !self.can_fault(dev) {
            return false;
        }
        let now = self.now;
        let d = &mut self.devices[dev];
        d.wire += 1;
        d.silent_until = Some(now + duration);
        d.silent_since = now;
        let wire = d.wire;
        self.push(now + CLIENT_DEAD_AFTER_MS, Event::Detect(dev, wire));
        let (gen, wire) = (self.gen, wire - 1);
        self.push(now + SERVER_DEAD_AFTER_MS, Event::Notice { gen, dev, wire });
        true
    }

    /// The tab of `dev` closes for good: nothing more from or to it. A connected socket closes
    /// cleanly (the server gives it [`CLEAN_GRACE_MS`]); otherwise the server finds out as it
    /// would for any lost connection.
    pub fn close_tab(&mut self, dev: DeviceId) -> bool {
        if self.devices[dev].closed {
            return false;
        }
        let wire = self.devices[dev].wire;
        let clean = self.server[dev].conns.contains_key(&wire) && self.devices[dev].silent_until.is_none();
        let d = &mut self.devices[dev];
        d.closed = true;
        d.deadline = None;
        d.wire += 1;
        if clean {
            let conn = self.server[dev].conns.remove(&wire).expect("checked");
            self.unregister(dev, conn, Departure::Left);
        }
        true
    }

    /// The server restarts: every socket closes, what it kept in memory (which `client_seq`s it
    /// accepted, its timers) is lost; what it stored (undelivered messages, calls) is not. Every
    /// client reconnects after `reconnect_delay` plus up to a second; devices in calls that do
    /// not come back within [`LOST_GRACE_MS`] are gone.
    pub fn restart_server(&mut self) {
        assert!(self.model.is_none(), "restart_server is the single node's; in cluster mode, kill_node");
        let now = self.now;
        self.gen += 1;
        // The server's graceful shutdown: every connection is taken out of routing and closes,
        // which stores what each device has not acked; then a new process starts over the same
        // store, with the persisted policy and seq floor.
        self.with_core(|core, sh, now| core.close_all(sh, now));
        for dev in 0..self.devices.len() {
            let user = self.devices[dev].user_id.clone();
            for (_, conn) in std::mem::take(&mut self.server[dev].conns) {
                self.with_core(|core, sh, now| core.unregister(sh, now, &user, conn, Departure::Lost));
            }
        }
        self.effects.clear(); // written into closing sockets: lost with them
        let server_now = self.server_now();
        let core = &mut self.nodes[0].core;
        let floor = core.sweep(server_now);
        let rooms = core.rooms_snapshot();
        let rows = policy_rows(core);
        *core = AppCore::new(sim_limits(), floor, server_now, self.gen as u32);
        core.load_policy(rows);
        core.restore_rooms(rooms, server_now);
        for dev in 0..self.devices.len() {
            let d = &self.devices[dev];
            if d.closed || d.silent_until.is_some() || d.reconnecting {
                continue;
            }
            if d.link.is_connected() {
                self.go_down(dev, now, true);
            } else {
                self.devices[dev].wire += 1; // its AuthResult was on the way
            }
            self.devices[dev].reconnecting = true;
            let at = now + self.reconnect_delay + (self.random() % 1_000) as Millis;
            self.push(at, Event::Reconnect(dev));
        }
    }

    /// Cluster mode (docs/cluster.md): `nodes` server nodes, each its own delivery core, over
    /// one shared [`ClusterModel`] of the Redis side, wired as `crates/server/src/cluster/`
    /// wires the real ones. Device `i` connects to node `i % nodes` first, then to a node at
    /// random at each reconnect (or the one [`Sim::connect_to`] names). Call before adding
    /// devices.
    ///
    /// The call rooms are replicas, as on the server (docs/cluster.md "Step 3, rooms";
    /// `cluster/rooms.rs`, with the node-side rules of [`delivery::rooms_node`]): the model keeps
    /// the app's rooms log; a call message's event is appended by the route script, in delivery
    /// order; each page's first/last connection on a node appends `Here`/`Gone` (the `Here`
    /// before its replay); every node applies the log in order [`Sim::rooms_latency`] after
    /// each append, and admits call messages against its replica (one refused as not in the
    /// call while the replica is behind waits for it to catch up, the connection reading
    /// nothing else meanwhile, then is admitted again). A grace is run by the node whose `Gone`
    /// started it: `GraceOver` through the log, then the hangup through the route script (the
    /// [`Sim::verdicts`]). Nodes beat every [`HEARTBEAT_MS`]; a killed node's id is taken out by
    /// the next node to beat once 3 periods passed, which appends `NodeLost` and runs what it
    /// left. [`Sim::restart_server`] is the single node's; here nodes die with
    /// [`Sim::kill_node`].
    pub fn cluster(&mut self, nodes: usize) {
        assert!(self.devices.is_empty(), "Sim::cluster comes before the devices");
        assert!(nodes >= 1, "at least one node");
        self.nodes = (0..nodes)
            .map(|i| {
                let mut core = AppCore::new(sim_limits(), 0, Now::default(), i as u32);
                core.replicate_rooms();
                Node::new(core, &node_name(i, 0))
            })
            .collect();
        self.model = Some(ClusterModel::default());
        // Each node beats as it starts (before it takes connections), then every period, the
        // nodes' beats spread over it.
        for node in 0..nodes {
            let now_ms = self.server_now().wall_ms();
            self.model.as_mut().expect("cluster mode").beat(now_ms, &node_name(node, 0), HEARTBEAT_MS);
            let at = self.now + HEARTBEAT_MS - HEARTBEAT_MS * node as Millis / nodes as Millis;
            self.push(at, Event::Beat { node, life: 0 });
        }
    }

    /// Server nodes (1 unless [`Sim::cluster`]).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node `dev`'s current connection is on, if the server has one.
    pub fn node_of(&self, dev: DeviceId) -> Option<usize> {
        let sd = &self.server[dev];
        sd.conns.get(&sd.wire).map(|c| self.node_of_conn(*c))
    }

    /// The nodes holding `dev` in the rooms presence of `node`'s replica (cluster mode): only
    /// announced devices are there (`delivery::rooms_node::announces`).
    pub fn rooms_holders(&self, node: usize, dev: DeviceId) -> Vec<String> {
        let d = &self.devices[dev];
        self.nodes[node].core.rooms_holders(&d.user_id, &d.device_id).iter().map(|n| n.to_string()).collect()
    }

    /// `dev`'s next connection goes to `node` (cluster mode).
    pub fn connect_to(&mut self, dev: DeviceId, node: usize) {
        assert!(node < self.nodes.len(), "no node {node}");
        self.devices[dev].next_node = Some(node);
    }

    /// Cluster mode: node `node` dies (`kill -9`) and comes back empty at once, as a new node
    /// (a new id, its rooms replica read from the log). What it held in memory is gone (its
    /// connections, windows, channel events on their way to it); what Redis holds is not. Its clients see their sockets drop, as in a network loss, and
    /// reconnect after `reconnect_delay` plus up to a second to another node.
    pub fn kill_node(&mut self, node: usize) {
        assert!(self.model.is_some() && node < self.nodes.len(), "kill_node: cluster mode, an existing node");
        let now = self.now;
        self.node_kills += 1;
        if self.trace {
            println!("{now} kill node {node}");
        }
        let server_now = self.server_now();
        let n = &mut self.nodes[node];
        let rows = policy_rows(&n.core);
        n.life += 1;
        n.sub += 1;
        n.deaf_until = 0;
        n.pending_replies.clear();
        n.held.clear();
        n.holding.clear();
        n.rechecks.clear();
        n.store = MemoryStore::new();
        n.core = AppCore::new(sim_limits(), 0, server_now, (node as u32) << 16 | n.life as u32);
        n.core.load_policy(rows);
        // A new process, a new node id: its replica starts from the rooms log (the model keeps it
        // whole; the server reads the snapshot and the log above it), and it beats at once. The
        // old id is taken out by another node once its beats are 3 periods late (`NodeLost`).
        n.core.replicate_rooms();
        n.rooms = RoomsNode::new(&node_name(node, n.life));
        let life = n.life;
        let log = self.model.as_ref().expect("cluster mode").rooms_log_above(0).to_vec();
        for e in log {
            let n = &mut self.nodes[node];
            n.rooms.apply(&mut n.core, e.n, &e.event, e.t_ms, server_now);
        }
        self.beat(node, life);
        let dead: Vec<ConnId> = self.conn_node.iter().filter(|(_, n)| **n == node).map(|(c, _)| *c).collect();
        for c in &dead {
            self.conn_node.remove(c);
        }
        // Connections waiting for the node's replica are gone with it.
        for sd in &mut self.server {
            if sd.waiting.as_ref().is_some_and(|(w, _)| sd.conns.get(w).is_some_and(|c| dead.contains(c))) {
                sd.waiting = None;
            }
        }
        // What was queued for its connections is lost with them.
        self.effects.retain(|(c, _)| !dead.contains(&c.id));
        for dev in 0..self.devices.len() {
            let current = {
                let sd = &mut self.server[dev];
                let wire = sd.wire;
                let mut current = false;
                sd.conns.retain(|w, c| {
                    let on_it = dead.contains(c);
                    current |= on_it && *w == wire;
                    !on_it
                });
                current
            };
            let d = &self.devices[dev];
            if !current || d.closed || d.silent_until.is_some() || d.reconnecting || d.wire != self.server[dev].wire {
                continue;
            }
            if d.link.is_connected() {
                self.go_down(dev, now, true);
            } else {
                self.devices[dev].wire += 1; // its AuthResult was on the way
            }
            if self.nodes.len() > 1 {
                let other = (node + 1 + (self.random() % (self.nodes.len() as u64 - 1)) as usize) % self.nodes.len();
                self.devices[dev].next_node = Some(other);
            }
            self.devices[dev].reconnecting = true;
            let at = now + self.reconnect_delay + (self.random() % 1_000) as Millis;
            self.push(at, Event::Reconnect(dev));
        }
    }

    /// `dev` reconnects: the server resumes from its cursor, says what it accepted, replays.
    fn reconnect(&mut self, dev: DeviceId) {
        let d = &mut self.devices[dev];
        if d.closed {
            return;
        }
        d.reconnecting = false;
        d.silent_until = None;
        d.wire += 1;
        let wire = d.wire;
        self.register(dev, wire);
        self.flush();
    }

    /// Whether `dev`'s tab was closed ([`Sim::close_tab`]).
    pub fn is_closed(&self, dev: DeviceId) -> bool {
        self.devices[dev].closed
    }

    /// Whether `dev`'s link is up (connected and not reconnecting).
    pub fn is_connected(&self, dev: DeviceId) -> bool {
        let d = &self.devices[dev];
        !d.closed && d.silent_until.is_none() && d.link.is_connected()
    }

    /// The checks made as faults played out: a device down for `SELF_CUTOFF_MS` has no live
    /// call; a peer that got the server's verdict about a gone device no longer counts it.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Devices the server counts in `call_id` (inviters and acceptors that have not left).
    pub fn server_participants(&self, call_id: &str) -> Vec<DeviceId> {
        let members = self.nodes.iter().flat_map(|n| n.core.call_members(call_id));
        let mut out: Vec<DeviceId> = members.filter_map(|(_, d)| self.devices.iter().position(|x| *x.device_id == *d)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Messages the server keeps in memory for resumes (its window), over all users.
    pub fn server_window_len(&self) -> usize {
        self.nodes.iter().map(|n| n.core.window_len()).sum()
    }

    /// Exactly-once accounting: what every engine was fed against what the server routed and
    /// what the devices sent. Meaningful once every device is connected again and quiet.
    pub fn delivery_report(&self) -> DeliveryReport {
        let mut r = DeliveryReport {
            dropped_by_receivers: self.dropped_by_receivers,
            dropped_by_server: self.dropped_by_server,
            ..Default::default()
        };
        for (&(dev, instance, seq), &n) in &self.fed {
            r.fed += n as usize;
            if n > 1 {
                r.duplicates.push((dev, instance, seq));
            }
        }
        for &(dev, instance, seq) in &self.routed {
            let lost = self.lost_deliveries.contains(&(dev, instance, seq));
            if !self.devices[dev].closed && !lost && !self.fed.contains_key(&(dev, instance, seq)) {
                r.missing.push((dev, instance, seq));
            }
        }
        for (dev, d) in self.devices.iter().enumerate() {
            let accepted = self.accepted_ever.get(&dev).copied().unwrap_or(0);
            if !d.closed && accepted < d.sends {
                r.unsent.push((dev, d.sends, accepted));
            }
        }
        r
    }

    fn device_of(&self, peer: &Peer) -> Option<DeviceId> {
        self.devices.iter().position(|d| d.user_id == peer.user_id && d.device_id == peer.device_id)
    }

    /// Fake browser media: captures succeed after `capture_delay` (unless told to fail); an
    /// offer is answered; once the answer lands both sides see each other's tracks.
    fn fake_media(&mut self, dev: DeviceId, action: MediaAction) {
        let now = self.now;
        let action_kind = match &action {
            MediaAction::CaptureCamera { .. } => Some(TrackKind::Video),
            MediaAction::CaptureMicrophone { .. } => Some(TrackKind::Audio),
            _ => None,
        };
        let me = Peer { user_id: self.devices[dev].user_id.clone(), device_id: self.devices[dev].device_id.clone() };
        match action {
            MediaAction::Capture { call_id, video } => {
                let result = match self.devices[dev].capture_error {
                    Some(e) => Err(e),
                    None => {
                        let kinds = if video { vec![TrackKind::Audio, TrackKind::Video] } else { vec![TrackKind::Audio] };
                        self.devices[dev].local_kinds.insert(call_id.clone(), kinds.clone());
                        Ok(kinds)
                    }
                };
                self.schedule(now + self.capture_delay, dev, Input::Media(MediaEvent::Captured { call_id, result }));
            }
            MediaAction::Release { call_id } => {
                self.devices[dev].local_kinds.remove(&call_id);
            }
            MediaAction::Rename { from, into } => {
                if let Some(kinds) = self.devices[dev].local_kinds.remove(&from) {
                    self.devices[dev].local_kinds.insert(into, kinds);
                }
            }
            MediaAction::DropVideo { call_id } => {
                if let Some(kinds) = self.devices[dev].local_kinds.get_mut(&call_id) {
                    kinds.retain(|k| *k != TrackKind::Video);
                }
            }
            MediaAction::Connect { call_id, peer, offerer: true, video, .. } => {
                self.links.insert((dev, call_id.clone(), peer.clone()), video);
                let signal = media_signal::Kind::Offer(format!("offer from {}", me.user_id));
                self.schedule(now + 1, dev, Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
            }
            MediaAction::Connect { call_id, peer, offerer: false, video, .. } => {
                self.links.insert((dev, call_id, peer), video);
            }
            MediaAction::Apply { call_id, peer, signal: media_signal::Kind::Offer(_) } => {
                let signal = media_signal::Kind::Answer(format!("answer from {}", me.user_id));
                self.schedule(now + 1, dev, Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
            }
            MediaAction::RestartIce { call_id, peer } => {
                self.restarts.push((now, dev, call_id.clone(), peer.clone()));
                let signal = media_signal::Kind::Offer(format!("restart offer from {}", me.user_id));
                self.schedule(now + 1, dev, Input::Media(MediaEvent::LocalSignal { call_id, peer, signal }));
            }
            MediaAction::Apply { call_id, peer, signal: media_signal::Kind::Answer(_) } => {
                // Negotiated: like the browser's ontrack, each side learns of the other's tracks
                // now, before any media flows (once: a later negotiation adds none).
                if !self.negotiated.insert((dev, call_id.clone(), peer.clone())) {
                    return;
                }
                let video = self.links.get(&(dev, call_id.clone(), peer.clone())).copied().unwrap_or(false);
                let kinds: &[TrackKind] = if video { &[TrackKind::Audio, TrackKind::Video] } else { &[TrackKind::Audio] };
                if let Some(other) = self.device_of(&peer) {
                    for &kind in kinds {
                        let ev = MediaEvent::RemoteTrack { call_id: call_id.clone(), peer: peer.clone(), kind };
                        self.schedule(now + 20, dev, Input::Media(ev));
                        let ev = MediaEvent::RemoteTrack { call_id: call_id.clone(), peer: me.clone(), kind };
                        self.schedule(now + 20, other, Input::Media(ev));
                    }
                }
            }
            MediaAction::Disconnect { call_id, peer } => {
                self.links.remove(&(dev, call_id, peer));
            }
            MediaAction::Leave { call_id } => {
                self.links.retain(|(d, c, _), _| !(*d == dev && *c == call_id));
            }
            MediaAction::CaptureCamera { call_id } | MediaAction::CaptureMicrophone { call_id } => {
                let kind = if matches!(action_kind, Some(TrackKind::Video)) { TrackKind::Video } else { TrackKind::Audio };
                let result = match self.devices[dev].capture_error {
                    Some(e) => Err(e),
                    None => Ok(vec![kind]),
                };
                self.schedule(now + self.capture_delay, dev, Input::Media(MediaEvent::Captured { call_id, result }));
            }
            MediaAction::Apply { .. }
            | MediaAction::Attach { .. }
            | MediaAction::RequestKeyFrames { .. }
            | MediaAction::SetEnabled { .. }
            // The simulated server has no SFU (AuthResult.sfu is never set).
            | MediaAction::Sfu(_) => {}
        }
    }
}
