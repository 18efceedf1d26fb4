//! Cluster mode's per-user mailboxes and the `route` script (issue 15, docs/cluster.md step 1,
//! Redis half), against a private Redis with two "nodes" (two `Bus`es): seqs, stored and
//! published copies, the same relative order for every recipient under concurrency, exactly
//! once, acks and trimming.
//!
//! Out of scope here: a Redis restart without persistence (the mailboxes, cursors and
//! `client_seq` records are then gone; recovering from it is step 2 of docs/cluster.md).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis_server::TestRedis;
use prost::Message as _;
use rcall_server::cluster::mailbox::{
    mailbox_key, user_channel, ConnRef, MailboxEntry, MailboxLimits, Mailboxes, OwnCopy, Recipient,
    RouteRequest, Routed, Sender, UserEvent,
};
use rcall_server::cluster::{BusEvent, ClusterError, Subscriber, MAX_SEQ};
use rtc_core::proto::{conversation_type, Delivered};
use tokio::sync::mpsc::Receiver;

const APP: &str = "app1";
/// How long a test waits for an event that must come.
const WAIT: Duration = Duration::from_secs(10);

/// Two nodes' mailboxes (default limits) on a Redis of their own (returned first: it must
/// outlive them).
async fn two_mailboxes() -> (TestRedis, Mailboxes, Mailboxes) {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    let b = redis.mailboxes(MailboxLimits::default()).await;
    (redis, a, b)
}

fn conn(m: &Mailboxes, id: u64) -> ConnRef {
    ConnRef {
        node: m.bus().node_id().clone(),
        conn: id,
    }
}

fn sender<'a>(m: &Mailboxes, user: &'a str, device: &'a str, instance: u64) -> Sender<'a> {
    Sender {
        user,
        device,
        instance,
        conn: conn(m, 1),
    }
}

/// A PRIVATE message (one recipient) or a GROUP one (`group` = its id), with the sender's own
/// copy when `own`.
fn message<'a>(
    from: Sender<'a>,
    client_seq: u64,
    to: &[&str],
    group: Option<&str>,
    own: bool,
    text: &str,
) -> RouteRequest<'a> {
    let (conversation_type, seen_target, own_target) = match group {
        None => (
            conversation_type::PRIVATE,
            from.user.to_owned(),
            to[0].to_owned(),
        ),
        Some(g) => (conversation_type::GROUP, g.to_owned(), g.to_owned()),
    };
    RouteRequest {
        app: APP,
        from,
        client_seq,
        request_id: Some(client_seq as u32),
        message: Delivered {
            conversation_type,
            target_id: seen_target,
            channel_id: "ch".into(),
            message_type: "RC:TxtMsg".into(),
            content: text.as_bytes().to_vec(),
            ..Default::default()
        },
        recipients: to
            .iter()
            .map(|u| Recipient {
                user: u.to_string(),
                offline: false,
            })
            .collect(),
        own_copy: own.then_some(OwnCopy {
            target_id: own_target,
            offline: true,
            all_devices: false,
        }),
        floor_us: 0,
        presence: false,
        rooms_event: None,
    }
}

/// A PRIVATE [`message`] to `to`.
fn private_msg<'a>(
    from: Sender<'a>,
    client_seq: u64,
    to: &str,
    own: bool,
    text: &str,
) -> RouteRequest<'a> {
    message(from, client_seq, &[to], None, own, text)
}

fn accepted(r: Routed) -> (i64, String, Vec<(String, u64)>, Option<u64>) {
    match r {
        Routed::Accepted {
            sent_time,
            message_uid,
            seqs,
            own_seq,
            ..
        } => (sent_time, message_uid, seqs, own_seq),
        other => panic!("expected Accepted, got {other:?}"),
    }
}

async fn all(m: &Mailboxes, user: &str) -> Vec<MailboxEntry> {
    m.read_above(APP, user, 0, 100_000).await.unwrap()
}

