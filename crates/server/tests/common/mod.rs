//! Test harness: a real server on 127.0.0.1:0 with its SQLite file in a temp dir, and a small
//! WebSocket client speaking the envelope protocol.
#![allow(dead_code)]

pub mod calls;
#[allow(unused_imports)] // (not every test binary uses it)
pub use calls::call_message;
pub mod janus_proxy;
pub mod janus_server;
pub mod redis_server;
pub mod sfu_client;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rcall_server::{Config, RunningServer};
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{Authenticate, ClientFrame, Delivered, Ping, SendMessage, ServerFrame};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_KEY: &str = "test-app";
pub const APP_SECRET: &str = "test-secret-0123456789";
/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub server: RunningServer,
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(APP_KEY, APP_SECRET);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.db_path = dir.path().join("rcall.db");
        config.sdk_dir = dir.path().join("sdk");
        config.web_dir = dir.path().join("web");
        tweak(&mut config);
        Self::launch(dir, config, "server starts").await
    }

    /// Starts a server on `config` (its files in `dir`); `what` is said if it fails.
    async fn launch(dir: TempDir, config: Config, what: &str) -> Self {
        let server = rcall_server::start(config.clone()).await.expect(what);
        let addr = server.local_addr();
        TestServer {
            server,
            dir,
            addr,
            config,
        }
    }

    /// Graceful shutdown, then a new server on the same database (new port).
    pub async fn restart(self) -> Self {
        let TestServer {
            server,
            dir,
            config,
            ..
        } = self;
        tokio::time::timeout(WAIT, server.shutdown())
            .await
            .expect("shutdown finishes")
            .unwrap();
        Self::launch(dir, config, "server restarts").await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Asserts `/healthz` answers 200 within [`WAIT`].
    pub async fn assert_healthy(&self) {
        let resp = tokio::time::timeout(WAIT, reqwest::get(self.url("/healthz")))
            .await
            .expect("/healthz answers in time")
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }

    /// A token minted directly with the server's secret (same as getToken would issue).
    pub fn token(&self, user_id: &str) -> String {
        rcall_server::token::issue(APP_KEY, APP_SECRET, user_id, now_ms(), 60_000)
    }

    pub async fn client(&self, user_id: &str, device_id: &str) -> Client {
        Client::login(self.addr, &self.token(user_id), device_id).await
    }
}

/// Key and secret of the second app [`with_second_app`] adds.
pub const APP2_KEY: &str = "app2";
pub const APP2_SECRET: &str = "secret2-0123456789abcdef";

/// Config tweak: the server also hosts a second app ([`APP2_KEY`]).
pub fn with_second_app(c: &mut Config) {
    c.extra_apps.push(rcall_server::config::AppCredentials {
        key: APP2_KEY.into(),
        secret: APP2_SECRET.into(),
        push_webhook_url: None,
    });
}

