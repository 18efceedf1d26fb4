//! # rcall-server — rcall's self-hosted signalling service
//!
//! The server side of rcall (a drop-in for RongCloud's Web CallLib 5.X): it replaces the
//! RongCloud IM cloud that CallLib signals through. Browsers running the `rcall-sdk` wasm
//! connect to `GET /ws` and exchange `rtc_core::proto::envelope` frames; the server
//! authenticates them by token and routes opaque call messages between users' devices.
//!
//! - Identity and access ([`token`], [`server_api`]): HMAC-SHA256 tokens bound to app and user
//!   with an expiry; RongCloud's Server API signature plus a timestamp window and single-use
//!   nonces; token expiry, blocks, blacklists, groups, kicking a user from a call. Several apps
//!   (tenants) on one server never see each other's users, groups or messages.
//! - Enforcement and delivery: the rules (405 / 22406 / 31009 / 31020, per-user ordered
//!   delivery with seqs and acks, resume without loss or duplicates, every device of a user
//!   gets the user's messages, call rooms) are the sans-IO `delivery` crate; [`hub`] is its
//!   shell here (a lock per app, the connections' [`outbox`]es, offline storage in SQLite
//!   ([`store`]) with TTL and cap). [`cluster`]: `--redis` mode (shared policy, nonces, presence and call rooms; messages
//!   routed across nodes through per-user mailboxes; see `docs/cluster.md`). [`sfu`]: `--janus`
//!   mode (group-call media through Janus; see `docs/sfu.md`).
//! - Limits: frame size (a few KB before authentication), per-connection and per-user rate,
//!   per-app, per-user and per-device connection caps, slow consumers, dead peers (WebSocket
//!   pings, [`ws::PING_INTERVAL`] / [`ws::DEAD_AFTER`]), paged replay, offline quotas per
//!   sender and in bytes, a bounded database write queue; at the transport ([`listener`]) a
//!   header-read/idle timeout and caps on unauthenticated connections per server and per IP.
//! - No signal lost: resends are recognised by `(instance, client_seq)` and confirmations wait
//!   for the store's commit ([`store`] tickets), so what was confirmed survives a crash.
//! - Media: TURN REST credentials and STUN URLs for clients ([`ice`]).
//! - Offline push: invites (and hangups with a push config) for users with no online device go
//!   to the app's push webhook, signed, queued and retried off the routing path ([`push`]).
//! - Operations: one binary configured by file, env and flags, each setting declared once ([`config`]); tracing logs that
//!   never contain tokens or secrets; `/healthz`; Prometheus `/metrics` ([`metrics`]); graceful
//!   shutdown that drains connections; state that survives restarts.
//!
//! It also serves the SDK build (`/sdk/`) and demo pages (`/`) so a demo needs one process.
//! Embed with [`start`] (or [`serve`] on a bound listener); the `rcall-server` binary is a thin
//! CLI over it.

pub mod cluster;
pub mod config;
pub mod error;
pub mod hub;
pub mod ice;
pub mod listener;
pub mod metrics;
pub mod outbox;
pub mod push;
/// Call membership lives in the delivery core.
pub use delivery::rooms;
pub mod server_api;
pub mod sfu;
pub mod socket;
pub mod static_files;
pub mod store;
/// Login tokens (the `rcall-token` crate, shared with the load generator).
pub use rcall_token as token;
pub mod ws;

mod clock;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN;
use axum::http::HeaderValue;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{Cli, Config, ConfigError, DEV_APP_KEY, DEV_APP_SECRET};
pub use error::StartError;
pub use hub::Hub;
pub use metrics::Metrics;
pub use store::Store;

/// How often windows, expired offline messages and blocks are swept, and the seq floor saved.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often call members' graces are checked: their hangups go out at most this late.
pub const GRACE_TICK: Duration = Duration::from_millis(100);

/// How often a single node saves its call rooms when they changed ([`Hub::save_changed_rooms`]):
/// what a crash (`kill -9`, power loss) can lose is the rooms' changes of about this long
/// before it (the store's last batch included). A call that started then is learned again
/// from its traffic; one that ended then is restored, and its members that do not come back
/// are hung up for after the lost grace.
pub const ROOMS_SAVE_INTERVAL: Duration = Duration::from_millis(250);

