//! SFU mode in cluster mode (issue 12 with issue 15, docs/sfu.md "Cluster mode"): nodes with
//! `--redis` and `--janus` (the same Janus), the call → room table in Redis. A private Janus
//! and a private Redis per test (`common/janus_server.rs`, `common/redis_server.rs`).
//!
//! Janus has no media here (see `sfu_relay.rs`): a member's feed is listed by putting a
//! *remote publisher* (plain RTP) in its place, which Janus lists at once.

mod common;

use std::time::Duration;

use common::janus_server::TestJanus;
use common::redis_server::TestRedis;
use common::sfu_client::{
    accept, answer, answer_to, gcall, hangup, invite, joined, participants, refused_until_member,
    restarted, settings, three_in_call, two_in_call, Dev,
};
use common::{create_group, eventually, ChildServer, TestServer, APP_KEY};
use rcall_server::cluster::RedisUrl;
use rcall_server::sfu;
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{SfuAnswer, SfuLayers, SfuWant};
use serde_json::json;

async fn node(redis: &TestRedis, j: &TestJanus) -> TestServer {
    node_with(redis, settings(j)).await
}

async fn node_with(redis: &TestRedis, janus: sfu::JanusSettings) -> TestServer {
    let url = RedisUrl::parse(&redis.url()).unwrap();
    TestServer::start_with(|c| {
        c.redis = Some(url);
        c.janus = Some(janus);
        c.lost_grace = Duration::from_millis(800);
        c.left_grace = Duration::from_millis(300);
    })
    .await
}

/// Group `g` = alice, bob, carol (through node `a`), known to every node.
async fn group_g(nodes: &[&TestServer]) {
    create_group(nodes[0], "g", &["alice", "bob", "carol"]).await;
    for n in nodes {
        eventually("every node knows the group", || async {
            n.server.state().hub.group_members(0, "g").is_some()
        })
        .await;
    }
}

/// Two nodes on `redis` and `j` (group `g` known to both); alice (a1) on node 1 and bob (b1)
/// on node 2 in group call `call`. Both are told the same generation (one room), returned.
async fn across_two_nodes(
    redis: &TestRedis,
    j: &TestJanus,
    call: &str,
) -> ([TestServer; 2], Dev, Dev, u32) {
    let (n1, n2) = (node(redis, j).await, node(redis, j).await);
    group_g(&[&n1, &n2]).await;
    let (mut a, _) = Dev::login_at(n1.addr, &n1.token("alice"), "a1").await;
    let (mut b, _) = Dev::login_at(n2.addr, &n2.token("bob"), "b1").await;
    let (generation, bobs) = two_in_call(&mut a, &mut b, call).await;
    assert_eq!(
        bobs, generation,
        "one room: the same generation on both nodes"
    );
    ([n1, n2], a, b, generation)
}

/// A hash of the test Redis.
async fn hgetall(redis: &TestRedis, key: &str) -> std::collections::HashMap<String, String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn row_key(app: &str, call: &str) -> String {
    format!("rcall:{{{app}}}:sfu:{call}")
}

/// Waits until the call's `room` is destroyed on Janus and its row `key` is gone from Redis.
async fn room_and_row_gone(sfu: &sfu::Sfu, room: &str, redis: &TestRedis, key: &str) {
    eventually("the room destroyed", || async {
        !sfu.janus().room_exists(room).await.unwrap()
    })
    .await;
    eventually("the row gone", || async {
        redis.command(&["EXISTS", key]) == ":0"
    })
    .await;
}

