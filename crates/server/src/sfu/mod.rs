//! SFU mode (`--janus URL`, issue 12): group-call media through Janus's videoroom plugin while
//! ringing and every call message stay on rcall's own signalling. Design: `docs/sfu.md`.
//!
//! - [`janus`]: the client of Janus's HTTP API (rcall-server is Janus's only client).
//! - [`Sfu`]: which call has which Janus room, and which devices may be in it. One room per
//!   call (id derived from app and call id, [`room_id`]), private, with a secret derived from
//!   the primary app secret ([`Sfu::room_secret`]) and an allow-list of per-device random
//!   tokens; a device that leaves is taken off the list and kicked; the room is destroyed when
//!   the call ends.
//! - Several Janus servers (`--janus A,B`): each call's room is placed on one (`Sfu::place`,
//!   `Sfu::place_cluster`) for the call's life, moved to another when its Janus stays
//!   unreachable, and rooms left behind are destroyed when it answers again
//!   ([`Sfu::destroy_abandoned`]; docs/sfu.md "Several Janus servers").
//! - [`follow`]: the task that keeps the rooms in line with call membership.
//! - [`table`]: cluster mode's room table in Redis ([`Sfu::sync_cluster`]).
//! - [`relay`]: the devices' publisher and subscriber handles, onto which the server relays
//!   the SDK's SFU messages (browsers never talk to Janus).
//!
//! Status: done and tested against a real Janus on a single node (`tests/sfu_janus.rs`,
//! `tests/sfu_relay.rs`), and in cluster mode (`tests/sfu_cluster.rs`; docs/sfu.md "Cluster
//! mode").

pub mod janus;
pub mod relay;
pub mod table;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use janus::{Handle, JanusClient, JanusError, PluginReply, RoomSpec};

/// Default interval of explicit Janus session keep-alives (Janus's default `session_timeout`
/// is 60 s; the long poll touches the session too).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Default of [`JanusSettings::media_timeout`]: ICE and DTLS take a few seconds at worst
/// (TURN included); the SDK's own ICE restarts come well before.
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// Publishers a call's room admits: every participant of the largest group call publishes one
/// stream (CallLib groups are capped well below this).
pub const ROOM_PUBLISHERS: u32 = 64;

/// Default of [`JanusSettings::dead_after`]: well past a Janus restart (a second or two, which
/// the rooms survive by being recreated on the same Janus), short enough that calls are not
/// left without media for long.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(10);

/// Where Janus is and how to authenticate to it (`--janus`, `--janus-api-secret`,
/// `--janus-admin-key`).
#[derive(Clone, PartialEq, Eq)]
pub struct JanusSettings {
    /// Base URL of Janus's HTTP API, e.g. `http://127.0.0.1:8088/janus` (with several Janus
    /// servers, the first; a client's own).
    pub url: String,
    /// Further Janus servers (`--janus A,B,…`): each call's room is on one of them
    /// ([`Sfu`], docs/sfu.md "Several Janus servers"). They share the secrets below (one
    /// operator runs them all; per-server secrets would need a file format for little gain).
    pub more: Vec<String>,
    /// `api_secret` of janus.jcfg, sent with every request. Never logged.
    pub api_secret: Option<String>,
    /// `admin_key` of janus.plugin.videoroom.jcfg, needed to create rooms. Never logged.
    pub admin_key: Option<String>,
    /// Explicit session keep-alive interval ([`DEFAULT_KEEPALIVE`]).
    pub keepalive: Duration,
    /// How long one Janus request may take, and again the event of an asynchronous one
    /// ([`janus::REQUEST_TIMEOUT`]): a device's SFU request is answered (`SfuFailed` at worst)
    /// within twice this even when Janus holds it. A knob for tests.
    pub request_timeout: Duration,
    /// How long a published connection may take to come up (Janus's `webrtcup`) before the
    /// device is told `SfuRestart` ([`DEFAULT_MEDIA_TIMEOUT`]; a knob for tests).
    pub media_timeout: Duration,
    /// How long a Janus may stay unreachable before its calls move to another one (with
    /// several; [`DEFAULT_DEAD_AFTER`]; a knob for tests).
    pub dead_after: Duration,
}

impl JanusSettings {
    pub fn new(url: impl Into<String>) -> Self {
        JanusSettings {
            url: url.into(),
            more: Vec::new(),
            api_secret: None,
            admin_key: None,
            keepalive: DEFAULT_KEEPALIVE,
            request_timeout: janus::REQUEST_TIMEOUT,
            media_timeout: DEFAULT_MEDIA_TIMEOUT,
            dead_after: DEFAULT_DEAD_AFTER,
        }
    }

    /// Every Janus URL, `url` first.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.more.iter().map(String::as_str))
    }

    /// One settings per Janus (each client's own URL, the secrets shared).
    pub fn each(&self) -> Vec<JanusSettings> {
        self.urls()
            .map(|u| JanusSettings {
                url: u.to_owned(),
                more: Vec::new(),
                ..self.clone()
            })
            .collect()
    }

    /// Checks the URL: an absolute `http://` or `https://` URL with a host.
    pub fn check_url(url: &str) -> Result<(), String> {
        match reqwest::Url::parse(url) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => Ok(()),
            Ok(u) if u.scheme() == "https" => Err(
                "https:// is not supported (the server is built without TLS): reach Janus's \
                 HTTP API over a private network or loopback, e.g. http://127.0.0.1:8088/janus"
                    .into(),
            ),
            Ok(u) if u.scheme() == "ws" || u.scheme() == "wss" => Err(format!(
                "{url:?}: rcall talks to Janus's HTTP API, not its WebSocket API; give the HTTP \
                 base path, e.g. http://127.0.0.1:8088/janus"
            )),
            Ok(u) => Err(format!(
                "{url:?}: scheme {:?} is not supported; e.g. http://127.0.0.1:8088/janus",
                u.scheme()
            )),
            Err(e) => Err(format!(
                "{url:?} is not a URL ({e}); e.g. http://127.0.0.1:8088/janus"
            )),
        }
    }
}

impl std::fmt::Debug for JanusSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JanusSettings")
            .field("url", &self.url)
            .field("more", &self.more)
            .field(
                "api_secret",
                &self.api_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("keepalive", &self.keepalive)
            .field("request_timeout", &self.request_timeout)
            .field("media_timeout", &self.media_timeout)
            .field("dead_after", &self.dead_after)
            .finish()
    }
}

/// The Janus room of `call_id` in `app`: a hash, so call ids of different apps never share a
/// room, the id has a fixed length and charset whatever the call id, and any node can compute it.
pub fn room_id(app: &str, call_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(app.as_bytes());
    h.update([0]);
    h.update(call_id.as_bytes());
    format!("rcall-{}", janus::hex(&h.finalize()[..16]))
}

/// What a device needs to join a call's room (sent to the SDK later; the token stays on the
/// server while the server is the only Janus client, but it is what Janus checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub room: String,
    /// The device's participant id in the room (its publisher feed).
    pub feed: String,
    /// The device's token on the room's allow-list.
    pub token: String,
}

