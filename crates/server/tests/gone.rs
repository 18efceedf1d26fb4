//! Calls end when a participant is gone (issue 10): when a call member's connections close and
//! it does not come back within its grace, the server hangs up for it. Real server, real
//! WebSockets; the sockets are dropped (TCP close, no close frame) or closed with 1000 (the
//! SDK's clean close; 1001 counts as lost, see `hub::Departure`).

mod common;

use std::time::{Duration, Instant};

use common::calls::{accept, group_call, invite, private_call};
use common::*;
use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::{
    conversation_type, object_name, CallContent, Delivered, Hangup, MediaSignal,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const LOST: Duration = Duration::from_millis(1000);
const LEFT: Duration = Duration::from_millis(300);

async fn start() -> TestServer {
    TestServer::start_with(|c| {
        c.lost_grace = LOST;
        c.left_grace = LEFT;
    })
    .await
}

fn media(to: &str) -> CallBody {
    CallBody::Media(MediaSignal {
        to_user_id: to.into(),
        ..Default::default()
    })
}

/// The next delivery, which must be a call message of `kind`.
async fn expect(c: &mut Client, kind: &str) -> (Delivered, CallContent) {
    let d = c.recv_delivered().await;
    assert_eq!(d.message_type, kind, "{}: {d:?}", c.device_id);
    let content = CallContent::from_bytes(&d.content).unwrap();
    (d, content)
}

fn reason(c: &CallContent) -> i32 {
    match c.body {
        Some(CallBody::Hangup(Hangup { reason })) => reason,
        ref other => panic!("not a hangup: {other:?}"),
    }
}

/// alice (a1) calls bob, bob's b1 accepts; bob's b2 sees both. Returns once everyone got them.
async fn one_to_one(ts: &TestServer, call_id: &str) -> (Client, Client, Client) {
    let mut a = ts.client("alice", "a1").await;
    let mut b = ts.client("bob", "b1").await;
    let mut b2 = ts.client("bob", "b2").await;
    send_ok(
        &mut a,
        1,
        private_call("a1", "bob", call_id, invite(&["bob"])),
    )
    .await;
    expect(&mut b, object_name::INVITE).await;
    expect(&mut b2, object_name::INVITE).await;
    send_ok(&mut b, 1, private_call("b1", "alice", call_id, accept())).await;
    expect(&mut a, object_name::ACCEPT).await;
    expect(&mut b2, object_name::ACCEPT).await;
    (a, b, b2)
}

/// Waits until the server saw `user` down to `left` connections.
async fn gone(ts: &TestServer, user: &str, left: usize) {
    let hub = &ts.server.state().hub;
    for _ in 0..250 {
        if hub.connection_count(user) == left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{user} still connected");
}

#[tokio::test]
async fn a_lost_callee_is_hung_up_for_with_7_after_the_grace() {
    let ts = start().await;
    let (mut a, b, mut b2) = one_to_one(&ts, "call-1").await;
    let t0 = Instant::now();
    drop(b); // TCP close, no close frame: a crashed renderer
             // Nothing before the grace is over.
    tokio::time::sleep(LOST - Duration::from_millis(200)).await;
    a.barrier(1).await;
    let (d, c) = expect(&mut a, object_name::HANGUP).await;
    assert!(t0.elapsed() >= LOST, "after the grace: {:?}", t0.elapsed());
    assert!(
        t0.elapsed() < LOST + Duration::from_secs(2),
        "{:?}",
        t0.elapsed()
    );
    // As if bob's b1 had sent it.
    assert_eq!(
        (
            &d.sender_user_id[..],
            &d.sender_device_id[..],
            d.conversation_type
        ),
        ("bob", "b1", conversation_type::PRIVATE)
    );
    assert_eq!((&d.target_id[..], &d.channel_id[..]), ("bob", ""));
    assert_eq!((d.sender_instance, d.client_seq), (0, 0));
    assert_eq!(
        (&c.call_id[..], &c.device_id[..], &c.platform[..]),
        ("call-1", "b1", "Server")
    );
    assert_eq!(reason(&c), 7);
    // bob's other device gets the copy, addressed like b1's messages.
    let (d2, c2) = expect(&mut b2, object_name::HANGUP).await;
    assert_eq!(
        (&d2.sender_device_id[..], &d2.target_id[..]),
        ("b1", "alice")
    );
    assert_eq!(reason(&c2), 7);
    assert_eq!(
        ts.server.state().hub.rooms_size(0),
        (0, 0, 0),
        "the call is over"
    );
    // A late message of alice's (crossing the hangup) does not bring it back.
    send_ok(&mut a, 2, private_call("a1", "bob", "call-1", media("bob"))).await;
    assert_eq!(ts.server.state().hub.rooms_size(0), (0, 0, 0));
    // b1 itself learns it when it comes back.
    let (_b, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", d2.seq - 1).await;
    let mine: Vec<_> = replay
        .iter()
        .filter(|d| d.message_type == object_name::HANGUP)
        .collect();
    assert_eq!(mine.len(), 1, "{replay:?}");
    assert_eq!(mine[0].sender_device_id, "b1");
    assert_eq!(
        reason(&CallContent::from_bytes(&mine[0].content).unwrap()),
        7
    );
}

#[tokio::test]
async fn a_clean_close_hangs_up_with_3_or_cancels_with_1_within_2_s() {
    // Production graces.
    let ts = TestServer::start().await;
    let (mut a, mut b, _b2) = one_to_one(&ts, "call-1").await;
    let t0 = Instant::now();
    b.ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    let (d, c) = expect(&mut a, object_name::HANGUP).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!((&d.sender_device_id[..], reason(&c)), ("b1", 3));

    // The caller closes its tab before anyone answered: a cancel.
    let mut carol = ts.client("carol", "c1").await;
    send_ok(
        &mut a,
        2,
        private_call("a1", "carol", "call-2", invite(&["carol"])),
    )
    .await;
    expect(&mut carol, object_name::INVITE).await;
    let t0 = Instant::now();
    a.ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    let (d, c) = expect(&mut carol, object_name::HANGUP).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        (&d.sender_user_id[..], &d.sender_device_id[..], reason(&c)),
        ("alice", "a1", 1)
    );
    assert_eq!(ts.server.state().hub.rooms_size(0), (0, 0, 0));
}

#[tokio::test]
async fn a_device_back_within_the_grace_keeps_its_call() {
    let ts = start().await;
    let (mut a, b, _b2) = one_to_one(&ts, "call-1").await;
    drop(b);
    gone(&ts, "bob", 1).await; // b2 stays
    let (mut b, _) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", u64::MAX).await;
    tokio::time::sleep(LOST + Duration::from_millis(500)).await;
    a.barrier(1).await;
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 2, 0));
    // And the call goes on.
    send_ok(
        &mut b,
        2,
        private_call("b1", "alice", "call-1", media("alice")),
    )
    .await;
    expect(&mut a, object_name::MEDIA).await;
}

