//! A small client of Janus's HTTP API (Janus Gateway 1.1, videoroom plugin with
//! `string_ids = true`): rcall-server is Janus's only client, so Janus's API is never exposed to
//! browsers.
//!
//! Why our own client and not the `jarust` crate (which builds here): the server needs a dozen
//! plugin requests whose shapes are pinned by the tests against the real Janus
//! (`tests/sfu_janus.rs`); `reqwest` is already a dependency (the push webhook), while jarust
//! brings its own transport/runtime layers and typed DTOs that we would still have to map to
//! actionable errors. The HTTP long poll gives the asynchronous events (join results, JSEP
//! answers) the SDK side needs next, with one loop per Janus session.
//!
//! Model: one Janus session per server process, holding one *admin* handle on the videoroom
//! plugin (room create / exists / allowed / kick / destroy, answered synchronously) and any
//! number of participant handles ([`Handle`], one per publishing or subscribing device later).
//! A background task long-polls the session's events — which also keeps the session alive on
//! Janus — and sends an explicit `keepalive` every [`JanusSettings::keepalive`]. If Janus forgets
//! the session (it restarted, or the poll stalled past `session_timeout`), the client opens a new
//! one at once, by itself ([`JanusClient::session_generation`] tells callers their handles are
//! gone, [`JanusClient::session_changes`] wakes them): the SFU task re-creates the rooms right
//! away, so media come back within seconds of a Janus restart (docs/sfu.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::JanusSettings;

/// The videoroom plugin's package name.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";
/// Time one ordinary request to Janus may take (the default of
/// [`JanusSettings::request_timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Janus holds a long poll for 30 s when it has no event; the HTTP request may take a bit more.
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Time [`JanusClient::close`] gives Janus to drop the session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed long poll (or a failed try to open a session again) before the next,
/// doubling up to [`RETRY_MAX`]: short, because how soon the client sees a restarted Janus
/// bounds how soon calls get their media back; capped, so a Janus that stays down costs a few
/// requests a second.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// See [`RETRY_MIN`].
const RETRY_MAX: Duration = Duration::from_millis(250);

/// Janus core error codes the client reacts to (janus/apierror.h).
pub mod core_code {
    /// Wrong or missing `apisecret`.
    pub const UNAUTHORIZED: i64 = 403;
    /// The session does not exist (expired, or Janus restarted).
    pub const SESSION_NOT_FOUND: i64 = 458;
    /// The handle does not exist.
    pub const HANDLE_NOT_FOUND: i64 = 459;
}

/// Videoroom plugin error codes (janus_videoroom.c).
pub mod videoroom_code {
    /// A mandatory element is missing, e.g. `admin_key` when the plugin has one.
    pub const MISSING_ELEMENT: i64 = 429;
    /// No such room.
    pub const NO_SUCH_ROOM: i64 = 426;
    /// The room already exists.
    pub const ROOM_EXISTS: i64 = 427;
    /// No such participant (feed) in the room.
    pub const NO_SUCH_FEED: i64 = 428;
    /// An element has the wrong type, e.g. a string room id while `string_ids` is off.
    pub const INVALID_ELEMENT: i64 = 430;
    /// Wrong room secret, wrong admin key, or a token not in the room's allow-list.
    pub const UNAUTHORIZED: i64 = 433;
}

/// What went wrong talking to Janus. Messages say what to check.
#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error(
        "Janus at {url} is unreachable ({}); check that Janus runs, that its HTTP \
         transport (janus.transport.http.jcfg) listens there, and the --janus URL \
         (e.g. http://127.0.0.1:8088/janus)",
        chain(source)
    )]
    Unreachable { url: String, source: reqwest::Error },
    #[error("Janus at {url} answered something that is not its API ({detail}); is --janus the API base path (…/janus)?")]
    BadReply { url: String, detail: String },
    #[error(
        "Janus refused the API secret (403: {reason}): --janus-api-secret / RCALL_JANUS_API_SECRET \
         must equal `api_secret` in janus.jcfg"
    )]
    Unauthorized { reason: String },
    #[error("Janus error {code}: {reason}")]
    Core { code: i64, reason: String },
    #[error("Janus videoroom refused `{request}` for room {room:?}: {code} {reason}{hint}")]
    Plugin {
        request: String,
        room: String,
        code: i64,
        reason: String,
        /// Advice for the codes an operator can fix.
        hint: &'static str,
    },
    #[error("Janus does not load the videoroom plugin ({VIDEOROOM}); loaded: {loaded}")]
    NoVideoroom { loaded: String },
    #[error("Janus gave no event for `{request}` within {waited:?}")]
    EventTimeout { request: String, waited: Duration },
    #[error("the Janus client is shut down")]
    Closed,
    #[error("Janus setup: {0}")]
    Setup(String),
    /// A Janus unreachable when the server started has not answered and passed the startup
    /// check since: no room is placed on it yet.
    #[error(
        "Janus at {url} has not answered since the server started (it is checked, then used, \
         once it does); no other Janus in --janus answers"
    )]
    Unchecked { url: String },
}

