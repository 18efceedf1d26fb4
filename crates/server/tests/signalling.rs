//! WebSocket signalling: authentication, routing, ordering, robustness.

mod common;

use std::time::Duration;

use common::*;
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{error_code, Ack, Delivered, Ping, SendResult};
use tokio_tungstenite::tungstenite::Message;

fn delivered(frame: rtc_core::proto::ServerFrame, who: &str) -> Delivered {
    match frame.body {
        Some(S::Deliver(d)) => d,
        other => panic!("{who}: expected Delivered, got {other:?}"),
    }
}

fn send_result(frame: rtc_core::proto::ServerFrame) -> SendResult {
    match frame.body {
        Some(S::SendResult(r)) => r,
        other => panic!("expected SendResult, got {other:?}"),
    }
}

/// Asserts an `AuthResult` with `code` arrives and the connection then closes.
async fn assert_auth_refused(ts: &TestServer, token: &str, code: i32) {
    let mut c = Client::authenticate(ts.addr, token, "dev-x", 0).await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => {
            assert_eq!(a.code, code, "message: {}", a.message);
            assert!(a.user_id.is_empty());
            assert!(!a.message.is_empty());
        }
        other => panic!("expected AuthResult, got {other:?}"),
    }
    c.expect_closed().await;
}

#[tokio::test]
async fn valid_token_authenticates_with_user_id_then_sync_done() {
    let ts = TestServer::start().await;
    let mut c = Client::authenticate(ts.addr, &ts.token("alice"), "d1", 0).await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => assert_eq!((a.code, a.user_id.as_str()), (0, "alice")),
        other => panic!("expected AuthResult, got {other:?}"),
    }
    assert!(matches!(c.recv().await.body, Some(S::SyncDone(_))));
    c.barrier(1).await;
}

#[tokio::test]
async fn forged_token_signature_is_refused_31004() {
    let ts = TestServer::start().await;
    let good = ts.token("alice");
    let (payload, sig) = good.split_once('.').unwrap();
    // Flip one signature character.
    let mut sig: Vec<u8> = sig.bytes().collect();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let forged = format!("{payload}.{}", String::from_utf8(sig).unwrap());
    assert_auth_refused(&ts, &forged, 31004).await;
    // A payload for another user with a signature made with a wrong secret.
    let other_secret =
        rcall_server::token::issue(APP_KEY, "not-the-secret", "mallory", now_ms(), 60_000);
    assert_auth_refused(&ts, &other_secret, 31004).await;
}

#[tokio::test]
async fn token_for_another_app_key_is_refused_31004() {
    let ts = TestServer::start().await;
    let token = rcall_server::token::issue("other-app", APP_SECRET, "alice", now_ms(), 60_000);
    assert_auth_refused(&ts, &token, 31004).await;
}

#[tokio::test]
async fn garbage_token_is_refused_31004() {
    let ts = TestServer::start().await;
    assert_auth_refused(&ts, "this-is-not-a-token", 31004).await;
    assert_auth_refused(&ts, "", 31004).await;
}

#[tokio::test]
async fn expired_token_is_refused_31020() {
    let ts = TestServer::start().await;
    let token = rcall_server::token::issue(APP_KEY, APP_SECRET, "alice", now_ms() - 10_000, 5_000);
    assert_auth_refused(&ts, &token, 31020).await;
}

#[tokio::test]
async fn first_frame_other_than_authenticate_is_refused() {
    let ts = TestServer::start().await;
    let mut ws = Client {
        ws: Client::connect(ts.addr).await,
        user_id: String::new(),
        device_id: "d".into(),
    };
    ws.send(C::Ping(Ping { nonce: 7 })).await;
    match ws.recv().await.body {
        Some(S::Error(e)) => assert_eq!(e.code, error_code::NOT_AUTHENTICATED),
        other => panic!("expected ErrorFrame, got {other:?}"),
    }
    ws.expect_closed().await;
}