#[tokio::test]
async fn a_group_call_goes_on_when_one_member_is_gone() {
    let ts = start().await;
    create_group(&ts, "g", &["alice", "bob", "carol"]).await;
    let mut a = ts.client("alice", "a1").await;
    let mut b = ts.client("bob", "b1").await;
    let mut c = ts.client("carol", "c1").await;
    send_ok(
        &mut a,
        1,
        group_call(
            "a1",
            "g",
            &["bob", "carol"],
            "gc",
            invite(&["bob", "carol"]),
        ),
    )
    .await;
    expect(&mut b, object_name::INVITE).await;
    expect(&mut c, object_name::INVITE).await;
    send_ok(
        &mut b,
        1,
        group_call("b1", "g", &["alice", "carol"], "gc", accept()),
    )
    .await;
    expect(&mut a, object_name::ACCEPT).await;
    expect(&mut c, object_name::ACCEPT).await;
    send_ok(
        &mut c,
        1,
        group_call("c1", "g", &["alice", "bob"], "gc", accept()),
    )
    .await;
    expect(&mut a, object_name::ACCEPT).await;
    expect(&mut b, object_name::ACCEPT).await;
    drop(c);
    for x in [&mut a, &mut b] {
        let (d, content) = expect(x, object_name::HANGUP).await;
        assert_eq!(
            (&d.sender_user_id[..], d.conversation_type, &d.target_id[..]),
            ("carol", conversation_type::GROUP, "g")
        );
        assert_eq!((&content.call_id[..], reason(&content)), ("gc", 7));
    }
    assert_eq!(
        ts.server.state().hub.rooms_size(0),
        (1, 2, 0),
        "alice and bob go on"
    );
    send_ok(
        &mut a,
        2,
        group_call("a1", "g", &["bob"], "gc", media("bob")),
    )
    .await;
    expect(&mut b, object_name::MEDIA).await;
}

