//! Cluster mode's failures with real processes (issue 15, docs/cluster.md step 2): several
//! `rcall-server` binaries on one private Redis, one of them killed with SIGKILL mid-stream, and
//! Redis itself killed and started again under running nodes.
//!
//! The devices here behave as the SDK does: each acks what it got and, after losing its node,
//! connects to the next node of its list with `resume_from` = the last seq it has and the same
//! SDK instance, then resends every message that was never confirmed (same `client_seq`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::TestRedis;
use common::*;
use futures::{SinkExt, StreamExt};
use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{
    media_signal, object_name, Accept, Authenticate, ClientFrame, Hangup, IceCandidate, Invite,
    MediaSignal, Ringing, SendMessage, ServerFrame,
};
use tokio_tungstenite::tungstenite::Message;

/// How long a device may take to find a live node and resume after losing its own.
const FAILOVER: Duration = Duration::from_secs(20);

/// How long the streams of the kill test may take to get through a stage (bounds for a busy
/// machine; the test measures and prints the real failover time).
const STREAMS: Duration = Duration::from_secs(120);

/// One `rcall-server` process in cluster mode, with its own SQLite file.
struct Node {
    server: Option<ChildServer>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The lost grace of the nodes the grace tests start ([`Node::start_with`]), instead of the
/// default 5 s: what they wait past.
const SHORT_GRACE: Duration = Duration::from_secs(1);

impl Node {
    async fn start(redis: &TestRedis) -> Node {
        Node::start_with(redis, &[]).await
    }

    /// A node with extra flags.
    async fn start_with(redis: &TestRedis, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let db: PathBuf = dir.path().join("rcall.db");
        let url = redis.url();
        let args: Vec<&str> = ["--redis", url.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let server = ChildServer::start(&db, &args).await;
        Node {
            addr: server.addr,
            server: Some(server),
            _dir: dir,
        }
    }

    fn token(&self, user: &str) -> String {
        rcall_server::token::issue(CHILD_APP_KEY, CHILD_APP_SECRET, user, now_ms(), 600_000)
    }

    /// A node whose lost grace is [`SHORT_GRACE`].
    async fn short_grace(redis: &TestRedis) -> Node {
        let ms = SHORT_GRACE.as_millis().to_string();
        Node::start_with(redis, &["--lost-grace-ms", &ms]).await
    }

    /// SIGKILL: its connections drop, nothing of it runs any more.
    fn kill9(&mut self) {
        self.server.take().expect("running").kill9();
    }
}

/// Nodes not taken out yet, as Redis lists them.
fn live_nodes(redis: &TestRedis) -> String {
    redis.command(&["ZCARD", rcall_server::cluster::presence::NODES_KEY])
}

fn text(target: &str, n: u32) -> SendMessage {
    SendMessage {
        message_type: "app:text".into(),
        ..private(target, &n.to_be_bytes())
    }
}

fn number(content: &[u8]) -> u32 {
    u32::from_be_bytes(content.try_into().expect("4-byte content"))
}

/// What a device saw, shared with the test.
#[derive(Default)]
struct Log {
    /// (sender, message number, seq) of every delivery, in arrival order (replays included).
    got: Vec<(String, u32, u64)>,
    /// Numbers of this device's own messages whose `SendResult` was 0.
    confirmed: Vec<u32>,
    /// The nodes it connected to, in order.
    nodes: Vec<SocketAddr>,
    /// Logins accepted (`AuthResult` 0): a device receives what is routed after its first.
    logins: u32,
    /// When its connection was lost, and when the first frame (a delivery or a confirmation)
    /// came after it connected again.
    lost_at: Option<Instant>,
    resumed_at: Option<Instant>,
    /// Any refusal (SendResult code ≠ 0) or unexpected frame.
    errors: Vec<String>,
}

impl Log {
    fn from(&self, sender: &str) -> Vec<u32> {
        self.got
            .iter()
            .filter(|(s, _, _)| s == sender)
            .map(|(_, n, _)| *n)
            .collect()
    }
}

/// A device: connects to `nodes[0]`, fails over to the next nodes in turn, and sends `count`
/// numbered messages like `template` (every 4 ms, at most `WINDOW` unconfirmed).
struct Device {
    device: String,
    instance: u64,
    nodes: Vec<SocketAddr>,
    token: String,
    send: Option<(SendMessage, u32)>,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
}

const WINDOW: usize = 32;

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap()
}

impl Device {
    fn spawn(
        device: &str,
        instance: u64,
        nodes: Vec<SocketAddr>,
        token: String,
        send: Option<(SendMessage, u32)>,
        stop: &Arc<AtomicBool>,
    ) -> (Arc<Mutex<Log>>, tokio::task::JoinHandle<()>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let d = Device {
            device: device.into(),
            instance,
            nodes,
            token,
            send,
            log: log.clone(),
            stop: stop.clone(),
        };
        (log, tokio::spawn(d.run()))
    }

