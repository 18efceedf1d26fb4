//! The SFU relay (docs/sfu.md, "SDK side"): the server maps a device's SFU messages onto its
//! two Janus handles, since browsers never talk to Janus.
//!
//! - Each member device of a GROUP call with a room gets a **publisher** handle, joined as
//!   publisher with its seat (feed id, allow-list token) as soon as [`Sfu::sync`] seats it; the
//!   device then gets `SfuJoined`. `SfuPublish` → `publish` (first time) or `configure`
//!   (renegotiation) with its offer → `SfuAnswer` with Janus's answer.
//! - A **subscriber** handle (multistream) is joined at the device's first `SfuSubscribe`, with
//!   the `private_id` of its publisher (the rooms `require_pvtid`) → `SfuOffer` with the
//!   mid → (feed, user, kind) map; later ones `update` it. `SfuAnswer` → `start`.
//! - `SfuTrickle` → `trickle` on the handle `pc` names; `SfuLayers` → `configure` substreams.
//! - Janus's events (`JanusClient::events`) are routed by `sender` handle: a publisher
//!   handle's `publishers` / `unpublished` / `leaving` update the call's feed list, and every
//!   member device gets `SfuFeeds` when it changed; a subscriber handle's own offer (Janus
//!   renegotiates when a subscribed feed goes) is forwarded as `SfuOffer` with request id 0.
//! - A device that leaves the call gets both handles detached; after a Janus restart (a new
//!   session: every handle is gone) the recreated room is joined again and every member device
//!   gets `SfuRestart` with the new generation.
//!
//! Clients see opaque feed ids (random per seat), never Janus's. Only member devices (the ones
//! [`Sfu::sync`] seated: inviter and accepted callees, not ringing users) have a peer here:
//! anything else is answered `SfuFailed` with `NOT_IN_CALL`; a Janus refusal or timeout is
//! `SfuFailed` with `SFU_REQUEST_FAILED` (RCRTCCode 53004) and Janus's reason. Every Janus
//! request is bounded ([`super::janus`]: 10 s), so a request never hangs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{
    error_code, sfu_pc, SfuAnswer, SfuFailed, SfuFeed, SfuFeeds, SfuJoined, SfuLayers, SfuMid,
    SfuOffer, SfuPublish, SfuPublisherLayers, SfuRestart, SfuStream, SfuSubscribe, SfuTrickle,
    SfuWant,
};
use serde_json::{json, Value};

use super::janus::{Handle, JanusClient, JanusError, PluginReply};
use super::Sfu;
use crate::hub::{encode_body, ConnId, Outbox, Outgoing, PushError};

/// SFU requests one connection may have queued; past it they are refused (a client that
/// floods SFU requests cannot grow the server's memory).
pub const WORKER_QUEUE: usize = 64;

/// How long fewer simulcast layers must be wanted of a publisher before it is told to pause
/// the others (raising is at once): a tile count crossing the threshold back and forth, or a
/// member rejoining, costs no keyframe storm (docs/sfu.md, "Paused layers").
pub const LAYERS_HOLD: Duration = Duration::from_secs(3);

/// (app key, call id).
type CallKey = (String, String);
/// (user, device).
type Dev = (String, String);
/// (app key, user, device).
type DevKey = (String, String, String);
/// A device's live connections.
type Conns = Vec<(ConnId, Arc<Outbox>)>;

/// One SFU request of a connection, handled in order by the connection's worker.
pub enum Request {
    Publish(SfuPublish),
    Subscribe(SfuSubscribe),
    Answer(SfuAnswer),
    Trickle(SfuTrickle),
    Layers(SfuLayers),
}

/// Who sent a request.
#[derive(Clone)]
pub struct Requester {
    pub app: String,
    pub user: String,
    pub device: String,
    pub conn: ConnId,
}

/// One stream of a device's subscriber connection.
#[derive(Clone, Debug, PartialEq)]
struct SubStream {
    /// The mid in the subscriber connection.
    mid: String,
    /// Janus feed id and the publisher's mid.
    feed: String,
    feed_mid: String,
    kind: String,
}

/// A member device's side of a call on Janus (devices connected to this node).
struct Peer {
    /// Unique per peer ([`Relay::peer_serial`]).
    serial: u64,
    /// The Janus of the call's room (its subscriber handle is attached there too).
    janus: JanusClient,
    /// Its participant id in the room (Janus's; never sent to clients).
    janus_feed: String,
    /// The room and the device's allow-list token (its seat).
    room: String,
    token: String,
    publisher: Option<Handle>,
    private_id: Option<u64>,
    published: bool,
    /// Janus said the publishing connection is up (`webrtcup`) since its last `publish`.
    up: bool,
    subscriber: Option<Handle>,
    sub_streams: Vec<SubStream>,
    /// The layers last asked for (Janus feed, publisher mid, substream): applied again to the
    /// streams of every offer Janus makes later by itself — a subscription that found an offer
    /// unanswered ("updating") only gets its new streams then, and they start on the high layer.
    sub_layers: Vec<(String, String, i32)>,
    /// An offer of the subscriber handle is with the client, unanswered. Janus would hold an
    /// `update` sent now ("updating") and apply it later against streams we no longer know,
    /// so a subscription asked for meanwhile waits in `sub_deferred` until the answer is
    /// started (asking again for streams Janus held subscribed them twice: duplicate m-lines).
    sub_offer_out: bool,
    sub_deferred: Option<Vec<(String, String, i32)>>,
    /// The last offer with an SDP sent for the subscriber connection and its number
    /// (`SfuOffer.version`): sent again to a device whose subscription says it is behind (it
    /// was lost while the device was disconnected), so the two sides converge.
    offer: (u32, String),
}

impl Peer {
    /// Numbers an outgoing subscriber offer that has an SDP, and keeps it (a map-only one
    /// keeps version 0: it must not tell the device it is up to date).
    fn versioned(&mut self, mut o: SfuOffer) -> SfuOffer {
        if !o.sdp.is_empty() {
            self.offer = (self.offer.0 + 1, o.sdp.clone());
            o.version = self.offer.0;
        }
        o
    }
}

/// A seat of a call's room, wherever its device is connected (cluster mode: on any node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatInfo {
    pub user: String,
    pub device: String,
    /// Janus participant id.
    pub feed: String,
    /// Allow-list token.
    pub token: String,
    /// Cluster mode: the node holding the device's handles (empty on a single node).
    pub node: String,
}

#[derive(Default)]
struct CallState {
    /// The generation the devices were told (`SfuJoined`, `SfuRestart`): the room's creation
    /// count on a single node (with a random per-process base), its epoch in cluster mode.
    generation: u64,
    /// The Janus of the call's room (several Janus servers: it changes when the call moves).
    janus: Option<JanusClient>,
    /// Janus session generation the handles belong to (a new session: every handle is gone).
    session: u64,
    /// Every seat of the room: Janus feed → (device, the feed's opaque id).
    seats: HashMap<String, (Dev, String)>,
    peers: HashMap<Dev, Peer>,
    /// Devices told `SfuJoined` (after a Janus restart they get `SfuRestart` instead).
    announced: std::collections::HashSet<Dev>,
    /// Janus feed id → its streams, as Janus's publisher events list them (a feed is listed
    /// once its media is up).
    feeds: BTreeMap<String, Vec<SfuStream>>,
    /// The feed list each device was last sent: `SfuFeeds` only goes to those whose list changed.
    sent: HashMap<Dev, Vec<SfuFeed>>,
    /// Devices that moved here from another node and have not had their `SfuRestart` yet.
    moved_in: std::collections::HashSet<Dev>,
    /// The seats as last applied (cluster mode: the row in Redis), to write the row back if
    /// Redis loses it ([`Sfu::relay_row`]).
    row: Vec<SeatInfo>,
    /// Member devices told to pause layers (`SfuPublisherLayers`): the highest substream they
    /// were last told, and since when (`clock::mono_ms`) fewer are wanted. A device not listed
    /// sends every layer (the SDK keeps what it was told for the call, also across new
    /// publishing connections, until `SfuJoined` / `SfuRestart` make it start afresh).
    layers_told: HashMap<Dev, LayersTold>,
    /// Some seat's device is held by another node (cluster mode): its subscriptions are not
    /// seen here, so a publisher is paused only below what the other nodes share they take.
    remote_seats: bool,
    /// Cluster mode: the highest layer the other nodes holding seats take of each Janus feed
    /// (their shared wishes, `table::RoomTable::wants`); `None` while one of them has not
    /// shared any: then no publisher is paused (what it takes is unknown).
    remote_wants: Option<HashMap<String, u32>>,
    /// This node's wishes as last shared ([`Sfu::relay_local_wants`]).
    wants_shared: Option<String>,
}

/// A call's relay state and the locks that order its work (docs/sfu.md, "The messages and
/// the relay"): a device's requests run in order on its lane, different devices' at once.
#[derive(Default)]
struct Call {
    /// What is call-wide (seats, feed list, `SfuFeeds` fan-out, layer wishes, the peers).
    /// Never held across a Janus request: one device's slow request must not hold up the
    /// call's other devices.
    state: tokio::sync::Mutex<CallState>,
    /// One lane per device, held for each of its requests from start to reply: its requests
    /// reach Janus in the order it sent them (also across its connections).
    lanes: Mutex<HashMap<Dev, Arc<tokio::sync::Mutex<()>>>>,
    /// Held by a membership sync ([`Sfu::relay_seats`]) for its whole run: one at a time per
    /// call, while its publisher joins run without the state lock.
    sync: tokio::sync::Mutex<()>,
}

