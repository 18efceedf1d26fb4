//! The delivery core driven directly, on a fake clock, over the in-memory store: the contracts
//! the server's shell and the simulator rely on.

use std::sync::Arc;
use std::time::Duration;

use delivery::memory::{Effect, MemoryShell, MemoryStore};
use delivery::{AppCore, Departure, Limits, Now, Origin, Outgoing, RouteOptions, SendRef};
use prost::Message as _;
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{conversation_type, AuthResult, SendMessage, ServerFrame};

fn limits() -> Limits {
    Limits {
        offline_ttl_ms: 3_600_000,
        offline_max_per_user: 1_000,
        window_ttl: Duration::from_secs(60),
        window_max: 128,
        max_connections_per_app: 1_000,
        left_grace: Duration::from_secs(1),
        lost_grace: Duration::from_secs(5),
        max_connections_per_user: 10,
        max_connections_per_device: 4,
        user_rate_per_sec: 100_000,
        user_rate_burst: 100_000,
        offline_quota_per_sender: 1_000,
        offline_quota_window: Duration::from_secs(60),
        offline_max_bytes: u64::MAX,
        store_queue_max: 1_000,
    }
}

/// The core, its shell and a clock that moves 1 ms per input.
struct World {
    core: AppCore<u64>,
    store: MemoryStore,
    effects: Vec<(u64, Effect)>,
    t: u64,
    next_conn: u64,
}

impl World {
    fn new() -> Self {
        Self {
            core: AppCore::new(limits(), 0, Now::default(), 1),
            store: MemoryStore::new(),
            effects: Vec::new(),
            t: 1_700_000_000_000,
            next_conn: 0,
        }
    }

    fn now(&mut self) -> Now {
        self.t += 1;
        Now { wall_us: self.t * 1000, mono: Duration::from_millis(self.t) }
    }

    /// Connects and syncs a device; returns its origin (and drops the frames queued so far).
    fn connect(&mut self, user: &str, device: &str) -> Origin {
        self.next_conn += 1;
        let id = self.next_conn;
        let now = self.now();
        let auth = AuthResult { user_id: user.into(), ..Default::default() };
        let reg = self
            .core
            .register(
                &mut MemoryShell { store: &mut self.store, effects: &mut self.effects },
                now,
                id,
                id,
                user,
                device,
                0,
                0,
                auth,
                7,
                (0, 0),
            )
            .expect("registered");
        let data = self.store.sync_data(user, device, reg.cursor, now.wall_ms());
        let now = self.now();
        self.core.finish_sync(&mut MemoryShell { store: &mut self.store, effects: &mut self.effects }, now, &reg, data, None);
        Origin { app: 0, conn_id: id, user_id: user.into(), device_id: device.into(), instance: 7 }
    }

    fn send(&mut self, from: &Origin, to: &str, client_seq: u64, request_id: u32) {
        let msg = SendMessage {
            request_id,
            conversation_type: conversation_type::PRIVATE,
            target_id: to.into(),
            message_type: "app:text".into(),
            content: b"hi".to_vec(),
            client_seq,
            ..Default::default()
        };
        let now = self.now();
        let opts = RouteOptions { reply_to: Some(request_id), ..Default::default() };
        self.core
            .route(&mut MemoryShell { store: &mut self.store, effects: &mut self.effects }, now, from, &SendRef::of(&msg), opts)
            .expect("routed");
    }

    fn ack(&mut self, who: &Origin, seq: u64) {
        let now = self.now();
        self.core.ack(&mut MemoryShell { store: &mut self.store, effects: &mut self.effects }, now, who, seq);
    }

    /// `user`'s connection `conn` went (`how`), now.
    fn unregister(&mut self, user: &str, conn: u64, how: Departure) {
        let now = self.now();
        self.core.unregister(&mut MemoryShell { store: &mut self.store, effects: &mut self.effects }, now, user, conn, how);
    }

    /// The calls' participants whose grace ran out, ended now: (user, device, call, reason).
    fn end_gone(&mut self) -> Vec<(Arc<str>, Arc<str>, String, i32)> {
        let now = self.now();
        self.core.end_gone_participants(&mut MemoryShell { store: &mut self.store, effects: &mut self.effects }, now)
    }