#[tokio::test]
async fn calls_survive_a_graceful_restart_and_who_does_not_return_is_hung_up_for() {
    let ts = start().await;
    let (a, b, b2) = one_to_one(&ts, "call-1").await;
    // A shutdown closes every connection (1001) but ends no call: the rooms are kept.
    let ts = ts.restart().await;
    drop((a, b, b2));
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 2, 0));
    let t0 = Instant::now();
    let (mut a, _) = Client::login_resume(ts.addr, &ts.token("alice"), "a1", 0).await;
    // Known still: strangers are kept out.
    let mut x = ts.client("mallory", "m1").await;
    x.send_expect(1, private_call("m1", "alice", "call-1", accept()), 40403)
        .await;
    // bob's b1 never comes back: hung up for with 7 once the lost grace from the start ran
    // out. (What alice had not acked before the restart is replayed first.)
    let (d, c) = a.recv_call(object_name::HANGUP).await;
    assert!(
        t0.elapsed() < LOST + Duration::from_secs(2),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        (&d.sender_user_id[..], &d.sender_device_id[..], reason(&c)),
        ("bob", "b1", 7)
    );
    assert_eq!(ts.server.state().hub.rooms_size(0), (0, 0, 0));
}

#[tokio::test]
async fn a_member_back_after_a_restart_keeps_its_call() {
    let ts = start().await;
    let (a, b, b2) = one_to_one(&ts, "call-1").await;
    let ts = ts.restart().await;
    drop((a, b, b2));
    let (mut a, _) = Client::login_resume(ts.addr, &ts.token("alice"), "a1", 0).await;
    let (mut b, _) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    tokio::time::sleep(LOST + Duration::from_millis(300)).await;
    // Both came back within the grace: nobody was hung up for, and the call goes on.
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 2, 0));
    send_ok(
        &mut b,
        1,
        private_call("b1", "alice", "call-1", media("alice")),
    )
    .await;
    let d = loop {
        let d = a.recv_delivered().await;
        assert_ne!(d.message_type, object_name::HANGUP, "nobody is hung up for");
        if d.message_type == object_name::MEDIA {
            break d;
        }
    };
    assert_eq!(d.sender_device_id, "b1");
    // …and a member that is gone later is hung up for.
    drop(a);
    let (d, c) = b.recv_call(object_name::HANGUP).await;
    assert_eq!(
        (&d.sender_user_id[..], &d.sender_device_id[..], reason(&c)),
        ("alice", "a1", 7)
    );
}