fn decode(e: &MailboxEntry) -> Delivered {
    let d = Delivered::decode(e.delivered.as_ref()).expect("a Delivered");
    assert_eq!(d.seq, e.seq, "the entry id is the message's seq");
    // The script's bytes are exactly prost's (fields in tag order, defaults omitted).
    assert_eq!(
        d.encode_to_vec(),
        e.delivered.as_ref(),
        "canonical encoding"
    );
    d
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A subscriber's events one at a time: the sender's own copy carries its reply marker (two
/// events in one publish), the second is returned by the next call.
struct Events {
    rx: Receiver<BusEvent>,
    second: Option<(String, UserEvent)>,
}

impl Events {
    fn new(rx: Receiver<BusEvent>) -> Self {
        Events { rx, second: None }
    }
}

/// Whether `user`'s mailbox stream exists in Redis (an emptied one is deleted, not kept).
async fn mailbox_exists(m: &Mailboxes, user: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(mailbox_key(APP, user))
        .query_async(&mut m.bus().connection())
        .await
        .unwrap();
    n != 0
}

/// `m`'s node listening to the channels of `users` (a subscriber buffering `capacity`
/// events): the subscriber (to keep) and its events.
async fn listen(m: &Mailboxes, capacity: usize, users: &[&str]) -> (Subscriber, Events) {
    let (sub, rx) = m.bus().subscriber(capacity).await.unwrap();
    let channels: Vec<String> = users.iter().map(|u| user_channel(APP, u)).collect();
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    sub.subscribe(&channels).await.unwrap();
    (sub, Events::new(rx))
}

async fn next_event(rx: &mut Events) -> (String, UserEvent) {
    if let Some(ev) = rx.second.take() {
        return ev;
    }
    match tokio::time::timeout(WAIT, rx.rx.recv())
        .await
        .expect("an event in time")
        .expect("subscriber running")
    {
        BusEvent::Message { channel, payload } => {
            let (ev, second) = UserEvent::decode_pair(&payload).expect("a well-formed user event");
            rx.second = second.map(|e| (channel.clone(), e));
            (channel, ev)
        }
        BusEvent::Resync => panic!("unexpected resync"),
    }
}

#[tokio::test]
async fn seqs_increase_per_user_and_the_mailbox_holds_each_delivered_in_seq_order() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    // Alice has another device: her own copies are kept for it.
    a.register_device(APP, "alice", "laptop", 0).await.unwrap();
    let t0 = now_us();
    let mut bob_seqs = Vec::new();
    let mut own_seqs = Vec::new();
    let mut sent = Vec::new();
    for i in 1..=50u64 {
        let req = message(
            sender(&a, "alice", "phone", 9),
            i,
            &["bob"],
            None,
            true,
            &format!("m{i}"),
        );
        let (sent_time, uid, seqs, own) = accepted(a.route(&req).await.unwrap());
        assert_eq!(seqs.len(), 1);
        assert_eq!(seqs[0].0, "bob");
        bob_seqs.push(seqs[0].1);
        own_seqs.push(own.expect("own copy routed"));
        sent.push((sent_time, uid));
    }
    for v in [&bob_seqs, &own_seqs] {
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "seqs strictly increase: {v:?}"
        );
        assert!(v[0] >= t0, "a seq is at least Redis's clock (µs)");
    }
    assert!(
        sent.windows(2).all(|w| w[0].0 <= w[1].0),
        "sent_time never goes backwards"
    );
    assert_eq!(
        sent.iter().map(|s| &s.1).collect::<HashSet<_>>().len(),
        50,
        "uids differ"
    );

    let bob = all(&a, "bob").await;
    assert_eq!(bob.iter().map(|e| e.seq).collect::<Vec<_>>(), bob_seqs);
    for (i, e) in bob.iter().enumerate() {
        let d = decode(e);
        assert_eq!(e.exclude_device, None);
        assert_eq!((d.sent_time, &d.message_uid), (sent[i].0, &sent[i].1));
        assert_eq!(d.content, format!("m{}", i + 1).into_bytes());
        assert_eq!(
            (
                d.sender_user_id.as_str(),
                d.sender_device_id.as_str(),
                d.target_id.as_str()
            ),
            ("alice", "phone", "alice"),
            "a PRIVATE recipient sees the sender as the target"
        );
        assert_eq!(
            (d.sender_instance, d.client_seq, d.offline),
            (9, i as u64 + 1, false)
        );
        assert_eq!(
            (d.conversation_type, d.channel_id.as_str()),
            (conversation_type::PRIVATE, "ch")
        );
    }
    // The sender's own copy: the original target, never replayed to the sending device.
    let own = all(&a, "alice").await;
    assert_eq!(own.iter().map(|e| e.seq).collect::<Vec<_>>(), own_seqs);
    let d = decode(&own[0]);
    assert_eq!((d.target_id.as_str(), d.offline), ("bob", true));
    assert_eq!(own[0].exclude_device.as_deref(), Some("phone"));

    // Paging from a cursor.
    let page = a.read_above(APP, "bob", bob_seqs[9], 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        bob_seqs[10..15]
    );
    assert!(a
        .read_above(APP, "bob", bob_seqs[49], 5)
        .await
        .unwrap()
        .is_empty());
    assert!(a.read_above(APP, "nobody", 0, 5).await.unwrap().is_empty());

    // The mailbox expires when idle for the max age.
    let pttl: i64 = redis::cmd("PTTL")
        .arg(mailbox_key(APP, "bob"))
        .query_async(&mut a.bus().connection())
        .await
        .unwrap();
    let max = MailboxLimits::default().max_age.as_millis() as i64;
    assert!(pttl > 0 && pttl <= max, "pttl {pttl}");

    // A floor ahead of the clock is honoured; Redis forgetting the script costs one reload.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut a.bus().connection())
        .await
        .unwrap();
    let floor = now_us() + 3_600_000_000;
    let mut req = private_msg(sender(&a, "alice", "phone", 9), 51, "bob", false, "x");
    req.floor_us = floor;
    let (_, _, seqs, own) = accepted(a.route(&req).await.unwrap());
    assert_eq!((seqs[0].1, own), (floor, None));
    let req = private_msg(sender(&a, "alice", "phone", 9), 52, "bob", false, "y");
    assert_eq!(accepted(a.route(&req).await.unwrap()).2[0].1, floor + 1);
}

