//! Cluster mode (issue 15, docs/cluster.md step 1): messages between users on different nodes.
//! Two in-process nodes, each with its own SQLite file and port, on one private Redis; every
//! message goes through the users' shared mailboxes and channels.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::TestRedis;
use common::*;
use rcall_server::cluster::RedisUrl;
use rtc_core::proto::{
    call_content::Body as CallBody, Accept, CallContent, Delivered, Hangup, Invite, Ringing,
    SendMessage,
};
use serde_json::json;

/// A private non-call message.
fn text(target: &str, content: &[u8]) -> SendMessage {
    SendMessage {
        message_type: "app:text".into(),
        ..private(target, content)
    }
}

fn group_text(group_id: &str, recipients: &[&str], content: &[u8]) -> SendMessage {
    SendMessage {
        message_type: "app:text".into(),
        ..group(group_id, recipients, content)
    }
}

/// alice's request 1 is confirmed (past keep-alive `Pong`s) and bob gets `content` from her
/// once: nothing more before his barrier.
async fn routed_once(alice: &mut Client, bob: &mut Client, content: &[u8]) {
    let r = alice.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (1, 0));
    assert_from(&bob.recv_delivered().await, "alice", "alice", content);
    bob.barrier(2).await;
}

fn assert_from(d: &Delivered, sender: &str, target: &str, content: &[u8]) {
    assert_eq!(
        (
            d.sender_user_id.as_str(),
            d.target_id.as_str(),
            d.content.as_slice()
        ),
        (sender, target, content),
        "{d:?}"
    );
    assert!(d.seq > 0, "{d:?}");
    assert_eq!(d.message_type, "app:text");
}

#[tokio::test]
async fn private_messages_cross_nodes_both_ways_and_a_resend_is_a_duplicate() {
    let (_redis, a, b) = two_nodes().await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 7).await;
    let mut bob = b.client("bob", "b1").await;

    let hi = SendMessage {
        client_seq: 1,
        ..text("bob", b"hi")
    };
    alice.send_message(1, hi.clone()).await;
    // The SendResult is alice's first frame.
    let r = alice.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (1, 0));
    assert!(!r.message_uid.is_empty() && r.sent_time > 0, "{r:?}");
    let d = bob.recv_delivered().await;
    assert_from(&d, "alice", "alice", b"hi");
    assert_eq!(
        (d.message_uid.as_str(), d.sent_time),
        (r.message_uid.as_str(), r.sent_time)
    );
    assert_eq!((d.sender_device_id.as_str(), d.client_seq), ("a1", 1));

    // Bob answers: alice gets it on node A.
    bob.send_expect(1, text("alice", b"hello"), 0).await;
    let back = alice.recv_delivered().await;
    assert_from(&back, "bob", "bob", b"hello");

    // The same instance resends client_seq 1: confirmed (code 0, no uid), not delivered again.
    alice.send_message(2, hi).await;
    let dup = alice.recv_send_result().await;
    assert_eq!(
        (dup.request_id, dup.code, dup.message_uid.as_str()),
        (2, 0, "")
    );
    alice
        .send_expect(
            3,
            SendMessage {
                client_seq: 2,
                ..text("bob", b"next")
            },
            0,
        )
        .await;
    let next = bob.recv_delivered().await;
    assert_from(&next, "alice", "alice", b"next");
    assert!(next.seq > d.seq);
    bob.barrier(1).await;
    alice.barrier(2).await;
}

