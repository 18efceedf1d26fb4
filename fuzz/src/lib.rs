//! The fuzz targets' bodies, as plain functions of the input bytes, so a normal test can replay
//! the corpora on stable Rust and a crash found by libFuzzer reproduces with `cargo test`.
//!
//! - [`engine_signals`]: the call engine fed random call messages (from participants, their
//!   other devices and strangers), app commands, media reports, send results, connection
//!   changes and time jumps. Checks: no panic, and a bounded amount of output per input.
//! - [`server_api`]: RongCloud's Server API (form bodies, signature headers, nonces, timestamps)
//!   through the real router of a real server on a temp database.
//! - [`server_frames`]: authenticated WebSocket frames (raw bytes or envelope frames from small
//!   vocabularies) from two call participants and a stranger, through the server's own frame
//!   handler, hub, rooms and store.
//! - [`ws_codec`]: the server's WebSocket frame decoder on arbitrary client bytes, whole and in
//!   chunks (masking, lengths, fragmentation, control frames, UTF-8, the size limit).
//! - [`unpack`]: the CDN's wasm unpacker (crates/unpack) on arbitrary `.lzma` bytes.

pub mod engine_signals;
pub mod server_api;
pub mod server_frames;
pub mod unpack;
pub mod ws_codec;

/// The fuzzed server's app.
pub const APP_KEY: &str = "fuzz-app-key";
pub const APP_SECRET: &str = "fuzz-app-secret-0123456789";

/// A real server (temp SQLite file) kept for the whole fuzzing process, with its runtime.
pub struct FuzzServer {
    pub rt: tokio::runtime::Runtime,
    pub running: rcall_server::RunningServer,
    _dir: tempfile::TempDir,
}

impl FuzzServer {
    pub fn start(tweak: impl FnOnce(&mut rcall_server::Config)) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = rcall_server::Config::new(APP_KEY, APP_SECRET);
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.db_path = dir.path().join("rcall.db");
        config.sdk_dir = dir.path().join("sdk");
        config.web_dir = dir.path().join("web");
        tweak(&mut config);
        let running = rt.block_on(rcall_server::start(config)).expect("server starts");
        FuzzServer { rt, running, _dir: dir }
    }
}

/// Replays the committed corpora (and any crash inputs kept as regressions) on stable Rust.
#[cfg(test)]
mod corpus {
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            run(&std::fs::read(&path).expect("corpus file"));
            n += 1;
        }
        assert!(n > 0, "empty corpus {}", dir.display());
    }

    #[test]
    fn engine_signals_corpus() {
        replay("engine_signals", crate::engine_signals::run);
    }

    #[test]
    fn server_frames_corpus() {
        replay("server_frames", crate::server_frames::run);
    }

    #[test]
    fn server_api_corpus() {
        replay("server_api", crate::server_api::run);
    }

    #[test]
    fn ws_codec_corpus() {
        replay("ws_codec", crate::ws_codec::run);
    }
}