impl JanusError {
    /// The videoroom error code, if the plugin refused the request.
    pub fn plugin_code(&self) -> Option<i64> {
        match self {
            JanusError::Plugin { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn session_gone(&self) -> bool {
        matches!(self, JanusError::Core { code, .. }
            if *code == core_code::SESSION_NOT_FOUND || *code == core_code::HANDLE_NOT_FOUND)
    }
}

/// An error with its causes ("error sending request: tcp connect error: Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.ends_with(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s
}

fn plugin_hint(code: i64) -> &'static str {
    match code {
        videoroom_code::MISSING_ELEMENT => {
            " (if the missing element is admin_key: set --janus-admin-key to the `admin_key` \
             of janus.plugin.videoroom.jcfg)"
        }
        videoroom_code::INVALID_ELEMENT => {
            " (rcall uses string room ids: set `string_ids = true` in janus.plugin.videoroom.jcfg)"
        }
        videoroom_code::ROOM_EXISTS => {
            " (rcall replaces rooms its earlier runs left, but this one has another secret: \
             was the primary app secret changed? It goes when Janus restarts)"
        }
        videoroom_code::UNAUTHORIZED => {
            " (wrong room secret, token not allowed, or --janus-admin-key differs from \
             `admin_key` in janus.plugin.videoroom.jcfg)"
        }
        _ => "",
    }
}

/// A plugin's answer: its `plugindata.data`, and the JSEP that came with it (an SDP answer or
/// offer, for publishers and subscribers).
#[derive(Debug, Clone)]
pub struct PluginReply {
    pub data: Map<String, Value>,
    pub jsep: Option<Value>,
}

/// What a videoroom room is created with.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    /// Room id (a string: the plugin runs with `string_ids`).
    pub room: String,
    /// Required to edit, kick from and destroy the room.
    pub secret: String,
    /// Tokens that may join (as publisher or subscriber): the room checks them from creation on.
    pub allowed: Vec<String>,
    /// Most concurrent publishers.
    pub publishers: u32,
    /// Subscriptions must name the `private_id` of a participant of the room (which only the
    /// server, joining for admitted devices, learns): subscribing then also needs a seat.
    pub require_pvtid: bool,
    pub description: String,
}

struct Session {
    id: u64,
    /// The admin handle on the videoroom plugin.
    admin: u64,
    /// Which session of this client it is, from 1.
    generation: u64,
    /// Asynchronous requests waiting for their event, by transaction.
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Cancelled when the session is found gone, or the client shuts down.
    dead: CancellationToken,
}

struct Inner {
    http: reqwest::Client,
    /// API base URL without a trailing slash, e.g. `http://127.0.0.1:8088/janus`.
    base: String,
    settings: JanusSettings,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    generation: AtomicU64,
    /// Since when every request failed without an HTTP answer (refused, timed out): how long
    /// Janus has been unreachable ([`JanusClient::down_for`]). None: it answered last.
    failing_since: Mutex<Option<tokio::time::Instant>>,
    /// The current session's generation, for [`JanusClient::session_changes`].
    changes: tokio::sync::watch::Sender<u64>,
    /// Events without a waiting transaction (publisher lists, hangups…), of every session: one
    /// subscription follows the client across Janus restarts without missing the first events
    /// of a new session (they carry its new handle ids, so nothing stale is mistaken for them).
    events: tokio::sync::broadcast::Sender<Value>,
    next_tx: AtomicU64,
    tx_prefix: String,
    shutdown: CancellationToken,
}