struct Seat {
    feed: String,
    token: String,
}

struct Room {
    janus_room: String,
    secret: String,
    /// (user, device) → its seat.
    seats: HashMap<(String, String), Seat>,
    /// The client's Janus session generation when the room was created: a later one means
    /// Janus may have restarted and lost the room ([`Sfu::sync`] recreates it).
    generation: u64,
    /// Which Janus of the pool has it (index into `Sfu::janus`).
    janus: usize,
    /// Numbers the room's creations in this process ([`Sfu::made`]): with the process's random
    /// base, the generation devices are told — a new one whenever the room is recreated, on
    /// the same Janus or another.
    epoch: u64,
}

/// Calls' Janus rooms. Kept in memory on a single node (cluster mode: in Redis, [`table`], the
/// same table for every node). On a single node operations run one at a time: they are a few
/// milliseconds each on Janus, and this keeps "create if missing" and "destroy" from
/// interleaving for one call.
pub struct Sfu {
    /// The Janus servers (`--janus A,B`; one, usually): each call's room is on one of them.
    janus: Vec<JanusClient>,
    /// Per Janus (index), rooms left on it when its calls moved away (it was unreachable):
    /// destroyed once it answers again ([`Sfu::destroy_abandoned`]).
    abandoned: std::sync::Mutex<HashMap<usize, std::collections::HashSet<String>>>,
    /// Rooms of restored calls found on a Janus at start ([`Sfu::destroy_orphans`]): the call
    /// stays on that Janus (single node).
    found: std::sync::Mutex<HashMap<String, usize>>,
    /// Rooms created so far by this process (single node: each room's `epoch`).
    made: std::sync::atomic::AtomicU64,
    /// Janus servers (pool indexes) that did not answer when the server started: not checked
    /// yet, so no room is placed on them until they answer and pass the check
    /// ([`Sfu::check_when_back`]).
    unchecked: std::sync::Mutex<std::collections::HashSet<usize>>,
    /// `--dev`: the startup check accepts a Janus without secrets (also when one is checked
    /// late).
    dev: bool,
    /// Keys the rooms' secrets ([`Sfu::room_secret`]).
    room_key: Vec<u8>,
    rooms: tokio::sync::Mutex<HashMap<(String, String), Room>>,
    /// The devices' Janus handles and the calls' feeds ([`relay`]).
    relay: relay::Relay,
    /// Cluster mode: the room table in Redis instead of `rooms` ([`Sfu::set_cluster`]).
    cluster: std::sync::OnceLock<ClusterRooms>,
    /// Single node: random per process, added to the Janus session generation to make the
    /// `generation` devices are told. A restarted server replaces its rooms (new seats, the old
    /// participants kicked), and a device that reconnects must see a generation it does not know
    /// — the session generation alone starts at 1 again in every process — or its SDK keeps
    /// its dead connections (docs/sfu.md "Restarts").
    generation_base: u64,
}

/// This node's side of cluster mode's shared room table ([`table`]).
struct ClusterRooms {
    table: table::RoomTable,
    /// Calls this node takes part in (a device of it connected here, or seated by it): synced
    /// at every periodic pass.
    followed: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Per call, the Janus (pool index) and its session generation under which this node last
    /// found its room on Janus (a newer session: Janus may have restarted and lost it).
    checked: std::sync::Mutex<HashMap<(String, String), (usize, u64)>>,
}

impl Sfu {
    /// `room_key` (the server's primary app secret) derives the rooms' secrets: never sent to
    /// Janus, and the same after a restart.
    pub fn new(janus: JanusClient, room_key: impl Into<Vec<u8>>) -> Self {
        Self::with_pool(vec![janus], room_key)
    }

    /// Several Janus servers: each call's room is placed on one (`Sfu::place`).
    pub fn with_pool(janus: Vec<JanusClient>, room_key: impl Into<Vec<u8>>) -> Self {
        assert!(!janus.is_empty(), "at least one Janus");
        Sfu {
            janus,
            abandoned: Default::default(),
            found: Default::default(),
            made: Default::default(),
            unchecked: Default::default(),
            dev: false,
            room_key: room_key.into(),
            rooms: tokio::sync::Mutex::new(HashMap::new()),
            relay: relay::Relay::default(),
            cluster: std::sync::OnceLock::new(),
            generation_base: {
                let mut b = [0u8; 4];
                getrandom::fill(&mut b).expect("the OS random source works");
                // Below 2^31: room for 2^31 Janus sessions under u32::MAX (what the wire
                // carries).
                u64::from(u32::from_le_bytes(b) >> 1)
            },
        }
    }

    /// Cluster mode: the call → room table lives in Redis (`bus`), shared by every node.
    pub fn set_cluster(&self, bus: crate::cluster::Bus) {
        let _ = self.cluster.set(ClusterRooms {
            table: table::RoomTable::new(bus),
            followed: Default::default(),
            checked: Default::default(),
        });
    }

    /// Whether the room table is in Redis (cluster mode).
    pub fn is_cluster(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// A room's secret: HMAC-SHA256(room key, room id), 128 bits. Derived rather than random so
    /// that a restarted server (its table is in memory) can still destroy and replace the rooms
    /// its previous run left on Janus, and so that every node computes it (cluster mode).
    pub fn room_secret(&self, room: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.room_key)
            .expect("HMAC takes any key length");
        mac.update(b"rcall janus room secret\0");
        mac.update(room.as_bytes());
        janus::hex(&mac.finalize().into_bytes()[..16])
    }

