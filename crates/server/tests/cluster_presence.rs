//! Cluster mode (issue 15, docs/cluster.md "Presence"): who is connected on which node, node
//! heartbeats, and their uses: the `offline` flag of a copy and the push webhook for users on
//! no node. In-process nodes over a private Redis.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::redis_server::TestRedis;
use common::*;
use prost::Message as _;
use rcall_server::cluster::mailbox::{
    ConnRef, MailboxLimits, Mailboxes, OwnCopy, Recipient, RouteRequest, Routed, Sender,
};
use rcall_server::cluster::presence::{presence_key, Presence};
use rcall_server::cluster::{Bus, NodeId, RedisUrl};
use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{conversation_type, CallContent, Delivered, Invite, PushConfig, SendMessage};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

fn text(target: &str, content: &[u8]) -> SendMessage {
    SendMessage {
        message_type: "app:text".into(),
        ..private(target, content)
    }
}

fn presence(ts: &TestServer) -> Arc<Presence> {
    ts.server
        .state()
        .routing
        .as_ref()
        .expect("cluster mode")
        .presence
        .clone()
}

/// `user`'s connections per node id, as Redis holds them.
async fn nodes_of(ts: &TestServer, user: &str) -> HashMap<String, u64> {
    presence(ts).nodes_of(APP_KEY, user).await.unwrap()
}

fn on(ts: &TestServer, n: u64) -> (String, u64) {
    (presence(ts).node_id().to_string(), n)
}

#[tokio::test]
async fn presence_counts_connections_per_node_and_the_offline_flag_follows_it() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;

    // Bob is on no node: his copy is flagged offline (as a single node's stored copies are).
    alice.send_expect(1, text("bob", b"away"), 0).await;
    assert!(nodes_of(&a, "bob").await.is_empty());

    // Two connections on B, one on A: counted per node, written before the login completes.
    let (mut bob, replay) = Client::login_resume(b.addr, &b.token("bob"), "b1", 0).await;
    assert_eq!(replay.len(), 1);
    assert!(replay[0].offline, "{:?}", replay[0]);
    // (A new device gets what the mailbox holds.)
    let (bob2, _) = Client::login_resume(b.addr, &b.token("bob"), "b2", 0).await;
    let (bob3, _) = Client::login_resume(a.addr, &a.token("bob"), "b3", 0).await;
    assert_eq!(
        nodes_of(&a, "bob").await,
        HashMap::from([on(&b, 2), on(&a, 1)])
    );

    // Bob is on a node: live copies are not offline.
    alice.send_expect(2, text("bob", b"here"), 0).await;
    let d = bob.recv_delivered().await;
    assert_eq!((d.content.as_slice(), d.offline), (&b"here"[..], false));

    // Every connection gone: the hash empties, and copies are offline again.
    drop((bob, bob2, bob3));
    eventually("bob's presence is gone", || async {
        nodes_of(&a, "bob").await.is_empty()
    })
    .await;
    alice.send_expect(3, text("bob", b"gone"), 0).await;
    let (_bob, replay) = Client::login_resume(a.addr, &a.token("bob"), "b1", d.seq).await;
    let last = replay.last().expect("the message sent while bob was away");
    assert_eq!(
        (last.content.as_slice(), last.offline),
        (&b"gone"[..], true)
    );
}

/// The route script decides the flag itself (atomic with the route), for recipients only; the
/// flagged copy is exactly prost's encoding.
#[tokio::test]
async fn the_route_script_flags_recipients_without_presence() {
    let redis = TestRedis::start();
    let bus = Bus::connect(&RedisUrl::parse(&redis.url()).unwrap())
        .await
        .unwrap();
    let m = Mailboxes::new(bus.clone(), MailboxLimits::default()).unwrap();
    let _: () = redis::cmd("HSET")
        .arg(presence_key("app", "carol"))
        .arg("somenode")
        .arg(1)
        .query_async(&mut bus.connection())
        .await
        .unwrap();
    let req = RouteRequest {
        app: "app",
        from: Sender {
            user: "alice",
            device: "a1",
            instance: 3,
            conn: ConnRef {
                node: bus.node_id().clone(),
                conn: 1,
            },
        },
        client_seq: 1,
        request_id: Some(1),
        message: Delivered {
            conversation_type: conversation_type::GROUP,
            target_id: "g".into(),
            message_type: "app:text".into(),
            content: b"x".to_vec(),
            ..Default::default()
        },
        recipients: ["bob", "carol"]
            .iter()
            .map(|u| Recipient {
                user: u.to_string(),
                offline: false,
            })
            .collect(),
        own_copy: Some(OwnCopy {
            target_id: "g".into(),
            offline: false,
            all_devices: false,
        }),
        floor_us: 0,
        presence: true,
        rooms_event: None,
    };
    // (Alice's own copy is stored for her other device.)
    m.register_device("app", "alice", "a2", 0).await.unwrap();
    let Routed::Accepted { offline, .. } = m.route(&req).await.unwrap() else {
        panic!("a duplicate")
    };
    assert_eq!(offline, ["bob"]);
    for (user, flag) in [("bob", true), ("carol", false), ("alice", false)] {
        let e = &m.read_above("app", user, 0, 10).await.unwrap()[0];
        let d = Delivered::decode(e.delivered.as_ref()).unwrap();
        assert_eq!(d.offline, flag, "{user}: {d:?}");
        assert_eq!(
            d.encode_to_vec(),
            e.delivered.as_ref(),
            "canonical encoding"
        );
        assert_eq!((d.sender_instance, d.client_seq), (3, 1));
    }
}