/// Shared by every request and connection.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    /// Server API nonces seen inside the timestamp window (also in SQLite). Unused in
    /// cluster mode, where nonces are in Redis.
    pub nonces: server_api::NonceCache,
    /// Cluster mode (`--redis`): policy and nonces live in Redis, shared by every node.
    pub cluster: Option<cluster::shared::Shared>,
    /// Cluster mode: messages routed through the users' shared mailboxes in Redis.
    pub routing: Option<Arc<cluster::routing::Routing>>,
    /// SFU mode (`--janus`): GROUP calls' rooms on Janus, following call membership
    /// ([`sfu::follow`]) and the devices' Janus handles ([`sfu::relay`]; `docs/sfu.md`).
    pub sfu: Option<Arc<sfu::Sfu>>,
    /// Cluster mode: the call rooms' replica feed (`cluster::rooms`).
    pub rooms: Option<Arc<cluster::rooms::RoomsSync>>,
    /// Serving connections, for the ping / dead-peer sweep.
    pub liveness: ws::Liveness,
    /// Cancelled on shutdown: stop accepting, let every connection drain and close.
    pub shutdown: CancellationToken,
    /// Cancelled when the drain takes longer than `shutdown_timeout`: drop connections now.
    pub kill: CancellationToken,
    /// Every WebSocket connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Connections not authenticated yet (caps per server and per source IP).
    pub gate: Arc<listener::Gate>,
}

/// The Server API's table: each signed, form-encoded `POST` path and its handler in
/// [`server_api`], once, for the router ([`SERVER_API_PATHS`] lists the paths).
macro_rules! server_api_routes {
    ($($path:literal => $handler:ident,)*) => {
        /// Every Server API path (signed `POST`): the router's, the signature tests' and the
        /// fuzz target's list.
        pub const SERVER_API_PATHS: &[&str] = &[$($path),*];

        fn with_server_api(app: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
            app$(.route($path, post(server_api::$handler)))*
        }
    };
}

server_api_routes! {
    "/user/getToken.json" => get_token,
    "/user/refresh.json" => refresh_user,
    "/user/token/expire.json" => token_expire,
    "/user/block.json" => block,
    "/user/unblock.json" => unblock,
    "/user/block/query.json" => block_query,
    "/user/blacklist/add.json" => blacklist_add,
    "/user/blacklist/remove.json" => blacklist_remove,
    "/user/blacklist/query.json" => blacklist_query,
    "/group/create.json" => group_create,
    "/group/join.json" => group_join,
    "/group/quit.json" => group_quit,
    "/group/dismiss.json" => group_dismiss,
    "/group/user/query.json" => group_user_query,
    "/rtc/user/kick.json" => rtc_kick,
    "/rtc/iceServers.json" => ice_servers,
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    use server_api as api;
    let mut app = with_server_api(Router::new())
        .route("/healthz", get(api::healthz))
        .route("/ws", get(ws::ws_handler));
    if state.config.metrics {
        app = app.route("/metrics", get(api::metrics));
    }
    if state.config.dev {
        app = app.merge(
            Router::new()
                .route("/dev/token", get(api::dev_token))
                .route("/dev/group", post(api::dev_group))
                .layer(SetResponseHeaderLayer::overriding(
                    ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                )),
        );
    }
    app.method_not_allowed_fallback(api::method_not_allowed)
        .merge(static_files::sdk_router(&state.config.sdk_dir))
        .fallback_service(static_files::web_service(&state.config.web_dir))
        .with_state(state)
}