#[tokio::test]
async fn silent_connection_is_dropped_after_auth_timeout() {
    let ts = TestServer::start_with(|c| c.auth_timeout = Duration::from_millis(300)).await;
    let mut ws = Client {
        ws: Client::connect(ts.addr).await,
        user_id: String::new(),
        device_id: "d".into(),
    };
    let started = std::time::Instant::now();
    match ws.recv().await.body {
        Some(S::Error(e)) => assert_eq!(e.code, error_code::NOT_AUTHENTICATED),
        other => panic!("expected ErrorFrame, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    ws.expect_closed().await;
}

#[tokio::test]
async fn private_message_reaches_all_recipient_devices_and_senders_other_devices() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut a2 = ts.client("alice", "a2").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut b2 = ts.client("bob", "b2").await;
    let mut c1 = ts.client("carol", "c1").await;

    let before = now_ms();
    let mut msg = private("bob", b"hello bob");
    msg.channel_id = "ch".into();
    a1.send_message(42, msg).await;
    let r = send_result(a1.recv().await);
    assert_eq!((r.request_id, r.code), (42, 0));
    assert!(r.sent_time >= before && r.sent_time <= now_ms());
    assert!(!r.message_uid.is_empty());

    for (client, expected_target) in [(&mut b1, "alice"), (&mut b2, "alice"), (&mut a2, "bob")] {
        let who = client.device_id.clone();
        let d = delivered(client.recv().await, &who);
        assert_eq!(d.target_id, expected_target, "{who}");
        assert_eq!(d.sender_user_id, "alice", "{who}");
        assert_eq!(d.sender_device_id, "a1", "{who}");
        assert_eq!(d.conversation_type, 1);
        assert_eq!(d.channel_id, "ch");
        assert_eq!(d.message_type, "RC:VCInvite");
        assert_eq!(d.content, b"hello bob");
        assert_eq!(d.sent_time, r.sent_time);
        assert_eq!(d.message_uid, r.message_uid);
        assert!(d.seq >= 1);
        assert!(!d.offline);
    }
    // Not echoed to the sending socket, and nothing for an uninvolved user.
    a1.barrier(1).await;
    c1.barrier(2).await;
}

#[tokio::test]
async fn burst_of_50_is_delivered_in_order_with_increasing_seq_and_sent_time() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut a2 = ts.client("alice", "a2").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut b2 = ts.client("bob", "b2").await;

    for i in 1..=50u32 {
        a1.send_message(1000 + i, private("bob", &i.to_be_bytes()))
            .await;
    }
    let mut results = Vec::new();
    for i in 1..=50u32 {
        let r = send_result(a1.recv().await);
        assert_eq!(r.request_id, 1000 + i, "SendResults come in request order");
        assert_eq!(r.code, 0);
        results.push(r);
    }
    for w in results.windows(2) {
        assert!(w[1].sent_time >= w[0].sent_time);
        assert_ne!(w[1].message_uid, w[0].message_uid);
    }
    for client in [&mut b1, &mut b2, &mut a2] {
        let who = client.device_id.clone();
        let mut last_seq = 0;
        let mut last_time = 0;
        for i in 1..=50u32 {
            let d = delivered(client.recv().await, &who);
            assert_eq!(
                d.content,
                i.to_be_bytes(),
                "{who}: message {i} out of order"
            );
            assert!(d.seq > last_seq, "{who}: seq must increase");
            assert!(
                d.sent_time >= last_time,
                "{who}: sent_time must not decrease"
            );
            assert_eq!(d.sent_time, results[i as usize - 1].sent_time);
            assert_eq!(d.message_uid, results[i as usize - 1].message_uid);
            last_seq = d.seq;
            last_time = d.sent_time;
        }
        client.barrier(9).await;
    }
    a1.barrier(9).await;
}

#[tokio::test]
async fn group_message_goes_only_to_the_directional_list() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut a2 = ts.client("alice", "a2").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut c1 = ts.client("carol", "c1").await;
    let mut d1 = ts.client("dave", "d1").await;
    create_group(&ts, "g1", &["alice", "bob", "carol", "dave"]).await;

    a1.send_message(5, group("g1", &["bob", "dave"], b"grp"))
        .await;
    let r = send_result(a1.recv().await);
    assert_eq!((r.request_id, r.code), (5, 0));
    for client in [&mut b1, &mut d1, &mut a2] {
        let who = client.device_id.clone();
        let d = delivered(client.recv().await, &who);
        assert_eq!(d.conversation_type, 3);
        assert_eq!(d.target_id, "g1", "{who}");
        assert_eq!(d.sender_user_id, "alice");
        assert_eq!(d.content, b"grp");
    }
    c1.barrier(1).await; // carol is not in the directional list
    a1.barrier(2).await;
}

