//! `rcall-server` binary: builds the config (flags > `RCALL_*` env > `--config` file), starts
//! the server, and runs until Ctrl-C / SIGTERM, then shuts down gracefully (drains connections,
//! persists state). Prints `rcall-server listening on http://<addr>` on stdout once bound
//! (scripts wait for that line). Logs go to stderr (`RUST_LOG`, default `info`;
//! `--log-format json` for one JSON object per line) and never contain tokens or secrets.

use rcall_server::config::LogFormat;
use rcall_server::{Cli, DEV_APP_SECRET};
use tracing_subscriber::EnvFilter;

/// jemalloc, not glibc's malloc: at 30,000 connections over 7 nodes with a node killed, the
/// cluster's peak RSS was ~48 % lower and the nodes' CPU ~17 % (BENCHMARKS.md, "Session 10:
/// memory"): glibc keeps what a connect or resume burst freed in its per-thread arenas, jemalloc
/// returns it. Tuning without a rebuild: `_RJEM_MALLOC_CONF` (the prefixed `MALLOC_CONF`;
/// `background_thread:true,dirty_decay_ms:1000` measured no better).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Cli::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rcall-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }

    if let Some(redis) = &config.redis {
        tracing::info!(
            "cluster mode: redis at {redis} (routing, mailboxes, policy and Server API nonces are shared)"
        );
    }
    let dev = config.dev;
    let (app_key, app_secret) = (config.app_key.clone(), config.app_secret.clone());
    let server = match rcall_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rcall-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("rcall-server listening on http://{}", server.local_addr());
    if dev {
        let well_known = if app_secret == DEV_APP_SECRET {
            " (the well-known dev secret)"
        } else {
            ""
        };
        println!(
            "WARNING: dev mode is for development only: GET /dev/token hands out tokens to anyone, POST /dev/group edits groups"
        );
        println!("dev app key: {app_key}");
        println!("dev app secret: {app_secret}{well_known}");
    }
    drop(app_secret);

    let stop = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    match server.wait().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcall-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