    /// The frames queued to a connection so far (taken).
    fn take(&mut self, conn: u64) -> Vec<Body> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.effects).into_iter().partition(|(c, _)| *c == conn);
        self.effects = rest;
        mine.into_iter()
            .filter_map(|(_, e)| match e {
                Effect::Frame(Outgoing::Frame { body, .. } | Outgoing::Durable { body, .. }) => ServerFrame::decode(&body[..]).ok()?.body,
                _ => None,
            })
            .collect()
    }
}

fn seqs(frames: &[Body]) -> Vec<u64> {
    frames.iter().filter_map(|b| if let Body::Deliver(d) = b { Some(d.seq) } else { None }).collect()
}

#[test]
fn a_sender_s_send_result_is_queued_before_anything_its_message_causes() {
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    let b = w.connect("bob", "b1");
    w.take(a.conn_id);
    w.take(b.conn_id);
    w.send(&a, "bob", 1, 11);
    // bob answers at once (before alice's connection task could have run again).
    w.send(&b, "alice", 1, 21);
    let frames = w.take(a.conn_id);
    assert!(matches!(&frames[0], Body::SendResult(r) if r.request_id == 11 && r.code == 0), "{frames:?}");
    assert!(matches!(&frames[1], Body::Deliver(d) if d.sender_user_id == "bob"), "{frames:?}");
    assert_eq!(frames.len(), 2);
}

#[test]
fn what_every_device_acked_leaves_memory() {
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    let b = w.connect("bob", "b1");
    for i in 1..=200 {
        w.send(&a, "bob", i, i as u32);
    }
    let got = seqs(&w.take(b.conn_id));
    assert_eq!(got.len(), 200);
    // Unacked by a connected device: kept (it may be on a dead connection).
    assert_eq!(w.core.window_len(), 200);
    w.ack(&b, got[99]);
    assert_eq!(w.core.window_len(), 100);
    w.ack(&b, got[199]);
    // Before: the last `window_max` (128) stayed in memory after every device had acked them.
    assert_eq!(w.core.window_len(), 0);
}

#[test]
fn a_device_that_is_away_keeps_the_window_until_it_comes_back_and_acks() {
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    let b2 = w.connect("bob", "b2");
    w.unregister("bob", b2.conn_id, Departure::Lost);
    let b1 = w.connect("bob", "b1");
    for i in 1..=10 {
        w.send(&a, "bob", i, i as u32);
    }
    let got = seqs(&w.take(b1.conn_id));
    w.ack(&b1, got[9]);
    assert_eq!(w.core.window_len(), 10, "b2 has not got them");
    let b2 = w.connect("bob", "b2");
    let replay = seqs(&w.take(b2.conn_id));
    assert_eq!(replay, got);
    w.ack(&b2, got[9]);
    assert_eq!(w.core.window_len(), 0);
}

#[test]
fn a_message_stored_for_a_user_waits_for_each_of_its_devices() {
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    for d in ["b1", "b2"] {
        let o = w.connect("bob", d);
        w.unregister("bob", o.conn_id, Departure::Lost);
    }
    w.send(&a, "bob", 1, 1);
    assert_eq!(w.store.offline_len(), 1);
    let b1 = w.connect("bob", "b1");
    let got = seqs(&w.take(b1.conn_id));
    assert_eq!(got.len(), 1);
    w.ack(&b1, got[0]);
    assert_eq!(w.store.offline_len(), 1, "b2 has not got it");
    let b2 = w.connect("bob", "b2");
    assert_eq!(seqs(&w.take(b2.conn_id)), got);
    w.ack(&b2, got[0]);
    assert_eq!(w.store.offline_len(), 0);
}