#[tokio::test]
async fn a_message_for_an_offline_user_is_replayed_when_it_connects_to_any_node() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = b.client("alice", "a1").await;
    alice.send_expect(1, text("bob", b"while away"), 0).await;

    // Bob's first connection anywhere, on node A.
    let (mut bob, replay) = Client::login_resume(a.addr, &a.token("bob"), "b1", 0).await;
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_from(&replay[0], "alice", "alice", b"while away");
    bob.barrier(1).await;

    // Acked: the next connection of that device (on the other node) replays nothing.
    bob.ack(replay[0].seq).await;
    bob.barrier(2).await;
    drop(bob);
    let t0 = Instant::now();
    loop {
        let (mut again, replay) = Client::login_resume(b.addr, &b.token("bob"), "b1", 0).await;
        if replay.is_empty() {
            again.barrier(3).await;
            break;
        }
        // (The ack is written to Redis in the background.)
        assert!(t0.elapsed() < CATCH_UP, "ack never reached Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_group_message_reaches_members_on_both_nodes_once_and_the_senders_other_device() {
    let (_redis, a, b) = two_nodes().await;
    create_group(&a, "g", &["alice", "bob", "carol"]).await;
    let members = json!([{"id": "alice"}, {"id": "bob"}, {"id": "carol"}]);
    eventually("node B sees the group", || async {
        api_ok(&b, "/group/user/query.json", &[("groupId", "g")]).await["users"] == members
    })
    .await;
    let mut alice = a.client("alice", "a1").await;
    let mut carol = a.client("carol", "c1").await;
    let mut bob = b.client("bob", "b1").await;
    let mut alice2 = b.client("alice", "a2").await;

    for (i, content) in [&b"one"[..], b"two"].into_iter().enumerate() {
        let req = i as u32 + 1;
        alice
            .send_expect(req, group_text("g", &["bob", "carol"], content), 0)
            .await;
        assert_from(&bob.recv_delivered().await, "alice", "g", content);
        assert_from(&carol.recv_delivered().await, "alice", "g", content);
        // The sender's own copy, for its other device on the other node.
        assert_from(&alice2.recv_delivered().await, "alice", "g", content);
    }
    // Once each, and never to the sending connection.
    for (i, c) in [&mut alice, &mut bob, &mut carol, &mut alice2]
        .into_iter()
        .enumerate()
    {
        c.barrier(10 + i as u32).await;
    }
}

/// Redis restarting under a send: the node retries the route script (idempotent by
/// `client_seq`) and reads nothing else from the connection meanwhile, so the client sees a
/// delay: its messages are routed once, in order, and confirmed. (It used to answer
/// `SendResult` 31003 and route the next frame: a "refused" message that may have run, and a
/// later one overtaking it.)
#[tokio::test]
async fn a_send_while_redis_restarts_is_retried_by_the_node_and_routed_once_in_order() {
    let (mut redis, a, b) = two_nodes().await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 7).await;
    let mut bob = b.client("bob", "b1").await;
    let numbered = |n: u64, body: &[u8]| SendMessage {
        client_seq: n,
        ..text("bob", body)
    };
    alice.send_expect(1, numbered(1, b"before"), 0).await;
    let before = bob.recv_delivered().await;
    assert_from(&before, "alice", "alice", b"before");

    redis.kill();
    // Two frames in one write: the second must wait for the first.
    let frames: Vec<_> = [numbered(2, b"during"), numbered(3, b"next")]
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let f = rtc_core::proto::ClientFrame::new(rtc_core::proto::client_frame::Body::Send(
                SendMessage {
                    request_id: 2 + i as u32,
                    ..m
                },
            ));
            tokio_tungstenite::tungstenite::Message::Binary(f.to_bytes().into())
        })
        .collect();
    for f in frames {
        futures::SinkExt::feed(&mut alice.ws, f).await.unwrap();
    }
    futures::SinkExt::flush(&mut alice.ws).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Redis comes back empty: the nodes reconnect and subscribe again by themselves.
    redis.start_again();
    let r = alice.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (2, 0));
    let r = alice.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (3, 0));
    let during = bob.recv_delivered().await;
    assert_from(&during, "alice", "alice", b"during");
    let next = bob.recv_delivered().await;
    assert_from(&next, "alice", "alice", b"next");
    assert!(before.seq < during.seq && during.seq < next.seq);
    bob.barrier(1).await;
    alice.barrier(2).await;
}

/// A route script that outlives the node's wait (Redis paused past the response timeout) may
/// still run after the node gave up on it. The node retries it (a duplicate if it ran): the
/// sender is confirmed, never told "refused" for a message its recipient gets, and the
/// recipient has it once.
#[tokio::test]
async fn a_route_that_timed_out_is_retried_neither_refused_nor_delivered_twice() {
    let redis = TestRedis::start();
    let a = redis.node_with(short_redis_timings).await;
    let b = cluster_node(&redis).await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 9).await;
    let mut bob = b.client("bob", "b1").await;
    let paused = SendMessage {
        client_seq: 1,
        ..text("bob", b"paused")
    };
    let pause_ms = SHORT_RESPONSE_TIMEOUT.as_millis() + 1500;
    assert_eq!(
        redis.command(&["CLIENT", "PAUSE", &pause_ms.to_string(), "ALL"]),
        "+OK"
    );
    alice.send_message(1, paused).await;
    // (The node's first attempt ends at its response timeout, the pause 1.5 s later: within
    // the client's wait.)
    routed_once(&mut alice, &mut bob, b"paused").await;
}

