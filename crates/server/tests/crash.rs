//! SIGKILL restarts of the real binary: what was confirmed survives, seqs keep increasing.

mod common;

use common::*;
use rtc_core::proto::SendMessage;

/// A short lost-connection grace (the default is 5 s): the members that come back reconnect
/// within it at once, the one that does not is hung up for sooner.
const GRACE: &[&str] = &["--lost-grace-ms", "2000"];

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

/// A single node SIGKILLed under **mesh** calls (no SFU) keeps them: its rooms are saved as
/// they change, not only at a graceful shutdown. After the restart the reconnected members are
/// still in their call (`getJoinedUserInfo`), a stranger is still kept out (`NOT_IN_CALL`), the
/// call goes on and a hangup ends it; a member that does not come back is hung up for (7)
/// after the lost grace. Before, the crash forgot the calls: nobody was in a call, and a
/// stranger's message for it was accepted (the call learned anew, with the stranger in it).
#[tokio::test]
async fn mesh_calls_survive_a_sigkill_and_who_does_not_return_is_hung_up_for() {
    use common::calls::{accept, hangup, invite, private_call};
    use rtc_core::proto::call_content::Body as CallBody;
    use rtc_core::proto::{error_code, object_name, MediaSignal};
    let media = |to: &str| {
        CallBody::Media(MediaSignal {
            to_user_id: to.into(),
            ..Default::default()
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rcall.db");
    let server = ChildServer::start(&db, GRACE).await;
    let login = |user: &'static str, device: &'static str| {
        let (addr, token) = (server.addr, server.token(user));
        async move { Client::login(addr, &token, device).await }
    };
    // alice calls bob; carol calls dave.
    let (mut a, mut b) = (login("alice", "a1").await, login("bob", "b1").await);
    let (mut c, mut d) = (login("carol", "c1").await, login("dave", "d1").await);
    send_ok(
        &mut a,
        1,
        private_call("a1", "bob", "call-1", invite(&["bob"])),
    )
    .await;
    send_ok(&mut b, 1, private_call("b1", "alice", "call-1", accept())).await;
    send_ok(
        &mut c,
        1,
        private_call("c1", "dave", "call-2", invite(&["dave"])),
    )
    .await;
    send_ok(&mut d, 1, private_call("d1", "carol", "call-2", accept())).await;
    eventually("both calls saved", || async {
        saved_rooms(&db)
            .is_some_and(|s| s.calls.len() == 2 && s.calls.iter().all(|c| c.members.len() == 2))
    })
    .await;
    server.kill9();
    drop((a, b, c, d));

    let server = ChildServer::start(&db, GRACE).await;
    let (mut a, _) = Client::login_resume(server.addr, &server.token("alice"), "a1", 0).await;
    let (mut b, _) = Client::login_resume(server.addr, &server.token("bob"), "b1", 0).await;
    let (mut c, _) = Client::login_resume(server.addr, &server.token("carol"), "c1", 0).await;
    // The members are in their call again.
    let info = joined_user_info(&mut a, 2, "bob").await;
    let calls: Vec<_> = info
        .devices
        .iter()
        .map(|j| (&*j.device_id, &*j.call_id))
        .collect();
    assert_eq!(calls, [("b1", "call-1")], "bob's call restored");
    // A stranger is still kept out of it.
    let mut m = Client::login(server.addr, &server.token("mallory"), "m1").await;
    send_code(
        &mut m,
        1,
        private_call("m1", "alice", "call-1", accept()),
        error_code::NOT_IN_CALL,
    )
    .await;
    // The call goes on: bob's media reach alice; alice hangs up and it is over for both.
    send_ok(
        &mut b,
        2,
        private_call("b1", "alice", "call-1", media("alice")),
    )
    .await;
    let (got, _) = a.recv_call(object_name::MEDIA).await;
    assert_eq!(got.sender_device_id, "b1");
    send_ok(&mut a, 3, private_call("a1", "bob", "call-1", hangup())).await;
    assert!(joined_user_info(&mut b, 3, "bob").await.devices.is_empty());
    // dave never comes back: carol gets his hangup (7) once the lost grace from the start ran
    // out.
    let (got, content) = c.recv_call(object_name::HANGUP).await;
    assert_eq!(
        (
            &*got.sender_user_id,
            &*got.sender_device_id,
            &*content.call_id
        ),
        ("dave", "d1", "call-2")
    );
    assert!(
        matches!(&content.body, Some(CallBody::Hangup(h)) if h.reason == 7),
        "{content:?}"
    );
    assert!(joined_user_info(&mut c, 2, "carol")
        .await
        .devices
        .is_empty());
}

/// A call that ended just before a `kill -9` stays ended: the hangup that ends it is confirmed
/// only once it is logged (replayed over the saved rooms at the restart), not at the next
/// periodic save, up to `ROOMS_SAVE_INTERVAL` later. Before, the restart restored the call and
/// its members, back online, were listed in a call that was over (`getJoinedUserInfo`) until
/// they joined another.
#[tokio::test]
async fn a_call_ended_just_before_a_sigkill_is_not_restored() {
    use common::calls::{accept, hangup, invite, private_call};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rcall.db");
    let server = ChildServer::start(&db, &[]).await;
    let mut a = Client::login(server.addr, &server.token("alice"), "a1").await;
    let mut b = Client::login(server.addr, &server.token("bob"), "b1").await;
    send_ok(
        &mut a,
        1,
        private_call("a1", "bob", "call-1", invite(&["bob"])),
    )
    .await;
    send_ok(&mut b, 1, private_call("b1", "alice", "call-1", accept())).await;
    // The call is saved (as the periodic save does): what the crash must not bring back.
    eventually("the call saved", || async {
        saved_rooms(&db).is_some_and(|s| s.calls.len() == 1 && s.calls[0].members.len() == 2)
    })
    .await;
    // alice hangs up; once confirmed, the server dies at once.
    send_ok(&mut a, 2, private_call("a1", "bob", "call-1", hangup())).await;
    server.kill9();
    drop((a, b));

    let server = ChildServer::start(&db, &[]).await;
    let (mut a, _) = Client::login_resume(server.addr, &server.token("alice"), "a1", 0).await;
    let (mut b, _) = Client::login_resume(server.addr, &server.token("bob"), "b1", 0).await;
    assert!(joined_user_info(&mut a, 3, "alice")
        .await
        .devices
        .is_empty());
    assert!(joined_user_info(&mut b, 2, "bob").await.devices.is_empty());
    assert!(joined_user_info(&mut a, 4, "bob").await.devices.is_empty());
}