/// One webhook request the receiver got: its JSON body.
async fn webhook() -> (String, mpsc::UnboundedReceiver<Value>) {
    async fn handle(
        axum::extract::State(tx): axum::extract::State<mpsc::UnboundedSender<Value>>,
        body: String,
    ) -> axum::http::StatusCode {
        let _ = tx.send(serde_json::from_str(&body).expect("JSON body"));
        axum::http::StatusCode::OK
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/push", axum::routing::post(handle))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/push"), rx)
}

async fn next_push(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a push within the wait")
        .expect("receiver alive")
}

fn invite(target: &str, call_id: &str, users: &[&str]) -> SendMessage {
    let msg = call_message(
        target,
        call_id,
        CallBody::Invite(Invite {
            media_type: 2,
            invite_user_ids: users.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        }),
    );
    SendMessage {
        push: Some(PushConfig {
            push_title: "call".into(),
            ..Default::default()
        }),
        ..msg
    }
}

/// Sends and waits for its SendResult `code`, skipping deliveries.
async fn send(c: &mut Client, request_id: u32, msg: SendMessage) {
    c.send_message(request_id, msg).await;
    loop {
        match c.recv().await.body {
            Some(S::SendResult(r)) => {
                assert_eq!((r.request_id, r.code), (request_id, 0));
                return;
            }
            Some(S::Deliver(_)) => continue,
            other => panic!("expected SendResult, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_routing_node_pushes_users_on_no_node_once_and_never_users_on_another_node() {
    let redis = TestRedis::start();
    let (url, mut pushes) = webhook().await;
    let with_hook = |c: &mut rcall_server::Config| {
        c.push_webhook_url = Some(url.clone());
        c.push_retry_base = Duration::from_millis(50);
    };
    let a = redis.node_with(with_hook).await;
    let b = redis.node_with(with_hook).await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;

    // Bob is on node B: no push. Carol is on no node: one push, from one node only.
    send(&mut alice, 1, invite("bob", "c1", &["bob"])).await;
    let d = bob.recv_delivered().await;
    assert!(!d.offline, "{d:?}");
    send(&mut alice, 2, invite("carol", "c2", &["carol"])).await;
    let hit = next_push(&mut pushes).await;
    assert_eq!(hit["toUserIds"], serde_json::json!(["carol"]));
    assert_eq!(
        (hit["callId"].as_str(), hit["targetId"].as_str()),
        (Some("c2"), Some("carol"))
    );

    // A group call: one push, listing only the members on no node.
    create_group(&a, "g1", &["alice", "bob", "carol", "dave"]).await;
    let content = CallContent {
        call_id: "c3".into(),
        body: Some(CallBody::Invite(Invite {
            media_type: 2,
            invite_user_ids: vec!["bob".into(), "carol".into(), "dave".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let msg = SendMessage {
        message_type: rtc_core::proto::object_name::INVITE.into(),
        push: Some(PushConfig::default()),
        ..group("g1", &["bob", "carol", "dave"], &content.to_bytes())
    };
    send(&mut alice, 3, msg).await;
    let hit = next_push(&mut pushes).await;
    assert_eq!(hit["toUserIds"], serde_json::json!(["carol", "dave"]));
    assert_eq!(hit["targetId"], "g1");
    // Nothing for bob, nothing twice.
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), pushes.recv()).await {
        panic!("unexpected push: {extra}");
    }
}

/// Waits for the next dead node announced on `rx`, if any comes within `d`.
async fn next_dead(rx: &mut broadcast::Receiver<NodeId>, d: Duration) -> Option<NodeId> {
    tokio::time::timeout(d, rx.recv())
        .await
        .ok()
        .map(|r| r.expect("announced"))
}

#[tokio::test]
async fn a_node_that_stops_beating_is_declared_dead_once_and_its_presence_removed() {
    let redis = TestRedis::start();
    let beat = |c: &mut rcall_server::Config| c.node_heartbeat = Duration::from_millis(200);
    let a = redis.node_with(beat).await;
    let b = redis.node_with(beat).await;
    let c = redis.node_with(beat).await;
    let mut watchers: Vec<_> = [&a, &b].iter().map(|n| presence(n).dead_nodes()).collect();
    let _bob = c.client("bob", "b1").await;
    let _carol = a.client("carol", "c1").await;
    assert_eq!(nodes_of(&a, "bob").await, HashMap::from([on(&c, 1)]));
    let mut all: Vec<NodeId> = [&a, &b, &c]
        .iter()
        .map(|n| presence(n).node_id().clone())
        .collect();
    all.sort();
    assert_eq!(presence(&a).live_nodes().await.unwrap(), all);

    // Node C dies without cleaning up (its connections stay open: only its beats stop).
    let dead = presence(&c).node_id().clone();
    presence(&c).halt();
    let mut seen = Vec::new();
    for w in &mut watchers {
        let mut mine = Vec::new();
        // Well past the deadline (5 beats): whoever claims it has announced it by then.
        while let Some(id) = next_dead(w, Duration::from_secs(3)).await {
            mine.push(id);
        }
        seen.push(mine);
    }
    let claims: usize = seen
        .iter()
        .map(|s| s.iter().filter(|id| **id == dead).count())
        .sum();
    assert_eq!(claims, 1, "node C declared dead exactly once: {seen:?}");
    assert!(
        nodes_of(&a, "bob").await.is_empty(),
        "C's presence fields removed"
    );
    assert!(!presence(&a).live_nodes().await.unwrap().contains(&dead));
    // The live nodes' fields are untouched.
    assert_eq!(nodes_of(&a, "carol").await, HashMap::from([on(&a, 1)]));
}

#[tokio::test]
async fn every_node_writes_its_presence_again_after_a_redis_restart() {
    let (mut redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    let _bob2 = b.client("bob", "b2").await;
    assert_eq!(nodes_of(&a, "bob").await, HashMap::from([on(&b, 2)]));

    // Redis comes back empty.
    redis.restart();
    eventually("presence written again", || async {
        let (Ok(al), Ok(bo)) = (
            presence(&a).nodes_of(APP_KEY, "alice").await,
            presence(&a).nodes_of(APP_KEY, "bob").await,
        ) else {
            return false;
        };
        al == HashMap::from([on(&a, 1)]) && bo == HashMap::from([on(&b, 2)])
    })
    .await;
    // So bob's copies are not offline.
    let mut req = 1;
    loop {
        alice.send_message(req, text("bob", b"after")).await;
        let r = alice.recv_send_result().await;
        if r.code == 0 {
            break;
        }
        assert_eq!(r.code, 31003);
        req += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = bob.recv_delivered().await;
    assert_eq!((d.content.as_slice(), d.offline), (&b"after"[..], false));
}

/// A node shut down gracefully leaves no presence behind (its users count as on no node at
/// once), and is then taken out like a dead node.
#[tokio::test]
async fn a_node_shut_down_gracefully_removes_its_presence_then_is_taken_out() {
    let redis = TestRedis::start();
    let beat = |c: &mut rcall_server::Config| c.node_heartbeat = Duration::from_millis(200);
    let a = redis.node_with(beat).await;
    let b = redis.node_with(beat).await;
    let mut dead = presence(&a).dead_nodes();
    let mut alice = a.client("alice", "a1").await;
    let bob = b.client("bob", "b1").await;
    let b_id = presence(&b).node_id().clone();
    assert_eq!(nodes_of(&a, "bob").await, HashMap::from([on(&b, 1)]));

    let TestServer { server, .. } = b;
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown finishes")
        .unwrap();
    drop(bob);
    assert!(nodes_of(&a, "bob").await.is_empty());
    alice.send_expect(1, text("bob", b"after"), 0).await;
    let (_bob, replay) = Client::login_resume(a.addr, &a.token("bob"), "b1", 0).await;
    let last = replay.last().expect("the message for bob");
    assert_eq!(
        (last.content.as_slice(), last.offline),
        (&b"after"[..], true)
    );
    let id = next_dead(&mut dead, CATCH_UP).await;
    assert_eq!(id, Some(b_id));
}

/// A node taken out whose cleaner died before removing its presence: another node takes the
/// cleanup over a TTL later (without announcing it again).
#[tokio::test]
async fn an_unfinished_cleanup_is_taken_over_by_another_node() {
    use rcall_server::cluster::presence::{node_users_key, UNCLEAN_KEY};
    let redis = TestRedis::start();
    let a = redis
        .node_with(|c| c.node_heartbeat = Duration::from_millis(200))
        .await;
    let mut dead = presence(&a).dead_nodes();
    let _alice = a.client("alice", "a1").await;
    // What a claimer leaves when it dies between its claim and the cleanup.
    let gone = NodeId::random();
    let mut conn = a
        .server
        .state()
        .cluster
        .as_ref()
        .unwrap()
        .bus()
        .connection();
    let past = now_ms() - 1000;
    let _: () = redis::pipe()
        .hset(presence_key(APP_KEY, "bob"), gone.as_str(), 2)
        .hset(presence_key(APP_KEY, "alice"), gone.as_str(), 1)
        .sadd(node_users_key(APP_KEY, &gone), &["bob", "alice"])
        .zadd(UNCLEAN_KEY, gone.as_str(), past)
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the dead node's presence is removed", || async {
        nodes_of(&a, "bob").await.is_empty()
    })
    .await;
    assert_eq!(nodes_of(&a, "alice").await, HashMap::from([on(&a, 1)]));
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(UNCLEAN_KEY)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(dead.try_recv().is_err(), "not announced again");
}

/// A login's Redis round trips (the join `MULTI` with the presence write, the `accepted_upto`
/// read and the replay) go on a connection of their own: after a node's kill its clients' logins on the
/// survivors must not queue behind the route and ack scripts of everyone's resends (session
/// 8: each stage of a login waited seconds behind a saturated Redis).
#[tokio::test]
async fn a_login_does_not_wait_behind_the_main_connections_backlog() {
    let (redis, a, b) = two_nodes().await;
    let mut alice = b.client("alice", "a1").await;
    alice.send_expect(1, text("bob", b"while away"), 0).await;

    let blocked = block_main_lane(&redis, &a, "test:block:login", 20).await;
    // Bob logs in on A (with an instance: the `accepted_upto` read in the join) while A's main
    // connection is stuck: he gets his replay and his `SyncDone` all the same.
    let (mut bob, auth, replay) = Client::login_instance(a.addr, &a.token("bob"), "b1", 0, 7).await;
    assert_eq!(auth.accepted_upto, 0);
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(
        (replay[0].content.as_slice(), replay[0].offline),
        (&b"while away"[..], true)
    );
    assert!(
        !blocked.is_finished(),
        "the login waited for the main connection"
    );
    // ... and counts as here before that (written in the same MULTI as the replay's read).
    assert_eq!(nodes_of(&b, "bob").await, HashMap::from([on(&a, 1)]));
    unblock(&redis, "test:block:login").await;
    blocked.await.unwrap();

    // Live traffic to him is an online copy.
    alice.send_expect(2, text("bob", b"live"), 0).await;
    let d = bob.recv_delivered().await;
    assert_eq!((d.content.as_slice(), d.offline), (&b"live"[..], false));
}

/// Heartbeats go on a connection of their own: a live node whose main connection is stuck
/// behind a backlog keeps beating and is not taken out (session 8: live nodes taken out for
/// missed beats behind a saturated Redis, each costing a cleanup and a rewrite of all its
/// presence).
#[tokio::test]
async fn a_node_whose_main_connection_is_stuck_keeps_beating() {
    let redis = TestRedis::start();
    let beat = |c: &mut rcall_server::Config| c.node_heartbeat = Duration::from_millis(200);
    let a = redis.node_with(beat).await;
    let b = redis.node_with(beat).await;
    let mut dead = presence(&b).dead_nodes();
    let _carol = a.client("carol", "c1").await;

    // Stuck for 4 s: 20 beat periods, four times the deadline (5 beats).
    let blocked = block_main_lane(&redis, &a, "test:block:beat", 4).await;
    let taken = next_dead(&mut dead, Duration::from_secs(5)).await;
    assert_eq!(
        taken, None,
        "node A was taken out while its main connection was stuck"
    );
    blocked.await.unwrap();
    assert!(presence(&b)
        .live_nodes()
        .await
        .unwrap()
        .contains(presence(&a).node_id()));
    assert_eq!(nodes_of(&b, "carol").await, HashMap::from([on(&a, 1)]));
}

/// A login writes its user's count in its own `MULTI` while the writer task writes the
/// node's other changes: a change of the same user meanwhile must not leave an older count in
/// Redis (the writer leaves a user alone while a login of it is in flight, then writes it).
#[tokio::test]
async fn a_count_changed_while_a_login_writes_it_ends_exact() {
    let redis = TestRedis::start();
    let url = RedisUrl::parse(&redis.url()).unwrap();
    let bus = Bus::connect(&url).await.unwrap();
    let p = Presence::start(
        bus.clone(),
        vec![Arc::from(APP_KEY)],
        Duration::from_secs(1),
    )
    .unwrap();
    let bob: Arc<str> = Arc::from("bob");
    let carol: Arc<str> = Arc::from("carol");

    // A login of bob's pins him and builds its MULTI with his count (1) ...
    p.pin(0, &bob);
    let mut multi = redis::pipe();
    multi.atomic();
    p.login_write(&mut multi, 0, &bob);
    // ... his connection goes before that MULTI reaches Redis (count 0), and the writer runs
    // a round meanwhile (carol's write is done once it did).
    p.remove(0, &bob);
    p.written(p.add(0, &carol)).await;
    let _: () = multi
        .query_async(&mut bus.lane(rcall_server::cluster::Lane::Login))
        .await
        .unwrap();
    p.unpin(0, &bob, true);

    eventually("bob's count is 0 in Redis", || async {
        p.nodes_of(APP_KEY, "bob").await.unwrap().is_empty()
    })
    .await;
    assert_eq!(
        p.nodes_of(APP_KEY, "carol").await.unwrap(),
        HashMap::from([(p.node_id().to_string(), 1)])
    );
}

/// Reads frames until the server closes the connection (a login that failed).
async fn until_closed(c: &mut Client) {
    use futures::StreamExt;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.ws.next()).await {
            Ok(
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))),
            ) => return,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!(
                "{}: the failed login's connection was not closed",
                c.device_id
            ),
        }
    }
}

/// A login's join `MULTI` (which writes the user's count) times out behind a Redis paused for
/// writes, so the login fails and its connection closes; the `MULTI` still runs once Redis
/// resumes, after a second login of the user queued its own. Presence must end exact: 1 while
/// the second login's connection is here, nothing once it left.
#[tokio::test]
async fn a_login_multi_that_timed_out_but_ran_later_leaves_presence_exact() {
    let redis = TestRedis::start();
    let a = cluster_node(&redis).await;
    let pause = rcall_server::cluster::RESPONSE_TIMEOUT + Duration::from_secs(3);
    let pause_ms = pause.as_millis().to_string();
    let paused_at = std::time::Instant::now();
    assert_eq!(
        redis.command(&["CLIENT", "PAUSE", &pause_ms, "WRITE"]),
        "+OK"
    );
    let mut first = Client::authenticate(a.addr, &a.token("alice"), "a1", 0).await;
    until_closed(&mut first).await;
    // (It waited for its MULTI's answer until the response timeout, not past the pause.)
    let failed_after = paused_at.elapsed();
    assert!(
        failed_after >= rcall_server::cluster::RESPONSE_TIMEOUT,
        "{failed_after:?}"
    );
    assert!(
        failed_after < pause,
        "the first login ended only after the pause"
    );
    // A second login of alice while the first one's MULTI is still queued in Redis.
    let second = Client::login(a.addr, &a.token("alice"), "a2").await;
    assert!(
        paused_at.elapsed() >= pause,
        "the second login ended within the pause"
    );
    eventually("alice counts 1 on node A", || async {
        nodes_of(&a, "alice").await == HashMap::from([on(&a, 1)])
    })
    .await;
    // Whatever the writer had pending is written by now: the count stays exact.
    let p = presence(&a);
    p.written(p.add(0, &Arc::from("someone"))).await;
    assert_eq!(nodes_of(&a, "alice").await, HashMap::from([on(&a, 1)]));
    drop(second);
    eventually("alice counts on no node", || async {
        nodes_of(&a, "alice").await.is_empty()
    })
    .await;
}
