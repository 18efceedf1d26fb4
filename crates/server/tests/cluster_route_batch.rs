//! Several messages per route script call (issue 15, session 15; docs/cluster.md, "Routing a
//! message"): a node puts the messages its connections queued while its previous call ran into
//! one `EVALSHA`. Each message keeps what it had alone: per-user order (batch order), a
//! failure of its own (a bad request, a command failing inside the script) fails it alone,
//! and a batch whose call failed is routed again without duplicates. Against a private Redis
//! (`Mailboxes::route_many`), and through two nodes (`Routing::route`).

mod common;

use std::time::Duration;

use common::redis_server::TestRedis;
use common::*;
use prost::Message as _;
use rcall_server::cluster::mailbox::{
    mailbox_key, user_channel, ConnRef, MailboxEntry, MailboxLimits, Mailboxes, Recipient,
    RouteRequest, Routed, Sender, UserEvent,
};
use rcall_server::cluster::{BusEvent, ClusterError};
use rtc_core::proto::{conversation_type, Delivered, SendMessage};

const APP: &str = "app1";

/// A private message from `from` (instance 7, connection 1) to `to`, tracked by `client_seq`.
fn message<'a>(
    m: &Mailboxes,
    from: &'a str,
    client_seq: u64,
    to: &str,
    text: &str,
) -> RouteRequest<'a> {
    RouteRequest {
        app: APP,
        from: Sender {
            user: from,
            device: "d",
            instance: 7,
            conn: ConnRef {
                node: m.bus().node_id().clone(),
                conn: 1,
            },
        },
        client_seq,
        request_id: Some(client_seq as u32),
        message: Delivered {
            conversation_type: conversation_type::PRIVATE,
            target_id: from.to_owned(),
            message_type: "RC:TxtMsg".into(),
            content: text.as_bytes().to_vec(),
            ..Default::default()
        },
        recipients: vec![Recipient {
            user: to.to_owned(),
            offline: false,
        }],
        own_copy: None,
        floor_us: 0,
        presence: false,
        rooms_event: None,
    }
}

fn accepted(r: &Result<Routed, ClusterError>) -> (i64, String, u64) {
    match r {
        Ok(Routed::Accepted {
            sent_time,
            message_uid,
            seqs,
            ..
        }) => (*sent_time, message_uid.clone(), seqs[0].1),
        other => panic!("expected Accepted, got {other:?}"),
    }
}

async fn all(m: &Mailboxes, user: &str) -> Vec<MailboxEntry> {
    m.read_above(APP, user, 0, 100_000).await.unwrap()
}

/// (content, uid) of each entry of `user`'s mailbox, in seq order.
async fn contents(m: &Mailboxes, user: &str) -> Vec<(String, String)> {
    all(m, user)
        .await
        .iter()
        .map(|e| {
            let d = Delivered::decode(e.delivered.as_ref()).unwrap();
            assert_eq!(d.seq, e.seq);
            (String::from_utf8(d.content).unwrap(), d.message_uid)
        })
        .collect()
}

/// The next publish on a subscribed channel: (channel, events).
async fn next(rx: &mut tokio::sync::mpsc::Receiver<BusEvent>) -> (String, Vec<UserEvent>) {
    match tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .unwrap()
    {
        BusEvent::Message { channel, payload } => (
            channel,
            UserEvent::decode_all(&payload).expect("well-formed"),
        ),
        BusEvent::Resync => panic!("unexpected resync"),
    }
}

