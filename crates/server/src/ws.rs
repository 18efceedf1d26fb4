//! WebSocket signalling at `GET /ws`: one binary protobuf frame per message (see
//! `rtc_core::proto::envelope`).
//!
//! Each connection is one task running one loop: write everything queued in its ordered
//! [`Outbox`] (which the hub and the loop itself feed) with a single flush, then wait for the
//! next client frame or the next queued item. Frames are handled one at a time, so one
//! connection's messages are accepted in the order it sent them. The loop keeps as little state
//! as possible between frames because idle connections dominate the server's memory. Any
//! protocol violation ends only that connection, after an `ErrorFrame` saying why.
//!
//! Confirmations (`SendResult` code 0, `Pong.accepted_upto`, `AuthResult.accepted_upto`) are
//! queued as [`Outgoing::Durable`] when they cover a store write that has not committed yet:
//! the writer holds them, and everything after them, until it has. Dead peers are found by a
//! shared sweep ([`Liveness`]), not a timer per connection, to keep idle connections small.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use rtc_core::proto::client_frame::Body as ClientBody;
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{
    error_code, sfu_pc, AuthResult, Authenticate, ClientFrame, ErrorFrame, IceServers,
    JoinedUserInfo, Pong, SendResult, ServerFrame, SfuFailed,
};

use crate::clock::now_ms;
use crate::hub::{
    encode_body, tick_liveness_clock, AppId, ConnId, Departure, Origin, Outbox, Outgoing,
    PushError, RouteError, RouteOptions, SendRef,
};
use crate::listener::ConnGuard;
use crate::sfu::relay::Request;
use crate::socket::{self, Message, Upgrade, WebSocket};
use crate::token::{self, Claims, TokenError};
use crate::{ice, AppState};
use delivery::decode_ack_frame;

/// Longest accepted device id.
pub const MAX_DEVICE_ID_CHARS: usize = 128;

/// WebSocket close codes (RFC 6455) sent after an `ErrorFrame`.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Time allowed to flush the last frames of a closing connection.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection silent this long gets a WebSocket Ping (browsers answer it by themselves); one
/// that sends app `Ping`s (the SDK, on this same interval) only once they are overdue, 1.5
/// intervals ([`crate::outbox::Outbox::app_pinged`]). Well under the idle timeouts of common
/// proxies and NATs (30–60 s). Kept at 5 s (BENCHMARKS.md, "Session 14: the cost of
/// liveness"): with each SDK connection pinged once per interval, liveness costs ~19 µs per ping,
/// ~4 µs per connection per second (5 % of a core at 14,000 connections), and 10 s would halve that
/// but double the time to notice a vanished peer ([`DEAD_AFTER`] 15 → 30 s; the SDK's 12 → 24 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A connection that sent nothing at all (no frame, no pong) for this long is closed as
/// `Departure::Lost`: three missed pings, so one delayed pong on a congested link is not fatal,
/// while a peer that vanished without a FIN is found within ~15 s (its call partners and
/// senders learn it is gone, and what was routed to it is stored for its resume).
pub const DEAD_AFTER: Duration = Duration::from_secs(15);

/// Every serving connection's outbox, for the liveness sweep (separate from the hub's
/// routing lock, so a sweep over many idle connections never delays a message).
#[derive(Default)]
pub struct Liveness {
    conns: Mutex<HashMap<ConnId, Arc<Outbox>>>,
    /// When the memory gauges were last logged (`clock::mono_ms`).
    gauged: std::sync::atomic::AtomicU64,
}

/// Connections upgraded but not serving yet: waiting for their `Authenticate`, answered busy,
/// or in their login's stages and replay (a memory gauge: a reconnect burst's share).
static OPENING: AtomicUsize = AtomicUsize::new(0);
/// Cluster mode: client messages in their route call (waiting on Redis; a memory gauge: a
/// starved Redis's backlog held by the nodes).
static ROUTING: AtomicUsize = AtomicUsize::new(0);

/// Counts itself in a gauge while it lives.
struct Gauge(&'static AtomicUsize);

impl Gauge {
    fn new(g: &'static AtomicUsize) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Gauge(g)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often [`sweep`] logs the memory gauges (when `rcall_server::mem` is at debug).
const MEM_GAUGE_INTERVAL_MS: u64 = 5_000;

/// The liveness sweep ([`Liveness::sweep`]) and, every [`MEM_GAUGE_INTERVAL_MS`] when the
/// target `rcall_server::mem` logs at debug, the node's memory gauges (issue 15: where a
/// node's memory goes in a failover's reconnect burst; the failover benchmark prints each
/// node's line at its peak RSS): the RSS, the serving connections and what their outboxes
/// hold, the connections still opening, the logins in progress and the cluster sends waiting
/// on Redis.
pub fn sweep(state: &AppState) {
    let l = &state.liveness;
    l.sweep(state.config.ping_interval, state.config.dead_after);
    if !tracing::enabled!(target: "rcall_server::mem", tracing::Level::DEBUG) {
        return;
    }
    let now = crate::clock::mono_ms();
    let last = l.gauged.load(Ordering::Relaxed);
    if now.saturating_sub(last) < MEM_GAUGE_INTERVAL_MS
        || l.gauged.swap(now, Ordering::Relaxed) != last
    {
        return;
    }
    let outboxes: Vec<Arc<Outbox>> = l.map().values().cloned().collect();
    let (mut items, mut bytes) = (0, 0);
    for o in &outboxes {
        let (i, b) = o.queued();
        items += i;
        bytes += b;
    }
    let rss_kb = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4);
    tracing::debug!(
        target: "rcall_server::mem",
        at_ms = now_ms(),
        rss_kb,
        conns = outboxes.len(),
        queued_items = items,
        queued_kb = bytes / 1024,
        opening = OPENING.load(Ordering::Relaxed),
        logins = state.routing.as_ref().map_or(0, |r| r.logins_in_progress()),
        routing = ROUTING.load(Ordering::Relaxed),
        "memory gauges"
    );
}

impl Liveness {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Arc<Outbox>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pings connections silent for `ping_interval`, kills those silent for `dead_after`;
    /// returns how many were killed.
    pub fn sweep(&self, ping_interval: Duration, dead_after: Duration) -> usize {
        let now = tick_liveness_clock();
        let (ping, dead) = (
            ping_interval.as_millis() as u64,
            dead_after.as_millis() as u64,
        );
        let mut killed = 0;
        for (id, o) in self.map().iter() {
            if o.check_alive(now, ping, dead) {
                tracing::info!(conn_id = id, "no sign of life, closing");
                killed += 1;
            }
        }
        killed
    }
}

/// Payload bytes of stored messages one replay page holds at most (past its first message):
/// with [`crate::Config::replay_page_messages`] it bounds what a connecting device costs the
/// server however much is stored for it (the next page is read once this one was written).
pub const REPLAY_PAGE_BYTES: usize = 256 * 1024;

pub async fn ws_handler(
    State(state): State<Arc<AppState>>,
    guard: Option<axum::Extension<Arc<ConnGuard>>>,
    upgrade: Upgrade,
) -> Response {
    let guard = guard.map(|axum::Extension(g)| g);
    if let Some(g) = &guard {
        // Until it authenticates, the connection reads a few KB at most.
        g.upgrading();
    }
    // Until it authenticates, a frame over the pre-auth limit is refused from its header.
    upgrade.on_upgrade(pre_auth_max(&state), move |socket| {
        run_connection(state, socket, guard)
    })
}

/// A client frame, or why the connection must end.
enum Inbound {
    /// A binary message within the size limit, not decoded yet: decoded by [`handle_binary`]
    /// once the connection is authenticated, by [`next_frame`] before.
    Binary(Bytes),
    Frame(ClientFrame),
    /// WebSocket ping/pong: handled by the transport, nothing for us to do.
    Control,
    /// The peer closed, or the transport failed.
    Closed(Departure),
    Violation(ErrorFrame),
}

fn error_frame(code: i32, message: impl Into<String>) -> ErrorFrame {
    ErrorFrame {
        code,
        message: message.into(),
    }
}

/// Largest frame before authentication: a token and a device id, a few KB.
fn pre_auth_max(state: &AppState) -> usize {
    state
        .config
        .pre_auth_frame_bytes
        .min(state.config.max_frame_bytes)
}

fn classify(msg: Option<Result<Message, socket::Error>>, max: usize) -> Inbound {
    match msg {
        // Only the SDK's own close (1000: pagehide after its hangups, `disconnect()`) means
        // the page meant to go: Chromium closes a crashed renderer's sockets with 1001, the
        // same code as a tab closed without the SDK's handler.
        Some(Ok(Message::Close(Some(close_code::NORMAL)))) => Inbound::Closed(Departure::Left),
        // The socket refused it from its header, before buffering it.
        Some(Err(socket::Error::TooLarge { len, max })) => Inbound::Violation(error_frame(
            error_code::FRAME_TOO_LARGE,
            format!("frame of {len} bytes exceeds the limit of {max} bytes"),
        )),
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Inbound::Closed(Departure::Lost),
        Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => Inbound::Control,
        Some(Ok(Message::Text(_))) => Inbound::Violation(error_frame(
            error_code::TEXT_FRAME,
            "text frames are not part of the protocol; send binary ClientFrame messages",
        )),
        Some(Ok(Message::Binary(bytes))) => {
            if bytes.len() > max {
                return Inbound::Violation(error_frame(
                    error_code::FRAME_TOO_LARGE,
                    format!(
                        "frame of {} bytes exceeds the limit of {max} bytes",
                        bytes.len()
                    ),
                ));
            }
            Inbound::Binary(bytes)
        }
    }
}

fn close_code_for(err: &ErrorFrame) -> u16 {
    match err.code {
        error_code::FRAME_TOO_LARGE => close_code::TOO_BIG,
        error_code::TEXT_FRAME => close_code::UNSUPPORTED,
        error_code::MALFORMED_FRAME => close_code::PROTOCOL,
        _ => close_code::POLICY,
    }
}

fn encode(body: Body) -> Message {
    Message::Binary(ServerFrame::new(now_ms(), body).to_bytes().into())
}

/// Queues `ServerFrame { server_time, body }` from a pre-encoded body (protobuf fields
/// concatenate), copied once, into the socket's write buffer.
async fn feed_frame(
    ws: &mut WebSocket,
    server_time: i64,
    body: &[u8],
) -> Result<(), socket::Error> {
    // Field 1's key and a varint of at most 10 bytes.
    let mut head = [0u8; 11];
    let n = {
        let mut rest = &mut head[..];
        prost::encoding::int64::encode(1, &server_time, &mut rest);
        11 - rest.len()
    };
    ws.feed_parts(&[&head[..n], body]).await
}

async fn send_close(ws: &mut WebSocket, code: u16) {
    let close = Message::Close(Some(code));
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
        let _ = ws.send(close).await;
        let _ = ws.close().await;
    })
    .await;
}

