//! Server configuration: the [`Config`] the library runs with, and how the binary builds one
//! from three layers — a TOML file (`--config`), `RCALL_*` environment variables, and flags —
//! each overriding the one before (flag > env > file > default).
//!
//! Kept in the library so the layering rules are testable without spawning a process, and
//! without depending on the machine's real environment: [`Cli::into_config_with_env`] takes the
//! environment as a lookup function.

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
    /// SFU mode: group-call media through this Janus (`--janus`, issue 12; [`crate::sfu`]).
    /// None: group calls stay a peer-to-peer mesh.
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
            crate::sfu::JanusSettings::check_url(&j.url)
                .map_err(|e| ConfigError::Invalid(format!("--janus / RCALL_JANUS: {e}")))?;
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

/// The config file (TOML). Every key is optional; durations are in seconds unless the name says
/// `_ms`. Unknown keys are an error (a typo must not silently fall back to a default).
///
/// ```toml
/// listen = "0.0.0.0:8080"
/// app_key = "my-app"
/// app_secret = "…"
/// db = "/var/lib/rcall/rcall.db"
/// turn_urls = ["turn:turn.example.com:3478?transport=udp"]
/// turn_secret = "…"
/// push_webhook_url = "http://10.0.0.5:9000/rcall/push"   # offline pushes (crate::push)
/// redis = "unix:///run/redis/redis.sock"   # cluster mode (crate::cluster); or redis://host:6379/0
/// node_heartbeat_ms = 1000   # cluster mode: a node silent for 5 beats is dead
/// janus = "http://127.0.0.1:8088/janus"      # SFU mode for group calls (crate::sfu)
/// janus_api_secret = "…"                     # janus.jcfg api_secret
/// janus_admin_key = "…"                      # janus.plugin.videoroom.jcfg admin_key
/// [[apps]]            # more tenants
/// key = "other-app"
/// secret = "…"
/// push_webhook_url = "http://10.0.0.6:9000/push"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub app_key: Option<String>,
    pub app_secret: Option<String>,
    pub db: Option<PathBuf>,
    pub dev: Option<bool>,
    pub sdk_dir: Option<PathBuf>,
    pub web_dir: Option<PathBuf>,
    pub token_ttl_secs: Option<u64>,
    pub auth_timeout_ms: Option<u64>,
    pub max_frame_bytes: Option<usize>,
    pub api_timestamp_window_secs: Option<u64>,
    pub rate_limit_per_sec: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    pub max_connections_per_app: Option<usize>,
    pub offline_ttl_secs: Option<u64>,
    pub offline_max_per_user: Option<usize>,
    pub resume_window_secs: Option<u64>,
    pub resume_window_messages: Option<usize>,
    pub turn_urls: Option<Vec<String>>,
    pub turn_secret: Option<String>,
    pub turn_ttl_secs: Option<u64>,
    pub stun_urls: Option<Vec<String>>,
    pub metrics: Option<bool>,
    pub metrics_token: Option<String>,
    pub shutdown_timeout_secs: Option<u64>,
    pub log_format: Option<String>,
    pub header_read_timeout_secs: Option<u64>,
    pub max_unauthenticated: Option<usize>,
    pub max_unauthenticated_per_ip: Option<usize>,
    pub pre_auth_frame_bytes: Option<usize>,
    pub max_connections_per_user: Option<usize>,
    pub max_connections_per_device: Option<usize>,
    pub user_rate_per_sec: Option<u32>,
    pub user_rate_burst: Option<u32>,
    pub replay_page_messages: Option<usize>,
    pub offline_quota_per_sender: Option<u32>,
    pub offline_quota_window_secs: Option<u64>,
    pub offline_max_bytes: Option<u64>,
    pub store_queue_max: Option<usize>,
    pub push_webhook_url: Option<String>,
    pub push_queue_max: Option<usize>,
    pub push_max_attempts: Option<u32>,
    pub push_retry_base_ms: Option<u64>,
    pub push_timeout_ms: Option<u64>,
    pub ping_interval_ms: Option<u64>,
    pub dead_after_ms: Option<u64>,
    pub redis: Option<String>,
    pub node_heartbeat_ms: Option<u64>,
    pub janus: Option<String>,
    pub janus_api_secret: Option<String>,
    pub janus_admin_key: Option<String>,
    #[serde(default)]
    pub apps: Vec<AppCredentials>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// rcall's self-hosted signalling server: WebSocket signalling for the rcall SDK, a
