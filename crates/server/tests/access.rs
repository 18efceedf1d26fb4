//! Identity and access: Server API signing window and nonces, token expiry, blocks, blacklists,
//! groups, kicking from a call, ICE servers, and app isolation.

mod common;

use std::time::Duration;

use common::*;
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{error_code, GetIceServers};
use serde_json::{json, Value};

async fn signed(
    ts: &TestServer,
    path: &str,
    nonce: &str,
    timestamp: &str,
    secret: &str,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(ts.url(path))
        .header("App-Key", APP_KEY)
        .header("Nonce", nonce)
        .header("Timestamp", timestamp)
        .header("Signature", signature(secret, nonce, timestamp))
        .form(&[("userId", "alice")])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Asserts the next frame is an AuthResult refusal with `code`, then the close.
async fn assert_refused(ts: &TestServer, token: &str, device: &str, code: i32) {
    let mut c = Client::authenticate(ts.addr, token, device, 0).await;
    c.expect_refused(code).await;
    c.expect_closed().await;
}

async fn get_token(ts: &TestServer, user: &str) -> String {
    let body = api_ok(ts, "/user/getToken.json", &[("userId", user)]).await;
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stale_or_future_timestamps_are_refused_1004_and_seconds_are_accepted() {
    let ts = TestServer::start().await;
    let ten_min = 10 * 60 * 1000;
    for t in [now_ms() - ten_min, now_ms() + ten_min] {
        let (status, body) = signed(
            &ts,
            "/user/getToken.json",
            &fresh_nonce(),
            &t.to_string(),
            APP_SECRET,
        )
        .await;
        assert_eq!((status, body["code"].as_i64()), (401, Some(1004)), "{body}");
        assert!(body["errorMessage"].as_str().unwrap().contains("Timestamp"));
    }
    // RongCloud SDKs that send seconds keep working.
    let secs = (now_ms() / 1000).to_string();
    let (status, body) = signed(
        &ts,
        "/user/getToken.json",
        &fresh_nonce(),
        &secs,
        APP_SECRET,
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (200, Some(200)));
}

#[tokio::test]
async fn replayed_nonce_is_refused_1004_but_a_failed_signature_does_not_burn_it() {
    let ts = TestServer::start().await;
    let nonce = fresh_nonce();
    let t = now_ms().to_string();
    // A forged request with this nonce does not consume it.
    let (status, _) = signed(&ts, "/user/getToken.json", &nonce, &t, "wrong").await;
    assert_eq!(status, 401);
    let (status, body) = signed(&ts, "/user/getToken.json", &nonce, &t, APP_SECRET).await;
    assert_eq!((status, body["code"].as_i64()), (200, Some(200)));
    // The exact same request again (a replay), and the nonce with a new timestamp.
    let (status, body) = signed(&ts, "/user/getToken.json", &nonce, &t, APP_SECRET).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(1004)));
    assert!(body["errorMessage"].as_str().unwrap().contains("Nonce"));
    let t2 = (now_ms() + 1).to_string();
    let (status, _) = signed(&ts, "/group/user/query.json", &nonce, &t2, APP_SECRET).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn every_admin_endpoint_checks_the_signature() {
    let ts = TestServer::start().await;
    for &path in rcall_server::SERVER_API_PATHS {
        let resp = api_request(&ts, path, APP_KEY, "wrong-secret", &[("userId", "a")]).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!((status, body["code"].as_i64()), (401, Some(1004)), "{path}");
        // Missing parameters are 400 / 1002 with a valid signature.
        let resp = api_request(&ts, path, APP_KEY, APP_SECRET, &[]).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        if path != "/user/block/query.json" {
            assert_eq!((status, body["code"].as_i64()), (400, Some(1002)), "{path}");
        }
    }
}

#[tokio::test]
async fn expired_tokens_are_refused_31020_and_new_ones_work() {
    let ts = TestServer::start().await;
    let old = rcall_server::token::issue(APP_KEY, APP_SECRET, "alice", now_ms() - 5_000, 600_000);
    // A device connected with the old token is closed with 31020.
    let mut live = Client::login(ts.addr, &old, "a0").await;
    let time = now_ms().to_string();
    api_ok(
        &ts,
        "/user/token/expire.json",
        &[("userId", "alice"), ("userId", "zed"), ("time", &time)],
    )
    .await;
    assert_refused(&ts, &old, "a1", 31020).await;
    match live.recv().await.body {
        Some(S::Error(e)) => assert_eq!(e.code, 31020),
        other => panic!("expected ErrorFrame 31020, got {other:?}"),
    }
    live.expect_closed().await;
    let fresh = get_token(&ts, "alice").await;
    let mut a1 = Client::login(ts.addr, &fresh, "a1").await;
    a1.barrier(1).await;
    // Expiring again before the fresh token was issued leaves the fresh connection alone.
    let earlier = (now_ms() - 60_000).to_string();
    api_ok(
        &ts,
        "/user/token/expire.json",
        &[("userId", "alice"), ("time", &earlier)],
    )
    .await;
    a1.barrier(2).await;
    // Other users are not affected.
    ts.client("bob", "b1").await.barrier(3).await;
    // Bad input.
    let resp = api_request(
        &ts,
        "/user/token/expire.json",
        APP_KEY,
        APP_SECRET,
        &[("userId", "alice"), ("time", "yesterday")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn blocked_user_is_disconnected_cannot_connect_until_unblocked() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut a2 = ts.client("alice", "a2").await;
    let mut b1 = ts.client("bob", "b1").await;
    api_ok(
        &ts,
        "/user/block.json",
        &[("userId", "alice"), ("minute", "10")],
    )
    .await;
    for c in [&mut a1, &mut a2] {
        match c.recv().await.body {
            Some(S::Error(e)) => assert_eq!(e.code, error_code::USER_BLOCKED),
            other => panic!("expected ErrorFrame 31009, got {other:?}"),
        }
        c.expect_closed().await;
    }
    assert_refused(&ts, &ts.token("alice"), "a3", 31009).await;
    let q = api_ok(&ts, "/user/block/query.json", &[]).await;
    assert_eq!(q["users"][0]["userId"], "alice");
    assert!(q["users"][0]["blockEndTime"].as_str().unwrap().len() == 19);
    // Messages to a blocked user are still accepted (stored for later).
    b1.send_expect(1, private("alice", b"x"), 0).await;
    api_ok(&ts, "/user/unblock.json", &[("userId", "alice")]).await;
    let (mut a3, replay) = Client::login_resume(ts.addr, &ts.token("alice"), "a3", 0).await;
    assert_eq!(replay.len(), 1);
    a3.barrier(1).await;
    assert_eq!(
        api_ok(&ts, "/user/block/query.json", &[]).await["users"],
        json!([])
    );
    // minute is validated
    let resp = api_request(
        &ts,
        "/user/block.json",
        APP_KEY,
        APP_SECRET,
        &[("userId", "bob"), ("minute", "0")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn blacklist_private_is_405_group_skips_the_blacklister() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut a2 = ts.client("alice", "a2").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut c1 = ts.client("carol", "c1").await;
    api_ok(
        &ts,
        "/user/blacklist/add.json",
        &[
            ("userId", "bob"),
            ("blackUserId", "alice"),
            ("blackUserId", "mallory"),
        ],
    )
    .await;
    let q = api_ok(&ts, "/user/blacklist/query.json", &[("userId", "bob")]).await;
    assert_eq!(q["users"], json!(["alice", "mallory"]));

    a1.send_expect(1, private("bob", b"hi"), 405).await;
    // Nothing reached bob, nor alice's other device.
    b1.barrier(1).await;
    a2.barrier(2).await;
    // The blacklist is one-directional.
    b1.send_expect(2, private("alice", b"yo"), 0).await;
    assert_eq!(a1.recv_delivered().await.content, b"yo");
    assert_eq!(a2.recv_delivered().await.content, b"yo");

    // GROUP: the blacklister is skipped, the send succeeds for the others.
    create_group(&ts, "g", &["alice", "bob", "carol"]).await;
    a1.send_expect(3, group("g", &["bob", "carol"], b"grp"), 0)
        .await;
    assert_eq!(c1.recv_delivered().await.content, b"grp");
    assert_eq!(a2.recv_delivered().await.content, b"grp");
    b1.barrier(3).await;

    api_ok(
        &ts,
        "/user/blacklist/remove.json",
        &[("userId", "bob"), ("blackUserId", "alice")],
    )
    .await;
    let q = api_ok(&ts, "/user/blacklist/query.json", &[("userId", "bob")]).await;
    assert_eq!(q["users"], json!(["mallory"]));
    a1.send_expect(4, private("bob", b"again"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"again");
}

#[tokio::test]
async fn group_messages_need_membership_22406() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut c1 = ts.client("carol", "c1").await;
    let mut m1 = ts.client("mallory", "m1").await;
    // No such group yet.
    a1.send_expect(1, group("g", &["bob"], b"x"), 22406).await;
    create_group(&ts, "g", &["alice", "bob"]).await;
    let q = api_ok(&ts, "/group/user/query.json", &[("groupId", "g")]).await;
    assert_eq!(q["users"], json!([{"id": "alice"}, {"id": "bob"}]));
    // A non-member cannot send, even to members.
    m1.send_expect(2, group("g", &["alice", "bob"], b"spam"), 22406)
        .await;
    // Directional recipients outside the group are skipped.
    a1.send_expect(3, group("g", &["bob", "carol"], b"ok"), 0)
        .await;
    assert_eq!(b1.recv_delivered().await.content, b"ok");
    c1.barrier(1).await;
    // join adds carol
    api_ok(
        &ts,
        "/group/join.json",
        &[("groupId", "g"), ("userId", "carol")],
    )
    .await;
    a1.send_expect(4, group("g", &["bob", "carol"], b"two"), 0)
        .await;
    assert_eq!(b1.recv_delivered().await.content, b"two");
    assert_eq!(c1.recv_delivered().await.content, b"two");
    // quit
    api_ok(
        &ts,
        "/group/quit.json",
        &[("groupId", "g"), ("userId", "alice")],
    )
    .await;
    a1.send_expect(5, group("g", &["bob"], b"x"), 22406).await;
    b1.send_expect(6, group("g", &["carol"], b"still"), 0).await;
    assert_eq!(c1.recv_delivered().await.content, b"still");
    // dismiss
    api_ok(
        &ts,
        "/group/dismiss.json",
        &[("groupId", "g"), ("userId", "bob")],
    )
    .await;
    b1.send_expect(7, group("g", &["carol"], b"x"), 22406).await;
    let q = api_ok(&ts, "/group/user/query.json", &[("groupId", "g")]).await;
    assert_eq!(q["users"], json!([]));
    for c in [&mut a1, &mut b1, &mut c1, &mut m1] {
        c.barrier(9).await;
    }
}

#[tokio::test]
async fn kick_reaches_every_device_of_that_user_only() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut b2 = ts.client("bob", "b2").await;
    let body = api_ok(
        &ts,
        "/rtc/user/kick.json",
        &[("roomId", "call-42"), ("userId", "bob")],
    )
    .await;
    assert_eq!(body["devices"], 2);
    for c in [&mut b1, &mut b2] {
        match c.recv().await.body {
            Some(S::Kicked(k)) => assert_eq!(k.call_id, "call-42"),
            other => panic!("expected Kicked, got {other:?}"),
        }
        c.barrier(1).await; // still connected
    }
    a1.barrier(2).await;
    // Kicking someone offline is fine.
    let body = api_ok(
        &ts,
        "/rtc/user/kick.json",
        &[("roomId", "call-42"), ("userId", "nobody")],
    )
    .await;
    assert_eq!(body["devices"], 0);
}

#[tokio::test]
async fn apps_never_see_each_others_users_groups_or_messages() {
    let ts = TestServer::start_with(with_second_app).await;
    let token2 = app2_token;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut a_other = Client::login(ts.addr, &token2("alice"), "x1").await;
    let mut b_other = Client::login(ts.addr, &token2("bob"), "x2").await;

    a1.send_expect(1, private("bob", b"app1"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"app1");
    a_other.send_expect(2, private("bob", b"app2"), 0).await;
    assert_eq!(b_other.recv_delivered().await.content, b"app2");
    b1.barrier(1).await;
    // Groups and blacklists are per app.
    create_group(&ts, "g", &["alice", "bob"]).await;
    a_other
        .send_expect(3, group("g", &["bob"], b"x"), 22406)
        .await;
    a1.send_expect(4, group("g", &["bob"], b"g1"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"g1");
    b_other.barrier(2).await;
    // The second app's Server API uses its own secret and sees its own data.
    let resp = api_request(
        &ts,
        "/group/user/query.json",
        "app2",
        common::APP2_SECRET,
        &[("groupId", "g")],
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["users"], json!([]));
    let resp = api_request(
        &ts,
        "/user/getToken.json",
        "app2",
        APP_SECRET,
        &[("userId", "z")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = api_request(
        &ts,
        "/user/getToken.json",
        "app2",
        common::APP2_SECRET,
        &[("userId", "z")],
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    Client::login(ts.addr, body["token"].as_str().unwrap(), "z1")
        .await
        .barrier(1)
        .await;
    // A token signed with another app's secret is refused.
    let forged = rcall_server::token::issue("app2", APP_SECRET, "alice", now_ms(), 60_000);
    assert_refused(&ts, &forged, "f", 31004).await;
    // Blocking app2's alice leaves app1's alice connected.
    let resp = api_request(
        &ts,
        "/user/block.json",
        "app2",
        common::APP2_SECRET,
        &[("userId", "alice"), ("minute", "1")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    a_other.expect_error_and_close(31009).await;
    a1.barrier(5).await;
}

#[tokio::test]
async fn ice_servers_with_turn_rest_credentials() {
    use base64::Engine as _;
    use hmac::Mac as _;
    let ts = TestServer::start_with(|c| {
        c.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        c.turn_secret = Some("turn-secret".into());
        c.turn_ttl = Duration::from_secs(3600);
        c.stun_urls = vec!["stun:127.0.0.1:3478".into()];
    })
    .await;
    let check = |servers: &[rtc_core::proto::IceServer]| {
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, vec!["stun:127.0.0.1:3478"]);
        assert!(servers[0].username.is_empty());
        let turn = &servers[1];
        assert_eq!(turn.urls, vec!["turn:127.0.0.1:3478?transport=udp"]);
        let (expiry, user) = turn.username.split_once(':').unwrap();
        assert_eq!(user, "alice");
        let expiry: i64 = expiry.parse().unwrap();
        let expected = now_ms() / 1000 + 3600;
        assert!((expiry - expected).abs() <= 2, "{expiry} vs {expected}");
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"turn-secret").unwrap();
        mac.update(turn.username.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(turn.credential, want);
    };
    let mut c = Client::authenticate(ts.addr, &ts.token("alice"), "a1", 0).await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => {
            assert_eq!(a.code, 0);
            check(&a.ice_servers);
        }
        other => panic!("expected AuthResult, got {other:?}"),
    }
    assert!(matches!(c.recv().await.body, Some(S::SyncDone(_))));
    c.send(C::GetIceServers(GetIceServers {})).await;
    match c.recv().await.body {
        Some(S::IceServers(i)) => check(&i.ice_servers),
        other => panic!("expected IceServers, got {other:?}"),
    }
    let body = api_ok(&ts, "/rtc/iceServers.json", &[("userId", "alice")]).await;
    assert_eq!(body["ttl"], 3600);
    assert_eq!(
        body["iceServers"][1]["urls"][0],
        "turn:127.0.0.1:3478?transport=udp"
    );
    assert!(body["iceServers"][1]["username"]
        .as_str()
        .unwrap()
        .ends_with(":alice"));
}

#[tokio::test]
async fn no_ice_servers_without_configuration_and_long_device_ids_are_refused() {
    let ts = TestServer::start().await;
    let mut c = Client::authenticate(ts.addr, &ts.token("alice"), "a1", 0).await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => assert!(a.ice_servers.is_empty()),
        other => panic!("expected AuthResult, got {other:?}"),
    }
    assert_refused(&ts, &ts.token("alice"), &"d".repeat(129), 33003).await;
}