#[tokio::test]
async fn invalid_sends_get_33003_and_deliver_nothing() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;

    let mut wrong_type = private("bob", b"x");
    wrong_type.conversation_type = 2;
    a1.send_message(1, wrong_type).await;
    a1.send_message(2, private("", b"x")).await;
    a1.send_message(3, group("g1", &[], b"x")).await;
    a1.send_message(4, group("", &["bob"], b"x")).await;
    for id in 1..=4 {
        let r = send_result(a1.recv().await);
        assert_eq!((r.request_id, r.code), (id, 33003));
        assert!(r.message_uid.is_empty());
    }
    b1.barrier(1).await;
    // The connection still works after refused sends.
    a1.send_message(5, private("bob", b"ok")).await;
    assert_eq!(send_result(a1.recv().await).code, 0);
    assert_eq!(delivered(b1.recv().await, "b1").content, b"ok");
}

#[tokio::test]
async fn send_results_match_request_ids_across_mixed_requests() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    api_ok(
        &ts,
        "/group/join.json",
        &[("groupId", "g"), ("userId", "alice"), ("userId", "bob")],
    )
    .await;
    let mut bad = private("bob", b"x");
    bad.conversation_type = 7;
    a1.send_message(77, private("bob", b"1")).await;
    a1.send_message(3, bad).await;
    a1.send_message(12345, group("g", &["bob"], b"2")).await;
    let got: Vec<(u32, i32)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let r = send_result(a1.recv().await);
            v.push((r.request_id, r.code));
        }
        v
    };
    assert_eq!(got, vec![(77, 0), (3, 33003), (12345, 0)]);
}

#[tokio::test]
async fn sending_to_an_offline_user_is_accepted() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_message(1, private("nobody-online", b"x")).await;
    let r = send_result(a1.recv().await);
    assert_eq!((r.request_id, r.code), (1, 0));
    assert!(r.sent_time > 0);
}