/// A token of the second app.
pub fn app2_token(user_id: &str) -> String {
    rcall_server::token::issue(APP2_KEY, APP2_SECRET, user_id, now_ms(), 60_000)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Lowercase hex SHA-1 of secret + nonce + timestamp, computed independently of the server.
pub fn signature(secret: &str, nonce: &str, timestamp: &str) -> String {
    use sha1::{Digest, Sha1};
    let d = Sha1::digest(format!("{secret}{nonce}{timestamp}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A nonce never used before in this process.
pub fn fresh_nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// POST /user/getToken.json signed with `secret`.
pub async fn get_token_request(
    ts: &TestServer,
    app_key: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    api_request(ts, "/user/getToken.json", app_key, secret, form).await
}

/// POST `path` with a fresh nonce and the current timestamp, signed with `secret`.
pub async fn api_request(
    ts: &TestServer,
    path: &str,
    app_key: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    signed_post(ts.addr, path, app_key, secret, form).await
}

/// [`api_request`] to a server at `addr` (a child process, a node of the test's own).
pub async fn signed_post(
    addr: SocketAddr,
    path: &str,
    app_key: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let nonce = fresh_nonce();
    let timestamp = now_ms().to_string();
    reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("App-Key", app_key)
        .header("Nonce", &nonce)
        .header("Timestamp", &timestamp)
        .header("Signature", signature(secret, &nonce, &timestamp))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A signed Server API call for the test app that must answer HTTP 200 `{"code":200,…}`.
pub async fn api_ok(ts: &TestServer, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let resp = api_request(ts, path, APP_KEY, APP_SECRET, form).await;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(200)),
        "{path}: {body}"
    );
    body
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user_id: String,
    pub device_id: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        ws
    }

    /// A WebSocket whose socket has a fixed receive buffer of `bytes` (the kernel's autotuning,
    /// up to tens of MB on loopback, off): a client that stops reading leaves little in flight,
    /// so what the server sends after it stays within a few reads.
    #[allow(dead_code)]
    pub async fn connect_small_window(
        addr: SocketAddr,
        bytes: u32,
    ) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let (ws, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
                .await
                .unwrap();
        ws
    }

    /// Connects and authenticates; asserts AuthResult{0} then SyncDone.
    pub async fn login(addr: SocketAddr, token: &str, device_id: &str) -> Client {
        Client::login_over(Client::connect(addr).await, token, device_id).await
    }

    /// [`Client::login`] over a WebSocket the test opened itself.
    pub async fn login_over(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        token: &str,
        device_id: &str,
    ) -> Client {
        let mut c = Client::authenticate_over(ws, token, device_id, 0).await;
        c.recv_accepted().await;
        match c.recv().await.body {
            Some(S::SyncDone(_)) => {}
            other => panic!("expected SyncDone, got {other:?}"),
        }
        c
    }

    /// The next frame, which must be an AuthResult.
    pub async fn recv_auth_result(&mut self) -> rtc_core::proto::AuthResult {
        match self.recv().await.body {
            Some(S::AuthResult(a)) => a,
            other => panic!("{}: expected AuthResult, got {other:?}", self.device_id),
        }
    }

    /// The next frame, which must be an AuthResult with code 0; takes its user id.
    async fn recv_accepted(&mut self) -> rtc_core::proto::AuthResult {
        let auth = self.recv_auth_result().await;
        assert_eq!(auth.code, 0, "auth failed: {}", auth.message);
        self.user_id = auth.user_id.clone();
        auth
    }

    /// Asserts the next frame is an AuthResult refusing with `code`.
    pub async fn expect_refused(&mut self, code: i32) {
        let auth = self.recv_auth_result().await;
        assert_eq!(auth.code, code, "{}", auth.message);
    }

    /// The replayed messages after an accepted AuthResult: every Delivered before SyncDone.
    async fn recv_replay(&mut self) -> Vec<Delivered> {
        let mut replay = Vec::new();
        loop {
            match self.recv().await.body {
                Some(S::SyncDone(_)) => return replay,
                Some(S::Deliver(d)) => replay.push(d),
                other => panic!("expected Delivered or SyncDone, got {other:?}"),
            }
        }
    }

    /// Connects with `resume_from`, asserts AuthResult{0}, and returns the replayed messages
    /// (everything before SyncDone).
    pub async fn login_resume(
        addr: SocketAddr,
        token: &str,
        device_id: &str,
        resume_from: u64,
    ) -> (Client, Vec<Delivered>) {
        let mut c = Client::authenticate(addr, token, device_id, resume_from).await;
        c.recv_accepted().await;
        let replay = c.recv_replay().await;
        (c, replay)
    }

    /// Connects with `instance`, asserts AuthResult{0}, and returns it with the replayed
    /// messages (everything before SyncDone).
    pub async fn login_instance(
        addr: SocketAddr,
        token: &str,
        device_id: &str,
        resume_from: u64,
        instance: u64,
    ) -> (Client, rtc_core::proto::AuthResult, Vec<Delivered>) {
        let mut c = Client::connect_unauthenticated(addr, device_id).await;
        c.send(C::Authenticate(Authenticate {
            token: token.to_owned(),
            device_id: device_id.to_owned(),
            resume_from,
            instance,
        }))
        .await;
        let auth = c.recv_accepted().await;
        let replay = c.recv_replay().await;
        (c, auth, replay)
    }

    async fn connect_unauthenticated(addr: SocketAddr, device_id: &str) -> Client {
        Client {
            ws: Client::connect(addr).await,
            user_id: String::new(),
            device_id: device_id.to_owned(),
        }
    }

    /// Sends a Ping and returns the Pong's `accepted_upto` (the Pong must be the next frame).
    pub async fn ping_accepted_upto(&mut self, nonce: u32) -> u64 {
        self.send(C::Ping(Ping { nonce })).await;
        match self.recv().await.body {
            Some(S::Pong(p)) => {
                assert_eq!(p.nonce, nonce);
                p.accepted_upto
            }
            other => panic!("{}: expected Pong({nonce}), got {other:?}", self.device_id),
        }
    }

    /// The next frame, which must be a Delivered.
    pub async fn recv_delivered(&mut self) -> Delivered {
        match self.recv().await.body {
            Some(S::Deliver(d)) => d,
            other => panic!("{}: expected Delivered, got {other:?}", self.device_id),
        }
    }

    /// The next frame that is not a keep-alive `Pong` (nonce 0: a cluster node writes them
    /// while a message of this connection waits on a slow Redis).
    pub async fn recv_past_keepalives(&mut self) -> ServerFrame {
        loop {
            let f = self.recv().await;
            if !matches!(&f.body, Some(S::Pong(p)) if p.nonce == 0) {
                return f;
            }
        }
    }

    /// The next frame (past keep-alive `Pong`s), which must be a SendResult; returns it.
    /// The next delivery of call message type `kind` (an `RC:VC*` object name) with its
    /// `CallContent`, skipping the deliveries before it (replays, other call messages).
    pub async fn recv_call(&mut self, kind: &str) -> (Delivered, rtc_core::proto::CallContent) {
        loop {
            let d = self.recv_delivered().await;
            if d.message_type == kind {
                let content = rtc_core::proto::CallContent::from_bytes(&d.content).unwrap();
                return (d, content);
            }
        }
    }

    pub async fn recv_send_result(&mut self) -> rtc_core::proto::SendResult {
        match self.recv_past_keepalives().await.body {
            Some(S::SendResult(r)) => r,
            other => panic!("{}: expected SendResult, got {other:?}", self.device_id),
        }
    }

    /// Sends and asserts the SendResult code.
    pub async fn send_expect(&mut self, request_id: u32, msg: SendMessage, code: i32) {
        self.send_message(request_id, msg).await;
        let r = self.recv_send_result().await;
        assert_eq!(
            (r.request_id, r.code),
            (request_id, code),
            "{}",
            self.device_id
        );
    }

    /// Asserts the next frame (past keep-alive `Pong`s) is an ErrorFrame with `code`, then the
    /// close.
    pub async fn expect_error_and_close(&mut self, code: i32) {
        match self.recv_past_keepalives().await.body {
            Some(S::Error(e)) => assert_eq!(e.code, code, "{}", e.message),
            other => panic!(
                "{}: expected ErrorFrame {code}, got {other:?}",
                self.device_id
            ),
        }
        self.expect_closed().await;
    }

    /// After garbage: either the connection was closed, or it still answers a Ping.
    pub async fn barrier_or_closed(&mut self, nonce: u32) {
        let ping = Message::Binary(ClientFrame::new(C::Ping(Ping { nonce })).to_bytes().into());
        if self.ws.send(ping).await.is_err() {
            return;
        }
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: neither Pong nor close", self.device_id));
            match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Some(S::Pong(p)) = ServerFrame::from_bytes(&b).unwrap().body {
                        if p.nonce == nonce {
                            return;
                        }
                    }
                }
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn ack(&mut self, seq: u64) {
        self.send(C::Ack(rtc_core::proto::Ack { seq })).await;
    }

    /// Connects and sends Authenticate without reading the answer.
    pub async fn authenticate(
        addr: SocketAddr,
        token: &str,
        device_id: &str,
        resume_from: u64,
    ) -> Client {
        Client::authenticate_over(Client::connect(addr).await, token, device_id, resume_from).await
    }

    /// [`Client::authenticate`] over a WebSocket the test opened itself.
    pub async fn authenticate_over(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        token: &str,
        device_id: &str,
        resume_from: u64,
    ) -> Client {
        let mut c = Client {
            ws,
            user_id: String::new(),
            device_id: device_id.to_owned(),
        };
        c.send(C::Authenticate(Authenticate {
            token: token.to_owned(),
            device_id: device_id.to_owned(),
            resume_from,
            instance: 0,
        }))
        .await;
        c
    }

    pub async fn send(&mut self, body: C) {
        self.send_raw(Message::Binary(ClientFrame::new(body).to_bytes().into()))
            .await;
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    /// The next ServerFrame; fails on close or after [`WAIT`].
    pub async fn recv(&mut self) -> ServerFrame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.device_id));
            match msg {
                Some(Ok(Message::Binary(b))) => {
                    let f = ServerFrame::from_bytes(&b).expect("server frame decodes");
                    assert!(f.server_time > 0, "server_time must be set");
                    return f;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("{}: expected a binary frame, got {other:?}", self.device_id),
            }
        }
    }

    /// Asserts the server closes the connection (Close frame or end of stream) with no more frames.
    pub async fn expect_closed(&mut self) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("{}: connection not closed within {WAIT:?}", self.device_id)
                });
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("{}: expected close, got {other:?}", self.device_id),
            }
        }
    }

    pub async fn send_message(&mut self, request_id: u32, msg: SendMessage) {
        self.send(C::Send(SendMessage { request_id, ..msg })).await;
    }

    /// Sends a Ping and asserts the very next frame is the Pong: proves nothing else was queued
    /// for this connection before it.
    pub async fn barrier(&mut self, nonce: u32) {
        self.send(C::Ping(Ping { nonce })).await;
        match self.recv().await.body {
            Some(S::Pong(p)) => assert_eq!(p.nonce, nonce),
            other => panic!("{}: expected Pong({nonce}), got {other:?}", self.device_id),
        }
    }
}

