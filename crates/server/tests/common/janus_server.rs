//! A private Janus for SFU-mode tests: a generated config in a temp dir, only the videoroom
//! plugin and the HTTP transport, the API on 127.0.0.1 at a free port (no admin API, no
//! WebSocket transport, no event handlers), an `api_secret`, the videoroom's `admin_key` and
//! `string_ids`; killed on drop. Media is not set up (ICE needs a non-loopback interface, see
//! notes/toolchain.md "janus"): these tests drive the API only.
//!
//! `janus` must be installed (`scripts/setup.sh` does it): a missing one fails the test with
//! that advice instead of skipping it silently.

#![allow(dead_code)] // (not every test binary uses everything)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a starting Janus may take to answer `GET /janus/info`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub const API_SECRET: &str = "test-janus-api-secret";
pub const ADMIN_KEY: &str = "test-janus-admin-key";

/// How the test Janus is configured.
#[derive(Clone)]
pub struct JanusOptions {
    /// `api_secret` of janus.jcfg (None: Janus takes requests without one).
    pub api_secret: Option<String>,
    /// `admin_key` of the videoroom plugin (None: anyone may create rooms).
    pub admin_key: Option<String>,
    pub string_ids: bool,
    /// Janus's `session_timeout`, s.
    pub session_timeout: u32,
}

impl Default for JanusOptions {
    fn default() -> Self {
        JanusOptions {
            api_secret: Some(API_SECRET.into()),
            admin_key: Some(ADMIN_KEY.into()),
            string_ids: true,
            session_timeout: 60,
        }
    }
}

pub struct TestJanus {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl TestJanus {
    /// Starts a Janus with [`JanusOptions::default`] and waits until its API answers.
    pub fn start() -> TestJanus {
        Self::start_with(JanusOptions::default())
    }

    pub fn start_with(opts: JanusOptions) -> TestJanus {
        let bin = find_janus();
        let dir = tempfile::Builder::new()
            .prefix("rcall-janus-")
            .tempdir()
            .expect("temp dir");
        // A free port can be taken between our probe and Janus's bind: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            write_config(&dir, port, &opts);
            let log = dir.path().join("janus.log");
            let _ = std::fs::remove_file(&log);
            let mut child = spawn_janus(&bin, &dir, &log);
            let t0 = Instant::now();
            loop {
                if info_answers(port) {
                    return TestJanus {
                        dir,
                        port,
                        child: Some(child),
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    eprintln!("janus exited at start ({status}); retrying on another port");
                    break;
                }
                if t0.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    eprintln!("janus did not answer on port {port} within {START_TIMEOUT:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start a test Janus; its last log:\n{last_log}");
    }

    /// Base URL of the HTTP API (what `--janus` takes).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/janus", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts Janus again with the same config and port after [`Self::kill`] (no rooms, no
    /// sessions: nothing is permanent).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Janus is still running");
        let log = self.dir.path().join("janus.log");
        self.child = Some(spawn_janus(&find_janus(), &self.dir, &log));
        let t0 = Instant::now();
        while !info_answers(self.port) {
            assert!(
                t0.elapsed() < START_TIMEOUT,
                "Janus did not come back:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestJanus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `bin` on the config in `dir` (written by [`write_config`]), logging to `log` only.
fn spawn_janus(bin: &std::path::Path, dir: &TempDir, log: &std::path::Path) -> Child {
    Command::new(bin)
        .arg("-F")
        .arg(dir.path())
        .arg("-C")
        .arg(dir.path().join("janus.jcfg"))
        .args(["-N", "-o", "-L"])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// A raw request to Janus's HTTP API at `url` (a session's or handle's URL, or the base);
/// returns its JSON answer, whatever it says.
pub async fn janus_post(url: &str, body: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn write_config(dir: &TempDir, port: u16, opts: &JanusOptions) {
    let d = dir.path().display();
    let secret = opts
        .api_secret
        .as_ref()
        .map(|s| format!("\tapi_secret = \"{s}\"\n"))
        .unwrap_or_default();
    let plugins_off = [
        "audiobridge",
        "duktape",
        "echotest",
        "lua",
        "nosip",
        "recordplay",
        "sip",
        "streaming",
        "textroom",
        "videocall",
        "voicemail",
    ]
    .map(|p| format!("libjanus_{p}.so"))
    .join(",");
    let transports_off = ["websockets", "pfunix", "mqtt", "nanomsg", "rabbitmq"]
        .map(|p| format!("libjanus_{p}.so"))
        .join(",");
    let events_off = [
        "gelfevh",
        "mqttevh",
        "nanomsgevh",
        "rabbitmqevh",
        "sampleevh",
        "wsevh",
    ]
    .map(|p| format!("libjanus_{p}.so"))
    .join(",");
    let main = format!(
        "general: {{\n\tconfigs_folder = \"{d}\"\n\tlog_to_stdout = false\n\tdebug_level = 4\n\
         {secret}\tsession_timeout = {}\n\tserver_name = \"rcall-test\"\n}}\n\
         media: {{\n\trtp_port_range = \"40000-40999\"\n}}\n\
         nat: {{\n\tnice_debug = false\n}}\n\
         plugins: {{\n\tdisable = \"{plugins_off}\"\n}}\n\
         transports: {{\n\tdisable = \"{transports_off}\"\n}}\n\
         loggers: {{\n\tdisable = \"libjanus_jsonlog.so\"\n}}\n\
         events: {{\n\tbroadcast = false\n\tdisable = \"{events_off}\"\n}}\n",
        opts.session_timeout
    );
    let http = format!(
        "general: {{\n\tjson = \"plain\"\n\tbase_path = \"/janus\"\n\thttp = true\n\
         \tport = {port}\n\tip = \"127.0.0.1\"\n\thttps = false\n}}\n\
         admin: {{\n\tadmin_http = false\n\tadmin_https = false\n}}\n"
    );
    let key = opts
        .admin_key
        .as_ref()
        .map(|k| format!("\tadmin_key = \"{k}\"\n"))
        .unwrap_or_default();
    let videoroom = format!("general: {{\n\tstring_ids = {}\n{key}}}\n", opts.string_ids);
    let p = dir.path();
    std::fs::write(p.join("janus.jcfg"), main).unwrap();
    std::fs::write(p.join("janus.transport.http.jcfg"), http).unwrap();
    std::fs::write(p.join("janus.plugin.videoroom.jcfg"), videoroom).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// True if `GET /janus/info` answers with Janus's server info.
fn info_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /janus/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("server_info")
}

/// `janus` on PATH, or Debian's.
fn find_janus() -> PathBuf {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("janus")).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/janus")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "janus not found (needed by the SFU-mode tests): run scripts/setup.sh, which \
                 installs Debian's janus (apt-get install janus)"
            )
        })
}