impl World {
    /// `from` sends call message `body` of call `c1` to `to` (1:1).
    fn send_call(&mut self, from: &Origin, to: &str, message_type: &str, body: rtc_core::proto::call_content::Body) {
        let content = rtc_core::proto::CallContent {
            platform: "Web".into(),
            device_id: from.device_id.to_string(),
            call_id: "c1".into(),
            user: None,
            body: Some(body),
        };
        let msg = SendMessage {
            conversation_type: conversation_type::PRIVATE,
            target_id: to.into(),
            message_type: message_type.into(),
            content: content.to_bytes(),
            ..Default::default()
        };
        let now = self.now();
        self.core
            .route(
                &mut MemoryShell { store: &mut self.store, effects: &mut self.effects },
                now,
                from,
                &SendRef::of(&msg),
                RouteOptions::default(),
            )
            .expect("call message routed");
    }

    /// alice's invite of bob to `c1`.
    fn invite_bob(&mut self, a: &Origin) {
        let invite = rtc_core::proto::Invite { invite_user_ids: vec!["bob".into()], ..Default::default() };
        self.send_call(a, "bob", rtc_core::proto::object_name::INVITE, rtc_core::proto::call_content::Body::Invite(invite));
    }

    /// What a restart of the process over the same store holds: a new core with `saved` rooms
    /// restored and the departures logged since replayed over them (as `Hub::restore_rooms`).
    fn restart_with_rooms(&mut self, saved: &[u8]) {
        let now = self.now();
        let mut core = AppCore::new(limits(), 0, now, 2);
        core.restore_rooms(delivery::rooms::RoomsSnapshot::decode(saved).unwrap(), now);
        for (t_ms, ev) in self.store.rooms_departures() {
            core.apply_rooms_event(ev, *t_ms, now);
        }
        self.core = core;
    }
}

#[test]
fn rooms_outlive_a_restart_and_hang_up_for_who_does_not_return() {
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    let _b = w.connect("bob", "b1");
    w.invite_bob(&a);
    assert_eq!(w.core.rooms_size().0, 1);
    let bytes = w.core.rooms_snapshot().encode_to_vec();
    w.restart_with_rooms(&bytes);
    assert_eq!(w.core.call_members("c1").len(), 1);
    let b = w.connect("bob", "b1");
    w.take(b.conn_id);
    // alice never comes back: after the lost grace, bob is told she hung up (7).
    w.t += 5_001;
    let ended = w.end_gone();
    assert_eq!(ended.len(), 1);
    assert_eq!((&*ended[0].0, &*ended[0].1, &ended[0].2[..], ended[0].3), ("alice", "a1", "c1", 7));
    let frames = w.take(b.conn_id);
    assert!(frames.iter().any(|f| matches!(f, Body::Deliver(d) if d.message_type == rtc_core::proto::object_name::HANGUP)), "{frames:?}");
}

/// A grace that ran out is logged like a routed hangup: a crash before the next save of the
/// rooms does not bring the gone member back into its call (nor keep the call going) until
/// the restored grace ends it again. Before, only routed departures were logged: after the
/// restart alice was in `c1` again, listed by `getJoinedUserInfo` and busy for new invites.
#[test]
fn a_grace_that_ran_out_is_not_undone_by_a_crash() {
    use rtc_core::proto::{call_content::Body as CallBody, object_name, Accept};
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    let b = w.connect("bob", "b1");
    w.invite_bob(&a);
    w.send_call(&b, "alice", object_name::ACCEPT, CallBody::Accept(Accept::default()));
    assert_eq!(w.core.call_members("c1").len(), 2);
    // The rooms as last saved, with both in the call.
    let saved = w.core.rooms_snapshot().encode_to_vec();
    w.unregister("bob", b.conn_id, Departure::Lost);
    w.t += 5_001;
    let ended = w.end_gone();
    assert_eq!(ended.len(), 1);
    assert!(w.core.call_members("c1").is_empty(), "the call is over");
    // A crash now: the saved rooms, and the log since.
    w.restart_with_rooms(&saved);
    assert!(w.core.call_members("c1").is_empty(), "the call came back: {:?}", w.core.call_members("c1"));
    assert_eq!(w.core.rooms_size().0, 0);
}

