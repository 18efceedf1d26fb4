//! The Lua scripts against the simulator's model of them (docs/cluster.md, "Sans-IO"): the
//! same random sequences of routes (with resends, untracked sends, group and private
//! messages, with and without the sender's own copy), acks (cumulative, past what was issued)
//! and device registrations go through the real scripts (`Mailboxes`, a private Redis) and
//! through `delivery::cluster_model::ClusterModel`; every reply, every publish (in order) and
//! the mailboxes and cursors at the end must agree.
//!
//! The two clocks differ (Redis's `TIME` against the test's), so seqs are pinned by a floor in
//! the future (seq = max(last + 1, now, floor) is then the floor, then last + 1 on both sides),
//! `sent_time` is left out of the comparison, and the message UID the script's caller made is
//! handed to the model. Count and age never trim here (Redis's `MAXLEN ~` is approximate).

mod common;

use std::time::Duration;

use common::redis_server::TestRedis;
use delivery::cluster_model::{ChannelEvent, ClusterModel, ModelRoute, ModelRouted, NodeConn};
use prost::Message as _;
use rcall_server::cluster::mailbox::{
    user_channel, ConnRef, MailboxLimits, OwnCopy, Recipient, RouteRequest, Routed, Sender,
    UserEvent,
};
use rcall_server::cluster::{BusEvent, MAX_SEQ};
use rtc_core::proto::{conversation_type, Delivered};

