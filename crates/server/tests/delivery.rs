//! Ordered delivery: offline storage (order, flag, TTL, cap), acks, resume without loss or
//! duplicates, multi-device copies, and a restart with messages pending.

mod common;

use std::time::Duration;

use common::*;

fn n(content: &[u8]) -> u32 {
    u32::from_be_bytes(content.try_into().expect("4-byte content"))
}

fn contents(ds: &[rtc_core::proto::Delivered]) -> Vec<u32> {
    ds.iter().map(|d| n(&d.content)).collect()
}

fn assert_increasing(ds: &[rtc_core::proto::Delivered]) {
    for w in ds.windows(2) {
        assert!(
            w[1].seq > w[0].seq,
            "seq must increase: {} then {}",
            w[0].seq,
            w[1].seq
        );
        assert!(w[1].sent_time >= w[0].sent_time);
    }
}

#[tokio::test]
async fn offline_messages_arrive_in_order_flagged_offline_before_sync_done() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut results = Vec::new();
    for i in 1..=5u32 {
        a1.send_message(i, private("bob", &i.to_be_bytes())).await;
    }
    for i in 1..=5u32 {
        let r = a1.recv_send_result().await;
        assert_eq!((r.request_id, r.code), (i, 0));
        results.push(r);
    }
    let (mut b1, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    assert_eq!(contents(&replay), vec![1, 2, 3, 4, 5]);
    assert_increasing(&replay);
    for (d, r) in replay.iter().zip(&results) {
        assert!(d.offline, "stored messages are flagged offline");
        assert_eq!(
            (d.sent_time, d.message_uid.as_str()),
            (r.sent_time, r.message_uid.as_str())
        );
        assert_eq!(
            (d.sender_user_id.as_str(), d.target_id.as_str()),
            ("alice", "alice")
        );
    }
    // Live traffic after SyncDone is not offline and continues the seq.
    a1.send_expect(6, private("bob", &6u32.to_be_bytes()), 0)
        .await;
    let live = b1.recv_delivered().await;
    assert!(!live.offline);
    assert!(live.seq > replay.last().unwrap().seq);
}

#[tokio::test]
async fn acked_messages_are_never_redelivered() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    for i in 1..=5u32 {
        a1.send_expect(i, private("bob", &i.to_be_bytes()), 0).await;
    }
    let token = ts.token("bob");
    let (mut b1, replay) = Client::login_resume(ts.addr, &token, "b1", 0).await;
    assert_eq!(contents(&replay), vec![1, 2, 3, 4, 5]);
    b1.ack(replay[2].seq).await;
    b1.barrier(1).await;
    drop(b1);
    // The client forgot its cursor (resume_from 0): the server remembers the device's ack.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut b1, replay2) = Client::login_resume(ts.addr, &token, "b1", 0).await;
    assert_eq!(contents(&replay2), vec![4, 5]);
    b1.ack(replay2[1].seq).await;
    b1.barrier(2).await;
    drop(b1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_b1, replay3) = Client::login_resume(ts.addr, &token, "b1", 0).await;
    assert!(replay3.is_empty(), "{:?}", contents(&replay3));
    // Acked stored messages are gone from the queue for a new device too.
    let (_b2, replay4) = Client::login_resume(ts.addr, &token, "b2", 0).await;
    assert!(replay4.is_empty());
}

#[tokio::test]
async fn a_reconnecting_device_resumes_from_its_last_ack_without_loss_or_duplicates() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await; // keeps bob online
    let mut b2 = ts.client("bob", "b2").await;
    for i in 1..=2u32 {
        a1.send_expect(i, private("bob", &i.to_be_bytes()), 0).await;
    }
    let m1 = b2.recv_delivered().await;
    let m2 = b2.recv_delivered().await;
    assert_eq!((n(&m1.content), n(&m2.content)), (1, 2));
    b2.ack(m1.seq).await; // processed 1, not yet 2
    b2.barrier(1).await;
    drop(b2);
    for i in 3..=4u32 {
        a1.send_expect(i, private("bob", &i.to_be_bytes()), 0).await;
    }
    let (mut b2, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b2", m1.seq).await;
    assert_eq!(contents(&replay), vec![2, 3, 4]);
    assert_increasing(&replay);
    assert!(replay.iter().all(|d| !d.offline), "bob stayed online on b1");
    assert_eq!(replay[0].seq, m2.seq, "same message, same seq");
    a1.send_expect(5, private("bob", &5u32.to_be_bytes()), 0)
        .await;
    let live = b2.recv_delivered().await;
    assert_eq!(n(&live.content), 5);
    assert!(live.seq > replay[2].seq);
    // b1 saw everything exactly once.
    let all: Vec<u32> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(n(&b1.recv_delivered().await.content));
        }
        v
    };
    assert_eq!(all, vec![1, 2, 3, 4, 5]);
    b1.barrier(2).await;
}