/// RongCloud-compatible Server API, TURN credentials, Prometheus metrics, and static hosting of
/// the SDK and demo pages.
///
/// Every option can also come from an environment variable (shown as [env: …]) or from the
/// TOML file given by --config; a flag beats the environment, which beats the file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "rcall-server", version, about, long_about = None)]
pub struct Cli {
    /// TOML config file (keys: see the crate docs of rcall_server::config::FileConfig).
    /// [env: RCALL_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080] [env: RCALL_LISTEN]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// App key clients use (required unless --dev) [env: RCALL_APP_KEY]
    #[arg(long)]
    pub app_key: Option<String>,
    /// App secret that signs tokens and Server API calls (required unless --dev)
    /// [env: RCALL_APP_SECRET]
    #[arg(long)]
    pub app_secret: Option<String>,
    /// Path of the SQLite database file, created if missing [default: rcall.db] [env: RCALL_DB]
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Development mode: default app key/secret (rcall-dev-app / rcall-dev-secret) and the
    /// unauthenticated GET /dev/token?userId=… route. Never use in production. [env: RCALL_DEV]
    #[arg(long)]
    pub dev: bool,
    /// Directory served at /sdk/ (the built browser SDK) [default: npm/dist/cdn]
    /// [env: RCALL_SDK_DIR]
    #[arg(long)]
    pub sdk_dir: Option<PathBuf>,
    /// Directory served at / (demo web pages) [default: examples/web] [env: RCALL_WEB_DIR]
    #[arg(long)]
    pub web_dir: Option<PathBuf>,
    /// Validity of issued tokens, seconds [default: 2592000 (30 days)] [env: RCALL_TOKEN_TTL_SECS]
    #[arg(long)]
    pub token_ttl_secs: Option<u64>,
    /// Largest accepted WebSocket frame, bytes [default: 65536] [env: RCALL_MAX_FRAME_BYTES]
    #[arg(long)]
    pub max_frame_bytes: Option<usize>,
    /// Server API timestamp window (stale requests and replayed nonces), seconds [default: 300]
    /// [env: RCALL_API_TIMESTAMP_WINDOW_SECS]
    #[arg(long)]
    pub api_timestamp_window_secs: Option<u64>,
    /// Frames per second one connection may send, sustained [default: 100]
    /// [env: RCALL_RATE_LIMIT_PER_SEC]
    #[arg(long)]
    pub rate_limit_per_sec: Option<u32>,
    /// Burst of frames one connection may send [default: 200] [env: RCALL_RATE_LIMIT_BURST]
    #[arg(long)]
    pub rate_limit_burst: Option<u32>,
    /// Authenticated connections per app [default: 100000] [env: RCALL_MAX_CONNECTIONS_PER_APP]
    #[arg(long)]
    pub max_connections_per_app: Option<usize>,
    /// How long messages for offline users are kept, seconds [default: 604800 (7 days)]
    /// [env: RCALL_OFFLINE_TTL_SECS]
    #[arg(long)]
    pub offline_ttl_secs: Option<u64>,
    /// Most stored messages per offline user [default: 1000] [env: RCALL_OFFLINE_MAX_PER_USER]
    #[arg(long)]
    pub offline_max_per_user: Option<usize>,
    /// How long routed messages stay in memory for resuming devices, seconds [default: 60]
    /// [env: RCALL_RESUME_WINDOW_SECS]
    #[arg(long)]
    pub resume_window_secs: Option<u64>,
    /// TURN URL handed to clients; repeat or comma-separate for several
    /// [env: RCALL_TURN_URLS, comma-separated]
    #[arg(long = "turn-url", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// Secret shared with the TURN server (coturn static-auth-secret) [env: RCALL_TURN_SECRET]
    #[arg(long)]
    pub turn_secret: Option<String>,
    /// Validity of TURN credentials, seconds [default: 86400] [env: RCALL_TURN_TTL_SECS]
    #[arg(long)]
    pub turn_ttl_secs: Option<u64>,
    /// STUN URL handed to clients; repeat or comma-separate [env: RCALL_STUN_URLS]
    #[arg(long = "stun-url", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// Do not serve GET /metrics [env: RCALL_NO_METRICS]
    #[arg(long)]
    pub no_metrics: bool,
    /// Require `Authorization: Bearer <token>` on GET /metrics [env: RCALL_METRICS_TOKEN]
    #[arg(long)]
    pub metrics_token: Option<String>,
    /// Seconds open connections get to flush on shutdown [default: 10]
    /// [env: RCALL_SHUTDOWN_TIMEOUT_SECS]
    #[arg(long)]
    pub shutdown_timeout_secs: Option<u64>,
    /// Log format: text or json [default: text] [env: RCALL_LOG_FORMAT]; the level comes from
    /// RUST_LOG (default info)
    #[arg(long)]
    pub log_format: Option<String>,
    /// Seconds to send a complete HTTP request head; also the keep-alive idle timeout
    /// [default: 10] [env: RCALL_HEADER_READ_TIMEOUT_SECS]
    #[arg(long)]
    pub header_read_timeout_secs: Option<u64>,
    /// Connections not authenticated yet, server-wide [default: 8192]
    /// [env: RCALL_MAX_UNAUTHENTICATED]
    #[arg(long)]
    pub max_unauthenticated: Option<usize>,
    /// Connections not authenticated yet per source IP [default: 256]
    /// [env: RCALL_MAX_UNAUTHENTICATED_PER_IP]
    #[arg(long)]
    pub max_unauthenticated_per_ip: Option<usize>,
    /// Authenticated connections per user (all devices) [default: 16]
    /// [env: RCALL_MAX_CONNECTIONS_PER_USER]
    #[arg(long)]
    pub max_connections_per_user: Option<usize>,
    /// Authenticated connections per device [default: 4] [env: RCALL_MAX_CONNECTIONS_PER_DEVICE]
    #[arg(long)]
    pub max_connections_per_device: Option<usize>,
    /// Messages per second one user may send over all its connections [default: 200]
    /// [env: RCALL_USER_RATE_PER_SEC]
    #[arg(long)]
    pub user_rate_per_sec: Option<u32>,
    /// Burst of one user's messages [default: 400] [env: RCALL_USER_RATE_BURST]
    #[arg(long)]
    pub user_rate_burst: Option<u32>,
    /// Messages one sender may get stored for offline users per hour [default: 1000]
    /// [env: RCALL_OFFLINE_QUOTA_PER_SENDER]
    #[arg(long)]
    pub offline_quota_per_sender: Option<u32>,
    /// Payload bytes of all stored offline messages [default: 1073741824 (1 GiB)]
    /// [env: RCALL_OFFLINE_MAX_BYTES]
    #[arg(long)]
    pub offline_max_bytes: Option<u64>,
    /// The primary app's offline push webhook (http:// URL; invites for users with no online
    /// device are POSTed there, signed like RongCloud callbacks) [env: RCALL_PUSH_WEBHOOK_URL]
    #[arg(long)]
    pub push_webhook_url: Option<String>,
    /// Offline pushes queued or retrying at most [default: 10000] [env: RCALL_PUSH_QUEUE_MAX]
    #[arg(long)]
    pub push_queue_max: Option<usize>,
    /// Attempts per offline push [default: 6] [env: RCALL_PUSH_MAX_ATTEMPTS]
    #[arg(long)]
    pub push_max_attempts: Option<u32>,
    /// First pause between push attempts, ms, doubling [default: 1000]
    /// [env: RCALL_PUSH_RETRY_BASE_MS]
    #[arg(long)]
    pub push_retry_base_ms: Option<u64>,
    /// Ping a connection silent this long, ms (tests) [env: RCALL_PING_INTERVAL_MS]
    #[arg(long, hide = true)]
    pub ping_interval_ms: Option<u64>,
    /// Close a connection silent this long, ms (tests) [env: RCALL_DEAD_AFTER_MS]
    #[arg(long, hide = true)]
    pub dead_after_ms: Option<u64>,
    /// Hang up for a call member whose connections closed cleanly after this long, ms (tests:
    /// a long one tells a client's own hangup from the server's) [env: RCALL_LEFT_GRACE_MS]
    #[arg(long, hide = true)]
    pub left_grace_ms: Option<u64>,
    /// Cluster mode: the Redis shared by several nodes, redis://host:port/db or
    /// unix:///path/to/redis.sock (being built: policy and Server API nonces are shared,
    /// routing is not yet) [env: RCALL_REDIS]
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Cluster mode: beat period, ms; a node silent for 5 periods is dead (tests)
    /// [env: RCALL_NODE_HEARTBEAT_MS]
    #[arg(long, hide = true)]
    pub node_heartbeat_ms: Option<u64>,
    /// SFU mode: group-call media through this Janus, the base URL of its HTTP API, e.g.
    /// http://127.0.0.1:8088/janus (without it group calls are a peer-to-peer mesh)
    /// [env: RCALL_JANUS]
    #[arg(long, value_name = "URL")]
    pub janus: Option<String>,
    /// `api_secret` of janus.jcfg (required with --janus outside --dev)
    /// [env: RCALL_JANUS_API_SECRET]
    #[arg(long, value_name = "SECRET")]
    pub janus_api_secret: Option<String>,
    /// `admin_key` of janus.plugin.videoroom.jcfg (required with --janus outside --dev)
    /// [env: RCALL_JANUS_ADMIN_KEY]
    #[arg(long, value_name = "KEY")]
    pub janus_admin_key: Option<String>,
}

