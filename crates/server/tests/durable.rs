//! Acknowledged means durable: a confirmation covering a store write waits for its commit; one
//! covering none does not wait for the database at all.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;

#[tokio::test]
async fn a_confirmation_waits_for_the_commit_and_the_fast_path_does_not() {
    let ts = TestServer::start().await;
    let (mut a1, _, _) = Client::login_instance(ts.addr, &ts.token("alice"), "a1", 0, 5).await;
    let mut x1 = ts.client("xavier", "x1").await;
    let mut c1 = ts.client("carol", "c1").await;
    // Stall the database thread until released.
    let (release, stalled) = std::sync::mpsc::channel::<()>();
    ts.server.state().store.submit("stall", move |_| {
        let _ = stalled.recv_timeout(Duration::from_secs(10));
        Ok(())
    });
    // Bob is offline: the message is stored, so its SendResult waits for the commit…
    let msg = rtc_core::proto::SendMessage {
        client_seq: 1,
        ..private("bob", b"held")
    };
    a1.send_message(1, msg).await;
    // …while a message that stores nothing is confirmed at once.
    x1.send_expect(1, private("carol", b"fast"), 0).await;
    assert_eq!(c1.recv_delivered().await.content, b"fast");
    let early = tokio::time::timeout(Duration::from_millis(300), a1.ws.next()).await;
    assert!(early.is_err(), "confirmed before the commit: {early:?}");
    release.send(()).unwrap();
    let r = a1.recv_send_result().await;
    assert_eq!((r.request_id, r.code), (1, 0));
    assert_eq!(a1.ping_accepted_upto(1).await, 1);
}