fn refusal(code: i32, message: impl Into<String>) -> Body {
    busy_refusal(code, message, 0)
}

/// A refusal that asks the client to come back in `retry_after_ms` (`AuthResult.retry_after_ms`;
/// 0: retrying does not help, e.g. a connection limit).
fn busy_refusal(code: i32, message: impl Into<String>, retry_after_ms: u32) -> Body {
    Body::AuthResult(AuthResult {
        code,
        user_id: String::new(),
        message: message.into(),
        ice_servers: Vec::new(),
        accepted_upto: 0,
        profile: None,
        sfu: false,
        retry_after_ms,
    })
}

/// `AuthResult.retry_after_ms` for a node shutting down: its clients come back (elsewhere, the
/// SDK moving on to its next navi URL) soon, not as to a busy node's turn.
const SHUTTING_DOWN_RETRY_MS: u32 = 500;

/// Picks the app the token claims and verifies the token with that app's secret.
fn verify_token(state: &AppState, token: &str, now: i64) -> Result<(AppId, Claims), TokenError> {
    let key = token::claimed_app_key(token).ok_or(TokenError::Malformed)?;
    let app = state.hub.app_by_key(&key).ok_or(TokenError::WrongApp)?;
    let claims = token::verify(&key, state.hub.app(app).secret(), token, now)?;
    Ok((app, claims))
}

/// Authenticates and replays in the upgrade task, then serves the connection in a task of its
/// own whose future is only what an idle connection needs (the one-off phases' state is gone).
async fn run_connection(state: Arc<AppState>, ws: WebSocket, guard: Option<Arc<ConnGuard>>) {
    let opening = Gauge::new(&OPENING);
    let opened = open_session(&state, ws, guard).await;
    drop(opening);
    if let Some((ws, origin, outbox)) = opened {
        state.liveness.map().insert(origin.conn_id, outbox.clone());
        let tracker = state.tracker.clone();
        tracker.spawn(serve_connection(state, ws, outbox, origin));
    }
}

/// Authentication, registration and replay.
async fn open_session(
    state: &AppState,
    mut ws: WebSocket,
    guard: Option<Arc<ConnGuard>>,
) -> Option<(WebSocket, Origin, Arc<Outbox>)> {
    let opened = Instant::now();
    // (`login`: cluster mode's count of logins in progress.)
    let (app, reg, outbox, instance, login) =
        authenticate(state, &mut ws, guard.as_deref()).await?;
    drop(guard);
    if let Some(routing) = &state.routing {
        let auth = opened.elapsed();
        return cluster_session(state, routing, ws, app, reg, outbox, instance, auth, login).await;
    }
    // Replay before live traffic, a page at a time: the next page is read only once the
    // previous one was written to the socket, so a device with a large backlog (or many
    // connections of one that never read) costs at most a page each.
    let page = (state.config.replay_page_messages, REPLAY_PAGE_BYTES);
    let mut cursor = reg.cursor;
    let mut devices: Option<Vec<String>> = None;
    let mut replayed = 0;
    let mut batch = Vec::new();
    loop {
        let mut data = match state
            .store
            .sync_page(
                state.hub.app(app).key.clone(),
                reg.user_id.clone(),
                reg.device_id.clone(),
                cursor,
                now_ms(),
                Some(page),
            )
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "loading stored messages failed; replaying memory only");
                Default::default()
            }
        };
        // The devices known before this connection (a new device is told apart by them).
        match &devices {
            Some(d) => data.devices = d.clone(),
            None => devices = Some(data.devices.clone()),
        }
        let page_reg = crate::hub::Registered {
            cursor,
            ..reg.clone()
        };
        let end = data.messages.last().map(|m| m.seq).filter(|_| data.more);
        replayed += state.hub.finish_sync(app, &page_reg, data, end);
        let Some(end) = end else { break };
        cursor = end;
        if !write_replay_page(state, &mut ws, &outbox, &mut batch, app, &reg).await {
            return None;
        }
    }
    // The last page is queued for the connection's writer (live traffic may follow it).
    state
        .metrics
        .replay_peak_queue
        .fetch_max(outbox.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Some((ws, connected(app, reg, instance, replayed), outbox))
}

