//! Cluster mode under a login storm (issue 15): a node sheds the work of logins whose client
//! gave up, and refuses logins past its bound at once as busy (31003) instead of queueing
//! them past the clients' attempt timeout, each with a turn to come back at
//! (`AuthResult.retry_after_ms`). In-process nodes over a private Redis, made slow with
//! `CLIENT PAUSE`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::TestRedis;
use common::*;
use futures::StreamExt;
use rcall_server::cluster::admission::{FIRST_TURN_MS, MAX_TURN_MS, MIN_RETRY_MS};
use rcall_server::cluster::routing::Routing;
use rtc_core::proto::error_code;
use rtc_core::proto::server_frame::Body as S;

fn routing(ts: &TestServer) -> Arc<Routing> {
    ts.server.state().routing.clone().expect("cluster mode")
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 5 s");
}

/// Redis answers nothing for `ms` (every client of it, the node's included).
fn pause_redis(redis: &TestRedis, ms: u32) {
    assert_eq!(
        redis.command(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]),
        "+OK"
    );
}

#[tokio::test]
async fn a_login_whose_client_left_while_redis_was_slow_leaves_nothing_behind() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|_| {}).await;
    let r = routing(&ts);
    pause_redis(&redis, 1500);
    // One client closes cleanly (a browser's `ws.close()` after its attempt timeout), one just
    // drops its socket, both while their login waits on Redis.
    let mut closes = Client::authenticate(ts.addr, &ts.token("u1"), "u1-dev", 0).await;
    let drops = Client::authenticate(ts.addr, &ts.token("u2"), "u2-dev", 0).await;
    until("both logins in progress", || r.logins_in_progress() == 2).await;
    closes.ws.close(None).await.unwrap();
    while closes.ws.next().await.is_some() {}
    drop(drops);
    until("both logins over", || r.logins_in_progress() == 0).await;
    // (Answered once the pause is over.)
    assert_eq!(redis.command(&["PING"]), "+PONG");
    // Neither device became known to its user (the login's mailbox stage never ran), and
    // neither user counts as online anywhere.
    for user in ["u1", "u2"] {
        let devices = r.mailboxes.known_devices(APP_KEY, user).await.unwrap();
        assert!(devices.is_empty(), "{user}: {devices:?}");
        let nodes = r.presence.nodes_of(APP_KEY, user).await.unwrap();
        assert!(nodes.is_empty(), "{user}: {nodes:?}");
    }
    assert_eq!(r.logins_abandoned(), 2);
    // The same device logs in normally afterwards.
    let mut again = Client::login(ts.addr, &ts.token("u1"), "u1-dev").await;
    again.barrier(1).await;
    let nodes = r.presence.nodes_of(APP_KEY, "u1").await.unwrap();
    assert_eq!(nodes.values().sum::<u64>(), 1, "{nodes:?}");
}

