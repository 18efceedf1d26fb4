//! A private `redis-server` for cluster tests: on a unix socket in a temp dir (no TCP port, so
//! parallel tests and a system Redis never collide), no persistence, killed on drop. It can be
//! killed and started again on the same socket to play a Redis restart (its data is gone then,
//! as after a crash of a Redis without persistence).
//!
//! `redis-server` must be installed (`scripts/setup.sh` does it): a missing one fails the test
//! with that advice instead of skipping it silently.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a starting Redis may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestRedis {
    dir: TempDir,
    socket: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts a Redis and waits until it answers PING.
    pub fn start() -> TestRedis {
        let bin = find_redis_server();
        let dir = tempfile::Builder::new()
            .prefix("rcall-redis-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("redis.sock");
        let mut r = TestRedis {
            dir,
            socket,
            bin,
            child: None,
        };
        r.spawn();
        r
    }

    /// `unix://` URL of the socket (what `--redis` takes).
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A cluster node on this Redis, `tweak` applied to its settings.
    pub async fn node_with(
        &self,
        tweak: impl FnOnce(&mut rcall_server::Config),
    ) -> super::TestServer {
        let url = rcall_server::cluster::RedisUrl::parse(&self.url()).unwrap();
        super::TestServer::start_with(|c| {
            c.redis = Some(url);
            tweak(c);
        })
        .await
    }

    /// The mailboxes a node keeps on this Redis (its own bus connection), without a node.
    #[allow(dead_code)] // (not every test binary uses it)
    pub async fn mailboxes(
        &self,
        limits: rcall_server::cluster::mailbox::MailboxLimits,
    ) -> rcall_server::cluster::mailbox::Mailboxes {
        let url = rcall_server::cluster::RedisUrl::parse(&self.url()).unwrap();
        let bus = rcall_server::cluster::Bus::connect(&url)
            .await
            .expect("bus connects");
        rcall_server::cluster::mailbox::Mailboxes::new(bus, limits).unwrap()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs one command on a connection of its own and returns the first line of the reply
    /// (e.g. `+OK`): for tests that make Redis misbehave (`CLIENT PAUSE`, `DEBUG SLEEP`).
    #[allow(dead_code)] // (not every test binary uses it)
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = UnixStream::connect(&self.socket).expect("connect to the test Redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8_lossy(&line).trim_end().to_owned()
    }

    /// Every command Redis runs from now on, as `MONITOR` prints it (one line each), collected
    /// by a thread until Redis goes away.
    #[allow(dead_code)] // (not every test binary uses it)
    pub fn monitor(&self) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.write_all(b"MONITOR\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        assert_eq!(first.trim_end(), "+OK");
        let out = lines.clone();
        std::thread::spawn(move || {
            for line in r.lines() {
                let Ok(line) = line else { break };
                out.lock().unwrap().push(line);
            }
        });
        lines
    }

    /// SIGKILL, as a crash: clients see their connections drop.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts Redis again on the same socket after [`Self::kill`] (empty: nothing persisted).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Redis is still running");
        self.spawn();
    }

    /// Kill, then start again on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(&self.bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--dir"])
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if ping(&self.socket) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server exited at start ({status}); its log:\n{log}");
            }
            assert!(
                t0.elapsed() < START_TIMEOUT,
                "redis-server did not answer PING on {} within {START_TIMEOUT:?}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server` on PATH, or Debian's.
fn find_redis_server() -> PathBuf {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("redis-server"))
                .collect()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/redis-server")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found (needed by the cluster-mode tests): run scripts/setup.sh, \
                 which installs Debian's redis-server (apt-get install redis-server)"
            )
        })
}

/// True if a Redis on `socket` answers PING with PONG.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