/// Writes a replay page queued in `outbox` (with what preceded it, e.g. the `AuthResult`)
/// before the next page is read. False (the connection is unregistered) when the client did
/// not read it in time.
async fn write_replay_page(
    state: &AppState,
    ws: &mut WebSocket,
    outbox: &Outbox,
    batch: &mut Vec<Outgoing>,
    app: AppId,
    reg: &crate::hub::Registered,
) -> bool {
    outbox.take(batch);
    state
        .metrics
        .replay_peak_queue
        .fetch_max(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let written =
        tokio::time::timeout(state.config.dead_after, write_batch(state, ws, batch)).await;
    if matches!(written, Ok(Written::Ok)) {
        return true;
    }
    tracing::info!(conn_id = reg.conn_id, "replay not read in time, closing");
    state
        .hub
        .unregister(app, &reg.user_id, reg.conn_id, Departure::Lost);
    false
}

/// Cluster mode's registration and replay: the user's channel is subscribed first, then the
/// replay read from its mailbox a page at a time, as on a single node (what arrives meanwhile
/// waits in the core's window and is deduplicated by seq). A Redis failure closes the
/// connection: a replay with a gap would let the device ack past what it never got.
#[allow(clippy::too_many_arguments)]
async fn cluster_session(
    state: &AppState,
    routing: &crate::cluster::routing::Routing,
    mut ws: WebSocket,
    app: AppId,
    reg: crate::hub::Registered,
    outbox: Arc<Outbox>,
    instance: u64,
    auth: Duration,
    login: Option<crate::cluster::routing::LoginPermit>,
) -> Option<(WebSocket, Origin, Arc<Outbox>)> {
    let key = state.hub.app(app).key.clone();
    let page = state.config.replay_page_messages;
    // Where a login's time goes, per stage (debug log, target `rcall_server::cluster::login`;
    // `auth_ms`: from the upgrade to the registration, the `Authenticate` wait included;
    // `at_ms`: wall clock at the end, for the failover benchmark's per-stage figures).
    let t0 = std::time::Instant::now();
    let mut stages = [std::time::Duration::ZERO; 3];
    // A client that gave up on its login (its attempt timed out: it closed the socket, and
    // retries elsewhere) must not cost the cluster the rest of it: its hold is given up when
    // the socket closes, and no later stage starts then. (Under a login storm the abandoned
    // logins' Redis work delayed the retries past their timeout in turn.)
    let limit = pre_auth_max(state);
    let mut rooms_held = false;
    let started = async {
        let held = tokio::select! {
            held = routing.hold(app, &key, &reg.user_id, reg.conn_id) => held,
            _ = ws.peer_gone(limit) => return Ok(None),
        };
        held?;
        stages[0] = t0.elapsed();
        if let Some(rooms) = &state.rooms {
            rooms_held = true;
            // Watched too: announcing a call member (`Here`) waits on Redis.
            tokio::select! {
                held = rooms.hold(
                    &state.hub,
                    app,
                    &key,
                    &reg.user_id,
                    &reg.device_id,
                    instance,
                    reg.conn_id,
                ) => held?,
                _ = ws.peer_gone(limit) => return Ok(None),
            }
        }
        stages[1] = t0.elapsed();
        // Watched too: the mailbox stage is the one a slow Redis holds longest.
        let s = tokio::select! {
            s = routing.sync_open(app, &key, &reg, instance, page) => s,
            _ = ws.peer_gone(limit) => return Ok(None),
        };
        stages[2] = t0.elapsed();
        s.map(Some)
    }
    .await;
    // The login's slot is held through its Redis stages, not through the replay's later
    // pages: those go at the client's pace, and a slow reader must not hold a slot.
    drop(login);
    if let Ok(None) = started {
        tracing::debug!(
            target: "rcall_server::cluster::login",
            conn_id = reg.conn_id,
            at_ms = now_ms(),
            after_ms = t0.elapsed().as_millis() as u64,
            "cluster login abandoned: the client left"
        );
        routing.login_abandoned();
        // (Closed before the unsubscription waits its turn.)
        drop(ws);
        state
            .hub
            .unregister(app, &reg.user_id, reg.conn_id, Departure::Lost);
        routing.release(reg.conn_id).await;
        if let (Some(rooms), true) = (&state.rooms, rooms_held) {
            rooms
                .release(&state.hub, &key, reg.conn_id, Departure::Lost)
                .await;
        }
        return None;
    }
    let mut pages = 0usize;
    let mut failed = None;
    let mut replayed = 0;
    let started = started.map_err(|e| failed = Some(e)).ok().flatten();
    if let Some((start, first)) = started {
        // Before anything of the connection is written (its `AuthResult` first) or read.
        let origin = Origin {
            app,
            conn_id: reg.conn_id,
            user_id: reg.user_id.clone(),
            device_id: reg.device_id.clone(),
            instance,
        };
        state
            .hub
            .join_result(&origin, &outbox, start.accepted, start.profile.clone());
        // `seen`: the seqs up to which this connection has the user's copies once replayed:
        // what the page reads cover, and what the device has (its cursor in Redis, and its
        // `resume_from` capped at this node's clock): a live copy at or below it that reaches
        // this node later (a resync re-reads the mailbox above what the node has seen of the
        // user, which may be nothing yet) is not delivered again. (With only the cursor in
        // Redis, behind when acks were lost with a node, a resync after a resume elsewhere
        // delivered a device what it had: 38 duplicates in a 100,000-connection run.)
        let (mut cursor, mut seen) = (reg.cursor.max(start.acked), reg.cursor.max(start.acked));
        let mut batch = Vec::new();
        let mut next = Some(first);
        loop {
            pages += 1;
            let read = match next.take() {
                Some(p) => Ok(p),
                None => {
                    routing
                        .sync_page(
                            &key,
                            &reg.user_id,
                            cursor,
                            page,
                            start.history_upto,
                            reg.resume_from,
                        )
                        .await
                }
            };
            let p = match read {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            seen = seen.max(p.last.unwrap_or(0));
            let data = crate::hub::SyncData {
                acked: start.acked,
                messages: p.messages,
                devices: start.devices.clone(),
                more: p.full,
            };
            let page_reg = crate::hub::Registered {
                cursor,
                ..reg.clone()
            };
            let Some(end) = p.last.filter(|_| p.full) else {
                replayed += state.hub.finish_sync_sequenced(app, &page_reg, data, seen);
                break;
            };
            replayed += state.hub.finish_sync(app, &page_reg, data, Some(end));
            cursor = end;
            if !write_replay_page(state, &mut ws, &outbox, &mut batch, app, &reg).await {
                routing.release(reg.conn_id).await;
                if let Some(rooms) = &state.rooms {
                    rooms
                        .release(&state.hub, &key, reg.conn_id, Departure::Lost)
                        .await;
                }
                return None;
            }
        }
    }
    state
        .metrics
        .replay_peak_queue
        .fetch_max(outbox.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if let Some(e) = failed {
        tracing::error!(error = %e, conn_id = reg.conn_id, "cluster: reading the mailbox failed; closing");
        state
            .hub
            .unregister(app, &reg.user_id, reg.conn_id, Departure::Lost);
        routing.release(reg.conn_id).await;
        if let Some(rooms) = &state.rooms {
            rooms
                .release(&state.hub, &key, reg.conn_id, Departure::Lost)
                .await;
        }
        return None;
    }
    tracing::debug!(
        target: "rcall_server::cluster::login",
        conn_id = reg.conn_id,
        at_ms = now_ms(),
        auth_ms = auth.as_millis() as u64,
        hold_ms = stages[0].as_millis() as u64,
        rooms_ms = (stages[1] - stages[0]).as_millis() as u64,
        start_ms = (stages[2] - stages[1]).as_millis() as u64,
        replay_ms = (t0.elapsed() - stages[2]).as_millis() as u64,
        pages,
        total_ms = t0.elapsed().as_millis() as u64,
        "cluster login"
    );
    Some((ws, connected(app, reg, instance, replayed), outbox))
}

/// A registered connection is live: logged, and its identity for the rest of its life.
fn connected(app: AppId, reg: crate::hub::Registered, instance: u64, replayed: usize) -> Origin {
    tracing::info!(
        user_id = &*reg.user_id,
        device_id = &*reg.device_id,
        conn_id = reg.conn_id,
        replayed,
        "connected"
    );
    Origin {
        app,
        conn_id: reg.conn_id,
        user_id: reg.user_id,
        device_id: reg.device_id,
        instance,
    }
}

/// The first frame must be a valid `Authenticate`; on success the connection is registered
/// (syncing) with its `AuthResult` queued. On failure the client got its answer and the
/// connection is closed. In cluster mode a login takes one of the node's login slots first
/// ([`crate::cluster::routing::Routing::begin_login`]), returned with the registration.
async fn authenticate(
    state: &AppState,
    ws: &mut WebSocket,
    guard: Option<&ConnGuard>,
) -> Option<(
    AppId,
    crate::hub::Registered,
    Arc<Outbox>,
    u64,
    Option<crate::cluster::routing::LoginPermit>,
)> {
    // Only a token and a device id before authentication: a few KB.
    let max = pre_auth_max(state);
    let metrics = &state.metrics;
    let first = tokio::select! {
        _ = state.shutdown.cancelled() => {
            send_close(ws, close_code::GOING_AWAY).await;
            return None;
        }
        r = tokio::time::timeout(state.config.auth_timeout, next_frame(ws, max)) => r,
    };
    let (body, code) = match first {
        Err(_elapsed) => {
            metrics.error(error_code::NOT_AUTHENTICATED);
            let err = error_frame(
                error_code::NOT_AUTHENTICATED,
                "no Authenticate frame in time",
            );
            (Body::Error(err), close_code::POLICY)
        }
        // The transport cut a frame past the pre-auth budget: say why.
        Ok(Inbound::Closed(_)) if guard.is_some_and(|g| g.over_budget()) => {
            metrics.error(error_code::FRAME_TOO_LARGE);
            let err = error_frame(
                error_code::FRAME_TOO_LARGE,
                format!("frames before authentication are limited to {max} bytes"),
            );
            (Body::Error(err), close_code::TOO_BIG)
        }
        // (`next_frame` never yields Control or Binary.)
        Ok(Inbound::Closed(_)) | Ok(Inbound::Control) | Ok(Inbound::Binary(_)) => return None,
        Ok(Inbound::Violation(err)) => {
            metrics.error(err.code);
            let code = close_code_for(&err);
            (Body::Error(err), code)
        }
        Ok(Inbound::Frame(ClientFrame {
            body: Some(ClientBody::Authenticate(a)),
        })) => match state.routing.as_ref().map(|r| r.begin_login()) {
            // Busy before any work (the token is not even checked): the client comes back at
            // the turn the node gave it.
            Some(Err(retry_after_ms)) => {
                metrics.error(error_code::SERVER_UNAVAILABLE);
                let busy = busy_refusal(
                    error_code::SERVER_UNAVAILABLE,
                    "server busy: too many logins in progress, retry later",
                    retry_after_ms,
                );
                (busy, close_code::TRY_AGAIN_LATER)
            }
            permit => match admit(state, a).await {
                Ok((app, reg, outbox, instance)) => {
                    if let Some(g) = guard {
                        g.authenticated();
                    }
                    ws.set_max_message(state.config.max_frame_bytes);
                    return Some((app, reg, outbox, instance, permit.and_then(Result::ok)));
                }
                Err(body) => (body, close_code::POLICY),
            },
        },
        Ok(Inbound::Frame(_)) => {
            metrics.error(error_code::NOT_AUTHENTICATED);
            let err = error_frame(
                error_code::NOT_AUTHENTICATED,
                "the first frame must be Authenticate",
            );
            (Body::Error(err), close_code::POLICY)
        }
    };
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, ws.send(encode(body))).await;
    send_close(ws, code).await;
    None
}

/// The name and portrait the Server API registered for the user (`AuthResult.profile`), so
/// its call messages carry them even when the app never calls `registerUserInfo()`. A
/// database error only costs the profile, not the connection.
async fn registered_profile(
    state: &AppState,
    app: AppId,
    user_id: &str,
) -> Option<rtc_core::proto::UserProfile> {
    let key = state.hub.app(app).key.clone();
    let row = match state.store.get_user(&key, user_id).await {
        Ok(row) => row?,
        Err(e) => {
            tracing::error!(error = %e, "reading the user's profile failed");
            return None;
        }
    };
    let some = |s: String| (!s.is_empty()).then_some(s);
    let profile = rtc_core::proto::UserProfile {
        name: some(row.name),
        portrait_uri: some(row.portrait_uri),
        extra: None,
    };
    (profile != rtc_core::proto::UserProfile::default()).then_some(profile)
}

/// Checks an `Authenticate` and registers the connection, or returns the refusal to send.
#[allow(clippy::result_large_err)] // refusals are rare; boxing would only move the cost
async fn admit(
    state: &AppState,
    auth: Authenticate,
) -> Result<(AppId, crate::hub::Registered, Arc<Outbox>, u64), Body> {
    let metrics = &state.metrics;
    let Authenticate {
        token,
        device_id,
        resume_from,
        instance,
    } = auth;
    let now = now_ms();
    let (app, claims) = verify_token(state, &token, now).map_err(|e| {
        tracing::info!(reason = %e, "authentication refused");
        metrics.error(e.imlib_code());
        refusal(e.imlib_code(), e.to_string())
    })?;
    if device_id.chars().count() > MAX_DEVICE_ID_CHARS {
        metrics.error(error_code::INVALID_PARAMETER);
        return Err(refusal(
            error_code::INVALID_PARAMETER,
            format!("device id is longer than {MAX_DEVICE_ID_CHARS} characters"),
        ));
    }
    // What this instance got accepted before a restart (or before memory forgot it), read
    // beside the profile. In cluster mode what the route script accepted from it, on whichever
    // node, is read in the login's join instead, after registration (`Hub::join_result`):
    // a separate read was a round trip of its own, as slow as the join in a login storm.
    let stored = async {
        if instance == 0 || state.routing.is_some() {
            (0, 0)
        } else {
            let key = state.hub.app(app).key.clone();
            match state
                .store
                .accepted_upto(
                    key,
                    claims.u.as_str().into(),
                    device_id.as_str().into(),
                    instance,
                )
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "reading accepted client seqs failed");
                    (0, 0)
                }
            }
        }
    };
    // The profile likewise: in cluster mode it is read in the join, from Redis (a node's SQLite
    // holds only what its own Server API registered).
    let profile = async {
        if state.routing.is_some() {
            None
        } else {
            registered_profile(state, app, &claims.u).await
        }
    };
    let (stored, profile) = tokio::join!(stored, profile);
    let outbox = Arc::new(Outbox::new());
    let auth_ok = AuthResult {
        code: 0,
        user_id: claims.u.clone(),
        message: String::new(),
        ice_servers: ice::ice_servers(&state.config, &claims.u, now),
        accepted_upto: 0,
        profile,
        // SFU mode on a single node (cluster mode keeps the mesh: the call→room table is not
        // shared between nodes yet, docs/sfu.md).
        sfu: state.sfu.is_some(),
        retry_after_ms: 0,
    };
    let reg = state
        .hub
        .register(
            app,
            &claims.u,
            &device_id,
            claims.iat,
            resume_from,
            outbox.clone(),
            auth_ok,
            instance,
            stored,
        )
        .map_err(|e| {
            tracing::info!(user_id = claims.u, reason = %e, "connection refused");
            metrics.error(e.imlib_code());
            // A connection limit answers 31003 without a turn: the SDK's `connect()` resolves
            // it at once instead of retrying it as busy.
            let retry_after_ms = match e {
                crate::hub::AuthRefusal::ShuttingDown => SHUTTING_DOWN_RETRY_MS,
                _ => 0,
            };
            busy_refusal(e.imlib_code(), e.to_string(), retry_after_ms)
        })?;
    Ok((app, reg, outbox, instance))
}