/// The mailbox stage (`sync_open`, after the subscription) watches the socket too: a client
/// that leaves while its login's `MULTI` waits on Redis frees the node's login slot at once,
/// and its presence is written again once Redis answers (the `MULTI` that ran late counted
/// it). Before, the login waited on Redis whatever the client did (here until the node's
/// 5 s response timeout failed it: never counted abandoned), and had it been dropped there,
/// its presence pin was lost with it: the user stayed counted online on this node for good.
#[tokio::test]
async fn a_login_whose_client_left_during_its_mailbox_stage_is_dropped() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|_| {}).await;
    let r = routing(&ts);
    // Writes wait (the login's `MULTI`), the subscription does not: the logins get past their
    // hold stage and wait in `sync_open`. Unpaused below.
    assert_eq!(redis.command(&["CLIENT", "PAUSE", "60000", "WRITE"]), "+OK");
    let mut closes = Client::authenticate(ts.addr, &ts.token("u1"), "u1-dev", 0).await;
    let drops = Client::authenticate(ts.addr, &ts.token("u2"), "u2-dev", 0).await;
    until("both logins in progress", || r.logins_in_progress() == 2).await;
    // Both subscribed: their hold stage is over (asked on a connection of its own: the
    // node's waits behind its paused `MULTI`s).
    let own = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    eventually("both logins past their hold stage", || {
        let mut q = redis::cmd("PUBSUB");
        q.arg("NUMSUB");
        for user in ["u1", "u2"] {
            q.arg(rcall_server::cluster::mailbox::user_channel(APP_KEY, user));
        }
        let mut own = own.clone();
        async move {
            let n: Vec<(String, i64)> = q.query_async(&mut own).await.unwrap();
            n.iter().all(|(_, c)| *c == 1)
        }
    })
    .await;
    closes.ws.close(None).await.unwrap();
    while closes.ws.next().await.is_some() {}
    drop(drops);
    until("both logins dropped while Redis is paused", || {
        r.logins_in_progress() == 0
    })
    .await;
    assert_eq!(r.logins_abandoned(), 2);
    assert_eq!(redis.command(&["CLIENT", "UNPAUSE"]), "+OK");
    // Their late `MULTI`s counted them here; the node writes them gone again.
    for user in ["u1", "u2"] {
        eventually(&format!("{user} counted online nowhere"), || {
            let r = r.clone();
            async move { r.presence.nodes_of(APP_KEY, user).await.unwrap().is_empty() }
        })
        .await;
    }
    let mut again = Client::login(ts.addr, &ts.token("u1"), "u1-dev").await;
    again.barrier(1).await;
    let nodes = r.presence.nodes_of(APP_KEY, "u1").await.unwrap();
    assert_eq!(nodes.values().sum::<u64>(), 1, "{nodes:?}");
}

/// The rooms stage (between the subscription and the mailbox stage) watches the socket too: a
/// call member coming back is announced to the rooms (`Here`, a publish), and a client that
/// leaves while that publish waits on Redis frees the node's login slot at once. Before, the
/// login waited there whatever the client did (until the node's response timeout failed it:
/// never counted abandoned). Once Redis answers, the device is held nowhere.
#[tokio::test]
async fn a_login_whose_client_left_during_its_rooms_stage_is_dropped() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|_| {}).await;
    let r = routing(&ts);
    let mut alice = ts.client("alice", "a1").await;
    let mut bob = ts.client("bob", "b1").await;
    alice
        .send_expect(1, call_message("bob", "P1", calls::invite(&["bob"])), 0)
        .await;
    while !matches!(bob.recv().await.body, Some(S::Deliver(_))) {}
    bob.send_expect(1, call_message("alice", "P1", calls::accept()), 0)
        .await;
    let state = ts.server.state();
    until("bob held here", || {
        !state.hub.core_rooms_holders(0, "bob", "b1").is_empty()
    })
    .await;
    // bob, a member now, leaves (lost: his call waits out its grace) and is written gone.
    drop(bob);
    until("bob held nowhere", || {
        state.hub.core_rooms_holders(0, "bob", "b1").is_empty()
    })
    .await;
    // Writes wait (his `Here` when he comes back), the subscription does not.
    assert_eq!(redis.command(&["CLIENT", "PAUSE", "60000", "WRITE"]), "+OK");
    let back = Client::authenticate(ts.addr, &ts.token("bob"), "b1", 0).await;
    until("bob's login in progress", || r.logins_in_progress() == 1).await;
    let own = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    eventually("bob's login past its hold stage", || {
        let mut q = redis::cmd("PUBSUB");
        q.arg("NUMSUB")
            .arg(rcall_server::cluster::mailbox::user_channel(APP_KEY, "bob"));
        let mut own = own.clone();
        async move {
            let n: Vec<(String, i64)> = q.query_async(&mut own).await.unwrap();
            n[0].1 == 1
        }
    })
    .await;
    drop(back);
    until("bob's login dropped while Redis is paused", || {
        r.logins_in_progress() == 0
    })
    .await;
    assert_eq!(r.logins_abandoned(), 1);
    assert_eq!(redis.command(&["CLIENT", "UNPAUSE"]), "+OK");
    // He comes back for good, and is announced again (his late `Here` and its `Gone` are
    // behind him).
    // (His replay, the invite he never acked, is not the point here.)
    let (mut again, _) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    again.barrier(1).await;
    until("bob held here again", || {
        state.hub.core_rooms_holders(0, "bob", "b1").len() == 1
    })
    .await;
    drop(alice);
}

