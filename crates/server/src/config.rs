//! Server configuration: the [`Config`] the library runs with, and the [`Cli`] flags (each also
//! an `RCALL_*` env var) the binary turns into one. Kept in the library so the flag rules
//! (dev defaults, missing credentials) are testable without spawning a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// Everything [`crate::start`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`start` only; `serve` takes a bound listener).
    pub listen: SocketAddr,
    /// The one app this server serves.
    pub app_key: String,
    /// Signs tokens and Server API requests. Never logged.
    pub app_secret: String,
    /// SQLite file (created if missing).
    pub db_path: PathBuf,
    /// Demo mode: enables `GET /dev/token`.
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
}

impl Config {
    /// A config for `app_key`/`app_secret` with every other field at its default.
    pub fn new(app_key: impl Into<String>, app_secret: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            app_key: app_key.into(),
            app_secret: app_secret.into(),
            db_path: PathBuf::from("rcall.db"),
            dev: false,
            sdk_dir: PathBuf::from("npm/dist/cdn"),
            web_dir: PathBuf::from("examples/web"),
            token_ttl: Duration::from_millis(DEFAULT_TTL_MS as u64),
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// Rejects configs the server cannot run safely with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.app_key.is_empty() {
            return Err(ConfigError::MissingAppKey);
        }
        if self.app_secret.is_empty() {
            return Err(ConfigError::MissingAppSecret);
        }
        if self.max_frame_bytes == 0 {
            return Err(ConfigError::Invalid("max frame size must be > 0"));
        }
        Ok(())
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
    Invalid(&'static str),
}

/// rcall's self-hosted signalling server: WebSocket signalling for the rcall SDK, a
/// RongCloud-compatible `/user/getToken.json`, and static hosting of the SDK and demo pages.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rcall-server", version, about)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "RCALL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// App key clients use (required unless --dev).
    #[arg(long, env = "RCALL_APP_KEY")]
    pub app_key: Option<String>,
    /// App secret that signs tokens and Server API calls (required unless --dev).
    #[arg(long, env = "RCALL_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Path of the SQLite database file (created if missing).
    #[arg(long, env = "RCALL_DB", default_value = "rcall.db")]
    pub db: PathBuf,
    /// Development mode: default app key/secret (rcall-dev-app / rcall-dev-secret) and the
    /// unauthenticated GET /dev/token?userId=… route. Never use in production.
    #[arg(long, env = "RCALL_DEV", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
    /// Directory served at /sdk/ (the built browser SDK: rcall.js, rcall_bg.wasm).
    #[arg(long, env = "RCALL_SDK_DIR", default_value = "npm/dist/cdn")]
    pub sdk_dir: PathBuf,
    /// Directory served at / (demo web pages).
    #[arg(long, env = "RCALL_WEB_DIR", default_value = "examples/web")]
    pub web_dir: PathBuf,
}

impl Cli {
    /// Builds the config. In dev mode missing credentials fall back to the well-known dev
    /// pair; otherwise they are an error.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let (app_key, app_secret) = match (non_empty(self.app_key), non_empty(self.app_secret)) {
            (Some(k), Some(s)) => (k, s),
            (k, s) if self.dev => (
                k.unwrap_or_else(|| DEV_APP_KEY.to_owned()),
                s.unwrap_or_else(|| DEV_APP_SECRET.to_owned()),
            ),
            (None, _) => return Err(ConfigError::MissingAppKey),
            (_, None) => return Err(ConfigError::MissingAppSecret),
        };
        let mut config = Config::new(app_key, app_secret);
        config.listen = self.listen;
        config.db_path = self.db;
        config.dev = self.dev;
        config.sdk_dir = self.sdk_dir;
        config.web_dir = self.web_dir;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rcall-server").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn dev_mode_fills_in_dev_credentials() {
        let c = parse(&["--dev"]).into_config().unwrap();
        assert_eq!(c.app_key, DEV_APP_KEY);
        assert_eq!(c.app_secret, DEV_APP_SECRET);
        assert!(c.dev);
    }

    #[test]
    fn dev_mode_keeps_given_credentials() {
        let c = parse(&["--dev", "--app-key", "k", "--app-secret", "s"])
            .into_config()
            .unwrap();
        assert_eq!((c.app_key.as_str(), c.app_secret.as_str()), ("k", "s"));
    }

    #[test]
    fn missing_credentials_without_dev_is_an_error() {
        assert_eq!(
            parse(&[]).into_config().unwrap_err(),
            ConfigError::MissingAppKey
        );
        assert_eq!(
            parse(&["--app-key", "k"]).into_config().unwrap_err(),
            ConfigError::MissingAppSecret
        );
        let c = parse(&[
            "--app-key",
            "k",
            "--app-secret",
            "s",
            "--listen",
            "127.0.0.1:0",
        ])
        .into_config()
        .unwrap();
        assert!(!c.dev);
        assert_eq!(c.listen.port(), 0);
    }
}
