//! No client can exhaust the server (issue 11, items 4–9): slowloris connections, big frames
//! before authentication, replay amplification, one user taking the whole app, filling the
//! offline store, and operational defaults. Each test uses small configured limits.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{error_code, Authenticate, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection from `source` (another loopback address than the test's own clients).
async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{source}:0").parse().unwrap())?;
    s.connect(addr).await
}

/// Reads until EOF or an error; true if that happened within `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

// ---- 4. slowloris ------------------------------------------------------------------------

#[tokio::test]
async fn half_sent_requests_are_capped_per_ip_and_cut_after_the_header_timeout() {
    let ts = TestServer::start_with(|c| {
        c.header_read_timeout = Duration::from_secs(2);
        c.max_unauthenticated_per_ip = 20;
        c.max_unauthenticated = 1000;
    })
    .await;
    // The soft open-file limit was raised to the hard one at start.
    let (soft, hard) = rcall_server::listener::raise_nofile_limit().unwrap();
    assert_eq!(soft, hard);

    // 60 half-sent requests from 127.0.0.2.
    let mut conns = Vec::new();
    for _ in 0..60 {
        let mut tcp = connect_from("127.0.0.2", ts.addr).await.unwrap();
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
            .await;
        conns.push(tcp);
    }
    let started = Instant::now();
    // Past the per-IP cap they are closed at once, well before the header timeout. (Checked
    // all at once: one after another, a loaded machine once took longer than the timeout.)
    let checks = conns
        .iter_mut()
        .map(|tcp| closed_within(tcp, Duration::from_millis(50)));
    let closed_at_once = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count();
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "checking took too long"
    );
    assert!(
        closed_at_once >= 40,
        "only {closed_at_once} of 60 refused past a cap of 20"
    );
    assert!(ts.server.state().gate.unauthenticated() <= 20);
    assert!(
        ts.server
            .state()
            .metrics
            .unauthenticated_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 40
    );

    // Meanwhile other clients are served: /healthz and a real WebSocket login.
    ts.assert_healthy().await;
    let mut a1 = ts.client("alice", "a1").await;
    a1.barrier(1).await;

    // The rest are cut once the header timeout passes.
    for tcp in conns.iter_mut() {
        assert!(
            closed_within(tcp, Duration::from_secs(4)).await,
            "a half-sent request outlived the header timeout"
        );
    }
    // A keep-alive connection that went idle after a request is closed too.
    let mut idle = TcpStream::connect(ts.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    // After all that the address can connect again, and the authenticated client was not
    // affected by any of it.
    let tcp = connect_from("127.0.0.2", ts.addr).await.unwrap();
    drop(tcp);
    ts.assert_healthy().await;
    a1.barrier(2).await;
}

#[tokio::test]
async fn the_global_cap_on_unauthenticated_connections_leaves_authenticated_ones_alone() {
    let ts = TestServer::start_with(|c| {
        c.max_unauthenticated = 5;
        c.max_unauthenticated_per_ip = 100;
    })
    .await;
    // Authenticated connections do not count.
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(ts.client(&format!("u{i}"), "d").await);
    }
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect_from("127.0.0.3", ts.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ts.server.state().gate.unauthenticated(), 5);
    let mut extra = TcpStream::connect(ts.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(1)).await);
    for (i, c) in clients.iter_mut().enumerate() {
        c.barrier(i as u32).await;
    }
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ts.assert_healthy().await;
}

// ---- 5. pre-auth frame limit -------------------------------------------------------------

