//! `AuthResult.profile`: the name and portrait the Server API registered (getToken,
//! `/user/refresh.json`) reach the user's own client, which sends them with its call messages.

mod common;

use common::*;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{AuthResult, UserProfile};

async fn auth_result(ts: &TestServer, user_id: &str) -> AuthResult {
    let mut c = Client::authenticate(ts.addr, &ts.token(user_id), "d1", 0).await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => a,
        other => panic!("expected AuthResult, got {other:?}"),
    }
}

#[tokio::test]
async fn auth_result_carries_the_registered_profile() {
    let ts = TestServer::start().await;
    api_ok(
        &ts,
        "/user/getToken.json",
        &[
            ("userId", "ann"),
            ("name", "Ann"),
            ("portraitUri", "http://p/ann.png"),
        ],
    )
    .await;
    let auth = auth_result(&ts, "ann").await;
    assert_eq!(auth.code, 0);
    let want = UserProfile {
        name: Some("Ann".into()),
        portrait_uri: Some("http://p/ann.png".into()),
        extra: None,
    };
    assert_eq!(auth.profile, Some(want));

    // Registered without a profile, or never registered: none.
    api_ok(&ts, "/user/getToken.json", &[("userId", "bob")]).await;
    assert_eq!(auth_result(&ts, "bob").await.profile, None);
    assert_eq!(auth_result(&ts, "carl").await.profile, None);
}

#[tokio::test]
async fn refresh_changes_what_the_next_connect_gets() {
    let ts = TestServer::start().await;
    api_ok(
        &ts,
        "/user/getToken.json",
        &[("userId", "ann"), ("name", "Ann")],
    )
    .await;
    api_ok(
        &ts,
        "/user/refresh.json",
        &[("userId", "ann"), ("portraitUri", "http://p/a2.png")],
    )
    .await;
    let want = UserProfile {
        name: Some("Ann".into()),
        portrait_uri: Some("http://p/a2.png".into()),
        extra: None,
    };
    assert_eq!(auth_result(&ts, "ann").await.profile, Some(want));
    api_ok(
        &ts,
        "/user/refresh.json",
        &[("userId", "ann"), ("name", "Anna")],
    )
    .await;
    assert_eq!(
        auth_result(&ts, "ann")
            .await
            .profile
            .and_then(|p| p.name)
            .as_deref(),
        Some("Anna")
    );
    // A bad user id is the Server API's usual 400.
    let resp = api_request(
        &ts,
        "/user/refresh.json",
        APP_KEY,
        APP_SECRET,
        &[("name", "x")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
}

/// Without `--janus` the server says so at login (`AuthResult.sfu` false, so the SDK keeps the
/// mesh), and an SFU request gets `SfuFailed` naming the missing option instead of silence
/// (the SDK would otherwise wait for media that never comes).
#[tokio::test]
async fn without_janus_sfu_requests_fail_clearly() {
    use rtc_core::proto::client_frame::Body as C;
    use rtc_core::proto::{sfu_pc, SfuPublish, SfuSubscribe};
    let ts = TestServer::start().await;
    let mut c = Client::authenticate(ts.addr, &ts.token("ann"), "d1", 0).await;
    match c.recv().await.body {
        Some(S::AuthResult(a)) => assert!(a.code == 0 && !a.sfu, "{a:?}"),
        other => panic!("expected AuthResult, got {other:?}"),
    }
    c.send(C::SfuPublish(SfuPublish {
        request_id: 7,
        call_id: "c1".into(),
        sdp_offer: "v=0".into(),
    }))
    .await;
    c.send(C::SfuSubscribe(SfuSubscribe {
        request_id: 8,
        call_id: "c1".into(),
        want: vec![],
        ..Default::default()
    }))
    .await;
    let mut failed = Vec::new();
    while failed.len() < 2 {
        match c.recv().await.body {
            Some(S::SfuFailed(f)) => failed.push(f),
            Some(S::SyncDone(_)) => {}
            other => panic!("expected SfuFailed, got {other:?}"),
        }
    }
    assert_eq!((failed[0].request_id, failed[0].pc), (7, sfu_pc::PUBLISHER));
    assert_eq!(
        (failed[1].request_id, failed[1].pc),
        (8, sfu_pc::SUBSCRIBER)
    );
    assert!(failed
        .iter()
        .all(|f| f.call_id == "c1" && f.code != 0 && f.reason.contains("--janus")));
}

/// Cluster mode: each node's SQLite is its own, so the profile the Server API registered
/// through one node must reach a login on another (it lives in Redis there, read in the
/// login's join): an app's backend calls getToken on whichever node its load balancer picks.
#[tokio::test]
async fn in_cluster_mode_a_profile_registered_on_one_node_reaches_a_login_on_another() {
    let (_redis, a, b) = two_nodes().await;
    api_ok(
        &a,
        "/user/getToken.json",
        &[
            ("userId", "ann"),
            ("name", "Ann"),
            ("portraitUri", "http://p/ann.png"),
        ],
    )
    .await;
    let want = |portrait: &str| {
        Some(UserProfile {
            name: Some("Ann".into()),
            portrait_uri: Some(portrait.into()),
            extra: None,
        })
    };
    assert_eq!(
        auth_result(&b, "ann").await.profile,
        want("http://p/ann.png")
    );
    assert_eq!(
        auth_result(&a, "ann").await.profile,
        want("http://p/ann.png")
    );

    // A refresh through the other node: the field left out keeps its value, everywhere.
    api_ok(
        &b,
        "/user/refresh.json",
        &[("userId", "ann"), ("portraitUri", "http://p/a2.png")],
    )
    .await;
    assert_eq!(
        auth_result(&a, "ann").await.profile,
        want("http://p/a2.png")
    );

    // Registered without a profile, or never registered: none.
    api_ok(&a, "/user/getToken.json", &[("userId", "bob")]).await;
    assert_eq!(auth_result(&b, "bob").await.profile, None);
    assert_eq!(auth_result(&b, "carl").await.profile, None);
}
