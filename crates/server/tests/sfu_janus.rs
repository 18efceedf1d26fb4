//! SFU mode (issue 12) against a real Janus (a private one per test, `common/janus_server.rs`):
//! the room lifecycle of a call, the API secret, the admin key, the per-device allow-list
//! (a device the server did not admit cannot join), kicking, destroying at call end, the
//! session keep-alive, a Janus restart, and the server's startup check.

mod common;

use std::time::Duration;

use common::janus_server::{janus_post, JanusOptions, TestJanus, ADMIN_KEY, API_SECRET};
use common::sfu_client::settings;
use rcall_server::sfu::janus::{videoroom_code, Handle};
use rcall_server::sfu::{self, Grant, JanusClient, JanusError, JanusSettings, RoomSpec, Sfu};
use serde_json::json;

/// What the server derives the rooms' secrets from (its primary app secret).
const ROOM_KEY: &[u8] = b"test-room-key-0123456789";

async fn sfu(j: &TestJanus) -> Sfu {
    sfu::connect(&settings(j), false, ROOM_KEY)
        .await
        .expect("SFU connects to the test Janus")
}

/// Joins `room` as a publisher with `feed` and `token` (None: no token) on a new handle, as
/// the server will on a device's behalf.
async fn join(
    janus: &JanusClient,
    room: &str,
    feed: &str,
    token: Option<&str>,
) -> (
    Handle,
    Result<serde_json::Map<String, serde_json::Value>, JanusError>,
) {
    let h = janus.attach().await.expect("attach a participant handle");
    let mut body = json!({"request": "join", "ptype": "publisher", "room": room, "id": feed});
    if let Some(t) = token {
        body["token"] = json!(t);
    }
    let r = h.request(body, None).await.map(|r| r.data);
    (h, r)
}

fn assert_plugin_code<T: std::fmt::Debug>(r: Result<T, JanusError>, code: i64, what: &str) {
    match r {
        Err(e) => assert_eq!(e.plugin_code(), Some(code), "{what}: {e}"),
        Ok(v) => panic!("{what}: expected videoroom error {code}, got {v:?}"),
    }
}

#[tokio::test]
async fn a_calls_room_is_created_on_first_admit_and_gone_after_close() {
    let j = TestJanus::start();
    let sfu = sfu(&j).await;
    let room = sfu::room_id("app", "call-1");
    assert!(!sfu.janus().room_exists(&room).await.unwrap());

    let a = sfu.admit("app", "call-1", "alice", "dev-a").await.unwrap();
    assert_eq!(a.room, room);
    assert!(sfu.janus().room_exists(&room).await.unwrap());
    // Admitting again gives the same seat; another device gets its own.
    assert_eq!(
        sfu.admit("app", "call-1", "alice", "dev-a").await.unwrap(),
        a
    );
    let b = sfu.admit("app", "call-1", "bob", "dev-b").await.unwrap();
    assert_eq!(b.room, room);
    assert_ne!((&b.feed, &b.token), (&a.feed, &a.token));
    assert_eq!(sfu.rooms().await, 1);
    // The same call id in another app is another room.
    let other = sfu.admit("app2", "call-1", "alice", "dev-a").await.unwrap();
    assert_ne!(other.room, room);
    assert_eq!(sfu.rooms().await, 2);

    sfu.close("app", "call-1").await.unwrap();
    assert!(!sfu.janus().room_exists(&room).await.unwrap());
    assert!(sfu.janus().room_exists(&other.room).await.unwrap());
    assert_eq!(sfu.grant("app", "call-1", "alice", "dev-a").await, None);
    // Closing again (or a call that never had a room) is a no-op.
    sfu.close("app", "call-1").await.unwrap();
    sfu.close("app", "never").await.unwrap();
}

