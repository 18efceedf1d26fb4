//! Cluster mode's Redis bus (issue 15), two "nodes" (two `Bus`es) on one private Redis:
//! pub/sub between nodes, per-app key tags, the atomic per-user sequence allocator, and what
//! happens when Redis restarts or a consumer falls behind.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis_server::TestRedis;
use rcall_server::cluster::{keys, Bus, BusEvent, ClusterError, RedisUrl, MAX_SEQ, SEQ_KEY_TTL};
use tokio::sync::mpsc::Receiver;

/// How long a test waits for an event that must come (a restart included).
const WAIT: Duration = Duration::from_secs(10);

async fn bus(redis: &TestRedis) -> Bus {
    Bus::connect(&RedisUrl::parse(&redis.url()).unwrap())
        .await
        .expect("bus connects")
}

async fn next_event(rx: &mut Receiver<BusEvent>) -> BusEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("subscriber still running")
}

fn msg(channel: &str, payload: &[u8]) -> BusEvent {
    BusEvent::Message {
        channel: channel.into(),
        payload: payload.to_vec().into(),
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Publishes until Redis takes it (the publisher's connection may still be reconnecting after
/// a restart); returns the receiver count.
async fn publish_when_back(bus: &Bus, channel: &str, payload: &[u8]) -> usize {
    let t0 = std::time::Instant::now();
    loop {
        match bus.publish(channel, payload).await {
            Ok(n) => return n,
            Err(e) => {
                assert!(e.is_connection_lost(), "unexpected error: {e}");
                assert!(t0.elapsed() < WAIT, "Redis did not come back: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_message_published_on_one_node_reaches_the_other() {
    let redis = TestRedis::start();
    let (a, b) = (bus(&redis).await, bus(&redis).await);
    assert_ne!(a.node_id(), b.node_id(), "nodes get distinct random ids");
    let (sub, mut rx) = b.subscriber(64).await.unwrap();
    let to_b = keys::node_channel(b.node_id());
    let app = keys::app_channel("app1", "events");
    sub.subscribe(&[&to_b, &app]).await.unwrap();

    let binary = [0u8, 159, 146, 150, 255, b'\n'];
    assert_eq!(
        a.publish(&to_b, b"hello b").await.unwrap(),
        1,
        "one subscriber"
    );
    assert_eq!(a.publish(&app, &binary).await.unwrap(), 1);
    assert_eq!(
        a.publish("rcall:elsewhere", b"x").await.unwrap(),
        0,
        "nobody listens"
    );
    assert_eq!(next_event(&mut rx).await, msg(&to_b, b"hello b"));
    assert_eq!(next_event(&mut rx).await, msg(&app, &binary));

    // After unsubscribe nothing of that channel arrives (the next event is the other one's).
    sub.unsubscribe(&[&app]).await.unwrap();
    assert_eq!(a.publish(&app, b"gone").await.unwrap(), 0);
    a.publish(&to_b, b"still here").await.unwrap();
    assert_eq!(next_event(&mut rx).await, msg(&to_b, b"still here"));

    // A node also hears itself (the hub will skip its own messages by node id).
    let (self_sub, mut self_rx) = a.subscriber(8).await.unwrap();
    self_sub.subscribe(&[&app]).await.unwrap();
    a.publish(&app, b"own").await.unwrap();
    assert_eq!(next_event(&mut self_rx).await, msg(&app, b"own"));
}

#[tokio::test]
async fn keys_carry_a_per_app_hash_tag_and_apps_never_share_one() {
    let redis = TestRedis::start();
    let a = bus(&redis).await;
    let user = "alice:{x}";
    let (k1, k2) = (keys::user_seq("app1", user), keys::user_seq("app2", user));
    assert_eq!(k1, "rcall:{app1}:seq:alice%3A%7Bx%7D");
    assert_eq!(keys::hash_tag(&k1), "app1");
    // Every key and channel of an app maps to the app's slot, whatever the user id holds.
    for k in [
        keys::user_seq("app1", "bob}{"),
        keys::app_channel("app1", "c:1"),
        keys::app_key("app1", "presence", &["u", "d"]),
    ] {
        assert_eq!(keys::slot(&k), keys::slot(&k1), "{k}");
    }
    assert_ne!(keys::slot(&k1), keys::slot(&k2));

    // The same user id in two apps: two keys, two independent sequences.
    let far = now_us() + 3_600_000_000;
    assert_eq!(a.next_seq("app1", user, far).await.unwrap(), far);
    let s2 = a.next_seq("app2", user, 0).await.unwrap();
    assert!(s2 < far, "app2's sequence is not pushed by app1's floor");
    assert_eq!(a.next_seq("app1", user, 0).await.unwrap(), far + 1);
    let mut conn = a.connection();
    let (e1, e2, ttl): (bool, bool, i64) = redis::pipe()
        .exists(&k1)
        .exists(&k2)
        .pttl(&k1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(e1 && e2);
    assert!(
        ttl > 0 && ttl <= SEQ_KEY_TTL.as_millis() as i64,
        "pttl {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_seq_is_strictly_increasing_across_two_nodes_under_concurrency() {
    let redis = TestRedis::start();
    let (a, b) = (bus(&redis).await, bus(&redis).await);
    let t0 = now_us();
    // Each node allocates 1000 in a row while the other does the same.
    let run = |bus: Bus| {
        tokio::spawn(async move {
            let mut v = Vec::with_capacity(1000);
            for _ in 0..1000 {
                v.push(bus.next_seq("app", "carol", 0).await.unwrap());
            }
            v
        })
    };
    let (ha, hb) = (run(a.clone()), run(b.clone()));
    let (va, vb) = (ha.await.unwrap(), hb.await.unwrap());
    for v in [&va, &vb] {
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "each node's sequence increases"
        );
        assert!(v[0] >= t0, "at least the clock when asked");
    }
    let all: HashSet<u64> = va.iter().chain(&vb).copied().collect();
    assert_eq!(all.len(), 2000, "no number issued twice");

    // 1000 in flight at once on each node (pipelined on one connection per node).
    let burst = |bus: Bus| {
        tokio::spawn(async move {
            let calls = (0..1000).map(|_| bus.next_seq("app", "carol", 0));
            futures::future::try_join_all(calls).await.unwrap()
        })
    };
    let (ha, hb) = (burst(a), burst(b));
    let (ca, cb) = (ha.await.unwrap(), hb.await.unwrap());
    let before = *va.iter().chain(&vb).max().unwrap();
    let burst_all: HashSet<u64> = ca.iter().chain(&cb).copied().collect();
    assert_eq!(burst_all.len(), 2000, "no number issued twice");
    assert!(
        burst_all.iter().all(|&s| s > before),
        "later calls get later numbers"
    );
}

#[tokio::test]
async fn next_seq_honours_the_floor_and_survives_script_flush_and_restart() {
    let mut redis = TestRedis::start();
    let a = bus(&redis).await;
    let floor = now_us() + 60_000_000;
    assert_eq!(a.next_seq("app", "dave", floor).await.unwrap(), floor);
    assert_eq!(a.next_seq("app", "dave", 0).await.unwrap(), floor + 1);
    assert_eq!(
        a.next_seq("app", "dave", floor + 10).await.unwrap(),
        floor + 10
    );

    // The script is sent by hash; Redis forgetting it (NOSCRIPT) costs one reload.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut a.connection())
        .await
        .unwrap();
    assert_eq!(a.next_seq("app", "dave", 0).await.unwrap(), floor + 11);

    // A Redis restart loses the key (no persistence here); the clock and the caller's floor
    // keep the sequence increasing, and the reconnected client loads the script again.
    redis.restart();
    let t0 = std::time::Instant::now();
    let s = loop {
        match a.next_seq("app", "dave", floor + 12).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(e.is_connection_lost() && t0.elapsed() < WAIT, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(s, floor + 12);
    let fresh = a.next_seq("app", "erin", 0).await.unwrap();
    assert!(
        fresh >= now_us() - 1_000_000 && fresh < floor,
        "a new user starts at the clock"
    );

    let e = a.next_seq("app", "dave", MAX_SEQ).await.unwrap_err();
    assert!(matches!(e, ClusterError::OutOfRange(_)), "{e}");
}

#[tokio::test]
async fn after_a_redis_restart_the_subscriber_resubscribes_and_emits_resync() {
    let mut redis = TestRedis::start();
    let (a, b) = (bus(&redis).await, bus(&redis).await);
    let (sub, mut rx) = b.subscriber(64).await.unwrap();
    let ch = keys::app_channel("app", "room-1");
    sub.subscribe(&[&ch]).await.unwrap();
    a.publish(&ch, b"before").await.unwrap();
    assert_eq!(next_event(&mut rx).await, msg(&ch, b"before"));

    redis.restart();
    // Resync comes once the new connection is subscribed again: nothing published after it
    // is missed, and nothing of the new connection precedes it.
    assert_eq!(next_event(&mut rx).await, BusEvent::Resync);
    assert_eq!(publish_when_back(&a, &ch, b"after").await, 1);
    assert_eq!(next_event(&mut rx).await, msg(&ch, b"after"));

    // A subscription asked for while Redis is down is recorded, made on reconnect, and
    // covered by the Resync that follows.
    redis.kill();
    let late = keys::app_channel("app", "room-2");
    tokio::time::timeout(WAIT, sub.subscribe(&[&late]))
        .await
        .expect("subscribe answers while Redis is down")
        .unwrap();
    redis.start_again();
    assert_eq!(next_event(&mut rx).await, BusEvent::Resync);
    assert_eq!(publish_when_back(&a, &late, b"late").await, 1);
    assert_eq!(next_event(&mut rx).await, msg(&late, b"late"));
    a.publish(&ch, b"old channel too").await.unwrap();
    assert_eq!(next_event(&mut rx).await, msg(&ch, b"old channel too"));
}

#[tokio::test]
async fn a_consumer_that_falls_behind_gets_resync_instead_of_an_unbounded_queue() {
    let redis = TestRedis::start();
    let (a, b) = (bus(&redis).await, bus(&redis).await);
    let (sub, mut rx) = b.subscriber(4).await.unwrap();
    let ch = keys::app_channel("app", "busy");
    sub.subscribe(&[&ch]).await.unwrap();
    for i in 0..200u32 {
        a.publish(&ch, &i.to_be_bytes()).await.unwrap();
    }
    // At most the 4 buffered messages, then Resync (the rest were dropped, not queued).
    let mut seen = 0;
    while let BusEvent::Message { .. } = next_event(&mut rx).await {
        seen += 1;
        assert!(seen <= 4, "more than the capacity was buffered");
    }
    // Delivery is live again.
    assert_eq!(publish_when_back(&a, &ch, b"next").await, 1);
    assert_eq!(next_event(&mut rx).await, msg(&ch, b"next"));
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("unix://{}/no-redis.sock", dir.path().display());
    let e = Bus::connect(&RedisUrl::parse(&url).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot reach Redis at unix://"), "{e}");
    assert!(e.contains("scripts/setup.sh"), "{e}");
}

/// Subscriptions queued together reach Redis as a few commands, not one round trip each (a
/// node whose clients all reconnect at once after another node's death subscribes thousands of
/// user channels), and each caller is answered once its channel is subscribed, in order.
#[tokio::test]
async fn queued_subscriptions_share_round_trips_and_each_is_confirmed() {
    const N: usize = 300;
    let redis = TestRedis::start();
    let node = bus(&redis).await;
    let (sub, mut rx) = node.subscriber(16).await.unwrap();
    let channels: Vec<String> = (0..N).map(|i| format!("batch:{i}")).collect();
    let waits: Vec<_> = channels
        .iter()
        .map(|c| sub.queue(true, &[c.as_str()]).unwrap())
        .collect();
    for w in waits {
        w.await.expect("answered");
    }
    // Every channel is live once its caller was answered.
    let publisher = bus(&redis).await;
    assert_eq!(publisher.publish(&channels[N - 1], b"x").await.unwrap(), 1);
    assert_eq!(next_event(&mut rx).await, msg(&channels[N - 1], b"x"));
    let calls = command_calls(&redis, "subscribe").await;
    assert!(calls > 0, "SUBSCRIBE not counted");
    assert!(
        calls < N / 10,
        "{calls} SUBSCRIBE commands for {N} channels"
    );
}

/// Redis's count of calls of `command` so far (`INFO commandstats`).
async fn command_calls(redis: &TestRedis, command: &str) -> usize {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Connections coming and going interleave in a login storm (a login, an abandoned one, the
/// next login): their queued subscriptions and unsubscriptions still reach Redis as two
/// commands, not one round trip per change of kind; the channels end as the commands, in
/// order, leave them.
#[tokio::test]
async fn interleaved_subscriptions_and_unsubscriptions_share_round_trips() {
    const N: usize = 100;
    let redis = TestRedis::start();
    let node = bus(&redis).await;
    let (sub, mut rx) = node.subscriber(16).await.unwrap();
    let old: Vec<String> = (0..N).map(|i| format!("old:{i}")).collect();
    let refs: Vec<&str> = old.iter().map(String::as_str).collect();
    sub.subscribe(&refs).await.unwrap();
    let (subs, unsubs) = (
        command_calls(&redis, "subscribe").await,
        command_calls(&redis, "unsubscribe").await,
    );
    // Queued without yielding (this test's runtime runs one task at a time): one batch.
    let mut waits = Vec::new();
    for (i, o) in old.iter().enumerate() {
        let new = format!("new:{i}");
        waits.push(sub.queue(true, &[new.as_str()]).unwrap());
        waits.push(sub.queue(false, &[o.as_str()]).unwrap());
    }
    // "flip": dropped and taken again; "brief": taken and dropped again.
    waits.push(sub.queue(false, &["new:0"]).unwrap());
    waits.push(sub.queue(true, &["new:0"]).unwrap());
    waits.push(sub.queue(true, &["brief"]).unwrap());
    waits.push(sub.queue(false, &["brief"]).unwrap());
    for w in waits {
        w.await.expect("answered");
    }
    let subs = command_calls(&redis, "subscribe").await - subs;
    let unsubs = command_calls(&redis, "unsubscribe").await - unsubs;
    assert!(
        subs + unsubs <= 2,
        "{subs} SUBSCRIBE + {unsubs} UNSUBSCRIBE for one batch"
    );
    let publisher = bus(&redis).await;
    assert_eq!(
        publisher.publish("old:7", b"x").await.unwrap(),
        0,
        "dropped"
    );
    assert_eq!(
        publisher.publish("brief", b"x").await.unwrap(),
        0,
        "dropped again"
    );
    assert_eq!(
        publisher.publish("new:0", b"y").await.unwrap(),
        1,
        "taken again"
    );
    assert_eq!(next_event(&mut rx).await, msg("new:0", b"y"));
    assert_eq!(
        publisher
            .publish(&format!("new:{}", N - 1), b"z")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        next_event(&mut rx).await,
        msg(&format!("new:{}", N - 1), b"z")
    );
}