    /// The id clients know a Janus feed by: derived, so every node gives the same one, and
    /// not Janus's own (a client cannot name another room's participant).
    pub fn opaque_feed(&self, room: &str, feed: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.room_key)
            .expect("HMAC takes any key length");
        mac.update(b"rcall opaque feed\0");
        mac.update(room.as_bytes());
        mac.update(b"\0");
        mac.update(feed.as_bytes());
        janus::hex(&mac.finalize().into_bytes()[..8])
    }

    /// The first Janus (the only one, usually).
    pub fn janus(&self) -> &JanusClient {
        &self.janus[0]
    }

    /// Every Janus, in `--janus` order.
    pub fn pool(&self) -> &[JanusClient] {
        &self.janus
    }

    /// Closes every Janus session (server shutdown).
    pub async fn close_janus(&self) {
        for j in &self.janus {
            j.close().await;
        }
    }

    /// Whether Janus `i` has been unreachable for its `dead_after`: its calls move.
    fn given_up(&self, i: usize) -> bool {
        self.janus[i]
            .down_for()
            .is_some_and(|d| d >= self.janus[i].dead_after())
    }

    /// Whether Janus `i` has not been checked yet (unreachable since the server started).
    fn is_unchecked(&self, i: usize) -> bool {
        self.unchecked.lock().unwrap().contains(&i)
    }

    /// Whether a new room may go to Janus `i` now: checked, and it answered last.
    fn usable(&self, i: usize) -> bool {
        !self.is_unchecked(i) && self.janus[i].down_for().is_none()
    }

    /// A Janus not checked yet gets no room: the error says so (when every Janus is down).
    fn refuse_unchecked(&self, i: usize) -> Result<(), JanusError> {
        if self.is_unchecked(i) {
            return Err(JanusError::Unchecked {
                url: self.janus[i].url().to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the calls on Janus `i` should move: it is given up and another one is not.
    fn should_move(&self, i: usize) -> bool {
        self.given_up(i) && (0..self.janus.len()).any(|k| k != i && !self.given_up(k))
    }

    /// The Janus of a new room (single node): the one found holding the room at start if it
    /// answers, else among those answering (then those not given up) the one with the
    /// fewest rooms, the first listed on a tie — deterministic, and a fresh Janus fills up.
    fn place(&self, rooms: &HashMap<(String, String), Room>, janus_room: &str) -> usize {
        if let Some(&i) = self.found.lock().unwrap().get(janus_room) {
            if self.usable(i) {
                return i;
            }
        }
        (0..self.janus.len())
            .min_by_key(|&i| {
                let load = rooms.values().filter(|r| r.janus == i).count();
                (
                    !self.usable(i),
                    self.is_unchecked(i),
                    self.given_up(i),
                    load,
                )
            })
            .expect("at least one Janus")
    }

    /// The Janus of a new room in cluster mode, where no node knows every room: rendezvous
    /// hashing of the room over the Janus servers that answer (else those not given up), so
    /// every node picks the same and the rooms spread evenly.
    fn place_cluster(&self, janus_room: &str, avoid: Option<usize>) -> usize {
        let score = |i: usize| {
            let mut h = Sha256::new();
            h.update(self.janus[i].url().as_bytes());
            h.update([0]);
            h.update(janus_room.as_bytes());
            let d = h.finalize();
            u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
        };
        (0..self.janus.len())
            .min_by_key(|&i| {
                (
                    Some(i) == avoid,
                    !self.usable(i),
                    self.is_unchecked(i),
                    self.given_up(i),
                    std::cmp::Reverse(score(i)),
                )
            })
            .expect("at least one Janus")
    }

    /// The pool index of the Janus at `url` (a row's).
    fn index_of(&self, url: &str) -> Option<usize> {
        let url = url.trim_end_matches('/');
        self.janus.iter().position(|j| j.url() == url)
    }

    /// The URL of the Janus that has the call's room, if it has one (tests, operators).
    pub async fn call_janus(&self, app: &str, call_id: &str) -> Option<String> {
        if let Some(c) = self.cluster.get() {
            let row = c.table.read(app, call_id).await.ok()??;
            return Some(row.janus);
        }
        let rooms = self.rooms.lock().await;
        let r = rooms.get(&(app.to_owned(), call_id.to_owned()))?;
        Some(self.janus[r.janus].url().to_owned())
    }

    /// The Janus and generation of the call's room (single node), for the relay.
    pub(super) async fn placed(&self, app: &str, call_id: &str) -> Option<(JanusClient, u64)> {
        let rooms = self.rooms.lock().await;
        let r = rooms.get(&(app.to_owned(), call_id.to_owned()))?;
        Some((self.janus[r.janus].clone(), r.epoch))
    }

    /// Destroys the rooms left on a Janus when its calls moved away, once it answers again
    /// (it may have been cut off rather than dead: its rooms and participants are still
    /// there). A room whose call came back to that Janus meanwhile is kept.
    pub async fn destroy_abandoned(&self) {
        let todo: Vec<(usize, Vec<String>)> = self
            .abandoned
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, rooms)| !rooms.is_empty() && self.usable(**i))
            .map(|(i, rooms)| (*i, rooms.iter().cloned().collect()))
            .collect();
        for (i, rooms) in todo {
            let j = &self.janus[i];
            // A live session first (the Janus may be a restarted one).
            if j.session_id().await.is_err() {
                continue;
            }
            for room in rooms {
                let here = {
                    let ours = self.rooms.lock().await;
                    ours.values().any(|r| r.janus == i && r.janus_room == room)
                };
                let done = here
                    || match j.destroy_room(&room, &self.room_secret(&room)).await {
                        Ok(()) => {
                            tracing::info!(room, janus = %j.url(), "SFU: destroyed a room left on a Janus that answers again");
                            true
                        }
                        Err(e) if e.plugin_code() == Some(janus::videoroom_code::NO_SUCH_ROOM) => {
                            true
                        }
                        Err(e) => {
                            tracing::debug!(room, error = %e, "SFU: destroying an abandoned room failed (retried)");
                            false
                        }
                    };
                if done {
                    if let Some(set) = self.abandoned.lock().unwrap().get_mut(&i) {
                        set.remove(&room);
                    }
                }
            }
        }
    }

    /// Every Janus URL, comma-separated (for messages).
    fn urls(&self) -> String {
        let urls: Vec<&str> = self.janus.iter().map(JanusClient::url).collect();
        urls.join(",")
    }

    /// Records that the call's room on Janus `i` was left behind (its calls moved).
    fn abandon(&self, i: usize, janus_room: &str) {
        self.abandoned
            .lock()
            .unwrap()
            .entry(i)
            .or_default()
            .insert(janus_room.to_owned());
    }

    /// Forgets that a room was left on Janus `i` (it is created there again).
    fn unabandon(&self, i: usize, janus_room: &str) {
        if let Some(set) = self.abandoned.lock().unwrap().get_mut(&i) {
            set.remove(janus_room);
        }
    }

    /// Admits `device` of `user` to the call's room, creating the room first if the call has
    /// none (the first accept of a group call); idempotent for a device already admitted.
    pub async fn admit(
        &self,
        app: &str,
        call_id: &str,
        user: &str,
        device: &str,
    ) -> Result<Grant, JanusError> {
        let mut rooms = self.rooms.lock().await;
        let key = (app.to_owned(), call_id.to_owned());
        let seat_key = (user.to_owned(), device.to_owned());
        if let Some(room) = rooms.get(&key) {
            if let Some(seat) = room.seats.get(&seat_key) {
                return Ok(grant(room, seat));
            }
        }
        let seat = Seat {
            feed: random_hex(8),
            token: random_hex(16),
        };
        match rooms.get_mut(&key) {
            Some(room) => {
                self.janus[room.janus]
                    .allow(
                        &room.janus_room,
                        &room.secret,
                        std::slice::from_ref(&seat.token),
                    )
                    .await?;
                let g = grant(room, &seat);
                room.seats.insert(seat_key, seat);
                Ok(g)
            }
            None => {
                let janus_room = room_id(app, call_id);
                let at = self.place(&rooms, &janus_room);
                self.refuse_unchecked(at)?;
                let janus = &self.janus[at];
                let mut room = Room {
                    secret: self.room_secret(&janus_room),
                    janus_room,
                    seats: HashMap::new(),
                    generation: 0,
                    janus: at,
                    epoch: 0,
                };
                let spec = RoomSpec {
                    room: room.janus_room.clone(),
                    secret: room.secret.clone(),
                    allowed: vec![seat.token.clone()],
                    publishers: ROOM_PUBLISHERS,
                    require_pvtid: true,
                    description: format!("rcall call {call_id}"),
                };
                self.unabandon(at, &spec.room);
                match janus.create_room(&spec).await {
                    // Left by an earlier run of this server (its table was in memory), or by
                    // this call before it moved away from this Janus: its seats are stale, so
                    // replace it.
                    Err(e) if e.plugin_code() == Some(janus::videoroom_code::ROOM_EXISTS) => {
                        tracing::info!(room = %spec.room, "replacing a Janus room left by an earlier run");
                        match janus.destroy_room(&spec.room, &spec.secret).await {
                            // Not ours to replace (another room key): say so.
                            Err(d)
                                if d.plugin_code() == Some(janus::videoroom_code::UNAUTHORIZED) =>
                            {
                                return Err(e)
                            }
                            r => r?,
                        }
                        janus.create_room(&spec).await?;
                    }
                    r => r?,
                }
                self.found.lock().unwrap().remove(&spec.room);
                if self.janus.len() > 1 {
                    tracing::info!(call = call_id, janus = %janus.url(), "SFU: a call's room placed");
                }
                room.generation = janus.session_generation();
                room.epoch = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let g = grant(&room, &seat);
                let room = rooms.entry(key).or_insert(room);
                room.seats.insert(seat_key, seat);
                Ok(g)
            }
        }
    }

    /// The device's grant, if it was admitted to the call's room.
    pub async fn grant(&self, app: &str, call_id: &str, user: &str, device: &str) -> Option<Grant> {
        let rooms = self.rooms.lock().await;
        let room = rooms.get(&(app.to_owned(), call_id.to_owned()))?;
        let seat = room.seats.get(&(user.to_owned(), device.to_owned()))?;
        Some(grant(room, seat))
    }

    /// The device left the call (hangup, or the server hung up for it): its token is taken off
    /// the allow-list and its participant kicked, so it can neither stay nor come back. Nothing
    /// happens for a device that was not admitted.
    pub async fn remove(
        &self,
        app: &str,
        call_id: &str,
        user: &str,
        device: &str,
    ) -> Result<(), JanusError> {
        let mut rooms = self.rooms.lock().await;
        let Some(room) = rooms.get_mut(&(app.to_owned(), call_id.to_owned())) else {
            return Ok(());
        };
        let seat_key = (user.to_owned(), device.to_owned());
        let Some(seat) = room.seats.get(&seat_key) else {
            return Ok(());
        };
        let janus = &self.janus[room.janus];
        janus
            .disallow(
                &room.janus_room,
                &room.secret,
                std::slice::from_ref(&seat.token),
            )
            .await?;
        match janus.kick(&room.janus_room, &room.secret, &seat.feed).await {
            // Not joined (yet, or any more): nothing to kick.
            Err(e) if e.plugin_code() == Some(janus::videoroom_code::NO_SUCH_FEED) => {}
            r => r?,
        }
        room.seats.remove(&seat_key);
        Ok(())
    }

    /// The call ended: its room is destroyed (everyone in it is kicked out). Nothing happens
    /// for a call without a room; a room Janus already lost (restart) is forgotten quietly.
    pub async fn close(&self, app: &str, call_id: &str) -> Result<(), JanusError> {
        let mut rooms = self.rooms.lock().await;
        let Some(room) = rooms.remove(&(app.to_owned(), call_id.to_owned())) else {
            return Ok(());
        };
        if self.given_up(room.janus) {
            // Unreachable: destroyed when it answers again.
            self.abandon(room.janus, &room.janus_room);
            return Ok(());
        }
        match self.janus[room.janus]
            .destroy_room(&room.janus_room, &room.secret)
            .await
        {
            Err(e) if e.plugin_code() == Some(janus::videoroom_code::NO_SUCH_ROOM) => Ok(()),
            Err(e) => {
                // Tried again when it answers ([`Sfu::destroy_abandoned`]).
                self.abandon(room.janus, &room.janus_room);
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Calls with a room, for metrics and tests.
    pub async fn rooms(&self) -> usize {
        self.rooms.lock().await.len()
    }

    /// The calls with a room, as (app, call id).
    pub async fn calls(&self) -> Vec<(String, String)> {
        self.rooms.lock().await.keys().cloned().collect()
    }

    /// Makes the call's room follow its member devices (`AppCore::call_members`): admits the
    /// new ones (creating the room for the first), removes (kicks) those gone, and destroys the
    /// room when none is left. Idempotent, so running it again after a missed change repairs.
    pub async fn sync(
        &self,
        app: &str,
        call_id: &str,
        members: &[(Arc<str>, Arc<str>)],
    ) -> Result<(), JanusError> {
        if members.is_empty() {
            return self.close(app, call_id).await;
        }
        let key = (app.to_owned(), call_id.to_owned());
        let at = self.rooms.lock().await.get(&key).map(|r| r.janus);
        if let Some(i) = at.filter(|&i| self.should_move(i)) {
            // Its Janus is gone (for `dead_after`): the room is made again on another one
            // (by `admit`, below) and the relay tells the devices `SfuRestart` (a new
            // generation). The old room is destroyed if that Janus answers again.
            let mut rooms = self.rooms.lock().await;
            if let Some(r) = rooms.remove(&key) {
                tracing::warn!(app, call = call_id, janus = %self.janus[i].url(), "SFU: Janus unreachable, moving the call's room to another one");
                self.abandon(i, &r.janus_room);
            }
        }
        let seated: Vec<(String, String)> = {
            let at = self.rooms.lock().await.get(&key).map(|r| r.janus);
            let generation = match at {
                // A live session first: if Janus restarted, this opens a new one (a new
                // generation).
                Some(i) => {
                    self.janus[i].session_id().await?;
                    self.janus[i].session_generation()
                }
                None => 0,
            };
            let mut rooms = self.rooms.lock().await;
            if rooms
                .get(&key)
                .is_some_and(|r| r.generation != generation && Some(r.janus) == at)
            {
                // Made on an older session: Janus may have lost it. Seat everyone afresh (a
                // room that survived is replaced, see `admit`).
                tracing::info!(
                    app,
                    call = call_id,
                    "recreating a call's Janus room after a new Janus session"
                );
                rooms.remove(&key);
            }
            rooms
                .get(&key)
                .map(|r| r.seats.keys().cloned().collect())
                .unwrap_or_default()
        };
        let is_member =
            |(u, d): &(String, String)| members.iter().any(|(mu, md)| **mu == **u && **md == **d);
        for (u, d) in seated.iter().filter(|s| !is_member(s)) {
            self.remove(app, call_id, u, d).await?;
        }
        for (u, d) in members {
            if !seated.iter().any(|(su, sd)| **su == **u && **sd == **d) {
                self.admit(app, call_id, u, d).await?;
            }
        }
        Ok(())
    }
}

impl Sfu {
    /// Destroys the `rcall-` rooms on every Janus that no call of `live` (room ids) and no
    /// room of this run owns: rooms of calls that ended while the server was down (Janus keeps
    /// rooms until it restarts). Rooms whose secret is not ours (another room key: another
    /// server, or the primary app secret changed) are left alone. A live call's room found on
    /// a Janus keeps the call there (its copies on other Janus servers are destroyed). Returns
    /// how many were destroyed; a Janus that does not answer is skipped (its rooms are left
    /// to its restart) and the first error returned after the others are done.
    pub async fn destroy_orphans(
        &self,
        live: &std::collections::HashSet<String>,
    ) -> Result<usize, JanusError> {
        let mut destroyed = 0;
        let mut first_err = None;
        // (A Janus not checked yet has its orphans destroyed when it is: `check_when_back`.)
        for i in (0..self.janus.len()).filter(|&i| !self.is_unchecked(i)) {
            match self.destroy_orphans_on(i, live).await {
                Ok(n) => destroyed += n,
                Err(e) => {
                    tracing::warn!(janus = %self.janus[i].url(), error = %e, "SFU: listing a Janus's rooms at start failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if destroyed == 0 => Err(e),
            _ => Ok(destroyed),
        }
    }

    async fn destroy_orphans_on(
        &self,
        i: usize,
        live: &std::collections::HashSet<String>,
    ) -> Result<usize, JanusError> {
        let janus = &self.janus[i];
        // (A copy of a room this run placed on another Janus is not ours here.)
        let ours: std::collections::HashSet<String> = self
            .rooms
            .lock()
            .await
            .values()
            .filter(|r| r.janus == i)
            .map(|r| r.janus_room.clone())
            .collect();
        let mut destroyed = 0;
        for room in janus.list_rooms().await? {
            if !room.starts_with("rcall-") || ours.contains(&room) {
                continue;
            }
            if live.contains(&room) {
                let mut found = self.found.lock().unwrap();
                if *found.entry(room.clone()).or_insert(i) == i {
                    continue;
                }
                // (Already found on an earlier Janus: this copy goes.)
            }
            match janus.destroy_room(&room, &self.room_secret(&room)).await {
                Ok(()) => destroyed += 1,
                Err(e)
                    if matches!(
                        e.plugin_code(),
                        Some(
                            janus::videoroom_code::UNAUTHORIZED
                                | janus::videoroom_code::NO_SUCH_ROOM
                        )
                    ) =>
                {
                    tracing::debug!(room, error = %e, "leaving a Janus room that is not ours");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(destroyed)
    }
}

/// Cluster mode: every this many periodic passes, the calls of every row in Redis are synced
/// too (rooms of calls that ended while no node followed them are destroyed).
pub const ORPHAN_PASS: u64 = 10;

/// GROUP call ids waiting for the SFU task; past it notifications are dropped (the periodic
/// pass catches up).
pub const NOTIFY_QUEUE: usize = 4096;

/// How often every call with a room is checked against its members: catches what the
/// per-message notification does not see (devices hung up for after their grace, a full
/// notification channel, a Janus error on an earlier try).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// The SFU task: keeps the calls' rooms on Janus in line with call membership, from the
/// GROUP call ids the hub sends after routing their messages ([`crate::Hub::set_sfu_notify`])
/// and a periodic pass over every call with a room. In cluster mode the call ids come from the
/// rooms replica ([`crate::Hub::notify_sfu`]) and device connects, and each call is synced
/// against the table in Redis ([`Sfu::sync_cluster`]).
pub async fn follow(
    sfu: Arc<Sfu>,
    state: Arc<crate::AppState>,
    mut calls: tokio::sync::mpsc::Receiver<(crate::hub::AppId, String)>,
) {
    tokio::spawn(sfu.clone().relay_events(state.shutdown.clone()));
    let hub = &state.hub;
    // At start: destroy the rooms an earlier run left for calls that are over, and bring the
    // restored GROUP calls' rooms (and their devices' handles) up without waiting for a message.
    // (Not in cluster mode: it has no rooms yet, and another node's rooms are not ours.)
    let cluster = state.routing.is_some();
    let restored = if cluster {
        Vec::new()
    } else {
        // (The GROUP calls restored from the last run.)
        hub.group_calls()
    };
    let live = restored
        .iter()
        .map(|(app, call)| room_id(&hub.apps()[*app].key, call))
        .collect();
    match if cluster {
        Ok(0)
    } else {
        sfu.destroy_orphans(&live).await
    } {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rooms = n,
            "destroyed Janus rooms of calls that ended while the server was down"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "listing Janus rooms at start failed (orphan rooms stay until Janus restarts)")
        }
    }
    for i in sfu.unchecked() {
        tokio::spawn(
            sfu.clone()
                .check_when_back(i, cluster, state.shutdown.clone()),
        );
    }
    let mut pending = restored;
    let (resync_tx, mut resync) = tokio::sync::mpsc::channel(NOTIFY_QUEUE);
    let _ = sfu.relay.resync.set(resync_tx);
    let mut passes = 0u64;
    // A new Janus session (Janus restarted): a pass at once, not at the next tick, since every
    // call's media wait for it (the rooms recreated, the devices told `SfuRestart`).
    let (sessions_tx, mut sessions) = tokio::sync::mpsc::channel::<(String, u64)>(16);
    for j in sfu.pool() {
        let mut changes = j.session_changes();
        changes.mark_unchanged();
        let (tx, url, stop) = (
            sessions_tx.clone(),
            j.url().to_owned(),
            state.shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    c = changes.changed() => if c.is_err() { return },
                }
                let generation = *changes.borrow_and_update();
                if tx.send((url.clone(), generation)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Calls whose last sync failed: tried again at every pass. (A call whose room could not be
    // created has none, so the passes over the calls with a room would not see it; with every
    // Janus down at start, none could be.)
    let mut failed: std::collections::BTreeSet<(crate::hub::AppId, String)> = Default::default();
    loop {
        let todo: Vec<(crate::hub::AppId, String)> = if !pending.is_empty() {
            std::mem::take(&mut pending)
        } else {
            tokio::select! {
            _ = state.shutdown.cancelled() => return,
            c = calls.recv() => match c {
                Some(c) => vec![c],
                None => return,
            },
            Some((app, call)) = resync.recv() => hub.app_by_key(&app).map(|a| (a, call)).into_iter().collect(),
            Some((janus, generation)) = sessions.recv() => {
                tracing::info!(%janus, generation, "SFU: new Janus session, bringing every call's room back");
                tick.reset();
                if cluster { sfu.followed() } else { sfu.calls().await }
                    .into_iter()
                    .filter_map(|(app, call)| Some((hub.app_by_key(&app)?, call)))
                    .chain(failed.iter().cloned())
                    .collect()
            }
            _ = tick.tick() => {
                passes += 1;
                sfu.destroy_abandoned().await;
                let mut calls = if cluster { sfu.followed() } else { sfu.calls().await };
                // Now and then, every row in Redis: a call over that no node followed any
                // more (its nodes died) still gets its room destroyed.
                if cluster && passes.is_multiple_of(ORPHAN_PASS) {
                    for app in hub.apps() {
                        let t = &sfu.cluster.get().expect("cluster mode").table;
                        match t.calls(&app.key).await {
                            Ok(ids) => calls.extend(ids.into_iter().map(|c| (app.key.to_string(), c))),
                            Err(e) => tracing::warn!(error = %e, "SFU: listing the room table failed"),
                        }
                    }
                    calls.sort();
                    calls.dedup();
                }
                calls
                    .into_iter()
                    .filter_map(|(app, call)| Some((hub.app_by_key(&app)?, call)))
                    .chain(failed.iter().cloned())
                    .collect()
            }
            }
        };
        for (app, call_id) in todo {
            let key = hub.apps()[app].key.clone();
            let members = hub.call_members(app, &call_id);
            if cluster {
                let holders = |u: &str, d: &str| hub.core_rooms_holders(app, u, d);
                match sfu.sync_cluster(&key, &call_id, &members, holders).await {
                    Err(e) => {
                        tracing::warn!(app = %key, call = %call_id, error = %e, "SFU room update failed (retried)");
                        failed.insert((app, call_id));
                    }
                    Ok(()) => {
                        failed.remove(&(app, call_id));
                    }
                }
                continue;
            }
            match sfu.sync(&key, &call_id, &members).await {
                Err(e) => {
                    tracing::warn!(app = %key, call = %call_id, error = %e, "SFU room update failed (retried)");
                    failed.insert((app, call_id.clone()));
                }
                Ok(()) => {
                    failed.remove(&(app, call_id.clone()));
                }
            }
            // The devices' handles follow their seats (SfuJoined / SfuRestart, detaching).
            sfu.relay_sync(&key, &call_id, &members).await;
        }
    }
}

/// Why a cluster sync of a call failed (retried at the next pass).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Janus(#[from] JanusError),
    #[error(transparent)]
    Redis(#[from] crate::cluster::ClusterError),
    #[error(
        "the call's room is on Janus {row}, this node uses {mine}: give every node the same \
         --janus list"
    )]
    OtherJanus { row: String, mine: String },
}

impl Sfu {
    /// Cluster mode's [`Sfu::sync`] + [`Sfu::relay_sync`] for one call on this node, against
    /// the room table in Redis ([`table`]): the room is created by the node that claims it
    /// first (a row `creating`, then `ready`), recreated once after a Janus restart (the
    /// first node to find it gone claims the next epoch), destroyed by the node that takes the
    /// row once the call has no member device. Each node seats its own connected member
    /// devices (their handles live in its Janus session), takes over the seat of a device
    /// that moved here from a node that no longer holds it (new seat, old feed kicked), and
    /// unseats (allow-list, kick) any member that left. `holders` are the nodes the rooms
    /// replica says hold a device.
    pub async fn sync_cluster(
        &self,
        app: &str,
        call_id: &str,
        members: &[(Arc<str>, Arc<str>)],
        holders: impl Fn(&str, &str) -> Vec<String>,
    ) -> Result<(), SyncError> {
        let c = self.cluster.get().expect("cluster mode");
        let t = &c.table;
        let me = t.node().to_owned();
        let key = (app.to_owned(), call_id.to_owned());
        let room = room_id(app, call_id);
        let secret = self.room_secret(&room);
        if members.is_empty() {
            if let Some(row) = t.take(app, call_id).await? {
                tracing::debug!(call = call_id, room = %row.room, "SFU: call over, destroying its room");
                let Some(i) = self.index_of(&row.janus) else {
                    return Err(SyncError::OtherJanus {
                        row: row.janus,
                        mine: self.urls(),
                    });
                };
                match self.janus[i].destroy_room(&room, &secret).await {
                    Err(e) if e.plugin_code() == Some(janus::videoroom_code::NO_SUCH_ROOM) => {}
                    Err(e) => {
                        // (The row is gone: retried when that Janus answers again.)
                        self.abandon(i, &room);
                        return Err(e.into());
                    }
                    Ok(()) => {}
                }
            }
            self.relay_seats(self.janus(), app, call_id, &room, 0, &[], &[], true)
                .await;
            c.followed.lock().unwrap().remove(&key);
            c.checked.lock().unwrap().remove(&key);
            return Ok(());
        }
        let here = |u: &str, d: &str| self.is_connected(app, u, d);
        let mut row = t.read(app, call_id).await?;
        let involved = members.iter().any(|(u, d)| here(u, d))
            || row
                .as_ref()
                .is_some_and(|r| r.seats.iter().any(|s| s.node == me));
        if involved {
            c.followed.lock().unwrap().insert(key.clone());
        } else {
            // No device of this node in the call any more: stop syncing it every second (one
            // Redis read per pass per call). Handles still held here are detached first (the
            // relay's calls are synced until they have none).
            c.followed.lock().unwrap().remove(&key);
            if !self.relay_calls().contains(&key) {
                return Ok(());
            }
        }
        // The call's Janus: the row's (every node uses the same), else where a new room goes.
        let at = match row.as_ref().filter(|r| !r.janus.is_empty()) {
            Some(r) => match self.index_of(&r.janus) {
                Some(i) => i,
                None => {
                    return Err(SyncError::OtherJanus {
                        row: r.janus.clone(),
                        mine: self.urls(),
                    })
                }
            },
            None => self.place_cluster(&room, None),
        };
        // Its Janus gone for good (`dead_after`): the room moves, as if lost (next epoch, on
        // another Janus: the claim records it, so every node follows). Also a claim still
        // `creating` there: taken over once stale (its node died mid-creation), the room goes
        // elsewhere rather than waiting for that Janus; the room the dead claimer may have made
        // on it is destroyed when it answers again (`abandon`, below).
        let moving = row.is_some() && self.should_move(at);
        let at = if moving {
            self.place_cluster(&room, Some(at))
        } else {
            at
        };
        let janus = &self.janus[at];
        // A live session first: if Janus restarted, this opens a new one (a new generation).
        janus.session_id().await?;
        let session = (at, janus.session_generation());
        let url = janus.url().to_owned();
        if row.is_none() {
            row = self.write_row_back(app, call_id, &room, janus).await?;
        }
        // The room: created once, recreated once per loss.
        let lost_epoch = match &row {
            None if !members.iter().any(|(u, d)| here(u, d)) => return Ok(()),
            None => Some(0),
            Some(r) if !r.ready => Some(r.epoch),
            Some(r) if moving => Some(r.epoch),
            Some(r) if c.checked.lock().unwrap().get(&key) != Some(&session) => {
                if janus.room_exists(&room).await? {
                    c.checked.lock().unwrap().insert(key.clone(), session);
                    None
                } else {
                    Some(r.epoch)
                }
            }
            Some(_) => None,
        };
        if let Some(seen) = lost_epoch {
            if row.is_none() || moving {
                // A new place (a row's Janus was checked by the node that placed it there).
                self.refuse_unchecked(at)?;
            }
            let epoch = t.claim(app, call_id, &url, &room, seen).await?;
            if epoch == 0 {
                return Ok(()); // another node creates it: next pass
            }
            let tokens: Vec<String> = row
                .iter()
                .flat_map(|r| r.seats.iter().map(|s| s.token.clone()))
                .collect();
            let spec = RoomSpec {
                room: room.clone(),
                secret: secret.clone(),
                allowed: tokens,
                publishers: ROOM_PUBLISHERS,
                require_pvtid: true,
                description: format!("rcall call {call_id}"),
            };
            if moving {
                let from = row.as_ref().map(|r| r.janus.as_str()).unwrap_or_default();
                tracing::warn!(call = call_id, from, to = %url, "SFU: Janus unreachable, moving the call's room to another one");
                if let Some(old) = self.index_of(from) {
                    self.abandon(old, &room);
                }
            }
            self.unabandon(at, &room);
            tracing::info!(call = call_id, epoch, janus = %url, "SFU: creating a call's Janus room");
            match janus.create_room(&spec).await {
                // Left by an earlier run (no row claimed it): its seats are stale. We hold
                // the claim, so no other node is using it.
                Err(e) if e.plugin_code() == Some(janus::videoroom_code::ROOM_EXISTS) => {
                    match janus.destroy_room(&room, &secret).await {
                        Err(d) if d.plugin_code() == Some(janus::videoroom_code::UNAUTHORIZED) => {
                            return Err(e.into())
                        }
                        r => r?,
                    }
                    janus.create_room(&spec).await?;
                }
                r => r?,
            }
            t.ready(app, call_id, epoch).await?;
            c.checked.lock().unwrap().insert(key.clone(), session);
            row = t.read(app, call_id).await?;
        }
        let Some(mut row) = row.filter(|r| r.ready) else {
            return Ok(());
        };

        let is_member = |u: &str, d: &str| members.iter().any(|(mu, md)| **mu == *u && **md == *d);
        // Members that left (wherever they were): off the allow-list, kicked, unseated.
        for s in row.seats.iter().filter(|s| !is_member(&s.user, &s.device)) {
            self.unseat(janus, &room, &secret, s).await?;
            t.unseat(app, call_id, s).await?;
        }
        row.seats.retain(|s| is_member(&s.user, &s.device));
        // This node's member devices.
        let mut local = Vec::new();
        for (u, d) in members {
            let dev = (u.to_string(), d.to_string());
            let seat = row
                .seats
                .iter()
                .position(|s| s.user == dev.0 && s.device == dev.1);
            match seat {
                Some(i) if row.seats[i].node == me => local.push((dev, false)),
                Some(_) | None if !here(u, d) => {}
                Some(i) => {
                    let old = row.seats[i].clone();
                    if holders(u, d).contains(&old.node) {
                        continue; // still held there (a second connection, or not moved yet)
                    }
                    let new = self.new_seat(u, d, &me);
                    janus
                        .allow(&room, &secret, std::slice::from_ref(&new.token))
                        .await?;
                    if !t.seat(app, call_id, &new, Some(&old)).await? {
                        continue; // changed meanwhile: next pass
                    }
                    tracing::info!(call = call_id, from = %old.node, "SFU: a device moved here; its seat is taken over");
                    self.unseat(janus, &room, &secret, &old).await?;
                    row.seats[i] = new;
                    local.push((dev, true));
                }
                None => {
                    let new = self.new_seat(u, d, &me);
                    janus
                        .allow(&room, &secret, std::slice::from_ref(&new.token))
                        .await?;
                    if !t.seat(app, call_id, &new, None).await? {
                        continue;
                    }
                    row.seats.push(new);
                    local.push((dev, false));
                }
            }
        }
        let seats: Vec<relay::SeatInfo> = row
            .seats
            .iter()
            .map(|s| relay::SeatInfo {
                user: s.user.clone(),
                device: s.device.clone(),
                feed: s.feed.clone(),
                token: s.token.clone(),
                node: s.node.clone(),
            })
            .collect();
        // Paused layers across nodes: what the other nodes holding seats take of each feed.
        let others: std::collections::BTreeSet<&str> = row
            .seats
            .iter()
            .map(|s| s.node.as_str())
            .filter(|n| *n != me)
            .collect();
        let mut mine_lost = false;
        if !others.is_empty() && !local.is_empty() {
            let all = t.wants(app, call_id).await?;
            mine_lost = !all.contains_key(&me);
            let mut merged = Some(HashMap::<String, u32>::new());
            for n in &others {
                match (all.get(*n), merged.as_mut()) {
                    (Some(w), Some(m)) => {
                        for (f, l) in w {
                            let e = m.entry(f.clone()).or_default();
                            *e = (*e).max(*l);
                        }
                    }
                    // (It shared nothing yet: what it takes is unknown.)
                    (None, _) => merged = None,
                    (Some(_), None) => {}
                }
            }
            self.relay_remote_wants(app, call_id, merged).await;
        }
        self.relay_seats(janus, app, call_id, &room, row.epoch, &seats, &local, false)
            .await;
        self.share_wants(app, call_id, mine_lost).await;
        Ok(())
    }

    /// Cluster mode: shares this node's layer wishes for a call's feeds when they changed
    /// (`force`: Redis lost them), so the publishers' nodes pause only what no node takes
    /// (docs/sfu.md "Paused layers"). A failure is logged; the next pass shares them.
    async fn share_wants(&self, app: &str, call_id: &str, force: bool) {
        let Some(c) = self.cluster.get() else {
            return;
        };
        let Some(value) = self.relay_local_wants(app, call_id, force).await else {
            return;
        };
        match c.table.set_wants(app, call_id, &value).await {
            Ok(()) => self.relay_wants_shared(app, call_id, value).await,
            Err(e) => {
                tracing::info!(call = call_id, error = %e, "SFU: sharing layer wishes failed (retried)")
            }
        }
    }

    /// Redis lost the call's row (restarted without persistence) while this node holds the
    /// call's handles in its current Janus session and the room is still on Janus: the row is
    /// written back as this node last saw it (epoch, every seat with its node), so media goes
    /// on. Claiming a new room instead would replace the room and kick every member (docs/sfu.md
    /// "Cluster mode", Redis restart). Returns the row now in Redis.
    async fn write_row_back(
        &self,
        app: &str,
        call_id: &str,
        room: &str,
        janus: &JanusClient,
    ) -> Result<Option<table::Row>, SyncError> {
        let Some((epoch, seats)) = self.relay_row(app, call_id, janus).await else {
            return Ok(None);
        };
        let url = janus.url();
        if !janus.room_exists(room).await? {
            return Ok(None);
        }
        let t = &self.cluster.get().expect("cluster mode").table;
        let seats: Vec<table::SeatRow> = seats
            .into_iter()
            .map(|s| table::SeatRow {
                user: s.user,
                device: s.device,
                feed: s.feed,
                token: s.token,
                node: s.node,
            })
            .collect();
        if t.adopt(app, call_id, url, room, epoch, &seats).await? {
            tracing::info!(call = call_id, epoch, seats = seats.len(), "SFU: the call's row was gone from Redis; written back (the room on Janus is unchanged)");
        }
        Ok(t.read(app, call_id).await?)
    }

    fn new_seat(&self, user: &str, device: &str, node: &str) -> table::SeatRow {
        table::SeatRow {
            user: user.to_owned(),
            device: device.to_owned(),
            feed: random_hex(8),
            token: random_hex(16),
            node: node.to_owned(),
        }
    }

    /// A seat's token off the allow-list and its participant kicked (not joined: fine).
    async fn unseat(
        &self,
        janus: &JanusClient,
        room: &str,
        secret: &str,
        s: &table::SeatRow,
    ) -> Result<(), JanusError> {
        janus
            .disallow(room, secret, std::slice::from_ref(&s.token))
            .await?;
        match janus.kick(room, secret, &s.feed).await {
            Err(e) if e.plugin_code() == Some(janus::videoroom_code::NO_SUCH_FEED) => Ok(()),
            r => r,
        }
    }

    /// The calls (app, call id) this node syncs at each periodic pass (cluster mode): those it
    /// has a device in or holds handles of. For tests and metrics.
    pub fn followed(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .cluster
            .get()
            .map(|c| c.followed.lock().unwrap().iter().cloned().collect())
            .unwrap_or_default();
        for k in self.relay_calls() {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }
}

fn grant(room: &Room, seat: &Seat) -> Grant {
    Grant {
        room: room.janus_room.clone(),
        feed: seat.feed.clone(),
        token: seat.token.clone(),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source works");
    janus::hex(&b)
}

/// Startup check of SFU mode, of every Janus: Janus answers, loads the videoroom plugin,
/// accepts our API secret, runs with `string_ids`, and accepts our admin key — found now rather
/// than at the first group call. Outside `dev`, a Janus that takes requests without an API
/// secret, or creates rooms without the admin key, is refused: anyone reaching its port could
/// then use it. A Janus that answers wrongly stops the start (a configuration error); one that
/// does not answer at all does not (docs/sfu.md "Several Janus servers": it may be in
/// maintenance, and the server must not lose service for it; with every Janus down the server
/// starts too, group calls waiting as when they all die later): it is marked unreachable, and
/// checked then used once it answers ([`Sfu::check_when_back`], run by [`follow`]).
pub async fn connect(
    settings: &JanusSettings,
    dev: bool,
    room_key: &[u8],
) -> Result<Sfu, JanusError> {
    let mut pool: Vec<JanusClient> = Vec::new();
    let mut unchecked = std::collections::HashSet::new();
    for one in settings.each() {
        let checked = match JanusClient::connect(one.clone()).await {
            Ok(janus) => match check(&janus, &one, dev).await {
                Ok(()) => Ok(janus),
                Err(e) => {
                    janus.close().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        match checked {
            Ok(janus) => pool.push(janus),
            Err(e @ JanusError::Unreachable { .. }) => {
                tracing::error!(error = %e, "SFU: a Janus does not answer at start: no group call goes to it until it answers and passes the startup check");
                unchecked.insert(pool.len());
                pool.push(JanusClient::unreached(one)?);
            }
            Err(e) => {
                for j in &pool {
                    j.close().await;
                }
                return Err(e);
            }
        }
    }
    if unchecked.len() == pool.len() {
        tracing::error!("SFU: no Janus answers at start; group calls ring and connect, and get their rooms (SfuJoined, media) once one answers");
    }
    let mut sfu = Sfu::with_pool(pool, room_key);
    sfu.dev = dev;
    *sfu.unchecked.get_mut().unwrap() = unchecked;
    Ok(sfu)
}

/// Pause between two tries of [`Sfu::check_when_back`] while the Janus does not answer.
const CHECK_RETRY: Duration = Duration::from_secs(1);
/// Pause after a Janus answered but failed the startup check (a configuration error, logged
/// at each try until fixed).
const CHECK_RETRY_REFUSED: Duration = Duration::from_secs(30);

impl Sfu {
    /// The Janus servers not checked yet (unreachable since the server started).
    pub fn unchecked(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.unchecked.lock().unwrap().iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Waits until Janus `i`, unreachable at start, answers and passes the startup check
    /// ([`connect`]); then (single node) destroys the rooms an earlier run left on it — no call
    /// of this run is on it, so every `rcall-` room with our secret there is stale, as for a
    /// Janus coming back — and lets new calls go to it. (Cluster mode: other nodes' calls may
    /// be on it, so nothing is destroyed.) Ends with `stop`.
    pub async fn check_when_back(
        self: Arc<Self>,
        i: usize,
        cluster: bool,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let janus = &self.janus[i];
        loop {
            let tried = async {
                janus.handshake().await?;
                check(janus, janus.settings(), self.dev).await?;
                if !cluster {
                    self.destroy_orphans_on(i, &Default::default()).await?;
                }
                Ok::<_, JanusError>(())
            };
            let wait = match tried.await {
                Ok(()) => {
                    self.unchecked.lock().unwrap().remove(&i);
                    tracing::info!(janus = %janus.url(), "SFU: a Janus unreachable at start answers and passed the startup check: new calls may go to it");
                    return;
                }
                Err(e @ JanusError::Unreachable { .. }) => {
                    tracing::debug!(error = %e, "SFU: a Janus unreachable at start still is");
                    CHECK_RETRY
                }
                Err(e) => {
                    tracing::error!(error = %e, "SFU: a Janus unreachable at start answers but fails the startup check: no call goes to it");
                    CHECK_RETRY_REFUSED
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn check(janus: &JanusClient, settings: &JanusSettings, dev: bool) -> Result<(), JanusError> {
    if !dev && !janus.janus_requires_api_secret().await? {
        return Err(JanusError::Setup(
            "Janus accepts requests without an API secret: set `api_secret` in janus.jcfg \
             and pass the same value as --janus-api-secret (or run with --dev)"
                .into(),
        ));
    }
    // A probe room, created with the admin key and a string id, then destroyed.
    let probe = RoomSpec {
        room: format!("rcall-probe-{}", random_hex(8)),
        secret: random_hex(16),
        allowed: Vec::new(),
        publishers: 1,
        require_pvtid: true,
        description: "rcall startup check".into(),
    };
    janus.create_room(&probe).await?;
    janus.destroy_room(&probe.room, &probe.secret).await?;
    if !dev {
        let mut keyless = settings.clone();
        keyless.admin_key = None;
        let bare = JanusClient::connect(keyless).await?;
        let probe = RoomSpec {
            room: format!("rcall-probe-{}", random_hex(8)),
            ..probe
        };
        let created = bare.create_room(&probe).await;
        if created.is_ok() {
            let _ = bare.destroy_room(&probe.room, &probe.secret).await;
        }
        bare.close().await;
        if created.is_ok() {
            return Err(JanusError::Setup(
                "Janus's videoroom creates rooms without an admin key: set `admin_key` in \
                 janus.plugin.videoroom.jcfg and pass the same value as --janus-admin-key \
                 (or run with --dev)"
                    .into(),
            ));
        }
    }
    Ok(())
}
