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

/// A private non-call message (call rooms are not shared across nodes yet).
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
    let redis = TestRedis::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
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
    let redis = TestRedis::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
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
    let redis = TestRedis::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    api_ok(
        &a,
        "/group/create.json",
        &[
            ("groupId", "g"),
            ("userId", "alice"),
            ("userId", "bob"),
            ("userId", "carol"),
        ],
    )
    .await;
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

#[tokio::test]
async fn a_send_while_redis_is_down_is_refused_31003_and_routing_resumes_after_its_restart() {
    let mut redis = TestRedis::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    alice.send_expect(1, text("bob", b"before"), 0).await;
    let before = bob.recv_delivered().await;
    assert_from(&before, "alice", "alice", b"before");

    redis.kill();
    alice.send_expect(2, text("bob", b"lost"), 31003).await;

    // Redis comes back empty: both nodes reconnect and subscribe again by themselves.
    redis.start_again();
    let mut req = 3;
    loop {
        alice.send_message(req, text("bob", b"after")).await;
        let r = alice.recv_send_result().await;
        assert_eq!(r.request_id, req);
        if r.code == 0 {
            break;
        }
        assert_eq!(r.code, 31003);
        req += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = bob.recv_delivered().await;
    assert_from(&after, "alice", "alice", b"after");
    assert!(after.seq > before.seq, "{} > {}", after.seq, before.seq);
    bob.barrier(1).await;
}

#[tokio::test]
async fn messages_routed_while_the_subscribers_reconnect_arrive_once_in_order() {
    let redis = TestRedis::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    alice.send_expect(1, text("bob", b"m0"), 0).await;
    assert_from(&bob.recv_delivered().await, "alice", "alice", b"m0");

    // Every subscriber loses its connection; messages routed meanwhile are published to
    // nobody on node B, which finds them in bob's mailbox when it resyncs.
    let bus = a.server.state().cluster.as_ref().unwrap().bus().clone();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut bus.connection())
        .await
        .unwrap();
    assert_eq!(killed, 4, "two subscribers per node");
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

/// The signalling of a 1:1 call whose two users are on different nodes (each node's call
/// rooms know only what its own users sent: the callee's node learns the call from its
/// traffic).
#[tokio::test]
async fn a_one_to_one_call_signals_across_nodes() {
    let redis = TestRedis::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
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
