//! Test harness: a real server on 127.0.0.1:0 with its SQLite file in a temp dir, and a small
//! WebSocket client speaking the envelope protocol.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rcall_server::{Config, RunningServer};
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{Authenticate, ClientFrame, Ping, SendMessage, ServerFrame};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_KEY: &str = "test-app";
pub const APP_SECRET: &str = "test-secret";
/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub server: RunningServer,
    pub dir: TempDir,
    pub addr: SocketAddr,
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
        let server = rcall_server::start(config).await.expect("server starts");
        let addr = server.local_addr();
        TestServer { server, dir, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A token minted directly with the server's secret (same as getToken would issue).
    pub fn token(&self, user_id: &str) -> String {
        rcall_server::token::issue(APP_KEY, APP_SECRET, user_id, now_ms(), 60_000)
    }

    pub async fn client(&self, user_id: &str, device_id: &str) -> Client {
        Client::login(self.addr, &self.token(user_id), device_id).await
    }
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

/// POST /user/getToken.json signed with `secret`.
pub async fn get_token_request(
    ts: &TestServer,
    app_key: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let nonce = "83726";
    let timestamp = now_ms().to_string();
    reqwest::Client::new()
        .post(ts.url("/user/getToken.json"))
        .header("App-Key", app_key)
        .header("Nonce", nonce)
        .header("Timestamp", &timestamp)
        .header("Signature", signature(secret, nonce, &timestamp))
        .form(form)
        .send()
        .await
        .unwrap()
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

    /// Connects and authenticates; asserts AuthResult{0} then SyncDone.
    pub async fn login(addr: SocketAddr, token: &str, device_id: &str) -> Client {
        let mut c = Client::authenticate(addr, token, device_id, 0).await;
        let auth = match c.recv().await.body {
            Some(S::AuthResult(a)) => a,
            other => panic!("expected AuthResult, got {other:?}"),
        };
        assert_eq!(auth.code, 0, "auth failed: {}", auth.message);
        c.user_id = auth.user_id;
        match c.recv().await.body {
            Some(S::SyncDone(_)) => {}
            other => panic!("expected SyncDone, got {other:?}"),
        }
        c
    }

    /// Connects and sends Authenticate without reading the answer.
    pub async fn authenticate(
        addr: SocketAddr,
        token: &str,
        device_id: &str,
        resume_from: u64,
    ) -> Client {
        let ws = Client::connect(addr).await;
        let mut c = Client {
            ws,
            user_id: String::new(),
            device_id: device_id.to_owned(),
        };
        c.send(C::Authenticate(Authenticate {
            token: token.to_owned(),
            device_id: device_id.to_owned(),
            resume_from,
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