/// A server running in the background.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state (routing table, store, metrics), e.g. for tests.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// A token that stops the server when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Graceful shutdown: stops accepting, lets every WebSocket flush what is queued for it and
    /// close (1001), persists cursors and the seq floor, closes the database, and waits for all
    /// of it (at most `shutdown_timeout` for the connections).
    pub async fn shutdown(self) -> Result<(), StartError> {
        self.state.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after [`Self::shutdown_token`] is cancelled).
    pub async fn wait(self) -> Result<(), StartError> {
        match self.task.await {
            Ok(r) => r.map_err(StartError::Io),
            Err(e) => Err(StartError::Io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). A node's kill
/// sends its clients to the others at once (~2,400 per survivor at 100,000 connections on 7
/// nodes); `TcpListener::bind`'s 128 (std's) dropped SYNs in that burst, each retried by the client's
/// kernel only after 1 s (then 3 s): a failover's resume p99.
pub const LISTEN_BACKLOG: u32 = 8192;

/// Binds `config.listen` and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    config.validate()?;
    let addr = config.listen;
    let bind = || {
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // (As `TcpListener::bind`: a restarted server rebinds despite TIME_WAIT sockets.)
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        sock.listen(LISTEN_BACKLOG)
    };
    let listener = bind().map_err(|source| StartError::Bind { addr, source })?;
    serve(config, listener).await
}

/// Starts serving on an already bound listener (`config.listen` is ignored).
pub async fn serve(config: Config, listener: TcpListener) -> Result<RunningServer, StartError> {
    config.validate()?;
    let store = Store::open(&config.db_path)?;
    let floor = store.load_seq_floor().await?;
    let metrics = Arc::new(Metrics::default());
    if let Some((soft, hard)) = listener::raise_nofile_limit() {
        tracing::info!(soft, hard, "open file limit (RLIMIT_NOFILE)");
    }
    let limits = hub::limits_from_config(&config);
    let apps: Vec<(String, String)> = config
        .apps()
        .into_iter()
        .map(|a| (a.key, a.secret))
        .collect();
    let hub = Hub::new(apps, limits, store.clone(), metrics.clone(), floor);
    let shutdown = CancellationToken::new();
    let hooks: Vec<_> = config
        .apps()
        .into_iter()
        .map(|a| (a.key, a.secret, a.push_webhook_url))
        .collect();
    if hooks.iter().any(|h| h.2.is_some()) {
        let settings = push::PushSettings {
            queue_max: config.push_queue_max,
            max_attempts: config.push_max_attempts,
            retry_base: config.push_retry_base,
            timeout: config.push_timeout,
        };
        let pusher = push::Pusher::start(hooks, settings, metrics.clone(), shutdown.clone());
        hub.set_pusher(pusher);
    }
    // A single node keeps its call rooms over a restart in its SQLite file; in cluster mode
    // they are a replica of the shared rooms log (`cluster::rooms`).
    let single = config.redis.is_none();
    for (i, app) in hub.apps().iter().enumerate().filter(|_| single) {
        if let Some(rooms) = store.load_rooms(app.key.clone()).await? {
            hub.restore_rooms(i, rooms);
        }
    }
    let nonces = server_api::NonceCache::default();
    // Cluster mode: the policy comes from Redis (subscribed first, so no change is missed
    // between the load and the first message); SQLite's policy and nonces stay unused.
    let mut follower = None;
    let mut router_events = None;
    let mut rooms_events = None;
    let cluster = match &config.redis {
        Some(url) => {
            let shared = cluster::shared::Shared::new(
                cluster::Bus::connect_with(url, config.redis_response_timeout).await?,
            );
            follower = Some(cluster::shared::start(&shared, &hub).await?);
            hub.cursors_in_redis();
            let week = Duration::from_secs(7 * 24 * 3600);
            let limits = cluster::mailbox::MailboxLimits {
                max_len: config.offline_max_per_user.max(1),
                max_age: config.offline_ttl.max(Duration::from_secs(1)),
                state_ttl: config.offline_ttl.max(week),
            };
            let mailboxes = cluster::mailbox::Mailboxes::new(shared.bus().clone(), limits)?;
            let presence = cluster::presence::Presence::start(
                shared.bus().clone(),
                hub.apps().iter().map(|a| a.key.clone()).collect(),
                config.node_heartbeat,
            )?;
            router_events = Some(
                cluster::routing::Routing::start(
                    mailboxes,
                    presence,
                    config.max_logins_in_progress,
                )
                .await?,
            );
            let bus = shared.bus().clone();
            rooms_events = Some(cluster::rooms::RoomsSync::start(bus, &hub).await?);
            tracing::info!(redis = %url, node = %shared.bus().node_id(), "cluster mode: policy and Server API nonces shared through Redis");
            Some(shared)
        }
        None => {
            for (i, app) in hub.apps().iter().enumerate() {
                let rows = store.load_policy(&app.key).await?;
                hub.load_policy(i, rows);
            }
            for (key, nonce, until) in store.load_nonces(clock::now_ms()).await? {
                if let Some(app) = hub.app_by_key(&key) {
                    nonces.restore(app, nonce, until);
                }
            }
            None
        }
    };
    // SFU mode: Janus is checked now (reachable, secrets, string ids), not at the first call.
    let sfu = match &config.janus {
        Some(settings) => {
            let sfu = sfu::connect(settings, config.dev, config.app_secret.as_bytes()).await?;
            tracing::info!(janus = ?settings.urls().collect::<Vec<_>>(), "SFU mode: group-call rooms on Janus");
            Some(Arc::new(sfu))
        }
        None => None,
    };
    let addr = listener.local_addr()?;
    let gate = Arc::new(listener::Gate::new(
        config.max_unauthenticated,
        config.max_unauthenticated_per_ip,
    ));
    let state = Arc::new(AppState {
        gate,
        config,
        store,
        hub,
        metrics,
        nonces,
        cluster,
        routing: router_events.as_ref().map(|(r, _)| r.clone()),
        sfu,
        rooms: rooms_events.as_ref().map(|(r, _)| r.clone()),
        liveness: ws::Liveness::default(),
        shutdown,
        kill: CancellationToken::new(),
        tracker: TaskTracker::new(),
    });
    let app = router(state.clone());
    if let (Some(shared), Some((sub, rx))) = (&state.cluster, follower) {
        tokio::spawn(cluster::shared::follow(
            shared.clone(),
            state.clone(),
            sub,
            rx,
        ));
    }
    if let Some((routing, rx)) = router_events {
        tokio::spawn(cluster::routing::follow(routing, state.clone(), rx));
    }
    if let Some(sfu) = &state.sfu {
        if let Some(shared) = &state.cluster {
            // Cluster mode: the call → room table in Redis (docs/sfu.md, "Cluster mode").
            sfu.set_cluster(shared.bus().clone());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(sfu::NOTIFY_QUEUE);
        state.hub.set_sfu_notify(tx);
        tokio::spawn(sfu::follow(sfu.clone(), state.clone(), rx));
    }
    if let Some((rooms, rx)) = rooms_events {
        if let Some(routing) = &state.routing {
            // The node that takes a dead node out runs its devices' graces.
            let dead = routing.presence.dead_nodes();
            tokio::spawn(cluster::rooms::follow_dead_nodes(
                rooms.clone(),
                state.clone(),
                dead,
            ));
        }
        tokio::spawn(cluster::rooms::follow(rooms, state.clone(), rx));
    }
    tokio::spawn(sweeper(state.clone()));
    // Hangs up for call members gone longer than their grace.
    tokio::spawn(every(state.clone(), GRACE_TICK, |s| {
        s.hub.end_gone_participants()
    }));
    if single {
        // Saves the call rooms that changed (the shutdown saves them last).
        tokio::spawn(every(state.clone(), ROOMS_SAVE_INTERVAL, |s| {
            s.hub.save_changed_rooms();
        }));
    }
    // Pings silent connections and closes dead ones; 4 checks per ping interval, so pings and
    // closes happen at most a quarter interval late.
    let liveness_tick = (state.config.ping_interval / 4).max(Duration::from_millis(10));
    tokio::spawn(every(state.clone(), liveness_tick, |s| {
        ws::sweep(s);
    }));
    let st = state.clone();
    let task = tokio::spawn(async move {
        listener::run(st.clone(), listener, app).await;
        drain(&st).await;
        Ok(())
    });
    tracing::info!(%addr, dev = state.config.dev, apps = state.hub.apps().len(), "rcall-server started");
    Ok(RunningServer { addr, state, task })
}

/// Periodic housekeeping until shutdown.
async fn sweeper(state: Arc<AppState>) {
    let cursor_ttl = i64::try_from(state.config.offline_ttl.as_millis())
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(2);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
        let floor = state.hub.sweep();
        state.store.save_seq_floor(floor);
        if let Err(e) = state.store.sweep(clock::now_ms(), cursor_ttl).await {
            tracing::error!(error = %e, "database sweep failed");
        }
    }
}

/// Runs `f` every `period` (a late tick is not made up for) until shutdown.
async fn every(state: Arc<AppState>, period: Duration, f: impl Fn(&AppState)) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        f(&state);
    }
}