#[tokio::test]
async fn requests_without_the_api_secret_are_refused() {
    let j = TestJanus::start();
    for secret in [None, Some("wrong-secret")] {
        let mut s = settings(&j);
        s.api_secret = secret.map(str::to_owned);
        let e = JanusClient::connect(s)
            .await
            .err()
            .expect("Janus refuses the session");
        assert!(matches!(e, JanusError::Unauthorized { .. }), "{e:?}");
        assert!(e.to_string().contains("--janus-api-secret"), "{e}");
    }
    // A raw request without the secret, to the room the server created, is refused too.
    let sfu = sfu(&j).await;
    sfu.admit("app", "c", "u", "d").await.unwrap();
    let r = janus_post(&j.url(), json!({"janus": "create", "transaction": "t"})).await;
    assert_eq!(r["janus"], "error", "{r}");
    assert_eq!(r["error"]["code"], 403, "{r}");
}

#[tokio::test]
async fn rooms_are_created_with_the_admin_key_only() {
    let j = TestJanus::start();
    let spec = RoomSpec {
        room: "no-key-room".into(),
        secret: "s".into(),
        allowed: vec![],
        publishers: 4,
        require_pvtid: true,
        description: "t".into(),
    };
    let mut s = settings(&j);
    s.admin_key = None;
    let keyless = JanusClient::connect(s.clone()).await.unwrap();
    let e = keyless.create_room(&spec).await.unwrap_err();
    assert_eq!(
        e.plugin_code(),
        Some(videoroom_code::MISSING_ELEMENT),
        "{e}"
    );
    assert!(e.to_string().contains("--janus-admin-key"), "{e}");
    s.admin_key = Some("wrong-key".into());
    let wrong = JanusClient::connect(s).await.unwrap();
    assert_plugin_code(
        wrong.create_room(&spec).await,
        videoroom_code::UNAUTHORIZED,
        "wrong admin key",
    );
    assert!(!keyless.room_exists("no-key-room").await.unwrap());
}

#[tokio::test]
async fn a_device_the_server_did_not_admit_cannot_join() {
    let j = TestJanus::start();
    let sfu = sfu(&j).await;
    let a: Grant = sfu.admit("app", "call", "alice", "dev-a").await.unwrap();
    let janus = sfu.janus();

    let (_h, r) = join(janus, &a.room, "intruder", None).await;
    assert_plugin_code(r, videoroom_code::UNAUTHORIZED, "join without a token");
    let (_h, r) = join(janus, &a.room, "intruder", Some("made-up-token")).await;
    assert_plugin_code(r, videoroom_code::UNAUTHORIZED, "join with a wrong token");
    // Subscribing needs the private_id of a participant of the room (`require_pvtid`), which
    // only a device that joined with an allowed token gets. (Janus looks the feed up before
    // that check, and a feed exists only once its media is up: an actual refused subscription
    // is for the media tests.)
    let rooms = janus_list(janus, true).await;
    let ours = rooms
        .iter()
        .find(|r| r["room"] == a.room.as_str())
        .expect("listed with the admin key");
    assert_eq!(ours["require_pvtid"], true, "{ours}");
    assert!(janus.participants(&a.room).await.unwrap().is_empty());

    // The admitted device joins with its grant.
    let (_ha, r) = join(janus, &a.room, &a.feed, Some(&a.token)).await;
    let joined = r.expect("the admitted device joins");
    assert_eq!(joined["videoroom"], "joined");
    assert_eq!(
        janus.participants(&a.room).await.unwrap(),
        vec![a.feed.clone()]
    );
    // A device admitted later gets in; the room is private (not listed).
    let b = sfu.admit("app", "call", "bob", "dev-b").await.unwrap();
    let (_hb, r) = join(janus, &b.room, &b.feed, Some(&b.token)).await;
    r.expect("the device admitted later joins");
    let public = janus_list(janus, false).await;
    assert!(
        !public.iter().any(|r| r["room"] == a.room.as_str()),
        "private room listed: {public:?}"
    );
}