/// A batch's messages to one user, from several senders, reach it in batch order: seqs
/// increase along the batch, the mailbox and the user's channel hold them in that order, and
/// each is numbered as if routed alone (its own uid, the batch's sent_time).
#[tokio::test]
async fn a_batch_to_one_user_keeps_batch_order_in_seqs_mailbox_and_channel() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    let (sub, mut rx) = a.bus().subscriber(64).await.unwrap();
    sub.subscribe(&[&user_channel(APP, "bob")]).await.unwrap();
    let senders = ["alice", "carol", "dave", "erin", "frank"];
    let batch: Vec<RouteRequest> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| message(&a, s, 1, "bob", &format!("m{i}")))
        .collect();
    let results = a.route_many(&batch).await;
    assert_eq!(results.len(), senders.len());
    let routed: Vec<(i64, String, u64)> = results.iter().map(accepted).collect();
    assert!(
        routed.windows(2).all(|w| w[0].2 < w[1].2),
        "seqs increase along the batch: {routed:?}"
    );
    assert!(routed.windows(2).all(|w| w[0].0 == w[1].0), "one sent_time");
    let expected: Vec<(String, String)> = routed
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("m{i}"), r.1.clone()))
        .collect();
    assert_eq!(contents(&a, "bob").await, expected);
    for (i, r) in routed.iter().enumerate() {
        let (channel, events) = next(&mut rx).await;
        assert_eq!(channel, user_channel(APP, "bob"));
        match &events[0] {
            UserEvent::Deliver { seq, delivered, .. } => {
                let d = Delivered::decode(delivered.as_ref()).unwrap();
                assert_eq!((*seq, d.content), (r.2, format!("m{i}").into_bytes()));
            }
            other => panic!("expected a copy, got {other:?}"),
        }
    }
    // The next batch continues above it.
    let later = a
        .route_many(&[message(&a, "alice", 2, "bob", "later")])
        .await;
    assert!(accepted(&later[0]).2 > routed[4].2);
}

/// One message of a batch failing — refused before the script (a bad request), or failing
/// inside it (its recipient's mailbox key holds a string: `WRONGTYPE`) — fails alone: the
/// messages before and after it are routed and answered, and a duplicate in the batch is
/// answered as a duplicate.
#[tokio::test]
async fn one_failing_message_in_a_batch_does_not_fail_the_others() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    let _: () = redis::cmd("SET")
        .arg(mailbox_key(APP, "carol"))
        .arg("not a stream")
        .query_async(&mut a.bus().connection())
        .await
        .unwrap();
    let first = a
        .route_many(&[message(&a, "alice", 1, "bob", "before")])
        .await;
    let uid1 = accepted(&first[0]).1;
    let mut bad = message(&a, "gina", 1, "bob", "bad");
    bad.recipients.push(bad.recipients[0].clone()); // listed twice
    let batch = [
        message(&a, "alice", 2, "bob", "m1"),
        message(&a, "dave", 1, "carol", "to a broken mailbox"),
        bad,
        message(&a, "alice", 1, "bob", "resend"), // client_seq 1 again: a duplicate
        message(&a, "erin", 1, "bob", "m2"),
    ];
    let results = a.route_many(&batch).await;
    let m1 = accepted(&results[0]);
    match &results[1] {
        Err(ClusterError::Script(e)) => assert!(e.contains("WRONGTYPE"), "{e}"),
        other => panic!("expected the script's error, got {other:?}"),
    }
    assert!(
        matches!(&results[2], Err(ClusterError::OutOfRange(_))),
        "{:?}",
        results[2]
    );
    match &results[3] {
        Ok(Routed::Duplicate { upto, .. }) => assert_eq!(*upto, 2),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let m2 = accepted(&results[4]);
    assert!(m1.2 < m2.2);
    assert_eq!(
        contents(&a, "bob").await,
        vec![
            ("before".to_owned(), uid1),
            ("m1".to_owned(), m1.1),
            ("m2".to_owned(), m2.1)
        ]
    );
    // The failed message was not recorded: once its recipient's mailbox is usable, its resend
    // is routed (not a duplicate).
    let _: () = redis::cmd("DEL")
        .arg(mailbox_key(APP, "carol"))
        .query_async(&mut a.bus().connection())
        .await
        .unwrap();
    let again = a
        .route_many(&[message(&a, "dave", 1, "carol", "to a broken mailbox")])
        .await;
    accepted(&again[0]);
    assert_eq!(all(&a, "carol").await.len(), 1);
}

