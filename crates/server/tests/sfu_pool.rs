//! Several Janus servers (issue 12, docs/sfu.md "Several Janus servers") against two real
//! Janus instances on a single node: each GROUP call's room is placed on one of them, every
//! request of the call goes there, and a Janus that stays unreachable has its calls moved to
//! the other (devices told `SfuRestart`, no hangup); its rooms left behind are destroyed once it
//! answers again.

mod common;

use std::time::Duration;

use common::janus_proxy::HoldingProxy;
use common::janus_server::TestJanus;
use common::sfu_client::*;
use common::{create_group, eventually, TestServer, APP_KEY};
use rcall_server::sfu::{self, JanusClient, JanusSettings};
use rtc_core::proto::{error_code, sfu_pc};

/// (user, device).
type Member = (&'static str, &'static str);

/// Users of group `g`, paired into calls: inviter, callee.
const PAIRS: [(Member, Member); 3] = [
    (("alice", "a1"), ("bob", "b1")),
    (("carol", "c1"), ("dave", "d1")),
    (("erin", "e1"), ("frank", "f1")),
];

/// Janus settings for `urls` (the first is `url`), given up after `dead_after`.
fn pool_settings(first: &TestJanus, more: &[String], dead_after: Duration) -> JanusSettings {
    let mut s = settings(first);
    s.more = more.to_vec();
    s.dead_after = dead_after;
    // Unreachability is noticed by the requests that fail: keep them short.
    s.keepalive = Duration::from_millis(200);
    s.request_timeout = Duration::from_millis(500);
    s
}

async fn server(janus: JanusSettings) -> TestServer {
    let ts = TestServer::start_with(|c| {
        c.janus = Some(janus);
        c.lost_grace = Duration::from_secs(30);
    })
    .await;
    let users: Vec<&str> = PAIRS.iter().flat_map(|(a, b)| [a.0, b.0]).collect();
    create_group(&ts, "g", &users).await;
    ts
}

/// `x` invites `y` to group call `call`, `y` accepts; both get `SfuJoined` (same generation).
async fn pair_call(
    (x, xu, xd): (&mut Dev, &str, &str),
    (y, yu, yd): (&mut Dev, &str, &str),
    call: &str,
) -> u32 {
    x.send_ok(1, gcall(xd, &[yu], call, invite(&[yu]))).await;
    let generation = joined(x.next_sfu().await, call);
    y.send_ok(1, gcall(yd, &[xu], call, accept())).await;
    assert_eq!(joined(y.next_sfu().await, call), generation);
    generation
}

/// Logs in every user of [`PAIRS`] and puts each pair in call `call-<i>`.
async fn three_calls(ts: &TestServer) -> Vec<(Dev, Dev)> {
    let mut out = Vec::new();
    for (i, ((xu, xd), (yu, yd))) in PAIRS.into_iter().enumerate() {
        let (mut x, _) = Dev::login(ts, xu, xd).await;
        let (mut y, _) = Dev::login(ts, yu, yd).await;
        pair_call((&mut x, xu, xd), (&mut y, yu, yd), &format!("call-{i}")).await;
        out.push((x, y));
    }
    out
}

/// A client of one test Janus (room checks behind the server's back).
async fn client(janus: &JanusSettings, url: &str) -> JanusClient {
    let mut one = janus.each()[0].clone();
    one.url = url.to_owned();
    JanusClient::connect(one).await.unwrap()
}