#[tokio::test]
async fn subscribers_get_each_copy_in_seq_order_and_the_reply_after_the_senders_copy() {
    let (_redis, a, b) = two_mailboxes().await;
    // Bob's node and Alice's node listen to their users' channels.
    let (_bob_sub, mut bob_rx) = listen(&b, 256, &["bob"]).await;
    let (_alice_sub, mut alice_rx) = listen(&a, 256, &["alice"]).await;

    let mut routed = Vec::new();
    for i in 1..=20u64 {
        let req = private_msg(sender(&a, "alice", "phone", 3), i, "bob", true, "hi");
        routed.push(accepted(a.route(&req).await.unwrap()));
    }
    let stored = all(&b, "bob").await;
    for (i, (sent_time, uid, seqs, own)) in routed.iter().enumerate() {
        let (ch, ev) = next_event(&mut bob_rx).await;
        assert_eq!(ch, user_channel(APP, "bob"));
        assert_eq!(
            ev,
            UserEvent::Deliver {
                seq: seqs[0].1,
                skip: None,
                delivered: stored[i].delivered.clone()
            },
            "published in seq order, the same bytes as stored"
        );
        // On the sender's channel: its own copy (skipping the sending connection), then the
        // reply for that connection — nothing of the message can overtake the reply's place.
        let (_, ev) = next_event(&mut alice_rx).await;
        let UserEvent::Deliver { seq, skip, .. } = ev else {
            panic!("own copy first: {ev:?}")
        };
        assert_eq!((Some(seq), skip), (*own, Some(conn(&a, 1))));
        // One publish carries both (the reply marker folded into the own copy's header).
        assert!(
            alice_rx.second.is_some(),
            "the reply rides on the own copy's publish"
        );
        let (_, ev) = next_event(&mut alice_rx).await;
        assert_eq!(
            ev,
            UserEvent::Reply {
                conn: conn(&a, 1),
                request_id: i as u32 + 1,
                sent_time: *sent_time,
                message_uid: uid.clone()
            }
        );
    }
    // No reply asked (no_receipt) and no own copy: nothing on the sender's channel.
    let mut req = private_msg(sender(&a, "alice", "phone", 3), 21, "bob", false, "quiet");
    req.request_id = None;
    let (_, _, seqs, _) = accepted(a.route(&req).await.unwrap());
    let mut req = private_msg(sender(&a, "alice", "phone", 3), 22, "bob", false, "loud");
    req.request_id = Some(99);
    accepted(a.route(&req).await.unwrap());
    assert!(
        matches!(next_event(&mut bob_rx).await.1, UserEvent::Deliver { seq, .. } if seq == seqs[0].1)
    );
    let (_, ev) = next_event(&mut alice_rx).await;
    assert!(
        matches!(ev, UserEvent::Reply { request_id: 99, .. }),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_routing_at_once_give_every_recipient_the_same_order() {
    let (_redis, a, b) = two_mailboxes().await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let members = ["m1", "m2"];
    let (_s1, mut rx1) = listen(&a, 2048, &["m1"]).await;
    let (_s2, mut rx2) = listen(&b, 2048, &["m2"]).await;

    // Each node's sender sends 200 group messages one after another, and then 200 more all
    // in flight at once, while the other node does the same.
    let run = |m: std::sync::Arc<Mailboxes>, user: &'static str| {
        tokio::spawn(async move {
            let mut uids = Vec::new();
            for i in 1..=200u64 {
                let req = message(sender(&m, user, "d", 1), i, &members, Some("g"), true, user);
                uids.push(accepted(m.route(&req).await.unwrap()).1);
            }
            // In flight at once, their order on the wire is not their client_seq order: untracked
            // (a node sends one connection's messages in order, one at a time).
            let reqs: Vec<_> = (201..=400u64)
                .map(|_| message(sender(&m, user, "d", 1), 0, &members, Some("g"), true, user))
                .collect();
            let burst = futures::future::try_join_all(reqs.iter().map(|r| m.route(r)))
                .await
                .unwrap();
            uids.extend(burst.into_iter().map(|r| accepted(r).1));
            uids
        })
    };
    let (ha, hb) = (run(a.clone(), "x"), run(b.clone(), "y"));
    let (ua, ub) = (ha.await.unwrap(), hb.await.unwrap());

    let order = |entries: Vec<MailboxEntry>| -> Vec<String> {
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
        entries.iter().map(|e| decode(e).message_uid).collect()
    };
    let (o1, o2) = (order(all(&a, "m1").await), order(all(&b, "m2").await));
    assert_eq!(o1.len(), 800, "every message in m1's mailbox");
    assert_eq!(
        o1, o2,
        "both recipients hold the messages in the same relative order"
    );
    let expected: HashSet<&String> = ua.iter().chain(&ub).collect();
    assert_eq!(o1.iter().collect::<HashSet<_>>(), expected);
    // Each sender's messages keep their sending order, interleaved with the other's.
    for uids in [&ua[..200], &ub[..200]] {
        let pos: Vec<usize> = uids
            .iter()
            .map(|u| o1.iter().position(|x| x == u).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
    }
    // Live delivery on both nodes: the same order as stored.
    for (rx, stored) in [(&mut rx1, &o1), (&mut rx2, &o2)] {
        let mut seen = Vec::new();
        while seen.len() < 800 {
            let UserEvent::Deliver { delivered, .. } = next_event(rx).await.1 else {
                panic!("only deliveries on a recipient's channel")
            };
            seen.push(Delivered::decode(delivered.as_ref()).unwrap().message_uid);
        }
        assert_eq!(&seen, stored);
    }
}

#[tokio::test]
async fn a_resend_of_an_accepted_client_seq_is_a_duplicate_and_routes_nothing() {
    let (_redis, a, b) = two_mailboxes().await;
    let (_sub, mut rx) = listen(&b, 64, &["bob", "alice"]).await;

    let req = private_msg(sender(&a, "alice", "phone", 5), 1, "bob", false, "once");
    let (_, uid, seqs, _) = accepted(a.route(&req).await.unwrap());
    assert!(
        matches!(next_event(&mut rx).await.1, UserEvent::Deliver { seq, .. } if seq == seqs[0].1)
    );
    assert!(
        matches!(next_event(&mut rx).await.1, UserEvent::Reply { ref message_uid, .. } if *message_uid == uid)
    );

    // The same (instance, client_seq) again, here and through the other node, and an older
    // one: duplicates, confirmed with an empty uid, nothing added or delivered.
    let t0 = now_us() as i64 / 1000;
    let again = private_msg(sender(&b, "alice", "phone", 5), 1, "bob", true, "once");
    for (m, r) in [(&a, &req), (&b, &again)] {
        match m.route(r).await.unwrap() {
            Routed::Duplicate {
                sent_time,
                upto,
                message_uid,
                offline,
            } => {
                assert_eq!(upto, 1);
                assert!(sent_time >= t0 - 1000, "the clock now");
                // The resend of the last accepted message: what it was routed with.
                assert_eq!((message_uid, offline), (uid.clone(), Vec::<String>::new()));
            }
            other => panic!("expected a duplicate: {other:?}"),
        }
        let (ch, ev) = next_event(&mut rx).await;
        assert_eq!(ch, user_channel(APP, "alice"));
        assert!(
            matches!(ev, UserEvent::Reply { request_id: 1, ref message_uid, .. } if message_uid.is_empty()),
            "{ev:?}"
        );
    }
    assert_eq!(all(&a, "bob").await.len(), 1);
    assert!(
        all(&a, "alice").await.is_empty(),
        "no own copy from a duplicate"
    );

    let req2 = private_msg(sender(&a, "alice", "phone", 5), 2, "bob", false, "two");
    accepted(a.route(&req2).await.unwrap());
    let older = private_msg(sender(&a, "alice", "phone", 5), 1, "bob", false, "late");
    assert!(matches!(
        a.route(&older).await.unwrap(),
        Routed::Duplicate { upto: 2, ref message_uid, .. } if message_uid.is_empty()
    ));
    // Another instance, another device, or an untracked message is not a duplicate.
    for (device, instance, client_seq) in [
        ("phone", 6, 1),
        ("laptop", 5, 1),
        ("phone", 0, 1),
        ("phone", 5, 0),
        ("phone", 5, 0),
    ] {
        let r = private_msg(
            sender(&a, "alice", device, instance),
            client_seq,
            "bob",
            false,
            "new",
        );
        accepted(a.route(&r).await.unwrap());
    }
    assert_eq!(all(&a, "bob").await.len(), 7);
    // The next thing on the channels is message 2's copy: the duplicates published no copy.
    let (ch, ev) = next_event(&mut rx).await;
    assert_eq!(ch, user_channel(APP, "bob"));
    let UserEvent::Deliver { delivered, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        Delivered::decode(delivered.as_ref()).unwrap().content,
        b"two"
    );
}

#[tokio::test]
async fn acks_trim_the_mailbox_only_below_the_lowest_cursor_of_the_known_devices() {
    let (_redis, a, b) = two_mailboxes().await;
    assert_eq!(a.register_device(APP, "bob", "d1", 0).await.unwrap(), 0);
    assert_eq!(b.register_device(APP, "bob", "d2", 0).await.unwrap(), 0);
    let mut seqs = Vec::new();
    for i in 1..=10u64 {
        let req = private_msg(sender(&a, "alice", "phone", 1), i, "bob", false, "m");
        seqs.push(accepted(a.route(&req).await.unwrap()).2[0].1);
    }
    let left = |v: Vec<MailboxEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();

    // d1 (on node a) acks 5; d2 has acked nothing: nothing goes.
    let r = a.ack(APP, "bob", "d1", seqs[4]).await.unwrap();
    assert_eq!((r.cursor, r.lowest, r.trimmed), (seqs[4], 0, 0));
    assert_eq!(left(all(&a, "bob").await), seqs);
    // d2 (on node b) acks 3: the first 3 go.
    let r = b.ack(APP, "bob", "d2", seqs[2]).await.unwrap();
    assert_eq!((r.cursor, r.lowest, r.trimmed), (seqs[2], seqs[2], 3));
    assert_eq!(left(all(&a, "bob").await), seqs[3..]);
    // d2 acks 8: up to d1's 5.
    let r = b.ack(APP, "bob", "d2", seqs[7]).await.unwrap();
    assert_eq!((r.lowest, r.trimmed), (seqs[4], 2));
    assert_eq!(left(all(&b, "bob").await), seqs[5..]);
    // Acks are cumulative: an older one moves nothing back.
    let r = a.ack(APP, "bob", "d1", seqs[1]).await.unwrap();
    assert_eq!((r.cursor, r.lowest, r.trimmed), (seqs[4], seqs[4], 0));
    // Re-registering a known device keeps its cursor.
    assert_eq!(
        a.register_device(APP, "bob", "d1", 0).await.unwrap(),
        seqs[4]
    );
    assert_eq!(
        a.known_devices(APP, "bob").await.unwrap(),
        vec![("d1".to_owned(), seqs[4]), ("d2".to_owned(), seqs[7])]
    );
    // A new device holds back what it has not acked from where it started.
    assert_eq!(
        a.register_device(APP, "bob", "d3", seqs[6]).await.unwrap(),
        seqs[6]
    );
    let r = a.ack(APP, "bob", "d1", seqs[9]).await.unwrap();
    assert_eq!((r.lowest, r.trimmed), (seqs[6], 2));
    assert_eq!(left(all(&a, "bob").await), seqs[7..]);

    // An ack past anything issued is capped (at the clock here: the last seq is below it).
    let before = now_us();
    let r = a.ack(APP, "bob", "d2", u64::MAX).await.unwrap();
    assert!(
        r.cursor >= before && r.cursor < MAX_SEQ,
        "capped: {}",
        r.cursor
    );
    assert_eq!(r.lowest, seqs[6], "d3 still holds the rest");
    let r = a.ack(APP, "bob", "d3", seqs[9]).await.unwrap();
    assert_eq!((r.lowest, r.trimmed), (seqs[9], 3));
    assert!(all(&a, "bob").await.is_empty());
    // The emptied stream is gone (it would keep its last node's bytes), not only its entries.
    assert!(
        !mailbox_exists(&a, "bob").await,
        "an emptied mailbox is deleted"
    );
    // The seq key remembers the top: later seqs still go above it.
    let req = private_msg(sender(&a, "alice", "phone", 1), 11, "bob", false, "m");
    assert!(accepted(a.route(&req).await.unwrap()).2[0].1 > seqs[9]);
    assert!(a.ack(APP, "bob", "", 1).await.is_err(), "empty device");
}

/// The sender's own copy is for the sender's other devices (CallLib's "accepted on another
/// device"): without another known device it is published but not stored (at 100,000
/// connections it doubled Redis's memory for nothing); with one it is stored. The server's
/// hangup for a gone participant (every device, the gone one included) is stored regardless.
#[tokio::test]
async fn the_senders_own_copy_is_stored_only_while_another_device_of_the_sender_is_known() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    let (_sub, mut rx) = listen(&a, 64, &["alice"]).await;
    let seqs = |v: Vec<MailboxEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();

    // No device known at all, then only the sending one: published, not stored.
    let mut own_seqs = Vec::new();
    for i in 1..=2u64 {
        if i == 2 {
            a.register_device(APP, "alice", "phone", 0).await.unwrap();
        }
        let req = private_msg(sender(&a, "alice", "phone", 9), i, "bob", true, "m");
        let own = accepted(a.route(&req).await.unwrap())
            .3
            .expect("own copy seq");
        let (_, ev) = next_event(&mut rx).await;
        assert!(
            matches!(ev, UserEvent::Deliver { seq, .. } if seq == own),
            "the own copy is still published: {ev:?}"
        );
        let _reply = next_event(&mut rx).await;
        own_seqs.push(own);
        assert!(all(&a, "alice").await.is_empty(), "nothing stored ({i})");
    }
    assert!(own_seqs[0] < own_seqs[1], "seqs still issued in order");
    assert_eq!(
        all(&a, "bob").await.len(),
        2,
        "the recipient's copies are stored"
    );

    // Another device is known: the next own copy waits for it.
    a.register_device(APP, "alice", "laptop", 0).await.unwrap();
    let req = private_msg(sender(&a, "alice", "phone", 9), 3, "bob", true, "m");
    let own = accepted(a.route(&req).await.unwrap()).3.unwrap();
    let stored = all(&a, "alice").await;
    assert_eq!(seqs(stored.clone()), [own]);
    assert_eq!(stored[0].exclude_device.as_deref(), Some("phone"));

    // A copy for every device of the user (the hangup for a gone participant): stored even
    // with no other device, for the gone one itself.
    let mut req = private_msg(sender(&a, "carol", "c1", 0), 0, "bob", true, "h");
    req.own_copy.as_mut().unwrap().all_devices = true;
    let own = accepted(a.route(&req).await.unwrap()).3.unwrap();
    assert_eq!(seqs(all(&a, "carol").await), [own]);
}

#[tokio::test]
async fn a_lost_seq_key_never_reuses_a_stored_seq_and_the_mailbox_is_bounded() {
    let redis = TestRedis::start();
    let limits = MailboxLimits {
        max_len: 5,
        ..MailboxLimits::default()
    };
    let a = redis.mailboxes(limits).await;
    let floor = now_us() + 3_600_000_000;
    let mut req = private_msg(sender(&a, "alice", "phone", 0), 0, "bob", false, "ahead");
    req.floor_us = floor;
    assert_eq!(accepted(a.route(&req).await.unwrap()).2[0].1, floor);
    // The seq key is evicted (or expired) while the mailbox still holds the entry.
    let _: () = redis::cmd("DEL")
        .arg(rcall_server::cluster::keys::user_seq(APP, "bob"))
        .query_async(&mut a.bus().connection())
        .await
        .unwrap();
    let req = private_msg(sender(&a, "alice", "phone", 0), 0, "bob", false, "next");
    assert_eq!(
        accepted(a.route(&req).await.unwrap()).2[0].1,
        floor + 1,
        "above the stream's top"
    );

    // Bounded by count (approximately: Redis trims whole stream nodes of 100 entries).
    for _ in 0..500 {
        accepted(a.route(&req).await.unwrap());
    }
    let n = all(&a, "bob").await.len();
    assert!((5..=105).contains(&n), "kept {n}");
}

#[tokio::test]
async fn bad_route_requests_are_clear_errors_and_route_nothing() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    let cases: Vec<(RouteRequest, &str)> = vec![
        (
            message(
                sender(&a, "alice", "phone", 1),
                1,
                &["bob", "bob"],
                Some("g"),
                false,
                "x",
            ),
            "twice",
        ),
        (
            private_msg(sender(&a, "alice", "phone", 1), 1, "alice", false, "x"),
            "the sender",
        ),
        (
            private_msg(sender(&a, "alice", "phone", 1), 1, "", false, "x"),
            "empty",
        ),
        (
            private_msg(sender(&a, "", "phone", 1), 1, "bob", false, "x"),
            "empty sender",
        ),
        (
            RouteRequest {
                floor_us: MAX_SEQ,
                ..private_msg(sender(&a, "alice", "phone", 1), 1, "bob", false, "x")
            },
            "2^53",
        ),
    ];
    for (req, what) in &cases {
        let e = a.route(req).await.unwrap_err();
        assert!(matches!(e, ClusterError::OutOfRange(_)), "{e}");
        assert!(e.to_string().contains(what), "{e} should mention {what}");
    }
    assert!(all(&a, "bob").await.is_empty());
    // The client_seq was not recorded either.
    let ok = private_msg(sender(&a, "alice", "phone", 1), 1, "bob", false, "x");
    accepted(a.route(&ok).await.unwrap());
    assert!(Mailboxes::new(
        a.bus().clone(),
        MailboxLimits {
            max_len: 0,
            ..Default::default()
        }
    )
    .is_err());
    let short = MailboxLimits {
        state_ttl: Duration::from_secs(1),
        ..Default::default()
    };
    assert!(Mailboxes::new(a.bus().clone(), short).is_err());
}