/// Cluster mode's node-side input (docs/cluster.md): a message sequenced elsewhere reaches this
/// node's live connections of its user, and a device syncing here gets it exactly once whether
/// it arrives in the store read (the shared mailbox) or live during the sync.
#[test]
fn a_message_sequenced_by_another_node_reaches_live_and_syncing_devices_once() {
    use delivery::{Sequenced, StoredMessage, SyncData};
    let mut node_b = World::new();
    let bob = node_b.connect("bob", "b1");
    node_b.take(bob.conn_id);
    // "Redis": the mailbox of bob, as the route script fills it.
    let mut mailbox: Vec<(u64, Vec<u8>)> = Vec::new();
    let sequence = |n: u32, mailbox: &mut Vec<(u64, Vec<u8>)>| {
        let seq = 1_800_000_000_000_000 + u64::from(n);
        let d = rtc_core::proto::Delivered {
            seq,
            sender_user_id: "alice".into(),
            content: n.to_be_bytes().to_vec(),
            message_type: "app:text".into(),
            ..Default::default()
        };
        mailbox.push((seq, d.encode_to_vec()));
        (seq, d.encode_to_vec())
    };
    let (seq1, p1) = sequence(1, &mut mailbox);
    let now = node_b.now();
    let n = node_b.core.deliver_sequenced(
        &mut MemoryShell { store: &mut node_b.store, effects: &mut node_b.effects },
        now,
        Sequenced { user_id: "bob", seq: seq1, payload: &p1, skip: None, exclude_device: None },
    );
    assert_eq!(n, 1);
    assert_eq!(seqs(&node_b.take(bob.conn_id)), vec![seq1]);
    // A repeat (after a resync) is dropped.
    let now = node_b.now();
    assert_eq!(
        node_b.core.deliver_sequenced(
            &mut MemoryShell { store: &mut node_b.store, effects: &mut node_b.effects },
            now,
            Sequenced { user_id: "bob", seq: seq1, payload: &p1, skip: None, exclude_device: None }
        ),
        0
    );

    // bob's second device connects to node A: registered (syncing), message 2 arrives live
    // meanwhile, then the mailbox read (1 and 2) completes the sync.
    let mut node_a = World::new();
    node_a.next_conn = 100;
    let now = node_a.now();
    let auth = AuthResult { user_id: "bob".into(), ..Default::default() };
    let reg = node_a
        .core
        .register(
            &mut MemoryShell { store: &mut node_a.store, effects: &mut node_a.effects },
            now,
            101,
            101,
            "bob",
            "b2",
            0,
            0,
            auth,
            9,
            (0, 0),
        )
        .unwrap();
    let (seq2, p2) = sequence(2, &mut mailbox);
    let now = node_a.now();
    assert_eq!(
        node_a.core.deliver_sequenced(
            &mut MemoryShell { store: &mut node_a.store, effects: &mut node_a.effects },
            now,
            Sequenced { user_id: "bob", seq: seq2, payload: &p2, skip: None, exclude_device: None }
        ),
        0,
        "not live before its replay"
    );
    let data = SyncData {
        messages: mailbox.iter().map(|(seq, p)| StoredMessage { seq: *seq, exclude_device: String::new(), payload: p.clone() }).collect(),
        ..Default::default()
    };
    let now = node_a.now();
    node_a.core.finish_sync(&mut MemoryShell { store: &mut node_a.store, effects: &mut node_a.effects }, now, &reg, data, None);
    let frames = node_a.take(101);
    assert_eq!(seqs(&frames), vec![seq1, seq2], "each once, in order");
    assert!(matches!(frames.last(), Some(Body::SyncDone(_))));
}