/// Redis unusable for longer than the node retries: the connection is closed (31003), not the
/// message refused; the client's resend once Redis answers is routed once.
#[tokio::test]
async fn a_route_failing_past_the_retries_closes_the_connection_and_its_resend_is_routed_once() {
    let (redis, a, b) = two_nodes_with(short_redis_timings).await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 5).await;
    let mut bob = b.client("bob", "b1").await;
    let paused = SendMessage {
        client_seq: 1,
        ..text("bob", b"paused")
    };
    // Past the node's retries (4 s with these timings), as long again as the default's margin.
    assert_eq!(redis.command(&["CLIENT", "PAUSE", "6000", "ALL"]), "+OK");
    alice.send_message(1, paused.clone()).await;
    alice.expect_error_and_close(31003).await;
    // Once Redis answers again (blocked until the pause ends: a login needs Redis, its join
    // failing closes it), reconnect to the other node and resend what was not confirmed, as
    // the SDK does.
    assert_eq!(redis.command(&["PING"]), "+PONG");
    let (mut alice, _, _) = Client::login_instance(b.addr, &b.token("alice"), "a1", 0, 5).await;
    alice.send_message(1, paused).await;
    routed_once(&mut alice, &mut bob, b"paused").await;
}

/// What a node confirms by number (`Pong.accepted_upto`, `AuthResult.accepted_upto`) covers
/// what the route script accepted, on any node: the SDK forgets a no-receipt message once it is
/// routed, and a reconnect elsewhere does not resend everything. (Both used to say 0 in
/// cluster mode: only the local core's records counted.)
#[tokio::test]
async fn accepted_client_seqs_are_confirmed_by_pong_and_on_another_node() {
    let (_redis, a, b) = two_nodes().await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 11).await;
    let mut bob = b.client("bob", "b1").await;
    for n in 1..=2u64 {
        let m = SendMessage {
            client_seq: n,
            no_receipt: true,
            ..text("bob", format!("m{n}").as_bytes())
        };
        alice.send_message(n as u32, m).await;
    }
    assert_eq!(alice.ping_accepted_upto(1).await, 2);
    for n in 1..=2 {
        assert_from(
            &bob.recv_delivered().await,
            "alice",
            "alice",
            format!("m{n}").as_bytes(),
        );
    }
    let (_, auth, _) = Client::login_instance(b.addr, &b.token("alice"), "a1", 0, 11).await;
    assert_eq!(auth.accepted_upto, 2);
}

