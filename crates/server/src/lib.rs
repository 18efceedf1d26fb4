//! # rcall-server — rcall's self-hosted signalling service
//!
//! The server side of rcall (a drop-in for RongCloud's Web CallLib 5.X): it replaces the
//! RongCloud IM cloud that CallLib signals through. Browsers running the `rcall-sdk` wasm
//! connect to `GET /ws` and exchange `rtc_core::proto::envelope` frames; the server
//! authenticates them by token and routes opaque call messages between users' devices.
//! App servers get tokens from the RongCloud-compatible `POST /user/getToken.json`. It also
//! serves the SDK build (`/sdk/`) and demo pages (`/`) so a demo needs one process.
//!
//! Embed with [`start`] (or [`serve`] on a bound listener); the `rcall-server` binary is a thin
//! CLI over it.

pub mod config;
pub mod error;
pub mod hub;
pub mod server_api;
pub mod static_files;
pub mod store;
pub mod token;
pub mod ws;

mod clock;
mod uid;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN;
use axum::http::HeaderValue;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{Cli, Config, ConfigError, DEV_APP_KEY, DEV_APP_SECRET};
pub use error::StartError;
pub use hub::Hub;
pub use store::Store;

/// Shared by every request and connection.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub hub: Hub,
    /// Cancelled on shutdown; every WebSocket connection watches a child of it.
    pub shutdown: CancellationToken,
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/user/getToken.json", post(server_api::get_token))
        .route("/healthz", get(server_api::healthz))
        .route("/ws", get(ws::ws_handler));
    if state.config.dev {
        app = app.merge(
            Router::new()
                .route("/dev/token", get(server_api::dev_token))
                .layer(SetResponseHeaderLayer::overriding(
                    ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                )),
        );
    }
    app.merge(static_files::sdk_router(&state.config.sdk_dir))
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

    /// Shared state (routing table, store), e.g. for tests and metrics.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// A token that stops the server when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Stops accepting, closes every WebSocket, and waits for the server to finish.
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

/// Binds `config.listen` and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    config.validate()?;
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    serve(config, listener).await
}

/// Starts serving on an already bound listener (`config.listen` is ignored).
pub async fn serve(config: Config, listener: TcpListener) -> Result<RunningServer, StartError> {
    config.validate()?;
    let store = Store::open(&config.db_path)?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        config,
        store,
        hub: Hub::new(),
        shutdown: CancellationToken::new(),
    });
    let app = router(state.clone());
    let stop = state.shutdown.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    tracing::info!(%addr, dev = state.config.dev, "rcall-server started");
    Ok(RunningServer { addr, state, task })
}