/// The videoroom's `list` (private rooms too when asked with the admin key).
async fn janus_list(janus: &JanusClient, with_admin_key: bool) -> Vec<serde_json::Value> {
    let h = janus.attach().await.unwrap();
    let mut body = json!({"request": "list"});
    if with_admin_key {
        body["admin_key"] = json!(ADMIN_KEY);
    }
    let r = h.request(body, None).await.unwrap();
    r.data["list"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_removed_device_is_kicked_and_cannot_come_back() {
    let j = TestJanus::start();
    let sfu = sfu(&j).await;
    let a = sfu.admit("app", "call", "alice", "dev-a").await.unwrap();
    let b = sfu.admit("app", "call", "bob", "dev-b").await.unwrap();
    let janus = sfu.janus();
    let (_ha, r) = join(janus, &a.room, &a.feed, Some(&a.token)).await;
    r.unwrap();
    let (_hb, r) = join(janus, &b.room, &b.feed, Some(&b.token)).await;
    r.unwrap();
    let mut in_room = janus.participants(&a.room).await.unwrap();
    in_room.sort();
    let mut both = vec![a.feed.clone(), b.feed.clone()];
    both.sort();
    assert_eq!(in_room, both);

    sfu.remove("app", "call", "bob", "dev-b").await.unwrap();
    assert_eq!(
        janus.participants(&a.room).await.unwrap(),
        vec![a.feed.clone()]
    );
    assert_eq!(sfu.grant("app", "call", "bob", "dev-b").await, None);
    let (_h, r) = join(janus, &b.room, &b.feed, Some(&b.token)).await;
    assert_plugin_code(
        r,
        videoroom_code::UNAUTHORIZED,
        "rejoin with the removed token",
    );
    // Removing a device that never joined Janus (only admitted), or twice, is fine.
    sfu.admit("app", "call", "carol", "dev-c").await.unwrap();
    sfu.remove("app", "call", "carol", "dev-c").await.unwrap();
    sfu.remove("app", "call", "carol", "dev-c").await.unwrap();
    // Bob admitted again (invited back) gets a new seat and joins.
    let b2 = sfu.admit("app", "call", "bob", "dev-b").await.unwrap();
    assert_ne!(b2.token, b.token);
    let (_h, r) = join(janus, &b2.room, &b2.feed, Some(&b2.token)).await;
    r.expect("re-admitted device joins");
}

#[tokio::test]
async fn closing_the_call_destroys_the_room_with_its_participants() {
    let j = TestJanus::start();
    let sfu = sfu(&j).await;
    let a = sfu.admit("app", "call", "alice", "dev-a").await.unwrap();
    let janus = sfu.janus();
    let (_ha, r) = join(janus, &a.room, &a.feed, Some(&a.token)).await;
    r.unwrap();
    sfu.close("app", "call").await.unwrap();
    assert!(!janus.room_exists(&a.room).await.unwrap());
    let (_h, r) = join(janus, &a.room, "late", Some(&a.token)).await;
    assert_plugin_code(r, videoroom_code::NO_SUCH_ROOM, "join after the call ended");
    assert_plugin_code(
        janus.participants(&a.room).await,
        videoroom_code::NO_SUCH_ROOM,
        "participants after destroy",
    );
    // A new call with the same id (ids are the app's) gets a fresh room and seats.
    let again = sfu.admit("app", "call", "alice", "dev-a").await.unwrap();
    assert_eq!(again.room, a.room);
    assert_ne!(again.token, a.token);
}

#[tokio::test]
async fn a_room_left_by_an_earlier_run_is_replaced() {
    let j = TestJanus::start();
    let before = sfu(&j).await;
    let old = before.admit("app", "call", "alice", "dev-a").await.unwrap();
    let (_h, r) = join(before.janus(), &old.room, &old.feed, Some(&old.token)).await;
    r.unwrap();
    // The server restarts (its table was in memory); Janus kept the room.
    before.janus().close().await;
    drop(before);
    let after = sfu(&j).await;
    let new = after.admit("app", "call", "alice", "dev-a").await.unwrap();
    assert_eq!(new.room, old.room);
    let janus = after.janus();
    assert!(
        janus.participants(&new.room).await.unwrap().is_empty(),
        "stale participants gone"
    );
    let (_h, r) = join(janus, &old.room, "stale", Some(&old.token)).await;
    assert_plugin_code(r, videoroom_code::UNAUTHORIZED, "a stale seat's token");
    let (_h, r) = join(janus, &new.room, &new.feed, Some(&new.token)).await;
    r.expect("the new seat joins");
    // With another room key (app secret changed) the old room cannot be taken over.
    let other = Sfu::new(
        JanusClient::connect(settings(&j)).await.unwrap(),
        "another-key",
    );
    let e = other
        .admit("app", "call", "bob", "dev-b")
        .await
        .unwrap_err();
    assert_eq!(e.plugin_code(), Some(videoroom_code::ROOM_EXISTS), "{e}");
    assert!(e.to_string().contains("app secret"), "{e}");
}

#[tokio::test]
async fn the_session_is_kept_alive_past_janus_session_timeout() {
    let j = TestJanus::start_with(JanusOptions {
        session_timeout: 2,
        ..Default::default()
    });
    let mut s = settings(&j);
    s.keepalive = Duration::from_millis(500);
    let janus = JanusClient::connect(s).await.unwrap();
    let id = janus.session_id().await.unwrap();
    // Control: a session nobody keeps alive times out (so the timeout is real).
    let created = janus_post(
        &j.url(),
        json!({"janus": "create", "transaction": "t", "apisecret": API_SECRET}),
    )
    .await;
    let idle = created["data"]["id"].as_u64().unwrap();
    // Any request would touch the idle session: wait well past the timeout (Janus sweeps
    // sessions every 2 s) without one, then check.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let r = janus_post(
        &format!("{}/{idle}", j.url()),
        json!({"janus": "keepalive", "transaction": "k", "apisecret": API_SECRET}),
    )
    .await;
    assert_eq!(
        r["error"]["code"], 458,
        "the idle session should be gone: {r}"
    );
    // Ours is still the same session, and works.
    assert_eq!(janus.session_id().await.unwrap(), id);
    assert_eq!(janus.session_generation(), 1);
    assert!(!janus.room_exists("x").await.unwrap());
    assert_eq!(janus.session_generation(), 1);
}

#[tokio::test]
async fn after_a_janus_restart_the_client_opens_a_new_session() {
    let mut j = TestJanus::start();
    let sfu = sfu(&j).await;
    let a = sfu.admit("app", "call", "alice", "dev-a").await.unwrap();
    assert_eq!(sfu.janus().session_generation(), 1);
    j.kill();
    let e = sfu.janus().room_exists(&a.room).await.unwrap_err();
    assert!(matches!(e, JanusError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("unreachable"), "{e}");
    j.start_again();
    // The old session is gone with Janus: the next request runs on a new one. The room is gone
    // too (nothing is permanent).
    assert!(!sfu.janus().room_exists(&a.room).await.unwrap());
    assert_eq!(sfu.janus().session_generation(), 2);
    // The next sync (the SFU task runs one every second) recreates the room and seats the
    // members again, with new tokens.
    let members: Vec<(std::sync::Arc<str>, std::sync::Arc<str>)> = vec![
        ("alice".into(), "dev-a".into()),
        ("bob".into(), "dev-b".into()),
    ];
    sfu.sync("app", "call", &members).await.unwrap();
    assert!(sfu.janus().room_exists(&a.room).await.unwrap());
    let a2 = sfu.grant("app", "call", "alice", "dev-a").await.unwrap();
    assert_ne!(a2.token, a.token);
    let (_h, r) = join(sfu.janus(), &a2.room, &a2.feed, Some(&a2.token)).await;
    r.expect("alice joins the recreated room");
    assert!(sfu.grant("app", "call", "bob", "dev-b").await.is_some());
    // A sync without a restart changes nothing.
    sfu.sync("app", "call", &members).await.unwrap();
    assert_eq!(sfu.grant("app", "call", "alice", "dev-a").await, Some(a2));
    sfu.close("app", "call").await.unwrap();
    assert!(!sfu.janus().room_exists(&a.room).await.unwrap());
}

/// After a Janus restart the client opens a new session by itself — no request needed, so the
/// SFU task (woken by `session_changes`) brings the calls' rooms back at once — and an events
/// subscription taken before the restart carries the new session's events (the first ones, a
/// new publisher's, must not be missed while subscribing again).
#[tokio::test]
async fn after_a_janus_restart_the_client_reopens_its_session_and_its_events_go_on() {
    let mut j = TestJanus::start();
    let sfu = sfu(&j).await;
    let janus = sfu.janus();
    let mut events = janus.events();
    let mut sessions = janus.session_changes();
    assert_eq!(*sessions.borrow_and_update(), 1);
    j.kill();
    j.start_again();
    // (The bound only keeps a broken client from hanging the test.)
    tokio::time::timeout(Duration::from_secs(30), sessions.wait_for(|g| *g == 2))
        .await
        .expect("a new session, without any request")
        .unwrap();
    assert_eq!(janus.session_generation(), 2);
    // Bob kicked on the new session: his handle hears it, on the subscription from before.
    let a = sfu.admit("app", "call", "alice", "dev-a").await.unwrap();
    let b = sfu.admit("app", "call", "bob", "dev-b").await.unwrap();
    let (ha, r) = join(janus, &a.room, &a.feed, Some(&a.token)).await;
    r.unwrap();
    let (hb, r) = join(janus, &b.room, &b.feed, Some(&b.token)).await;
    r.unwrap();
    sfu.remove("app", "call", "bob", "dev-b").await.unwrap();
    let ours = [ha.id(), hb.id()];
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = events.recv().await.expect("the subscription lives on");
            if ev["sender"].as_u64().is_some_and(|s| ours.contains(&s)) {
                return ev;
            }
        }
    })
    .await
    .expect("an event of the new session's handles");
    assert_eq!(janus.session_generation(), 2, "{heard}");
}