/// A login reads what its SDK instance got accepted in its join's `MULTI`, not in a round trip
/// of its own before it (session 17: after a node's kill that read queued on the survivors'
/// login connection as long as the join did). It still reaches the `AuthResult`, and a resend of
/// an accepted message after the move is answered as a duplicate, not routed again.
#[tokio::test]
async fn a_login_reads_what_its_instance_got_accepted_in_its_join() {
    let (redis, a, b) = two_nodes().await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 11).await;
    let mut bob = b.client("bob", "b1").await;
    for n in 1..=2u64 {
        let m = SendMessage {
            client_seq: n,
            ..text("bob", format!("m{n}").as_bytes())
        };
        alice.send_expect(n as u32, m, 0).await;
        assert_from(
            &bob.recv_delivered().await,
            "alice",
            "alice",
            format!("m{n}").as_bytes(),
        );
    }
    drop(alice);

    let commands = redis.monitor();
    let (mut alice, auth, _) = Client::login_instance(b.addr, &b.token("alice"), "a1", 0, 11).await;
    assert_eq!(auth.accepted_upto, 2, "AuthResult on another node");
    // MONITOR's lines reach the collecting thread a moment after Redis ran the commands (the
    // login's answer can come first: a loaded machine once failed here).
    let upto_read = |l: &String| {
        !l.contains(" lua]") && l.contains(r#""GET""#) && l.contains(":upto:alice:a1:11")
    };
    eventually(
        "MONITOR shows the login's read of the accepted client_seq",
        || async { commands.lock().unwrap().iter().any(upto_read) },
    )
    .await;
    // The login's commands (the route script's own reads run as `lua`).
    let lines: Vec<String> = commands
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.contains(" lua]"))
        .cloned()
        .collect();
    let upto = lines
        .iter()
        .position(upto_read)
        .unwrap_or_else(|| panic!("no read of the accepted client_seq: {lines:#?}"));
    let last_tx = lines[..upto]
        .iter()
        .rev()
        .find(|l| l.contains(r#""MULTI""#) || l.contains(r#""EXEC""#));
    assert!(
        last_tx.is_some_and(|l| l.contains(r#""MULTI""#)),
        "the accepted client_seq was read outside the join's MULTI: {lines:#?}"
    );

    // A resend of the second message (its confirmation lost with the move) is a duplicate.
    alice
        .send_expect(
            3,
            SendMessage {
                client_seq: 2,
                ..text("bob", b"m2")
            },
            0,
        )
        .await;
    alice
        .send_expect(
            4,
            SendMessage {
                client_seq: 3,
                ..text("bob", b"m3")
            },
            0,
        )
        .await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"m3");
    bob.barrier(5).await;
}

/// A long mailbox is replayed a page at a time, as on a single node (it used to be read and
/// queued whole: every device of a killed node reconnecting at once would hold its whole
/// backlog in memory).
#[tokio::test]
async fn a_long_mailbox_is_replayed_complete_in_order_one_page_at_a_time() {
    const PAGE: usize = 10;
    const N: u32 = 95;
    let redis = TestRedis::start();
    let url = RedisUrl::parse(&redis.url()).unwrap();
    let a = TestServer::start_with(|c| {
        c.redis = Some(url);
        c.replay_page_messages = PAGE;
    })
    .await;
    let b = cluster_node(&redis).await;
    let mut bob = b.client("bob", "b1").await;
    for i in 0..N {
        bob.send_expect(i, text("alice", format!("m{i}").as_bytes()), 0)
            .await;
    }
    let (mut alice, replay) = Client::login_resume(a.addr, &a.token("alice"), "a1", 0).await;
    assert_paged_replay(&a, &replay, N, PAGE);
    // Live traffic follows the replay, once.
    bob.send_expect(1000, text("alice", b"live"), 0).await;
    assert_eq!(alice.recv_delivered().await.content, b"live");
    alice.barrier(1).await;
}

/// A user's new device (on any node) is replayed only what was stored while the user had no
/// device anywhere, as on a single node — not its siblings' unacked live traffic, where an old
/// call invite would ring again. What is routed after it joined reaches it.
#[tokio::test]
async fn a_new_device_gets_the_offline_history_only_then_live_traffic() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    alice.send_expect(1, text("bob", b"while away"), 0).await;
    let (mut b1, replay) = Client::login_resume(b.addr, &b.token("bob"), "b1", 0).await;
    assert_eq!(replay.len(), 1);
    assert!(replay[0].offline, "{:?}", replay[0]);
    alice.send_expect(2, text("bob", b"live to b1"), 0).await;
    let live = b1.recv_delivered().await;
    assert!(!live.offline);
    // b1 acks nothing: both stay in bob's mailbox. A new device joins on the other node.
    let (mut b2, replay) = Client::login_resume(a.addr, &a.token("bob"), "b2", 0).await;
    let got: Vec<&[u8]> = replay.iter().map(|d| d.content.as_slice()).collect();
    assert_eq!(got, vec![b"while away".as_slice()]);
    alice.send_expect(3, text("bob", b"after"), 0).await;
    assert_from(&b2.recv_delivered().await, "alice", "alice", b"after");
    assert_from(&b1.recv_delivered().await, "alice", "alice", b"after");
    // b1 is known: reconnecting it replays everything it did not ack.
    drop(b1);
    let (_, replay) = Client::login_resume(b.addr, &b.token("bob"), "b1", 0).await;
    assert_eq!(replay.len(), 3);
}

#[tokio::test]
async fn messages_routed_while_the_subscribers_reconnect_arrive_once_in_order() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    alice.send_expect(1, text("bob", b"m0"), 0).await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"m0");

    // Every subscriber loses its connection; messages routed meanwhile are published to
    // nobody on node B, which finds them in bob's mailbox when it resyncs.
    let killed = kill_subscribers(&a).await;
    assert_eq!(
        killed, 6,
        "three subscribers per node (policy, user channels, rooms)"
    );
    let contents: Vec<Vec<u8>> = (1..=5).map(|i| format!("m{i}").into_bytes()).collect();
    for (i, c) in contents.iter().enumerate() {
        alice.send_expect(2 + i as u32, text("bob", c), 0).await;
    }
    let mut last = 0;
    for c in &contents {
        let d = bob.recv_delivered().await;
        assert_from(&d, "alice", "alice", c);
        assert!(d.seq > last);
        last = d.seq;
    }
    // Nothing twice: the next message is the next frame.
    alice.send_expect(9, text("bob", b"end"), 0).await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"end");
}