/// The refusal a busy node answers: 31003 with a turn (`retry_after_ms`), then the close.
async fn busy_turn(c: &mut Client) -> u32 {
    let turn = match c.recv().await.body {
        Some(S::AuthResult(a)) => {
            assert_eq!(a.code, error_code::SERVER_UNAVAILABLE, "{a:?}");
            a.retry_after_ms
        }
        other => panic!("expected AuthResult, got {other:?}"),
    };
    c.expect_closed().await;
    turn
}

/// Each login refused as busy gets its own, later turn: one login's share of the node's time
/// after the previous one's (the clients come back spread at the node's login rate, not all
/// at once nor after an idle backoff). Before, the busy answer carried no turn (0) and every
/// client waited its own backoff, up to 4 s a round.
#[tokio::test]
async fn busy_refusals_carry_successive_turns() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|c| c.max_logins_in_progress = 1).await;
    let r = routing(&ts);
    pause_redis(&redis, 1500);
    let first = Client::authenticate(ts.addr, &ts.token("u1"), "u1-dev", 0).await;
    until("the first login in progress", || {
        r.logins_in_progress() == 1
    })
    .await;
    let mut turns = Vec::new();
    for i in 2..5 {
        let user = format!("u{i}");
        let mut c =
            Client::authenticate(ts.addr, &ts.token(&user), &format!("{user}-dev"), 0).await;
        turns.push(busy_turn(&mut c).await);
    }
    assert!(turns[0] >= MIN_RETRY_MS, "{turns:?}");
    assert!(turns.windows(2).all(|w| w[0] < w[1]), "{turns:?}");
    assert_eq!(r.logins_refused(), 3);
    drop(first);
}

/// A node whose login is stuck on Redis has room under its longest turn for a few of the
/// clients it refuses; the others get turns spread below the cap, not the cap each (where a
/// storm's overflow came back in one burst, after the node had idled: `cluster::admission`).
#[tokio::test]
async fn busy_refusals_past_the_queue_are_spread_below_the_cap() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|c| c.max_logins_in_progress = 1).await;
    let r = routing(&ts);
    pause_redis(&redis, 3000);
    let first = Client::authenticate(ts.addr, &ts.token("u1"), "u1-dev", 0).await;
    until("the first login in progress", || {
        r.logins_in_progress() == 1
    })
    .await;
    // The running login is 600 ms old: a login takes that long at least, so a handful of
    // turns fit under the cap.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut turns = Vec::new();
    for i in 2..12 {
        let user = format!("u{i}");
        let mut c =
            Client::authenticate(ts.addr, &ts.token(&user), &format!("{user}-dev"), 0).await;
        turns.push(busy_turn(&mut c).await);
    }
    assert!(turns.iter().all(|&t| t <= MAX_TURN_MS), "{turns:?}");
    let at_cap = turns.iter().filter(|&&t| t == MAX_TURN_MS).count();
    assert!(at_cap <= 1, "{turns:?}");
    assert_eq!(r.logins_refused(), 10);
    drop(first);
}