#[tokio::test]
async fn the_server_checks_janus_at_start() {
    let start = |janus: Option<JanusSettings>, dev: bool| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut c = rcall_server::Config::new(common::APP_KEY, common::APP_SECRET);
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.db_path = dir.path().join("rcall.db");
        c.dev = dev;
        c.janus = janus;
        let r = rcall_server::start(c).await;
        if let Ok(s) = r {
            assert!(s.state().sfu.is_some());
            s.shutdown().await.unwrap();
            return Ok(());
        }
        r.map(drop)
    };
    let j = TestJanus::start();
    start(Some(settings(&j)), false)
        .await
        .expect("starts with a good Janus");

    // Nothing listening there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = settings(&j);
    s.url = format!("http://127.0.0.1:{port}/janus");
    // It starts all the same (that Janus may be in maintenance; docs/sfu.md "Several Janus
    // servers"): it is checked once it answers (tests/sfu_pool.rs).
    start(Some(s), false)
        .await
        .expect("starts with its only Janus down");

    // Wrong secret.
    let mut s = settings(&j);
    s.api_secret = Some("nope".into());
    let e = start(Some(s), false).await.unwrap_err();
    assert!(e.to_string().contains("--janus-api-secret"), "{e}");

    // A Janus open to anyone (no api_secret, no admin_key) is refused outside --dev only.
    let open = TestJanus::start_with(JanusOptions {
        api_secret: None,
        admin_key: None,
        ..Default::default()
    });
    let e = start(Some(settings(&open)), false).await.unwrap_err();
    assert!(e.to_string().contains("api_secret"), "{e}");
    let open_key = TestJanus::start_with(JanusOptions {
        admin_key: None,
        ..Default::default()
    });
    let e = start(Some(settings(&open_key)), false).await.unwrap_err();
    assert!(e.to_string().contains("admin_key"), "{e}");
    start(Some(JanusSettings::new(open.url())), true)
        .await
        .expect("--dev takes an open Janus");

    // Numeric room ids only.
    let numeric = TestJanus::start_with(JanusOptions {
        string_ids: false,
        ..Default::default()
    });
    let e = start(Some(settings(&numeric)), false).await.unwrap_err();
    assert!(e.to_string().contains("string_ids"), "{e}");
}