/// A cheap-to-clone handle on the Janus client (one per server).
#[derive(Clone)]
pub struct JanusClient {
    inner: Arc<Inner>,
}

impl JanusClient {
    /// Checks that Janus answers at the configured URL and loads the videoroom plugin, then opens
    /// the session and its admin handle. Errors say what to fix.
    pub async fn connect(settings: JanusSettings) -> Result<JanusClient, JanusError> {
        let client = Self::new(settings)?;
        client.handshake().await?;
        Ok(client)
    }

    /// A client of a Janus that did not answer at start (docs/sfu.md "Several Janus
    /// servers"): it counts as unreachable from now ([`Self::down_for`]) and talks to Janus
    /// only when asked to ([`Self::handshake`], then requests).
    pub fn unreached(settings: JanusSettings) -> Result<JanusClient, JanusError> {
        let client = Self::new(settings)?;
        client.reached(false);
        Ok(client)
    }

    /// What [`Self::connect`] checks: Janus answers, loads the videoroom plugin, and gives a
    /// session with its admin handle.
    pub async fn handshake(&self) -> Result<(), JanusError> {
        let info = self.info().await?;
        let plugins = info.get("plugins").and_then(Value::as_object);
        if !plugins.is_some_and(|p| p.contains_key(VIDEOROOM)) {
            let loaded = plugins
                .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            return Err(JanusError::NoVideoroom { loaded });
        }
        self.session().await?;
        Ok(())
    }

    /// The settings this client was made with.
    pub fn settings(&self) -> &JanusSettings {
        &self.inner.settings
    }