/// Redis's calls per inner command since the last `CONFIG RESETSTAT` (scripts' own commands
/// included; `EVALSHA`, `CONFIG` and `INFO` left out).
async fn commands_run(m: &Mailboxes) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut m.bus().connection())
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!["evalsha", "info"].contains(&name) && !name.starts_with("config"))
                .then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// What a routed message costs Redis (issue 15; BENCHMARKS.md, "Session 14: Redis's cost per
/// routed message"): the commands of a private message's route script (with presence and the
/// sender's own copy, as the server routes it) and of its recipient's ack, once both users
/// were seen (the recipient's mailbox emptied by its last ack, as for a user who keeps up).
/// The mailbox's age trim runs once per period (max age / 64), not per message; an ack that
/// covers everything issued drops the stream without trimming it first. Every command here
/// is Redis CPU on every message of a cluster.
#[tokio::test]
async fn a_private_message_and_its_ack_cost_redis_few_commands() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    a.register_device(APP, "bob", "d1", 0).await.unwrap();
    // Seqs pinned inside one age-trim period (just past a period boundary, ahead of the clock).
    let period = MailboxLimits::default().max_age.as_micros() as u64 / 64;
    let floor = (now_us() / period + 1) * period;
    let mut runs = Vec::new();
    for i in 1..=3u64 {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut a.bus().connection())
            .await
            .unwrap();
        // (Redis's clock past the last message's ms: the app's sent_time moves, one SET.)
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut req = private_msg(sender(&a, "alice", "phone", 1), i, "bob", true, "m");
        req.presence = true;
        req.floor_us = floor;
        let seq = accepted(a.route(&req).await.unwrap()).2[0].1;
        assert_eq!(seq, floor + i - 1);
        let routed = commands_run(&a).await;
        let r = a.ack(APP, "bob", "d1", seq).await.unwrap();
        assert_eq!((r.cursor, r.lowest, r.trimmed), (seq, seq, 1));
        let mut acked = commands_run(&a).await;
        for (name, n) in &routed {
            *acked.get_mut(name).unwrap() -= n;
        }
        acked.retain(|_, n| *n > 0);
        runs.push((routed, acked));
    }
    let total = |m: &std::collections::BTreeMap<String, u64>| m.values().sum::<u64>();
    // The first message starts the period (its age trim) and finds no seq keys yet.
    let (first, _) = &runs[0];
    assert_eq!(first.get("xtrim"), Some(&1), "{first:?}");
    for (routed, acked) in &runs[1..] {
        assert_eq!(
            routed.get("xtrim"),
            None,
            "no age trim within a period: {routed:?}"
        );
        assert_eq!(total(routed), 15, "route: {routed:?}");
        assert_eq!(acked.get("xtrim"), None, "{acked:?}");
        assert_eq!(total(acked), 7, "ack: {acked:?}");
    }
}

/// A mailbox emptied by an ack is deleted also when the user's last seq is not in it (here
/// the user's own copy of what he sent, only published: he has no other device), i.e. when
/// the ack does not cover everything issued and the stream is trimmed first.
#[tokio::test]
async fn an_emptied_mailbox_is_deleted_when_its_users_last_seq_was_only_published() {
    let redis = TestRedis::start();
    let a = redis.mailboxes(MailboxLimits::default()).await;
    a.register_device(APP, "bob", "d1", 0).await.unwrap();
    let req = private_msg(sender(&a, "alice", "phone", 1), 1, "bob", true, "m");
    let got = accepted(a.route(&req).await.unwrap()).2[0].1;
    let req = private_msg(sender(&a, "bob", "d1", 1), 1, "alice", true, "r");
    let (.., own) = accepted(a.route(&req).await.unwrap());
    assert!(own.is_some_and(|s| s > got), "{own:?}");
    let r = a.ack(APP, "bob", "d1", got).await.unwrap();
    assert_eq!((r.cursor, r.lowest, r.trimmed), (got, got, 1));
    assert!(
        !mailbox_exists(&a, "bob").await,
        "an emptied mailbox is deleted"
    );
}