/// The next non-control frame.
async fn next_frame(ws: &mut WebSocket, max: usize) -> Inbound {
    // (Pings and pongs before Authenticate do not count: the auth timeout bounds this phase.)
    loop {
        match classify(ws.next().await, max) {
            Inbound::Control => continue,
            Inbound::Binary(bytes) => {
                return match decode_client_frame(&bytes) {
                    Ok(frame) => Inbound::Frame(frame),
                    Err(err) => Inbound::Violation(err),
                }
            }
            other => return other,
        }
    }
}

/// Per-connection token bucket. Frames over the limit are refused; a connection that keeps
/// sending while refused (more than `burst` frames in debt) is closed.
struct RateLimiter {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    /// The user's shared send rate (the hub's) refused a frame of this connection.
    user_refused: bool,
}

#[derive(Debug, PartialEq)]
enum RateDecision {
    Allow,
    Refuse,
    Close,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
            user_refused: false,
        }
    }

    /// How long this connection stops reading after a refusal: until its own bucket holds a
    /// frame again, or [`USER_THROTTLE`] after the user's shared bucket refused one. Reading
    /// nothing meanwhile lets TCP push back on a flooding client, so a flood costs the server
    /// about one refused frame per pause instead of decoding and refusing every frame it sends
    /// (and the rate limit no longer has to close, which would only turn the flood into a
    /// reconnect storm).
    fn throttle(&mut self) -> Option<Duration> {
        let own =
            (self.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - self.tokens) / self.rate));
        let user = std::mem::take(&mut self.user_refused).then_some(USER_THROTTLE);
        own.max(user).map(|d| d.min(MAX_THROTTLE))
    }

    fn take(&mut self, cost: f64, now: Instant) -> RateDecision {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            RateDecision::Allow
        } else if self.tokens > -self.burst {
            self.tokens -= cost;
            RateDecision::Refuse
        } else {
            RateDecision::Close
        }
    }
}

enum Reply {
    None,
    /// Cluster mode: admitted, to be routed through Redis.
    Route(Box<ClusterSend>),
    Frame(Body),
    /// Confirms what this connection sent so far: held until its store writes are durable.
    Confirm(Body),
    Fatal(ErrorFrame),
}

/// What a batch write ended with.
enum Written {
    /// Everything written and flushed.
    Ok,
    /// Written up to an `ErrorFrame`: send it and close with this code.
    Fatal(ErrorFrame),
    /// The socket failed.
    Failed,
}

/// Writes `batch` (emptying it) with one flush at the end.
async fn write_batch(state: &AppState, ws: &mut WebSocket, batch: &mut Vec<Outgoing>) -> Written {
    let server_time = now_ms();
    let mut result = Written::Ok;
    let mut written = 0;
    for item in batch.iter_mut() {
        match item {
            Outgoing::Frame { body, .. } => {
                if feed_frame(ws, server_time, body).await.is_err() {
                    result = Written::Failed;
                    break;
                }
                written += 1;
            }
            Outgoing::Durable { body, ticket } => {
                if state.store.committed() < *ticket {
                    // What is already fed goes out now; this and what follows once durable.
                    if ws.flush().await.is_err() {
                        result = Written::Failed;
                        break;
                    }
                    state.store.wait_committed(*ticket).await;
                }
                if feed_frame(ws, now_ms(), body).await.is_err() {
                    result = Written::Failed;
                    break;
                }
                written += 1;
            }
            Outgoing::Ping => {
                if ws.feed(Message::Ping(Bytes::new())).await.is_err() {
                    result = Written::Failed;
                    break;
                }
                written += 1;
            }
            Outgoing::Fatal(err) => {
                result = Written::Fatal(std::mem::take(err));
                break;
            }
        }
    }
    if !matches!(result, Written::Failed) && ws.flush().await.is_err() {
        result = Written::Failed;
    }
    // Delivery latency of the messages written (accepted → flushed to the socket).
    let mut now = None;
    let mut delivered = 0;
    for item in &batch[..written] {
        if let Outgoing::Frame {
            accepted: Some(a), ..
        } = item
        {
            let now = *now.get_or_insert_with(crate::clock::mono);
            state.metrics.observe_delivery(now.saturating_sub(*a));
            delivered += 1;
        }
    }
    if delivered > 0 {
        state
            .metrics
            .deliveries
            .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
    }
    batch.clear();
    if batch.capacity() > 64 {
        *batch = Vec::new();
    }
    result
}

/// Sends an `ErrorFrame`, then closes.
async fn send_fatal(ws: &mut WebSocket, err: ErrorFrame) {
    let code = close_code_for(&err);
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, ws.send(encode(Body::Error(err)))).await;
    send_close(ws, code).await;
}

/// Writes a batch unless the outbox gets aborted meanwhile (a client that does not read).
async fn write_or_abort(
    state: &AppState,
    ws: &mut WebSocket,
    outbox: &Outbox,
    batch: &mut Vec<Outgoing>,
    closed: bool,
) -> Written {
    let mut write = std::pin::pin!(write_batch(state, ws, batch));
    std::future::poll_fn(|cx| {
        if !closed && outbox.poll_aborted(cx).is_ready() {
            return Poll::Ready(Written::Failed);
        }
        write.as_mut().poll(cx)
    })
    .await
}

