//! SFU mode (`--janus URL`, issue 12): group-call media through Janus's videoroom plugin while
//! ringing and every call message stay on rcall's own signalling. Design: `docs/sfu.md`.
//!
//! - [`janus`]: the client of Janus's HTTP API (rcall-server is Janus's only client).
//! - [`Sfu`]: which call has which Janus room, and which devices may be in it. One room per
//!   call (id derived from app and call id, [`room_id`]), private, with a secret derived from
//!   the primary app secret ([`Sfu::room_secret`]) and an allow-list of per-device random
//!   tokens; a device that leaves is taken off the list and kicked; the room is destroyed when
//!   the call ends.
//! - [`follow`]: the task that keeps the rooms in line with call membership (single node).
//! - [`relay`]: the devices' publisher and subscriber handles, onto which the server relays
//!   the SDK's SFU messages (browsers never talk to Janus).
//!
//! Status: done and tested against a real Janus on a single node (`tests/sfu_janus.rs`,
//! `tests/sfu_relay.rs`); cluster mode keeps the mesh (see `docs/sfu.md`, "Order of work").

pub mod janus;
pub mod relay;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use janus::{Handle, JanusClient, JanusError, PluginReply, RoomSpec};

/// Default interval of explicit Janus session keep-alives (Janus's default `session_timeout`
/// is 60 s; the long poll touches the session too).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Publishers a call's room admits: every participant of the largest group call publishes one
/// stream (CallLib groups are capped well below this).
pub const ROOM_PUBLISHERS: u32 = 64;

/// Where Janus is and how to authenticate to it (`--janus`, `--janus-api-secret`,
/// `--janus-admin-key`).
#[derive(Clone, PartialEq, Eq)]
pub struct JanusSettings {
    /// Base URL of Janus's HTTP API, e.g. `http://127.0.0.1:8088/janus`.
    pub url: String,
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
}