/// The signalling of a 1:1 call whose two users are on different nodes (the rooms across
/// nodes: tests/cluster_rooms.rs).
#[tokio::test]
async fn a_one_to_one_call_signals_across_nodes() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    let steps = [
        (
            true,
            CallBody::Invite(Invite {
                media_type: 2,
                invite_user_ids: vec!["bob".into()],
                ..Default::default()
            }),
        ),
        (false, CallBody::Ringing(Ringing {})),
        (false, CallBody::Accept(Accept { media_type: 2 })),
        (true, CallBody::Hangup(Hangup { reason: 1 })),
    ];
    for (i, (from_alice, body)) in steps.into_iter().enumerate() {
        let (from, to, target) = if from_alice {
            (&mut alice, &mut bob, "bob")
        } else {
            (&mut bob, &mut alice, "alice")
        };
        let msg = call_message(target, "call-x", body);
        let kind = msg.message_type.clone();
        from.send_expect(i as u32 + 1, msg, 0).await;
        let d = to.recv_delivered().await;
        assert_eq!(d.message_type, kind);
        assert_eq!(
            CallContent::from_bytes(&d.content).unwrap().call_id,
            "call-x"
        );
    }
    alice.barrier(10).await;
    bob.barrier(11).await;
}

/// A user connected to another node is not offline: the per-sender quota of stored copies
/// (a single node's bound on its own store) does not count messages to it.
#[tokio::test]
async fn the_local_offline_quota_does_not_count_recipients_on_other_nodes() {
    let redis = TestRedis::start();
    let url = RedisUrl::parse(&redis.url()).unwrap();
    let a = TestServer::start_with(|c| {
        c.redis = Some(url);
        c.offline_quota_per_sender = 1;
    })
    .await;
    let b = cluster_node(&redis).await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    for i in 1..=3u32 {
        let content = format!("m{i}").into_bytes();
        alice.send_expect(i, text("bob", &content), 0).await;
        assert_from(&bob.recv_delivered().await, "alice", "alice", &content);
    }
}

