//! Exactly once: a resent `client_seq` is confirmed but not routed again, `accepted_upto` in
//! `AuthResult` and `Pong`, sender instance and client seq in every `Delivered`, and the
//! accepted value surviving a restart; persisted Server API nonces.

mod common;

use common::*;
use rtc_core::proto::SendMessage;

fn n(content: &[u8]) -> u32 {
    u32::from_be_bytes(content.try_into().expect("4-byte content"))
}

fn tracked(to: &str, i: u32, client_seq: u64) -> SendMessage {
    SendMessage {
        client_seq,
        ..private(to, &i.to_be_bytes())
    }
}

#[tokio::test]
async fn a_resend_is_confirmed_but_not_routed_again() {
    let ts = TestServer::start().await;
    let (mut a1, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 7).await;
    assert_eq!(auth.accepted_upto, 0);
    let mut b1 = ts.client("bob", "b1").await;
    for i in 1..=3u32 {
        a1.send_expect(i, tracked("bob", i, u64::from(i)), 0).await;
        let d = b1.recv_delivered().await;
        assert_eq!(
            (n(&d.content), d.sender_instance, d.client_seq),
            (i, 7, u64::from(i))
        );
    }
    // Resends (e.g. after a reconnect that lost the SendResults): accepted, not delivered.
    for (req, cs) in [(12u32, 2u64), (13, 3)] {
        a1.send_message(req, tracked("bob", 99, cs)).await;
        let r = a1.recv_send_result().await;
        assert_eq!((r.request_id, r.code), (req, 0));
        assert!(r.message_uid.is_empty(), "a duplicate has no message uid");
        assert!(r.sent_time > 0);
    }
    b1.barrier(1).await; // nothing was delivered to bob meanwhile
    assert_eq!(a1.ping_accepted_upto(2).await, 3);
    // Untracked messages (client_seq 0) are never deduplicated.
    for i in [20u32, 21] {
        a1.send_expect(i, private("bob", &20u32.to_be_bytes()), 0)
            .await;
        assert_eq!(n(&b1.recv_delivered().await.content), 20);
    }
    // A new connection of the same instance learns what was accepted; other instances and other
    // devices have their own streams.
    drop(a1);
    let (mut a1, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 7).await;
    assert_eq!(auth.accepted_upto, 3);
    let (_a1b, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 8).await;
    assert_eq!(auth.accepted_upto, 0);
    let (mut a2, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a2", 0, 7).await;
    assert_eq!(auth.accepted_upto, 0);
    a2.send_expect(30, tracked("bob", 30, 1), 0).await;
    assert_eq!(n(&b1.recv_delivered().await.content), 30);
    assert_eq!(
        n(&a1.recv_delivered().await.content),
        30,
        "a copy for alice's a1"
    );
    // The next one is routed.
    a1.send_expect(4, tracked("bob", 4, 4), 0).await;
    assert_eq!(n(&b1.recv_delivered().await.content), 4);
    assert_eq!(a1.ping_accepted_upto(3).await, 4);
}

#[tokio::test]
async fn the_accepted_client_seq_survives_a_restart() {
    let ts = TestServer::start().await;
    let (mut a1, _, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 9).await;
    // Stored for offline bob, with its client_seq in the same transaction.
    for i in 1..=3u32 {
        a1.send_expect(i, tracked("bob", i, u64::from(i)), 0).await;
    }
    let ts = ts.restart().await;
    let (mut a1, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 9).await;
    assert_eq!(auth.accepted_upto, 3);
    assert_eq!(a1.ping_accepted_upto(1).await, 3);
    // The client resends what it did not see confirmed: dropped.
    a1.send_expect(13, tracked("bob", 3, 3), 0).await;
    a1.send_expect(4, tracked("bob", 4, 4), 0).await;
    let (_b1, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    let got: Vec<u32> = replay.iter().map(|d| n(&d.content)).collect();
    assert_eq!(got, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_replayed_signed_request_is_refused_after_a_restart() {
    let ts = TestServer::start().await;
    let nonce = fresh_nonce();
    let timestamp = now_ms().to_string();
    let send = |addr: std::net::SocketAddr| {
        let (nonce, timestamp) = (nonce.clone(), timestamp.clone());
        async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/user/getToken.json"))
                .header("App-Key", APP_KEY)
                .header("Nonce", &nonce)
                .header("Timestamp", &timestamp)
                .header("Signature", signature(APP_SECRET, &nonce, &timestamp))
                .form(&[("userId", "alice")])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send(ts.addr).await.status().as_u16(), 200);
    let ts = ts.restart().await;
    let resp = send(ts.addr).await;
    assert_eq!(resp.status().as_u16(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 1004, "{body}");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("Nonce"),
        "{body}"
    );
    // A fresh nonce still works.
    let r = api_request(
        &ts,
        "/user/getToken.json",
        APP_KEY,
        APP_SECRET,
        &[("userId", "alice")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
}

/// Instance ids are random 64-bit numbers (the SDK draws all 64 bits), so half of them are
/// above `i64::MAX`. They were clamped to `i64::MAX` in SQLite, so every such instance of a
/// device shared one persisted record: after a page reload, the new instance's first messages
/// were confirmed as resends of the old one's and never delivered (found by the hostile
/// benchmark in crates/loadgen). Stored as their bit pattern now.
#[tokio::test]
async fn instances_above_i64_max_keep_their_own_streams() {
    let ts = TestServer::start().await;
    let mut b1 = ts.client("bob", "b1").await;
    let (old, new) = ((1u64 << 63) | 5, u64::MAX - 2);
    let (mut a1, _, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, old).await;
    for i in 1..=3u32 {
        a1.send_expect(i, tracked("bob", i, u64::from(i)), 0).await;
        assert_eq!(n(&b1.recv_delivered().await.content), i);
    }
    // The page reloads: the device's last connection goes (its record is persisted) and a new
    // instance of the same device connects.
    drop(a1);
    b1.barrier(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (mut a1, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, new).await;
    assert_eq!(auth.accepted_upto, 0, "a new instance has accepted nothing");
    for i in 1..=3u32 {
        a1.send_message(10 + i, tracked("bob", 100 + i, u64::from(i)))
            .await;
        let r = a1.recv_send_result().await;
        assert_eq!(r.code, 0);
        assert!(
            !r.message_uid.is_empty(),
            "message {i} of the new instance was taken for a resend"
        );
        let d = b1.recv_delivered().await;
        assert_eq!((n(&d.content), d.sender_instance), (100 + i, new));
    }
    // And the old instance still knows what it had accepted (a reconnect of the old page).
    drop(a1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_a1, auth, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, old).await;
    assert_eq!(auth.accepted_upto, 3);
}
