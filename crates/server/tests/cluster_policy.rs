//! Cluster mode (issue 15): policy and Server API nonces shared by the nodes through Redis.
//! Two (or three) in-process nodes, each with its own SQLite file and port, on one private
//! Redis: a change made through one node's Server API is enforced on traffic the other node
//! routes, a node started later loads it, and a node that missed messages (its subscriber
//! reconnected, or Redis restarted) catches up.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::TestRedis;
use common::*;
use rcall_server::cluster::{shared, RedisUrl};
use serde_json::{json, Value};

/// A signed Server API call; `(HTTP status, body)`.
async fn api(ts: &TestServer, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = api_request(ts, path, APP_KEY, APP_SECRET, form).await;
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn blocked_users(ts: &TestServer) -> Vec<String> {
    let q = api_ok(ts, "/user/block/query.json", &[]).await;
    let mut v: Vec<String> = q["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn group_members(ts: &TestServer, group: &str) -> Value {
    api_ok(ts, "/group/user/query.json", &[("groupId", group)]).await["users"].clone()
}

async fn blacklist(ts: &TestServer, user: &str) -> Value {
    api_ok(ts, "/user/blacklist/query.json", &[("userId", user)]).await["users"].clone()
}

/// Authentication on `ts` is refused with `code`.
async fn assert_refused(ts: &TestServer, user: &str, device: &str, code: i32) {
    let mut c = Client::authenticate(ts.addr, &ts.token(user), device, 0).await;
    c.expect_refused(code).await;
    c.expect_closed().await;
}

/// A token of `user` issued `ago_ms` in the past.
fn token_issued_ago(user: &str, ago_ms: i64) -> String {
    rcall_server::token::issue(APP_KEY, APP_SECRET, user, now_ms() - ago_ms, 600_000)
}

#[tokio::test]
async fn a_block_on_b_disconnects_on_a_and_an_unblock_on_a_lets_in_on_b() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = a.client("bob", "b1").await;

    api_ok(
        &b,
        "/user/block.json",
        &[("userId", "alice"), ("minute", "10")],
    )
    .await;
    // Node A applied it: alice's connection there is closed with 31009, and A refuses her.
    alice.expect_error_and_close(31009).await;
    assert_refused(&a, "alice", "a2", 31009).await;
    assert_eq!(blocked_users(&a).await, ["alice"]);
    bob.barrier(1).await;

    api_ok(&a, "/user/unblock.json", &[("userId", "alice")]).await;
    eventually("node B sees the unblock", || async {
        blocked_users(&b).await.is_empty()
    })
    .await;
    Client::login(b.addr, &b.token("alice"), "a3")
        .await
        .barrier(2)
        .await;
}

#[tokio::test]
async fn a_group_quit_on_a_is_enforced_on_sends_b_routes_22406() {
    let (_redis, a, b) = two_nodes().await;
    create_group(&a, "g", &["alice", "bob"]).await;
    let both = json!([{"id": "alice"}, {"id": "bob"}]);
    eventually("node B sees the group", || async {
        group_members(&b, "g").await == both
    })
    .await;
    let mut alice = b.client("alice", "a1").await;
    alice.send_expect(1, group("g", &["bob"], b"x"), 0).await;

    api_ok(
        &a,
        "/group/quit.json",
        &[("groupId", "g"), ("userId", "alice")],
    )
    .await;
    eventually("node B sees the quit", || async {
        group_members(&b, "g").await == json!([{"id": "bob"}])
    })
    .await;
    alice
        .send_expect(2, group("g", &["bob"], b"y"), 22406)
        .await;

    // Dismissing on B removes the group on A.
    api_ok(
        &b,
        "/group/dismiss.json",
        &[("groupId", "g"), ("userId", "bob")],
    )
    .await;
    eventually("node A sees the dismissal", || async {
        group_members(&a, "g").await == json!([])
    })
    .await;
    // (What alice sent him through node B while he was offline is replayed on node A.)
    let (mut bob, replay) = Client::login_resume(a.addr, &a.token("bob"), "b1", 0).await;
    let replayed: Vec<&[u8]> = replay.iter().map(|d| d.content.as_slice()).collect();
    assert_eq!(replayed, [&b"x"[..]]);
    bob.send_expect(3, group("g", &["alice"], b"z"), 22406)
        .await;
}

#[tokio::test]
async fn a_blacklist_on_b_is_enforced_on_private_sends_a_routes_405() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = a.client("bob", "b1").await;
    api_ok(
        &b,
        "/user/blacklist/add.json",
        &[("userId", "bob"), ("blackUserId", "alice")],
    )
    .await;
    eventually("node A sees the blacklist", || async {
        blacklist(&a, "bob").await == json!(["alice"])
    })
    .await;
    alice.send_expect(1, private("bob", b"hi"), 405).await;
    bob.barrier(1).await;

    api_ok(
        &b,
        "/user/blacklist/remove.json",
        &[("userId", "bob"), ("blackUserId", "alice")],
    )
    .await;
    eventually("node A sees the removal", || async {
        blacklist(&a, "bob").await == json!([])
    })
    .await;
    alice.send_expect(2, private("bob", b"hi"), 0).await;
    assert_eq!(bob.recv_delivered().await.content, b"hi");
}