impl Call {
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, CallState> {
        self.state.lock().await
    }

    /// Waits for a device's turn.
    async fn lane(&self, dev: &Dev) -> tokio::sync::OwnedMutexGuard<()> {
        let lane = self
            .lanes
            .lock()
            .unwrap()
            .entry(dev.clone())
            .or_default()
            .clone();
        lane.lock_owned().await
    }
}

/// The relay's state, kept in [`Sfu`].
#[derive(Default)]
pub struct Relay {
    calls: Mutex<HashMap<CallKey, Arc<Call>>>,
    /// Numbers peers: a request that ran without the state lock writes its result only to the
    /// peer it started on (not to one a sync put in its place meanwhile).
    peer_serial: std::sync::atomic::AtomicU64,
    /// (app, user, device) → its live connections.
    conns: Mutex<HashMap<DevKey, Conns>>,
    /// Janus handle id → whose handle it is (events are routed by `sender`).
    handles: Mutex<HashMap<u64, (CallKey, Dev, u32)>>,
    workers: Mutex<HashMap<ConnId, tokio::sync::mpsc::Sender<(Requester, Request)>>>,
    /// Each call's Janus events, handled in order by a task of the call's own: a call busy
    /// with a slow Janus request delays only its own events.
    event_queues: Mutex<HashMap<CallKey, tokio::sync::mpsc::UnboundedSender<Value>>>,
    /// Calls to sync at once (a device's publisher closed by Janus), for [`super::follow`].
    pub(super) resync: std::sync::OnceLock<tokio::sync::mpsc::Sender<CallKey>>,
}

fn failed(request_id: u32, call_id: &str, pc: u32, code: i32, reason: String) -> Body {
    Body::SfuFailed(SfuFailed {
        request_id,
        call_id: call_id.to_owned(),
        pc,
        code,
        reason,
        answer: false,
    })
}

fn not_member(request_id: u32, call_id: &str, pc: u32) -> Body {
    failed(
        request_id,
        call_id,
        pc,
        error_code::NOT_IN_CALL,
        "this device is not a member of that SFU group call (only devices that invited or \
         accepted may publish or subscribe, after their SfuJoined)"
            .into(),
    )
}

/// A request of a device whose Janus side is being set up again (`SfuRestart` follows).
fn being_reset(request_id: u32, call_id: &str, pc: u32) -> Body {
    failed(
        request_id,
        call_id,
        pc,
        error_code::SFU_REQUEST_FAILED,
        "this device's SFU connection is being set up again (SfuRestart follows)".into(),
    )
}

/// A stream in a subscriber's `join` / `update`: a publisher's `mid`, or (empty) its whole feed.
fn stream_ref(feed: &str, mid: &str) -> Value {
    if mid.is_empty() {
        json!({"feed": feed})
    } else {
        json!({"feed": feed, "mid": mid})
    }
}

fn janus_failed(request_id: u32, call_id: &str, pc: u32, what: &str, e: &JanusError) -> Body {
    Body::SfuFailed(sfu_failed(request_id, call_id, pc, what, e))
}

fn sfu_failed(request_id: u32, call_id: &str, pc: u32, what: &str, e: &JanusError) -> SfuFailed {
    SfuFailed {
        request_id,
        call_id: call_id.to_owned(),
        pc,
        code: error_code::SFU_REQUEST_FAILED,
        reason: format!("{what}: {e}"),
        answer: false,
    }
}

/// What a publishing device was last told to keep sending (`SfuPublisherLayers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayersTold {
    /// The highest substream it keeps (0 low … 2 high).
    pub max: u32,
    /// Since when (ms) fewer layers are wanted of it; `None` while they are not.
    pub lower_since: Option<u64>,
}

impl Default for LayersTold {
    /// A device not told anything sends every layer.
    fn default() -> Self {
        Self {
            max: 2,
            lower_since: None,
        }
    }
}

/// The dynacast rule for one publisher, given what it was `told` and the highest layer anyone
/// takes of it now (`wanted`): more layers at once (an app asking a user's high layer sees it
/// within a keyframe), fewer only once that has held for `hold` ms (a tile count crossing the
/// threshold back and forth costs no keyframe storm); wanting what it was told again cancels a
/// pending lowering. Returns the new state and whether to tell the device (`max`).
pub fn layers_rule(told: LayersTold, wanted: u32, now: u64, hold: u64) -> (LayersTold, bool) {
    let at = |max| LayersTold {
        max,
        lower_since: None,
    };
    match wanted.cmp(&told.max) {
        std::cmp::Ordering::Greater => (at(wanted), true),
        std::cmp::Ordering::Equal => (at(told.max), false),
        std::cmp::Ordering::Less => {
            let since = told.lower_since.unwrap_or(now);
            if now.saturating_sub(since) >= hold {
                (at(wanted), true)
            } else {
                (
                    LayersTold {
                        max: told.max,
                        lower_since: Some(since),
                    },
                    false,
                )
            }
        }
    }
}

/// The highest simulcast layer (0 low … 2 high) the `subscribers` (each: its subscribed
/// streams and the layers it asked for, as (feed, feed mid or "" for all, substream)) take of
/// `janus_feed`'s video: the layer each asked for that stream (`-1`: by its tile count, as
/// [`Sfu::apply_layers`] sets it; none asked: Janus's default, the highest), 0 when nobody
/// subscribes to it. (What [`layers_rule`] is fed: a pure function, tested on its own.)
fn wanted_layer<'a>(
    subscribers: impl IntoIterator<Item = (&'a [SubStream], &'a [(String, String, i32)])>,
    janus_feed: &str,
) -> u32 {
    let mut top = 0;
    for (sub_streams, sub_layers) in subscribers {
        let tiles = sub_streams.iter().filter(|s| s.kind == "video").count();
        for s in sub_streams
            .iter()
            .filter(|s| s.kind == "video" && s.feed == janus_feed)
        {
            let asked = sub_layers
                .iter()
                .find(|(f, m, _)| *f == s.feed && (m.is_empty() || *m == s.feed_mid));
            let layer = match asked {
                Some((_, _, sub)) if *sub < 0 => auto_substream(tiles),
                Some((_, _, sub)) => (*sub).min(2),
                None => 2,
            };
            top = top.max(layer as u32);
        }
    }
    top
}

/// The layer (0 low … 2 high) for `-1` wants: by the number of video tiles the device shows.
pub fn auto_substream(video_tiles: usize) -> i32 {
    match video_tiles {
        0..=2 => 2,
        3..=4 => 1,
        _ => 0,
    }
}