/// The authenticated connection: write what is queued, then wait for a client frame or more
/// queued items, until the connection ends. Shutdown reaches it through the outbox (closed by
/// the hub, or killed when the drain takes too long).
// Not an `async fn`: those keep a second copy of their arguments in the future (rustc #62958),
// and this future lives as long as the connection.
#[allow(clippy::manual_async_fn)]
fn serve_connection(
    state: Arc<AppState>,
    mut ws: WebSocket,
    outbox: Arc<Outbox>,
    origin: Origin,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let sfu = state.sfu.clone();
        if let Some(sfu) = &sfu {
            let key = state.hub.app(origin.app).key.clone();
            let (user, device) = (&origin.user_id, &origin.device_id);
            sfu.connected(&key, user, device, origin.conn_id, outbox.clone());
            if sfu.is_cluster() {
                state.hub.notify_sfu_device(origin.app, user, device);
            }
        }
        let departure = serve_loop(&state, &mut ws, &outbox, &origin).await;
        if let Some(sfu) = &sfu {
            let key = state.hub.app(origin.app).key.clone();
            sfu.disconnected(&key, &origin.user_id, &origin.device_id, origin.conn_id);
        }
        state.liveness.map().remove(&origin.conn_id);
        state
            .hub
            .unregister(origin.app, &origin.user_id, origin.conn_id, departure);
        if let Some(routing) = &state.routing {
            routing.release(origin.conn_id).await;
        }
        if let Some(rooms) = &state.rooms {
            let key = state.hub.app(origin.app).key.clone();
            rooms
                .release(&state.hub, &key, origin.conn_id, departure)
                .await;
        }
        tracing::info!(
            user_id = &*origin.user_id,
            conn_id = origin.conn_id,
            "disconnected"
        );
    }
}

/// Serves until the connection ends; returns how it ended.
async fn serve_loop(
    state: &AppState,
    ws: &mut WebSocket,
    outbox: &Outbox,
    origin: &Origin,
) -> Departure {
    let max = state.config.max_frame_bytes;
    let mut limiter = RateLimiter::new(
        state.config.rate_limit_per_sec,
        state.config.rate_limit_burst,
    );
    let mut batch: Vec<Outgoing> = Vec::new();
    // Highest store ticket of the messages this connection got accepted: its confirmations
    // wait for it.
    let mut ticket = 0u64;
    // No more reading: the outbox is closed; flush it and close the socket.
    let mut draining = false;
    let mut departure = Departure::Lost;
    // Wake-ups that found frames to write without looking at the socket.
    let mut reads_skipped = 0u8;
    // Set after a rate refusal: the socket is not read until it fires (see `throttle`).
    let mut paused: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let stop_reading = |draining: &mut bool, departure: Departure| {
        *draining = true;
        // Leave the routing table first so nothing new is queued, then drain.
        state
            .hub
            .unregister(origin.app, &origin.user_id, origin.conn_id, departure);
        outbox.close();
    };
    loop {
        let mut closed = outbox.take(&mut batch);
        if !batch.is_empty() {
            // Let every task that is ready run first (they may queue more for this
            // connection): under load one write then carries many frames; when idle this
            // returns at once.
            tokio::task::yield_now().await;
            closed = outbox.take(&mut batch);
            // Boxed: only connections that are writing hold this state.
            match Box::pin(write_or_abort(state, ws, outbox, &mut batch, closed)).await {
                // On to the wait below, which reads when writes keep coming.
                Written::Ok => outbox.recycle(&mut batch),
                Written::Failed => {
                    // An abort during a stuck write still tells the client why, briefly.
                    batch.clear();
                    if outbox.take(&mut batch) {
                        if let Some(Outgoing::Fatal(err)) = batch.pop() {
                            Box::pin(send_fatal(ws, err)).await;
                        }
                    }
                    return departure;
                }
                Written::Fatal(err) => {
                    Box::pin(send_fatal(ws, err)).await;
                    return departure;
                }
            }
        }
        if closed && outbox.is_aborted() {
            // Killed (dead peer, or the shutdown gave up): no close handshake.
            return departure;
        }
        if closed {
            let code = if state.shutdown.is_cancelled() {
                close_code::GOING_AWAY
            } else {
                close_code::NORMAL
            };
            Box::pin(send_close(ws, code)).await;
            return departure;
        }
        // Queued items first, then the client's next frame; but a connection that always has
        // something queued still reads now and then (its acks, and its pongs, without which it
        // would be taken for dead).
        let event = std::future::poll_fn(|cx| {
            if let Some(p) = paused.as_mut() {
                if p.as_mut().poll(cx).is_ready() {
                    paused = None;
                } else if outbox.poll_pending(cx).is_ready() {
                    return Poll::Ready(None);
                } else {
                    // Paused, but the client's pings are answered now (a liveness check
                    // must not wait for the paced frames before it).
                    ws.poll_buffered_pings(cx);
                    return Poll::Pending;
                }
            }
            if !draining && reads_skipped >= MAX_WRITES_WITHOUT_READ {
                if let Poll::Ready(msg) = ws.poll_next_unpin(cx) {
                    reads_skipped = 0;
                    return Poll::Ready(Some(msg));
                }
                reads_skipped = 0;
            }
            if outbox.poll_pending(cx).is_ready() {
                reads_skipped = reads_skipped.saturating_add(1);
                return Poll::Ready(None);
            }
            if draining {
                return Poll::Pending;
            }
            reads_skipped = 0;
            ws.poll_next_unpin(cx).map(Some)
        })
        .await;
        match event {
            None => {}
            Some(msg) => {
                // Handle this frame and every one already buffered (up to a bound), so a burst
                // gets its answers in one write.
                let mut msg = msg;
                let mut handled = 0;
                loop {
                    outbox.heard();
                    match on_inbound(state, origin, outbox, msg, max, &mut limiter, &mut ticket) {
                        Ok(None) => {}
                        // Awaited here: one frame at a time keeps this connection's
                        // `client_seq` order all the way to Redis.
                        Ok(Some(send)) => {
                            let routed = cluster_send(state, origin, outbox, *send);
                            if let Err(d) = Box::pin(keeping_alive(
                                state,
                                ws,
                                outbox,
                                origin,
                                &mut ticket,
                                routed,
                            ))
                            .await
                            {
                                departure = d;
                                stop_reading(&mut draining, d);
                                break;
                            }
                        }
                        Err(d) => {
                            departure = d;
                            stop_reading(&mut draining, d);
                            break;
                        }
                    }
                    handled += 1;
                    if let Some(wait) = limiter.throttle() {
                        paused = Some(Box::pin(tokio::time::sleep(wait)));
                        break;
                    }
                    if handled == MAX_FRAMES_PER_WAKE {
                        break;
                    }
                    // Nothing to write yet: the wait above reads the next frame (buffered or
                    // not) with the same poll, so looking ahead here would only add a poll of
                    // the socket that finds nothing (most frames: acks, and messages whose
                    // answer is their delivery). Looking ahead pays only when a write follows,
                    // which then carries the answers to a whole burst.
                    if outbox.is_empty() {
                        break;
                    }
                    // Only what is already buffered; the select above waits for the rest.
                    match ws.next().now_or_never() {
                        Some(m) => msg = m,
                        None => break,
                    }
                }
            }
        }
    }
}

/// How long a connection stops reading after the user's shared send rate refused its frame
/// (the hub does not say when its bucket refills; the user's connections share it).
const USER_THROTTLE: Duration = Duration::from_millis(100);

/// The longest read pause; well under the liveness deadline (buffered pings are answered
/// during a pause, but a client's app-level `Ping` is a data frame and waits its turn).
const MAX_THROTTLE: Duration = Duration::from_secs(1);

/// Writes in a row before the socket is read even though more is queued.
const MAX_WRITES_WITHOUT_READ: u8 = 16;

/// Frames handled per wake-up before queued replies are written.
const MAX_FRAMES_PER_WAKE: usize = 32;

/// Handles one inbound WebSocket message; `Err` when the connection must stop reading,
/// `Ok(Some)` when a message admitted in cluster mode is to be routed through Redis.
fn on_inbound(
    state: &AppState,
    origin: &Origin,
    outbox: &Outbox,
    msg: Option<Result<Message, socket::Error>>,
    max: usize,
    limiter: &mut RateLimiter,
    ticket: &mut u64,
) -> Result<Option<Box<ClusterSend>>, Departure> {
    let reply = match classify(msg, max) {
        Inbound::Closed(d) => return Err(d),
        Inbound::Control => return Ok(None),
        Inbound::Violation(err) => Reply::Fatal(err),
        Inbound::Binary(bytes) => handle_binary(state, origin, outbox, &bytes, limiter, ticket),
        Inbound::Frame(frame) => handle_frame(state, origin, outbox, frame, limiter, ticket),
    };
    let item = match reply {
        Reply::None => return Ok(None),
        Reply::Route(send) => return Ok(Some(send)),
        Reply::Frame(body) => Outgoing::Frame {
            body: encode_body(&body),
            accepted: None,
        },
        Reply::Confirm(body) => {
            Outgoing::confirming(encode_body(&body), *ticket, state.store.committed())
        }
        Reply::Fatal(err) => {
            tracing::info!(
                conn_id = origin.conn_id,
                code = err.code,
                "protocol violation, closing"
            );
            state.metrics.error(err.code);
            let _ = outbox.push_own(Outgoing::Fatal(err), false);
            return Err(Departure::Lost);
        }
    };
    push_own(state, outbox, item);
    Ok(None)
}

fn push_own(state: &AppState, outbox: &Outbox, item: Outgoing) {
    match outbox.push_own(item, true) {
        Ok(()) | Err(PushError::Closed) => {}
        Err(PushError::Full) => {
            state.metrics.error(error_code::SLOW_CONSUMER);
            outbox.abort_with(error_frame(
                error_code::SLOW_CONSUMER,
                "too many unread frames; reconnect and resume",
            ));
        }
    }
}