/// Cluster mode: a device's replay read the mailbox ahead of its node's channel. The live copy
/// of a replayed message that reaches the node afterwards is not given to that connection again,
/// but it is to another connection of the user that was live here and has not had it (it was
/// once dropped for the whole user: the sim's cluster seed 101).
#[test]
fn a_replay_marks_its_messages_for_its_connection_only() {
    use delivery::{Sequenced, StoredMessage, SyncData};
    let mut node = World::new();
    let b1 = node.connect("bob", "b1");
    node.take(b1.conn_id);
    let seq = 1_800_000_000_000_000;
    let payload = rtc_core::proto::Delivered { seq, sender_user_id: "alice".into(), message_type: "app:text".into(), ..Default::default() }
        .encode_to_vec();
    // bob's second device connects here; its replay already has the message.
    let now = node.now();
    let auth = AuthResult { user_id: "bob".into(), ..Default::default() };
    let reg = node
        .core
        .register(&mut MemoryShell { store: &mut node.store, effects: &mut node.effects }, now, 2, 2, "bob", "b2", 0, 0, auth, 9, (0, 0))
        .unwrap();
    let data =
        SyncData { messages: vec![StoredMessage { seq, exclude_device: String::new(), payload: payload.clone() }], ..Default::default() };
    let now = node.now();
    node.core.finish_sync(&mut MemoryShell { store: &mut node.store, effects: &mut node.effects }, now, &reg, data, None);
    node.core.note_sequenced("bob", reg.conn_id, seq);
    assert_eq!(seqs(&node.take(2)), vec![seq]);
    // Then its live copy arrives: for b1 only.
    let now = node.now();
    let n = node.core.deliver_sequenced(
        &mut MemoryShell { store: &mut node.store, effects: &mut node.effects },
        now,
        Sequenced { user_id: "bob", seq, payload: &payload, skip: None, exclude_device: None },
    );
    assert_eq!(n, 1);
    assert_eq!(seqs(&node.take(b1.conn_id)), vec![seq], "the device that was live gets it");
    assert!(seqs(&node.take(2)).is_empty(), "the replayed one does not get it twice");
}

/// `admit` runs every check without sequencing (cluster mode sequences in Redis): group
/// membership filters the recipients, a resend is answered as a duplicate, and nothing reaches
/// anyone until the message is routed.
#[test]
fn admit_checks_without_sequencing() {
    use delivery::Admission;
    let mut w = World::new();
    let a = w.connect("alice", "a1");
    let b = w.connect("bob", "b1");
    w.take(b.conn_id);
    w.core.policy_mut().group_join("g", &["alice".to_string(), "bob".to_string()]);
    let msg = SendMessage {
        request_id: 1,
        conversation_type: conversation_type::GROUP,
        target_id: "g".into(),
        directional_user_ids: vec!["bob".into(), "carol".into()],
        message_type: "app:text".into(),
        content: b"hi".to_vec(),
        client_seq: 1,
        ..Default::default()
    };
    let now = w.now();
    let admitted = w
        .core
        .admit(&mut MemoryShell { store: &mut w.store, effects: &mut w.effects }, now, &a, &SendRef::of(&msg), RouteOptions::default())
        .unwrap();
    match admitted {
        Admission::Route(r) => assert_eq!(r.recipients, vec!["bob"], "carol is not in the group"),
        other => panic!("{other:?}"),
    }
    assert!(w.take(b.conn_id).is_empty(), "admitted, not routed");
    w.send(&a, "bob", 2, 2);
    let resend = SendMessage { client_seq: 2, ..msg };
    let now = w.now();
    let again = w
        .core
        .admit(&mut MemoryShell { store: &mut w.store, effects: &mut w.effects }, now, &a, &SendRef::of(&resend), RouteOptions::default())
        .unwrap();
    assert!(matches!(again, Admission::Duplicate(ref acc) if acc.duplicate), "{again:?}");
}