/// A storm's first refusals get turns no longer than [`FIRST_TURN_MS`], however slow the
/// node's logins look then (a survivor's look slow while it answers the storm's sockets, and
/// turns given on that sent its clients up to 2 s out while it then served logins in 1–5 ms:
/// `cluster::admission`); refusals that go on get longer turns as the storm ages, up to the cap.
#[tokio::test]
async fn a_storms_first_turns_are_short_and_grow_while_it_lasts() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|c| c.max_logins_in_progress = 1).await;
    let r = routing(&ts);
    pause_redis(&redis, 4000);
    let first = Client::authenticate(ts.addr, &ts.token("u1"), "u1-dev", 0).await;
    until("the first login in progress", || {
        r.logins_in_progress() == 1
    })
    .await;
    // The running login is 600 ms old: the node's rate says about 1 login in 600 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = std::time::Instant::now();
    let mut first_turns = Vec::new();
    for i in 2..8 {
        let user = format!("u{i}");
        let mut c =
            Client::authenticate(ts.addr, &ts.token(&user), &format!("{user}-dev"), 0).await;
        first_turns.push(busy_turn(&mut c).await);
    }
    assert!(
        first_turns
            .iter()
            .all(|&t| (MIN_RETRY_MS..=FIRST_TURN_MS).contains(&t)),
        "{first_turns:?}"
    );
    // The storm goes on (a refusal every 50 ms or so, each before the last refused client is due
    // back): 1.3 s into it, its turns are longer than its first ones, and within its age.
    let mut n = 8;
    while started.elapsed() < Duration::from_millis(1300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let user = format!("u{n}");
        n += 1;
        let mut c =
            Client::authenticate(ts.addr, &ts.token(&user), &format!("{user}-dev"), 0).await;
        busy_turn(&mut c).await;
    }
    let mut c = Client::authenticate(ts.addr, &ts.token("late"), "late-dev", 0).await;
    let late = busy_turn(&mut c).await;
    let age = started.elapsed().as_millis() as u32;
    assert!(
        late > FIRST_TURN_MS && late <= age.min(MAX_TURN_MS),
        "{late} at {age} ms"
    );
    assert_eq!(
        r.logins_in_progress(),
        1,
        "the first login still waits on Redis"
    );
    drop(first);
}

#[tokio::test]
async fn logins_past_the_bound_are_refused_busy_at_once_and_succeed_on_retry() {
    let redis = TestRedis::start();
    let ts = redis.node_with(|c| c.max_logins_in_progress = 1).await;
    let r = routing(&ts);
    pause_redis(&redis, 1500);
    let mut first = Client::authenticate(ts.addr, &ts.token("u1"), "u1-dev", 0).await;
    until("the first login in progress", || {
        r.logins_in_progress() == 1
    })
    .await;
    // The node's only slot is taken by a login waiting on Redis: the next is refused now,
    // not queued behind it.
    let mut second = Client::authenticate(ts.addr, &ts.token("u2"), "u2-dev", 0).await;
    let turn = busy_turn(&mut second).await;
    assert!(turn >= MIN_RETRY_MS, "{turn}");
    assert_eq!(r.logins_refused(), 1);
    assert_eq!(
        r.logins_in_progress(),
        1,
        "the first login still waits on Redis"
    );
    // The first completes once Redis answers, and the refused client's retry succeeds.
    match first.recv().await.body {
        Some(S::AuthResult(a)) => assert_eq!(a.code, 0, "{a:?}"),
        other => panic!("expected AuthResult, got {other:?}"),
    }
    assert!(matches!(first.recv().await.body, Some(S::SyncDone(_))));
    let mut retry = Client::login(ts.addr, &ts.token("u2"), "u2-dev").await;
    retry.barrier(1).await;
    first.barrier(2).await;
    assert_eq!(r.logins_in_progress(), 0);
}

/// Cluster mode keeps device cursors in Redis, where every login reads them: a login and a
/// device's departure write none to the node's SQLite, whose copy nothing reads in cluster
/// mode. (It was a database write per login, ~10 % of a login's CPU in a storm: session 17.)
#[tokio::test]
async fn a_cluster_login_writes_no_device_cursor_to_sqlite() {
    let redis = TestRedis::start();
    let a = cluster_node(&redis).await;
    let mut bob = a.client("bob", "b1").await;
    let alice = a.client("alice", "a1").await;
    drop(alice);
    let hub = &a.server.state().hub;
    until("alice's connection is gone", || {
        hub.connection_count("alice") == 0
    })
    .await;
    // (Behind everything queued for the database before it: its writes are one thread's queue.)
    let store = &a.server.state().store;
    for user in ["alice", "bob"] {
        let known = store
            .sync_page(APP_KEY.into(), user.into(), "x".into(), 0, now_ms(), None)
            .await
            .unwrap();
        assert!(known.devices.is_empty(), "{user}: {:?}", known.devices);
    }
    bob.barrier(1).await;
}