/// A node's `/healthz` fails while it cannot reach Redis (a load balancer's check then sends
/// new clients elsewhere: they could not route there) and recovers with Redis.
#[tokio::test]
async fn healthz_follows_the_nodes_redis() {
    let mut redis = TestRedis::start();
    let a = cluster_node(&redis).await;
    let status = |ts: &TestServer| {
        let url = ts.url("/healthz");
        async move {
            reqwest::get(url)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(status(&a).await, 200);
    redis.kill();
    assert_eq!(status(&a).await, 503);
    redis.start_again();
    eventually("healthz back to 200", || {
        let s = status(&a);
        async move { s.await == 200 }
    })
    .await;
}

/// Acks go to Redis coalesced per device (the highest seq acked since the last ack call is
/// sent next): a burst of acks, out of order at the end, still leaves the
/// device's cursor at the highest seq and its mailbox trimmed to nothing.
#[tokio::test]
async fn a_burst_of_acks_leaves_the_cursor_at_the_highest_and_the_mailbox_empty() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    let mut seqs = Vec::new();
    for i in 1..=40u32 {
        alice.send_expect(i, text("bob", b"m"), 0).await;
        seqs.push(bob.recv_delivered().await.seq);
    }
    for s in &seqs {
        bob.ack(*s).await;
    }
    bob.ack(seqs[3]).await;
    bob.barrier(1).await;
    let routing = b.server.state().routing.clone().unwrap();
    let last = *seqs.last().unwrap();
    eventually("bob's cursor reaches the highest ack", || async {
        routing
            .mailboxes
            .known_devices(APP_KEY, "bob")
            .await
            .unwrap()
            == [("b1".to_owned(), last)]
    })
    .await;
    eventually("bob's mailbox is trimmed", || async {
        routing
            .mailboxes
            .read_above(APP_KEY, "bob", 0, 100)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
}

/// A node's acks of many devices share ack script calls (one per app per round trip, not one
/// per device): 30 devices acking at once cost fewer than half as many calls, and each
/// device's cursor still ends at its own seq with its mailbox emptied.
#[tokio::test]
async fn acks_of_many_devices_share_script_calls() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut seqs = Vec::new();
    let mut users = Vec::new();
    for i in 0..30u32 {
        let user = format!("u{i}");
        let mut c = b.client(&user, "d").await;
        alice.send_expect(i + 1, text(&user, b"m"), 0).await;
        seqs.push(c.recv_delivered().await.seq);
        users.push((user, c));
    }
    let state = b.server.state();
    let routing = state.routing.clone().unwrap();
    let app = state.hub.app_by_key(APP_KEY).unwrap();
    let key: std::sync::Arc<str> = APP_KEY.into();
    let device: std::sync::Arc<str> = "d".into();
    let before = routing.ack_calls();
    for ((user, _), seq) in users.iter().zip(&seqs) {
        routing.ack(app, key.clone(), &user.as_str().into(), &device, *seq);
    }
    for ((user, _), seq) in users.iter().zip(&seqs) {
        eventually("every device's cursor reaches its ack", || async {
            routing
                .mailboxes
                .known_devices(APP_KEY, user)
                .await
                .unwrap()
                == [("d".to_owned(), *seq)]
                && routing
                    .mailboxes
                    .read_above(APP_KEY, user, 0, 10)
                    .await
                    .unwrap()
                    .is_empty()
        })
        .await;
    }
    let calls = routing.ack_calls() - before;
    assert!((1..15).contains(&calls), "{calls} ack calls for 30 devices");
}

/// Redis merely slow for this node (its main connection stuck behind a backlog, as after a
/// node's kill at 100,000 connections, while its beats are answered): a message waiting there
/// past the retry window (8 s by default) keeps its connection, which hears `Pong`s meanwhile (the SDK
/// gives a silent connection up after 12 s), and is routed once when Redis gets to it.
/// (Closing at 8 s turned the backlog into a reconnect storm: ~10,000 clients in session 8.)
#[tokio::test]
async fn a_route_waiting_on_a_slow_redis_keeps_its_connection_alive() {
    use rtc_core::proto::server_frame::Body as S;
    let redis = TestRedis::start();
    let a = redis.node_with(short_redis_timings).await;
    let b = cluster_node(&redis).await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 5).await;
    let mut bob = b.client("bob", "b1").await;

    // A's main connection waits behind a blocked command (until `unblock`).
    let blocked = block_main_lane(&redis, &a, "test:block:route", 40).await;

    let slow = SendMessage {
        client_seq: 1,
        ..text("bob", b"slow")
    };
    alice.send_message(1, slow).await;
    // Five keep-alive Pongs, one a second: past the 4 s window of these timings (8 s by
    // default, when the Pongs come every 3 s).
    for _ in 0..5 {
        match alice.recv().await.body {
            Some(S::Pong(p)) => assert_eq!((p.nonce, p.accepted_upto), (0, 0)),
            other => panic!("expected a keep-alive Pong, got {other:?}"),
        }
    }
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut outside(&redis).await)
        .await
        .unwrap();
    assert!(info.contains("blocked_clients:1"), "{info}");
    unblock(&redis, "test:block:route").await;
    blocked.await.unwrap();
    // Routed once: confirmed, delivered, nothing more (later Pongs may come first).
    routed_once(&mut alice, &mut bob, b"slow").await;
    assert_eq!(alice.ping_accepted_upto(3).await, 1);
}

