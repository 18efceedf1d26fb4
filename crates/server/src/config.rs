//! Server configuration: the [`Config`] the library runs with, and how the binary builds one
//! from three layers — a TOML file (`--config`), `RCALL_*` environment variables, and flags —
//! each overriding the one before (flag > env > file > default).
//!
//! Kept in the library so the layering rules are testable without spawning a process, and
//! without depending on the machine's real environment: [`Cli::into_config_with_env`] takes the
//! environment as a lookup function.
//!
//! Each setting is one row of `SETTINGS`: its file key names its flag and variable, its default
//! is [`Config::new`]'s, and `--help` shows both; adding a setting is adding a row (and a
//! `Config` field). The file, for example:
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! app_key = "my-app"
//! app_secret = "…"
//! db = "/var/lib/rcall/rcall.db"
//! turn_urls = ["turn:turn.example.com:3478?transport=udp"]
//! turn_secret = "…"
//! push_webhook_url = "http://10.0.0.5:9000/rcall/push"   # offline pushes (crate::push)
//! redis = "unix:///run/redis/redis.sock"   # cluster mode (crate::cluster)
//! janus = "http://127.0.0.1:8088/janus"    # SFU mode for group calls (crate::sfu)
//! [[apps]]            # more tenants
//! key = "other-app"
//! secret = "…"
//! push_webhook_url = "http://10.0.0.6:9000/push"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::token::DEFAULT_TTL_MS;

/// App key used by `--dev` when none is given.
pub const DEV_APP_KEY: &str = "rcall-dev-app";
/// Well-known secret used by `--dev` when none is given. Anyone can mint tokens with it:
/// development only.
pub const DEV_APP_SECRET: &str = "rcall-dev-secret";
/// Default limit for one client WebSocket frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Default time a new connection has to send `Authenticate`.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest app secret accepted outside `--dev`: a shorter one can be brute-forced from one
/// token (HMAC-SHA256 over a known payload), which hands out tokens for every user.
pub const MIN_APP_SECRET_BYTES: usize = 16;
/// Default time a client has to send a complete HTTP request head, which is also how long an
/// idle keep-alive connection stays open (hyper starts the timer as soon as the connection waits
/// for a head): a slowloris client holding half-sent requests is cut after this, while a real
/// browser sends its head in one packet.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on connections that have not authenticated yet (plain HTTP, or WebSocket before
/// its `AuthResult`), server-wide: each holds a file descriptor and buffers, and nothing proves
/// it belongs to a user. Past it new connections are closed at accept, so authenticated users
/// and the file-descriptor limit are never starved by anonymous ones.
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 8192;
/// Default cap on not-yet-authenticated connections from one source IP: a single host cannot
/// take the whole [`DEFAULT_MAX_UNAUTHENTICATED`] budget. A browser opens a handful at once;
/// a NAT of many users rarely has more than this mid-handshake at the same moment.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_IP: usize = 256;
/// Default largest frame before `Authenticate` succeeded: a token (~200 bytes) and a device id
/// (≤ 128 characters) fit many times over, while an anonymous client can no longer make the
/// server buffer a post-auth-sized frame (the transport cuts a connection past this).
pub const DEFAULT_PRE_AUTH_FRAME_BYTES: usize = 4 * 1024;
/// Default cap on one user's authenticated connections (all devices): every connection of a
/// user gets a copy of what the user sends (fan-out grows with the square of the count), and
/// each replays the user's stored messages; real users have a few tabs and devices.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 16;
/// Default cap on one device's connections (tabs/reloads of one device id in flight).
pub const DEFAULT_MAX_CONNECTIONS_PER_DEVICE: usize = 4;
/// Default sustained frames per second one user may send over all its connections (shared
/// token bucket): more sockets no longer multiply a user's rate. Two busy calls' signalling is
/// well under this.
pub const DEFAULT_USER_RATE_PER_SEC: u32 = 200;
/// Default burst of the per-user token bucket.
pub const DEFAULT_USER_RATE_BURST: u32 = 400;
/// Default messages replayed per page at connect: the next page is read from SQLite only once
/// the previous one was written to the socket, so a connection costs at most a page (at most
/// [`crate::ws::REPLAY_PAGE_BYTES`] of payload) however much is stored for it.
pub const DEFAULT_REPLAY_PAGE_MESSAGES: usize = 64;
/// Default messages one sender may get stored for *other* users (offline copies) per
/// [`DEFAULT_OFFLINE_QUOTA_WINDOW`]: ringing a few offline users is a handful of messages;
/// spraying random user ids to fill the disk is refused past this.
pub const DEFAULT_OFFLINE_QUOTA_PER_SENDER: u32 = 1000;
/// Window of the per-sender offline quota.
pub const DEFAULT_OFFLINE_QUOTA_WINDOW: Duration = Duration::from_secs(3600);
/// Default cap on the payload bytes of all stored offline messages (the disk the store may
/// take): past it nothing more is stored (senders get `SendResult` 40508) until messages are
/// acked or expire.
pub const DEFAULT_OFFLINE_MAX_BYTES: u64 = 1 << 30;
/// Default cap on database writes waiting for the SQLite thread: past it messages that need a
/// stored copy are refused (`SendResult` 40509) instead of queueing memory without bound;
/// live delivery goes on.
pub const DEFAULT_STORE_QUEUE_MAX: usize = 20_000;
/// Default cap on offline pushes waiting for, or being retried against, the push webhooks: a
/// backend that is down costs at most this many pushes in memory; past it pushes are dropped
/// (`rcall_push_dropped_total`).
pub const DEFAULT_PUSH_QUEUE_MAX: usize = 10_000;
/// Default attempts per offline push (the first included): with the default base, retries span
/// about a minute, while a ringing call is still worth announcing.
pub const DEFAULT_PUSH_MAX_ATTEMPTS: u32 = 6;
/// Default pause after a push's first failed attempt (doubling after each further one).
pub const DEFAULT_PUSH_RETRY_BASE: Duration = Duration::from_secs(1);
/// Default time one push webhook request may take.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One app (tenant) the server serves. Apps never see each other's users, groups or messages.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCredentials {
    pub key: String,
    /// Signs this app's tokens and Server API requests. Never logged.
    pub secret: String,
    /// Where offline pushes of this app go (`http://…`; see [`crate::push`]). None: no push.
    #[serde(default)]
    pub push_webhook_url: Option<String>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field(
                "push_webhook_url",
                &self.push_webhook_url.as_deref().map(redact_query),
            )
            .finish()
    }
}