fn parse_env<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<T>, ConfigError> {
    match env(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid(format!("{name}={v:?} is not valid"))),
    }
}

fn env_bool(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<bool, ConfigError> {
    match env(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(false),
            "1" | "true" | "yes" | "on" => Ok(true),
            _ => Err(ConfigError::Invalid(format!(
                "{name}={v:?} is not a boolean"
            ))),
        },
    }
}

fn env_list(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Vec<String>> {
    env(name).filter(|v| !v.trim().is_empty()).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn parse_log_format(s: &str) -> Result<LogFormat, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::Invalid(format!(
            "log format {other:?}: expected text or json"
        ))),
    }
}

impl Cli {
    /// Builds the config from the flags, the process environment and the config file.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with_env(&|name| std::env::var(name).ok())
    }

    /// Builds the config with `env` as the environment (tests pass a map, never the real one).
    /// In dev mode missing credentials fall back to the well-known dev pair; otherwise they are
    /// an error.
    pub fn into_config_with_env(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file_path = self
            .config
            .clone()
            .or_else(|| parse_env(env, "RCALL_CONFIG").ok().flatten());
        let file = match &file_path {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let secs = Duration::from_secs;

        // flag > env > file, per option.
        macro_rules! layer {
            ($flag:expr, $env:literal, $file:expr) => {
                match $flag {
                    Some(v) => Some(v),
                    None => match parse_env(env, $env)? {
                        Some(v) => Some(v),
                        None => $file,
                    },
                }
            };
        }
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let app_key = non_empty(layer!(
            non_empty(self.app_key),
            "RCALL_APP_KEY",
            file.app_key.clone()
        ));
        let app_secret = non_empty(layer!(
            non_empty(self.app_secret),
            "RCALL_APP_SECRET",
            file.app_secret.clone()
        ));
        let dev = self.dev || env_bool(env, "RCALL_DEV")? || file.dev.unwrap_or(false);
        let (app_key, app_secret) = match (app_key, app_secret) {
            (Some(k), Some(s)) => (k, s),
            (k, s) if dev => (
                k.unwrap_or_else(|| DEV_APP_KEY.to_owned()),
                s.unwrap_or_else(|| DEV_APP_SECRET.to_owned()),
            ),
            (None, _) => return Err(ConfigError::MissingAppKey),
            (_, None) => return Err(ConfigError::MissingAppSecret),
        };

        let mut c = Config::new(app_key, app_secret);
        c.dev = dev;
        c.extra_apps = file.apps;
        if let Some(v) = layer!(self.listen, "RCALL_LISTEN", file.listen) {
            c.listen = v;
        }
        if let Some(v) = layer!(self.db, "RCALL_DB", file.db) {
            c.db_path = v;
        }
        if let Some(v) = layer!(self.sdk_dir, "RCALL_SDK_DIR", file.sdk_dir) {
            c.sdk_dir = v;
        }
        if let Some(v) = layer!(self.web_dir, "RCALL_WEB_DIR", file.web_dir) {
            c.web_dir = v;
        }
        if let Some(v) = layer!(
            self.token_ttl_secs,
            "RCALL_TOKEN_TTL_SECS",
            file.token_ttl_secs
        ) {
            c.token_ttl = secs(v);
        }
        if let Some(v) = file.auth_timeout_ms {
            c.auth_timeout = Duration::from_millis(v);
        }
        if let Some(v) = layer!(
            self.max_frame_bytes,
            "RCALL_MAX_FRAME_BYTES",
            file.max_frame_bytes
        ) {
            c.max_frame_bytes = v;
        }
        if let Some(v) = layer!(
            self.api_timestamp_window_secs,
            "RCALL_API_TIMESTAMP_WINDOW_SECS",
            file.api_timestamp_window_secs
        ) {
            c.api_timestamp_window = secs(v);
        }
        if let Some(v) = layer!(
            self.rate_limit_per_sec,
            "RCALL_RATE_LIMIT_PER_SEC",
            file.rate_limit_per_sec
        ) {
            c.rate_limit_per_sec = v;
        }
        if let Some(v) = layer!(
            self.rate_limit_burst,
            "RCALL_RATE_LIMIT_BURST",
            file.rate_limit_burst
        ) {
            c.rate_limit_burst = v;
        }
        if let Some(v) = layer!(
            self.max_connections_per_app,
            "RCALL_MAX_CONNECTIONS_PER_APP",
            file.max_connections_per_app
        ) {
            c.max_connections_per_app = v;
        }
        if let Some(v) = layer!(
            self.offline_ttl_secs,
            "RCALL_OFFLINE_TTL_SECS",
            file.offline_ttl_secs
        ) {
            c.offline_ttl = secs(v);
        }
        if let Some(v) = layer!(
            self.offline_max_per_user,
            "RCALL_OFFLINE_MAX_PER_USER",
            file.offline_max_per_user
        ) {
            c.offline_max_per_user = v;
        }
        if let Some(v) = layer!(
            self.resume_window_secs,
            "RCALL_RESUME_WINDOW_SECS",
            file.resume_window_secs
        ) {
            c.resume_window = secs(v);
        }
        if let Some(v) = file.resume_window_messages {
            c.resume_window_messages = v;
        }
        let flag_list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        if let Some(v) = flag_list(self.turn_urls)
            .or_else(|| env_list(env, "RCALL_TURN_URLS"))
            .or(file.turn_urls)
        {
            c.turn_urls = v;
        }
        c.turn_secret = non_empty(layer!(
            non_empty(self.turn_secret),
            "RCALL_TURN_SECRET",
            file.turn_secret
        ));
        if let Some(v) = layer!(
            self.turn_ttl_secs,
            "RCALL_TURN_TTL_SECS",
            file.turn_ttl_secs
        ) {
            c.turn_ttl = secs(v);
        }
        if let Some(v) = flag_list(self.stun_urls)
            .or_else(|| env_list(env, "RCALL_STUN_URLS"))
            .or(file.stun_urls)
        {
            c.stun_urls = v;
        }
        c.metrics = !(self.no_metrics || env_bool(env, "RCALL_NO_METRICS")?)
            && file.metrics.unwrap_or(true);
        c.metrics_token = non_empty(layer!(
            non_empty(self.metrics_token),
            "RCALL_METRICS_TOKEN",
            file.metrics_token
        ));
        if let Some(v) = layer!(
            self.shutdown_timeout_secs,
            "RCALL_SHUTDOWN_TIMEOUT_SECS",
            file.shutdown_timeout_secs
        ) {
            c.shutdown_timeout = secs(v);
        }
        if let Some(v) = layer!(
            self.header_read_timeout_secs,
            "RCALL_HEADER_READ_TIMEOUT_SECS",
            file.header_read_timeout_secs
        ) {
            c.header_read_timeout = secs(v);
        }
        if let Some(v) = layer!(
            self.max_unauthenticated,
            "RCALL_MAX_UNAUTHENTICATED",
            file.max_unauthenticated
        ) {
            c.max_unauthenticated = v;
        }
        if let Some(v) = layer!(
            self.max_unauthenticated_per_ip,
            "RCALL_MAX_UNAUTHENTICATED_PER_IP",
            file.max_unauthenticated_per_ip
        ) {
            c.max_unauthenticated_per_ip = v;
        }
        if let Some(v) = file.pre_auth_frame_bytes {
            c.pre_auth_frame_bytes = v;
        }
        if let Some(v) = layer!(
            self.max_connections_per_user,
            "RCALL_MAX_CONNECTIONS_PER_USER",
            file.max_connections_per_user
        ) {
            c.max_connections_per_user = v;
        }
        if let Some(v) = layer!(
            self.max_connections_per_device,
            "RCALL_MAX_CONNECTIONS_PER_DEVICE",
            file.max_connections_per_device
        ) {
            c.max_connections_per_device = v;
        }
        if let Some(v) = layer!(
            self.user_rate_per_sec,
            "RCALL_USER_RATE_PER_SEC",
            file.user_rate_per_sec
        ) {
            c.user_rate_per_sec = v;
        }
        if let Some(v) = layer!(
            self.user_rate_burst,
            "RCALL_USER_RATE_BURST",
            file.user_rate_burst
        ) {
            c.user_rate_burst = v;
        }
        if let Some(v) = file.replay_page_messages {
            c.replay_page_messages = v;
        }
        if let Some(v) = layer!(
            self.offline_quota_per_sender,
            "RCALL_OFFLINE_QUOTA_PER_SENDER",
            file.offline_quota_per_sender
        ) {
            c.offline_quota_per_sender = v;
        }
        if let Some(v) = file.offline_quota_window_secs {
            c.offline_quota_window = secs(v);
        }
        if let Some(v) = layer!(
            self.offline_max_bytes,
            "RCALL_OFFLINE_MAX_BYTES",
            file.offline_max_bytes
        ) {
            c.offline_max_bytes = v;
        }
        if let Some(v) = file.store_queue_max {
            c.store_queue_max = v;
        }
        c.push_webhook_url = non_empty(layer!(
            non_empty(self.push_webhook_url),
            "RCALL_PUSH_WEBHOOK_URL",
            file.push_webhook_url
        ));
        if let Some(v) = layer!(
            self.push_queue_max,
            "RCALL_PUSH_QUEUE_MAX",
            file.push_queue_max
        ) {
            c.push_queue_max = v;
        }
        if let Some(v) = layer!(
            self.push_max_attempts,
            "RCALL_PUSH_MAX_ATTEMPTS",
            file.push_max_attempts
        ) {
            c.push_max_attempts = v;
        }
        if let Some(v) = layer!(
            self.push_retry_base_ms,
            "RCALL_PUSH_RETRY_BASE_MS",
            file.push_retry_base_ms
        ) {
            c.push_retry_base = Duration::from_millis(v);
        }
        if let Some(v) = file.push_timeout_ms {
            c.push_timeout = Duration::from_millis(v);
        }
        if let Some(v) = layer!(
            self.ping_interval_ms,
            "RCALL_PING_INTERVAL_MS",
            file.ping_interval_ms
        ) {
            c.ping_interval = Duration::from_millis(v);
        }
        if let Some(v) = layer!(
            self.dead_after_ms,
            "RCALL_DEAD_AFTER_MS",
            file.dead_after_ms
        ) {
            c.dead_after = Duration::from_millis(v);
        }
        if let Some(v) = layer!(self.left_grace_ms, "RCALL_LEFT_GRACE_MS", None) {
            c.left_grace = Duration::from_millis(v);
        }
        if let Some(v) = layer!(self.log_format, "RCALL_LOG_FORMAT", file.log_format) {
            c.log_format = parse_log_format(&v)?;
        }
        if let Some(v) = non_empty(layer!(non_empty(self.redis), "RCALL_REDIS", file.redis)) {
            let url = crate::cluster::RedisUrl::parse(&v)
                .map_err(|e| ConfigError::Invalid(format!("--redis / RCALL_REDIS: {e}")))?;
            c.redis = Some(url);
        }
        if let Some(v) = layer!(
            self.node_heartbeat_ms,
            "RCALL_NODE_HEARTBEAT_MS",
            file.node_heartbeat_ms
        ) {
            c.node_heartbeat = Duration::from_millis(v);
        }
        let janus_secret = non_empty(layer!(
            non_empty(self.janus_api_secret),
            "RCALL_JANUS_API_SECRET",
            file.janus_api_secret
        ));
        let janus_key = non_empty(layer!(
            non_empty(self.janus_admin_key),
            "RCALL_JANUS_ADMIN_KEY",
            file.janus_admin_key
        ));
        match non_empty(layer!(non_empty(self.janus), "RCALL_JANUS", file.janus)) {
            Some(url) => {
                let mut j = crate::sfu::JanusSettings::new(url);
                j.api_secret = janus_secret;
                j.admin_key = janus_key;
                c.janus = Some(j);
            }
            None if janus_secret.is_some() || janus_key.is_some() => {
                return Err(ConfigError::Invalid(
                    "a Janus API secret or admin key is set but no Janus URL: add --janus URL \
                     (RCALL_JANUS, or `janus` in the config file) to turn SFU mode on"
                        .into(),
                ));
            }
            None => {}
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
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
}