#[tokio::test]
async fn a_token_expiry_on_a_closes_a_connection_on_b_31020() {
    let (_redis, a, b) = two_nodes().await;
    let old = token_issued_ago("alice", 5_000);
    let mut live = Client::login(b.addr, &old, "a1").await;
    let time = now_ms().to_string();
    api_ok(
        &a,
        "/user/token/expire.json",
        &[("userId", "alice"), ("time", &time)],
    )
    .await;
    live.expect_error_and_close(31020).await;
    // B refuses the old token from now on; a fresh one works.
    Client::authenticate(b.addr, &old, "a2", 0)
        .await
        .expect_refused(31020)
        .await;
    Client::login(b.addr, &b.token("alice"), "a3")
        .await
        .barrier(1)
        .await;
}

#[tokio::test]
async fn a_server_api_request_replayed_to_another_node_is_refused_1004() {
    let (_redis, a, b) = two_nodes().await;
    let nonce = fresh_nonce();
    let timestamp = now_ms().to_string();
    let sig = signature(APP_SECRET, &nonce, &timestamp);
    let send = |ts: &TestServer| {
        reqwest::Client::new()
            .post(ts.url("/user/getToken.json"))
            .header("App-Key", APP_KEY)
            .header("Nonce", &nonce)
            .header("Timestamp", &timestamp)
            .header("Signature", &sig)
            .form(&[("userId", "alice")])
            .send()
    };
    let first = send(&a).await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    for ts in [&b, &a] {
        let replay = send(ts).await.unwrap();
        assert_eq!(replay.status().as_u16(), 401);
        let body: Value = replay.json().await.unwrap();
        assert_eq!(body["code"], 1004, "{body}");
        assert!(body["errorMessage"].as_str().unwrap().contains("Nonce"));
    }
}

#[tokio::test]
async fn a_node_started_later_loads_the_policy_from_redis() {
    let redis = TestRedis::start();
    let a = cluster_node(&redis).await;
    api_ok(
        &a,
        "/user/block.json",
        &[("userId", "mallory"), ("minute", "10")],
    )
    .await;
    api_ok(
        &a,
        "/user/blacklist/add.json",
        &[("userId", "bob"), ("blackUserId", "alice")],
    )
    .await;
    create_group(&a, "g", &["alice", "bob"]).await;
    create_group(&a, "g2", &["carol"]).await;
    api_ok(
        &a,
        "/group/quit.json",
        &[("groupId", "g2"), ("userId", "carol")],
    )
    .await;
    let time = now_ms().to_string();
    api_ok(
        &a,
        "/user/token/expire.json",
        &[("userId", "carol"), ("time", &time)],
    )
    .await;

    // C starts with an empty SQLite: all of it comes from Redis, before it serves anything.
    let c = cluster_node(&redis).await;
    assert_eq!(blocked_users(&c).await, ["mallory"]);
    assert_refused(&c, "mallory", "m1", 31009).await;
    assert_eq!(blacklist(&c, "bob").await, json!(["alice"]));
    assert_eq!(
        group_members(&c, "g").await,
        json!([{"id": "alice"}, {"id": "bob"}])
    );
    Client::authenticate(c.addr, &token_issued_ago("carol", 5_000), "c1", 0)
        .await
        .expect_refused(31020)
        .await;
    let mut alice = c.client("alice", "a1").await;
    alice.send_expect(1, private("bob", b"x"), 405).await;
    alice.send_expect(2, group("g", &["bob"], b"x"), 0).await;
    // g2 exists with no members: its former member cannot send to it.
    let mut carol = c.client("carol", "c2").await;
    carol
        .send_expect(1, group("g2", &["alice"], b"x"), 22406)
        .await;
}

