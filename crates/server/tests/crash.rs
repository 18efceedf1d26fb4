//! SIGKILL restarts of the real binary: what was confirmed survives, seqs keep increasing.

mod common;

use common::*;
use rtc_core::proto::SendMessage;

fn n(content: &[u8]) -> u32 {
    u32::from_be_bytes(content.try_into().expect("4-byte content"))
}

/// A confirmed message is durable: 200 receipted messages to an offline user, all confirmed,
/// then `kill -9`; after the restart every one is replayed exactly once, and the sender's
/// instance learns all 200 were accepted (so it resends none).
#[tokio::test]
async fn confirmed_offline_messages_survive_a_sigkill() {
    const N: u32 = 200;
    const INSTANCE: u64 = 0xA11CE;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rcall.db");
    let server = ChildServer::start(&db, &[]).await;
    let (mut a1, auth, _) =
        Client::login_instance(server.addr, &server.token("alice"), "a1", 0, INSTANCE).await;
    assert_eq!(auth.accepted_upto, 0);
    for i in 0..N {
        let msg = SendMessage {
            client_seq: u64::from(i) + 1,
            ..private("bob", &i.to_be_bytes())
        };
        a1.send_message(i, msg).await;
    }
    for i in 0..N {
        let r = a1.recv_send_result().await;
        assert_eq!((r.request_id, r.code), (i, 0));
    }
    server.kill9();

    let server = ChildServer::start(&db, &[]).await;
    let (_a1, auth, _) =
        Client::login_instance(server.addr, &server.token("alice"), "a1", 0, INSTANCE).await;
    assert_eq!(
        auth.accepted_upto,
        u64::from(N),
        "every confirmed message is known"
    );
    let (_b1, replay) = Client::login_resume(server.addr, &server.token("bob"), "b1", 0).await;
    let got: Vec<u32> = replay.iter().map(|d| n(&d.content)).collect();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "all replayed, in order, none twice"
    );
    for (i, d) in replay.iter().enumerate() {
        assert_eq!((d.sender_instance, d.client_seq), (INSTANCE, i as u64 + 1));
    }
}

/// Seqs a restarted server hands out are above every seq it issued before a `kill -9`.
#[tokio::test]
async fn seqs_keep_increasing_across_a_sigkill_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rcall.db");
    let server = ChildServer::start(&db, &[]).await;
    let mut a1 = Client::login(server.addr, &server.token("alice"), "a1").await;
    let mut b1 = Client::login(server.addr, &server.token("bob"), "b1").await;
    // A burst (seqs may run ahead of the µs clock), live and stored ones.
    for i in 0..50u32 {
        a1.send_message(i, private("bob", &i.to_be_bytes())).await;
    }
    for i in 0..50u32 {
        assert_eq!(a1.recv_send_result().await.request_id, i);
    }
    let mut before = 0;
    for _ in 0..50 {
        let d = b1.recv_delivered().await;
        assert!(d.seq > before);
        before = d.seq;
    }
    b1.ack(before).await;
    b1.barrier(1).await;
    drop(b1);
    a1.send_expect(50, private("carol", &50u32.to_be_bytes()), 0)
        .await;
    server.kill9();

    let server = ChildServer::start(&db, &[]).await;
    let (_c1, stored) = Client::login_resume(server.addr, &server.token("carol"), "c1", 0).await;
    assert_eq!(stored.len(), 1);
    let mut a1 = Client::login(server.addr, &server.token("alice"), "a1").await;
    let (mut b1, _) = Client::login_resume(server.addr, &server.token("bob"), "b1", before).await;
    a1.send_expect(51, private("bob", &51u32.to_be_bytes()), 0)
        .await;
    let after = b1.recv_delivered().await;
    assert_eq!(n(&after.content), 51);
    assert!(
        after.seq > before && after.seq > stored[0].seq,
        "seq {} after the restart, {before} before",
        after.seq
    );
}