/// The streams of a Janus `publishers` entry.
fn streams_of(publisher: &Value) -> Vec<SfuStream> {
    publisher
        .get("streams")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|s| matches!(s["type"].as_str(), Some("audio" | "video")))
                .map(|s| SfuStream {
                    mid: s["mid"].as_str().unwrap_or_default().to_owned(),
                    kind: s["type"].as_str().unwrap_or_default().to_owned(),
                    simulcast: s["simulcast"].as_bool() == Some(true),
                    muted: s["disabled"].as_bool() == Some(true),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A subscriber handle's streams from an `attached` / `updated` event: the active audio and
/// video ones, with the feed each carries.
fn sub_streams_of(data: &serde_json::Map<String, Value>) -> Vec<SubStream> {
    data.get("streams")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|s| s["active"].as_bool() != Some(false))
                .filter(|s| matches!(s["type"].as_str(), Some("audio" | "video")))
                .filter_map(|s| {
                    Some(SubStream {
                        mid: s["mid"].as_str()?.to_owned(),
                        feed: s["feed_id"].as_str()?.to_owned(),
                        feed_mid: s["feed_mid"].as_str().unwrap_or_default().to_owned(),
                        kind: s["type"].as_str()?.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `update` that takes a subscriber handle from `streams` to `wants` (Janus feed, publisher
/// mid — empty: the whole feed —, substream); `None` when nothing changes.
fn update_body(streams: &[SubStream], wants: &[(String, String, i32)]) -> Option<Value> {
    let wanted = |s: &SubStream| {
        wants
            .iter()
            .any(|(f, m, _)| *f == s.feed && (m.is_empty() || *m == s.feed_mid))
    };
    let unsubscribe: Vec<Value> = streams
        .iter()
        .filter(|s| !wanted(s))
        .map(|s| stream_ref(&s.feed, &s.feed_mid))
        .collect();
    let subscribe: Vec<Value> = wants
        .iter()
        .filter(|(f, m, _)| {
            !streams
                .iter()
                .any(|s| s.feed == *f && (m.is_empty() || *m == s.feed_mid))
        })
        .map(|(f, m, _)| stream_ref(f, m))
        .collect();
    if subscribe.is_empty() && unsubscribe.is_empty() {
        return None;
    }
    let mut body = json!({"request": "update"});
    if !subscribe.is_empty() {
        body["subscribe"] = json!(subscribe);
    }
    if !unsubscribe.is_empty() {
        body["unsubscribe"] = json!(unsubscribe);
    }
    Some(body)
}

impl CallState {
    /// The feeds a device sees: every other member's published streams, with opaque ids.
    fn feeds_for(&self, me: &Dev) -> Vec<SfuFeed> {
        let mut out: Vec<SfuFeed> = self
            .seats
            .iter()
            .filter(|(_, (d, _))| d != me)
            .filter_map(|(janus_feed, ((user, _), opaque))| {
                Some(SfuFeed {
                    feed: opaque.clone(),
                    user_id: user.clone(),
                    streams: self.feeds.get(janus_feed)?.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.feed.cmp(&b.feed));
        out
    }

    /// A device's peer, if it is still the one numbered `serial` (not replaced by a sync while
    /// a request ran without the state lock).
    fn peer_of(&mut self, dev: &Dev, serial: u64) -> Option<&mut Peer> {
        self.peers.get_mut(dev).filter(|p| p.serial == serial)
    }

    /// (device, opaque id) of a Janus feed.
    fn by_janus_feed(&self, feed: &str) -> Option<(&Dev, &String)> {
        self.seats.get(feed).map(|(d, o)| (d, o))
    }

    /// (device, Janus feed) of an opaque feed id.
    fn by_opaque(&self, feed: &str) -> Option<(&Dev, &String)> {
        self.seats
            .iter()
            .find(|(_, (_, o))| o == feed)
            .map(|(j, (d, _))| (d, j))
    }

    /// The highest simulcast layer any subscriber takes of `janus_feed`'s video: this node's
    /// ([`wanted_layer`]) and, in cluster mode with seats held elsewhere, the other nodes'
    /// shared ones (2 while one of them shared none).
    fn wanted_layer(&self, janus_feed: &str) -> u32 {
        let remote = match (&self.remote_wants, self.remote_seats) {
            (_, false) => 0,
            (None, true) => return 2,
            (Some(w), true) => w.get(janus_feed).copied().unwrap_or(0),
        };
        remote.max(self.local_wanted_layer(janus_feed))
    }

    /// What this node's subscribers take of `janus_feed` ([`wanted_layer`]).
    fn local_wanted_layer(&self, janus_feed: &str) -> u32 {
        wanted_layer(
            self.peers
                .values()
                .map(|p| (&p.sub_streams[..], &p.sub_layers[..])),
            janus_feed,
        )
    }

    fn mids(&self, streams: &[SubStream]) -> Vec<SfuMid> {
        streams
            .iter()
            .filter_map(|s| {
                let ((user, _), opaque) = self.by_janus_feed(&s.feed)?;
                Some(SfuMid {
                    mid: s.mid.clone(),
                    feed: opaque.clone(),
                    user_id: user.clone(),
                    kind: s.kind.clone(),
                })
            })
            .collect()
    }
}

/// The call `call_id` of the requester's app.
fn call_key(from: &Requester, call_id: &str) -> CallKey {
    (from.app.clone(), call_id.to_owned())
}

impl Sfu {
    /// The requester's device's turn in call `call_id` (None: no such call here): the call, the
    /// device, and its lane held, so a device's requests run one at a time, in order.
    async fn turn(
        &self,
        from: &Requester,
        call_id: &str,
    ) -> Option<(Arc<Call>, Dev, tokio::sync::OwnedMutexGuard<()>)> {
        let call = self.call_state(&call_key(from, call_id), false)?;
        let me = (from.user.clone(), from.device.clone());
        let lane = call.lane(&me).await;
        Some((call, me, lane))
    }

    fn call_state(&self, key: &CallKey, create: bool) -> Option<Arc<Call>> {
        let mut calls = self.relay.calls.lock().unwrap();
        match calls.get(key) {
            Some(c) => Some(c.clone()),
            None if create => Some(calls.entry(key.clone()).or_default().clone()),
            None => None,
        }
    }

    // ---- connections ----

    /// Whether a device has a live connection on this node.
    pub(super) fn is_connected(&self, app: &str, user: &str, device: &str) -> bool {
        self.relay.conns.lock().unwrap().contains_key(&(
            app.to_owned(),
            user.to_owned(),
            device.to_owned(),
        ))
    }

    /// The calls with a device's handles on this node.
    pub(super) fn relay_calls(&self) -> Vec<CallKey> {
        self.relay.calls.lock().unwrap().keys().cloned().collect()
    }

    /// A device's connection is live: SFU frames for the device go to it; a device already in
    /// an SFU call gets its `SfuJoined` again (it may have missed it while disconnected; the
    /// SDK ignores one for a generation it has). That part runs in a task of its own: a call
    /// busy with a slow Janus request must not hold up the connection.
    pub fn connected(
        self: &Arc<Self>,
        app: &str,
        user: &str,
        device: &str,
        conn: ConnId,
        outbox: Arc<Outbox>,
    ) {
        self.relay
            .conns
            .lock()
            .unwrap()
            .entry((app.to_owned(), user.to_owned(), device.to_owned()))
            .or_default()
            .push((conn, outbox));
        let (this, app, user, device) = (
            self.clone(),
            app.to_owned(),
            user.to_owned(),
            device.to_owned(),
        );
        tokio::spawn(async move { this.announce_again(&app, &user, &device).await });
    }

    async fn announce_again(&self, app: &str, user: &str, device: &str) {
        let calls: Vec<(CallKey, Arc<Call>)> = self
            .relay
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let me = (user.to_owned(), device.to_owned());
        for ((_, call_id), cs) in calls {
            let mut cs = cs.lock().await;
            if cs.announced.contains(&me) && cs.peers.contains_key(&me) {
                let feeds = cs.feeds_for(&me);
                cs.sent.insert(me.clone(), feeds.clone());
                let joined = Body::SfuJoined(SfuJoined {
                    call_id: call_id.clone(),
                    feeds,
                    generation: cs.generation as u32,
                });
                self.send_to(app, user, device, joined);
                // What it was told may have been lost while it was disconnected.
                if let Some(told) = cs.layers_told.get(&me) {
                    let body = Body::SfuPublisherLayers(SfuPublisherLayers {
                        call_id: call_id.clone(),
                        max_substream: told.max,
                    });
                    self.send_to(app, user, device, body);
                }
            }
        }
    }

    /// The connection ended: its queued SFU requests are still handled, then its worker ends.
    pub fn disconnected(&self, app: &str, user: &str, device: &str, conn: ConnId) {
        self.relay.workers.lock().unwrap().remove(&conn);
        let mut conns = self.relay.conns.lock().unwrap();
        let key = (app.to_owned(), user.to_owned(), device.to_owned());
        if let Some(v) = conns.get_mut(&key) {
            v.retain(|(c, _)| *c != conn);
            if v.is_empty() {
                conns.remove(&key);
            }
        }
    }

    /// Queues one of a connection's SFU requests for its worker (one per connection: its
    /// requests reach Janus in the order it sent them). Refused with `SfuFailed` when the queue
    /// is full.
    pub fn submit(self: &Arc<Self>, from: Requester, outbox: &Outbox, req: Request) {
        let mut workers = self.relay.workers.lock().unwrap();
        let tx = workers.entry(from.conn).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(WORKER_QUEUE);
            tokio::spawn(self.clone().worker(rx));
            tx
        });
        if let Err(tokio::sync::mpsc::error::TrySendError::Full((_, req))) =
            tx.try_send((from, req))
        {
            let (request_id, call_id, pc) = match &req {
                Request::Publish(r) => (r.request_id, r.call_id.clone(), sfu_pc::PUBLISHER),
                Request::Subscribe(r) => (r.request_id, r.call_id.clone(), sfu_pc::SUBSCRIBER),
                Request::Answer(r) => (r.request_id, r.call_id.clone(), sfu_pc::SUBSCRIBER),
                Request::Trickle(_) | Request::Layers(_) => return,
            };
            let body = failed(
                request_id,
                &call_id,
                pc,
                error_code::SFU_REQUEST_FAILED,
                format!("more than {WORKER_QUEUE} SFU requests queued on this connection"),
            );
            push(outbox, body);
        }
    }

    async fn worker(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<(Requester, Request)>) {
        while let Some((from, req)) = rx.recv().await {
            // What subscribers take may have changed (or a publisher may start afresh).
            let layers_of = match &req {
                Request::Publish(r) => Some(r.call_id.clone()),
                Request::Subscribe(r) => Some(r.call_id.clone()),
                Request::Answer(r) => Some(r.call_id.clone()),
                Request::Layers(r) => Some(r.call_id.clone()),
                Request::Trickle(_) => None,
            };
            let reply = match req {
                Request::Publish(r) => {
                    let call_id = r.call_id.clone();
                    let body = self.publish(&from, r).await;
                    if matches!(body, Body::SfuAnswer(_)) {
                        self.watch_media(&from, call_id).await;
                    }
                    Some(body)
                }
                Request::Subscribe(r) => Some(self.subscribe(&from, r).await),
                Request::Answer(r) => self.answer(&from, r).await,
                Request::Trickle(r) => {
                    self.trickle(&from, r).await;
                    None
                }
                Request::Layers(r) => {
                    self.layers(&from, r).await;
                    None
                }
            };
            if let Some(body) = reply {
                self.send_to(&from.app, &from.user, &from.device, body);
            }
            if let Some(call_id) = layers_of {
                let key = (from.app.clone(), call_id);
                if let Some(cs) = self.call_state(&key, false) {
                    self.publisher_layers(&key, &mut *cs.lock().await);
                }
                // (Cluster mode: the publishers' nodes see it at their next pass.)
                self.share_wants(&key.0, &key.1, false).await;
            }
        }
    }

    /// Tells each publishing device of the call whose wanted layers changed which it must
    /// keep sending (`SfuPublisherLayers`, "dynacast"): more at once, fewer once that has
    /// held for [`LAYERS_HOLD`] (checked again at every request and every sync pass, ≤ 1 s).
    fn publisher_layers(&self, key: &CallKey, cs: &mut CallState) {
        let now = crate::clock::mono_ms();
        let hold = LAYERS_HOLD.as_millis() as u64;
        let publishers: Vec<(Dev, String)> = cs
            .peers
            .iter()
            .map(|(d, p)| (d.clone(), p.janus_feed.clone()))
            .collect();
        cs.layers_told
            .retain(|d, _| publishers.iter().any(|(p, _)| p == d));
        for (dev, feed) in publishers {
            let wanted = cs.wanted_layer(&feed);
            let told = cs.layers_told.entry(dev.clone()).or_default();
            let send;
            (*told, send) = layers_rule(*told, wanted, now, hold);
            if send {
                // (Seen in the e2e tests' failure output: which pause a device was sent, when.)
                tracing::info!(call = %key.1, user = %dev.0, device = %dev.1, max_substream = told.max, "SFU: publisher told which simulcast layers to keep");
                let body = Body::SfuPublisherLayers(SfuPublisherLayers {
                    call_id: key.1.clone(),
                    max_substream: told.max,
                });
                self.send_to(&key.0, &dev.0, &dev.1, body);
            }
        }
    }

    /// Sends a frame to every live connection of a device (none: dropped; what matters is
    /// sent again on reconnect, see [`Self::connected`]).
    fn send_to(&self, app: &str, user: &str, device: &str, body: Body) {
        let conns = self.relay.conns.lock().unwrap();
        let Some(v) = conns.get(&(app.to_owned(), user.to_owned(), device.to_owned())) else {
            return;
        };
        for (_, outbox) in v {
            push(outbox, body.clone());
        }
    }

    // ---- requests ----

    async fn publish(&self, from: &Requester, r: SfuPublish) -> Body {
        let pc = sfu_pc::PUBLISHER;
        let Some((call, me, _lane)) = self.turn(from, &r.call_id).await else {
            return not_member(r.request_id, &r.call_id, pc);
        };
        let (h, serial, request) = {
            let cs = call.lock().await;
            let Some(peer) = cs.peers.get(&me) else {
                return not_member(r.request_id, &r.call_id, pc);
            };
            if r.sdp_offer.is_empty() {
                return failed(
                    r.request_id,
                    &r.call_id,
                    pc,
                    error_code::INVALID_PARAMETER,
                    "empty SDP offer".into(),
                );
            }
            let Some(h) = peer.publisher.clone() else {
                return being_reset(r.request_id, &r.call_id, pc);
            };
            // First time `publish`; a renegotiation (tracks added, removed, replaced) `configure`.
            let request = if peer.published {
                "configure"
            } else {
                "publish"
            };
            (h, peer.serial, request)
        };
        let jsep = json!({"type": "offer", "sdp": r.sdp_offer});
        match h.request(json!({"request": request}), Some(jsep)).await {
            Ok(reply) => match reply.jsep.as_ref().and_then(|j| j["sdp"].as_str()) {
                Some(sdp) => {
                    if let Some(peer) = call.lock().await.peer_of(&me, serial) {
                        peer.published = true;
                        if request == "publish" {
                            peer.up = false; // (a new connection: `webrtcup` follows)
                        }
                    }
                    Body::SfuAnswer(SfuAnswer {
                        request_id: r.request_id,
                        call_id: r.call_id,
                        sdp: sdp.to_owned(),
                    })
                }
                None => failed(
                    r.request_id,
                    &r.call_id,
                    pc,
                    error_code::SFU_REQUEST_FAILED,
                    format!("Janus answered `{request}` without an SDP answer"),
                ),
            },
            Err(e) => janus_failed(r.request_id, &r.call_id, pc, request, &e),
        }
    }

    async fn subscribe(&self, from: &Requester, r: SfuSubscribe) -> Body {
        /// What to ask Janus, decided under the state lock and sent without it.
        enum Step {
            /// The first subscription: attach a subscriber handle and join with this body.
            Join(JanusClient, Value),
            /// `update` (or an ICE-restart `configure`) on the subscriber handle.
            Ask(Handle, Value, &'static str),
            /// Nothing to renegotiate now: the layers set, the current map sent, no SDP.
            Map(Handle, Vec<SubStream>, Vec<SfuMid>),
        }
        let pc = sfu_pc::SUBSCRIBER;
        let Some((call, me, _lane)) = self.turn(from, &r.call_id).await else {
            return not_member(r.request_id, &r.call_id, pc);
        };
        let (step, wants, serial) = {
            let mut guard = call.lock().await;
            let cs = &mut *guard;
            if !cs.peers.contains_key(&me) {
                return not_member(r.request_id, &r.call_id, pc);
            }
            // Opaque ids → Janus feeds.
            let mut wants: Vec<(String, String, i32)> = Vec::new();
            for w in &r.want {
                match cs.by_opaque(&w.feed) {
                    Some(((u, d), janus_feed)) if (u, d) != (&me.0, &me.1) => {
                        wants.push((janus_feed.clone(), w.mid.clone(), w.substream))
                    }
                    _ => {
                        return failed(
                            r.request_id,
                            &r.call_id,
                            pc,
                            error_code::INVALID_PARAMETER,
                            format!("no feed {:?} of another member in this call", w.feed),
                        )
                    }
                }
            }
            // The device missed our latest offer (lost while it was disconnected): it goes
            // again first, as Janus holds any update until it is answered.
            let behind = cs.peers.get(&me).filter(|p| {
                p.subscriber.is_some() && r.offer_version.is_some_and(|v| v < p.offer.0)
            });
            if let Some(p) = behind {
                let o = SfuOffer {
                    request_id: 0,
                    call_id: r.call_id.clone(),
                    sdp: p.offer.1.clone(),
                    mids: cs.mids(&p.sub_streams),
                    version: p.offer.0,
                };
                self.send_to(&from.app, &from.user, &from.device, Body::SfuOffer(o));
            }
            let peer = cs.peers.get_mut(&me).expect("checked above");
            peer.sub_layers = wants.clone();
            let step = match &peer.subscriber {
                None => {
                    if wants.is_empty() {
                        return Body::SfuOffer(SfuOffer {
                            request_id: r.request_id,
                            call_id: r.call_id,
                            sdp: String::new(),
                            mids: Vec::new(),
                            version: 0,
                        });
                    }
                    let Some(private_id) = peer.private_id else {
                        return being_reset(r.request_id, &r.call_id, pc);
                    };
                    let streams: Vec<Value> =
                        wants.iter().map(|(f, m, _)| stream_ref(f, m)).collect();
                    let body = json!({
                        "request": "join", "ptype": "subscriber", "room": peer.room,
                        "private_id": private_id, "token": peer.token, "streams": streams,
                    });
                    Step::Join(peer.janus.clone(), body)
                }
                Some(h) => {
                    let body = if peer.sub_offer_out {
                        // Sent once the client's answer to the outstanding offer is started.
                        peer.sub_deferred = Some(wants.clone());
                        None
                    } else {
                        update_body(&peer.sub_streams, &wants)
                    };
                    match body {
                        Some(body) => Step::Ask(h.clone(), body, "update"),
                        // The device's receiving connection lost its transport: Janus offers
                        // again with fresh ICE credentials.
                        None if r.restart && !peer.sub_offer_out => Step::Ask(
                            h.clone(),
                            json!({"request": "configure", "restart": true}),
                            "configure",
                        ),
                        None => {
                            let (h, streams) = (h.clone(), peer.sub_streams.clone());
                            let mids = cs.mids(&streams);
                            Step::Map(h, streams, mids)
                        }
                    }
                }
            };
            let serial = cs.peers[&me].serial;
            (step, wants, serial)
        };
        let reply = match step {
            Step::Map(h, streams, mids) => {
                self.apply_layers(&h, &streams, &wants).await;
                return Body::SfuOffer(SfuOffer {
                    request_id: r.request_id,
                    call_id: r.call_id,
                    sdp: String::new(),
                    mids,
                    version: 0,
                });
            }
            Step::Ask(h, body, what) => h.request(body, None).await.map_err(|e| (what, e)),
            Step::Join(janus, body) => {
                let h = match janus.attach().await {
                    Ok(h) => h,
                    Err(e) => return janus_failed(r.request_id, &r.call_id, pc, "attach", &e),
                };
                match h.request(body, None).await {
                    Ok(reply) => {
                        let mut cs = call.lock().await;
                        let Some(peer) = cs.peer_of(&me, serial) else {
                            // (Set up again meanwhile: this handle belongs to nobody.)
                            tokio::spawn(h.detach());
                            return being_reset(r.request_id, &r.call_id, pc);
                        };
                        self.relay
                            .handles
                            .lock()
                            .unwrap()
                            .insert(h.id(), (call_key(from, &r.call_id), me.clone(), pc));
                        peer.subscriber = Some(h);
                        Ok(reply)
                    }
                    Err(e) => {
                        tokio::spawn(h.detach());
                        Err(("join", e))
                    }
                }
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err((what, e)) => return janus_failed(r.request_id, &r.call_id, pc, what, &e),
        };
        let (offer, h, streams) = {
            let mut guard = call.lock().await;
            let cs = &mut *guard;
            let Some(peer) = cs.peer_of(&me, serial) else {
                return being_reset(r.request_id, &r.call_id, pc);
            };
            // ("updating": an earlier offer is not answered yet; Janus sends this one when it
            // is, as an event → `SfuOffer` with request id 0. Until then: the map only.)
            if reply.data.contains_key("streams") {
                peer.sub_streams = sub_streams_of(&reply.data);
            }
            // An offer now, or one Janus sends when it applies a held update.
            peer.sub_offer_out |= reply.jsep.is_some()
                || reply.data.get("videoroom").and_then(Value::as_str) == Some("updating");
            let (h, streams) = (peer.subscriber.clone(), peer.sub_streams.clone());
            let mids = cs.mids(&streams);
            let peer = cs.peers.get_mut(&me).expect("looked up above");
            let offer = peer.versioned(SfuOffer {
                request_id: r.request_id,
                call_id: r.call_id,
                sdp: reply
                    .jsep
                    .as_ref()
                    .and_then(|j| j["sdp"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                mids,
                version: 0,
            });
            (offer, h, streams)
        };
        if let Some(h) = h {
            self.apply_layers(&h, &streams, &wants).await;
        }
        Body::SfuOffer(offer)
    }

    /// Sets the simulcast layer of each wanted video stream (`-1`: by the tile count).
    async fn apply_layers(
        &self,
        h: &Handle,
        streams: &[SubStream],
        wants: &[(String, String, i32)],
    ) {
        let tiles = streams.iter().filter(|s| s.kind == "video").count();
        let config: Vec<Value> = streams
            .iter()
            .filter(|s| s.kind == "video")
            .filter_map(|s| {
                let (_, _, sub) = wants
                    .iter()
                    .find(|(f, m, _)| *f == s.feed && (m.is_empty() || *m == s.feed_mid))?;
                let sub = if *sub < 0 {
                    auto_substream(tiles)
                } else {
                    (*sub).min(2)
                };
                Some(json!({"mid": s.mid, "substream": sub}))
            })
            .collect();
        if config.is_empty() {
            return;
        }
        if let Err(e) = h
            .request(json!({"request": "configure", "streams": config}), None)
            .await
        {
            tracing::info!(error = %e, "SFU: setting simulcast layers failed");
        }
    }

    /// The client's answer to an `SfuOffer` → `start`. Only failures are answered; a refused
    /// answer also drops the subscriber handle ([`Sfu::drop_subscriber`]).
    async fn answer(&self, from: &Requester, r: SfuAnswer) -> Option<Body> {
        let pc = sfu_pc::SUBSCRIBER;
        let Some((call, me, _lane)) = self.turn(from, &r.call_id).await else {
            return Some(not_member(r.request_id, &r.call_id, pc));
        };
        let (h, serial) = {
            let cs = call.lock().await;
            let Some(peer) = cs.peers.get(&me) else {
                return Some(not_member(r.request_id, &r.call_id, pc));
            };
            let Some(h) = peer.subscriber.clone() else {
                // Marked `answer`: a refused answer, not a failed request. A device that
                // answered two offers in a row, the first refused (its subscription dropped),
                // gets this for the second; unmarked, under request id 0, the engine took it
                // for a failure of whatever subscription it had asked for since.
                return Some(Body::SfuFailed(SfuFailed {
                    request_id: r.request_id,
                    call_id: r.call_id,
                    pc,
                    code: error_code::INVALID_PARAMETER,
                    reason: "SfuAnswer without a subscription (send SfuSubscribe first)".into(),
                    answer: true,
                }));
            };
            (h, peer.serial)
        };
        let jsep = json!({"type": "answer", "sdp": r.sdp});
        if let Err(e) = h.request(json!({"request": "start"}), Some(jsep)).await {
            self.drop_subscriber(&call, &me, serial, &h).await;
            return Some(Body::SfuFailed(SfuFailed {
                answer: true,
                ..sfu_failed(r.request_id, &r.call_id, pc, "start", &e)
            }));
        }
        // The subscription asked for while that offer was out.
        let (wants, body, streams) = {
            let mut cs = call.lock().await;
            let peer = cs.peer_of(&me, serial)?;
            peer.sub_offer_out = false;
            let wants = peer.sub_deferred.take()?;
            let body = update_body(&peer.sub_streams, &wants);
            (wants, body, peer.sub_streams.clone())
        };
        let Some(body) = body else {
            self.apply_layers(&h, &streams, &wants).await;
            return None;
        };
        let reply = match h.request(body, None).await {
            Ok(reply) => reply,
            Err(e) => return Some(janus_failed(0, &r.call_id, pc, "update", &e)),
        };
        let (offer, streams) = {
            let mut guard = call.lock().await;
            let cs = &mut *guard;
            let peer = cs.peer_of(&me, serial)?;
            if reply.data.contains_key("streams") {
                peer.sub_streams = sub_streams_of(&reply.data);
            }
            peer.sub_offer_out = true;
            let streams = peer.sub_streams.clone();
            let offer = match reply.jsep.as_ref().and_then(|j| j["sdp"].as_str()) {
                Some(sdp) => {
                    let mids = cs.mids(&streams);
                    let peer = cs.peers.get_mut(&me)?;
                    Some(peer.versioned(SfuOffer {
                        request_id: 0,
                        call_id: r.call_id.clone(),
                        sdp: sdp.to_owned(),
                        mids,
                        version: 0,
                    }))
                }
                None => None,
            };
            (offer, streams)
        };
        self.apply_layers(&h, &streams, &wants).await;
        if let Some(o) = offer {
            self.send_to(&from.app, &me.0, &me.1, Body::SfuOffer(o));
        }
        None
    }

    /// Janus refused a device's answer (`start` failed): its offer stays unanswered on that
    /// subscriber handle for good, so nothing on it can go on — an `update` is held
    /// ("updating"), a subscription asked for meanwhile waits in `sub_deferred` forever, an ICE
    /// restart is skipped. The handle is dropped instead (detached; its streams, the deferred
    /// subscription and the outstanding offer forgotten): the device is told (`SfuFailed` with
    /// `answer`) and its next `SfuSubscribe` joins a fresh subscriber handle with everything it
    /// wants then (which covers what was deferred). The offer version counter goes on, so the
    /// fresh offer is newer than any the device saw.
    async fn drop_subscriber(&self, call: &Call, me: &Dev, serial: u64, h: &Handle) {
        let mut cs = call.lock().await;
        let Some(peer) = cs.peer_of(me, serial) else {
            return;
        };
        if peer.subscriber.as_ref().is_none_or(|s| s.id() != h.id()) {
            return; // (set up again meanwhile)
        }
        peer.subscriber = None;
        peer.sub_streams.clear();
        peer.sub_offer_out = false;
        peer.sub_deferred = None;
        peer.offer.1.clear();
        self.relay.handles.lock().unwrap().remove(&h.id());
        tokio::spawn(h.clone().detach());
    }

    async fn trickle(&self, from: &Requester, r: SfuTrickle) {
        let Some((call, me, _lane)) = self.turn(from, &r.call_id).await else {
            return;
        };
        let h = {
            let cs = call.lock().await;
            let Some(peer) = cs.peers.get(&me) else {
                return;
            };
            match r.pc {
                sfu_pc::PUBLISHER => peer.publisher.clone(),
                sfu_pc::SUBSCRIBER => peer.subscriber.clone(),
                _ => None,
            }
        };
        let Some(h) = h else {
            return;
        };
        let candidate = (!r.candidate.is_empty()).then(|| {
            json!({"candidate": r.candidate, "sdpMid": r.sdp_mid, "sdpMLineIndex": r.sdp_mline_index})
        });
        if let Err(e) = h.trickle(candidate).await {
            tracing::info!(error = %e, "SFU: trickle failed");
        }
    }

    async fn layers(&self, from: &Requester, r: SfuLayers) {
        let Some((call, me, _lane)) = self.turn(from, &r.call_id).await else {
            return;
        };
        let (h, streams, wants) = {
            let mut cs = call.lock().await;
            let wants: Vec<(String, String, i32)> = r
                .want
                .iter()
                .filter_map(|w: &SfuWant| {
                    let (_, janus_feed) = cs.by_opaque(&w.feed)?;
                    Some((janus_feed.clone(), w.mid.clone(), w.substream))
                })
                .collect();
            let Some(peer) = cs.peers.get_mut(&me) else {
                return;
            };
            // Remembered, so that later offers of Janus keep these layers, and a subscription
            // waiting for the outstanding offer's answer (`sub_deferred`) applies them too.
            for w in &wants {
                match peer
                    .sub_layers
                    .iter_mut()
                    .find(|l| (&l.0, &l.1) == (&w.0, &w.1))
                {
                    Some(l) => l.2 = w.2,
                    None => peer.sub_layers.push(w.clone()),
                }
                let deferred = peer.sub_deferred.iter_mut().flatten();
                for l in deferred.filter(|l| (&l.0, &l.1) == (&w.0, &w.1)) {
                    l.2 = w.2;
                }
            }
            let Some(h) = peer.subscriber.clone() else {
                return;
            };
            (h, peer.sub_streams.clone(), wants)
        };
        self.apply_layers(&h, &streams, &wants).await;
    }

    // ---- membership (from `follow`, after `Sfu::sync`) ----

    /// Single node: every member device is seated here ([`Sfu::sync`]) and connected here.
    /// Makes the call's peers follow its seats: joins a publisher handle for each newly seated
    /// device (then `SfuJoined`), detaches both handles of devices that left, and after a
    /// Janus restart joins everyone again and sends `SfuRestart`. Idempotent.
    pub async fn relay_sync(&self, app: &str, call_id: &str, members: &[(Arc<str>, Arc<str>)]) {
        let mut seats = Vec::new();
        for (u, d) in members {
            if let Some(g) = self.grant(app, call_id, u, d).await {
                seats.push(SeatInfo {
                    user: u.to_string(),
                    device: d.to_string(),
                    feed: g.feed,
                    token: g.token,
                    node: String::new(),
                });
            }
        }
        let local: Vec<(Dev, bool)> = seats
            .iter()
            .map(|s| ((s.user.clone(), s.device.clone()), false))
            .collect();
        let room = super::room_id(app, call_id);
        // (No room: nothing to join; the call's handles, if any, are detached.)
        let (janus, epoch) = match self.placed(app, call_id).await {
            Some(p) => p,
            None => (self.janus().clone(), 0),
        };
        let generation = self.generation_base + epoch;
        self.relay_seats(
            &janus,
            app,
            call_id,
            &room,
            generation,
            &seats,
            &local,
            members.is_empty(),
        )
        .await;
    }

    /// Makes this node's peers of a call follow the room's `seats`: `local` are the seated
    /// devices whose handles live on this node (with `true` for one that just moved here from
    /// another node: its old handles were kicked, so it gets `SfuRestart` after `SfuJoined`).
    /// Joins a publisher handle for each new local seat (then `SfuJoined`), detaches both
    /// handles of devices no longer local, and after a new `generation` (room recreated) or a
    /// new Janus session joins everyone again and sends `SfuRestart`. `over`: the call ended.
    /// Idempotent.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn relay_seats(
        &self,
        janus: &JanusClient,
        app: &str,
        call_id: &str,
        room: &str,
        generation: u64,
        seats: &[SeatInfo],
        local: &[(Dev, bool)],
        over: bool,
    ) {
        let key = (app.to_owned(), call_id.to_owned());
        let Some(call) = self.call_state(&key, !over && !local.is_empty()) else {
            return;
        };
        let _sync = call.sync.lock().await;
        let mut guard = call.lock().await;
        let cs = &mut *guard;
        let session = janus.session_generation();
        // No seat (the call is over, or its room is not made yet): nothing to join again, so
        // nothing restarts — the peers left are detached below as gone (on their own Janus),
        // and the generation stays what the devices were told.
        let roomless = seats.is_empty();
        let moved = cs.janus.as_ref().is_some_and(|j| j.url() != janus.url());
        let restarted = !roomless
            && cs.generation != 0
            && (cs.generation != generation || cs.session != session || moved);
        let mut changed = false;
        if restarted {
            // Every handle went with the old session (or the old room).
            for (_, p) in cs.peers.drain() {
                self.forget_handles(&p);
            }
            changed = !cs.feeds.is_empty();
            cs.feeds.clear();
        }
        if !roomless {
            cs.janus = Some(janus.clone());
            cs.generation = generation;
            cs.session = session;
        }
        // Every node derives the same opaque ids.
        let seat_map: HashMap<String, (Dev, String)> = seats
            .iter()
            .map(|s| {
                let dev = (s.user.clone(), s.device.clone());
                (s.feed.clone(), (dev, self.opaque_feed(room, &s.feed)))
            })
            .collect();
        if seat_map != cs.seats {
            changed = true;
            cs.seats = seat_map;
        }
        cs.row = seats.to_vec();
        cs.remote_seats = seats.iter().any(|s| {
            !local
                .iter()
                .any(|((u, d), _)| *u == s.user && *d == s.device)
        });
        for (dev, moved) in local {
            if *moved {
                cs.moved_in.insert(dev.clone());
            }
        }
        // Those who left, moved to another node, or whose seat changed: handles detached.
        let gone: Vec<Dev> = cs
            .peers
            .iter()
            .filter(|(dev, p)| {
                !local.iter().any(|(l, _)| l == *dev) || !cs.seats.contains_key(&p.janus_feed)
            })
            .map(|(dev, _)| dev.clone())
            .collect();
        for dev in gone {
            let p = cs.peers.remove(&dev).expect("listed");
            changed |= cs.feeds.remove(&p.janus_feed).is_some();
            if !local.iter().any(|(l, _)| *l == dev) {
                cs.announced.remove(&dev);
                cs.sent.remove(&dev);
                cs.moved_in.remove(&dev);
            }
            self.detach_peer(p);
        }
        call.lanes
            .lock()
            .unwrap()
            .retain(|d, _| local.iter().any(|(l, _)| l == d));
        // The devices to join (again): their publisher handles are joined at once, without the
        // state lock (the call's other devices go on meanwhile; a join burst is not serialised).
        let mut to_join: Vec<(Dev, &SeatInfo)> = Vec::new();
        for (dev, _) in local {
            let Some(seat) = seats.iter().find(|s| s.user == dev.0 && s.device == dev.1) else {
                continue;
            };
            if cs
                .peers
                .get(dev)
                .is_some_and(|p| p.janus_feed == seat.feed && p.publisher.is_some())
            {
                continue;
            }
            if let Some(p) = cs.peers.remove(dev) {
                changed |= cs.feeds.remove(&p.janus_feed).is_some();
                self.detach_peer(p);
            }
            to_join.push((dev.clone(), seat));
        }
        drop(guard);
        let joins = futures::future::join_all(
            to_join
                .iter()
                .map(|(dev, seat)| join_publisher(janus, call_id, room, dev, seat)),
        )
        .await;
        let mut guard = call.lock().await;
        let cs = &mut *guard;
        for ((dev, seat), joined) in to_join.iter().zip(joins) {
            let Some((h, joined)) = joined else {
                continue;
            };
            self.relay
                .handles
                .lock()
                .unwrap()
                .insert(h.id(), (key.clone(), dev.clone(), sfu_pc::PUBLISHER));
            // Publishers already up in the room.
            for p in joined
                .data
                .get("publishers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = p["id"].as_str() {
                    changed |= cs.feeds.insert(id.to_owned(), streams_of(p)).is_none();
                }
            }
            cs.peers.insert(
                dev.clone(),
                Peer {
                    serial: self.relay.peer_serial.fetch_add(1, Ordering::Relaxed),
                    janus: janus.clone(),
                    janus_feed: seat.feed.clone(),
                    room: room.to_owned(),
                    token: seat.token.clone(),
                    publisher: Some(h),
                    private_id: joined.data.get("private_id").and_then(Value::as_u64),
                    published: false,
                    up: false,
                    subscriber: None,
                    sub_streams: Vec::new(),
                    sub_layers: Vec::new(),
                    sub_offer_out: false,
                    sub_deferred: None,
                    offer: (0, String::new()),
                },
            );
            let feeds = cs.feeds_for(dev);
            cs.sent.insert(dev.clone(), feeds.clone());
            // (It starts afresh, sending every layer.)
            cs.layers_told.remove(dev);
            let restart = Body::SfuRestart(SfuRestart {
                call_id: call_id.to_owned(),
                generation: generation as u32,
            });
            if cs.announced.insert(dev.clone()) {
                let joined = Body::SfuJoined(SfuJoined {
                    call_id: call_id.to_owned(),
                    feeds,
                    generation: generation as u32,
                });
                self.send_to(app, &dev.0, &dev.1, joined);
                // Moved here from another node: the SDK knows this generation already and
                // its connections went with the old node's handles.
                if cs.moved_in.remove(dev) {
                    self.send_to(app, &dev.0, &dev.1, restart);
                }
            } else {
                // (The device forgets its feeds; `SfuFeeds` follow as members publish again.)
                cs.moved_in.remove(dev);
                tracing::info!(call = call_id, user = %dev.0, generation, "SFU: SfuRestart sent");
                self.send_to(app, &dev.0, &dev.1, restart);
            }
        }
        if changed {
            self.broadcast_feeds(app, call_id, cs);
        }
        self.publisher_layers(&key, cs);
        if over || (local.is_empty() && cs.peers.is_empty()) {
            for (_, p) in cs.peers.drain() {
                self.detach_peer(p);
            }
            drop(guard);
            let mut calls = self.relay.calls.lock().unwrap();
            if calls.get(&key).is_some_and(|c| Arc::ptr_eq(c, &call)) {
                calls.remove(&key);
                // (Its event task ends once it has handled what is queued.)
                self.relay.event_queues.lock().unwrap().remove(&key);
            }
        }
    }

    /// Cluster mode: what the other nodes holding the call's seats take of each feed (`None`:
    /// one of them shared nothing yet), then the dynacast rule applied with it.
    pub(super) async fn relay_remote_wants(
        &self,
        app: &str,
        call_id: &str,
        wants: Option<HashMap<String, u32>>,
    ) {
        let key = (app.to_owned(), call_id.to_owned());
        let Some(call) = self.call_state(&key, false) else {
            return;
        };
        let mut cs = call.lock().await;
        cs.remote_wants = wants;
        self.publisher_layers(&key, &mut cs);
    }

    /// Cluster mode: this node's layer wishes for the call's feeds (`table::wants_value`), if
    /// they changed since [`Self::relay_wants_shared`] (or `force`: Redis lost them).
    pub(super) async fn relay_local_wants(
        &self,
        app: &str,
        call_id: &str,
        force: bool,
    ) -> Option<String> {
        let call = self.call_state(&(app.to_owned(), call_id.to_owned()), false)?;
        let cs = call.lock().await;
        let mut feeds: Vec<&String> = cs.seats.keys().collect();
        feeds.sort();
        let wants: Vec<(String, u32)> = feeds
            .into_iter()
            .map(|f| (f.clone(), cs.local_wanted_layer(f)))
            .collect();
        let value = super::table::wants_value(&wants);
        (force || cs.wants_shared.as_ref() != Some(&value)).then_some(value)
    }

    /// Cluster mode: `value` ([`Self::relay_local_wants`]) is in Redis.
    pub(super) async fn relay_wants_shared(&self, app: &str, call_id: &str, value: String) {
        if let Some(call) = self.call_state(&(app.to_owned(), call_id.to_owned()), false) {
            call.lock().await.wants_shared = Some(value);
        }
    }

    /// Cluster mode: the generation (room epoch) and seats this node last applied for a call
    /// whose handles it holds under the current Janus session — what the call's row said, for
    /// writing it back when Redis lost it (the room on Janus is the same).
    pub(super) async fn relay_row(
        &self,
        app: &str,
        call_id: &str,
        janus: &JanusClient,
    ) -> Option<(u64, Vec<SeatInfo>)> {
        let cs = self.call_state(&(app.to_owned(), call_id.to_owned()), false)?;
        let cs = cs.lock().await;
        let live = cs.generation != 0
            && cs.janus.as_ref().is_some_and(|j| j.url() == janus.url())
            && cs.session == janus.session_generation()
            && !cs.peers.is_empty()
            && !cs.row.is_empty();
        live.then(|| (cs.generation, cs.row.clone()))
    }

    fn forget_handles(&self, p: &Peer) {
        let mut handles = self.relay.handles.lock().unwrap();
        for h in [&p.publisher, &p.subscriber].into_iter().flatten() {
            handles.remove(&h.id());
        }
    }

    /// Detaches a peer's handles (in the background: a slow Janus does not hold up the call).
    fn detach_peer(&self, p: Peer) {
        self.forget_handles(&p);
        let current = p.janus.session_generation();
        for h in [p.publisher, p.subscriber].into_iter().flatten() {
            if h.generation() == current {
                tokio::spawn(h.detach());
            }
        }
    }

    fn broadcast_feeds(&self, app: &str, call_id: &str, cs: &mut CallState) {
        let devs: Vec<Dev> = cs
            .announced
            .iter()
            .filter(|dev| cs.peers.contains_key(*dev))
            .cloned()
            .collect();
        for dev in devs {
            let feeds = cs.feeds_for(&dev);
            if cs.sent.get(&dev) == Some(&feeds) {
                continue;
            }
            cs.sent.insert(dev.clone(), feeds.clone());
            let body = Body::SfuFeeds(SfuFeeds {
                call_id: call_id.to_owned(),
                feeds,
            });
            self.send_to(app, &dev.0, &dev.1, body);
        }
    }

    // ---- Janus events ----

    /// Handles one Janus event nobody waited for (routed by its `sender` handle). Public for
    /// tests, which cannot make Janus list a feed without media.
    #[doc(hidden)]
    pub async fn on_event(&self, event: &Value) {
        let Some(sender) = event.get("sender").and_then(Value::as_u64) else {
            return;
        };
        let Some((key, dev, pc)) = self.relay.handles.lock().unwrap().get(&sender).cloned() else {
            return;
        };
        let Some(cs) = self.call_state(&key, false) else {
            return;
        };
        let mut guard = cs.lock().await;
        let cs = &mut *guard;
        // Still this peer's handle (not one replaced meanwhile)?
        let Some(peer) = cs.peers.get_mut(&dev) else {
            return;
        };
        let mine = |h: &Option<Handle>| h.as_ref().is_some_and(|h| h.id() == sender);
        let what = event["janus"].as_str().unwrap_or_default();
        if matches!(what, "hangup" | "detached") && pc == sfu_pc::PUBLISHER && mine(&peer.publisher)
        {
            // Janus closed this device's publishing connection. The client closing it itself
            // ("DTLS alert": it is resetting, or leaving) knows; otherwise (ICE failed, the
            // handle detached…) it would wait forever: drop the handle, and the next
            // `relay_sync` joins a new one and sends the device `SfuRestart` (it publishes and
            // subscribes again).
            peer.published = false;
            if what == "hangup" && event["reason"].as_str() == Some("DTLS alert") {
                return;
            }
            tracing::info!(call = %key.1, reason = %event["reason"], "SFU: Janus closed a device's publisher ({what}): restarting its SFU side");
            self.drop_publisher(&key, peer, what == "hangup");
            return;
        }
        if what == "webrtcup" && pc == sfu_pc::PUBLISHER && mine(&peer.publisher) {
            peer.up = true;
            return;
        }
        if what == "hangup" {
            return;
        }
        let Some(data) = event.get("plugindata").and_then(|p| p.get("data")) else {
            return;
        };
        if pc == sfu_pc::SUBSCRIBER {
            if !mine(&peer.subscriber) {
                return;
            }
            // Janus renegotiates by itself (a subscribed feed went away): forward its offer.
            if let Some(sdp) = event.get("jsep").and_then(|j| j["sdp"].as_str()) {
                peer.sub_offer_out = true;
                // (Its layers are set without the state lock, as for a request.)
                let mut layers = None;
                if let Some(m) = data.as_object().filter(|m| m.contains_key("streams")) {
                    peer.sub_streams = sub_streams_of(m);
                    layers = peer
                        .subscriber
                        .clone()
                        .map(|h| (h, peer.sub_streams.clone(), peer.sub_layers.clone()));
                }
                let mids = cs.mids(&cs.peers[&dev].sub_streams);
                let peer = cs.peers.get_mut(&dev).expect("looked up above");
                let body = Body::SfuOffer(peer.versioned(SfuOffer {
                    request_id: 0,
                    call_id: key.1.clone(),
                    sdp: sdp.to_owned(),
                    mids,
                    version: 0,
                }));
                // (A feed went: the tile count, and so the layers taken, may be up.)
                self.publisher_layers(&key, cs);
                drop(guard);
                if let Some((h, streams, wants)) = layers {
                    self.apply_layers(&h, &streams, &wants).await;
                }
                self.send_to(&key.0, &dev.0, &dev.1, body);
            }
            return;
        }
        if !mine(&peer.publisher) {
            return;
        }
        let mut changed = false;
        for p in data
            .get("publishers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // (Kept even for a seat this node has not read yet: `feeds_for` lists seated ones.)
            if let Some(id) = p["id"].as_str() {
                let streams = streams_of(p);
                changed |= cs.feeds.get(id) != Some(&streams);
                cs.feeds.insert(id.to_owned(), streams);
            }
        }
        for gone in ["unpublished", "leaving", "kicked"] {
            if let Some(id) = data.get(gone).and_then(Value::as_str) {
                changed |= cs.feeds.remove(id).is_some();
            }
        }
        if changed {
            self.broadcast_feeds(&key.0, &key.1, cs);
        }
    }

    /// Drops a peer's publisher handle Janus closed (detaching it if `detach`: its participant
    /// leaves the room, so the feed id can join again) and asks for the call's sync at once:
    /// `relay_seats` joins a new handle and sends the device `SfuRestart`.
    fn drop_publisher(&self, key: &CallKey, peer: &mut Peer, detach: bool) {
        peer.published = false;
        let h = peer.publisher.take();
        if let Some(h) = &h {
            self.relay.handles.lock().unwrap().remove(&h.id());
        }
        let h = h.filter(|_| detach);
        let (tx, key) = (self.relay.resync.get().cloned(), key.clone());
        // (In a task: the call's state is not held across the detach, which comes first.)
        tokio::spawn(async move {
            if let Some(h) = h {
                h.detach().await;
            }
            if let Some(tx) = tx {
                let _ = tx.try_send(key);
            }
        });
    }

    /// After a publish is answered: if Janus has not said the connection is up (`webrtcup`)
    /// within [`super::JanusSettings::media_timeout`], the device's SFU side is restarted as if
    /// Janus had closed it (ICE or DTLS never completed), rather than left waiting.
    async fn watch_media(self: &Arc<Self>, from: &Requester, call_id: String) {
        let key = (from.app.clone(), call_id);
        let dev = (from.user.clone(), from.device.clone());
        let Some(cs) = self.call_state(&key, false) else {
            return;
        };
        let handle = {
            let cs = cs.lock().await;
            match cs.peers.get(&dev) {
                Some(p) if !p.up => p.publisher.as_ref().map(Handle::id),
                _ => None,
            }
        };
        let Some(handle) = handle else {
            return;
        };
        let this = self.clone();
        let wait = self.janus().media_timeout();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let mut cs = cs.lock().await;
            let Some(peer) = cs.peers.get_mut(&dev) else {
                return;
            };
            let same = peer.publisher.as_ref().is_some_and(|h| h.id() == handle);
            if same && peer.published && !peer.up {
                tracing::info!(call = %key.1, "SFU: a device's publishing connection did not come up in {wait:?}: restarting its SFU side");
                this.drop_publisher(&key, peer, true);
            }
        });
    }

    /// Hands an event to its call's event task (events of handles we do not know are dropped).
    fn queue_event(self: &Arc<Self>, event: Value) {
        let Some(sender) = event.get("sender").and_then(Value::as_u64) else {
            return;
        };
        let Some((key, _, _)) = self.relay.handles.lock().unwrap().get(&sender).cloned() else {
            return;
        };
        let mut queues = self.relay.event_queues.lock().unwrap();
        let tx = queues.entry(key).or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    this.on_event(&ev).await;
                }
            });
            tx
        });
        let _ = tx.send(event);
    }

    /// Follows every Janus's events for the relay, of every session (one subscription per
    /// Janus: the first events of a session opened after a Janus restart are not missed).
    pub async fn relay_events(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        for j in self.pool().iter().skip(1) {
            tokio::spawn(self.clone().relay_events_of(j.clone(), stop.clone()));
        }
        let first = self.janus().clone();
        self.relay_events_of(first, stop).await;
    }

    async fn relay_events_of(
        self: Arc<Self>,
        janus: JanusClient,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut rx = janus.events();
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) => self.queue_event(ev),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "SFU: Janus events missed");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The one lookup behind the test accessors below: `f` on a device's peer in a call here.
    async fn with_peer<R>(
        &self,
        app: &str,
        call_id: &str,
        (user, device): (&str, &str),
        f: impl FnOnce(&CallState, &Peer) -> Option<R>,
    ) -> Option<R> {
        let cs = self.call_state(&(app.to_owned(), call_id.to_owned()), false)?;
        let cs = cs.lock().await;
        f(&cs, cs.peers.get(&(user.to_owned(), device.to_owned()))?)
    }

    /// The Janus handle ids of a device in a call (publisher, subscriber), for tests.
    #[doc(hidden)]
    pub async fn peer_handles(
        &self,
        app: &str,
        call_id: &str,
        user: &str,
        device: &str,
    ) -> Option<(Option<u64>, Option<u64>)> {
        self.with_peer(app, call_id, (user, device), |_, p| {
            Some((
                p.publisher.as_ref().map(Handle::id),
                p.subscriber.as_ref().map(Handle::id),
            ))
        })
        .await
    }

    /// The Janus feed (participant id) of a device in a call with its handles here, for tests.
    #[doc(hidden)]
    pub async fn peer_janus_feed(
        &self,
        app: &str,
        call_id: &str,
        user: &str,
        device: &str,
    ) -> Option<String> {
        self.with_peer(app, call_id, (user, device), |_, p| {
            Some(p.janus_feed.clone())
        })
        .await
    }

    /// The opaque feed id of a device in a call, for tests.
    #[doc(hidden)]
    pub async fn peer_feed(
        &self,
        app: &str,
        call_id: &str,
        user: &str,
        device: &str,
    ) -> Option<String> {
        self.with_peer(app, call_id, (user, device), |cs, p| {
            Some(cs.by_janus_feed(&p.janus_feed)?.1.clone())
        })
        .await
    }

    /// What a device in a call was last told to keep sending (`SfuPublisherLayers`), and
    /// whether a lowering is pending: None if it was told nothing (it sends every layer), for
    /// tests.
    #[doc(hidden)]
    pub async fn publisher_layers_told(
        &self,
        app: &str,
        call_id: &str,
        user: &str,
        device: &str,
    ) -> Option<LayersTold> {
        let key = (app.to_owned(), call_id.to_owned());
        let cs = self.call_state(&key, false)?;
        let cs = cs.lock().await;
        cs.layers_told
            .get(&(user.to_owned(), device.to_owned()))
            .copied()
    }
}

/// Attaches a device's publisher handle and joins the call's room with its seat; `None` when
/// Janus failed (logged; the next sync tries again).
async fn join_publisher(
    janus: &JanusClient,
    call_id: &str,
    room: &str,
    dev: &Dev,
    seat: &SeatInfo,
) -> Option<(Handle, PluginReply)> {
    let h = match janus.attach().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(call = call_id, error = %e, "SFU: attaching a publisher handle failed (retried)");
            return None;
        }
    };
    let body = json!({
        "request": "join", "ptype": "publisher", "room": room,
        "id": seat.feed, "token": seat.token, "display": &dev.0,
    });
    match h.request(body, None).await {
        Ok(r) => Some((h, r)),
        Err(e) => {
            tracing::warn!(call = call_id, error = %e, "SFU: joining a device's publisher failed (retried)");
            tokio::spawn(h.detach());
            None
        }
    }
}