#[tokio::test]
async fn rooms_of_several_calls_spread_over_two_janus_and_each_call_uses_its_own() {
    let (j1, j2) = (TestJanus::start(), TestJanus::start());
    let settings = pool_settings(&j1, &[j2.url()], sfu::DEFAULT_DEAD_AFTER);
    let ts = server(settings.clone()).await;
    let (c1, c2) = (
        client(&settings, &j1.url()).await,
        client(&settings, &j2.url()).await,
    );
    let mut devs = three_calls(&ts).await;
    let sfu = ts.server.state().sfu.clone().unwrap();

    // The fewest rooms first, the first listed on a tie: j1, j2, j1.
    let mut on = Vec::new();
    for i in 0..3 {
        on.push(sfu.call_janus(APP_KEY, &format!("call-{i}")).await.unwrap());
    }
    assert_eq!(on, [j1.url(), j2.url(), j1.url()]);
    for (i, (here, there)) in [(&c1, &c2), (&c2, &c1), (&c1, &c2)].into_iter().enumerate() {
        let room = sfu::room_id(APP_KEY, &format!("call-{i}"));
        assert!(here.room_exists(&room).await.unwrap(), "call-{i}");
        assert!(!there.room_exists(&room).await.unwrap(), "call-{i}");
        // Both members joined on the call's Janus.
        assert_eq!(here.participants(&room).await.unwrap().len(), 2, "call-{i}");
    }

    // Publishing goes to the call's Janus (its answer), on either Janus.
    for (i, (x, y)) in devs.iter_mut().enumerate().take(2) {
        let call = format!("call-{i}");
        answer(x.publish(2, &call).await, 2);
        answer(y.publish(2, &call).await, 2);
    }
    // A member of another call cannot publish or subscribe in call-1 (on j2), nor in call-0
    // (on j1).
    let (x2, _) = &mut devs[2];
    for (n, call) in ["call-1", "call-0"].into_iter().enumerate() {
        let id = 10 + n as u32 * 2;
        failed(
            x2.publish(id, call).await,
            id,
            sfu_pc::PUBLISHER,
            error_code::NOT_IN_CALL,
        );
        failed(
            x2.subscribe(id + 1, call, &["x"]).await,
            id + 1,
            sfu_pc::SUBSCRIBER,
            error_code::NOT_IN_CALL,
        );
    }

    // call-1 ends: its room is destroyed on j2; the others stay where they are.
    let (x, y) = &mut devs[1];
    x.send_ok(3, gcall("c1", &["dave"], "call-1", hangup()))
        .await;
    y.send_ok(3, gcall("d1", &["carol"], "call-1", hangup()))
        .await;
    let room1 = sfu::room_id(APP_KEY, "call-1");
    eventually("call-1's room destroyed on j2", || async {
        !c2.room_exists(&room1).await.unwrap()
    })
    .await;
    for i in [0, 2] {
        let room = sfu::room_id(APP_KEY, &format!("call-{i}"));
        assert!(c1.room_exists(&room).await.unwrap(), "call-{i}");
    }
    // A new call goes to the Janus with the fewest rooms: j2 again.
    let (x, y) = &mut devs[1];
    pair_call((x, "carol", "c1"), (y, "dave", "d1"), "call-3").await;
    assert_eq!(sfu.call_janus(APP_KEY, "call-3").await.unwrap(), j2.url());
}

#[tokio::test]
async fn a_dead_janus_calls_move_to_the_other_with_sfu_restart_and_it_gets_new_calls_back() {
    let (j1, mut j2) = (TestJanus::start(), TestJanus::start());
    let settings = pool_settings(&j1, &[j2.url()], Duration::from_secs(1));
    let ts = server(settings.clone()).await;
    let c1 = client(&settings, &j1.url()).await;
    let mut devs = three_calls(&ts).await;
    let sfu = ts.server.state().sfu.clone().unwrap();
    assert_eq!(sfu.call_janus(APP_KEY, "call-1").await.unwrap(), j2.url());
    let room1 = sfu::room_id(APP_KEY, "call-1");

    j2.kill();
    // call-1's members are told to set their SFU side up again, with a new generation (no
    // hangup: the call goes on), and its room is on j1 now.
    let (x, y) = &mut devs[1];
    let g = restarted(x.next_sfu().await, "call-1");
    assert_eq!(restarted(y.next_sfu().await, "call-1"), g);
    assert_eq!(sfu.call_janus(APP_KEY, "call-1").await.unwrap(), j1.url());
    assert!(c1.room_exists(&room1).await.unwrap());
    eventually("both members of call-1 joined on j1", || async {
        c1.participants(&room1).await.unwrap().len() == 2
    })
    .await;
    // They publish again, through j1.
    answer(x.publish(5, "call-1").await, 5);
    answer(y.publish(5, "call-1").await, 5);
    // The calls on j1 were not disturbed.
    for (i, (x, y)) in devs.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        x.no_sfu(100 + i as u32).await;
        y.no_sfu(200 + i as u32).await;
    }

    // j2 comes back (empty): new calls may go to it again — it has the fewest rooms.
    j2.start_again();
    let (x, y) = &mut devs[1];
    x.send_ok(6, gcall("c1", &["dave"], "call-1", hangup()))
        .await;
    y.send_ok(6, gcall("d1", &["carol"], "call-1", hangup()))
        .await;
    eventually("j2 answers again", || async {
        sfu.pool()[1].down_for().is_none()
    })
    .await;
    pair_call((x, "carol", "c1"), (y, "dave", "d1"), "call-4").await;
    assert_eq!(sfu.call_janus(APP_KEY, "call-4").await.unwrap(), j2.url());
}