/// A URL without its query (which may carry a token).
fn redact_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// Log output format of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: expected text or json")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Everything [`crate::start`] needs.
#[derive(Clone)]
pub struct Config {
    /// Address to bind (`start` only; `serve` takes a bound listener).
    pub listen: SocketAddr,
    /// The primary app.
    pub app_key: String,
    /// Signs the primary app's tokens and Server API requests. Never logged.
    pub app_secret: String,
    /// More apps served by the same process (config file `[[apps]]`).
    pub extra_apps: Vec<AppCredentials>,
    /// The primary app's push webhook ([`crate::push`]); extra apps set theirs in `[[apps]]`.
    pub push_webhook_url: Option<String>,
    /// Offline pushes queued or retrying at most ([`DEFAULT_PUSH_QUEUE_MAX`]).
    pub push_queue_max: usize,
    /// Attempts per offline push ([`DEFAULT_PUSH_MAX_ATTEMPTS`]).
    pub push_max_attempts: u32,
    /// First pause between attempts, doubling ([`DEFAULT_PUSH_RETRY_BASE`]).
    pub push_retry_base: Duration,
    /// Time one webhook request may take ([`DEFAULT_PUSH_TIMEOUT`]).
    pub push_timeout: Duration,
    /// SQLite file (created if missing).
    pub db_path: PathBuf,
    /// Demo mode: enables `GET /dev/token` and `POST /dev/group`.
    pub dev: bool,
    /// Served at `/sdk/` (the wasm SDK build).
    pub sdk_dir: PathBuf,
    /// Served at `/` (demo pages).
    pub web_dir: PathBuf,
    /// Validity of issued tokens.
    pub token_ttl: Duration,
    /// Time a connection has to authenticate before it is dropped.
    pub auth_timeout: Duration,
    /// Largest accepted client frame, in bytes.
    pub max_frame_bytes: usize,
    /// Server API: largest accepted distance between `Timestamp` and the server clock; a nonce
    /// is remembered for this long and refused if used again.
    pub api_timestamp_window: Duration,
    /// Sustained frames per second one connection may send (token bucket refill rate).
    pub rate_limit_per_sec: u32,
    /// Burst size of the per-connection token bucket.
    pub rate_limit_burst: u32,
    /// Authenticated connections one app may hold at once (31003 past it).
    pub max_connections_per_app: usize,
    /// How long messages for offline users are kept.
    pub offline_ttl: Duration,
    /// Most messages kept per offline user (the oldest are dropped first).
    pub offline_max_per_user: usize,
    /// How long recently routed messages stay in memory for devices resuming a connection.
    pub resume_window: Duration,
    /// Most recently routed messages kept in memory per user for resuming devices.
    pub resume_window_messages: usize,
    /// TURN server URLs handed to clients (e.g. `turn:turn.example.com:3478?transport=udp`).
    pub turn_urls: Vec<String>,
    /// Shared secret with the TURN server (coturn `static-auth-secret`). Never logged.
    pub turn_secret: Option<String>,
    /// Validity of TURN credentials.
    pub turn_ttl: Duration,
    /// STUN server URLs handed to clients (no credentials).
    pub stun_urls: Vec<String>,
    /// Serve Prometheus metrics at `GET /metrics` (without a token: to loopback peers only).
    pub metrics: bool,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>` (metrics reveal app
    /// keys and traffic; a public deployment should not hand them to anyone). When unset,
    /// `/metrics` answers only peers on a loopback address (403 otherwise).
    pub metrics_token: Option<String>,
    /// Time to send a complete HTTP request head; also the keep-alive idle timeout
    /// ([`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Not-yet-authenticated connections, server-wide ([`DEFAULT_MAX_UNAUTHENTICATED`]).
    pub max_unauthenticated: usize,
    /// Not-yet-authenticated connections per source IP ([`DEFAULT_MAX_UNAUTHENTICATED_PER_IP`]).
    pub max_unauthenticated_per_ip: usize,
    /// Largest frame before authentication ([`DEFAULT_PRE_AUTH_FRAME_BYTES`]).
    pub pre_auth_frame_bytes: usize,
    /// Authenticated connections per user, all devices (31003 past it;
    /// [`DEFAULT_MAX_CONNECTIONS_PER_USER`]).
    pub max_connections_per_user: usize,
    /// Authenticated connections per device (31003; [`DEFAULT_MAX_CONNECTIONS_PER_DEVICE`]).
    pub max_connections_per_device: usize,
    /// Sustained messages per second per user over all its connections (20604 past it).
    pub user_rate_per_sec: u32,
    /// Burst of the per-user bucket.
    pub user_rate_burst: u32,
    /// Stored messages replayed per page ([`DEFAULT_REPLAY_PAGE_MESSAGES`]).
    pub replay_page_messages: usize,
    /// Messages one sender may get stored for others per `offline_quota_window` (40507).
    pub offline_quota_per_sender: u32,
    pub offline_quota_window: Duration,
    /// Payload bytes of all stored messages (40508 past it; [`DEFAULT_OFFLINE_MAX_BYTES`]).
    pub offline_max_bytes: u64,
    /// Database writes waiting at most (40509 past it; [`DEFAULT_STORE_QUEUE_MAX`]).
    pub store_queue_max: usize,
    /// On shutdown: how long open connections get to flush before they are dropped.
    pub shutdown_timeout: Duration,
    /// A call member whose connections closed cleanly / were lost is hung up for after this
    /// (defaults: [`crate::rooms::LEFT_GRACE`], [`crate::rooms::LOST_GRACE`]).
    pub left_grace: Duration,
    pub lost_grace: Duration,
    /// A silent connection gets a WebSocket Ping after this long ([`crate::ws::PING_INTERVAL`]).
    pub ping_interval: Duration,
    /// A connection that sent nothing for this long is closed ([`crate::ws::DEAD_AFTER`]).
    pub dead_after: Duration,
    /// Binary only: log format.
    pub log_format: LogFormat,
    /// Cluster mode: the Redis that nodes share routing through (`--redis`, issue 15). None:
    /// a single node (everything in this process and its SQLite file).
    pub redis: Option<crate::cluster::RedisUrl>,
    /// Cluster mode: how often the node beats; one silent for 5 periods is dead and cleaned
    /// up after ([`crate::cluster::presence::DEFAULT_HEARTBEAT`]).
    pub node_heartbeat: Duration,
    /// Cluster mode: logins a node runs at once; past it a login is refused as busy (31003)
    /// at once (0: no bound; [`crate::cluster::routing::DEFAULT_MAX_LOGINS`]).
    pub max_logins_in_progress: usize,
    /// Cluster mode: how long a Redis command waits for its answer
    /// ([`crate::cluster::RESPONSE_TIMEOUT`]).
    pub redis_response_timeout: Duration,
    /// Cluster mode: how long a message is retried while Redis does not answer the node at all,
    /// before its connection is closed ([`crate::ws::ROUTE_RETRY_FOR`]).
    pub route_retry_for: Duration,
    /// Cluster mode: how often a connection whose message waits for Redis writes a `Pong`
    /// ([`crate::ws::ROUTE_KEEPALIVE`]).
    pub route_keepalive: Duration,
    /// SFU mode: group-call media through these Janus servers (`--janus`, issue 12;
    /// [`crate::sfu`]; several: `JanusSettings::more`). None: group calls stay a peer-to-peer
    /// mesh.
    pub janus: Option<crate::sfu::JanusSettings>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("extra_apps", &self.extra_apps)
            .field(
                "push_webhook_url",
                &self.push_webhook_url.as_deref().map(redact_query),
            )
            .field("db_path", &self.db_path)
            .field("dev", &self.dev)
            .field("turn_urls", &self.turn_urls)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("redis", &self.redis)
            .field("node_heartbeat", &self.node_heartbeat)
            .field("janus", &self.janus)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config for `app_key`/`app_secret` with every other field at its default.
    pub fn new(app_key: impl Into<String>, app_secret: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            app_key: app_key.into(),
            app_secret: app_secret.into(),
            extra_apps: Vec::new(),
            push_webhook_url: None,
            push_queue_max: DEFAULT_PUSH_QUEUE_MAX,
            push_max_attempts: DEFAULT_PUSH_MAX_ATTEMPTS,
            push_retry_base: DEFAULT_PUSH_RETRY_BASE,
            push_timeout: DEFAULT_PUSH_TIMEOUT,
            db_path: PathBuf::from("rcall.db"),
            dev: false,
            sdk_dir: PathBuf::from("npm/dist/cdn"),
            web_dir: PathBuf::from("examples/web"),
            token_ttl: Duration::from_millis(DEFAULT_TTL_MS as u64),
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            api_timestamp_window: Duration::from_secs(300),
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            max_connections_per_app: 100_000,
            offline_ttl: Duration::from_secs(7 * 24 * 3600),
            offline_max_per_user: 1000,
            resume_window: Duration::from_secs(60),
            resume_window_messages: 128,
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(24 * 3600),
            stun_urls: Vec::new(),
            metrics: true,
            metrics_token: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
            max_unauthenticated_per_ip: DEFAULT_MAX_UNAUTHENTICATED_PER_IP,
            pre_auth_frame_bytes: DEFAULT_PRE_AUTH_FRAME_BYTES,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            max_connections_per_device: DEFAULT_MAX_CONNECTIONS_PER_DEVICE,
            user_rate_per_sec: DEFAULT_USER_RATE_PER_SEC,
            user_rate_burst: DEFAULT_USER_RATE_BURST,
            replay_page_messages: DEFAULT_REPLAY_PAGE_MESSAGES,
            offline_quota_per_sender: DEFAULT_OFFLINE_QUOTA_PER_SENDER,
            offline_quota_window: DEFAULT_OFFLINE_QUOTA_WINDOW,
            offline_max_bytes: DEFAULT_OFFLINE_MAX_BYTES,
            store_queue_max: DEFAULT_STORE_QUEUE_MAX,
            shutdown_timeout: Duration::from_secs(10),
            left_grace: crate::rooms::LEFT_GRACE,
            lost_grace: crate::rooms::LOST_GRACE,
            ping_interval: crate::ws::PING_INTERVAL,
            dead_after: crate::ws::DEAD_AFTER,
            log_format: LogFormat::Text,
            redis: None,
            node_heartbeat: crate::cluster::presence::DEFAULT_HEARTBEAT,
            max_logins_in_progress: crate::cluster::routing::DEFAULT_MAX_LOGINS,
            redis_response_timeout: crate::cluster::RESPONSE_TIMEOUT,
            route_retry_for: crate::ws::ROUTE_RETRY_FOR,
            route_keepalive: crate::ws::ROUTE_KEEPALIVE,
            janus: None,
        }
    }

    /// Every app: the primary one first.
    pub fn apps(&self) -> Vec<AppCredentials> {
        let mut v = vec![AppCredentials {
            key: self.app_key.clone(),
            secret: self.app_secret.clone(),
            push_webhook_url: self.push_webhook_url.clone(),
        }];
        v.extend(self.extra_apps.iter().cloned());
        v
    }

    /// Rejects configs the server cannot run safely with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.app_key.is_empty() {
            return Err(ConfigError::MissingAppKey);
        }
        if self.app_secret.is_empty() {
            return Err(ConfigError::MissingAppSecret);
        }
        let apps = self.apps();
        if !self.dev {
            if let Some(a) = apps.iter().find(|a| a.secret.len() < MIN_APP_SECRET_BYTES) {
                return Err(ConfigError::Invalid(format!(
                    "the secret of app {:?} is {} bytes; at least {MIN_APP_SECRET_BYTES} are \
                     required outside --dev (a short secret can be guessed from one token)",
                    a.key,
                    a.secret.len()
                )));
            }
        }
        for (i, a) in apps.iter().enumerate() {
            if a.key.is_empty() || a.secret.is_empty() {
                return Err(ConfigError::Invalid(
                    "every app needs a non-empty key and secret".into(),
                ));
            }
            if let Some(url) = &a.push_webhook_url {
                check_webhook_url(&a.key, url)?;
            }
            if apps[..i].iter().any(|b| b.key == a.key) {
                return Err(ConfigError::Invalid(format!(
                    "app key {:?} is configured twice",
                    a.key
                )));
            }
        }
        if self.max_frame_bytes == 0 {
            return Err(ConfigError::Invalid("max frame size must be > 0".into()));
        }
        if self.rate_limit_per_sec == 0 || self.rate_limit_burst == 0 {
            return Err(ConfigError::Invalid(
                "rate limit and burst must be > 0".into(),
            ));
        }
        if !self.turn_urls.is_empty() && self.turn_secret.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid(
                "TURN URLs need a TURN secret (--turn-secret / RCALL_TURN_SECRET)".into(),
            ));
        }
        if self.max_connections_per_user == 0
            || self.max_connections_per_device == 0
            || self.user_rate_per_sec == 0
            || self.user_rate_burst == 0
            || self.replay_page_messages == 0
            || self.pre_auth_frame_bytes == 0
            || self.header_read_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(
                "connection caps, user rate, replay page, pre-auth frame size and header \
                 timeout must be > 0"
                    .into(),
            ));
        }
        if self.node_heartbeat.is_zero() {
            return Err(ConfigError::Invalid(
                "the node heartbeat period must be > 0".into(),
            ));
        }
        if self.redis_response_timeout.is_zero()
            || self.route_retry_for.is_zero()
            || self.route_keepalive.is_zero()
        {
            return Err(ConfigError::Invalid(
                "the Redis response timeout, route retry time and route keep-alive period \
                 must be > 0"
                    .into(),
            ));
        }
        if self.ping_interval.is_zero() || self.dead_after <= self.ping_interval {
            return Err(ConfigError::Invalid(
                "ping interval must be > 0 and below the dead-after time".into(),
            ));
        }
        if self.push_queue_max == 0 || self.push_max_attempts == 0 || self.push_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "push queue size, attempts and timeout must be > 0".into(),
            ));
        }
        if self.turn_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "TURN credential TTL must be > 0".into(),
            ));
        }
        if let Some(j) = &self.janus {
            for url in j.urls() {
                crate::sfu::JanusSettings::check_url(url)
                    .map_err(|e| ConfigError::Invalid(format!("--janus / RCALL_JANUS: {e}")))?;
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = j.urls().find(|u| !seen.insert(u.trim_end_matches('/'))) {
                return Err(ConfigError::Invalid(format!(
                    "--janus / RCALL_JANUS: {twice:?} is listed twice"
                )));
            }
            if j.dead_after.is_zero() {
                return Err(ConfigError::Invalid(
                    "--janus-dead-after-ms must be > 0".into(),
                ));
            }
            if !self.dev && (j.api_secret.is_none() || j.admin_key.is_none()) {
                return Err(ConfigError::Invalid(
                    "--janus needs --janus-api-secret (Janus's `api_secret`) and \
                     --janus-admin-key (the videoroom plugin's `admin_key`) outside --dev: \
                     without them anyone who reaches Janus can use it"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// A push webhook must be an absolute `http://` URL: the server speaks plain HTTP to it (put
/// the receiver on a private network, or behind a local TLS-terminating proxy).
fn check_webhook_url(app: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" && u.host_str().is_some() => Ok(()),
        Ok(u) => Err(ConfigError::Invalid(format!(
            "push webhook of app {app:?}: scheme {:?} is not supported (http:// only)",
            u.scheme()
        ))),
        Err(e) => Err(ConfigError::Invalid(format!(
            "push webhook of app {app:?} is not a URL: {e}"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no app key: pass --app-key or set RCALL_APP_KEY (or use --dev for a demo key)")]
    MissingAppKey,
    #[error(
        "no app secret: pass --app-secret or set RCALL_APP_SECRET (or use --dev for a demo secret)"
    )]
    MissingAppSecret,
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// One setting of the binary, declared once: its file key, from which its flag
/// (`--key-with-dashes`) and environment variable (`RCALL_KEY`) are named unless `flag`/`env`
/// say otherwise, its help, and how a value reaches the [`Config`]. Its default is whatever
/// [`Config::new`] holds (`show` prints it in `--help`), so defaults live in one place too.
struct Setting {
    key: &'static str,
    flag: Option<&'static str>,
    env: Option<&'static str>,
    shape: Shape,
    /// Test-only knobs: accepted, not listed in `--help`.
    hidden: bool,
    help: &'static str,
    /// The default as `--help` shows it; None where there is none to show.
    show: fn(&Config) -> Option<String>,
    /// Puts a value into the config; the error says what is wrong with it (not the value,
    /// which may be a secret).
    apply: fn(&mut Config, Raw) -> Result<(), String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One value.
    Value,
    /// Several values: a repeated flag or comma-separated ones, a comma-separated variable, a
    /// TOML array.
    List,
    /// On or off: a bare flag, a boolean variable, a TOML boolean. `negated`: the flag and
    /// variable say the opposite of the file key (`--no-metrics` against `metrics = true`).
    Switch { negated: bool },
}

/// A value as one layer gave it.
enum Raw {
    One(String),
    Many(Vec<String>),
    Switch(bool),
}

impl Raw {
    fn value<T: std::str::FromStr>(self) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self {
            Raw::One(s) => s.parse().map_err(|e| format!("not a valid value: {e}")),
            _ => Err("expected a single value".into()),
        }
    }

    fn list(self) -> Vec<String> {
        match self {
            Raw::Many(v) => v,
            Raw::One(s) => vec![s],
            Raw::Switch(b) => vec![b.to_string()],
        }
    }

    fn switch(self) -> bool {
        matches!(self, Raw::Switch(true))
    }
}

impl Setting {
    fn flag(&self) -> String {
        self.flag
            .map_or_else(|| self.key.replace('_', "-"), str::to_owned)
    }

    fn env(&self) -> String {
        self.env.map_or_else(
            || format!("RCALL_{}", self.key.to_ascii_uppercase()),
            str::to_owned,
        )
    }

    fn arg(&self, defaults: &Config) -> clap::Arg {
        let mut help = format!("{} [env: {}]", self.help, self.env());
        if let Some(d) = (self.show)(defaults) {
            help.push_str(&format!(" [default: {d}]"));
        }
        let arg = clap::Arg::new(self.key)
            .long(self.flag())
            .help(help)
            .hide(self.hidden);
        match self.shape {
            Shape::Value => arg.value_name(self.key.to_ascii_uppercase()),
            Shape::List => arg
                .value_name("URL")
                .action(clap::ArgAction::Append)
                .value_delimiter(','),
            Shape::Switch { .. } => arg.action(clap::ArgAction::SetTrue),
        }
    }

    /// The flag's value, if given (an empty one is not).
    fn flag_value(&self, m: &clap::ArgMatches) -> Option<Raw> {
        match self.shape {
            Shape::Value => m
                .get_one::<String>(self.key)
                .filter(|s| !s.is_empty())
                .map(|s| Raw::One(s.clone())),
            Shape::List => Some(
                m.get_many::<String>(self.key)?
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .filter(|v| !v.is_empty())
            .map(Raw::Many),
            Shape::Switch { negated } => m.get_flag(self.key).then_some(Raw::Switch(!negated)),
        }
    }

    /// The variable's value, if set and not empty.
    fn env_value(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Raw>, String> {
        let Some(v) = env(&self.env()).map(|v| v.trim().to_owned()) else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(None);
        }
        Ok(Some(match self.shape {
            Shape::Value => Raw::One(v),
            Shape::List => Raw::Many(
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            Shape::Switch { negated } => match v.to_ascii_lowercase().as_str() {
                "0" | "false" | "no" | "off" => Raw::Switch(negated),
                "1" | "true" | "yes" | "on" => Raw::Switch(!negated),
                _ => return Err("not a boolean (true/false, 1/0, yes/no, on/off)".into()),
            },
        }))
    }

    /// The config file's value: strings, numbers and booleans read as their text, so each
    /// layer parses alike; a list is an array of strings (or one string).
    fn file_value(&self, v: toml::Value) -> Result<Option<Raw>, String> {
        use toml::Value as V;
        let raw = match (self.shape, v) {
            (Shape::Switch { .. }, V::Boolean(b)) => Raw::Switch(b),
            (Shape::Switch { .. }, _) => return Err("expected true or false".into()),
            (Shape::List, V::Array(items)) => Raw::Many(
                items
                    .into_iter()
                    .map(|i| match i {
                        V::String(s) => Ok(s),
                        _ => Err("expected an array of strings".to_owned()),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            // One string: a list of one (`janus = "http://…"` predates its lists).
            (Shape::List, V::String(s)) if s.is_empty() => return Ok(None),
            (Shape::List, V::String(s)) => Raw::Many(vec![s]),
            (Shape::List, _) => return Err("expected an array of strings".into()),
            (Shape::Value, V::String(s)) if s.is_empty() => return Ok(None),
            (Shape::Value, V::String(s)) => Raw::One(s),
            (Shape::Value, V::Integer(n)) => Raw::One(n.to_string()),
            (Shape::Value, V::Float(n)) => Raw::One(n.to_string()),
            (Shape::Value, V::Boolean(b)) => Raw::One(b.to_string()),
            (Shape::Value, _) => return Err("expected a string or a number".into()),
        };
        Ok(Some(raw))
    }
}

/// A row of [`SETTINGS`]: `key => how, "help"`, where `how` says how the value reaches the
/// `Config` field of that name (`field`: as is; `secs`/`ms`: a `Duration`; `path`; `text`: an
/// optional string; `list`) and `hidden` marks test-only knobs.
macro_rules! setting {
    (@row $key:literal, $shape:expr, $hidden:expr, $help:literal, $show:expr, $apply:expr) => {
        Setting {
            key: $key,
            flag: None,
            env: None,
            shape: $shape,
            hidden: $hidden,
            help: $help,
            show: $show,
            apply: $apply,
        }
    };
    ($key:literal => field $f:ident, $help:literal) => {
        setting!(@row $key, Shape::Value, false, $help, |c| Some(c.$f.to_string()),
            |c, r| { c.$f = r.value()?; Ok(()) })
    };
    ($key:literal => secs $f:ident, $help:literal) => {
        setting!(@row $key, Shape::Value, false, $help, |c| Some(c.$f.as_secs().to_string()),
            |c, r| { c.$f = Duration::from_secs(r.value()?); Ok(()) })
    };
    ($key:literal => ms $f:ident, hidden, $help:literal) => {
        Setting { hidden: true, ..setting!($key => ms $f, $help) }
    };
    ($key:literal => ms $f:ident, $help:literal) => {
        setting!(@row $key, Shape::Value, false, $help, |c| Some(c.$f.as_millis().to_string()),
            |c, r| { c.$f = Duration::from_millis(r.value()?); Ok(()) })
    };
    ($key:literal => path $f:ident, $help:literal) => {
        setting!(@row $key, Shape::Value, false, $help, |c| Some(c.$f.display().to_string()),
            |c, r| { c.$f = r.value()?; Ok(()) })
    };
    ($key:literal => text $f:ident, $help:literal) => {
        setting!(@row $key, Shape::Value, false, $help, |_| None, |c, r| { c.$f = Some(r.value()?); Ok(()) })
    };
    ($key:literal => list $f:ident, flag $flag:literal, $help:literal) => {
        Setting {
            flag: Some($flag),
            ..setting!(@row $key, Shape::List, false, $help, |_| None, |c, r| { c.$f = r.list(); Ok(()) })
        }
    };
}

/// Every setting of the binary, in `--help` order. Rows apply in this order, so `janus` comes
/// before the secrets that belong to it.
static SETTINGS: &[Setting] = &[
    setting!("listen" => field listen, "Address to listen on"),
    setting!(@row "app_key", Shape::Value, false,
        "App key clients use (required unless --dev)",
        |_| None, |c, r| { c.app_key = r.value()?; Ok(()) }),
    setting!(@row "app_secret", Shape::Value, false,
        "App secret that signs tokens and Server API calls (required unless --dev)",
        |_| None, |c, r| { c.app_secret = r.value()?; Ok(()) }),
    setting!("db" => path db_path, "Path of the SQLite database file, created if missing"),
    setting!(@row "dev", Shape::Switch { negated: false }, false,
        "Development mode: default app key/secret (rcall-dev-app / rcall-dev-secret) and the \
         unauthenticated GET /dev/token?userId=… route. Never use in production",
        |_| None, |c, r| { c.dev = r.switch(); Ok(()) }),
    setting!("sdk_dir" => path sdk_dir, "Directory served at /sdk/ (the built browser SDK)"),
    setting!("web_dir" => path web_dir, "Directory served at / (demo web pages)"),
    setting!("token_ttl_secs" => secs token_ttl, "Validity of issued tokens, seconds"),
    setting!("auth_timeout_ms" => ms auth_timeout,
        "Time a new connection has to send Authenticate, ms"),
    setting!("max_frame_bytes" => field max_frame_bytes, "Largest accepted WebSocket frame, bytes"),
    setting!("pre_auth_frame_bytes" => field pre_auth_frame_bytes,
        "Largest WebSocket frame before Authenticate succeeded, bytes"),
    setting!("api_timestamp_window_secs" => secs api_timestamp_window,
        "Server API timestamp window (stale requests and replayed nonces), seconds"),
    setting!("rate_limit_per_sec" => field rate_limit_per_sec,
        "Frames per second one connection may send, sustained"),
    setting!("rate_limit_burst" => field rate_limit_burst,
        "Burst of frames one connection may send"),
    setting!("max_connections_per_app" => field max_connections_per_app,
        "Authenticated connections per app"),
    setting!("offline_ttl_secs" => secs offline_ttl,
        "How long messages for offline users are kept, seconds"),
    setting!("offline_max_per_user" => field offline_max_per_user,
        "Most stored messages per offline user"),
    setting!("resume_window_secs" => secs resume_window,
        "How long routed messages stay in memory for resuming devices, seconds"),
    setting!("resume_window_messages" => field resume_window_messages,
        "Most routed messages kept in memory per user for resuming devices"),
    setting!("turn_urls" => list turn_urls, flag "turn-url",
        "TURN URL handed to clients; repeat or comma-separate for several"),
    setting!("turn_secret" => text turn_secret,
        "Secret shared with the TURN server (coturn static-auth-secret)"),
    setting!("turn_ttl_secs" => secs turn_ttl, "Validity of TURN credentials, seconds"),
    setting!("stun_urls" => list stun_urls, flag "stun-url",
        "STUN URL handed to clients; repeat or comma-separate"),
    Setting {
        flag: Some("no-metrics"),
        env: Some("RCALL_NO_METRICS"),
        ..setting!(@row "metrics", Shape::Switch { negated: true }, false,
            "Do not serve GET /metrics (config file: metrics = false)",
            |_| None, |c, r| { c.metrics = r.switch(); Ok(()) })
    },
    setting!("metrics_token" => text metrics_token,
        "Require `Authorization: Bearer <token>` on GET /metrics"),
    setting!("shutdown_timeout_secs" => secs shutdown_timeout,
        "Seconds open connections get to flush on shutdown"),
    setting!(@row "log_format", Shape::Value, false,
        "Log format: text or json; the level comes from RUST_LOG (default info)",
        |c| Some(c.log_format.to_string()), |c, r| { c.log_format = r.value()?; Ok(()) }),
    setting!("header_read_timeout_secs" => secs header_read_timeout,
        "Seconds to send a complete HTTP request head; also the keep-alive idle timeout"),
    setting!("max_unauthenticated" => field max_unauthenticated,
        "Connections not authenticated yet, server-wide"),
    setting!("max_unauthenticated_per_ip" => field max_unauthenticated_per_ip,
        "Connections not authenticated yet per source IP"),
    setting!("max_connections_per_user" => field max_connections_per_user,
        "Authenticated connections per user (all devices)"),
    setting!("max_connections_per_device" => field max_connections_per_device,
        "Authenticated connections per device"),
    setting!("user_rate_per_sec" => field user_rate_per_sec,
        "Messages per second one user may send over all its connections"),
    setting!("user_rate_burst" => field user_rate_burst, "Burst of one user's messages"),
    setting!("replay_page_messages" => field replay_page_messages,
        "Stored messages replayed to a connecting device per page"),
    setting!("offline_quota_per_sender" => field offline_quota_per_sender,
        "Messages one sender may get stored for offline users per quota window"),
    setting!("offline_quota_window_secs" => secs offline_quota_window,
        "Window of the per-sender offline quota, seconds"),
    setting!("offline_max_bytes" => field offline_max_bytes,
        "Payload bytes of all stored offline messages"),
    setting!("store_queue_max" => field store_queue_max,
        "Database writes waiting at most (messages needing a stored copy are refused past it)"),
    setting!("push_webhook_url" => text push_webhook_url,
        "The primary app's offline push webhook (http:// URL; invites for users with no online \
         device are POSTed there, signed like RongCloud callbacks)"),
    setting!("push_queue_max" => field push_queue_max, "Offline pushes queued or retrying at most"),
    setting!("push_max_attempts" => field push_max_attempts, "Attempts per offline push"),
    setting!("push_retry_base_ms" => ms push_retry_base,
        "First pause between push attempts, ms, doubling"),
    setting!("push_timeout_ms" => ms push_timeout, "Time one push webhook request may take, ms"),
    setting!("ping_interval_ms" => ms ping_interval, hidden,
        "Ping a connection silent this long, ms (tests)"),
    setting!("dead_after_ms" => ms dead_after, hidden,
        "Close a connection silent this long, ms (tests)"),
    setting!("left_grace_ms" => ms left_grace,
        "A call member device whose last connection closed cleanly (close 1000: its page left \
         or hung up) is hung up for after this long, ms, unless it comes back with its call"),
    setting!("lost_grace_ms" => ms lost_grace,
        "A call member device whose last connection was lost (a crash, a dead network, a server \
         restart) is hung up for after this long, ms, unless it reconnects"),
    setting!(@row "redis", Shape::Value, false,
    "Cluster mode: the Redis shared by several nodes, redis://host:port/db or \
     unix:///path/to/redis.sock",
    |_| None, |c, r| {
        let url: String = r.value()?;
        c.redis = Some(crate::cluster::RedisUrl::parse(&url).map_err(|e| e.to_string())?);
        Ok(())
    }),
    setting!("node_heartbeat_ms" => ms node_heartbeat, hidden,
        "Cluster mode: beat period, ms; a node silent for 5 periods is dead (tests)"),
    setting!("redis_response_timeout_ms" => ms redis_response_timeout, hidden,
        "Cluster mode: how long a Redis command waits for its answer, ms (tests)"),
    setting!("route_retry_ms" => ms route_retry_for, hidden,
        "Cluster mode: a message is retried this long while Redis does not answer the node, \
         then its connection is closed, ms (tests)"),
    setting!("route_keepalive_ms" => ms route_keepalive, hidden,
        "Cluster mode: a connection whose message waits for Redis gets a Pong this often, ms \
         (tests)"),
    setting!("max_logins_in_progress" => field max_logins_in_progress,
        "Cluster mode: logins a node runs at once; past it a login is refused as busy \
         (31003, the client retries) (0: no bound)"),
    setting!(@row "janus", Shape::List, false,
        "SFU mode: group-call media through this Janus, the base URL of its HTTP API, e.g. \
         http://127.0.0.1:8088/janus (without it group calls are a peer-to-peer mesh); several, \
         comma-separated (a TOML array in the file), share the secrets below and each call's \
         room goes on one of them (docs/sfu.md, \"Several Janus servers\")",
        |_| None, |c, r| { c.janus = Some(janus_list(r.list())?); Ok(()) }),
    setting!(@row "janus_api_secret", Shape::Value, false,
        "`api_secret` of janus.jcfg (required with --janus outside --dev)",
        |_| None, |c, r| { janus_part(c)?.api_secret = Some(r.value()?); Ok(()) }),
    setting!(@row "janus_admin_key", Shape::Value, false,
        "`admin_key` of janus.plugin.videoroom.jcfg (required with --janus outside --dev)",
        |_| None, |c, r| { janus_part(c)?.admin_key = Some(r.value()?); Ok(()) }),
    setting!(@row "janus_dead_after_ms", Shape::Value, true,
    "SFU mode: a Janus that answered nothing this long is given up and its calls move to \
     another, ms (tests)",
    |_| None, |c, r| {
        janus_part(c)?.dead_after = Duration::from_millis(r.value()?);
        Ok(())
    }),
];

/// `--janus A,B`: the first is `url`, the others `more` (secrets shared, set by their own rows).
fn janus_list(urls: Vec<String>) -> Result<crate::sfu::JanusSettings, String> {
    let mut urls = urls
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    let first = urls.next().ok_or("expected at least one Janus URL")?;
    let mut j = crate::sfu::JanusSettings::new(first);
    j.more = urls.collect();
    Ok(j)
}

/// The Janus settings a secret belongs to: a secret without a URL is a mistake, not a no-op.
fn janus_part(c: &mut Config) -> Result<&mut crate::sfu::JanusSettings, String> {
    c.janus.as_mut().ok_or_else(|| {
        "set but no Janus URL: add --janus URL (RCALL_JANUS, or `janus` in the config file) to \
         turn SFU mode on"
            .to_owned()
    })
}

/// `--config FILE` / `RCALL_CONFIG`: where the file layer comes from.
const CONFIG_FILE_HELP: &str =
    "TOML config file: the keys are the flags' names with `_` (e.g. app_key, token_ttl_secs), \
     plus [[apps]] tables (key, secret, push_webhook_url) for more apps [env: RCALL_CONFIG]";

/// The binary's command line: every [`SETTINGS`] row as a flag, plus `--config`. Parsing only
/// collects what was given; [`Cli::into_config`] layers it over the environment and the file.
#[derive(Debug, Clone)]
pub struct Cli {
    matches: clap::ArgMatches,
}

impl Cli {
    /// The command line's definition (`--help` lists each setting's variable and default).
    pub fn command() -> clap::Command {
        let defaults = Config::new("", "");
        clap::Command::new("rcall-server")
            .version(env!("CARGO_PKG_VERSION"))
            .about(
                "rcall's self-hosted signalling server: WebSocket signalling for the rcall SDK, \
                 a RongCloud-compatible Server API, TURN credentials, Prometheus metrics, and \
                 static hosting of the SDK and demo pages.\n\nEvery option can also come from \
                 an environment variable (shown as [env: …]) or from the TOML file given by \
                 --config; a flag beats the environment, which beats the file.",
            )
            .arg(
                clap::Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .help(CONFIG_FILE_HELP),
            )
            .args(SETTINGS.iter().map(|s| s.arg(&defaults)))
    }

    /// Parses the process's arguments; on a usage error (or `--help`) prints and exits.
    pub fn parse() -> Self {
        Cli {
            matches: Self::command().get_matches(),
        }
    }

    /// Parses `args` (the first is the program name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Ok(Cli {
            matches: Self::command().try_get_matches_from(args)?,
        })
    }

    /// Builds the config from the flags, the process environment and the config file.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with_env(&|name| std::env::var(name).ok())
    }

    /// Builds the config with `env` as the environment (tests pass a map, never the real one):
    /// each setting from its flag, else its variable, else the file, else [`Config::new`]'s
    /// default. An empty value counts as not given. In dev mode missing credentials fall back
    /// to the well-known dev pair; otherwise they are an error.
    pub fn into_config_with_env(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file_path = self
            .matches
            .get_one::<String>("config")
            .cloned()
            .or_else(|| env("RCALL_CONFIG"))
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from);
        let (mut file, apps) = match &file_path {
            Some(p) => load_file(p)?,
            None => Default::default(),
        };
        let mut c = Config::new("", "");
        c.extra_apps = apps;
        for s in SETTINGS {
            let names = format!("--{} / {}", s.flag(), s.env());
            let invalid = |e: String| ConfigError::Invalid(format!("{names}: {e}"));
            let raw = match s.flag_value(&self.matches) {
                Some(r) => Some(r),
                None => s.env_value(env).map_err(invalid)?,
            };
            let (raw, in_file) = match (raw, file.remove(s.key)) {
                (Some(r), _) => (Some(r), false),
                (None, Some(v)) => (
                    s.file_value(v)
                        .map_err(|e| file_error(&file_path, s.key, e))?,
                    true,
                ),
                (None, None) => (None, false),
            };
            if let Some(raw) = raw {
                (s.apply)(&mut c, raw).map_err(|e| match in_file {
                    true => file_error(&file_path, s.key, e),
                    false => invalid(e),
                })?;
            }
        }
        if let Some(key) = file.keys().next() {
            return Err(file_error(
                &file_path,
                key,
                "unknown key (the keys are the flags' names with `_`; see --help)".into(),
            ));
        }
        if c.dev {
            if c.app_key.is_empty() {
                c.app_key = DEV_APP_KEY.to_owned();
            }
            if c.app_secret.is_empty() {
                c.app_secret = DEV_APP_SECRET.to_owned();
            }
        }
        c.validate()?;
        Ok(c)
    }
}

fn file_error(path: &Option<PathBuf>, key: &str, message: String) -> ConfigError {
    ConfigError::File {
        path: path.clone().unwrap_or_default(),
        message: format!("`{key}`: {message}"),
    }
}

/// The config file as its keys, and its `[[apps]]`.
fn load_file(path: &Path) -> Result<(toml::Table, Vec<AppCredentials>), ConfigError> {
    let error = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
    let apps = match table.remove("apps") {
        Some(v) => v.try_into().map_err(|e| error(format!("`apps`: {e}")))?,
        None => Vec::new(),
    };
    Ok((table, apps))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rcall-server").chain(args.iter().copied())).unwrap()
    }

    /// Builds with an empty environment: the machine's real `RCALL_*` never leak in.
    fn build(args: &[&str]) -> Result<Config, ConfigError> {
        parse(args).into_config_with_env(&|_| None)
    }

    fn build_env(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args).into_config_with_env(&move |k| map.get(k).cloned())
    }

    #[test]
    fn dev_mode_fills_in_dev_credentials() {
        let c = build(&["--dev"]).unwrap();
        assert_eq!(c.app_key, DEV_APP_KEY);
        assert_eq!(c.app_secret, DEV_APP_SECRET);
        assert!(c.dev);
    }

    #[test]
    fn dev_mode_keeps_given_credentials() {
        let c = build(&["--dev", "--app-key", "k", "--app-secret", "s"]).unwrap();
        assert_eq!((c.app_key.as_str(), c.app_secret.as_str()), ("k", "s"));
    }

    #[test]
    fn missing_credentials_without_dev_is_an_error() {
        assert_eq!(build(&[]).unwrap_err(), ConfigError::MissingAppKey);
        assert_eq!(
            build(&["--app-key", "k"]).unwrap_err(),
            ConfigError::MissingAppSecret
        );
        let c = build(&[
            "--app-key",
            "k",
            "--app-secret",
            "sixteen-byte-secret",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert!(!c.dev);
        assert_eq!(c.listen.port(), 0);
    }

    #[test]
    fn env_fills_in_and_flags_win() {
        let vars = [
            ("RCALL_APP_KEY", "env-key"),
            ("RCALL_APP_SECRET", "env-secret"),
            ("RCALL_LISTEN", "127.0.0.1:9999"),
            ("RCALL_RATE_LIMIT_PER_SEC", "7"),
            ("RCALL_TURN_URLS", "turn:a:3478, turn:b:3478"),
            ("RCALL_TURN_SECRET", "ts"),
            ("RCALL_DEV", "true"),
        ];
        let c = build_env(&[], &vars).unwrap();
        assert_eq!(c.app_key, "env-key");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.rate_limit_per_sec, 7);
        assert_eq!(c.turn_urls, vec!["turn:a:3478", "turn:b:3478"]);
        assert!(c.dev);
        let c = build_env(&["--app-key", "flag-key", "--listen", "127.0.0.1:1"], &vars).unwrap();
        assert_eq!(c.app_key, "flag-key");
        assert_eq!(c.app_secret, "env-secret");
        assert_eq!(c.listen.port(), 1);
        assert!(build_env(
            &["--app-key", "k", "--app-secret", "s"],
            &[("RCALL_LISTEN", "nope")]
        )
        .is_err());
    }

    #[test]
    fn push_webhooks_per_app_from_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rcall.toml");
        std::fs::write(
            &path,
            "dev = true\npush_webhook_url = \"http://file/push\"\npush_retry_base_ms = 250\n\
             push_timeout_ms = 900\n[[apps]]\nkey = \"k2\"\nsecret = \"s2\"\n\
             push_webhook_url = \"http://10.0.0.6:9000/push?token=secret\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let c = build(&["--config", file]).unwrap();
        let apps = c.apps();
        assert_eq!(
            apps[0].push_webhook_url.as_deref(),
            Some("http://file/push")
        );
        assert_eq!(
            apps[1].push_webhook_url.as_deref(),
            Some("http://10.0.0.6:9000/push?token=secret")
        );
        assert_eq!(c.push_retry_base, Duration::from_millis(250));
        assert_eq!(c.push_timeout, Duration::from_millis(900));
        assert_eq!(c.push_max_attempts, DEFAULT_PUSH_MAX_ATTEMPTS);
        assert!(
            !format!("{c:?}").contains("token=secret"),
            "queries are redacted"
        );
        let vars = [
            ("RCALL_PUSH_WEBHOOK_URL", "http://env/push"),
            ("RCALL_PUSH_MAX_ATTEMPTS", "3"),
        ];
        let c = build_env(&["--config", file], &vars).unwrap();
        assert_eq!(c.push_webhook_url.as_deref(), Some("http://env/push"));
        assert_eq!(c.push_max_attempts, 3);
        let c = build_env(
            &[
                "--config",
                file,
                "--push-webhook-url",
                "http://flag/p",
                "--push-queue-max",
                "5",
            ],
            &vars,
        )
        .unwrap();
        assert_eq!(
            (c.push_webhook_url.as_deref(), c.push_queue_max),
            (Some("http://flag/p"), 5)
        );
        // Plain HTTP only; garbage and zero sizes are refused.
        for bad in ["https://x/push", "not a url", "ftp://x/"] {
            let e = build(&["--dev", "--push-webhook-url", bad]).unwrap_err();
            assert!(e.to_string().contains("push webhook"), "{bad}: {e}");
        }
        assert!(build(&["--dev", "--push-queue-max", "0"]).is_err());
    }

    #[test]
    fn file_is_the_lowest_layer_and_adds_apps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rcall.toml");
        std::fs::write(
            &path,
            r#"
app_key = "file-key"
app_secret = "file-secret-0123456789"
listen = "127.0.0.1:7000"
offline_max_per_user = 5
turn_urls = ["turn:127.0.0.1:3478"]
turn_secret = "file-turn"
log_format = "json"
[[apps]]
key = "second"
secret = "second-secret-0123456789"
"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = build(&["--config", p]).unwrap();
        assert_eq!(c.app_key, "file-key");
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.offline_max_per_user, 5);
        assert_eq!(c.turn_secret.as_deref(), Some("file-turn"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.apps().len(), 2);
        assert_eq!(c.apps()[1].key, "second");
        // env beats file, flag beats env
        let c = build_env(
            &["--config", p, "--listen", "127.0.0.1:7002"],
            &[
                ("RCALL_LISTEN", "127.0.0.1:7001"),
                ("RCALL_APP_KEY", "env-key"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7002);
        assert_eq!(c.app_key, "env-key");
        // the file can also come from RCALL_CONFIG
        let c = build_env(&[], &[("RCALL_CONFIG", p)]).unwrap();
        assert_eq!(c.app_key, "file-key");
    }

    #[test]
    fn bad_files_and_duplicate_apps_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let err = build(&["--config", path.to_str().unwrap(), "--dev"]).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        assert!(build(&["--config", "/nonexistent/rcall.toml", "--dev"]).is_err());
        std::fs::write(&path, "[[apps]]\nkey = \"rcall-dev-app\"\nsecret = \"x\"\n").unwrap();
        assert!(matches!(
            build(&["--config", path.to_str().unwrap(), "--dev"]).unwrap_err(),
            ConfigError::Invalid(_)
        ));
    }

    #[test]
    fn limit_flags_env_and_file() {
        let c = build(&["--dev"]).unwrap();
        assert_eq!(c.max_connections_per_user, DEFAULT_MAX_CONNECTIONS_PER_USER);
        assert_eq!(c.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        let c = build_env(
            &[
                "--dev",
                "--max-connections-per-user",
                "3",
                "--header-read-timeout-secs",
                "2",
                "--user-rate-per-sec",
                "9",
            ],
            &[
                ("RCALL_MAX_UNAUTHENTICATED_PER_IP", "7"),
                ("RCALL_OFFLINE_MAX_BYTES", "1000"),
                ("RCALL_MAX_CONNECTIONS_PER_USER", "99"),
            ],
        )
        .unwrap();
        assert_eq!(c.max_connections_per_user, 3);
        assert_eq!(c.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.user_rate_per_sec, 9);
        assert_eq!(c.max_unauthenticated_per_ip, 7);
        assert_eq!(c.offline_max_bytes, 1000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.toml");
        std::fs::write(
            &path,
            "pre_auth_frame_bytes = 2048\nreplay_page_messages = 8\nstore_queue_max = 5\n\
             offline_quota_window_secs = 60\n",
        )
        .unwrap();
        let c = build(&["--dev", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.pre_auth_frame_bytes, 2048);
        assert_eq!(c.replay_page_messages, 8);
        assert_eq!(c.store_queue_max, 5);
        assert_eq!(c.offline_quota_window, Duration::from_secs(60));
        assert!(build(&["--dev", "--max-connections-per-device", "0"]).is_err());
    }

    /// Tests shorten the cluster's Redis timings (`short_redis_timings`); a binary takes them
    /// as hidden flags too.
    #[test]
    fn cluster_redis_timings_come_from_flags_and_must_be_positive() {
        let c = build(&["--dev"]).unwrap();
        assert_eq!(
            (
                c.redis_response_timeout,
                c.route_retry_for,
                c.route_keepalive
            ),
            (
                crate::cluster::RESPONSE_TIMEOUT,
                crate::ws::ROUTE_RETRY_FOR,
                crate::ws::ROUTE_KEEPALIVE
            )
        );
        let c = build(&[
            "--dev",
            "--redis-response-timeout-ms",
            "700",
            "--route-retry-ms",
            "2000",
            "--route-keepalive-ms",
            "300",
        ])
        .unwrap();
        assert_eq!(
            (
                c.redis_response_timeout,
                c.route_retry_for,
                c.route_keepalive
            ),
            (
                Duration::from_millis(700),
                Duration::from_millis(2000),
                Duration::from_millis(300)
            )
        );
        for flag in [
            "--redis-response-timeout-ms",
            "--route-retry-ms",
            "--route-keepalive-ms",
        ] {
            let e = build(&["--dev", flag, "0"]).unwrap_err();
            assert!(e.to_string().contains("must be > 0"), "{flag}: {e}");
        }
    }

    #[test]
    fn node_heartbeat_comes_from_flag_env_or_file_and_must_be_positive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beat.toml");
        std::fs::write(&path, "node_heartbeat_ms = 300\n").unwrap();
        let file = path.to_str().unwrap();
        assert_eq!(
            build(&["--dev"]).unwrap().node_heartbeat,
            crate::cluster::presence::DEFAULT_HEARTBEAT
        );
        let c = build(&["--dev", "--config", file]).unwrap();
        assert_eq!(c.node_heartbeat, Duration::from_millis(300));
        let env = [("RCALL_NODE_HEARTBEAT_MS", "400")];
        let c = build_env(&["--dev", "--config", file], &env).unwrap();
        assert_eq!(c.node_heartbeat, Duration::from_millis(400));
        let c = build_env(&["--dev", "--node-heartbeat-ms", "500"], &env).unwrap();
        assert_eq!(c.node_heartbeat, Duration::from_millis(500));
        let e = build(&["--dev", "--node-heartbeat-ms", "0"]).unwrap_err();
        assert!(e.to_string().contains("heartbeat"), "{e}");
    }

    #[test]
    fn liveness_timings_come_from_flag_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liveness.toml");
        std::fs::write(&path, "ping_interval_ms = 2000\ndead_after_ms = 7000\n").unwrap();
        let file = path.to_str().unwrap();
        let c = build(&["--dev", "--config", file]).unwrap();
        assert_eq!(c.ping_interval, Duration::from_millis(2000));
        assert_eq!(c.dead_after, Duration::from_millis(7000));
        // Environment beats the file, a flag beats the environment.
        let c = build_env(
            &["--dev", "--config", file, "--dead-after-ms", "9000"],
            &[
                ("RCALL_PING_INTERVAL_MS", "3000"),
                ("RCALL_DEAD_AFTER_MS", "8000"),
            ],
        )
        .unwrap();
        assert_eq!(c.ping_interval, Duration::from_millis(3000));
        assert_eq!(c.dead_after, Duration::from_millis(9000));
        // The file's values are checked like the flags' (dead_after must exceed the interval).
        std::fs::write(&path, "ping_interval_ms = 5000\ndead_after_ms = 5000\n").unwrap();
        assert!(build(&["--dev", "--config", file]).is_err());
        let c = build(&["--dev"]).unwrap();
        assert_eq!(
            (c.ping_interval, c.dead_after),
            (crate::ws::PING_INTERVAL, crate::ws::DEAD_AFTER)
        );
    }

    #[test]
    fn short_secrets_are_refused_outside_dev() {
        let err = build(&["--app-key", "k", "--app-secret", "fifteen-bytes!!"]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid(m) if m.contains("at least 16")),
            "{err}"
        );
        assert!(build(&["--app-key", "k", "--app-secret", "sixteen-bytes!!!"]).is_ok());
        // --dev keeps short secrets (and the well-known dev secret) working.
        assert!(build(&["--dev", "--app-key", "k", "--app-secret", "s"]).is_ok());
        let mut c = Config::new("k", "0123456789abcdef");
        c.extra_apps.push(AppCredentials {
            key: "k2".into(),
            secret: "short".into(),
            push_webhook_url: None,
        });
        assert!(c.validate().is_err());
    }

    #[test]
    fn turn_urls_need_a_secret() {
        assert!(build(&["--dev", "--turn-url", "turn:x"]).is_err());
        let c = build(&["--dev", "--turn-url", "turn:x", "--turn-secret", "s"]).unwrap();
        assert_eq!(c.turn_urls, vec!["turn:x"]);
    }

    #[test]
    fn janus_settings_from_flag_env_or_file() {
        assert!(build(&["--dev"]).unwrap().janus.is_none(), "unset: mesh");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("janus.toml");
        std::fs::write(
            &path,
            "app_key = \"k\"\napp_secret = \"0123456789abcdef\"\n\
             janus = \"http://10.0.0.9:8088/janus\"\n\
             janus_api_secret = \"file-secret\"\njanus_admin_key = \"file-key\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let j = build(&["--config", file]).unwrap().janus.unwrap();
        assert_eq!(j.url, "http://10.0.0.9:8088/janus");
        assert_eq!(j.api_secret.as_deref(), Some("file-secret"));
        assert_eq!(j.admin_key.as_deref(), Some("file-key"));
        // env over file, flag over env
        let env = [
            ("RCALL_JANUS", "http://127.0.0.1:8088/janus"),
            ("RCALL_JANUS_API_SECRET", "env-secret"),
        ];
        let j = build_env(&["--config", file], &env).unwrap().janus.unwrap();
        assert_eq!(j.url, "http://127.0.0.1:8088/janus");
        assert_eq!(j.api_secret.as_deref(), Some("env-secret"));
        assert_eq!(j.admin_key.as_deref(), Some("file-key"));
        let c = build_env(
            &[
                "--config",
                file,
                "--janus-admin-key",
                "flag-key",
                "--janus",
                "http://j:1/janus",
            ],
            &env,
        )
        .unwrap();
        let j = c.janus.clone().unwrap();
        assert_eq!(
            (j.url.as_str(), j.admin_key.as_deref()),
            ("http://j:1/janus", Some("flag-key"))
        );
        // Secrets never show in Debug output.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("env-secret") && !shown.contains("flag-key"),
            "{shown}"
        );
        // Outside --dev both secrets are required; --dev may talk to an open Janus.
        let e = build(&[
            "--app-key",
            "k",
            "--app-secret",
            "0123456789abcdef",
            "--janus",
            "http://j/janus",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--janus-api-secret"), "{e}");
        assert!(build(&["--dev", "--janus", "http://j/janus"]).is_ok());
        // A secret without a URL is a mistake, not a silent no-op.
        let e = build(&["--dev", "--janus-api-secret", "s"]).unwrap_err();
        assert!(e.to_string().contains("--janus URL"), "{e}");
        // Bad URLs name the option and say what to give.
        for (url, says) in [
            ("ws://127.0.0.1:8188", "HTTP API"),
            ("https://j/janus", "https://"),
            ("127.0.0.1:8088", "http://127.0.0.1:8088/janus"),
        ] {
            let e = build(&["--dev", "--janus", url]).unwrap_err();
            let m = e.to_string();
            assert!(
                m.contains("--janus / RCALL_JANUS") && m.contains(says),
                "{url}: {m}"
            );
        }
    }

    #[test]
    fn the_janus_give_up_wait_is_a_hidden_setting() {
        let janus = |args: &[&str]| {
            let mut all = vec!["--dev", "--janus", "http://j/janus"];
            all.extend(args);
            build(&all).map(|c| c.janus.unwrap().dead_after)
        };
        assert_eq!(janus(&[]).unwrap(), crate::sfu::DEFAULT_DEAD_AFTER);
        assert_eq!(
            janus(&["--janus-dead-after-ms", "1500"]).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(janus(&["--janus-dead-after-ms", "0"]).is_err());
        let e = build(&["--dev", "--janus-dead-after-ms", "1500"]).unwrap_err();
        assert!(e.to_string().contains("--janus URL"), "{e}");
        let row = SETTINGS.iter().find(|s| s.key == "janus_dead_after_ms");
        assert!(row.unwrap().hidden, "a knob for tests, not in --help");
    }

    #[test]
    fn several_janus_from_a_flag_list_env_or_toml_array() {
        let urls = |c: Config| {
            let j = c.janus.unwrap();
            j.urls().map(str::to_owned).collect::<Vec<_>>()
        };
        let two = ["http://j1:8088/janus", "http://j2:8088/janus"];
        let c = build(&[
            "--dev",
            "--janus",
            "http://j1:8088/janus,http://j2:8088/janus",
        ]);
        assert_eq!(urls(c.unwrap()), two);
        let c = build(&[
            "--dev",
            "--janus",
            "http://j1:8088/janus",
            "--janus",
            "http://j2:8088/janus",
        ]);
        assert_eq!(urls(c.unwrap()), two);
        let env = [("RCALL_JANUS", "http://j1:8088/janus, http://j2:8088/janus")];
        assert_eq!(urls(build_env(&["--dev"], &env).unwrap()), two);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("janus.toml");
        std::fs::write(
            &path,
            "janus = [\"http://j1:8088/janus\", \"http://j2:8088/janus\"]\n\
             janus_api_secret = \"s\"\n",
        )
        .unwrap();
        let c = build(&["--dev", "--config", path.to_str().unwrap()]).unwrap();
        let j = c.janus.clone().unwrap();
        assert_eq!(j.api_secret.as_deref(), Some("s"), "secrets shared by all");
        assert_eq!(urls(c), two);
        // A URL twice, or a bad one anywhere in the list, is refused with what to fix.
        let e = build(&[
            "--dev",
            "--janus",
            "http://j1:8088/janus,http://j1:8088/janus/",
        ]);
        assert!(e.unwrap_err().to_string().contains("listed twice"));
        let e = build(&["--dev", "--janus", "http://j1:8088/janus,ws://j2:8188"]);
        assert!(e.unwrap_err().to_string().contains("HTTP API"));
    }

    #[test]
    fn redis_url_from_flag_env_or_file() {
        assert!(
            build(&["--dev"]).unwrap().redis.is_none(),
            "unset: single node"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.toml");
        std::fs::write(&path, "redis = \"unix:///run/redis/redis.sock\"\n").unwrap();
        let file = path.to_str().unwrap();
        let shown = |c: Config| c.redis.map(|u| u.to_string());
        assert_eq!(
            shown(build(&["--dev", "--config", file]).unwrap()).as_deref(),
            Some("unix:///run/redis/redis.sock")
        );
        let env = [("RCALL_REDIS", "redis://127.0.0.1:6380/2")];
        let c = build_env(&["--dev", "--config", file], &env).unwrap();
        assert_eq!(shown(c).as_deref(), Some("redis://127.0.0.1:6380/2"));
        let c = build_env(
            &[
                "--dev",
                "--config",
                file,
                "--redis",
                "redis+unix:///tmp/r.sock?db=1",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(shown(c).as_deref(), Some("unix:///tmp/r.sock?db=1"));
        // A bad URL stops startup with a message naming the option; no password is echoed.
        let e = build(&["--dev", "--redis", "rediss://:pw-123@h/0"]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("--redis / RCALL_REDIS") && m.contains("TLS"),
            "{m}"
        );
        assert!(!m.contains("pw-123"), "{m}");
        let e = build_env(&["--dev"], &[("RCALL_REDIS", "localhost:6379")]).unwrap_err();
        assert!(e.to_string().contains("redis://host:port/db"), "{e}");
        std::fs::write(&path, "redis = \"http://x\"\n").unwrap();
        assert!(build(&["--dev", "--config", file]).is_err());
        // Credentials stay out of the Debug output.
        let c = build(&["--dev", "--redis", "redis://:pw-123@h:1/0"]).unwrap();
        assert!(!format!("{c:?}").contains("pw-123"));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut c = Config::new("k", "super-secret-value");
        c.turn_secret = Some("turn-secret-value".into());
        c.extra_apps.push(AppCredentials {
            key: "k2".into(),
            secret: "another-secret".into(),
            push_webhook_url: None,
        });
        let s = format!("{c:?}");
        assert!(!s.contains("super-secret-value") && !s.contains("turn-secret-value"));
        assert!(!s.contains("another-secret"));
    }

    /// The names every flag, variable and file key had before the settings were declared in
    /// one table: each must still be a setting (README and docs list them).
    #[test]
    fn every_earlier_flag_variable_and_file_key_is_still_a_setting() {
        let keys = "listen app_key app_secret db dev sdk_dir web_dir token_ttl_secs \
            auth_timeout_ms max_frame_bytes api_timestamp_window_secs rate_limit_per_sec \
            rate_limit_burst max_connections_per_app offline_ttl_secs offline_max_per_user \
            resume_window_secs resume_window_messages turn_urls turn_secret turn_ttl_secs \
            stun_urls metrics metrics_token shutdown_timeout_secs log_format \
            header_read_timeout_secs max_unauthenticated max_unauthenticated_per_ip \
            pre_auth_frame_bytes max_connections_per_user max_connections_per_device \
            user_rate_per_sec user_rate_burst replay_page_messages offline_quota_per_sender \
            offline_quota_window_secs offline_max_bytes store_queue_max push_webhook_url \
            push_queue_max push_max_attempts push_retry_base_ms push_timeout_ms ping_interval_ms \
            dead_after_ms redis node_heartbeat_ms janus janus_api_secret janus_admin_key";
        let flags = "listen app-key app-secret db dev sdk-dir web-dir token-ttl-secs \
            max-frame-bytes api-timestamp-window-secs rate-limit-per-sec rate-limit-burst \
            max-connections-per-app offline-ttl-secs offline-max-per-user resume-window-secs \
            turn-url turn-secret turn-ttl-secs stun-url no-metrics metrics-token \
            shutdown-timeout-secs log-format header-read-timeout-secs max-unauthenticated \
            max-unauthenticated-per-ip max-connections-per-user max-connections-per-device \
            user-rate-per-sec user-rate-burst offline-quota-per-sender offline-max-bytes \
            push-webhook-url push-queue-max push-max-attempts push-retry-base-ms \
            ping-interval-ms dead-after-ms left-grace-ms lost-grace-ms redis node-heartbeat-ms \
            janus janus-api-secret janus-admin-key";
        let envs: Vec<String> = SETTINGS.iter().map(Setting::env).collect();
        for key in keys.split_whitespace() {
            assert!(SETTINGS.iter().any(|s| s.key == key), "file key {key}");
        }
        for flag in flags.split_whitespace() {
            assert!(SETTINGS.iter().any(|s| s.flag() == flag), "--{flag}");
        }
        let vars = "API_TIMESTAMP_WINDOW_SECS APP_KEY APP_SECRET DB DEAD_AFTER_MS DEV \
            HEADER_READ_TIMEOUT_SECS JANUS JANUS_ADMIN_KEY JANUS_API_SECRET LEFT_GRACE_MS LISTEN \
            LOG_FORMAT MAX_CONNECTIONS_PER_APP MAX_CONNECTIONS_PER_DEVICE MAX_CONNECTIONS_PER_USER \
            MAX_FRAME_BYTES MAX_UNAUTHENTICATED MAX_UNAUTHENTICATED_PER_IP METRICS_TOKEN \
            NODE_HEARTBEAT_MS NO_METRICS OFFLINE_MAX_BYTES OFFLINE_MAX_PER_USER \
            OFFLINE_QUOTA_PER_SENDER OFFLINE_TTL_SECS PING_INTERVAL_MS PUSH_MAX_ATTEMPTS \
            PUSH_QUEUE_MAX PUSH_RETRY_BASE_MS PUSH_WEBHOOK_URL RATE_LIMIT_BURST RATE_LIMIT_PER_SEC \
            REDIS RESUME_WINDOW_SECS SDK_DIR SHUTDOWN_TIMEOUT_SECS STUN_URLS TOKEN_TTL_SECS \
            TURN_SECRET TURN_TTL_SECS TURN_URLS USER_RATE_BURST USER_RATE_PER_SEC WEB_DIR";
        for var in vars.split_whitespace() {
            assert!(envs.contains(&format!("RCALL_{var}")), "RCALL_{var}");
        }
        let mut seen = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(
                seen.insert(s.key) && seen.insert(s.env().leak()),
                "{} twice",
                s.key
            );
        }
    }

    /// Every numeric setting, one at a time, from the file, then the environment over it,
    /// then a flag over both: `show` reads the value back from the built config.
    #[test]
    fn each_numeric_setting_layers_flag_over_env_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.toml");
        let file = path.to_str().unwrap();
        let defaults = Config::new("", "");
        let mut checked = 0;
        for s in SETTINGS {
            let Some(Ok(d)) = (s.show)(&defaults).map(|d| d.parse::<u64>()) else {
                continue;
            };
            let (f, e, g) = (
                (d + 1).to_string(),
                (d + 2).to_string(),
                (d + 3).to_string(),
            );
            std::fs::write(&path, format!("{} = {f}\n", s.key)).unwrap();
            let flag = format!("--{}", s.flag());
            let env = [(s.env(), e.clone())];
            let env = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let shown = |args: &[&str], with_env: bool| {
                let args: Vec<&str> = ["--dev", "--config", file]
                    .iter()
                    .chain(args)
                    .copied()
                    .collect();
                let c = if with_env {
                    parse(&args).into_config_with_env(&env)
                } else {
                    build(&args)
                };
                (s.show)(&c.unwrap_or_else(|e| panic!("{}: {e}", s.key))).unwrap()
            };
            assert_eq!(shown(&[], false), f, "{} from the file", s.key);
            assert_eq!(shown(&[], true), e, "{} from the environment", s.key);
            assert_eq!(shown(&[&flag, &g], true), g, "{} from the flag", s.key);
            checked += 1;
        }
        assert!(checked > 30, "{checked} numeric settings");
    }

    #[test]
    fn other_shapes_layer_flag_over_env_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shapes.toml");
        std::fs::write(
            &path,
            "db = \"file.db\"\nlog_format = \"json\"\nmetrics = false\n\
             stun_urls = [\"stun:file\"]\nmetrics_token = \"file-token\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let c = build(&["--dev", "--config", file]).unwrap();
        assert_eq!(c.db_path, PathBuf::from("file.db"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.metrics);
        assert_eq!(c.stun_urls, vec!["stun:file"]);
        assert_eq!(c.metrics_token.as_deref(), Some("file-token"));
        let env = [
            ("RCALL_DB", "env.db"),
            ("RCALL_LOG_FORMAT", "text"),
            ("RCALL_NO_METRICS", "no"),
            ("RCALL_STUN_URLS", "stun:e1,stun:e2"),
            ("RCALL_METRICS_TOKEN", "env-token"),
        ];
        let c = build_env(&["--dev", "--config", file], &env).unwrap();
        assert_eq!(c.db_path, PathBuf::from("env.db"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.metrics, "RCALL_NO_METRICS=no beats metrics = false");
        assert_eq!(c.stun_urls, vec!["stun:e1", "stun:e2"]);
        assert_eq!(c.metrics_token.as_deref(), Some("env-token"));
        let c = build_env(
            &[
                "--dev",
                "--config",
                file,
                "--db",
                "flag.db",
                "--log-format",
                "json",
                "--no-metrics",
                "--stun-url",
                "stun:f1",
                "--stun-url",
                "stun:f2",
                "--metrics-token",
                "flag-token",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.db_path, PathBuf::from("flag.db"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.metrics);
        assert_eq!(c.stun_urls, vec!["stun:f1", "stun:f2"]);
        assert_eq!(c.metrics_token.as_deref(), Some("flag-token"));
        // Wrong types and values name the setting and where it came from.
        std::fs::write(&path, "dev = true\nmetrics = \"yes\"\n").unwrap();
        let e = build(&["--config", file]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::File { message, .. } if message.contains("`metrics`")),
            "{e}"
        );
        let e = build_env(&["--dev"], &[("RCALL_TOKEN_TTL_SECS", "soon")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("--token-ttl-secs / RCALL_TOKEN_TTL_SECS"),
            "{e}"
        );
        let e = build(&["--dev", "--log-format", "xml"]).unwrap_err();
        assert!(e.to_string().contains("expected text or json"), "{e}");
    }

    #[test]
    fn help_lists_each_settings_variable_and_default() {
        let help = Cli::command().render_long_help().to_string();
        let defaults = Config::new("", "");
        for s in SETTINGS.iter().filter(|s| !s.hidden) {
            let line = help
                .lines()
                .skip_while(|l| {
                    !l.contains(&format!("--{} ", s.flag()))
                        && !l.ends_with(&format!("--{}", s.flag()))
                })
                .take(4)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                line.contains(&format!("[env: {}]", s.env())),
                "--{}:\n{help}",
                s.flag()
            );
            if let Some(d) = (s.show)(&defaults) {
                assert!(
                    line.contains(&format!("[default: {d}]")),
                    "--{}: {line}",
                    s.flag()
                );
            }
        }
        for shown in [
            "[default: 127.0.0.1:8080]",
            "[default: 2592000]",
            "[default: rcall.db]",
            "[env: RCALL_CONFIG]",
        ] {
            assert!(help.contains(shown), "{shown}:\n{help}");
        }
        assert!(!help.contains("--dead-after-ms"), "test knobs stay hidden");
    }
}