/// A device connecting for the first time gets no history but what was stored for the user
/// while all its devices were away — yet everything routed to the user *after* it registered,
/// including what arrives between its registration and the end of its sync (the shell reads
/// the store in between).
#[test]
fn a_new_device_gets_what_is_routed_while_it_syncs() {
    let mut w = World::new();
    let alice = w.connect("alice", "a1");
    let b1 = w.connect("bob", "b1");
    w.send(&alice, "bob", 1, 1); // before b2 exists: history for b2
    let now = w.now();
    let auth = AuthResult { user_id: "bob".into(), ..Default::default() };
    let reg = w
        .core
        .register(&mut MemoryShell { store: &mut w.store, effects: &mut w.effects }, now, 50, 50, "bob", "b2", 0, 0, auth, 9, (0, 0))
        .unwrap();
    assert!(reg.new_device);
    let data = w.store.sync_data("bob", "b2", reg.cursor, now.wall_ms());
    w.send(&alice, "bob", 2, 2); // while b2 syncs (b1 is live: nothing is stored)
    let now = w.now();
    w.core.finish_sync(&mut MemoryShell { store: &mut w.store, effects: &mut w.effects }, now, &reg, data, None);
    let b1_seqs = seqs(&w.take(b1.conn_id));
    assert_eq!(b1_seqs.len(), 2);
    let frames = w.take(50);
    assert_eq!(seqs(&frames), vec![b1_seqs[1]], "the message routed during the sync, not the one before");
    assert!(matches!(frames.last(), Some(Body::SyncDone(_))));
}

/// Cluster mode: the rooms are a replica. Admitting a call message only checks it and hands
/// out its event; connections and their ends leave the rooms alone; only the events change them.
#[test]
fn replicated_rooms_change_only_through_their_events() {
    use delivery::rooms::{rooms_event::Event, DeviceEvent, RoomsEvent};
    use delivery::Admission;
    use rtc_core::proto::{call_content, CallContent, Invite};
    let mut w = World::new();
    w.core.replicate_rooms();
    let a = w.connect("alice", "a1");
    let invite = CallContent {
        call_id: "c1".into(),
        body: Some(call_content::Body::Invite(Invite { invite_user_ids: vec!["bob".into()], ..Default::default() })),
        ..Default::default()
    };
    let msg = SendMessage {
        conversation_type: conversation_type::PRIVATE,
        target_id: "bob".into(),
        message_type: rtc_core::proto::object_name::INVITE.into(),
        content: invite.to_bytes(),
        ..Default::default()
    };
    let now = w.now();
    let opts = RouteOptions { shared_mailboxes: true, ..Default::default() };
    let ev = match w
        .core
        .admit(&mut MemoryShell { store: &mut w.store, effects: &mut w.effects }, now, &a, &SendRef::of(&msg), opts)
        .expect("admitted")
    {
        Admission::Route(ad) => ad.rooms_event.expect("a call message has an event"),
        Admission::Duplicate(_) => panic!("not a duplicate"),
    };
    assert_eq!(
        (ev.user.as_str(), ev.device.as_str(), ev.call_id.as_str(), &ev.recipients[..]),
        ("alice", "a1", "c1", &["bob".to_string()][..])
    );
    assert_eq!(w.core.rooms_size(), (0, 0, 0), "admitting changed nothing");
    let now = w.now();
    let here = RoomsEvent {
        event: Some(Event::Here(DeviceEvent { user: "alice".into(), device: "a1".into(), node: "n1".into(), lost: false, instance: 0 })),
    };
    assert_eq!(w.core.apply_rooms_event(&here, 1, now), None);
    assert_eq!(w.core.apply_rooms_event(&RoomsEvent { event: Some(Event::Message(*ev)) }, 2, now), None);
    assert_eq!(w.core.call_members("c1").len(), 1);
    assert_eq!(w.core.joined_user_info("alice", "alice")[0].join_time, 2, "the event's time");
    // The connection ends: no grace here (its node publishes `Gone`), nothing to end.
    w.unregister("alice", a.conn_id, Departure::Lost);
    assert!(!w.core.has_graces());
    w.t += 60_000;
    assert!(w.end_gone().is_empty());
    assert_eq!(w.core.call_members("c1").len(), 1);
    let gone = RoomsEvent {
        event: Some(Event::Gone(DeviceEvent { user: "alice".into(), device: "a1".into(), node: "n1".into(), lost: true, instance: 0 })),
    };
    w.core.apply_rooms_event(&gone, 3, now);
    assert!(w.core.rooms_graces_due(now, "n1").is_empty(), "the grace has just started");
    w.t += 5_000;
    let now = w.now();
    assert_eq!(w.core.rooms_graces_due(now, "n2"), vec![], "n1 runs it");
    assert_eq!(w.core.rooms_graces_due(now, "n1").len(), 1);
}
