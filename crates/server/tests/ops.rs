//! Operations: Prometheus metrics, graceful shutdown that drains, the binary (help, config file,
//! SIGTERM, logs without secrets or tokens).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::ServerFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .unwrap_or_else(|| panic!("no metric {line_prefix} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn scrape(ts: &TestServer) -> String {
    let resp = reqwest::get(ts.url("/metrics")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    resp.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_connections_messages_latency_queue_depth_and_errors() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    for i in 0..3 {
        a1.send_expect(i, private("bob", b"x"), 0).await;
        b1.recv_delivered().await;
    }
    a1.send_expect(10, private("offline-user", b"x"), 0).await;
    a1.send_expect(11, group("nogroup", &["bob"], b"x"), 22406)
        .await;
    let mut bad = Client::authenticate(ts.addr, "forged", "x", 0).await;
    bad.recv().await;
    b1.barrier(1).await; // the writer recorded its latencies
    ts.server.state().store.flush().await.unwrap();
    let text = scrape(&ts).await;
    assert_eq!(metric(&text, "rcall_connections{app=\"test-app\"}"), 2.0);
    assert_eq!(metric(&text, "rcall_messages_routed_total"), 4.0);
    assert!(metric(&text, "rcall_deliveries_total") >= 0.0);
    assert_eq!(metric(&text, "rcall_delivery_latency_seconds_count"), 3.0);
    assert_eq!(
        metric(&text, "rcall_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );
    assert_eq!(metric(&text, "rcall_offline_queue_depth"), 1.0);
    assert_eq!(metric(&text, "rcall_offline_stored_total"), 1.0);
    assert_eq!(metric(&text, "rcall_errors_total{code=\"22406\"}"), 1.0);
    assert_eq!(metric(&text, "rcall_errors_total{code=\"31004\"}"), 1.0);
    // No secrets or tokens in the exposition.
    assert!(!text.contains(APP_SECRET));
}

#[tokio::test]
async fn metrics_can_be_disabled() {
    let ts = TestServer::start_with(|c| c.metrics = false).await;
    let resp = reqwest::get(ts.url("/metrics")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn graceful_shutdown_flushes_queued_frames_then_closes_1001() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    for i in 0..100u32 {
        a1.send_message(i, private("bob", &i.to_be_bytes())).await;
    }
    for _ in 0..100 {
        assert_eq!(a1.recv_send_result().await.code, 0);
    }
    // bob has not read anything yet; the server shuts down now.
    let TestServer {
        server, dir: _dir, ..
    } = ts;
    let stopping = tokio::spawn(server.shutdown());
    let mut got = 0u32;
    let close = loop {
        let msg = tokio::time::timeout(WAIT, b1.ws.next()).await.unwrap();
        match msg {
            Some(Ok(Message::Binary(b))) => {
                if let Some(S::Deliver(d)) = ServerFrame::from_bytes(&b).unwrap().body {
                    assert_eq!(d.content, got.to_be_bytes());
                    got += 1;
                }
            }
            Some(Ok(Message::Close(f))) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(got, 100, "every queued frame is flushed before the close");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown finishes")
        .unwrap()
        .unwrap();
}

/// Kills the spawned server even if an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rcall-server"));
    // Never let the machine's environment configure the server under test.
    for (k, _) in std::env::vars() {
        if k.starts_with("RCALL_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn help_lists_the_options() {
    let out = server_command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--app-key",
        "--db",
        "--turn-url",
        "--turn-secret",
        "--offline-ttl-secs",
        "--rate-limit-per-sec",
        "--max-connections-per-app",
        "--log-format",
        "RCALL_APP_SECRET",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn binary_with_config_file_serves_logs_json_without_secrets_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "file-secret-5f2b9c";
    let turn_secret = "turn-secret-77ad1e";
    let cfg = dir.path().join("rcall.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\napp_key = \"file-app\"\napp_secret = \"{secret}\"\n\
             db = \"{}\"\nturn_urls = [\"turn:127.0.0.1:3478\"]\nturn_secret = \"{turn_secret}\"\n\
             log_format = \"json\"\n",
            dir.path().join("bin.db").display()
        ),
    )
    .unwrap();
    let child = server_command()
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stderr = child.0.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = first
        .strip_prefix("rcall-server listening on http://")
        .expect(&first)
        .parse()
        .unwrap();

    // Use it: a token from the Server API, a connection, a message.
    let body: serde_json::Value = signed_post(
        addr,
        "/user/getToken.json",
        "file-app",
        secret,
        &[("userId", "alice")],
    )
    .await
    .json()
    .await
    .unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let mut a = Client::login(addr, &token, "a1").await;
    a.send_expect(1, private("bob", b"hello"), 0).await;

    // SIGTERM: clean exit, connection closed.
    let pid: Pid = child.0.id();
    kill_term(pid);
    a.expect_closed().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let logs = stderr_reader.join().unwrap();
    assert!(!logs.is_empty());
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(logs.contains("connected") && logs.contains("rcall-server stopped"));
    for secret_text in [secret, turn_secret, token.as_str()] {
        assert!(!logs.contains(secret_text), "logs leak {secret_text}");
    }
    // The token's signature half is not there either.
    assert!(!logs.contains(token.split_once('.').unwrap().1));
}

type Pid = u32;

/// SIGTERM without a libc dependency: the shell's `kill` builtin.
fn kill_term(pid: Pid) {
    let st = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test]
async fn metrics_token_guards_the_metrics_endpoint() {
    let ts = TestServer::start_with(|c| c.metrics_token = Some("scrape-me".into())).await;
    let http = reqwest::Client::new();
    let get = |auth: Option<&'static str>| {
        let mut req = http.get(ts.url("/metrics"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer scrape-me2"),
        Some("scrape-me"),
    ] {
        let resp = get(auth).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], 1004, "{auth:?}: {body}");
    }
    let resp = get(Some("Bearer scrape-me")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("rcall_"));
    // /healthz stays open for load balancers.
    ts.assert_healthy().await;
}