/// A message admitted in cluster mode, for the route script.
struct ClusterSend {
    msg: rtc_core::proto::SendMessage,
    recipients: Vec<String>,
    reply_to: Option<u32>,
    /// Push to the recipients the route script finds on no node.
    push: bool,
    /// A call message's encoded rooms event (`cluster::rooms`).
    rooms_event: Option<Vec<u8>>,
    /// Refused `NOT_IN_CALL` by this node's rooms replica: admitted again (with these options)
    /// once the replica caught up ([`recheck`]); nothing else is set then.
    recheck: Option<RouteOptions>,
}

/// First pause before routing a message again after a Redis error; doubles up to
/// [`ROUTE_RETRY_MAX`].
const ROUTE_RETRY_FIRST: Duration = Duration::from_millis(50);
const ROUTE_RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a message is retried before its connection is closed while Redis does not answer
/// this node at all (its beats included): an outage, not a backlog. The default of
/// [`crate::Config::route_retry_for`].
pub const ROUTE_RETRY_FOR: Duration = Duration::from_secs(8);
/// How long a message is retried while Redis is merely slow (the node's beats, on their own
/// connection, are answered; the main connection's commands time out behind a backlog): the
/// connection is kept alive meanwhile ([`ROUTE_KEEPALIVE`]). Closing it after 8 s made ~10,000
/// clients reconnect (and resend) into the backlog of a node's kill at 100,000 connections.
const ROUTE_RETRY_SLOW_FOR: Duration = Duration::from_secs(60);
/// While a message waits for Redis, the connection writes what is queued for it and a `Pong`
/// (as for a client `Ping`) this often: it reads nothing meanwhile, so the client's pings go
/// unanswered, and the SDK gives a connection up after 12 s of silence. The default of
/// [`crate::Config::route_keepalive`].
pub const ROUTE_KEEPALIVE: Duration = Duration::from_secs(3);

/// Routes an admitted message through the shared route script. Its `SendResult` comes back
/// on the sender's user channel (see `cluster::routing`).
///
/// A Redis error is retried for [`crate::Config::route_retry_for`]; one that lasts closes the connection (`ErrorFrame` `SERVER_UNAVAILABLE`, `Err`: read no
/// further frame) instead of refusing the message: the error does not say whether the script
/// ran (a timed-out script may still run), so "refused" could be a lie about a message its
/// recipients got; and routing a later frame of this connection would put it ahead of this one
/// (and make this one's resend look like a duplicate). The SDK reconnects — to another node if
/// it has several — and resends everything unconfirmed in order; what did run is recognised as
/// a duplicate by its `client_seq`.
async fn cluster_send(
    state: &AppState,
    origin: &Origin,
    outbox: &Outbox,
    send: ClusterSend,
) -> Result<(), Departure> {
    use crate::cluster::mailbox::{OwnCopy, Recipient, RouteRequest, Sender};
    let Some(routing) = &state.routing else {
        return Ok(());
    };
    let _in_flight = Gauge::new(&ROUTING);
    let send = match send.recheck {
        Some(opts) => match recheck(state, origin, outbox, send.msg, opts).await {
            Some(send) => send,
            None => return Ok(()),
        },
        None => send,
    };
    let ClusterSend {
        mut msg,
        recipients,
        reply_to,
        push,
        rooms_event,
        ..
    } = send;
    let push = msg.push.take().filter(|_| push);
    let key = state.hub.app(origin.app).key.clone();
    // A call message may make its device a member: the rooms hear where it is first.
    if let (Some(rooms), Some(_)) = (&state.rooms, &rooms_event) {
        rooms
            .announce_device(origin.app, &key, &origin.user_id, &origin.device_id, None)
            .await;
    }
    let client_seq = msg.client_seq;
    let private = msg.conversation_type == rtc_core::proto::conversation_type::PRIVATE;
    let message = rtc_core::proto::Delivered {
        conversation_type: msg.conversation_type,
        // What each recipient sees as the conversation's target.
        target_id: if private {
            origin.user_id.to_string()
        } else {
            msg.target_id.clone()
        },
        channel_id: msg.channel_id,
        message_type: msg.message_type,
        content: msg.content,
        ..Default::default()
    };
    let req = RouteRequest {
        app: &key,
        from: Sender {
            user: &origin.user_id,
            device: &origin.device_id,
            instance: origin.instance,
            conn: routing.conn_ref(origin.conn_id),
        },
        client_seq,
        request_id: reply_to,
        message,
        recipients: recipients
            .into_iter()
            .map(|user| Recipient {
                user,
                offline: false,
            })
            .collect(),
        own_copy: Some(OwnCopy {
            target_id: msg.target_id,
            offline: false,
            all_devices: false,
        }),
        floor_us: 0,
        presence: true,
        rooms_event,
    };
    // A Redis error is retried here (the script is idempotent by `client_seq`: what did run
    // comes back as a duplicate), reading nothing else from this connection meanwhile, so a
    // slow or restarting Redis costs its clients a delay, not a reconnect storm.
    let started = Instant::now();
    let mut backoff = ROUTE_RETRY_FIRST;
    let mut epoch = routing.epoch();
    let mut outcome = routing.route(&req).await;
    // A resend's duplicate is of a run of ours whose reply was lost: its push is still to do.
    let mut resent = false;
    while let Err(e) = &outcome {
        let tracked = client_seq != 0 && origin.instance != 0;
        let slow = e.is_timeout() && routing.presence.redis_answering();
        let window = if slow {
            ROUTE_RETRY_SLOW_FOR
        } else {
            state.config.route_retry_for
        };
        if !tracked || started.elapsed() + backoff > window || state.shutdown.is_cancelled() {
            break;
        }
        tracing::debug!(conn_id = origin.conn_id, error = %e, "cluster: routing failed; retrying");
        if e.is_timeout() {
            // The script may still be queued in Redis: sent again now, a second copy would
            // queue behind it (every round more work for an overloaded Redis). A `PING` on the
            // same connection answers once everything sent before it ran; the resend is then
            // a cheap duplicate (or routes it, if it never ran).
            if let Err(e) = routing
                .mailboxes
                .bus()
                .ping(crate::cluster::Lane::Main)
                .await
            {
                outcome = Err(e);
                continue;
            }
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(ROUTE_RETRY_MAX);
        }
        epoch = routing.epoch();
        resent = true;
        outcome = routing.route(&req).await;
    }
    match outcome {
        Ok(routed) => {
            state
                .metrics
                .messages_routed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.hub.note_accepted(origin, client_seq);
            if let Some(push) = &push {
                cluster_push(state, origin.app, &req, &routed, resent, push);
            }
            let Some(request_id) = reply_to else {
                return Ok(());
            };
            let (sent_time, message_uid, own_seq) = match routed {
                crate::cluster::mailbox::Routed::Accepted {
                    sent_time,
                    message_uid,
                    own_seq,
                    ..
                } => (sent_time, message_uid, own_seq.unwrap_or(0)),
                crate::cluster::mailbox::Routed::Duplicate { sent_time, .. } => {
                    (sent_time, String::new(), 0)
                }
            };
            let result = SendResult {
                request_id,
                code: 0,
                sent_time,
                message_uid,
            };
            // Normally the reply marker answers; after a resync it may have been lost.
            if let Some(result) = routing.routed(
                origin.app,
                &origin.user_id,
                origin.conn_id,
                epoch,
                result,
                own_seq,
            ) {
                let body = encode_body(&Body::SendResult(result));
                push_own(state, outbox, Outgoing::frame(body));
            }
        }
        Err(e) => {
            tracing::warn!(conn_id = origin.conn_id, error = %e, "cluster: routing failed; closing");
            state.metrics.error(error_code::SERVER_UNAVAILABLE);
            outbox.abort_with(error_frame(
                error_code::SERVER_UNAVAILABLE,
                "the cluster's Redis is unreachable; reconnect and resend",
            ));
            return Err(Departure::Lost);
        }
    }
    Ok(())
}

/// Awaits `routed` (a message on its way through Redis, this connection reading nothing
/// meanwhile), writing every [`crate::Config::route_keepalive`] what is queued for the connection and a
/// `Pong` with what is accepted so far, so that neither the client nor this server's liveness
/// sweep takes a connection waiting on a slow Redis for dead. A socket that fails meanwhile
/// ends the connection once `routed` is done.
async fn keeping_alive(
    state: &AppState,
    ws: &mut WebSocket,
    outbox: &Outbox,
    origin: &Origin,
    ticket: &mut u64,
    routed: impl std::future::Future<Output = Result<(), Departure>>,
) -> Result<(), Departure> {
    let mut routed = std::pin::pin!(routed);
    let mut batch = Vec::new();
    let mut broken = false;
    loop {
        tokio::select! {
            r = &mut routed => return if broken { r.and(Err(Departure::Lost)) } else { r },
            _ = tokio::time::sleep(state.config.route_keepalive), if !broken => {}
        }
        outbox.heard();
        let (accepted_upto, t) = state.hub.accepted_upto(origin);
        *ticket = (*ticket).max(t);
        let pong = Body::Pong(Pong {
            nonce: 0,
            accepted_upto,
        });
        push_own(
            state,
            outbox,
            Outgoing::confirming(encode_body(&pong), *ticket, state.store.committed()),
        );
        let closed = outbox.take(&mut batch);
        match write_or_abort(state, ws, outbox, &mut batch, closed).await {
            Written::Ok => outbox.recycle(&mut batch),
            Written::Failed => broken = true,
            Written::Fatal(err) => {
                send_fatal(ws, err).await;
                broken = true;
            }
        }
    }
}