#[tokio::test]
async fn ping_gets_pong_with_same_nonce() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    for nonce in [0, 1, u32::MAX] {
        a1.send(C::Ping(Ping { nonce })).await;
        match a1.recv().await.body {
            Some(S::Pong(p)) => assert_eq!(p.nonce, nonce),
            other => panic!("expected Pong, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ack_is_accepted_silently() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    a1.send_message(1, private("bob", b"x")).await;
    let d = delivered(b1.recv().await, "b1");
    b1.send(C::Ack(Ack { seq: d.seq })).await;
    b1.barrier(3).await; // no reply to Ack, connection alive
}

#[tokio::test]
async fn reconnecting_device_continues_above_resume_from() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = Client::authenticate(ts.addr, &ts.token("bob"), "b1", 500).await;
    assert!(matches!(b1.recv().await.body, Some(S::AuthResult(a)) if a.code == 0));
    assert!(matches!(b1.recv().await.body, Some(S::SyncDone(_))));
    a1.send_message(1, private("bob", b"x")).await;
    assert!(delivered(b1.recv().await, "b1").seq > 500);
}

#[tokio::test]
async fn two_connections_of_one_device_both_receive_with_the_same_seq() {
    // Two tabs of one browser share the device id (localStorage).
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut tab1 = ts.client("bob", "b").await;
    let mut tab2 = ts.client("bob", "b").await;
    a1.send_message(1, private("bob", b"x")).await;
    assert_eq!(send_result(a1.recv().await).code, 0);
    let d1 = delivered(tab1.recv().await, "tab1");
    let d2 = delivered(tab2.recv().await, "tab2");
    assert_eq!(d1, d2);
    // A message from one tab reaches the other tab (same device, other connection) only.
    tab1.send_message(2, private("alice", b"y")).await;
    assert_eq!(send_result(tab1.recv().await).code, 0);
    let echo = delivered(tab2.recv().await, "tab2");
    assert_eq!(
        (echo.target_id.as_str(), echo.content.as_slice()),
        ("alice", b"y".as_slice())
    );
    assert!(echo.seq > d2.seq);
    assert_eq!(delivered(a1.recv().await, "a1").target_id, "bob");
    tab1.barrier(1).await;
}

/// Asserts that a bystander pair keeps working after `violator` broke the protocol.
async fn assert_others_unaffected(ts: &TestServer, a1: &mut Client, b1: &mut Client) {
    a1.send_message(900, private("bob", b"still here")).await;
    let r = send_result(a1.recv().await);
    assert_eq!((r.request_id, r.code), (900, 0));
    assert_eq!(delivered(b1.recv().await, "b1").content, b"still here");
    b1.send_message(901, private("alice", b"me too")).await;
    assert_eq!(send_result(b1.recv().await).code, 0);
    assert_eq!(delivered(a1.recv().await, "a1").content, b"me too");
    // The violating connection left the routing table.
    let hub = &ts.server.state().hub;
    for _ in 0..100 {
        if hub.connection_count("mallory") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("violating connection still routed");
}

async fn assert_violation_closes(msg: Message, expected: i32) {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut m = ts.client("mallory", "m1").await;
    m.send_raw(msg).await;
    match m.recv().await.body {
        Some(S::Error(e)) => assert_eq!(e.code, expected, "{}", e.message),
        other => panic!("expected ErrorFrame, got {other:?}"),
    }
    m.expect_closed().await;
    assert_others_unaffected(&ts, &mut a1, &mut b1).await;
}

#[tokio::test]
async fn oversized_frame_gets_frame_too_large_and_close() {
    let limit = rcall_server::config::DEFAULT_MAX_FRAME_BYTES;
    assert_eq!(limit, 64 * 1024);
    assert_violation_closes(
        Message::Binary(vec![0u8; limit + 1].into()),
        error_code::FRAME_TOO_LARGE,
    )
    .await;
}

/// A frame announced over the limit is refused from its header: the server neither waits for
/// its payload nor buffers it, and still says why before closing.
#[tokio::test]
async fn a_frame_announced_over_the_limit_is_refused_before_its_payload() {
    use tokio::io::AsyncWriteExt;
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut m = ts.client("mallory", "m1").await;
    // A masked binary frame of 1,000,000 bytes: its header and mask only.
    let mut header = vec![0x82u8, 0x80 | 127];
    header.extend_from_slice(&1_000_000u64.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = m.ws.get_mut() else {
        panic!("plain TCP expected");
    };
    tcp.write_all(&header).await.unwrap();
    match m.recv().await.body {
        Some(S::Error(e)) => {
            assert_eq!(e.code, error_code::FRAME_TOO_LARGE, "{}", e.message);
            assert!(e.message.contains("1000000"), "{}", e.message);
        }
        other => panic!("expected ErrorFrame, got {other:?}"),
    }
    m.expect_closed().await;
    assert_others_unaffected(&ts, &mut a1, &mut b1).await;
}

#[tokio::test]
async fn a_frame_sent_right_behind_the_upgrade_request_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ts = TestServer::start().await;
    // The request and a masked Ping in one write: hyper reads both, the WebSocket must get the
    // Ping from hyper's buffer once it takes the connection over.
    let mut bytes = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    let mask = [9u8, 8, 7, 6];
    bytes.extend_from_slice(&[0x89, 0x80 | 5]);
    bytes.extend_from_slice(&mask);
    bytes.extend(b"early".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    let mut tcp = tokio::net::TcpStream::connect(ts.addr).await.unwrap();
    tcp.write_all(&bytes).await.unwrap();
    let head = read_http_head(&mut tcp).await;
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut pong = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut pong))
        .await
        .expect("no Pong for the Ping sent with the request")
        .unwrap();
    assert_eq!(pong, *b"\x8a\x05early");
}

#[tokio::test]
async fn frame_at_the_limit_is_accepted() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    // Grow the content until the encoded frame is exactly the limit.
    let limit = rcall_server::config::DEFAULT_MAX_FRAME_BYTES;
    let mut content = vec![7u8; limit - 64];
    let frame = |content: &[u8]| {
        rtc_core::proto::ClientFrame::new(C::Send(rtc_core::proto::SendMessage {
            request_id: 1,
            ..private("bob", content)
        }))
        .to_bytes()
    };
    while frame(&content).len() < limit {
        content.push(7);
    }
    assert_eq!(frame(&content).len(), limit);
    a1.send_raw(Message::Binary(frame(&content).into())).await;
    assert_eq!(send_result(a1.recv().await).code, 0);
    assert_eq!(
        delivered(b1.recv().await, "b1").content.len(),
        content.len()
    );
}

#[tokio::test]
async fn malformed_frame_gets_malformed_and_close() {
    assert_violation_closes(
        Message::Binary(vec![0xFF, 0xFF, 0xFF].into()),
        error_code::MALFORMED_FRAME,
    )
    .await;
}