    async fn run(self) {
        let mut last_seq = 0u64;
        let mut next = 0u32; // next fresh message number
        let mut node = 0usize;
        let mut pace = tokio::time::interval(Duration::from_millis(4));
        let mut first_connection = true;
        while !self.stop.load(Ordering::Relaxed) {
            // Connect: the current node, else the next ones in turn (a dead one refuses fast).
            let t0 = Instant::now();
            let mut ws = loop {
                let addr = self.nodes[node % self.nodes.len()];
                match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
                    Ok((ws, _)) => {
                        lock(&self.log).nodes.push(addr);
                        break ws;
                    }
                    Err(_) => {
                        assert!(t0.elapsed() < FAILOVER, "{}: no node takes it", self.device);
                        node += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            };
            let auth = ClientFrame::new(C::Authenticate(Authenticate {
                token: self.token.clone(),
                device_id: self.device.clone(),
                resume_from: last_seq,
                instance: self.instance,
            }));
            if ws
                .send(Message::Binary(auth.to_bytes().into()))
                .await
                .is_err()
            {
                node += 1;
                continue;
            }
            // Every message sent and not confirmed goes again, in order (a resend of one
            // that was routed is confirmed as a duplicate, not delivered twice).
            let confirmed: std::collections::HashSet<u32> =
                lock(&self.log).confirmed.iter().copied().collect();
            let mut inflight: std::collections::VecDeque<u32> =
                (0..next).filter(|n| !confirmed.contains(n)).collect();
            let mut synced = false;
            let mut resend: std::collections::VecDeque<u32> = inflight.clone();
            let lost = loop {
                if self.stop.load(Ordering::Relaxed) {
                    let _ = ws.close(None).await;
                    return;
                }
                tokio::select! {
                    _ = pace.tick(), if synced => {
                        let n = if let Some(n) = resend.pop_front() {
                            n
                        } else if let Some((_, count)) = &self.send {
                            if next >= *count || inflight.len() >= WINDOW {
                                continue;
                            }
                            next += 1;
                            inflight.push_back(next - 1);
                            next - 1
                        } else {
                            continue;
                        };
                        let msg = SendMessage {
                            request_id: n,
                            client_seq: u64::from(n) + 1,
                            content: n.to_be_bytes().to_vec(),
                            ..self.send.as_ref().unwrap().0.clone()
                        };
                        let f = ClientFrame::new(C::Send(msg));
                        if ws.send(Message::Binary(f.to_bytes().into())).await.is_err() {
                            break true;
                        }
                    }
                    m = ws.next() => {
                        let b = match m {
                            Some(Ok(Message::Binary(b))) => b,
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            _ => break true,
                        };
                        let f = ServerFrame::from_bytes(&b).expect("server frame decodes");
                        let ack = {
                            let mut log = lock(&self.log);
                            let resumed = !first_connection && log.resumed_at.is_none();
                            match f.body {
                                Some(S::AuthResult(a)) => {
                                    assert_eq!(a.code, 0, "{}: {}", self.device, a.message);
                                    log.logins += 1;
                                    None
                                }
                                Some(S::SyncDone(_)) => {
                                    synced = true;
                                    None
                                }
                                Some(S::Deliver(d)) => {
                                    if resumed {
                                        log.resumed_at = Some(Instant::now());
                                    }
                                    log.got.push((d.sender_user_id.clone(), number(&d.content), d.seq));
                                    if d.seq <= last_seq {
                                        log.errors.push(format!("seq {} after {last_seq}", d.seq));
                                    }
                                    last_seq = last_seq.max(d.seq);
                                    Some(d.seq)
                                }
                                Some(S::SendResult(r)) => {
                                    if resumed {
                                        log.resumed_at = Some(Instant::now());
                                    }
                                    if r.code == 0 {
                                        log.confirmed.push(r.request_id);
                                        inflight.retain(|n| *n != r.request_id);
                                    } else {
                                        log.errors.push(format!("request {} refused {}", r.request_id, r.code));
                                    }
                                    None
                                }
                                other => {
                                    log.errors.push(format!("unexpected {other:?}"));
                                    None
                                }
                            }
                        };
                        if let Some(seq) = ack {
                            let ack = ClientFrame::new(C::Ack(rtc_core::proto::Ack { seq }));
                            if ws.send(Message::Binary(ack.to_bytes().into())).await.is_err() {
                                break true;
                            }
                        }
                    }
                }
            };
            if lost {
                lock(&self.log).lost_at.get_or_insert_with(Instant::now);
                first_connection = false;
                node += 1;
            }
        }
    }
}

/// Every message confirmed to its sender reaches each recipient device exactly once, in
/// order; returns (lost, duplicated) counts for the report.
fn check_stream(sender: &str, sent: &Log, device: &str, recipient: &Log, count: u32) {
    let got = recipient.from(sender);
    let mut confirmed = sent.confirmed.clone();
    confirmed.sort_unstable();
    confirmed.dedup();
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for n in &got {
        *seen.entry(*n).or_default() += 1;
    }
    let lost: Vec<u32> = confirmed
        .iter()
        .filter(|n| !seen.contains_key(n))
        .copied()
        .collect();
    let duplicated: usize = seen.values().map(|c| c - 1).sum();
    println!(
        "{sender} -> {device}: {} confirmed, {} delivered, lost {}, duplicated {duplicated}",
        confirmed.len(),
        got.len(),
        lost.len()
    );
    assert_eq!(
        confirmed,
        (0..count).collect::<Vec<_>>(),
        "{sender}: every message confirmed in the end"
    );
    assert!(lost.is_empty(), "{sender} -> {device}: lost {lost:?}");
    assert_eq!(duplicated, 0, "{sender} -> {device}: duplicated: {got:?}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{sender} -> {device}: out of order: {got:?}"
    );
}

/// A signed Server API call to `node` that must answer `{"code":200}`.
async fn api(node: &Node, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let resp = signed_post(node.addr, path, CHILD_APP_KEY, CHILD_APP_SECRET, form).await;
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 200, "{path}: {body}");
    body
}

/// Three nodes. On node 0: alice's a1 and bob's b1; on node 1: carol and dave; on node 2:
/// alice's a2 and bob's b2. alice streams to bob (her own copies reach a2), carol to alice,
/// dave to the group {alice, bob, dave}; node 0 is SIGKILLed mid-stream. a1 fails over to node
/// 1, b1 to node 2: every confirmed message arrives once at each recipient device, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_and_duplicates_nothing() {
    const N: u32 = 600;
    let redis = TestRedis::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&redis).await);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let at = |order: &[usize]| order.iter().map(|&i| addrs[i]).collect::<Vec<_>>();
    let members = [("userId", "alice"), ("userId", "bob"), ("userId", "dave")];
    api(
        &nodes[1],
        "/group/create.json",
        &[&[("groupId", "g")][..], &members].concat(),
    )
    .await;
    for node in &nodes {
        eventually("every node knows the group", || async {
            api(node, "/group/user/query.json", &[("groupId", "g")]).await["users"]
                .as_array()
                .is_some_and(|u| u.len() == 3)
        })
        .await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let spawn = |device: &str, user: &str, order: &[usize], send: Option<SendMessage>| {
        let token = nodes[order[0]].token(user);
        let instance = u64::from(device.as_bytes()[0]) << 8 | u64::from(device.as_bytes()[1]);
        Device::spawn(
            device,
            instance,
            at(order),
            token,
            send.map(|m| (m, N)),
            &stop,
        )
    };
    // The recipients are logged in before the streams start. (A device is new until its first
    // login and gets only what is routed after it, or what was stored offline for its user: a
    // message routed to a2 while a1 was still logging in is not a1's. Waiting only for the
    // sockets, this test once counted carol's first message to a1 lost under a loaded CI.)
    let (b1, b1_task) = spawn("b1", "bob", &[0, 2, 1], None);
    let (b2, b2_task) = spawn("b2", "bob", &[2], None);
    let (a2, a2_task) = spawn("a2", "alice", &[2], None);
    eventually("the receiving devices are logged in", || async {
        [&b1, &b2, &a2].iter().all(|l| lock(l).logins == 1)
    })
    .await;
    let (a1, a1_task) = spawn("a1", "alice", &[0, 1, 2], Some(text("bob", 0)));
    // a1 receives carol's and dave's streams: logged in before they start.
    eventually("a1 is logged in", || async { lock(&a1).logins == 1 }).await;
    let (c1, c1_task) = spawn("c1", "carol", &[1], Some(text("alice", 0)));
    let to_group = SendMessage {
        message_type: "app:text".into(),
        ..group("g", &["alice", "bob"], &[])
    };
    let (d1, d1_task) = spawn("d1", "dave", &[1], Some(to_group));

    // Mid-stream: a third of each stream is through (generous: the machine may be busy).
    let t0 = Instant::now();
    loop {
        let third = {
            let (x, y) = (lock(&b2), lock(&a2));
            ["alice", "dave"]
                .iter()
                .all(|s| x.from(s).len() as u32 >= N / 3)
                && y.from("carol").len() as u32 >= N / 3
        };
        if third {
            break;
        }
        assert!(
            t0.elapsed() < STREAMS,
            "a third of every stream not delivered within {STREAMS:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = Instant::now();
    nodes[0].kill9();
    let (ab, dg) = {
        let b2 = lock(&b2);
        (b2.from("alice").len(), b2.from("dave").len())
    };
    let ca = lock(&a2).from("carol").len();
    println!("node 0 killed at alice->bob #{ab}, carol->alice #{ca}, dave->g #{dg}");

    // (sender, its log, recipient device, its log)
    let streams = [
        ("alice", &a1, "b1", &b1),
        ("alice", &a1, "b2", &b2),
        ("alice", &a1, "a2", &a2),
        ("carol", &c1, "a1", &a1),
        ("carol", &c1, "a2", &a2),
        ("dave", &d1, "a1", &a1),
        ("dave", &d1, "a2", &a2),
        ("dave", &d1, "b1", &b1),
        ("dave", &d1, "b2", &b2),
    ];
    let t0 = Instant::now();
    loop {
        let pending: Vec<String> = streams
            .iter()
            .filter(|(s, from, _, to)| {
                (lock(from).confirmed.len() as u32) < N || lock(to).from(s).last() != Some(&(N - 1))
            })
            .map(|(s, _, d, to)| format!("{s}->{d} at {}", lock(to).from(s).len()))
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < STREAMS,
            "streams not complete within {STREAMS:?}: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A duplicate would come behind the last message: give one a moment to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in [b1_task, b2_task, a2_task, a1_task, c1_task, d1_task] {
        t.await.unwrap();
    }

    for (name, log) in [
        ("a1", &a1),
        ("a2", &a2),
        ("b1", &b1),
        ("b2", &b2),
        ("c1", &c1),
        ("d1", &d1),
    ] {
        let errors = lock(log).errors.clone();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    // The killed node's devices moved to the next node of their list; the others stayed.
    assert_eq!(lock(&a1).nodes, at(&[0, 1]), "a1's nodes");
    assert_eq!(lock(&b1).nodes, at(&[0, 2]), "b1's nodes");
    for (name, log) in [("a2", &a2), ("b2", &b2), ("c1", &c1), ("d1", &d1)] {
        assert_eq!(lock(log).nodes.len(), 1, "{name} stayed");
    }
    for (sender, from, device, to) in streams {
        check_stream(sender, &lock(from), device, &lock(to), N);
    }
    // Nothing else: no copy of a device's own message to itself, nothing for carol or dave.
    assert!(lock(&a1).from("alice").is_empty());
    assert!(lock(&c1).got.is_empty() && lock(&d1).got.is_empty());
    for (name, log) in [("a1", &a1), ("b1", &b1)] {
        let log = lock(log);
        let lost = log
            .lost_at
            .expect("lost its node")
            .duration_since(killed_at);
        let resumed = log.resumed_at.expect("resumed").duration_since(killed_at);
        println!(
            "{name}: connection lost {} ms after the kill, delivery resumed {} ms after it",
            lost.as_millis(),
            resumed.as_millis()
        );
    }
}

fn media(to_user: &str, to_device: &str, kind: media_signal::Kind) -> CallBody {
    CallBody::Media(MediaSignal {
        to_user_id: to_user.into(),
        to_device_id: to_device.into(),
        kind: Some(kind),
    })
}

fn candidate(c: &str) -> media_signal::Kind {
    media_signal::Kind::Candidate(IceCandidate {
        candidate: c.into(),
        ..Default::default()
    })
}

/// `from` sends `msg`, `to` gets it (and acks it): returns its seq.
async fn step(from: &mut Client, to: &mut Client, req: u32, msg: SendMessage) -> u64 {
    let kind = msg.message_type.clone();
    from.send_expect(req, msg, 0).await;
    let d = to.recv_delivered().await;
    assert_eq!(d.message_type, kind, "{}", to.device_id);
    to.ack(d.seq).await;
    d.seq
}

/// A 1:1 call between alice (node 1) and bob (node 0); node 0 is SIGKILLed in the middle of the
/// media negotiation. Bob's device connects to node 2 and resumes: the call goes on (the next
/// negotiation steps flow both ways), and nobody hears a hangup it did not send, not even after
/// a lost device's grace.
#[tokio::test]
async fn a_call_survives_the_kill_of_the_callees_node() {
    let redis = TestRedis::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::short_grace(&redis).await);
    }
    let mut alice = Client::login(nodes[1].addr, &nodes[1].token("alice"), "a1").await;
    let mut bob = Client::login(nodes[0].addr, &nodes[0].token("bob"), "b1").await;
    let call = "call-k";
    let invite = CallBody::Invite(Invite {
        media_type: 2,
        invite_user_ids: vec!["bob".into()],
        ..Default::default()
    });
    step(&mut alice, &mut bob, 1, call_message("bob", call, invite)).await;
    step(
        &mut bob,
        &mut alice,
        1,
        call_message("alice", call, CallBody::Ringing(Ringing {})),
    )
    .await;
    let accept = CallBody::Accept(Accept { media_type: 2 });
    step(&mut bob, &mut alice, 2, call_message("alice", call, accept)).await;
    let offer = media("bob", "b1", media_signal::Kind::Offer("sdp-offer".into()));
    let mut bob_seq = step(&mut alice, &mut bob, 2, call_message("bob", call, offer)).await;
    bob.barrier(1).await; // (the ack is in)

    nodes[0].kill9();
    bob.expect_closed().await;
    // Sent while bob has no connection: waits in his mailbox.
    let ice = media("bob", "b1", candidate("c1"));
    alice
        .send_expect(3, call_message("bob", call, ice), 0)
        .await;
    let (mut bob, replay) =
        Client::login_resume(nodes[2].addr, &nodes[2].token("bob"), "b1", bob_seq).await;
    assert_eq!(
        replay.len(),
        1,
        "only what came after the last ack: {replay:?}"
    );
    assert_eq!(replay[0].message_type, object_name::MEDIA);
    bob_seq = replay[0].seq;
    bob.ack(bob_seq).await;

    // The call goes on from the new node, both ways.
    let answer = media(
        "alice",
        "a1",
        media_signal::Kind::Answer("sdp-answer".into()),
    );
    step(&mut bob, &mut alice, 3, call_message("alice", call, answer)).await;
    let ice = media("bob", "b1", candidate("c2"));
    assert!(step(&mut alice, &mut bob, 4, call_message("bob", call, ice)).await > bob_seq);

    // No hangup on anyone's behalf, even once a lost device's grace would be over: the grace
    // of node 0's devices starts when another node takes node 0 out (5 beats after its kill).
    eventually("node 0 taken out", || async { live_nodes(&redis) == ":2" }).await;
    tokio::time::sleep(SHORT_GRACE + Duration::from_secs(1)).await;
    alice.barrier(10).await;
    bob.barrier(11).await;
    let hangup = CallBody::Hangup(Hangup { reason: 3 });
    step(&mut alice, &mut bob, 5, call_message("bob", call, hangup)).await;
    alice.barrier(12).await;
    bob.barrier(13).await;
}

/// `from` sends message `n` to `to`'s user, `to` gets it: returns its seq.
async fn roundtrip(from: &mut Client, to: &mut Client, n: u32, req: u32) -> u64 {
    from.send_expect(req, text(&to.user_id, n), 0).await;
    let d = to.recv_delivered().await;
    assert_eq!(number(&d.content), n);
    d.seq
}

/// Waits until a login through `addr` succeeds (the node reaches Redis again: a login reads
/// the instance's accepted `client_seq`s there; refused 31003 until then).
async fn until_node_reaches_redis(addr: SocketAddr, token: &str) {
    let t0 = Instant::now();
    loop {
        let mut c = Client::authenticate(addr, token, "probe", 0).await;
        match c.recv().await.body {
            Some(S::AuthResult(a)) if a.code == 0 => return,
            Some(S::AuthResult(a)) => assert_eq!(a.code, 31003, "{}", a.message),
            other => panic!("expected AuthResult, got {other:?}"),
        }
        assert!(
            t0.elapsed() < CATCH_UP,
            "{addr}: no login after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis killed and started again (empty) under running node processes: once Redis is back
/// each node resyncs by itself and routes again, to and from devices that never reconnected.
/// (A send while Redis is away closes its connection: `cluster_route.rs`.)
#[tokio::test]
async fn nodes_resync_after_a_redis_restart() {
    let mut redis = TestRedis::start();
    let (n0, n1) = (Node::start(&redis).await, Node::start(&redis).await);
    let mut alice = Client::login(n0.addr, &n0.token("alice"), "a1").await;
    let mut bob = Client::login(n1.addr, &n1.token("bob"), "b1").await;
    let before = roundtrip(&mut alice, &mut bob, 1, 1).await;

    redis.kill();
    redis.start_again();
    until_node_reaches_redis(n0.addr, &n0.token("probe")).await;
    until_node_reaches_redis(n1.addr, &n1.token("probe")).await;
    // Each routed message arrives over the other node's renewed subscription (or its resync's
    // re-read of the mailbox), once.
    let after = roundtrip(&mut alice, &mut bob, 2, 2).await;
    assert!(after > before, "{after} > {before}");
    roundtrip(&mut bob, &mut alice, 3, 3).await;
    alice.barrier(1).await;
    bob.barrier(2).await;
}

/// What an SDK instance got accepted is the cluster's knowledge, not one node's: a message
/// without receipt (confirmed only by number) counts in `Pong.accepted_upto` on the node that
/// routed it, and in `AuthResult.accepted_upto` when the instance connects to another node
/// (otherwise the SDK would keep it unconfirmed, and send it again after every reconnect).
#[tokio::test]
async fn accepted_upto_counts_what_the_cluster_accepted() {
    let redis = TestRedis::start();
    let (n0, n1) = (Node::start(&redis).await, Node::start(&redis).await);
    let mut bob = Client::login(n1.addr, &n1.token("bob"), "b1").await;
    let (mut alice, auth, _) =
        Client::login_instance(n0.addr, &n0.token("alice"), "a1", 0, 0xA11CE).await;
    assert_eq!(auth.accepted_upto, 0);
    for client_seq in 1..=2 {
        let msg = SendMessage {
            client_seq,
            no_receipt: true,
            ..text("bob", client_seq as u32)
        };
        alice.send_message(0, msg).await;
        assert_eq!(
            number(&bob.recv_delivered().await.content),
            client_seq as u32
        );
    }
    assert_eq!(
        alice.ping_accepted_upto(1).await,
        2,
        "Pong on the routing node"
    );
    drop(alice);
    let (mut alice, auth, replay) =
        Client::login_instance(n1.addr, &n1.token("alice"), "a1", 0, 0xA11CE).await;
    assert_eq!(auth.accepted_upto, 2, "AuthResult on another node");
    assert!(replay.is_empty(), "{replay:?}");
    assert_eq!(alice.ping_accepted_upto(2).await, 2);
    bob.barrier(3).await;
}

/// Sends `signal` (e.g. "STOP", "CONT") to `node`'s process.
fn signal(node: &Node, signal: &str) {
    let pid = node.server.as_ref().expect("running").child.id();
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// A partition that heals: bob's node freezes (SIGSTOP: its sockets stay open, nothing is
/// answered) in the middle of a call, bob's device gives that connection up and resumes on
/// another node, the call goes on there. When the frozen node runs again it finds bob's old
/// connection closed: nobody hears a hangup on bob's behalf, not even once a lost device's
/// grace is over, since the device is connected (and in the call) on another node.
#[tokio::test]
async fn a_frozen_node_that_runs_again_does_not_hang_up_for_a_device_that_moved() {
    let redis = TestRedis::start();
    let (n0, n1) = (
        Node::short_grace(&redis).await,
        Node::short_grace(&redis).await,
    );
    let mut alice = Client::login(n1.addr, &n1.token("alice"), "a1").await;
    let mut bob = Client::login(n0.addr, &n0.token("bob"), "b1").await;
    let call = "call-p";
    let invite = CallBody::Invite(Invite {
        media_type: 2,
        invite_user_ids: vec!["bob".into()],
        ..Default::default()
    });
    let last = step(&mut alice, &mut bob, 1, call_message("bob", call, invite)).await;
    let accept = CallBody::Accept(Accept { media_type: 2 });
    step(&mut bob, &mut alice, 1, call_message("alice", call, accept)).await;
    bob.barrier(1).await;

    signal(&n0, "STOP");
    drop(bob); // the SDK gives the silent socket up
    let (mut bob, replay) = Client::login_resume(n1.addr, &n1.token("bob"), "b1", last).await;
    assert!(replay.is_empty(), "{replay:?}");
    let answer = media("alice", "a1", media_signal::Kind::Answer("sdp".into()));
    step(&mut bob, &mut alice, 2, call_message("alice", call, answer)).await;

    signal(&n0, "CONT");
    tokio::time::sleep(SHORT_GRACE + Duration::from_secs(2)).await;
    alice.barrier(3).await; // no hangup on bob's behalf
    bob.barrier(4).await;
    let ice = media("bob", "b1", candidate("c1"));
    step(&mut alice, &mut bob, 2, call_message("bob", call, ice)).await;
}

/// A device resuming on another node gets nothing it already has, also when that node's clock
/// is behind Redis's (seqs are Redis's clock, in µs): the device's `resume_from` is a seq Redis
/// issued, not to be capped at the node's own clock. Here Redis's seqs for bob run a minute
/// ahead of the nodes' clocks, and bob's acks never reached Redis (lost with his node).
#[tokio::test]
async fn a_resume_on_another_node_skips_what_the_device_has_when_its_clock_is_behind_redis() {
    let redis = TestRedis::start();
    let (n0, n1) = (Node::start(&redis).await, Node::start(&redis).await);
    let ahead = (now_ms() as u64 + 60_000) * 1000;
    let key = rcall_server::cluster::keys::user_seq(CHILD_APP_KEY, "bob");
    let mut r = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(ahead)
        .query_async(&mut r)
        .await
        .unwrap();
    let mut alice = Client::login(n1.addr, &n1.token("alice"), "a1").await;
    let mut bob = Client::login(n0.addr, &n0.token("bob"), "b1").await;
    let mut last = 0;
    for n in 1..=3 {
        alice.send_expect(n, text("bob", n), 0).await;
        let d = bob.recv_delivered().await;
        assert_eq!(number(&d.content), n);
        assert!(d.seq > ahead, "seqs run ahead of the nodes' clocks");
        last = d.seq; // (not acked)
    }
    drop(bob);
    let (mut bob, replay) = Client::login_resume(n1.addr, &n1.token("bob"), "b1", last).await;
    let got: Vec<u32> = replay.iter().map(|d| number(&d.content)).collect();
    assert!(got.is_empty(), "replayed again: {got:?}");
    alice.send_expect(4, text("bob", 4), 0).await;
    let d = bob.recv_delivered().await;
    assert_eq!(number(&d.content), 4);
    assert!(d.seq > last);
    bob.barrier(1).await;
}