#[tokio::test]
async fn a_change_missed_while_the_subscriber_was_away_is_loaded_at_resync() {
    let (_redis, a, b) = two_nodes().await;
    let mut alice = a.client("alice", "a1").await;
    let mut bob = b.client("bob", "b1").await;
    // Written straight into Redis, never published: only a reload can find these.
    let bus = b.server.state().cluster.as_ref().unwrap().bus().clone();
    let mut conn = bus.connection();
    let until = now_ms() + 600_000;
    redis::pipe()
        .hset(shared::blocks_key(APP_KEY), "alice", until)
        .sadd(shared::groups_key(APP_KEY), "g")
        .sadd(shared::group_key(APP_KEY, "g"), "bob")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    bob.send_expect(1, group("g", &["alice"], b"x"), 22406)
        .await;
    // Every node's subscriber loses its connection: they resubscribe, then reload.
    let killed = kill_subscribers(&b).await;
    assert_eq!(
        killed, 6,
        "three subscribers per node (policy, user channels, rooms)"
    );
    // A disconnects alice, blocked by the reload, and refuses her.
    alice.expect_error_and_close(31009).await;
    assert_refused(&a, "alice", "a2", 31009).await;
    eventually("node B loads the group", || async {
        group_members(&b, "g").await == json!([{"id": "bob"}])
    })
    .await;
    bob.send_expect(2, group("g", &["alice"], b"x"), 0).await;
}

#[tokio::test]
async fn after_a_redis_restart_the_nodes_keep_the_policy_and_see_new_changes() {
    let (mut redis, a, b) = two_nodes().await;
    api_ok(
        &b,
        "/user/block.json",
        &[("userId", "alice"), ("minute", "10")],
    )
    .await;
    eventually("node A sees the first block", || async {
        blocked_users(&a).await == ["alice"]
    })
    .await;

    // Redis restarts empty (no persistence in tests).
    redis.restart();
    let t0 = Instant::now();
    loop {
        let (status, body) = api(
            &b,
            "/user/block.json",
            &[("userId", "bob"), ("minute", "10")],
        )
        .await;
        if status == 200 {
            break;
        }
        assert_eq!(body["code"], 1000, "{body}");
        assert!(t0.elapsed() < CATCH_UP, "node B never reached Redis again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A applies the new block (live or at its resync) and still has the old one.
    eventually("node A has both blocks", || async {
        blocked_users(&a).await == ["alice", "bob"]
    })
    .await;
    assert_refused(&a, "bob", "b1", 31009).await;
    // The nodes wrote what Redis lost back: a new node loads both.
    let c = cluster_node(&redis).await;
    assert_eq!(blocked_users(&c).await, ["alice", "bob"]);
}

#[tokio::test]
async fn policy_change_payloads_round_trip() {
    let c = shared::PolicyChange::Blacklist {
        owner: "bob".into(),
        others: vec!["alice".into()],
        add: true,
    };
    let j = serde_json::to_string(&c).unwrap();
    assert_eq!(
        j,
        r#"{"op":"blacklist","owner":"bob","others":["alice"],"add":true}"#
    );
    assert_eq!(serde_json::from_str::<shared::PolicyChange>(&j).unwrap(), c);
}

#[tokio::test]
async fn a_node_whose_redis_is_unreachable_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("unix://{}", dir.path().join("none.sock").display());
    let mut config = rcall_server::Config::new(APP_KEY, APP_SECRET);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db_path = dir.path().join("rcall.db");
    config.redis = Some(RedisUrl::parse(&url).unwrap());
    let e = match rcall_server::start(config).await {
        Ok(_) => panic!("a node without its Redis must not start"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("cannot reach Redis"), "{e}");
}