/// A batch whose call failed (the node does not know whether the script ran: a timeout, a lost
/// connection) is routed again, its messages regrouped in other batches with new ones: what
/// ran comes back as duplicates with the uids of their first run, only what did not is routed,
/// and every mailbox holds each message once.
#[tokio::test]
async fn a_batch_routed_again_after_a_failed_call_routes_each_message_once() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    let senders = ["alice", "carol", "dave"];
    let batch: Vec<RouteRequest> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| message(&a, s, 1, if i == 1 { "erin" } else { "bob" }, s))
        .collect();
    // The first run's reply is lost to the caller...
    let first: Vec<(i64, String, u64)> = a.route_many(&batch).await.iter().map(accepted).collect();
    // ... which routes the three again, regrouped, beside new messages.
    let again = a
        .route_many(&[
            message(&a, "dave", 1, "bob", "dave"),
            message(&a, "gina", 1, "bob", "new"),
            message(&a, "alice", 1, "bob", "alice"),
        ])
        .await;
    let again2 = a
        .route_many(&[message(&a, "carol", 1, "erin", "carol")])
        .await;
    for (r, original) in [
        (&again[0], &first[2]),
        (&again[2], &first[0]),
        (&again2[0], &first[1]),
    ] {
        match r {
            Ok(Routed::Duplicate {
                upto, message_uid, ..
            }) => assert_eq!((*upto, message_uid), (1, &original.1)),
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }
    let new = accepted(&again[1]);
    assert_eq!(
        contents(&a, "bob").await,
        vec![
            ("alice".to_owned(), first[0].1.clone()),
            ("dave".to_owned(), first[2].1.clone()),
            ("new".to_owned(), new.1),
        ]
    );
    assert_eq!(
        contents(&a, "erin").await,
        vec![("carol".to_owned(), first[1].1.clone())]
    );
}

/// Through the server: node A's main Redis connection stalls (a blocked command ahead of it)
/// while three of its clients send. The first message's call waits behind the stall; the two
/// sent meanwhile queue and go together in the next call (one batch); both calls time out, and
/// each message is retried (a duplicate once the stalled scripts ran). The recipient on node B
/// gets each message once, and each sender one `SendResult` (a retried route's two markers,
/// its first run's and its resend's, answered it twice when the resend's result came first).
#[tokio::test]
async fn messages_queued_behind_a_stalled_call_share_a_batch_and_are_delivered_once() {
    let redis = TestRedis::start();
    let a = redis.node_with(short_redis_timings).await;
    let b = cluster_node(&redis).await;
    let routing = a.server.state().routing.clone().expect("cluster mode");
    let mut bob = b.client("bob", "b1").await;
    let mut senders = Vec::new();
    for (i, user) in ["alice", "carol", "dave"].iter().enumerate() {
        let (c, _, _) = Client::login_instance(a.addr, &a.token(user), "d", 0, 10 + i as u64).await;
        senders.push(c);
    }
    // (The route script loaded and the senders' presence written: a warm-up each.)
    for (i, c) in senders.iter_mut().enumerate() {
        let m = SendMessage {
            client_seq: 1,
            ..private("bob", format!("warm-up {i}").as_bytes())
        };
        send_code(c, 1, m, 0).await;
        bob.recv_delivered().await;
    }
    let commands = redis.monitor();

    let blocked = block_main_lane(&redis, &a, "test:block:batch", 40).await;
    senders[0]
        .send_message(
            2,
            SendMessage {
                client_seq: 2,
                ..private("bob", b"first")
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, c) in senders.iter_mut().enumerate().skip(1) {
        let m = SendMessage {
            client_seq: 2,
            ..private("bob", format!("queued {i}").as_bytes())
        };
        c.send_message(2, m).await;
    }
    // Past two response timeouts: every call sent so far timed out at least once.
    tokio::time::sleep(SHORT_RESPONSE_TIMEOUT * 2 + Duration::from_millis(500)).await;
    unblock(&redis, "test:block:batch").await;
    blocked.await.unwrap();
    for c in senders.iter_mut() {
        let r = c.recv_send_result().await;
        assert_eq!((r.request_id, r.code), (2, 0));
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(String::from_utf8(bob.recv_delivered().await.content).unwrap());
    }
    got.sort();
    assert_eq!(got, ["first", "queued 1", "queued 2"]);
    // Nothing more for bob (a second copy would come before the Pong), nor for the senders.
    bob.barrier(9).await;
    for c in senders.iter_mut() {
        c.barrier(9).await;
    }
    // The two messages queued behind the stalled call went to Redis in one call (their bodies
    // are arguments of one `EVALSHA`).
    let shared = commands
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"EVALSHA\"") && l.contains("queued 1") && l.contains("queued 2"))
        .count();
    assert!(shared >= 1, "no route call carried both queued messages");
    assert!(routing.route_calls() > 0);
}