#[tokio::test]
async fn the_sender_s_other_devices_get_its_messages_even_when_offline() {
    let ts = TestServer::start().await;
    let token = ts.token("alice");
    // a2 is a known device of alice, now disconnected.
    let a2 = Client::login(ts.addr, &token, "a2").await;
    drop(a2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    a1.send_expect(1, private("bob", b"call"), 0).await;
    let d = b1.recv_delivered().await;
    assert!(!d.offline);
    b1.send_expect(2, private("alice", b"answer"), 0).await;
    assert_eq!(a1.recv_delivered().await.content, b"answer");
    let (_a2, replay) = Client::login_resume(ts.addr, &token, "a2", 0).await;
    let got: Vec<(&str, &[u8])> = replay
        .iter()
        .map(|d| (d.sender_user_id.as_str(), d.content.as_slice()))
        .collect();
    assert_eq!(got, vec![("alice", &b"call"[..]), ("bob", &b"answer"[..])]);
    assert_eq!(replay[0].target_id, "bob", "own message keeps its target");
    assert_eq!(replay[0].sender_device_id, "a1");
    // The sending device never gets its own message back.
    drop(a1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert!(
        replay.iter().all(|d| d.sender_device_id != "a1"),
        "{replay:?}"
    );
}

#[tokio::test]
async fn offline_messages_expire_after_the_ttl() {
    let ts = TestServer::start_with(|c| {
        c.offline_ttl = Duration::from_millis(300);
        c.resume_window = Duration::from_millis(100);
    })
    .await;
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(1, private("bob", &1u32.to_be_bytes()), 0)
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    a1.send_expect(2, private("bob", &2u32.to_be_bytes()), 0)
        .await;
    let (_b1, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    assert_eq!(contents(&replay), vec![2]);
}

#[tokio::test]
async fn the_offline_queue_keeps_the_newest_messages_up_to_the_cap() {
    let ts = TestServer::start_with(|c| {
        c.offline_max_per_user = 3;
        c.resume_window_messages = 2;
    })
    .await;
    let mut a1 = ts.client("alice", "a1").await;
    for i in 1..=6u32 {
        a1.send_expect(i, private("bob", &i.to_be_bytes()), 0).await;
    }
    let (_b1, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    assert_eq!(contents(&replay), vec![4, 5, 6]);
}

#[tokio::test]
async fn a_restart_keeps_offline_messages_policy_and_seq_order() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    a1.send_expect(1, private("bob", &1u32.to_be_bytes()), 0)
        .await;
    let first = b1.recv_delivered().await;
    b1.ack(first.seq).await;
    b1.barrier(1).await;
    drop(b1);
    create_group(&ts, "g", &["alice", "bob"]).await;
    api_ok(
        &ts,
        "/user/blacklist/add.json",
        &[("userId", "carol"), ("blackUserId", "alice")],
    )
    .await;
    api_ok(
        &ts,
        "/user/block.json",
        &[("userId", "mallory"), ("minute", "5")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 2..=4u32 {
        a1.send_expect(i, private("bob", &i.to_be_bytes()), 0).await;
    }
    drop(a1);

    let ts = ts.restart().await;
    let (mut b1, replay) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    assert_eq!(contents(&replay), vec![2, 3, 4], "pending messages survive");
    assert!(replay.iter().all(|d| d.offline && d.seq > first.seq));
    let mut a1 = ts.client("alice", "a1").await;
    a1.send_expect(5, group("g", &["bob"], &5u32.to_be_bytes()), 0)
        .await;
    let live = b1.recv_delivered().await;
    assert!(
        live.seq > replay[2].seq,
        "seq keeps increasing across the restart"
    );
    a1.send_expect(6, private("carol", b"x"), 405).await;
    Client::authenticate(ts.addr, &ts.token("mallory"), "m", 0)
        .await
        .expect_refused(31009)
        .await;
}

#[tokio::test]
async fn nothing_is_lost_or_duplicated_when_a_device_connects_mid_burst() {
    let ts = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 100_000;
        c.rate_limit_burst = 100_000;
        // A tiny window: messages accepted while bob's stored-message read is in flight must
        // survive in memory until his replay is queued.
        c.resume_window_messages = 2;
    })
    .await;
    let mut a1 = ts.client("alice", "a1").await;
    const N: u32 = 400;
    let sender = tokio::spawn(async move {
        for i in 1..=N {
            a1.send_message(i, private("bob", &i.to_be_bytes())).await;
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for _ in 1..=N {
            assert_eq!(a1.recv_send_result().await.code, 0);
        }
        a1
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (mut b1, mut got) = Client::login_resume(ts.addr, &ts.token("bob"), "b1", 0).await;
    while got.len() < N as usize {
        got.push(b1.recv_delivered().await);
    }
    let want: Vec<u32> = (1..=N).collect();
    assert_eq!(contents(&got), want);
    assert_increasing(&got);
    sender.await.unwrap().barrier(1).await;
    b1.barrier(2).await;
}

#[tokio::test]
async fn a_second_connection_of_the_sending_device_gets_the_copy_live() {
    let ts = TestServer::start().await;
    let mut a1 = ts.client("alice", "a1").await;
    // The same device id on a second connection (e.g. a second tab).
    let mut a1b = ts.client("alice", "a1").await;
    let mut b1 = ts.client("bob", "b1").await;
    a1.send_expect(1, private("bob", b"call"), 0).await;
    assert_eq!(b1.recv_delivered().await.content, b"call");
    let copy = a1b.recv_delivered().await;
    assert_eq!(copy.content, b"call");
    assert_eq!(copy.target_id, "bob", "own message keeps its target");
    assert_eq!(copy.sender_device_id, "a1");
    assert!(!copy.offline);
}

/// Messages stored when a device leaves without acking them wait for *that* device's ack: an
/// ack from another device of the same user (here one that got them from the stored rows)
/// does not delete them, so each device that left gets them after the window expired.
#[tokio::test]
async fn messages_kept_for_departed_devices_survive_other_devices_acks() {
    let ts = TestServer::start_with(|c| c.resume_window = Duration::from_millis(200)).await;
    let token = ts.token("alice");
    // a1 is a known device of alice, now away.
    drop(Client::login(ts.addr, &token, "a1").await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b1 = ts.client("bob", "b1").await;
    let mut a2 = Client::login(ts.addr, &token, "a2").await;
    let mut a3 = Client::login(ts.addr, &token, "a3").await;
    for i in 1..=3u32 {
        b1.send_expect(i, private("alice", &i.to_be_bytes()), 0)
            .await;
    }
    for a in [&mut a2, &mut a3] {
        for i in 1..=3u32 {
            assert_eq!(n(&a.recv_delivered().await.content), i);
        }
        a.barrier(1).await;
    }
    // a2 and a3 leave without acking: the three are stored for both.
    drop(a2);
    drop(a3);
    tokio::time::sleep(Duration::from_millis(300)).await; // past the window's TTL
                                                          // a1 comes back, gets them from the stored rows, acks past them and leaves; then a2.
    for (dev, nonce) in [("a1", 2), ("a2", 3)] {
        let (mut a, replay) = Client::login_resume(ts.addr, &token, dev, 0).await;
        assert_eq!(contents(&replay), vec![1, 2, 3], "{dev}");
        a.ack(replay[2].seq).await;
        a.barrier(nonce).await;
        drop(a);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // a3 still gets them, then its own ack deletes them for good.
    let (mut a3, replay) = Client::login_resume(ts.addr, &token, "a3", 0).await;
    assert_eq!(contents(&replay), vec![1, 2, 3]);
    a3.ack(replay[2].seq).await;
    a3.barrier(4).await;
    drop(a3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_a3, replay) = Client::login_resume(ts.addr, &token, "a3", 0).await;
    assert!(replay.is_empty(), "{:?}", contents(&replay));
    ts.server.state().store.flush().await.unwrap();
    assert_eq!(ts.server.state().store.offline_depth(), 0);
}

/// Acks count after the user's in-memory state was dropped (window expired, no connection):
/// the stored messages replayed then are deleted by the ack, not replayed again.
#[tokio::test]
async fn acks_of_stored_messages_count_after_the_user_s_window_expired() {
    let ts = TestServer::start_with(|c| c.resume_window = Duration::from_millis(100)).await;
    let token = ts.token("alice");
    drop(Client::login(ts.addr, &token, "a1").await);
    let mut b1 = ts.client("bob", "b1").await;
    for i in 1..=2u32 {
        b1.send_expect(i, private("alice", &i.to_be_bytes()), 0)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    ts.server.state().hub.sweep(); // alice's expired window and state go
    let (mut a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert_eq!(contents(&replay), vec![1, 2]);
    a1.ack(replay[1].seq).await;
    a1.barrier(1).await;
    drop(a1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert!(replay.is_empty(), "replayed again: {:?}", contents(&replay));
    ts.server.state().store.flush().await.unwrap();
    assert_eq!(ts.server.state().store.offline_depth(), 0);
}

/// A message stored because the user had no live device, replayed to a device that left
/// without acking it, waits for that device's ack too.
/// A server with a short resume window, where alice's devices a1 and a2 have connected once
/// and bob sent alice message 1 while both were away. Returns alice's token.
async fn stored_while_alice_s_two_devices_were_away() -> (TestServer, String) {
    let ts = TestServer::start_with(|c| c.resume_window = Duration::from_millis(200)).await;
    let token = ts.token("alice");
    drop(Client::login(ts.addr, &token, "a1").await);
    drop(Client::login(ts.addr, &token, "a2").await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b1 = ts.client("bob", "b1").await;
    b1.send_expect(1, private("alice", &1u32.to_be_bytes()), 0)
        .await;
    (ts, token)
}

#[tokio::test]
async fn an_offline_message_replayed_to_a_departed_device_survives_another_device_s_ack() {
    let (ts, token) = stored_while_alice_s_two_devices_were_away().await;
    // a2 gets it (offline) and leaves without acking.
    let (mut a2, replay) = Client::login_resume(ts.addr, &token, "a2", 0).await;
    assert_eq!(contents(&replay), vec![1]);
    a2.barrier(1).await;
    drop(a2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert_eq!(contents(&replay), vec![1]);
    a1.ack(replay[0].seq).await;
    a1.barrier(2).await;
    drop(a1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_a2, replay) = Client::login_resume(ts.addr, &token, "a2", 0).await;
    assert_eq!(contents(&replay), vec![1]);
}

/// The same while the device that was replayed it is still connected: another device's ack
/// does not delete it under it.
#[tokio::test]
async fn an_offline_message_is_not_deleted_under_a_connected_device_that_has_not_acked_it() {
    let (ts, token) = stored_while_alice_s_two_devices_were_away().await;
    let (mut a2, replay) = Client::login_resume(ts.addr, &token, "a2", 0).await;
    assert_eq!(contents(&replay), vec![1]);
    let (mut a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert_eq!(contents(&replay), vec![1]);
    a1.ack(replay[0].seq).await;
    a1.barrier(1).await;
    // a2 goes without acking it (its connection dies), and stays away past the window.
    a2.barrier(1).await;
    drop(a2);
    drop(a1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ts.server.state().hub.sweep();
    let (_a2, replay) = Client::login_resume(ts.addr, &token, "a2", 0).await;
    assert_eq!(contents(&replay), vec![1]);
}

/// A message stored while every device of the user was away waits for each of them: the
/// first device to come back and ack it does not delete it before the other got it (found by
/// running the simulator's fault property test on this server's delivery core).
#[tokio::test]
async fn a_message_stored_while_all_devices_were_away_reaches_each_of_them() {
    let (ts, token) = stored_while_alice_s_two_devices_were_away().await;
    // a1 comes back, acks it and goes; then past the window a2 comes back.
    let (mut a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert_eq!(contents(&replay), vec![1]);
    a1.ack(replay[0].seq).await;
    a1.barrier(1).await;
    drop(a1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ts.server.state().hub.sweep();
    let (mut a2, replay) = Client::login_resume(ts.addr, &token, "a2", 0).await;
    assert_eq!(contents(&replay), vec![1], "a2 gets it too");
    // Once the last device acked it, it is gone.
    a2.ack(replay[0].seq).await;
    a2.barrier(1).await;
    drop(a2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_a1, replay) = Client::login_resume(ts.addr, &token, "a1", 0).await;
    assert!(replay.is_empty(), "{replay:?}");
    ts.server.state().store.flush().await.unwrap();
    assert_eq!(ts.server.state().store.offline_depth(), 0);
}