#[tokio::test]
async fn a_big_frame_before_authentication_is_refused_and_small_ones_work() {
    let ts = TestServer::start().await;
    // 64 KiB before Authenticate: FRAME_TOO_LARGE (or the connection is cut).
    let mut ws = Client::connect(ts.addr).await;
    let _ = ws.send_raw_frame(vec![0u8; 64 * 1024]).await;
    let mut refused = false;
    loop {
        match tokio::time::timeout(WAIT, futures::StreamExt::next(&mut ws)).await {
            Err(_) => panic!("the connection stayed open"),
            Ok(Some(Ok(Message::Binary(b)))) => match ServerFrame::from_bytes(&b).unwrap().body {
                Some(S::Error(e)) => {
                    assert_eq!(e.code, error_code::FRAME_TOO_LARGE, "{}", e.message);
                    refused = true;
                }
                other => panic!("unexpected {other:?}"),
            },
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    assert!(refused, "no FRAME_TOO_LARGE before the close");

    // A frame announced as 1 MB is cut after a few KB, long before the auth timeout.
    let mut tcp = TcpStream::connect(ts.addr).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_http_head(&mut tcp).await;
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut frame = vec![0x82u8, 0x80 | 127];
    frame.extend_from_slice(&1_000_000u64.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    let started = Instant::now();
    let _ = tcp.write_all(&frame).await;
    for _ in 0..25 {
        if tcp.write_all(&[0u8; 4096]).await.is_err() {
            break;
        }
    }
    assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A normal login still works, and once authenticated a client may send frames up to the
    // post-auth limit (64 KiB by default).
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let big = vec![7u8; 60_000];
    a1.send_expect(1, private("bob", &big), 0).await;
    assert_eq!(b1.recv_delivered().await.content.len(), 60_000);
    ts.assert_healthy().await;
}

trait RawSend {
    async fn send_raw_frame(&mut self, bytes: Vec<u8>) -> Result<(), ()>;
}

impl RawSend for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    async fn send_raw_frame(&mut self, bytes: Vec<u8>) -> Result<(), ()> {
        futures::SinkExt::send(self, Message::Binary(bytes.into()))
            .await
            .map_err(|_| ())
    }
}

// ---- 6. replay amplification -------------------------------------------------------------

async fn auth_code(ts: &TestServer, user: &str, device: &str) -> (Client, i32) {
    let mut c = Client::authenticate(ts.addr, &ts.token(user), device, 0).await;
    let code = match c.recv().await.body {
        Some(S::AuthResult(a)) => {
            // A connection limit is no busy node: no turn to come back at (the SDK's
            // `connect()` resolves it at once).
            assert!(a.code != 31003 || a.retry_after_ms == 0, "{a:?}");
            a.code
        }
        other => panic!("expected AuthResult, got {other:?}"),
    };
    if code == 0 {
        match c.recv().await.body {
            Some(S::SyncDone(_)) => {}
            other => panic!("expected SyncDone, got {other:?}"),
        }
    }
    (c, code)
}

#[tokio::test]
async fn connections_are_capped_per_device_and_per_user_31003() {
    let ts = TestServer::start_with(|c| {
        c.max_connections_per_device = 2;
        c.max_connections_per_user = 3;
    })
    .await;
    let (_a, code) = auth_code(&ts, "alice", "d1").await;
    assert_eq!(code, 0);
    let (_b, code) = auth_code(&ts, "alice", "d1").await;
    assert_eq!(code, 0);
    let (_c, code) = auth_code(&ts, "alice", "d1").await;
    assert_eq!(code, 31003, "third connection of one device");
    let (_d, code) = auth_code(&ts, "alice", "d2").await;
    assert_eq!(code, 0);
    let (_e, code) = auth_code(&ts, "alice", "d3").await;
    assert_eq!(code, 31003, "fourth connection of one user");
    // Other users are not affected.
    let (mut bob, code) = auth_code(&ts, "bob", "d1").await;
    assert_eq!(code, 0);
    bob.barrier(1).await;
    assert_eq!(ts.server.state().hub.connection_count("alice"), 3);
    // A freed slot can be taken again.
    drop(_a);
    for _ in 0..100 {
        if ts.server.state().hub.connection_count("alice") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_f, code) = auth_code(&ts, "alice", "d1").await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn a_large_replay_arrives_complete_and_in_order_one_page_at_a_time() {
    const PAGE: usize = 10;
    const N: u32 = 95;
    let ts = TestServer::start_with(|c| {
        c.replay_page_messages = PAGE;
    })
    .await;
    // alice's device is known, then she goes away; bob sends her N messages (stored).
    drop(ts.client("alice", "a1").await);
    for _ in 0..100 {
        if ts.server.state().hub.connection_count("alice") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b1 = ts.client("bob", "b1").await;
    for i in 0..N {
        b1.send_expect(i, private("alice", format!("m{i}").as_bytes()), 0)
            .await;
    }
    let (mut a1, replay) = Client::login_resume(ts.addr, &ts.token("alice"), "a1", 0).await;
    assert_paged_replay(&ts, &replay, N, PAGE);
    // Live traffic follows the replay.
    b1.send_expect(1000, private("alice", b"live"), 0).await;
    assert_eq!(a1.recv_delivered().await.content, b"live");
}

// ---- 7. one user cannot take the whole app ------------------------------------------------

#[tokio::test]
async fn a_user_with_many_sockets_cannot_exceed_the_per_user_rate() {
    let ts = TestServer::start_with(|c| {
        c.user_rate_per_sec = 5;
        c.user_rate_burst = 10;
        c.rate_limit_per_sec = 1000;
        c.rate_limit_burst = 1000;
    })
    .await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut socks = Vec::new();
    for i in 0..4 {
        socks.push(ts.client("mallory", &format!("m{i}")).await);
    }
    let started = Instant::now();
    for (k, s) in socks.iter_mut().enumerate() {
        for i in 0..10u32 {
            s.send_message(k as u32 * 100 + i, private("bob", b"x"))
                .await;
        }
    }
    let (mut ok, mut refused) = (0, 0);
    for s in socks.iter_mut() {
        let mut results = 0;
        while results < 10 {
            // (Copies of what the user's other sockets sent come in between.)
            match s.recv().await.body {
                Some(S::SendResult(r)) => {
                    results += 1;
                    match r.code {
                        0 => ok += 1,
                        20604 => refused += 1,
                        other => panic!("unexpected code {other}"),
                    }
                }
                Some(S::Deliver(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let allowed = 10 + (5.0 * secs).ceil() as i32;
    assert!(
        ok <= allowed,
        "{ok} accepted from 4 sockets; the user's bucket allows {allowed}"
    );
    assert_eq!(ok + refused, 40);
    // bob got exactly the accepted ones; another user is unaffected.
    for _ in 0..ok {
        b1.recv_delivered().await;
    }
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(1, private("bob", b"hi"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"hi");
}

// ---- 8. the offline store cannot fill the disk ---------------------------------------------

#[tokio::test]
async fn a_sender_spraying_offline_user_ids_is_refused_past_its_quota() {
    let ts = TestServer::start_with(|c| {
        c.offline_quota_per_sender = 5;
    })
    .await;
    let mut m = ts.client("mallory", "m1").await;
    let mut codes = Vec::new();
    for i in 0..20u32 {
        m.send_message(i, private(&format!("random-{i}"), b"junk"))
            .await;
        codes.push(m.recv_send_result().await.code);
    }
    assert_eq!(&codes[..5], &[0; 5]);
    assert!(codes[5..].iter().all(|c| *c == 40507), "{codes:?}");
    // Messages to online users are still fine for her.
    let mut b1 = ts.client("bob", "b1").await;
    m.send_expect(100, private("bob", b"hello"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"hello");
    // Another user's message for an offline user is stored and delivered on connect.
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(1, private("dave", b"for dave"), 0).await;
    let (_d, replay) = Client::login_resume(ts.addr, &ts.token("dave"), "d1", 0).await;
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].content, b"for dave");
}

#[tokio::test]
async fn the_global_offline_byte_quota_and_the_write_queue_bound_refuse_storing() {
    let ts = TestServer::start_with(|c| {
        c.offline_max_bytes = 2500;
    })
    .await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let body = vec![1u8; 800];
    a1.send_expect(1, private("x1", &body), 0).await;
    a1.send_expect(2, private("x2", &body), 0).await;
    a1.send_expect(3, private("x3", &body), 40508).await;
    // Live delivery is unaffected.
    a1.send_expect(4, private("bob", &body), 0).await;
    assert_eq!(b1.recv_delivered().await.content.len(), 800);
    // Acked messages free the quota.
    let (mut x1, replay) = Client::login_resume(ts.addr, &ts.token("x1"), "d", 0).await;
    x1.ack(replay[0].seq).await;
    x1.barrier(1).await;
    for _ in 0..100 {
        if ts.server.state().store.offline_bytes() < 1500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a1.send_expect(5, private("x3", &body), 0).await;

    // A write queue with no room: stored copies are refused 40509, live delivery goes on.
    let ts = TestServer::start_with(|c| c.store_queue_max = 0).await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    a1.send_expect(1, private("offline-user", b"x"), 40509)
        .await;
    a1.send_expect(2, private("bob", b"y"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"y");
}

// ---- 9. operational defaults ------------------------------------------------------------

async fn metrics_status(ts: &TestServer, peer: SocketAddr, bearer: Option<&str>) -> u16 {
    let mut router = rcall_server::router(ts.server.state().clone());
    let mut req = axum::http::Request::get("/metrics");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(axum::body::Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let resp = tower_service::Service::call(&mut router, req)
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test]
async fn metrics_answer_loopback_only_unless_a_token_is_set() {
    let ts = TestServer::start().await;
    let remote: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    assert_eq!(metrics_status(&ts, remote, None).await, 403);
    assert_eq!(metrics_status(&ts, local, None).await, 200);
    // Over a real connection from loopback.
    let resp = reqwest::get(ts.url("/metrics")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("rcall_connections"));

    let ts = TestServer::start_with(|c| c.metrics_token = Some("scrape-token".into())).await;
    assert_eq!(metrics_status(&ts, remote, None).await, 401);
    assert_eq!(metrics_status(&ts, remote, Some("scrape-token")).await, 200);
}

#[tokio::test]
async fn a_short_app_secret_is_refused_at_start_outside_dev() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = rcall_server::Config::new("k", "short-secret");
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.db_path = dir.path().join("x.db");
    let err = match rcall_server::start(c.clone()).await {
        Ok(_) => panic!("a 12-byte secret was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("at least 16"), "{err}");
    c.dev = true;
    let s = rcall_server::start(c)
        .await
        .expect("--dev keeps short secrets");
    s.shutdown().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let ts = TestServer::start().await;
    // Something stored, so the WAL has content.
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(1, private("nobody-here", b"x"), 0).await;
    let db = ts.config.db_path.clone();
    let mut seen = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        if let Ok(m) = std::fs::metadata(&p) {
            seen += 1;
            assert_eq!(
                m.permissions().mode() & 0o777,
                0o600,
                "{} is not 0600",
                std::path::Path::new(&p).display()
            );
        }
    }
    assert!(seen >= 2, "database and WAL exist");
}

#[tokio::test]
async fn pings_before_authentication_fit_the_budget() {
    // Control frames before Authenticate are part of the pre-auth budget but a few are fine.
    let ts = TestServer::start().await;
    let mut c = Client {
        ws: Client::connect(ts.addr).await,
        user_id: String::new(),
        device_id: "a1".into(),
    };
    for _ in 0..5 {
        c.send_raw(Message::Ping(vec![0u8; 16].into())).await;
    }
    c.send(C::Authenticate(Authenticate {
        token: ts.token("alice"),
        device_id: "a1".into(),
        resume_from: 0,
        instance: 0,
    }))
    .await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => assert_eq!(a.code, 0),
        other => panic!("expected AuthResult, got {other:?}"),
    }
}