fn push(outbox: &Outbox, body: Body) {
    let item = Outgoing::Frame {
        body: encode_body(&body),
        accepted: None,
    };
    if let Err(PushError::Full) = outbox.push(item, true) {
        outbox.abort_with(rtc_core::proto::ErrorFrame {
            code: error_code::SLOW_CONSUMER,
            message: "too many unread frames; reconnect and resume".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_get_more_layers_at_once_and_fewer_after_the_hold() {
        let hold = LAYERS_HOLD.as_millis() as u64;
        let told = |max, since| LayersTold {
            max,
            lower_since: since,
        };
        // Paused at the low layer; an app asks for the high one: told at once.
        assert_eq!(
            layers_rule(told(0, None), 2, 1_000, hold),
            (told(2, None), true)
        );
        // Back to low: not before exactly the hold, counted from the first pass that saw it.
        let (t, send) = layers_rule(told(2, None), 0, 5_000, hold);
        assert_eq!((t, send), (told(2, Some(5_000)), false));
        let (t, send) = layers_rule(t, 0, 5_000 + hold - 1, hold);
        assert_eq!((t, send), (told(2, Some(5_000)), false));
        assert_eq!(layers_rule(t, 0, 5_000 + hold, hold), (told(0, None), true));
        // Wanted again during the hold: the pending lowering is cancelled; the next one waits
        // a whole hold again.
        let (t, send) = layers_rule(t, 2, 5_000 + hold / 2, hold);
        assert_eq!((t, send), (told(2, None), false));
        let (t, _) = layers_rule(t, 1, 5_000 + hold, hold);
        assert_eq!(t, told(2, Some(5_000 + hold)));
        assert!(!layers_rule(t, 1, 5_000 + 2 * hold - 1, hold).1);
        assert_eq!(
            layers_rule(t, 1, 5_000 + 2 * hold, hold),
            (told(1, None), true)
        );
        // More than told during a hold: at once, and the hold is over.
        assert_eq!(
            layers_rule(told(1, Some(9_000)), 2, 9_001, hold),
            (told(2, None), true)
        );
        // Nothing changes: nothing is said.
        assert_eq!(
            layers_rule(told(2, None), 2, 9_000, hold),
            (told(2, None), false)
        );
    }

    #[test]
    fn a_publisher_is_wanted_at_the_highest_layer_any_subscriber_takes() {
        // A subscriber of `n` videos (feeds f0…), with its asked layers.
        let subscriber = |n: usize| -> Vec<SubStream> {
            (0..n)
                .flat_map(|i| {
                    ["audio", "video"]
                        .into_iter()
                        .enumerate()
                        .map(move |(m, kind)| SubStream {
                            mid: format!("{}", 2 * i + m),
                            feed: format!("f{i}"),
                            feed_mid: m.to_string(),
                            kind: kind.into(),
                        })
                })
                .collect()
        };
        let ask = |feed: &str, mid: &str, sub: i32| (feed.to_owned(), mid.to_owned(), sub);
        type Subscriber = (Vec<SubStream>, Vec<(String, String, i32)>);
        let want = |subs: &[Subscriber], feed: &str| {
            wanted_layer(subs.iter().map(|(s, l)| (&s[..], &l[..])), feed)
        };
        let six = subscriber(6);
        // Nobody subscribes to it: nothing is needed above the low layer.
        assert_eq!(want(&[(six.clone(), vec![])], "f9"), 0);
        // Subscribed without a layer asked: Janus forwards its default, the highest.
        assert_eq!(want(&[(six.clone(), vec![])], "f1"), 2);
        // By tile count (`-1`): 6 tiles take the low layer, 3 the middle one.
        let auto = |n| {
            (
                subscriber(n),
                (0..n).map(|i| ask(&format!("f{i}"), "", -1)).collect(),
            )
        };
        assert_eq!(want(&[auto(6)], "f1"), 0);
        assert_eq!(want(&[auto(3)], "f1"), 1);
        // An app asking f1's high layer (its video mid, or every stream of the feed) wins for
        // that feed only; the highest of several subscribers counts.
        let mut high = auto(6);
        high.1[1] = ask("f1", "1", 2);
        assert_eq!(want(&[high.clone()], "f1"), 2);
        assert_eq!(want(&[high.clone()], "f2"), 0);
        high.1[1] = ask("f1", "", 2);
        assert_eq!(want(&[auto(6), high.clone(), auto(3)], "f1"), 2);
        assert_eq!(want(&[auto(6), high, auto(3)], "f2"), 1);
        // A want for another of the feed's mids (its audio) does not apply to the video.
        let mut other_mid = auto(6);
        other_mid.1.insert(0, ask("f1", "0", 2));
        assert_eq!(want(&[other_mid], "f1"), 0);
        // (Above 2: the top layer.)
        assert_eq!(want(&[(six, vec![ask("f1", "", 7)])], "f1"), 2);
    }

    #[test]
    fn the_layer_follows_the_tile_count() {
        assert_eq!(auto_substream(1), 2);
        assert_eq!(auto_substream(4), 1);
        assert_eq!(auto_substream(8), 0);
    }

    #[test]
    fn a_subscriber_offer_maps_active_media_streams_to_their_feeds() {
        let data = json!({"videoroom": "attached", "streams": [
            {"type": "audio", "mid": "0", "feed_id": "fa", "feed_mid": "0", "active": true},
            {"type": "video", "mid": "1", "feed_id": "fa", "feed_mid": "1"},
            {"type": "video", "mid": "2", "active": false},
            {"type": "data", "mid": "3", "feed_id": "fb"},
        ]});
        let got = sub_streams_of(data.as_object().unwrap());
        assert_eq!(
            got.iter()
                .map(|s| (&*s.mid, &*s.feed, &*s.feed_mid, &*s.kind))
                .collect::<Vec<_>>(),
            [("0", "fa", "0", "audio"), ("1", "fa", "1", "video")]
        );
    }
}