#[tokio::test]
async fn a_janus_cut_off_then_back_has_the_rooms_left_on_it_destroyed() {
    let (j1, j2) = (TestJanus::start(), TestJanus::start());
    // j2 behind a proxy that can hang (a Janus cut off: its rooms stay on it).
    let proxy = HoldingProxy::start(&j2.url()).await;
    let settings = pool_settings(&j1, &[proxy.url()], Duration::from_secs(1));
    let ts = server(settings.clone()).await;
    let direct2 = client(&settings, &j2.url()).await;
    let mut devs = three_calls(&ts).await;
    let sfu = ts.server.state().sfu.clone().unwrap();
    assert_eq!(
        sfu.call_janus(APP_KEY, "call-1").await.unwrap(),
        proxy.url()
    );
    let room1 = sfu::room_id(APP_KEY, "call-1");

    proxy.hold();
    let (x, y) = &mut devs[1];
    let g = restarted(x.next_sfu().await, "call-1");
    assert_eq!(restarted(y.next_sfu().await, "call-1"), g);
    assert_eq!(sfu.call_janus(APP_KEY, "call-1").await.unwrap(), j1.url());
    // The old room is still on j2 (nobody could reach it) ...
    assert!(direct2.room_exists(&room1).await.unwrap());
    // ... until it answers again: then it is destroyed.
    proxy.release();
    eventually("the room left on j2 destroyed", || async {
        !direct2.room_exists(&room1).await.unwrap()
    })
    .await;
    // call-1 goes on on j1.
    assert!(sfu.pool()[0].room_exists(&room1).await.unwrap());
}

/// Whether Janus at `url` still has handle `handle` of session `session` (a detached one is
/// "no such handle", 459).
async fn handle_exists(url: &str, session: u64, handle: u64) -> bool {
    let body = serde_json::json!({
        "janus": "trickle", "candidate": {"completed": true}, "transaction": "t",
        "apisecret": common::janus_server::API_SECRET,
    });
    let reply = common::janus_server::janus_post(&format!("{url}/{session}/{handle}"), body).await;
    reply["janus"] != "error"
}

#[tokio::test]
async fn when_a_call_ends_its_devices_handles_are_detached_on_its_janus() {
    let (j1, j2) = (TestJanus::start(), TestJanus::start());
    let settings = pool_settings(&j1, &[j2.url()], sfu::DEFAULT_DEAD_AFTER);
    let ts = server(settings).await;
    let mut devs = three_calls(&ts).await;
    let sfu = ts.server.state().sfu.clone().unwrap();
    assert_eq!(sfu.call_janus(APP_KEY, "call-1").await.unwrap(), j2.url());
    let session = sfu.pool()[1].session_id().await.unwrap();
    let mut handles = Vec::new();
    for (user, dev) in [("carol", "c1"), ("dave", "d1")] {
        let (publisher, _) = sfu
            .peer_handles(APP_KEY, "call-1", user, dev)
            .await
            .unwrap();
        handles.push(publisher.unwrap());
    }
    for &h in &handles {
        assert!(handle_exists(&j2.url(), session, h).await);
    }
    let (x, y) = &mut devs[1];
    x.send_ok(3, gcall("c1", &["dave"], "call-1", hangup()))
        .await;
    y.send_ok(3, gcall("d1", &["carol"], "call-1", hangup()))
        .await;
    eventually("both publisher handles detached on j2", || async {
        let mut any = false;
        for &h in &handles {
            any |= handle_exists(&j2.url(), session, h).await;
        }
        !any
    })
    .await;
}