pub fn private(target: &str, content: &[u8]) -> SendMessage {
    SendMessage {
        conversation_type: 1,
        target_id: target.to_owned(),
        message_type: "RC:VCInvite".to_owned(),
        content: content.to_vec(),
        ..Default::default()
    }
}

pub fn group(group_id: &str, recipients: &[&str], content: &[u8]) -> SendMessage {
    SendMessage {
        conversation_type: 3,
        target_id: group_id.to_owned(),
        directional_user_ids: recipients.iter().map(|s| s.to_string()).collect(),
        message_type: "RC:VCInvite".to_owned(),
        content: content.to_vec(),
        ..Default::default()
    }
}

/// A `rcall-server` child process (the real binary) on 127.0.0.1:0 with `db`.
pub struct ChildServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Kept open: the server's stdout.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

/// App credentials of [`ChildServer`] (the secret is ≥ 16 bytes, as production requires).
pub const CHILD_APP_KEY: &str = "child-app";
pub const CHILD_APP_SECRET: &str = "child-secret-0123456789";

impl ChildServer {
    /// Starts the binary and waits for its `rcall-server listening on http://ADDR` line.
    pub async fn start(db: &std::path::Path, extra: &[&str]) -> ChildServer {
        let db = db.to_owned();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let dir = db.parent().unwrap().to_owned();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rcall-server"))
                .args(["--listen", "127.0.0.1:0", "--app-key", CHILD_APP_KEY])
                .args(["--app-secret", CHILD_APP_SECRET])
                .arg("--db")
                .arg(&db)
                .arg("--sdk-dir")
                .arg(&dir)
                .arg("--web-dir")
                .arg(&dir)
                .args(&extra)
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .expect("rcall-server starts");
            let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).expect("first stdout line");
            let addr = line
                .trim()
                .strip_prefix("rcall-server listening on http://")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                .parse()
                .expect("address");
            ChildServer {
                child,
                addr,
                _stdout: out,
            }
        })
        .await
        .unwrap()
    }

    pub fn token(&self, user_id: &str) -> String {
        rcall_server::token::issue(CHILD_APP_KEY, CHILD_APP_SECRET, user_id, now_ms(), 60_000)
    }

    /// Creates group `group` of `users` through the Server API (it must answer 200).
    #[allow(dead_code)] // (the SFU tests)
    pub async fn create_group(&self, group: &str, users: &[&str]) {
        let mut form: Vec<(&str, &str)> = users.iter().map(|u| ("userId", *u)).collect();
        form.extend([("groupId", group), ("groupName", "G")]);
        let resp = signed_post(
            self.addr,
            "/group/create.json",
            CHILD_APP_KEY,
            CHILD_APP_SECRET,
            &form,
        )
        .await;
        assert_eq!(resp.status().as_u16(), 200);
    }

    /// SIGKILL: no shutdown, no flush, nothing persisted that was not committed.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// The call rooms of [`CHILD_APP_KEY`] saved in `db` (a single node saves them as they change),