/// A route script that timed out behind a stalled main connection is not sent again behind
/// itself: the node waits for a `PING` on that connection (answered once everything before it
/// ran), then resends once (a duplicate). (It used to resend every ~5 s: each copy queued in
/// Redis, every round more work for an overloaded Redis.) Delivered once, confirmed once.
#[tokio::test]
async fn a_timed_out_route_is_not_resent_until_redis_ran_it() {
    let redis = TestRedis::start();
    let a = redis.node_with(short_redis_timings).await;
    let b = cluster_node(&redis).await;
    let (mut alice, _, _) = Client::login_instance(a.addr, &a.token("alice"), "a1", 0, 5).await;
    let mut bob = b.client("bob", "b1").await;
    let commands = redis.monitor();
    // (The route script loaded: a send answered NOSCRIPT is sent again at once.)
    alice
        .send_expect(
            1,
            SendMessage {
                client_seq: 1,
                ..text("bob", b"warm-up")
            },
            0,
        )
        .await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"warm-up");

    // A's main connection waits behind a blocked command (until `unblock`).
    let blocked = block_main_lane(&redis, &a, "test:block:stall", 40).await;
    alice
        .send_message(
            2,
            SendMessage {
                client_seq: 2,
                ..text("bob", b"stalled-route-marker")
            },
        )
        .await;
    // Past two response timeouts: the old code had sent the script three times by then.
    tokio::time::sleep(SHORT_RESPONSE_TIMEOUT * 2 + Duration::from_secs(1)).await;
    unblock(&redis, "test:block:stall").await;
    blocked.await.unwrap();
    let r = alice.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (2, 0));
    assert_from(
        &bob.recv_delivered().await,
        "alice",
        "alice",
        b"stalled-route-marker",
    );
    bob.barrier(2).await;
    // The route script's runs (its first command reads the sender's `upto`), not its sends
    // (one answered NOSCRIPT is sent again).
    let upto = "\"GET\" \"rcall:{test-app}:upto:alice:a1:5\"";
    let runs = commands
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(" lua] ") && l.contains(upto))
        .count();
    // The warm-up; the stalled send, which ran once the stall ended; one resend after the
    // PING (a duplicate).
    assert_eq!(runs, 3, "route script runs");
}

/// A device resumes on another node from what it has (`resume_from`) while its acks never
/// reached Redis (its cursor there is behind: acks are coalesced and lost with a node): a
/// resync on the new node re-reads its mailbox above what that node has seen of the user
/// (nothing yet) and must not deliver again what the device said it has. (Found by the
/// 100,000-connection benchmark under collapse: 38 messages replayed at or below their
/// client's resume point.)
#[tokio::test]
async fn a_resync_after_a_resume_elsewhere_delivers_nothing_the_device_has() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    alice.send_expect(1, text("bob", b"m0"), 0).await;
    let got = bob.recv_delivered().await;
    assert_from(&got, "alice", "alice", b"m0");
    // Bob never acks: his cursor in Redis stays below m0. He moves to node A with
    // `resume_from` = m0's seq: nothing to replay.
    drop(bob);
    let (mut bob, replay) = Client::login_resume(a.addr, &a.token("bob"), "b1", got.seq).await;
    assert!(replay.is_empty(), "{replay:?}");

    // Node A's subscribers lose their connection: A resyncs and re-reads bob's mailbox.
    kill_subscribers(&a).await;
    let bus = a.server.state().cluster.as_ref().unwrap().bus().clone();
    // Once resynced, the next message is the next frame: m0 did not come again.
    eventually("node A resubscribed", || async {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(rcall_server::cluster::mailbox::user_channel(APP_KEY, "bob"))
            .query_async(&mut bus.connection())
            .await
            .unwrap();
        n.first().is_some_and(|(_, c)| *c == 1)
    })
    .await;
    alice.send_expect(2, text("bob", b"m1"), 0).await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"m1");
    alice.send_expect(3, text("bob", b"m2"), 0).await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"m2");
}

/// A node's listen backlog takes a failover's reconnect burst (`rcall_server::LISTEN_BACKLOG`,
/// capped by `somaxconn`), not `TcpListener::bind`'s 128: SYNs dropped past it are retried by the
/// clients only after 1 s. `ss` shows a listening socket's backlog as its Send-Q.
#[tokio::test]
async fn a_nodes_listen_backlog_takes_a_reconnect_burst() {
    let ts = TestServer::start().await;
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", ts.addr.port())])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket in {text:?}"));
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog, rcall_server::LISTEN_BACKLOG.min(somaxconn));
    assert!(backlog > 128 || somaxconn <= 128, "{backlog}");
}