/// A server restarted (SIGKILL) keeps a restored call on the Janus that has its room: the room
/// is found there at start (not placed afresh on the emptier Janus), and the member rejoins it.
#[tokio::test]
async fn after_a_crash_a_restored_call_stays_on_its_janus() {
    use common::{ChildServer, CHILD_APP_KEY};
    let (j1, j2) = (TestJanus::start(), TestJanus::start());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("n.db");
    let both = format!("{},{}", j1.url(), j2.url());
    let args = [
        "--janus",
        &both,
        "--janus-api-secret",
        common::janus_server::API_SECRET,
        "--janus-admin-key",
        common::janus_server::ADMIN_KEY,
    ];
    let n = ChildServer::start(&db, &args).await;
    n.create_group("g", &["alice", "bob", "carol", "dave"])
        .await;
    let mut devs = Vec::new();
    for (u, d) in ["alice", "bob", "carol", "dave"]
        .into_iter()
        .zip(["a1", "b1", "c1", "d1"])
    {
        devs.push(Dev::login_at(n.addr, &n.token(u), d).await.0);
    }
    let [a, b, c, d] = &mut devs[..] else {
        unreachable!()
    };
    pair_call((a, "alice", "a1"), (b, "bob", "b1"), "call-0").await;
    pair_call((c, "carol", "c1"), (d, "dave", "d1"), "call-1").await;
    let settings = pool_settings(&j1, &[], sfu::DEFAULT_DEAD_AFTER);
    let (c1, c2) = (
        client(&settings, &j1.url()).await,
        client(&settings, &j2.url()).await,
    );
    let (room0, room1) = (
        sfu::room_id(CHILD_APP_KEY, "call-0"),
        sfu::room_id(CHILD_APP_KEY, "call-1"),
    );
    assert!(c1.room_exists(&room0).await.unwrap());
    assert!(c2.room_exists(&room1).await.unwrap());
    // call-0 ends: j1 is empty, j2 has call-1.
    a.send_ok(2, gcall("a1", &["bob"], "call-0", hangup()))
        .await;
    b.send_ok(2, gcall("b1", &["alice"], "call-0", hangup()))
        .await;
    eventually("call-0's room destroyed", || async {
        !c1.room_exists(&room0).await.unwrap()
    })
    .await;
    eventually("the rooms saved without call-0", || async {
        common::saved_rooms(&db)
            .is_some_and(|s| s.calls.len() == 1 && s.calls[0].call_id == "call-1")
    })
    .await;
    n.kill9();
    drop(devs);

    let n = ChildServer::start(&db, &args).await;
    let (mut c, _) = Dev::login_at(n.addr, &n.token("carol"), "c1").await;
    joined(c.next_sfu().await, "call-1");
    answer(c.publish(1, "call-1").await, 1);
    // On j2 still, its members joined there; nothing made on j1.
    assert!(c2.room_exists(&room1).await.unwrap());
    assert!(!c2.participants(&room1).await.unwrap().is_empty());
    assert!(!c1.room_exists(&room1).await.unwrap());
}

/// Every Janus down: nothing moves (there is nowhere to go) and requests fail as with one
/// Janus (`SfuFailed` 53004 → `onTrackPublishFail`); a new call is not refused, and once a
/// Janus answers again the calls come back (`SfuRestart`) and publish there.
#[tokio::test]
async fn with_every_janus_down_requests_fail_as_with_one_and_calls_come_back() {
    let (mut j1, mut j2) = (TestJanus::start(), TestJanus::start());
    let settings = pool_settings(&j1, &[j2.url()], Duration::from_secs(1));
    let ts = server(settings).await;
    let mut devs = three_calls(&ts).await;
    let sfu = ts.server.state().sfu.clone().unwrap();
    j1.kill();
    j2.kill();
    eventually("both given up", || async {
        sfu.pool()
            .iter()
            .all(|j| j.down_for().is_some_and(|d| d >= Duration::from_secs(1)))
    })
    .await;
    // (Passes that would move the calls, if there were anywhere to go.)
    tokio::time::sleep(sfu::RECONCILE_INTERVAL * 2).await;
    let (x, _) = &mut devs[0];
    let r = failed(
        x.publish(2, "call-0").await,
        2,
        sfu_pc::PUBLISHER,
        error_code::SFU_REQUEST_FAILED,
    );
    assert!(r.contains("unreachable"), "{r}");
    // The calls stayed where they were (no move to a dead Janus).
    assert_eq!(sfu.call_janus(APP_KEY, "call-0").await.unwrap(), j1.url());
    assert_eq!(sfu.call_janus(APP_KEY, "call-1").await.unwrap(), j2.url());
    x.no_sfu(3).await;

    // j2 is back (empty): the calls come back with SfuRestart, and publish again.
    j2.start_again();
    for (i, (x, y)) in devs.iter_mut().enumerate() {
        let call = format!("call-{i}");
        let g = restarted(x.next_sfu().await, &call);
        assert_eq!(restarted(y.next_sfu().await, &call), g);
        answer(x.publish(10, &call).await, 10);
    }
    for i in 0..3 {
        let call = format!("call-{i}");
        assert_eq!(sfu.call_janus(APP_KEY, &call).await.unwrap(), j2.url());
    }
}