/// read as another process would.
pub fn saved_rooms(db: &std::path::Path) -> Option<delivery::rooms::RoomsSnapshot> {
    use prost::Message as _;
    let c = rusqlite::Connection::open(db).ok()?;
    let data: Vec<u8> = c
        .query_row(
            "SELECT data FROM rooms_snapshot WHERE app_key = ?1",
            [CHILD_APP_KEY],
            |r| r.get(0),
        )
        .ok()?;
    delivery::rooms::RoomsSnapshot::decode(&data[..]).ok()
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a cluster node may take to see what another node did (a resync included).
pub const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// A server node in cluster mode on `redis`, with its own SQLite file and port.
pub async fn cluster_node(redis: &redis_server::TestRedis) -> TestServer {
    redis.node_with(|_| {}).await
}

/// Two cluster nodes on a Redis of their own (returned first: it must outlive them).
pub async fn two_nodes() -> (redis_server::TestRedis, TestServer, TestServer) {
    two_nodes_with(|_| {}).await
}

/// [`two_nodes`] with `tweak` applied to both nodes' settings.
pub async fn two_nodes_with(
    tweak: impl Fn(&mut Config),
) -> (redis_server::TestRedis, TestServer, TestServer) {
    let redis = redis_server::TestRedis::start();
    let a = redis.node_with(&tweak).await;
    let b = redis.node_with(&tweak).await;
    (redis, a, b)
}

/// The Redis response timeout of [`short_redis_timings`] (the default is 5 s).
#[allow(dead_code)] // (not every test binary uses it)
pub const SHORT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Config tweak for tests that wait on the cluster's Redis timings: a command times out after
/// [`SHORT_RESPONSE_TIMEOUT`], a message is retried for 4 s (not 8) while Redis does not answer
/// the node, and a connection waiting for its route gets a `Pong` every second (not 3): the same
/// behaviour, scaled down (the retry window still outlasts a timeout and its `PING` by 2 s).
#[allow(dead_code)]
pub fn short_redis_timings(c: &mut Config) {
    c.redis_response_timeout = SHORT_RESPONSE_TIMEOUT;
    c.route_retry_for = Duration::from_secs(4);
    c.route_keepalive = Duration::from_secs(1);
}

/// Reads an HTTP response head (through the blank line) byte by byte, leaving what follows.
pub async fn read_http_head(tcp: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    head
}

/// Blocks node `ts`'s main Redis connection for `secs` (a `BLPOP` on a key nobody pushes to
/// until [`unblock`]): every later command on that connection waits behind it, as behind a
/// backlog of route scripts on a slow Redis. Returns the blocked command's task.
pub async fn block_main_lane(
    server: &redis_server::TestRedis,
    ts: &TestServer,
    key: &str,
    secs: u64,
) -> tokio::task::JoinHandle<()> {
    let routing = ts.server.state().routing.clone().expect("cluster mode");
    let mut conn = routing.mailboxes.bus().connection();
    let key = key.to_owned();
    let task = tokio::spawn(async move {
        let _: Option<Vec<String>> = redis::cmd("BLPOP")
            .arg(&key)
            .arg(secs)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
    });
    // Blocked once Redis lists the client as blocked (`blocked_clients` in INFO clients).
    let probe = outside(server).await;
    eventually("the main connection is blocked", || {
        let mut probe = probe.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut probe)
                .await
                .unwrap();
            info.lines()
                .any(|l| l.starts_with("blocked_clients:") && l.trim_end() != "blocked_clients:0")
        }
    })
    .await;
    task
}