/// The routing node pushes a routed call message to the recipients the route script found on
/// no node (once: the script ran once, and only here; when our resend finds it already ran,
/// the run's reply was lost and the push is made from the duplicate's answer).
fn cluster_push(
    state: &AppState,
    app: AppId,
    req: &crate::cluster::mailbox::RouteRequest<'_>,
    routed: &crate::cluster::mailbox::Routed,
    resent: bool,
    push: &rtc_core::proto::PushConfig,
) {
    use crate::cluster::mailbox::Routed;
    let (sent_time, message_uid, offline) = match routed {
        Routed::Accepted {
            sent_time,
            message_uid,
            offline,
            ..
        } => (sent_time, message_uid, offline),
        Routed::Duplicate {
            sent_time,
            message_uid,
            offline,
            ..
        } if resent => (sent_time, message_uid, offline),
        Routed::Duplicate { .. } => return,
    };
    let m = rtc_core::proto::Delivered {
        message_uid: message_uid.clone(),
        target_id: req
            .own_copy
            .as_ref()
            .map_or_else(|| req.message.target_id.clone(), |o| o.target_id.clone()),
        sent_time: *sent_time,
        ..req.message.clone()
    };
    state
        .hub
        .push_offline(app, req.from.user, &m, push, offline);
}

/// A call message this node's rooms replica refused `NOT_IN_CALL`, admitted again once the
/// replica applied every rooms event numbered so far: what made the sender a participant (the
/// invite whose delivery it answers) may have reached it before its event reached the replica.
/// `None` when it is answered here (refused again, or a duplicate).
async fn recheck(
    state: &AppState,
    origin: &Origin,
    outbox: &Outbox,
    msg: rtc_core::proto::SendMessage,
    opts: RouteOptions,
) -> Option<ClusterSend> {
    if let Some(rooms) = &state.rooms {
        let key = state.hub.app(origin.app).key.clone();
        if let Err(e) = rooms.caught_up(origin.app, &key).await {
            tracing::warn!(error = %e, "cluster: waiting for the rooms replica failed");
        }
    }
    let request_id = msg.request_id;
    let result = match state.hub.admit(origin, &SendRef::of(&msg), opts) {
        Ok(crate::hub::Admitted::Route {
            recipients,
            reply_to,
            push,
            rooms_event,
        }) => {
            return Some(ClusterSend {
                msg,
                recipients,
                reply_to,
                push,
                rooms_event,
                recheck: None,
            })
        }
        Ok(crate::hub::Admitted::Duplicate(acc)) => {
            if msg.no_receipt || acc.replied {
                return None;
            }
            SendResult {
                request_id,
                code: 0,
                sent_time: acc.sent_time,
                message_uid: acc.message_uid,
            }
        }
        Err(e) => {
            tracing::debug!(conn_id = origin.conn_id, error = %e, "send refused");
            state.metrics.error(e.imlib_code());
            SendResult {
                request_id,
                code: e.imlib_code(),
                sent_time: 0,
                message_uid: String::new(),
            }
        }
    };
    push_own(
        state,
        outbox,
        Outgoing::frame(encode_body(&Body::SendResult(result))),
    );
    None
}

/// A send the core refused: counted, and answered with its code (nothing was delivered).
fn refused(
    state: &AppState,
    origin: &Origin,
    limiter: &mut RateLimiter,
    request_id: u32,
    e: &RouteError,
) -> Reply {
    tracing::debug!(conn_id = origin.conn_id, error = %e, "send refused");
    limiter.user_refused |= matches!(e, RouteError::TooFast);
    state.metrics.error(e.imlib_code());
    Reply::Frame(Body::SendResult(SendResult {
        request_id,
        code: e.imlib_code(),
        sent_time: 0,
        message_uid: String::new(),
    }))
}

/// Handles one authenticated binary message. An `Ack`, and a plain `Send` on a single node,
/// are read in place ([`decode_ack_frame`], [`SendRef::decode_frame`]: nothing copied or
/// allocated); everything else through prost.
fn handle_binary(
    state: &AppState,
    origin: &Origin,
    outbox: &Outbox,
    bytes: &[u8],
    limiter: &mut RateLimiter,
    ticket: &mut u64,
) -> Reply {
    if let Some(seq) = decode_ack_frame(bytes) {
        return match spend(state, limiter, ACK_COST) {
            Spent::Allowed => ack_here(state, origin, seq),
            Spent::Refused => Reply::None,
            Spent::Closed => rate_closed(),
        };
    }
    if state.routing.is_none() {
        if let Some(msg) = SendRef::decode_frame(bytes) {
            return match spend(state, limiter, 1.0) {
                Spent::Allowed => send_here(state, origin, limiter, &msg, ticket),
                Spent::Refused => send_too_fast(msg.request_id),
                Spent::Closed => rate_closed(),
            };
        }
    }
    match decode_client_frame(bytes) {
        Ok(frame) => handle_frame(state, origin, outbox, frame, limiter, ticket),
        Err(err) => Reply::Fatal(err),
    }
}

fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, ErrorFrame> {
    ClientFrame::from_bytes(bytes).map_err(|e| {
        error_frame(
            error_code::MALFORMED_FRAME,
            format!("frame does not decode as ClientFrame: {e}"),
        )
    })
}

/// Acks are cumulative and cheap; they still count a little so they cannot flood.
const ACK_COST: f64 = 0.1;

fn ack_here(state: &AppState, origin: &Origin, seq: u64) -> Reply {
    state.hub.ack(origin, seq);
    if let Some(routing) = &state.routing {
        // The device's cursor in Redis (where its next connection, on any node,
        // replays from); cumulative, so acks applied out of order are harmless.
        let key = state.hub.app(origin.app).key.clone();
        routing.ack(origin.app, key, &origin.user_id, &origin.device_id, seq);
    }
    Reply::None
}

/// What the connection's rate limit said about one frame.
enum Spent {
    Allowed,
    /// Over the limit (counted): the frame is answered with `SEND_TOO_FAST` if it asks for an
    /// answer, else dropped.
    Refused,
    /// Over it repeatedly: the connection closes ([`rate_closed`]).
    Closed,
}

fn spend(state: &AppState, limiter: &mut RateLimiter, cost: f64) -> Spent {
    match limiter.take(cost, Instant::now()) {
        RateDecision::Allow => Spent::Allowed,
        RateDecision::Refuse => {
            state.metrics.error(error_code::SEND_TOO_FAST);
            Spent::Refused
        }
        RateDecision::Close => Spent::Closed,
    }
}

fn rate_closed() -> Reply {
    Reply::Fatal(error_frame(
        error_code::RATE_LIMITED,
        "rate limit exceeded repeatedly",
    ))
}

fn send_too_fast(request_id: u32) -> Reply {
    Reply::Frame(Body::SendResult(SendResult {
        request_id,
        code: error_code::SEND_TOO_FAST,
        sent_time: 0,
        message_uid: String::new(),
    }))
}

/// How a client's own `Send` is routed: answered with a `SendResult` under its request id,
/// ordered after what the connection already sent (`ticket`); `shared_mailboxes` in cluster mode.
fn replying(request_id: u32, ticket: u64, shared_mailboxes: bool) -> RouteOptions {
    RouteOptions {
        reply_to: Some(request_id),
        conn_ticket: ticket,
        want_push: false,
        shared_mailboxes,
    }
}

/// Routes a message on a single node (no Redis).
fn send_here(
    state: &AppState,
    origin: &Origin,
    limiter: &mut RateLimiter,
    msg: &SendRef<'_>,
    ticket: &mut u64,
) -> Reply {
    let request_id = msg.request_id;
    // The core queues the `SendResult` itself, in the same critical section as the
    // fan-out: a reply that another connection routes back once it has the message
    // cannot reach this sender before its own confirmation.
    match state
        .hub
        .route(origin, msg, replying(request_id, *ticket, false))
    {
        Ok(acc) => {
            *ticket = (*ticket).max(acc.ticket);
            accepted(request_id, msg.no_receipt, acc)
        }
        Err(e) => refused(state, origin, limiter, request_id, &e),
    }
}

/// The sender's confirmation of an accepted message: none when it asked for no receipt or the
/// core already queued it (behind nothing the message caused).
fn accepted(request_id: u32, no_receipt: bool, acc: crate::hub::Accepted) -> Reply {
    if no_receipt || acc.replied {
        return Reply::None;
    }
    Reply::Confirm(Body::SendResult(SendResult {
        request_id,
        code: 0,
        sent_time: acc.sent_time,
        message_uid: acc.message_uid,
    }))
}