    /// A client that has not talked to Janus yet.
    fn new(settings: JanusSettings) -> Result<JanusClient, JanusError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| JanusError::Setup(e.to_string()))?;
        let mut prefix = [0u8; 6];
        let _ = getrandom::fill(&mut prefix);
        Ok(JanusClient {
            inner: Arc::new(Inner {
                http,
                base: settings.url.trim_end_matches('/').to_owned(),
                settings,
                session: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                failing_since: Mutex::new(None),
                changes: tokio::sync::watch::channel(0).0,
                events: tokio::sync::broadcast::channel(256).0,
                next_tx: AtomicU64::new(1),
                tx_prefix: hex(&prefix),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// `GET /info`: Janus's server info (needs no secret).
    pub async fn info(&self) -> Result<Map<String, Value>, JanusError> {
        let url = format!("{}/info", self.inner.base);
        let reply = self
            .send(
                self.inner.http.get(&url),
                &url,
                self.inner.settings.request_timeout,
            )
            .await?;
        match reply {
            Value::Object(m) if m.get("janus").and_then(Value::as_str) == Some("server_info") => {
                Ok(m)
            }
            other => Err(self.bad_reply(format!("GET /info gave {}", short(&other)))),
        }
    }

    /// True if Janus itself requires an API secret (`api_secret` in janus.jcfg).
    pub async fn janus_requires_api_secret(&self) -> Result<bool, JanusError> {
        Ok(self
            .info()
            .await?
            .get("api_secret")
            .and_then(Value::as_bool)
            == Some(true))
    }

    /// Increases each time the client had to open a new Janus session (Janus restarted or
    /// forgot the session): participant handles of older sessions are gone.
    /// [`JanusSettings::media_timeout`].
    pub fn media_timeout(&self) -> Duration {
        self.inner.settings.media_timeout
    }

    /// [`JanusSettings::dead_after`].
    pub fn dead_after(&self) -> Duration {
        self.inner.settings.dead_after
    }

    /// The base URL of Janus's HTTP API (what the room table records).
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// How long Janus has been unreachable (every request since then failed without an HTTP
    /// answer; the long poll keeps trying while it is), or None if it answered last. Several
    /// Janus servers: one down for [`super::JanusSettings::dead_after`] is given up and its
    /// calls move (docs/sfu.md "Several Janus servers").
    pub fn down_for(&self) -> Option<Duration> {
        let since = *self.inner.failing_since.lock().unwrap();
        since.map(|t| t.elapsed())
    }

    /// Records whether a request got an HTTP answer ([`Self::down_for`]).
    fn reached(&self, answered: bool) {
        let mut since = self.inner.failing_since.lock().unwrap();
        match (answered, since.is_some()) {
            (true, true) => *since = None,
            (false, false) => *since = Some(tokio::time::Instant::now()),
            _ => {}
        }
    }

    pub fn session_generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// Changes (to the new [`Self::session_generation`]) whenever a session opens — after a
    /// Janus restart without waiting for any request — so the SFU task recreates the rooms and
    /// restarts the devices at once.
    pub fn session_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The current Janus session id, opening one if needed.
    pub async fn session_id(&self) -> Result<u64, JanusError> {
        Ok(self.session().await?.id)
    }

    /// Stops the background tasks and destroys the session on Janus (best effort).
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let s = self.inner.session.lock().await.take();
        if let Some(s) = s {
            s.dead.cancel();
            let url = format!("{}/{}", self.inner.base, s.id);
            // Bounded: an unresponsive Janus must not hold up the server's shutdown (the
            // session then times out on Janus by itself).
            let bye = self.post(&url, json!({"janus": "destroy"}));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, bye).await;
        }
    }

    // ---- videoroom administration (synchronous plugin requests on the admin handle) ----

    /// Creates a private room: only the `allowed` tokens may join it; edits need `secret`.
    /// Sent with the admin key.
    pub async fn create_room(&self, spec: &RoomSpec) -> Result<(), JanusError> {
        let mut body = json!({
            "request": "create",
            "room": spec.room,
            "permanent": false,
            "is_private": true,
            "secret": spec.secret,
            "allowed": spec.allowed,
            "publishers": spec.publishers,
            "require_pvtid": spec.require_pvtid,
            "description": spec.description,
        });
        if let Some(k) = &self.inner.settings.admin_key {
            body["admin_key"] = json!(k);
        }
        let data = self.admin_request("create", &spec.room, body).await?;
        match data.get("videoroom").and_then(Value::as_str) {
            Some("created") if data.get("room").and_then(Value::as_str).is_some() => Ok(()),
            // A number: the plugin runs without string_ids and made up its own id.
            _ => Err(JanusError::Plugin {
                request: "create".into(),
                room: spec.room.clone(),
                code: videoroom_code::INVALID_ELEMENT,
                reason: format!("unexpected reply {}", short(&Value::Object(data))),
                hint: plugin_hint(videoroom_code::INVALID_ELEMENT),
            }),
        }
    }

    /// Whether the room exists on Janus.
    pub async fn room_exists(&self, room: &str) -> Result<bool, JanusError> {
        let data = self
            .admin_request("exists", room, json!({"request": "exists", "room": room}))
            .await?;
        Ok(data.get("exists").and_then(Value::as_bool) == Some(true))
    }

    /// Adds tokens to the room's allow-list; returns the list as Janus now has it.
    pub async fn allow(
        &self,
        room: &str,
        secret: &str,
        tokens: &[String],
    ) -> Result<Vec<String>, JanusError> {
        self.allowed_action(room, secret, "add", tokens).await
    }

    /// Takes tokens off the room's allow-list (a kicked device cannot join again).
    pub async fn disallow(
        &self,
        room: &str,
        secret: &str,
        tokens: &[String],
    ) -> Result<Vec<String>, JanusError> {
        self.allowed_action(room, secret, "remove", tokens).await
    }

    async fn allowed_action(
        &self,
        room: &str,
        secret: &str,
        action: &str,
        tokens: &[String],
    ) -> Result<Vec<String>, JanusError> {
        let body = json!({
            "request": "allowed", "room": room, "secret": secret,
            "action": action, "allowed": tokens,
        });
        let data = self.admin_request("allowed", room, body).await?;
        Ok(strings(data.get("allowed")))
    }

    /// Kicks participant `feed` out of the room (its publisher handle; its subscriptions end
    /// with the publisher's handle on our side).
    pub async fn kick(&self, room: &str, secret: &str, feed: &str) -> Result<(), JanusError> {
        let body = json!({"request": "kick", "room": room, "secret": secret, "id": feed});
        self.admin_request("kick", room, body).await.map(drop)
    }

    /// The ids of the room's participants (publishers and joined-but-not-publishing ones).
    pub async fn participants(&self, room: &str) -> Result<Vec<String>, JanusError> {
        let body = json!({"request": "listparticipants", "room": room});
        let data = self.admin_request("listparticipants", room, body).await?;
        Ok(data
            .get("participants")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The ids of every room on Janus, private ones included (asked with the admin key).
    pub async fn list_rooms(&self) -> Result<Vec<String>, JanusError> {
        let mut body = json!({"request": "list"});
        if let Some(k) = &self.inner.settings.admin_key {
            body["admin_key"] = json!(k);
        }
        let data = self.admin_request("list", "", body).await?;
        Ok(data
            .get("list")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.get("room").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Destroys the room: every participant is kicked out.
    pub async fn destroy_room(&self, room: &str, secret: &str) -> Result<(), JanusError> {
        let body =
            json!({"request": "destroy", "room": room, "secret": secret, "permanent": false});
        self.admin_request("destroy", room, body).await.map(drop)
    }

    /// One synchronous request on the admin handle; the plugin's `error_code` becomes
    /// [`JanusError::Plugin`]. Retried once on a new session if Janus forgot the old one.
    async fn admin_request(
        &self,
        request: &str,
        room: &str,
        body: Value,
    ) -> Result<Map<String, Value>, JanusError> {
        let mut retried = false;
        loop {
            let s = self.session().await?;
            let url = format!("{}/{}/{}", self.inner.base, s.id, s.admin);
            match self
                .post(&url, json!({"janus": "message", "body": body}))
                .await
            {
                Err(e) if e.session_gone() && !retried => {
                    self.forget(&s).await;
                    retried = true;
                }
                Err(e) => return Err(e),
                Ok(reply) => {
                    let data = plugin_data(&reply).ok_or_else(|| {
                        self.bad_reply(format!("`{request}` gave {}", short(&reply)))
                    })?;
                    return check_plugin(request, room, data);
                }
            }
        }
    }

    // ---- participant handles ----

    /// Attaches a new handle to the videoroom plugin on the current session (for a device's
    /// publisher or subscriber).
    pub async fn attach(&self) -> Result<Handle, JanusError> {
        let s = self.session().await?;
        let url = format!("{}/{}", self.inner.base, s.id);
        let reply = match self
            .post(&url, json!({"janus": "attach", "plugin": VIDEOROOM}))
            .await
        {
            Err(e) if e.session_gone() => {
                self.forget(&s).await;
                return Err(e);
            }
            r => r?,
        };
        let id = data_id(&reply)
            .ok_or_else(|| self.bad_reply(format!("attach gave {}", short(&reply))))?;
        Ok(Handle {
            client: self.clone(),
            session: s,
            id,
        })
    }

    /// Events that no request waits for (publisher joined/left, hangup, webrtcup…), of this
    /// session and the next ones (after a Janus restart).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Value> {
        self.inner.events.subscribe()
    }

    // ---- sessions ----

    async fn session(&self) -> Result<Arc<Session>, JanusError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(JanusError::Closed);
        }
        let mut slot = self.inner.session.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.dead.is_cancelled() {
                return Ok(s.clone());
            }
        }
        let reply = self
            .post(&self.inner.base, json!({"janus": "create"}))
            .await?;
        let id = data_id(&reply)
            .ok_or_else(|| self.bad_reply(format!("create gave {}", short(&reply))))?;
        let url = format!("{}/{}", self.inner.base, id);
        let reply = self
            .post(&url, json!({"janus": "attach", "plugin": VIDEOROOM}))
            .await?;
        let admin = data_id(&reply)
            .ok_or_else(|| self.bad_reply(format!("attach gave {}", short(&reply))))?;
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let s = Arc::new(Session {
            id,
            admin,
            generation,
            pending: Mutex::new(HashMap::new()),
            dead: self.inner.shutdown.child_token(),
        });
        tracing::info!(session = id, generation, url = %self.inner.base, "Janus session opened");
        tokio::spawn(self.clone().poll(s.clone()));
        tokio::spawn(self.clone().keepalive(s.clone()));
        *slot = Some(s.clone());
        self.inner.changes.send_replace(generation);
        Ok(s)
    }

    /// Marks `s` gone and opens a new session at once: Janus answered that it does not know
    /// `s`, so it is up — most likely it restarted, and calls wait for their rooms.
    async fn forget(&self, s: &Arc<Session>) {
        s.dead.cancel();
        let mut slot = self.inner.session.lock().await;
        if slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, s)) {
            *slot = None;
        }
        drop(slot);
        tracing::warn!(
            session = s.id,
            generation = s.generation,
            "Janus session lost"
        );
        tokio::spawn(self.clone().reopen());
    }

    /// Opens a session again (unless a request did meanwhile), retrying while Janus fails.
    /// (Boxed: `session` spawns the poll that calls this, a cycle the compiler cannot prove
    /// `Send` through otherwise.)
    fn reopen(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut retry = RETRY_MIN;
            loop {
                match self.session().await {
                    Ok(_) | Err(JanusError::Closed) => return,
                    Err(e) => tracing::debug!(error = %e, "opening a Janus session again failed"),
                }
                tokio::select! {
                    _ = self.inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        })
    }

    /// Long-polls the session's events until it dies: answers waiting requests by
    /// transaction, broadcasts the rest. Each poll also touches the session on Janus.
    async fn poll(self, s: Arc<Session>) {
        let url = format!("{}/{}?maxev=16", self.inner.base, s.id);
        let mut retry = RETRY_MIN;
        loop {
            let req = self.inner.http.get(self.with_secret_query(&url));
            let reply = tokio::select! {
                _ = s.dead.cancelled() => return,
                r = self.send_inner(req, &url, POLL_TIMEOUT, true) => r,
            };
            if reply.is_ok() {
                retry = RETRY_MIN;
            }
            let events = &self.inner.events;
            match reply {
                Ok(Value::Array(evs)) => evs.into_iter().for_each(|e| s.dispatch(e, events)),
                Ok(Value::Object(m))
                    if m.get("janus").and_then(Value::as_str) == Some("keepalive") => {}
                Ok(e @ Value::Object(_)) => s.dispatch(e, events),
                Ok(_) => {}
                Err(e) if e.session_gone() => {
                    self.forget(&s).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Janus long poll failed");
                    tokio::select! {
                        _ = s.dead.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Explicit keep-alives, in case the long poll stalls.
    async fn keepalive(self, s: Arc<Session>) {
        let url = format!("{}/{}", self.inner.base, s.id);
        loop {
            tokio::select! {
                _ = s.dead.cancelled() => return,
                _ = tokio::time::sleep(self.inner.settings.keepalive) => {}
            }
            match self.post(&url, json!({"janus": "keepalive"})).await {
                Err(e) if e.session_gone() => {
                    self.forget(&s).await;
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "Janus keepalive failed"),
                Ok(_) => {}
            }
        }
    }

    // ---- transport ----

    fn transaction(&self) -> String {
        let n = self.inner.next_tx.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.tx_prefix)
    }

    fn with_secret_query(&self, url: &str) -> String {
        match &self.inner.settings.api_secret {
            Some(secret) => {
                let q = url::form_urlencoded_pair("apisecret", secret);
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}{q}")
            }
            None => url.to_owned(),
        }
    }

    /// POSTs a Janus request (adding transaction and API secret) and returns the reply; a
    /// `"janus": "error"` reply becomes an error.
    async fn post(&self, url: &str, mut body: Value) -> Result<Value, JanusError> {
        if body.get("transaction").is_none() {
            body["transaction"] = json!(self.transaction());
        }
        if let Some(secret) = &self.inner.settings.api_secret {
            body["apisecret"] = json!(secret);
        }
        let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
        let req = self
            .inner
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(bytes);
        self.send(req, url, self.inner.settings.request_timeout)
            .await
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<Value, JanusError> {
        self.send_inner(req, url, timeout, false).await
    }

    /// `long_poll`: Janus answers a long poll (GET) on a session it does not know — it
    /// restarted — with a plain HTTP 404, not the JSON 458 other requests get.
    async fn send_inner(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
        long_poll: bool,
    ) -> Result<Value, JanusError> {
        // (Without the URL: a long poll's carries the API secret, and errors get logged.)
        let unreachable = |source: reqwest::Error| JanusError::Unreachable {
            url: self.inner.base.clone(),
            source: source.without_url(),
        };
        let resp = req.timeout(timeout).send().await;
        // (A long poll that times out is no sign of a dead Janus: it holds polls that long.)
        if !(long_poll && resp.as_ref().is_err_and(reqwest::Error::is_timeout)) {
            self.reached(resp.is_ok());
        }
        let resp = resp.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if long_poll && status == reqwest::StatusCode::NOT_FOUND {
            return Err(JanusError::Core {
                code: core_code::SESSION_NOT_FOUND,
                reason: "no such session (HTTP 404 on the long poll)".into(),
            });
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            self.bad_reply(format!(
                "HTTP {status} from {url} with a non-JSON body ({} bytes)",
                bytes.len()
            ))
        })?;
        if value.get("janus").and_then(Value::as_str) == Some("error") {
            let code = value["error"]["code"].as_i64().unwrap_or(0);
            let reason = value["error"]["reason"].as_str().unwrap_or("").to_owned();
            if code == core_code::UNAUTHORIZED {
                return Err(JanusError::Unauthorized { reason });
            }
            return Err(JanusError::Core { code, reason });
        }
        Ok(value)
    }

    fn bad_reply(&self, detail: String) -> JanusError {
        JanusError::BadReply {
            url: self.inner.base.clone(),
            detail,
        }
    }
}

impl Session {
    /// Hands `event` to the request waiting for its transaction, else to `events`.
    fn dispatch(&self, event: Value, events: &tokio::sync::broadcast::Sender<Value>) {
        let tx = event.get("transaction").and_then(Value::as_str);
        let waiter = tx.and_then(|t| self.pending.lock().unwrap().remove(t));
        match waiter {
            Some(w) => {
                let _ = w.send(event);
            }
            None => {
                let _ = events.send(event);
            }
        }
    }
}

/// A participant handle on the videoroom plugin (one per device's publisher or subscriber).
/// A clone names the same Janus handle: the relay sends a device's request on a copy, without
/// holding its call's state across the request.
#[derive(Clone)]
pub struct Handle {
    client: JanusClient,
    session: Arc<Session>,
    id: u64,
}

impl Handle {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a plugin request (with a JSEP offer/answer if given) and returns the plugin's
    /// answer, whether Janus answers at once (`success`) or later as an event (`ack`, then the
    /// event on the long poll). The plugin's `error_code` becomes [`JanusError::Plugin`].
    pub async fn request(
        &self,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<PluginReply, JanusError> {
        let request = body["request"].as_str().unwrap_or("?").to_owned();
        let room = match &body["room"] {
            Value::String(r) => r.clone(),
            other => other.to_string(),
        };
        let tx = self.client.transaction();
        let (send, recv) = oneshot::channel();
        self.session
            .pending
            .lock()
            .unwrap()
            .insert(tx.clone(), send);
        let mut msg = json!({"janus": "message", "transaction": tx, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let url = format!("{}/{}/{}", self.client.inner.base, self.session.id, self.id);
        let reply = self.client.post(&url, msg).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.session.pending.lock().unwrap().remove(&tx);
                if e.session_gone() {
                    self.client.forget(&self.session).await;
                }
                return Err(e);
            }
        };
        let event = if reply.get("janus").and_then(Value::as_str) == Some("ack") {
            let waited = tokio::select! {
                _ = self.session.dead.cancelled() => Err(JanusError::Core {
                    code: core_code::SESSION_NOT_FOUND,
                    reason: "the Janus session was lost".into(),
                }),
                r = tokio::time::timeout(self.client.inner.settings.request_timeout, recv) => match r {
                    Ok(Ok(ev)) => Ok(ev),
                    _ => Err(JanusError::EventTimeout {
                        request: request.clone(),
                        waited: self.client.inner.settings.request_timeout,
                    }),
                },
            };
            if waited.is_err() {
                self.session.pending.lock().unwrap().remove(&tx);
            }
            waited?
        } else {
            self.session.pending.lock().unwrap().remove(&tx);
            reply
        };
        let data = plugin_data(&event).ok_or_else(|| {
            self.client
                .bad_reply(format!("`{request}` gave {}", short(&event)))
        })?;
        let data = check_plugin(&request, &room, data)?;
        Ok(PluginReply {
            data,
            jsep: event.get("jsep").cloned(),
        })
    }

    /// Trickles one ICE candidate of the client's peer connection on this handle (`None`:
    /// gathering completed). Janus only acks it (candidates before the SDP are queued by Janus).
    pub async fn trickle(&self, candidate: Option<Value>) -> Result<(), JanusError> {
        let url = format!("{}/{}/{}", self.client.inner.base, self.session.id, self.id);
        let body = match candidate {
            Some(c) => json!({"janus": "trickle", "candidate": c}),
            None => json!({"janus": "trickle", "candidate": {"completed": true}}),
        };
        match self.client.post(&url, body).await {
            Err(e) if e.session_gone() => {
                self.client.forget(&self.session).await;
                Err(e)
            }
            r => r.map(drop),
        }
    }

    /// The Janus session generation this handle belongs to (a handle of an older one is gone).
    pub fn generation(&self) -> u64 {
        self.session.generation
    }

    /// Detaches the handle (leaves whatever it joined). Best effort.
    pub async fn detach(self) {
        let url = format!("{}/{}/{}", self.client.inner.base, self.session.id, self.id);
        let _ = self.client.post(&url, json!({"janus": "detach"})).await;
    }
}

/// `plugindata.data` of a reply or event.
fn plugin_data(reply: &Value) -> Option<Map<String, Value>> {
    reply.get("plugindata")?.get("data")?.as_object().cloned()
}

fn check_plugin(
    request: &str,
    room: &str,
    data: Map<String, Value>,
) -> Result<Map<String, Value>, JanusError> {
    match data.get("error_code").and_then(Value::as_i64) {
        Some(code) => Err(JanusError::Plugin {
            request: request.to_owned(),
            room: room.to_owned(),
            code,
            reason: data
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            hint: plugin_hint(code),
        }),
        None => Ok(data),
    }
}

/// `data.id` of a `create` / `attach` success.
fn data_id(reply: &Value) -> Option<u64> {
    (reply.get("janus")?.as_str()? == "success").then_some(())?;
    reply.get("data")?.get("id")?.as_u64()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A reply shortened for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

mod url {
    /// `name=value` percent-encoded for a query string.
    pub fn form_urlencoded_pair(name: &str, value: &str) -> String {
        serde_urlencoded::to_string([(name, value)]).expect("strings encode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that was never connected (for transport-level checks).
    fn client(url: &str, secret: &str) -> JanusClient {
        let mut settings = JanusSettings::new(url);
        settings.api_secret = Some(secret.into());
        JanusClient::new(settings).unwrap()
    }

    #[tokio::test]
    async fn closing_does_not_wait_for_an_unresponsive_janus() {
        // Accepts connections (the kernel does) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/janus", silent.local_addr().unwrap());
        let c = client(&base, "s");
        *c.inner.session.lock().await = Some(Arc::new(Session {
            id: 1,
            admin: 2,
            generation: 1,
            pending: Mutex::new(HashMap::new()),
            dead: c.inner.shutdown.child_token(),
        }));
        // Generous, well under the 10 s an ordinary request may take.
        tokio::time::timeout(Duration::from_secs(5), c.close())
            .await
            .expect("close() returns although Janus does not answer");
        assert!(matches!(c.session_id().await, Err(JanusError::Closed)));
    }

    #[tokio::test]
    async fn a_failed_long_poll_does_not_put_the_api_secret_in_its_error() {
        // Nothing listens on a port we just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}/janus");
        let c = client(&base, "very-secret-api-key");
        let url = format!("{base}/1?maxev=16");
        let req = c.inner.http.get(c.with_secret_query(&url));
        let e = c.send(req, &url, REQUEST_TIMEOUT).await.unwrap_err();
        let shown = format!("{e} / {e:?}");
        assert!(matches!(e, JanusError::Unreachable { .. }), "{shown}");
        assert!(!shown.contains("very-secret-api-key"), "{shown}");
        assert!(
            shown.contains("Connection refused"),
            "the cause is shown: {shown}"
        );
    }
}