/// Closes every node's subscriber connections (`CLIENT KILL TYPE pubsub`, sent through `ts`'s
/// bus): each node resubscribes, then resyncs. Returns how many Redis closed.
pub async fn kill_subscribers(ts: &TestServer) -> i64 {
    let bus = ts.server.state().cluster.as_ref().unwrap().bus().clone();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut bus.connection())
        .await
        .unwrap()
}

/// A connection of the test's own, apart from every node's.
pub async fn outside(server: &redis_server::TestRedis) -> redis::aio::ConnectionManager {
    let url = rcall_server::cluster::RedisUrl::parse(&server.url()).unwrap();
    rcall_server::cluster::Bus::connect(&url)
        .await
        .unwrap()
        .connection()
}

pub async fn unblock(server: &redis_server::TestRedis, key: &str) {
    let mut conn = outside(server).await;
    let _: i64 = redis::cmd("LPUSH")
        .arg(key)
        .arg("go")
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Sends and asserts the SendResult code, skipping what comes before it: deliveries (the
/// others' call messages) and the SFU relay's frames (`sfu_relay.rs` checks those).
pub async fn send_code(c: &mut Client, request_id: u32, msg: SendMessage, code: i32) {
    c.send_message(request_id, msg).await;
    loop {
        match c.recv().await.body {
            Some(S::SendResult(r)) => {
                assert_eq!(
                    (r.request_id, r.code),
                    (request_id, code),
                    "{}",
                    c.device_id
                );
                return;
            }
            Some(S::Deliver(_) | S::SfuJoined(_) | S::SfuFeeds(_)) => continue,
            other => panic!("expected SendResult, got {other:?}"),
        }
    }
}

/// [`send_code`] expecting success.
pub async fn send_ok(c: &mut Client, request_id: u32, msg: SendMessage) {
    send_code(c, request_id, msg, 0).await
}

/// Asks for `user`'s calls (`getJoinedUserInfo`) and returns the answer, skipping deliveries
/// and SendResults in between.
pub async fn joined_user_info(
    c: &mut Client,
    request_id: u32,
    user: &str,
) -> rtc_core::proto::JoinedUserInfo {
    c.send(C::GetJoinedUserInfo(rtc_core::proto::GetJoinedUserInfo {
        request_id,
        user_id: user.to_owned(),
    }))
    .await;
    loop {
        match c.recv().await.body {
            Some(S::JoinedUserInfo(info)) => {
                assert_eq!(info.request_id, request_id);
                return info;
            }
            Some(S::Deliver(_) | S::SendResult(_)) => continue,
            other => panic!("expected JoinedUserInfo, got {other:?}"),
        }
    }
}

/// Asserts `replay` (of `ts`) is `m0`…`m{n-1}` in seq order, and that `ts` never queued more
/// than a `page` of it (plus the AuthResult / SyncDone) at once: a long mailbox is replayed
/// one page at a time, not loaded whole.
pub fn assert_paged_replay(ts: &TestServer, replay: &[Delivered], n: u32, page: usize) {
    let got: Vec<String> = replay
        .iter()
        .map(|d| String::from_utf8(d.content.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    assert!(replay.windows(2).all(|w| w[0].seq < w[1].seq));
    let peak = ts
        .server
        .state()
        .metrics
        .replay_peak_queue
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    assert!(peak > 0 && peak <= page + 1, "peak queue {peak}");
}

/// Creates group `group` (named "G") of `users` through `ts`'s Server API.
pub async fn create_group(ts: &TestServer, group: &str, users: &[&str]) {
    let mut form: Vec<(&str, &str)> = users.iter().map(|u| ("userId", *u)).collect();
    form.extend([("groupId", group), ("groupName", "G")]);
    api_ok(ts, "/group/create.json", &form).await;
}

/// Polls `f` until it holds; fails after [`CATCH_UP`].
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = std::time::Instant::now();
    while !f().await {
        assert!(t0.elapsed() < CATCH_UP, "not within {CATCH_UP:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