// ---- call membership drives the rooms (a real server in SFU mode) ----

mod calls {
    use super::*;
    use common::calls::private_call;
    use common::sfu_client::{accept, gcall, hangup, invite};
    use common::{create_group, eventually, send_ok, TestServer};

    async fn seated(ts: &TestServer, call: &str, user: &str, device: &str) -> Option<Grant> {
        let sfu = ts.server.state().sfu.as_ref().unwrap();
        sfu.grant(common::APP_KEY, call, user, device).await
    }

    #[tokio::test]
    async fn a_group_calls_room_follows_its_members_and_a_private_call_gets_none() {
        let j = TestJanus::start();
        let ts = TestServer::start_with(|c| {
            c.janus = Some(settings(&j));
            c.lost_grace = Duration::from_millis(300);
        })
        .await;
        create_group(&ts, "g", &["alice", "bob", "carol"]).await;
        let mut a = ts.client("alice", "a1").await;
        let mut b = ts.client("bob", "b1").await;
        let mut c = ts.client("carol", "c1").await;
        let sfu = ts.server.state().sfu.clone().unwrap();
        let room = sfu::room_id(common::APP_KEY, "gc");

        // The invite makes the inviter a member: the room exists with alice's seat only.
        send_ok(
            &mut a,
            1,
            gcall("a1", &["bob", "carol"], "gc", invite(&["bob", "carol"])),
        )
        .await;
        eventually("alice seated", || async {
            seated(&ts, "gc", "alice", "a1").await.is_some()
        })
        .await;
        assert!(sfu.janus().room_exists(&room).await.unwrap());
        assert_eq!(
            seated(&ts, "gc", "bob", "b1").await,
            None,
            "ringing is not a seat"
        );

        // Accepting seats bob, and the server joins the room on his behalf with his grant
        // (his publisher handle, `sfu::relay`).
        send_ok(&mut b, 1, gcall("b1", &["alice", "carol"], "gc", accept())).await;
        eventually("bob seated", || async {
            seated(&ts, "gc", "bob", "b1").await.is_some()
        })
        .await;
        let bob = seated(&ts, "gc", "bob", "b1").await.unwrap();
        eventually("bob in the room", || async {
            sfu.janus()
                .participants(&room)
                .await
                .unwrap()
                .contains(&bob.feed)
        })
        .await;
        send_ok(&mut c, 1, gcall("c1", &["alice", "bob"], "gc", accept())).await;
        eventually("carol seated", || async {
            seated(&ts, "gc", "carol", "c1").await.is_some()
        })
        .await;

        // Bob hangs up: his seat goes and his feed is kicked; the others' stay.
        send_ok(&mut b, 2, gcall("b1", &["alice"], "gc", hangup())).await;
        eventually("bob's seat gone", || async {
            seated(&ts, "gc", "bob", "b1").await.is_none()
        })
        .await;
        eventually("bob kicked", || async {
            !sfu.janus()
                .participants(&room)
                .await
                .unwrap()
                .contains(&bob.feed)
        })
        .await;
        let (_h, r) = join(sfu.janus(), &bob.room, &bob.feed, Some(&bob.token)).await;
        assert_plugin_code(
            r,
            videoroom_code::UNAUTHORIZED,
            "bob's old token after his hangup",
        );

        // Carol's connection drops; after her grace the server hangs up for her (no message
        // routed: the SFU task's periodic pass sees it). Alice is alone, the call is over and
        // the room destroyed.
        drop(c);
        eventually("room destroyed", || async {
            !sfu.janus().room_exists(&room).await.unwrap()
        })
        .await;
        assert_eq!(sfu.rooms().await, 0);

        // A private (1:1) call keeps peer-to-peer media: no room.
        send_ok(&mut a, 3, private_call("a1", "bob", "pc", invite(&["bob"]))).await;
        // (Give the SFU task a reconcile pass to act, were it wrong.)
        tokio::time::sleep(sfu::RECONCILE_INTERVAL * 2).await;
        assert_eq!(sfu.rooms().await, 0);
        assert!(!sfu
            .janus()
            .room_exists(&sfu::room_id(common::APP_KEY, "pc"))
            .await
            .unwrap());
    }
}