/// Members on two nodes share one room: each gets `SfuJoined` with the same generation from its
/// own node, publishes there, sees the other's feed (with the same opaque id both nodes derive)
/// and subscribes to it across nodes; a ringing user and a stranger are refused on either node;
/// when the call ends the room is destroyed and its row is gone.
#[tokio::test]
async fn a_group_call_with_members_on_two_nodes_runs_through_one_room() {
    let j = TestJanus::start();
    let redis = TestRedis::start();
    let (n1, n2) = (node(&redis, &j).await, node(&redis, &j).await);
    group_g(&[&n1, &n2]).await;
    let (mut a, sfu_mode) = Dev::login_at(n1.addr, &n1.token("alice"), "a1").await;
    assert!(sfu_mode, "AuthResult.sfu with --janus in cluster mode");
    let (mut b, _) = Dev::login_at(n2.addr, &n2.token("bob"), "b1").await;
    let (mut c, _) = Dev::login_at(n2.addr, &n2.token("carol"), "c1").await;
    let (mut d, _) = Dev::login_at(n1.addr, &n1.token("dave"), "d1").await;

    a.send_ok(
        1,
        gcall("a1", &["bob", "carol"], "gc", invite(&["bob", "carol"])),
    )
    .await;
    let generation = joined(a.next_sfu().await, "gc");
    b.send_ok(1, gcall("b1", &["alice", "carol"], "gc", accept()))
        .await;
    assert_eq!(joined(b.next_sfu().await, "gc"), generation);

    // The row in Redis: the Janus that has the room, both seats, each with its node.
    let key = row_key(APP_KEY, "gc");
    let row = hgetall(&redis, &key).await;
    assert_eq!(row.get("janus"), Some(&j.url()), "{row:?}");
    assert_eq!(row.get("state").map(|s| &**s), Some("ready"), "{row:?}");
    eventually("both seats in the row", || async {
        redis.command(&["HLEN", &key]) == ":6"
    })
    .await;

    // Carol only rings (on node 2), dave is in no call (on node 1): both refused.
    refused_until_member(&mut c, &mut d, "gc").await;

    // Each publishes through its own node.
    answer(a.publish(2, "gc").await, 2);
    answer(b.publish(2, "gc").await, 2);
    let (s1, s2) = (
        n1.server.state().sfu.clone().unwrap(),
        n2.server.state().sfu.clone().unwrap(),
    );
    let room = sfu::room_id(APP_KEY, "gc");
    assert_eq!(s1.janus().participants(&room).await.unwrap().len(), 2);

    // Alice's media "up": bob, on the other node, gets her feed and subscribes to it.
    let alice_feed = alice_media_up(&s1, &mut b, "gc").await;
    let o = match b.subscribe(3, "gc", &[&alice_feed]).await {
        S::SfuOffer(o) => o,
        other => panic!("expected SfuOffer, got {other:?}"),
    };
    assert!(o.sdp.contains("m=video"), "{}", o.sdp);
    let mut mids: Vec<_> = o.mids.iter().map(|m| (&*m.feed, &*m.user_id)).collect();
    mids.dedup();
    assert_eq!(mids, [(&*alice_feed, "alice")]);
    assert!(s2.peer_handles(APP_KEY, "gc", "bob", "b1").await.is_some());
    assert!(s1.peer_handles(APP_KEY, "gc", "bob", "b1").await.is_none());

    // Bob hangs up: his seat goes (from whichever node), the room stays for alice.
    b.send_ok(4, gcall("b1", &["alice", "carol"], "gc", hangup()))
        .await;
    eventually("bob's seat gone", || async {
        redis.command(&["HLEN", &key]) == ":5"
    })
    .await;
    assert!(s1.janus().room_exists(&room).await.unwrap());
    // Alice hangs up (carol still rings: the call is over for the rooms once no member is
    // left): the room is destroyed, the row gone.
    a.send_ok(5, gcall("a1", &["bob", "carol"], "gc", hangup()))
        .await;
    room_and_row_gone(&s1, &room, &redis, &key).await;
    assert_eq!(
        redis.command(&["SCARD", &format!("rcall:{{{APP_KEY}}}:sfucalls")]),
        ":0"
    );
}

