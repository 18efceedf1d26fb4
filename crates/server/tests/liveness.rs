//! Dead connections are found (WebSocket pings, closed after `dead_after` of silence), and what
//! was routed to a connection that turned out dead is kept for its resume.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use rcall_server::outbox::liveness_now;
use tokio_tungstenite::tungstenite::Message;

const PING: Duration = Duration::from_millis(100);
const DEAD: Duration = Duration::from_millis(600);

fn short_intervals(c: &mut rcall_server::Config) {
    c.ping_interval = PING;
    c.dead_after = DEAD;
    c.resume_window = Duration::from_millis(200);
}

/// With `dead_after` this short, a connection the test does not poll for 600 ms is closed
/// however alive its client: a test here is one thread (server included), and on a loaded machine
/// the other clients' logins and round trips took that long (alice, idle meanwhile, was closed
/// and her next send hit a broken pipe; 3 runs in 6 at load 45). So a client logs in just before
/// it is used, and a sender used later gets a connection of its own then.
fn n(content: &[u8]) -> u32 {
    u32::from_be_bytes(content.try_into().expect("4-byte content"))
}

#[tokio::test]
async fn a_silent_client_that_answers_pings_stays_connected() {
    let ts = TestServer::start_with(short_intervals).await;
    let mut b1 = ts.client("bob", "b1").await;
    // Read only (tungstenite answers each Ping with a Pong while reading) for 3× `dead_after`.
    let until = Instant::now() + DEAD * 3;
    let mut pings = 0;
    while let Ok(msg) = tokio::time::timeout_at(until.into(), b1.ws.next()).await {
        match msg {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings in {:?}", DEAD * 3);
    assert_eq!(ts.server.state().hub.connection_count("bob"), 1);
    b1.barrier(1).await;
}

/// The SDK app-pings on the server's own interval: a client that sent an app `Ping` gets the
/// server's WebSocket ping only once it has been silent for 1.5 intervals (on the liveness clock),
/// not after one, which made nearly every SDK connection pinged twice per interval.
#[tokio::test]
async fn a_client_that_app_pings_is_pinged_only_once_its_pings_are_overdue() {
    // Intervals long against a loaded machine's scheduling delays: a sweep late by 200 ms
    // would make one interval look like 1.5.
    const PING: Duration = Duration::from_millis(400);
    let ts = TestServer::start_with(|c| {
        c.ping_interval = PING;
        c.dead_after = PING * 6;
    })
    .await;
    let mut b1 = ts.client("bob", "b1").await;
    // Its last frame (this app Ping) is stamped at `heard_from` or later.
    let heard_from = liveness_now();
    b1.barrier(1).await;
    // Silent from now on, reading only, until the server's WebSocket ping.
    match tokio::time::timeout(PING * 20, b1.ws.next()).await {
        Ok(Some(Ok(Message::Ping(_)))) => {}
        other => panic!("expected a WebSocket ping, got {other:?}"),
    }
    // The sweep that queued it advanced the clock to its own reading first.
    let pinged_by = liveness_now();
    assert!(
        pinged_by >= heard_from + (PING * 3 / 2).as_millis() as u64,
        "pinged after {} ms of silence, before 1.5 ping intervals ({:?})",
        pinged_by - heard_from,
        PING * 3 / 2
    );
    b1.barrier(2).await;
    assert_eq!(ts.server.state().hub.connection_count("bob"), 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_gets_what_was_routed_to_it_on_resume() {
    let ts = TestServer::start_with(short_intervals).await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(0, private("bob", &0u32.to_be_bytes()), 0)
        .await;
    drop(a1);
    let first = b1.recv_delivered().await;
    b1.ack(first.seq).await;
    // The server stamps what it hears with its liveness clock, which only goes forward: b1's
    // last frame (the barrier) is stamped at `heard_from` or later.
    let heard_from = liveness_now();
    b1.barrier(1).await;
    // From now on b1 never polls its socket: it answers no pings, as a vanished peer.
    let silent_since = Instant::now();
    let mut a2 = ts.client("alice", "a2").await;
    for i in 1..=5u32 {
        a2.send_expect(i, private("bob", &i.to_be_bytes()), 0).await;
    }
    let hub = &ts.server.state().hub;
    while hub.connection_count("bob") > 0 {
        // A bound only against a hang: the sweeper runs every PING / 4.
        assert!(
            silent_since.elapsed() < DEAD * 20,
            "a dead connection must be closed after dead_after"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Closed no earlier than `dead_after` of silence on the same clock (the sweep that closed
    // it advanced the clock to its own reading first).
    let closed_by = liveness_now();
    assert!(
        closed_by >= heard_from + DEAD.as_millis() as u64,
        "closed after {} ms of silence, before dead_after ({DEAD:?})",
        closed_by - heard_from
    );
    // Past the resume window's TTL, and pruned: only the store can still have them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.sweep();
    drop(b1);
    let (_b1, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", first.seq).await;
    let got: Vec<u32> = replay.iter().map(|d| n(&d.content)).collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_new_device_that_leaves_gets_nothing_routed_before_it_came() {
    let ts = TestServer::start_with(short_intervals).await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(1, private("bob", &1u32.to_be_bytes()), 0)
        .await;
    let m1 = b1.recv_delivered().await;
    b1.ack(m1.seq).await;
    b1.barrier(1).await;
    // A device the server never saw: it does not get m1, and leaving does not store m1 for it.
    let (b2, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b2", 0).await;
    assert!(replay.is_empty());
    drop(b2);
    let hub = &ts.server.state().hub;
    while hub.connection_count("bob") > 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.sweep();
    let (_b2, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b2", 0).await;
    let got: Vec<u32> = replay.iter().map(|d| n(&d.content)).collect();
    assert!(got.is_empty(), "{got:?}");
}