/// After the listener stopped: drain connections, persist, close the database.
async fn drain(state: &AppState) {
    state.hub.close_all();
    state.tracker.close();
    let open = state.tracker.len();
    if open > 0 {
        tracing::info!(connections = open, "draining connections");
    }
    if tokio::time::timeout(state.config.shutdown_timeout, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = state.tracker.len(),
            "connections did not drain in time; dropping them"
        );
        state.kill.cancel();
        state.hub.abort_all();
        let _ = tokio::time::timeout(Duration::from_secs(3), state.tracker.wait()).await;
    }
    // Cluster mode: the graces of this node's devices are run by another node from now on.
    if let Some(rooms) = &state.rooms {
        // (The lowest other live node runs them.)
        let runner = match &state.routing {
            Some(r) => r.presence.live_nodes().await.ok().and_then(|live| {
                live.into_iter()
                    .find(|n| n != r.presence.node_id())
                    .map(|n| n.as_str().to_owned())
            }),
            None => None,
        };
        if let Err(e) = rooms.leaving(&state.hub, runner.as_deref()).await {
            tracing::warn!(error = %e, "cluster: handing this node's call graces over failed");
        }
    }
    // Cluster mode: the closed connections leave the users' presence; then the node stops
    // beating (another node takes it out after its deadline).
    if let Some(routing) = &state.routing {
        routing.presence.stop().await;
    }
    let floor = state.hub.sweep();
    state.store.save_seq_floor(floor);
    // Calls go on over a restart: their rooms are kept, so members that do not come back are
    // still hung up for. (A single node saves them as they change too, so a crash loses only
    // the last [`ROOMS_SAVE_INTERVAL`]'s changes; in cluster mode they live in Redis.)
    if state.routing.is_none() {
        state.hub.save_changed_rooms();
    }
    if let Some(sfu) = &state.sfu {
        // Ends our Janus session. Calls' rooms stay on Janus (docs/sfu.md, server restart).
        sfu.close_janus().await;
    }
    state.store.close().await;
    tracing::info!("rcall-server stopped");
}
