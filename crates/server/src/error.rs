//! Startup errors: the only errors that stop the server. Per-request and per-connection
//! errors live with their layer ([`crate::server_api::ApiError`], [`crate::hub::RouteError`],
//! [`crate::token::TokenError`]) and never take the process down.

use crate::config::ConfigError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Cluster mode: Redis unreachable, or the policy could not be loaded from it.
    #[error("cluster mode: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// SFU mode: Janus unreachable or misconfigured (the message says what to fix).
    #[error("SFU mode (--janus): {0}")]
    Sfu(#[from] crate::sfu::JanusError),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