const APP: &str = "app1";
const USERS: [&str; 3] = ["u1", "u2", "u3"];
const DEVICES: [&str; 2] = ["d1", "d2"];
/// Seqs start here (µs, about the year 2100: above any clock, below 2^53).
const FLOOR: u64 = 4_102_444_800_000_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A `Delivered` without its `sent_time` (each side's own clock).
fn clockless(bytes: &[u8]) -> Delivered {
    let mut d = Delivered::decode(bytes).expect("a Delivered");
    d.sent_time = 0;
    d
}

/// A publish, comparable across the two sides.
#[derive(Debug, PartialEq)]
enum Published {
    Deliver {
        user: String,
        seq: u64,
        skip: Option<u64>,
        delivered: Delivered,
    },
    Reply {
        user: String,
        conn: u64,
        request_id: u32,
        uid: String,
    },
}

/// One mapping for both sides' channel events: the model's `ChannelEvent` and the server's
/// `UserEvent` have the same variants and fields, in two types.
macro_rules! published {
    ($event:ident, $user:expr, $ev:expr) => {
        match $ev {
            $event::Deliver {
                seq,
                skip,
                delivered,
            } => Published::Deliver {
                user: $user,
                seq,
                skip: skip.map(|c| c.conn),
                delivered: clockless(&delivered),
            },
            $event::Reply {
                conn,
                request_id,
                message_uid,
                ..
            } => Published::Reply {
                user: $user,
                conn: conn.conn,
                request_id,
                uid: message_uid,
            },
        }
    };
}

fn from_model(user: String, ev: ChannelEvent) -> Published {
    published!(ChannelEvent, user, ev)
}

fn from_redis(user: String, ev: UserEvent) -> Published {
    published!(UserEvent, user, ev)
}

/// One random sequence of `ops` operations through both sides.
async fn compare(seed: u64, ops: usize) {
    let redis = TestRedis::start();
    let limits = MailboxLimits::default();
    let m = redis.mailboxes(limits).await;
    let (sub, mut rx) = m.bus().subscriber(16 * 1024).await.unwrap();
    let channels: Vec<String> = USERS.iter().map(|u| user_channel(APP, u)).collect();
    let refs: Vec<&str> = channels.iter().map(String::as_str).collect();
    sub.subscribe(&refs).await.unwrap();
    let mut model = ClusterModel::new(limits.max_len, limits.max_age.as_micros() as u64);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Per (user, device, instance): the last client_seq used.
    let mut client_seqs = std::collections::BTreeMap::<(usize, usize, u64), u64>::new();
    let mut expected: Vec<Published> = Vec::new();
    let (mut routes, mut dups, mut trimmed) = (0, 0, 0);
    for op in 0..ops {
        let user = rng.below(3) as usize;
        let device = rng.below(2) as usize;
        let (u, d) = (USERS[user], DEVICES[device]);
        match rng.below(10) {
            0..=5 => {
                let instance = rng.below(3); // 0 = untracked
                let last = client_seqs.entry((user, device, instance)).or_default();
                let client_seq = match rng.below(6) {
                    0 => 0,                                 // untracked
                    1 if *last > 0 => 1 + rng.below(*last), // a resend
                    _ => {
                        *last += 1;
                        *last
                    }
                };
                let others: Vec<&str> = USERS.iter().copied().filter(|o| *o != u).collect();
                let group = rng.below(2) == 0;
                let to: Vec<&str> = if group && rng.below(2) == 0 {
                    others.clone()
                } else {
                    vec![others[rng.below(2) as usize]]
                };
                let own = rng.below(4) != 0;
                let request_id = (rng.below(4) != 0).then_some(op as u32 + 1);
                let conn_id = 10 + (user * 2 + device) as u64;
                let message = Delivered {
                    conversation_type: if group {
                        conversation_type::GROUP
                    } else {
                        conversation_type::PRIVATE
                    },
                    target_id: if group { "g".into() } else { u.into() },
                    channel_id: "ch".into(),
                    message_type: "RC:TxtMsg".into(),
                    content: format!("op {op}").into_bytes(),
                    ..Default::default()
                };
                let own_target = if group { "g" } else { to[0] };
                let offline = rng.below(3) == 0;
                let req = RouteRequest {
                    app: APP,
                    from: Sender {
                        user: u,
                        device: d,
                        instance,
                        conn: ConnRef {
                            node: m.bus().node_id().clone(),
                            conn: conn_id,
                        },
                    },
                    client_seq,
                    request_id,
                    message: message.clone(),
                    recipients: to
                        .iter()
                        .map(|r| Recipient {
                            user: r.to_string(),
                            offline,
                        })
                        .collect(),
                    own_copy: own.then(|| OwnCopy {
                        target_id: own_target.into(),
                        offline: false,
                        all_devices: false,
                    }),
                    floor_us: FLOOR,
                    // (presence is not modelled: the copies' flags are the caller's)
                    presence: false,
                    // (nor the rooms log: tests/cluster_rooms.rs)
                    rooms_event: None,
                };
                let real = m.route(&req).await.expect("route");
                let uid = match &real {
                    Routed::Accepted { message_uid, .. } => message_uid.clone(),
                    Routed::Duplicate { .. } => String::new(),
                };
                let (modelled, published) = model.route(
                    now_us(),
                    &ModelRoute {
                        user: u.into(),
                        device: d.into(),
                        instance,
                        conn: NodeConn {
                            node: 0,
                            conn: conn_id,
                        },
                        client_seq,
                        request_id,
                        message,
                        recipients: to.iter().map(|r| (r.to_string(), offline)).collect(),
                        own_copy: own.then(|| (own_target.to_owned(), false)),
                        floor_us: FLOOR,
                        message_uid: uid,
                    },
                );
                match (&real, &modelled) {
                    (
                        Routed::Accepted { seqs, own_seq, .. },
                        ModelRouted::Accepted {
                            seqs: mseqs,
                            own_seq: mown,
                            ..
                        },
                    ) => {
                        assert_eq!((seqs, own_seq), (mseqs, mown), "seed {seed} op {op}");
                        routes += 1;
                    }
                    (
                        Routed::Duplicate { upto, .. },
                        ModelRouted::Duplicate { upto: mupto, .. },
                    ) => {
                        assert_eq!(upto, mupto, "seed {seed} op {op}");
                        dups += 1;
                    }
                    _ => panic!("seed {seed} op {op}: Redis {real:?}, model {modelled:?}"),
                }
                expected.extend(published.into_iter().map(|(u, e)| from_model(u, e)));
            }
            6..=8 => {
                // Acks of 1-4 devices in one script call (a node's batch; the same user may
                // come twice): of a seq issued, or past everything (capped at the last seq on
                // both sides). Before anything was issued to the user the cap is the clock:
                // then only small seqs, below both clocks.
                let mut batch = Vec::new();
                for k in 0..1 + rng.below(4) {
                    let (u, d) = if k == 0 {
                        (u, d)
                    } else {
                        (USERS[rng.below(3) as usize], DEVICES[rng.below(2) as usize])
                    };
                    let seq = match model.last_seq(u) {
                        None => rng.below(1000),
                        Some(_) if rng.below(4) == 0 => u64::MAX,
                        Some(issued) => FLOOR - 1 + rng.below(issued - FLOOR + 2),
                    };
                    batch.push((u, d, seq));
                }
                let real = m.ack_many(APP, &batch).await.expect("ack");
                assert_eq!(real.len(), batch.len());
                for ((u, d, seq), real) in batch.iter().zip(real) {
                    let modelled = model.ack(now_us(), u, d, (*seq).min(MAX_SEQ));
                    assert_eq!(
                        (real.cursor, real.lowest, real.trimmed),
                        (modelled.cursor, modelled.lowest, modelled.trimmed),
                        "seed {seed} op {op}: ack {u}/{d} {seq}"
                    );
                    trimmed += real.trimmed;
                }
            }
            _ => {
                let real = m.register_device(APP, u, d, 0).await.expect("register");
                assert_eq!(real, model.register_device(u, d, 0), "seed {seed} op {op}");
            }
        }
    }
    // The end state: every mailbox and every user's cursors.
    for u in USERS {
        let real = m.read_above(APP, u, 0, 100_000).await.unwrap();
        let modelled = model.read_above(u, 0, 100_000);
        let view = |seq: u64, x: Option<String>, b: &[u8]| (seq, x, clockless(b));
        let real: Vec<_> = real
            .iter()
            .map(|e| view(e.seq, e.exclude_device.clone(), &e.delivered))
            .collect();
        let modelled: Vec<_> = modelled
            .iter()
            .map(|e| view(e.seq, e.exclude_device.clone(), &e.delivered))
            .collect();
        assert_eq!(real, modelled, "seed {seed}: {u}'s mailbox");
        assert_eq!(
            m.known_devices(APP, u).await.unwrap(),
            model.known_devices(u),
            "seed {seed}: {u}'s cursors"
        );
    }
    // Every publish, in order (one subscriber connection: publish order).
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every publish in time")
            .expect("subscriber running");
        match ev {
            BusEvent::Message { channel, payload } => {
                let user = USERS
                    .iter()
                    .find(|u| user_channel(APP, u) == channel)
                    .expect("a user channel");
                // (The sender's own copy carries the reply marker: two events, one publish.)
                for ev in UserEvent::decode_all(&payload).expect("a user event") {
                    got.push(from_redis(user.to_string(), ev));
                }
            }
            BusEvent::Resync => panic!("seed {seed}: unexpected resync"),
        }
    }
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "seed {seed}: publish {i}");
    }
    assert!(
        routes > 0 && dups > 0 && trimmed > 0,
        "seed {seed}: {routes} routes, {dups} duplicates, {trimmed} trimmed"
    );
}

#[tokio::test]
async fn the_scripts_agree_with_the_model() {
    for seed in 1..=8 {
        compare(seed, 300).await;
    }
}