/// A `Send` with invalid UTF-8 in its target id is malformed, even though its framing is fine
/// (the server reads canonical `Send` frames in place and must refuse what prost refuses).
#[tokio::test]
async fn send_with_invalid_utf8_gets_malformed_and_close() {
    let mut frame = rtc_core::proto::ClientFrame::new(C::Send(private("bob", b"x"))).to_bytes();
    let at = frame.windows(3).position(|w| w == b"bob").unwrap();
    frame[at] = 0xC3;
    assert_violation_closes(Message::Binary(frame.into()), error_code::MALFORMED_FRAME).await;
}

/// A `Send` encoded unlike prost — fields out of order, one repeated (the last wins), an
/// unknown one — is routed as prost decodes it.
#[tokio::test]
async fn send_in_an_unusual_encoding_is_routed_as_prost_decodes_it() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    use prost::Message as _;
    // Field by field, each a SendMessage of its own: their concatenation is one message.
    let parts = [
        rtc_core::proto::SendMessage {
            content: b"first".to_vec(),
            ..Default::default()
        },
        private("bob", b""),
        rtc_core::proto::SendMessage {
            request_id: 9,
            content: b"second".to_vec(),
            ..Default::default()
        },
    ];
    let mut body: Vec<u8> = parts.iter().flat_map(|m| m.encode_to_vec()).collect();
    body.extend_from_slice(&[0xF8, 0x01, 0x05]); // field 31, varint 5: unknown
    let mut frame = vec![0x12];
    prost::encoding::encode_varint(body.len() as u64, &mut frame);
    frame.extend_from_slice(&body);
    a1.send_raw(Message::Binary(frame.into())).await;
    let r = send_result(a1.recv().await);
    assert_eq!((r.request_id, r.code), (9, 0));
    assert_eq!(delivered(b1.recv().await, "b1").content, b"second");
}

#[tokio::test]
async fn text_frame_gets_text_frame_error_and_close() {
    assert_violation_closes(Message::Text("hello".into()), error_code::TEXT_FRAME).await;
}

#[tokio::test]
async fn closed_connection_is_removed_from_routing() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let b1 = ts.client("bob", "b1").await;
    let mut b2 = ts.client("bob", "b2").await;
    let hub = &ts.server.state().hub;
    assert_eq!(hub.connection_count("bob"), 2);
    drop(b1);
    let mut n = 2;
    for _ in 0..100 {
        n = hub.connection_count("bob");
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 1);
    a1.send_message(1, private("bob", b"x")).await;
    assert_eq!(send_result(a1.recv().await).code, 0);
    assert_eq!(delivered(b2.recv().await, "b2").content, b"x");
}

#[tokio::test]
async fn shutdown_closes_websockets() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let TestServer {
        server, dir: _dir, ..
    } = ts;
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown finishes")
        .unwrap();
    a1.expect_closed().await;
}

#[tokio::test]
async fn a_hundred_frames_in_one_write_all_get_answers_in_order() {
    use futures::SinkExt;
    let ts = TestServer::start_with(|c| c.rate_limit_burst = 1000).await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    for i in 1..=100u32 {
        let frame = rtc_core::proto::ClientFrame::new(C::Send(rtc_core::proto::SendMessage {
            request_id: i,
            ..private("bob", &i.to_be_bytes())
        }));
        a1.ws
            .feed(Message::Binary(frame.to_bytes().into()))
            .await
            .unwrap();
    }
    a1.ws.flush().await.unwrap();
    for i in 1..=100u32 {
        let r = send_result(a1.recv().await);
        assert_eq!((r.request_id, r.code), (i, 0));
    }
    for i in 1..=100u32 {
        assert_eq!(delivered(b1.recv().await, "b1").content, i.to_be_bytes());
    }
    a1.barrier(1).await;
}

#[tokio::test]
async fn no_receipt_messages_get_a_send_result_only_when_refused() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let quiet = |content: &[u8]| rtc_core::proto::SendMessage {
        no_receipt: true,
        ..private("bob", content)
    };
    a1.send_message(1, quiet(b"candidate")).await;
    assert_eq!(delivered(b1.recv().await, "b1").content, b"candidate");
    // Nothing was queued for alice before the Pong: no SendResult for an accepted message.
    a1.barrier(7).await;
    // A refusal is still answered.
    api_ok(
        &ts,
        "/user/blacklist/add.json",
        &[("userId", "bob"), ("blackUserId", "alice")],
    )
    .await;
    a1.send_message(2, quiet(b"refused")).await;
    let r = send_result(a1.recv().await);
    assert_eq!((r.request_id, r.code), (2, 405));
    b1.barrier(8).await;
}