#[tokio::test]
async fn after_a_clean_close_only_a_page_still_in_the_call_keeps_it() {
    let ts = start().await;
    let (mut a, mut b, _b2) = one_to_one(&ts, "call-1").await;
    let away = || CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    // A reload: the new page connects at once but has no call.
    b.ws.close(Some(away())).await.unwrap();
    gone(&ts, "bob", 1).await;
    let (_b, _) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", u64::MAX).await;
    let (d, c) = expect(&mut a, object_name::HANGUP).await;
    assert_eq!((&d.sender_device_id[..], reason(&c)), ("b1", 3));
    drop(_b);
    gone(&ts, "bob", 1).await;

    // The same page reconnecting and going on with its call keeps it.
    let (mut b, _) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", u64::MAX).await;
    send_ok(
        &mut a,
        3,
        private_call("a1", "bob", "call-2", invite(&["bob"])),
    )
    .await;
    expect(&mut b, object_name::INVITE).await;
    send_ok(&mut b, 3, private_call("b1", "alice", "call-2", accept())).await;
    expect(&mut a, object_name::ACCEPT).await;
    b.ws.close(Some(away())).await.unwrap();
    gone(&ts, "bob", 1).await;
    let (mut b, _) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", u64::MAX).await;
    send_ok(
        &mut b,
        4,
        private_call("b1", "alice", "call-2", media("alice")),
    )
    .await;
    expect(&mut a, object_name::MEDIA).await;
    tokio::time::sleep(LEFT + Duration::from_millis(500)).await;
    a.barrier(9).await;
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 2, 0));
}

#[tokio::test]
async fn a_going_away_close_1001_counts_as_lost_like_a_crashed_renderer() {
    // Chromium closes a crashed renderer's sockets with 1001: only the SDK's 1000 is a leave.
    let ts = start().await;
    let (mut a, mut b, _b2) = one_to_one(&ts, "call-1").await;
    let t0 = Instant::now();
    b.ws.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    }))
    .await
    .unwrap();
    let (d, c) = expect(&mut a, object_name::HANGUP).await;
    assert!(
        t0.elapsed() >= LOST,
        "hung up after {:?}, before the lost grace",
        t0.elapsed()
    );
    assert_eq!((&d.sender_device_id[..], reason(&c)), ("b1", 7));
}

/// A page that reconnects while its previous socket is dead but not yet found so (a silent
/// network loss) replaces it: the old connection is closed at once, and a clean close of the
/// new one hangs up within the clean grace instead of after the dead one's ping deadline and
/// the lost grace (found by the simulator running this server's core).
#[tokio::test]
async fn a_reconnected_page_replaces_its_dead_connection() {
    let ts = start().await;
    let token = ts.token("bob");
    let mut a = ts.client("alice", "a1").await;
    let (mut old, _, _) = Client::login_instance(ts.addr, &token, "b1", 0, 77).await;
    send_ok(
        &mut a,
        1,
        private_call("a1", "bob", "call-1", invite(&["bob"])),
    )
    .await;
    expect(&mut old, object_name::INVITE).await;
    send_ok(&mut old, 1, private_call("b1", "alice", "call-1", accept())).await;
    expect(&mut a, object_name::ACCEPT).await;
    // The same page (instance 77) comes back on a new socket; the old one is still open.
    let (mut new, _, _) = Client::login_instance(ts.addr, &token, "b1", 0, 77).await;
    old.expect_closed().await;
    assert_eq!(ts.server.state().hub.connection_count("bob"), 1);
    // Another page of the same device is not replaced.
    let (_tab2, _, _) = Client::login_instance(ts.addr, &token, "b1", 0, 78).await;
    assert_eq!(ts.server.state().hub.connection_count("bob"), 2);
    drop(_tab2);
    gone(&ts, "bob", 1).await;
    let t0 = Instant::now();
    new.ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    let (d, c) = expect(&mut a, object_name::HANGUP).await;
    assert!(t0.elapsed() < LOST, "{:?}", t0.elapsed());
    assert_eq!((&d.sender_device_id[..], reason(&c)), ("b1", 3));
}