/// A Janus that does not answer when the server starts (in maintenance) does not stop it: new
/// calls go to the others; once it answers it passes the startup check, the rooms an earlier
/// run left on it are destroyed (as for a Janus coming back), and then new calls may go to it.
#[tokio::test]
async fn a_janus_down_at_start_does_not_stop_the_server_and_is_used_once_it_answers() {
    let (j1, j2) = (TestJanus::start(), TestJanus::start());
    // j2 cut off (a proxy holding every request) when the server starts.
    let proxy = HoldingProxy::start(&j2.url()).await;
    proxy.hold();
    let settings = pool_settings(&j1, &[proxy.url()], sfu::DEFAULT_DEAD_AFTER);
    let ts = server(settings.clone()).await;
    let sfu = ts.server.state().sfu.clone().unwrap();
    assert_eq!(sfu.unchecked(), [1]);
    // A room an earlier run left on j2 (its call ended while the server was down).
    let direct2 = client(&settings, &j2.url()).await;
    let stale = sfu::room_id(APP_KEY, "over");
    direct2
        .create_room(&sfu::RoomSpec {
            room: stale.clone(),
            secret: sfu.room_secret(&stale),
            allowed: Vec::new(),
            publishers: 1,
            require_pvtid: true,
            description: "left by an earlier run".into(),
        })
        .await
        .unwrap();

    let mut devs = three_calls(&ts).await;
    for i in 0..3 {
        let call = format!("call-{i}");
        assert_eq!(sfu.call_janus(APP_KEY, &call).await.unwrap(), j1.url());
    }
    let (x, _) = &mut devs[0];
    answer(x.publish(2, "call-0").await, 2);

    proxy.release();
    eventually("j2 checked", || async { sfu.unchecked().is_empty() }).await;
    // (Destroyed before j2 takes calls.)
    assert!(!direct2.room_exists(&stale).await.unwrap());
    // The calls stay on j1; the next one goes to j2, which has the fewest rooms.
    let (x, y) = &mut devs[1];
    x.send_ok(3, gcall("c1", &["dave"], "call-1", hangup()))
        .await;
    y.send_ok(3, gcall("d1", &["carol"], "call-1", hangup()))
        .await;
    pair_call((x, "carol", "c1"), (y, "dave", "d1"), "call-3").await;
    assert_eq!(
        sfu.call_janus(APP_KEY, "call-3").await.unwrap(),
        proxy.url()
    );
    assert!(direct2
        .room_exists(&sfu::room_id(APP_KEY, "call-3"))
        .await
        .unwrap());
    answer(x.publish(4, "call-3").await, 4);
}

/// Every Janus down at start: the server starts all the same (the rest of the service needs no
/// Janus). A group call rings and connects as usual; its members get `SfuJoined` (and so
/// their media) once a Janus answers and passes the startup check.
#[tokio::test]
async fn with_every_janus_down_at_start_the_server_starts_and_calls_get_a_room_once_one_answers() {
    let (mut j1, mut j2) = (TestJanus::start(), TestJanus::start());
    j1.kill();
    j2.kill();
    let settings = pool_settings(&j1, &[j2.url()], sfu::DEFAULT_DEAD_AFTER);
    let ts = server(settings).await;
    let sfu = ts.server.state().sfu.clone().unwrap();
    assert_eq!(sfu.unchecked(), [0, 1]);
    let ((xu, xd), (yu, yd)) = PAIRS[0];
    let (mut x, _) = Dev::login(&ts, xu, xd).await;
    let (mut y, _) = Dev::login(&ts, yu, yd).await;
    x.send_ok(1, gcall(xd, &[yu], "call-0", invite(&[yu])))
        .await;
    y.send_ok(1, gcall(yd, &[xu], "call-0", accept())).await;
    // (Passes that would create the room, if there were a Janus.)
    tokio::time::sleep(sfu::RECONCILE_INTERVAL * 2).await;
    x.no_sfu(2).await;
    assert_eq!(sfu.call_janus(APP_KEY, "call-0").await, None);

    j2.start_again();
    let g = joined(x.next_sfu().await, "call-0");
    assert_eq!(joined(y.next_sfu().await, "call-0"), g);
    assert_eq!(sfu.call_janus(APP_KEY, "call-0").await.unwrap(), j2.url());
    assert_eq!(sfu.unchecked(), [0]);
    answer(x.publish(3, "call-0").await, 3);
    answer(y.publish(3, "call-0").await, 3);
}