/// Handles one authenticated frame.
fn handle_frame(
    state: &AppState,
    origin: &Origin,
    outbox: &Outbox,
    frame: ClientFrame,
    limiter: &mut RateLimiter,
    ticket: &mut u64,
) -> Reply {
    let Some(body) = frame.body else {
        return Reply::None;
    };
    let cost = if matches!(body, ClientBody::Ack(_)) {
        ACK_COST
    } else {
        1.0
    };
    match spend(state, limiter, cost) {
        Spent::Allowed => {}
        Spent::Refused => {
            return match body {
                ClientBody::Send(m) => send_too_fast(m.request_id),
                ClientBody::GetJoinedUserInfo(q) => {
                    Reply::Frame(Body::JoinedUserInfo(JoinedUserInfo {
                        request_id: q.request_id,
                        code: error_code::SEND_TOO_FAST,
                        devices: Vec::new(),
                    }))
                }
                _ => Reply::None,
            };
        }
        Spent::Closed => return rate_closed(),
    }
    let sfu = state.sfu.as_ref();
    match body {
        ClientBody::Send(msg) if state.routing.is_some() => {
            let request_id = msg.request_id;
            let opts = replying(request_id, *ticket, true);
            match state.hub.admit(origin, &SendRef::of(&msg), opts) {
                // Answered by the core when its connection is registered (as `route`).
                Ok(crate::hub::Admitted::Duplicate(acc)) => {
                    accepted(request_id, msg.no_receipt, *acc)
                }
                Ok(crate::hub::Admitted::Route {
                    recipients,
                    reply_to,
                    push,
                    rooms_event,
                }) => Reply::Route(Box::new(ClusterSend {
                    msg,
                    recipients,
                    reply_to,
                    push,
                    rooms_event,
                    recheck: None,
                })),
                Err(RouteError::NotInCall) if state.rooms.is_some() => {
                    Reply::Route(Box::new(ClusterSend {
                        msg,
                        recipients: Vec::new(),
                        reply_to: None,
                        push: false,
                        rooms_event: None,
                        recheck: Some(opts),
                    }))
                }
                Err(e) => refused(state, origin, limiter, request_id, &e),
            }
        }
        ClientBody::Send(msg) => send_here(state, origin, limiter, &SendRef::of(&msg), ticket),
        ClientBody::Ping(p) => {
            outbox.app_pinged();
            let (accepted_upto, t) = state.hub.accepted_upto(origin);
            *ticket = (*ticket).max(t);
            Reply::Confirm(Body::Pong(Pong {
                nonce: p.nonce,
                accepted_upto,
            }))
        }
        ClientBody::Ack(a) => ack_here(state, origin, a.seq),
        ClientBody::GetIceServers(_) => Reply::Frame(Body::IceServers(IceServers {
            ice_servers: ice::ice_servers(&state.config, &origin.user_id, now_ms()),
        })),
        ClientBody::GetJoinedUserInfo(q) => {
            let (code, devices) = if q.user_id.is_empty() {
                (error_code::INVALID_PARAMETER, Vec::new())
            } else {
                let hub = &state.hub;
                (
                    0,
                    hub.joined_user_info(origin.app, &origin.user_id, &q.user_id),
                )
            };
            Reply::Frame(Body::JoinedUserInfo(JoinedUserInfo {
                request_id: q.request_id,
                code,
                devices,
            }))
        }
        ClientBody::Authenticate(_) => {
            state.metrics.error(error_code::CONNECTION_EXIST);
            Reply::Frame(Body::AuthResult(AuthResult {
                code: error_code::CONNECTION_EXIST,
                user_id: origin.user_id.to_string(),
                message: "already authenticated".into(),
                ice_servers: Vec::new(),
                accepted_upto: 0,
                profile: None,
                sfu: false,
                retry_after_ms: 0,
            }))
        }
        ClientBody::SfuPublish(r) if sfu.is_none() => {
            sfu_off(state, r.request_id, r.call_id, sfu_pc::PUBLISHER)
        }
        ClientBody::SfuSubscribe(r) if sfu.is_none() => {
            sfu_off(state, r.request_id, r.call_id, sfu_pc::SUBSCRIBER)
        }
        // Without SFU mode there is nothing to answer, trickle or re-layer.
        ClientBody::SfuAnswer(_) | ClientBody::SfuTrickle(_) | ClientBody::SfuLayers(_)
            if sfu.is_none() =>
        {
            Reply::None
        }
        ClientBody::SfuPublish(r) => sfu_submit(state, origin, outbox, Request::Publish(r)),
        ClientBody::SfuSubscribe(r) => sfu_submit(state, origin, outbox, Request::Subscribe(r)),
        ClientBody::SfuAnswer(r) => sfu_submit(state, origin, outbox, Request::Answer(r)),
        ClientBody::SfuTrickle(r) => sfu_submit(state, origin, outbox, Request::Trickle(r)),
        ClientBody::SfuLayers(r) => sfu_submit(state, origin, outbox, Request::Layers(r)),
    }
}

/// Hands an SFU request to the relay (answered asynchronously, after Janus answers).
fn sfu_submit(state: &AppState, origin: &Origin, outbox: &Outbox, req: Request) -> Reply {
    if let Some(sfu) = &state.sfu {
        let from = crate::sfu::relay::Requester {
            app: state.hub.app(origin.app).key.to_string(),
            user: origin.user_id.to_string(),
            device: origin.device_id.to_string(),
            conn: origin.conn_id,
        };
        sfu.submit(from, outbox, req);
    }
    Reply::None
}

/// The answer to an SFU request on a server without SFU mode: the SDK fires
/// `onTrackPublishFail` / `onTrackSubscribeFail` rather than waiting for media.
fn sfu_off(_state: &AppState, request_id: u32, call_id: String, pc: u32) -> Reply {
    let reason = "SFU mode is off on this server (it has no --janus)";
    Reply::Frame(Body::SfuFailed(SfuFailed {
        request_id,
        call_id,
        pc,
        code: error_code::INVALID_PARAMETER,
        reason: reason.into(),
        answer: false,
    }))
}

/// Fuzzing support (`fuzz/`, target `server_frames`): an authenticated connection driven
/// without a socket, through the same `admit` → replay → `on_inbound` path as a real one. Not
/// part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    pub struct Session {
        origin: Origin,
        outbox: Arc<Outbox>,
        limiter: RateLimiter,
        ticket: u64,
        open: bool,
    }

    impl Session {
        /// Authenticates like a WebSocket's first `Authenticate`; `None` when refused.
        pub async fn open(
            state: &AppState,
            token: &str,
            device_id: &str,
            instance: u64,
        ) -> Option<Session> {
            let auth = Authenticate {
                token: token.to_owned(),
                device_id: device_id.to_owned(),
                resume_from: u64::MAX,
                instance,
            };
            let (app, reg, outbox, instance) = admit(state, auth).await.ok()?;
            let key = state.hub.app(app).key.clone();
            let data = state
                .store
                .sync_data(
                    key,
                    reg.user_id.clone(),
                    reg.device_id.clone(),
                    reg.cursor,
                    now_ms(),
                )
                .await
                .unwrap_or_default();
            state.hub.finish_sync(app, &reg, data, None);
            let origin = Origin {
                app,
                conn_id: reg.conn_id,
                user_id: reg.user_id,
                device_id: reg.device_id,
                instance,
            };
            let limiter = RateLimiter::new(
                state.config.rate_limit_per_sec,
                state.config.rate_limit_burst,
            );
            Some(Session {
                origin,
                outbox,
                limiter,
                ticket: 0,
                open: true,
            })
        }

        /// Handles `bytes` as one binary WebSocket message; false once the connection would
        /// close (a violation), after which frames are ignored.
        pub fn frame(&mut self, state: &AppState, bytes: Vec<u8>) -> bool {
            if !self.open {
                return false;
            }
            let msg = Some(Ok(Message::Binary(bytes.into())));
            let max = state.config.max_frame_bytes;
            self.open = on_inbound(
                state,
                &self.origin,
                &self.outbox,
                msg,
                max,
                &mut self.limiter,
                &mut self.ticket,
            )
            .is_ok();
            self.open
        }

        /// Empties the outbox like a client that reads everything; returns how many items.
        pub fn drain(&self) -> usize {
            let mut v = Vec::new();
            self.outbox.take(&mut v);
            v.len()
        }

        /// The connection ends (as lost).
        pub fn close(self, state: &AppState) {
            state.hub.unregister(
                self.origin.app,
                &self.origin.user_id,
                self.origin.conn_id,
                Departure::Lost,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_close_is_left_anything_else_lost() {
        let close = |code| Some(Ok(Message::Close(Some(code))));
        let departure = |m| match classify(m, 100) {
            Inbound::Closed(d) => d,
            _ => panic!("not a close"),
        };
        assert_eq!(departure(close(1000)), Departure::Left);
        assert_eq!(departure(close(1001)), Departure::Lost);
        assert_eq!(departure(close(4000)), Departure::Lost);
        assert_eq!(departure(Some(Ok(Message::Close(None)))), Departure::Lost);
        assert_eq!(departure(None), Departure::Lost);
    }

    #[test]
    fn rate_limiter_refuses_then_closes_and_recovers() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 5);
        for _ in 0..5 {
            assert_eq!(r.take(1.0, t0), RateDecision::Allow);
        }
        assert_eq!(r.take(1.0, t0), RateDecision::Refuse);
        // One second later 10 tokens came back (capped at the burst).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.take(1.0, t1), RateDecision::Allow);
        // Flooding: refused up to `burst` in debt, then closed.
        let mut last = RateDecision::Allow;
        for _ in 0..20 {
            last = r.take(1.0, t1);
            if last == RateDecision::Close {
                break;
            }
        }
        assert_eq!(last, RateDecision::Close);
    }
}