/// A node killed with SIGKILL: its member device reconnects to another node, which takes its
/// seat over (the old feed kicked) and tells it `SfuRestart`; it publishes again through the
/// new node.
#[tokio::test]
async fn a_killed_nodes_member_publishes_again_through_another_node() {
    use common::{CHILD_APP_KEY, CHILD_APP_SECRET};
    let j = TestJanus::start();
    let redis = TestRedis::start();
    let url = RedisUrl::parse(&redis.url()).unwrap();
    let n1 = TestServer::start_with(|c| {
        c.app_key = CHILD_APP_KEY.into();
        c.app_secret = CHILD_APP_SECRET.into();
        c.redis = Some(url);
        c.janus = Some(settings(&j));
        c.node_heartbeat = Duration::from_millis(200);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let n2 = ChildServer::start(
        &dir.path().join("n2.db"),
        &[
            "--redis",
            &redis.url(),
            "--janus",
            &j.url(),
            "--janus-api-secret",
            common::janus_server::API_SECRET,
            "--janus-admin-key",
            common::janus_server::ADMIN_KEY,
            "--node-heartbeat-ms",
            "200",
        ],
    )
    .await;
    let resp = common::api_request(
        &n1,
        "/group/create.json",
        CHILD_APP_KEY,
        CHILD_APP_SECRET,
        &[
            ("userId", "alice"),
            ("userId", "bob"),
            ("groupId", "g"),
            ("groupName", "G"),
        ],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let token = |u: &str| {
        rcall_server::token::issue(CHILD_APP_KEY, CHILD_APP_SECRET, u, common::now_ms(), 60_000)
    };
    let (mut a, _) = Dev::login_at(n1.addr, &token("alice"), "a1").await;
    let (mut b, _) = Dev::login_at(n2.addr, &token("bob"), "b1").await;
    let (generation, bobs) = two_in_call(&mut a, &mut b, "gk").await;
    assert_eq!(bobs, generation);
    answer(b.publish(2, "gk").await, 2);
    let s1 = n1.server.state().sfu.clone().unwrap();
    let room = sfu::room_id(CHILD_APP_KEY, "gk");
    let before = s1.janus().participants(&room).await.unwrap();
    assert_eq!(before.len(), 2, "{before:?}");

    n2.kill9();
    drop(b);
    // Bob's page comes back on node 1 (same instance): a seat of node 1's, his old feed
    // kicked, and SfuJoined + SfuRestart (his SDK knows the generation: the restart makes it
    // publish and subscribe again).
    let (mut b, _) = Dev::login_at(n1.addr, &token("bob"), "b1").await;
    assert_eq!(joined(b.next_sfu().await, "gk"), generation);
    assert_eq!(restarted(b.next_sfu().await, "gk"), generation);
    answer(b.publish(3, "gk").await, 3);
    let after = s1.janus().participants(&room).await.unwrap();
    assert_eq!(after.len(), 2, "{after:?}");
    let alice_janus = s1
        .peer_janus_feed(CHILD_APP_KEY, "gk", "alice", "a1")
        .await
        .unwrap();
    let bob_old: Vec<_> = before.iter().filter(|f| **f != alice_janus).collect();
    assert!(!after.contains(bob_old[0]), "the old feed was kicked");
    // The call goes on for both.
    a.no_sfu(9).await;
    b.send_ok(4, gcall("b1", &["alice"], "gk", hangup())).await;
}

/// Janus restarts under two nodes: the first node to find the room gone recreates it (the next
/// epoch, every seat on its allow-list), and each node joins its own members again: both get
/// `SfuRestart` with the same, higher generation and publish again.
#[tokio::test]
async fn after_a_janus_restart_members_on_both_nodes_publish_again() {
    let mut j = TestJanus::start();
    let redis = TestRedis::start();
    let ([n1, _n2], mut a, mut b, g1) = across_two_nodes(&redis, &j, "gr").await;
    answer(a.publish(1, "gr").await, 1);

    j.kill();
    j.start_again();
    let generations = [
        restarted(a.next_sfu().await, "gr"),
        restarted(b.next_sfu().await, "gr"),
    ];
    assert_eq!(
        generations,
        [g1 + 1, g1 + 1],
        "one re-creation, seen by both"
    );
    answer(a.publish(2, "gr").await, 2);
    answer(b.publish(2, "gr").await, 2);
    assert_eq!(participants(&n1, "gr").await, 2);
}

/// Nodes given different `--janus` lists (not supported: every node must be given the same):
/// the room stays on the Janus its row names; the other node does not create a second room for the call (it logs
/// what to fix) and its member gets no `SfuJoined`.
#[tokio::test]
async fn a_node_with_another_janus_leaves_the_room_where_its_row_says() {
    let (ja, jb) = (TestJanus::start(), TestJanus::start());
    let redis = TestRedis::start();
    let (n1, n2) = (node(&redis, &ja).await, node(&redis, &jb).await);
    group_g(&[&n1, &n2]).await;
    let (mut a, _) = Dev::login_at(n1.addr, &n1.token("alice"), "a1").await;
    let (mut b, _) = Dev::login_at(n2.addr, &n2.token("bob"), "b1").await;
    a.send_ok(1, gcall("a1", &["bob"], "go", invite(&["bob"])))
        .await;
    joined(a.next_sfu().await, "go");
    b.send_ok(1, gcall("b1", &["alice"], "go", accept())).await;
    // (Two passes of node 2's SFU task.)
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    b.no_sfu(1).await;
    let row = hgetall(&redis, &row_key(APP_KEY, "go")).await;
    assert_eq!(row.get("janus"), Some(&ja.url()), "{row:?}");
    assert_eq!(row.get("epoch").map(|s| &**s), Some("1"), "{row:?}");
    let room = sfu::room_id(APP_KEY, "go");
    let s2 = n2.server.state().sfu.clone().unwrap();
    assert!(!s2.janus().room_exists(&room).await.unwrap());
}

/// Redis restarts empty under an SFU call (no persistence): the room on Janus is untouched, so
/// the nodes write the call's row back as they last saw it (same epoch, same seats) instead of
/// claiming a new room — which would destroy the room and kick every member. Nobody gets
/// `SfuRestart`, the participants on Janus are the same, and membership still drives the room
/// afterwards (the call's end destroys it).
#[tokio::test]
async fn after_a_redis_restart_the_row_is_written_back_and_nobody_is_kicked() {
    let j = TestJanus::start();
    let mut redis = TestRedis::start();
    let ([n1, _n2], mut a, mut b, _) = across_two_nodes(&redis, &j, "gx").await;
    answer(a.publish(2, "gx").await, 2);
    answer(b.publish(2, "gx").await, 2);
    let key = row_key(APP_KEY, "gx");
    eventually("both seats in the row", || async {
        redis.command(&["HLEN", &key]) == ":6"
    })
    .await;
    let before = hgetall(&redis, &key).await;
    let s1 = n1.server.state().sfu.clone().unwrap();
    let room = sfu::room_id(APP_KEY, "gx");
    let mut feeds = s1.janus().participants(&room).await.unwrap();
    feeds.sort();
    assert_eq!(feeds.len(), 2, "{feeds:?}");
    // Both nodes have applied the full row (they sync the call every second).
    tokio::time::sleep(sfu::RECONCILE_INTERVAL * 3).await;

    redis.restart();
    eventually("the row written back as it was", || async {
        redis.command(&["HLEN", &key]) == ":6"
    })
    .await;
    assert_eq!(hgetall(&redis, &key).await, before);
    assert_eq!(
        redis.command(&["SISMEMBER", &format!("rcall:{{{APP_KEY}}}:sfucalls"), "gx"]),
        ":1"
    );
    // A few more passes: still nobody kicked, no restart.
    tokio::time::sleep(sfu::RECONCILE_INTERVAL * 3).await;
    let mut after = s1.janus().participants(&room).await.unwrap();
    after.sort();
    assert_eq!(after, feeds, "the same participants: nobody was kicked");
    a.no_sfu(7).await;
    b.no_sfu(7).await;

    // Membership still drives the room: bob hangs up, which ends the call (one participant
    // left): the room is destroyed once and the row is gone.
    b.send_ok(3, gcall("b1", &["alice"], "gx", hangup())).await;
    room_and_row_gone(&s1, &room, &redis, &key).await;
}

/// A node follows an SFU call (syncs it every second: a Redis read per pass) only while it has
/// a device in it: once its last member device hung up it stops, while the node whose member
/// stays keeps following.
#[tokio::test]
async fn a_node_stops_following_a_call_it_has_no_device_in() {
    let j = TestJanus::start();
    let redis = TestRedis::start();
    let (n1, n2) = (node(&redis, &j).await, node(&redis, &j).await);
    group_g(&[&n1, &n2]).await;
    let (mut a, _) = Dev::login_at(n1.addr, &n1.token("alice"), "a1").await;
    let (mut b, _) = Dev::login_at(n2.addr, &n2.token("bob"), "b1").await;
    let (mut c, _) = Dev::login_at(n1.addr, &n1.token("carol"), "c1").await;
    three_in_call(&mut a, &mut b, &mut c, "gf").await;
    let (s1, s2) = (
        n1.server.state().sfu.clone().unwrap(),
        n2.server.state().sfu.clone().unwrap(),
    );
    let call = (APP_KEY.to_owned(), "gf".to_owned());
    assert!(s2.followed().contains(&call));

    b.send_ok(2, gcall("b1", &["alice", "carol"], "gf", hangup()))
        .await;
    eventually("node 2 no longer follows the call", || async {
        !s2.followed().contains(&call)
    })
    .await;
    assert!(s2.peer_handles(APP_KEY, "gf", "bob", "b1").await.is_none());
    // Node 1 still has alice and carol in it.
    tokio::time::sleep(sfu::RECONCILE_INTERVAL * 2).await;
    assert!(s1.followed().contains(&call));
    assert!(!s2.followed().contains(&call));
}

/// A node's settings with two Janus, `first` and `second` (a URL: a proxy in front of one),
/// where the test kills or cuts off one: given up after 1 s without an answer. Requests time
/// out after 3 s, not the default 10 s, so a cut-off Janus is given up within ~4 s; not less,
/// so the Janus that answers is never given up because the machine is slow — with 500 ms,
/// `a_stale_creation_claim_is_taken_over…` failed twice at load 44–61 (session 14), when this
/// binary's tests, each with its own Janus, Redis and nodes, run side by side.
fn two_janus(first: &TestJanus, second: String) -> sfu::JanusSettings {
    let mut s = settings(first);
    s.more = vec![second];
    s.dead_after = Duration::from_secs(1);
    s.keepalive = Duration::from_millis(200);
    s.request_timeout = Duration::from_secs(3);
    s
}

/// Several Janus servers in cluster mode (docs/sfu.md "Several Janus servers"): both nodes
/// with the same two; the call's row names one, both nodes join their members there (the room
/// on that Janus only). That Janus dies: one node moves the room to the other (the row says so),
/// both nodes' members get `SfuRestart` with the same new generation and join there.
#[tokio::test]
async fn with_two_janus_both_nodes_use_the_calls_janus_and_follow_it_when_it_dies() {
    let mut js = [TestJanus::start(), TestJanus::start()];
    let redis = TestRedis::start();
    let settings = two_janus(&js[0], js[1].url());
    let (n1, n2) = (
        node_with(&redis, settings.clone()).await,
        node_with(&redis, settings.clone()).await,
    );
    group_g(&[&n1, &n2]).await;
    let (mut a, _) = Dev::login_at(n1.addr, &n1.token("alice"), "a1").await;
    let (mut b, _) = Dev::login_at(n2.addr, &n2.token("bob"), "b1").await;
    let (g1, bobs) = two_in_call(&mut a, &mut b, "gm").await;
    assert_eq!(g1, bobs);

    let key = row_key(APP_KEY, "gm");
    let on = hgetall(&redis, &key).await["janus"].clone();
    let at = js
        .iter()
        .position(|j| j.url() == on)
        .expect("one of the two");
    let (s1, s2) = (
        n1.server.state().sfu.clone().unwrap(),
        n2.server.state().sfu.clone().unwrap(),
    );
    let room = sfu::room_id(APP_KEY, "gm");
    // Both nodes joined their member on the row's Janus; the other has no room.
    eventually("both members on the call's Janus", || async {
        s1.pool()[at].participants(&room).await.unwrap().len() == 2
    })
    .await;
    assert!(!s2.pool()[1 - at].room_exists(&room).await.unwrap());
    answer(a.publish(1, "gm").await, 1);
    answer(b.publish(1, "gm").await, 1);

    js[at].kill();
    let generations = [
        restarted(a.next_sfu().await, "gm"),
        restarted(b.next_sfu().await, "gm"),
    ];
    assert_eq!(generations, [g1 + 1, g1 + 1], "one move, seen by both");
    let row = hgetall(&redis, &key).await;
    assert_eq!(row["janus"], js[1 - at].url(), "{row:?}");
    eventually("both members on the other Janus", || async {
        s2.pool()[1 - at].participants(&room).await.unwrap().len() == 2
    })
    .await;
    answer(a.publish(2, "gm").await, 2);
    answer(b.publish(2, "gm").await, 2);
}

/// A `creating` claim whose node died mid-creation (older than `STALE_CLAIM_MS`) is taken over
/// with the next epoch, and the room the dead claimer may have made is not leaked: on its
/// Janus, still answering, the room is made again in place (one room, on that Janus); on a
/// Janus given up, the room goes to the other one, and the dead claimer's room is destroyed
/// once its Janus answers again.
#[tokio::test]
async fn a_stale_creation_claim_is_taken_over_without_leaking_the_dead_claimers_room() {
    use common::janus_proxy::HoldingProxy;
    let (j1, j2) = (TestJanus::start(), TestJanus::start());
    let redis = TestRedis::start();
    // j2 behind a proxy that can hang (cut off).
    let proxy = HoldingProxy::start(&j2.url()).await;
    let n = node_with(&redis, two_janus(&j1, proxy.url())).await;
    group_g(&[&n]).await;
    let s = n.server.state().sfu.clone().unwrap();
    // The test's own view of each Janus (j2 directly, not through the proxy), with the default
    // request timeout: what it checks must not fail because the machine is slow.
    let direct1 = sfu::JanusClient::connect(settings(&j1)).await.unwrap();
    let direct2 = sfu::JanusClient::connect(settings(&j2)).await.unwrap();
    // What a node that died mid-creation left: its claim on j2 (epoch 1, long ago), and the
    // room it had made there.
    let stale_claim = |call: &str| {
        let room = sfu::room_id(APP_KEY, call);
        let key = row_key(APP_KEY, call);
        let url = proxy.url();
        let args = [
            "HSET",
            &key,
            "janus",
            &url,
            "room",
            &room,
            "epoch",
            "1",
            "state",
            "creating dead-node 1",
        ];
        assert_eq!(redis.command(&args), ":4");
        let calls = format!("rcall:{{{APP_KEY}}}:sfucalls");
        redis.command(&["SADD", &calls, call]);
        let spec = sfu::RoomSpec {
            room: room.clone(),
            secret: s.room_secret(&room),
            allowed: Vec::new(),
            publishers: 1,
            require_pvtid: true,
            description: "made by a node that died".into(),
        };
        let direct2 = &direct2;
        async move { direct2.create_room(&spec).await.unwrap() }
    };
    let (mut a, _) = Dev::login_at(n.addr, &n.token("alice"), "a1").await;
    let (mut b, _) = Dev::login_at(n.addr, &n.token("bob"), "b1").await;

    // j2 answers: the claim is taken over (epoch 2) and the room made again there.
    stale_claim("gs").await;
    let (g, bobs) = two_in_call(&mut a, &mut b, "gs").await;
    assert_eq!((g, bobs), (2, 2), "the stale claim taken over");
    let row = hgetall(&redis, &row_key(APP_KEY, "gs")).await;
    assert_eq!(row["janus"], proxy.url(), "{row:?}");
    assert_eq!(row["state"], "ready", "{row:?}");
    let room = sfu::room_id(APP_KEY, "gs");
    eventually("both members in the one room on j2", || async {
        direct2.participants(&room).await.unwrap().len() == 2
    })
    .await;
    assert!(!direct1.room_exists(&room).await.unwrap());
    a.send_ok(2, gcall("a1", &["bob"], "gs", hangup())).await;
    b.send_ok(2, gcall("b1", &["alice"], "gs", hangup())).await;
    eventually("gs's room destroyed", || async {
        !direct2.room_exists(&room).await.unwrap()
    })
    .await;

    // j2 cut off and given up: the claim is taken over on j1 (the call does not wait for j2).
    stale_claim("gt").await;
    proxy.hold();
    eventually("j2 given up", || async {
        s.pool()[1]
            .down_for()
            .is_some_and(|d| d >= Duration::from_secs(1))
    })
    .await;
    let (g, bobs) = two_in_call(&mut a, &mut b, "gt").await;
    assert_eq!((g, bobs), (2, 2), "the stale claim taken over");
    let row = hgetall(&redis, &row_key(APP_KEY, "gt")).await;
    assert_eq!(row["janus"], j1.url(), "{row:?}");
    let room = sfu::room_id(APP_KEY, "gt");
    answer(a.publish(3, "gt").await, 3);
    assert!(direct2.room_exists(&room).await.unwrap());
    // j2 answers again: the dead claimer's room there is destroyed; the call stays on j1.
    proxy.release();
    eventually("the dead claimer's room destroyed on j2", || async {
        !direct2.room_exists(&room).await.unwrap()
    })
    .await;
    assert!(direct1.room_exists(&room).await.unwrap());
}

/// Alice's (a1, on `s1`'s node) media "up": a remote publisher in her place (Janus lists it at
/// once). Bob, on the other node, gets her feed under the opaque id her own node gives it,
/// returned.
async fn alice_media_up(s1: &sfu::Sfu, b: &mut Dev, call: &str) -> String {
    let room = sfu::room_id(APP_KEY, call);
    let alice_janus = s1
        .peer_janus_feed(APP_KEY, call, "alice", "a1")
        .await
        .unwrap();
    let alice_feed = s1.peer_feed(APP_KEY, call, "alice", "a1").await.unwrap();
    let secret = s1.room_secret(&room);
    s1.janus().kick(&room, &secret, &alice_janus).await.unwrap();
    let h = s1.janus().attach().await.unwrap();
    h.request(
        json!({"request": "add_remote_publisher", "room": room, "secret": secret,
            "id": alice_janus, "display": "alice", "streams": [
            {"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"},
            {"type": "video", "mindex": 1, "mid": "1", "codec": "vp8"},
        ]}),
        None,
    )
    .await
    .expect("a remote publisher in alice's place");
    match b.next_sfu().await {
        S::SfuFeeds(f) => {
            assert_eq!(f.feeds.len(), 1, "{f:?}");
            assert_eq!(
                (&*f.feeds[0].feed, &*f.feeds[0].user_id),
                (&*alice_feed, "alice")
            );
        }
        other => panic!("expected SfuFeeds, got {other:?}"),
    }
    alice_feed
}

/// Paused layers across nodes (docs/sfu.md "Paused layers"): alice publishes on node 1 and
/// her only subscriber, bob, is on node 2; node 2 shares what bob takes through Redis, so
/// node 1 tells her to pause what nobody takes — the low layer taken → 0 (after the hold);
/// her high layer asked → 2. (Before, a publisher with a seat on another node was never
/// paused: always 2.) The times are printed.
#[tokio::test]
async fn a_publisher_is_told_the_layers_its_subscribers_on_another_node_take() {
    let j = TestJanus::start();
    let redis = TestRedis::start();
    let ([n1, _n2], mut a, mut b, _) = across_two_nodes(&redis, &j, "gc").await;
    let s1 = n1.server.state().sfu.clone().unwrap();
    // (She does not publish herself: Janus would close her connection when her participant
    // is replaced, and her node would set her up afresh.)
    let alice_feed = alice_media_up(&s1, &mut b, "gc").await;
    // Bob subscribes (one tile: her high layer) and answers.
    let o = match b.subscribe(3, "gc", &[&alice_feed]).await {
        S::SfuOffer(o) => o,
        other => panic!("expected SfuOffer, got {other:?}"),
    };
    b.c.send(C::SfuAnswer(SfuAnswer {
        request_id: 3,
        call_id: "gc".into(),
        sdp: answer_to(&o.sdp),
    }))
    .await;
    let told = |max: u32| {
        let s1 = s1.clone();
        move || {
            let s1 = s1.clone();
            async move {
                s1.publisher_layers_told(APP_KEY, "gc", "alice", "a1")
                    .await
                    .is_some_and(|t| t.max == max && t.lower_since.is_none())
            }
        }
    };
    // (Before bob subscribed nobody took her video: she may have been told to pause, then to
    // resume. Once node 1 says "every layer", what was sent is drained.)
    eventually("alice at every layer", || async {
        s1.publisher_layers_told(APP_KEY, "gc", "alice", "a1")
            .await
            .is_none_or(|t| t.max == 2 && t.lower_since.is_none())
    })
    .await;
    a.no_sfu(8).await;
    for (sub, expect) in [(0, 0), (2, 2)] {
        let t = std::time::Instant::now();
        b.c.send(C::SfuLayers(SfuLayers {
            call_id: "gc".into(),
            want: vec![SfuWant {
                feed: alice_feed.clone(),
                mid: String::new(),
                substream: sub,
            }],
        }))
        .await;
        eventually(&format!("alice told {expect}"), told(expect)).await;
        assert_eq!(
            a.next_publisher_layers("gc").await,
            expect,
            "bob takes {sub}"
        );
        println!(
            "bob (node 2) takes alice's (node 1) layer {sub}: alice told {expect} after {:?} (LAYERS_HOLD {:?} for lowering, 1 s passes)",
            t.elapsed(),
            sfu::relay::LAYERS_HOLD
        );
    }
}