impl JanusSettings {
    pub fn new(url: impl Into<String>) -> Self {
        JanusSettings {
            url: url.into(),
            api_secret: None,
            admin_key: None,
            keepalive: DEFAULT_KEEPALIVE,
            request_timeout: janus::REQUEST_TIMEOUT,
        }
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
            .field(
                "api_secret",
                &self.api_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("keepalive", &self.keepalive)
            .field("request_timeout", &self.request_timeout)
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
}

/// Calls' Janus rooms. Kept in memory (cluster mode will keep it in Redis with the node that
/// holds the room). Operations run one at a time: they are a few milliseconds each on Janus, and
/// this keeps "create if missing" and "destroy" from interleaving for one call.
pub struct Sfu {
    janus: JanusClient,
    /// Keys the rooms' secrets ([`Sfu::room_secret`]).
    room_key: Vec<u8>,
    rooms: tokio::sync::Mutex<HashMap<(String, String), Room>>,
    /// The devices' Janus handles and the calls' feeds ([`relay`]).
    relay: relay::Relay,
}

impl Sfu {
    /// `room_key` (the server's primary app secret) derives the rooms' secrets: never sent to
    /// Janus, and the same after a restart.
    pub fn new(janus: JanusClient, room_key: impl Into<Vec<u8>>) -> Self {
        Sfu {
            janus,
            room_key: room_key.into(),
            rooms: tokio::sync::Mutex::new(HashMap::new()),
            relay: relay::Relay::default(),
        }
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

    pub fn janus(&self) -> &JanusClient {
        &self.janus
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
                self.janus
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
                let mut room = Room {
                    secret: self.room_secret(&janus_room),
                    janus_room,
                    seats: HashMap::new(),
                    generation: 0,
                };
                let spec = RoomSpec {
                    room: room.janus_room.clone(),
                    secret: room.secret.clone(),
                    allowed: vec![seat.token.clone()],
                    publishers: ROOM_PUBLISHERS,
                    require_pvtid: true,
                    description: format!("rcall call {call_id}"),
                };
                match self.janus.create_room(&spec).await {
                    // Left by an earlier run of this server (its table was in memory): its
                    // seats are stale, so replace it.
                    Err(e) if e.plugin_code() == Some(janus::videoroom_code::ROOM_EXISTS) => {
                        tracing::info!(room = %spec.room, "replacing a Janus room left by an earlier run");
                        match self.janus.destroy_room(&spec.room, &spec.secret).await {
                            // Not ours to replace (another room key): say so.
                            Err(d)
                                if d.plugin_code() == Some(janus::videoroom_code::UNAUTHORIZED) =>
                            {
                                return Err(e)
                            }
                            r => r?,
                        }
                        self.janus.create_room(&spec).await?;
                    }
                    r => r?,
                }
                room.generation = self.janus.session_generation();
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
        self.janus
            .disallow(
                &room.janus_room,
                &room.secret,
                std::slice::from_ref(&seat.token),
            )
            .await?;
        match self
            .janus
            .kick(&room.janus_room, &room.secret, &seat.feed)
            .await
        {
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
        match self
            .janus
            .destroy_room(&room.janus_room, &room.secret)
            .await
        {
            Err(e) if e.plugin_code() == Some(janus::videoroom_code::NO_SUCH_ROOM) => Ok(()),
            r => r,
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
        // A live session first: if Janus restarted, this opens a new one (a new generation).
        self.janus.session_id().await?;
        let generation = self.janus.session_generation();
        let seated: Vec<(String, String)> = {
            let mut rooms = self.rooms.lock().await;
            let key = (app.to_owned(), call_id.to_owned());
            if rooms.get(&key).is_some_and(|r| r.generation != generation) {
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
    /// Destroys the `rcall-` rooms on Janus that no call of `live` (room ids) and no room of
    /// this run owns: rooms of calls that ended while the server was down (Janus keeps rooms
    /// until it restarts). Rooms whose secret is not ours (another room key: another server,
    /// or the primary app secret changed) are left alone. Returns how many were destroyed.
    pub async fn destroy_orphans(
        &self,
        live: &std::collections::HashSet<String>,
    ) -> Result<usize, JanusError> {
        let ours: std::collections::HashSet<String> = self
            .rooms
            .lock()
            .await
            .values()
            .map(|r| r.janus_room.clone())
            .collect();
        let mut destroyed = 0;
        for room in self.janus.list_rooms().await? {
            if !room.starts_with("rcall-") || live.contains(&room) || ours.contains(&room) {
                continue;
            }
            match self
                .janus
                .destroy_room(&room, &self.room_secret(&room))
                .await
            {
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

/// The GROUP calls the server knows at start (restored from its last run), as (app, call id).
fn live_group_calls(state: &crate::AppState) -> Vec<(crate::hub::AppId, String)> {
    use prost::Message as _;
    let hub = &state.hub;
    let mut out = Vec::new();
    for (key, snap) in hub.rooms_snapshots() {
        let Some(app) = hub.app_by_key(&key) else {
            continue;
        };
        let Ok(snap) = delivery::rooms::RoomsSnapshot::decode(&snap[..]) else {
            continue;
        };
        for call in snap.calls {
            let group = call
                .members
                .iter()
                .any(|m| m.conversation_type == rtc_core::proto::conversation_type::GROUP);
            if group {
                out.push((app, call.call_id));
            }
        }
    }
    out
}

/// GROUP call ids waiting for the SFU task; past it notifications are dropped (the periodic
/// pass catches up).
pub const NOTIFY_QUEUE: usize = 4096;

/// How often every call with a room is checked against its members: catches what the
/// per-message notification does not see (devices hung up for after their grace, a full
/// notification channel, a Janus error on an earlier try).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// The SFU task: keeps the calls' rooms on Janus in line with call membership, from the
/// GROUP call ids the hub sends after routing their messages ([`crate::Hub::set_sfu_notify`])
/// and a periodic pass over every call with a room. Single node only for now (in cluster mode
/// messages are routed outside `Hub::route`; docs/sfu.md).
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
        live_group_calls(&state)
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
    let mut pending = restored;
    let (resync_tx, mut resync) = tokio::sync::mpsc::channel(NOTIFY_QUEUE);
    let _ = sfu.relay.resync.set(resync_tx);
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            _ = tick.tick() => sfu
                .calls()
                .await
                .into_iter()
                .filter_map(|(app, call)| Some((hub.app_by_key(&app)?, call)))
                .collect(),
            }
        };
        for (app, call_id) in todo {
            let key = hub.apps()[app].key.clone();
            let members = hub.call_members(app, &call_id);
            if let Err(e) = sfu.sync(&key, &call_id, &members).await {
                tracing::warn!(app = %key, call = %call_id, error = %e, "SFU room update failed (retried)");
            }
            // The devices' handles follow their seats (SfuJoined / SfuRestart, detaching).
            sfu.relay_sync(&key, &call_id, &members).await;
        }
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

/// Startup check of SFU mode: Janus answers, loads the videoroom plugin, accepts our API secret,
/// runs with `string_ids`, and accepts our admin key — found now rather than at the first group
/// call. Outside `dev`, a Janus that takes requests without an API secret, or creates rooms
/// without the admin key, is refused: anyone reaching its port could then use it.
pub async fn connect(
    settings: &JanusSettings,
    dev: bool,
    room_key: &[u8],
) -> Result<Sfu, JanusError> {
    let janus = JanusClient::connect(settings.clone()).await?;
    match check(&janus, settings, dev).await {
        Ok(()) => Ok(Sfu::new(janus, room_key)),
        Err(e) => {
            janus.close().await;
            Err(e)
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
