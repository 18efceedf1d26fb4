//! Many connections over a cluster, and a node killed under them (issue 15).
//!
//! `--failover-conns N --nodes URL,… --node-pids PID,…` (`--redis-pid`): N authenticated
//! connections, in pairs, spread over the nodes with every pair split across two nodes (pair p:
//! caller on node p mod n, callee on node p+1 mod n), run 1:1 call signalling at a fixed total
//! rate (`--failover-rate`) for `--failover-secs`; at `--kill-at-secs` the coordinator
//! `kill -9`s node `--kill-node`. Its clients reconnect to the next URL of their own list (the
//! SDK's `navi` list: home node first, then the others in an order that spreads the failover and
//! puts the peer's node last) and resume from the last seq they processed, then resend what
//! the server had not confirmed, as `rtc_core::link::ClientLink` does.
//!
//! The machine caps a process at 20,000 open files, so the generator is `--workers` processes
//! (this binary again, `--failover-worker K`), each holding whole pairs: a pair's latency is
//! measured on one clock. Sources are spread over `--source-addrs` loopback addresses
//! (127.0.0.2…) so neither ephemeral ports nor the server's per-IP cap on unauthenticated
//! sockets binds.
//!
//! Counted by the generator: every message carries its sender's `client_seq` (1, 2, 3 … per
//! client, kept across reconnects); each recipient counts what it got per number. After the
//! traffic stops and a drain (until every client is connected, has every `SendResult` and
//! got nothing for 2 s; at most `--drain-secs`), lost = numbers the peer issued that never
//! arrived (confirmed to the sender or not; to a recipient connected at the end or not),
//! duplicated = arrivals beyond the first. Resume time = from the kill to the
//! `SyncDone` on the new node, per client of the killed node.
//!
//! Worker ↔ coordinator: the worker prints `CONNECTED …` once its connections are up, reads
//! `GO <start wall ms> <kill wall ms>` from stdin, runs, prints its counts and exits.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{Ack, Authenticate, ClientFrame, Ping, SendMessage, ServerFrame};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{cpu_secs, instance_id, now_ns, rss_bytes, SCRIPT};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Failover run: connections (even; 0 = off). Replaces every other phase.
    #[arg(long, default_value_t = 0)]
    pub failover_conns: usize,
    /// Failover run: the nodes' WebSocket URLs (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Failover run: the nodes' process ids, same order (RSS, CPU, and the one to kill)
    #[arg(long, value_delimiter = ',')]
    pub node_pids: Vec<u32>,
    /// Failover run: total offered messages per second
    #[arg(long, default_value_t = 5000)]
    pub failover_rate: u64,
    /// Failover run: seconds of traffic
    #[arg(long, default_value_t = 60)]
    pub failover_secs: u64,
    /// Failover run: seconds into the traffic at which a node is killed (0 = no kill)
    #[arg(long, default_value_t = 25)]
    pub kill_at_secs: u64,
    /// Failover run: which node to kill (index into --nodes)
    #[arg(long, default_value_t = 0)]
    pub kill_node: usize,
    /// Failover run: generator processes
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Failover run: loopback source addresses (127.0.0.2 …)
    #[arg(long, default_value_t = 32)]
    pub source_addrs: u8,
    /// Failover run: a reconnecting client waits a random 0..this before its first attempt.
    /// 0, as the SDK (`im::reconnect_delay`: the first retry goes at once, the next node at
    /// once after a failure, a jittered backoff only after a whole round of failures).
    #[arg(long, default_value_t = 0)]
    pub reconnect_jitter_ms: u64,
    /// Failover run: how long a reconnect attempt waits for its `AuthResult` before the next
    /// node is tried: the SDK's `RECONNECT_TIMEOUT_MS`
    #[arg(long, default_value_t = 3000)]
    pub attempt_timeout_ms: u64,
    /// Failover run: after a busy refusal (31003), wait the backoff with its idle cap (as the
    /// SDK did before the nodes gave turns) instead of the node's turn
    /// (`AuthResult.retry_after_ms`): the A/B knob of the busy retry
    #[arg(long)]
    pub ignore_retry_after: bool,
    /// Failover run: the nodes' logs (comma-separated), with the debug lines of
    /// `rcall_server::cluster::login`: the server's per-stage login times after the kill
    #[arg(long, value_delimiter = ',')]
    pub node_logs: Vec<String>,
    /// Failover run: at most this many seconds after the traffic for resends and replays to
    /// arrive (the drain ends sooner once every client is connected, confirmed and quiet)
    #[arg(long, default_value_t = 60)]
    pub drain_secs: u64,
    /// Failover run: connections each worker opens at once
    #[arg(long, default_value_t = 64)]
    pub failover_connect_concurrency: usize,
    /// Failover run: each client sends an app `Ping` this often, whatever else it sends, as the
    /// SDK does (`im::PING_INTERVAL_MS`, 5 s); 0 = never (clients silent between messages, so
    /// the server's WebSocket pings and their pongs keep them alive instead). Default on: with
    /// most connections idle, liveness is a large part of a node's CPU, and silent clients
    /// measure another path than browsers take (BENCHMARKS.md, "the cost of liveness").
    #[arg(long, default_value_t = 5000)]
    pub client_ping_ms: u64,
    /// Failover run: each worker writes every reconnect attempt to PREFIX.K.log (its start,
    /// the node, its end and outcome: `ok`, `busy <turn ms>` or `fail`), the kill's wall ms on
    /// the first line: the storm's turns and arrivals per node (crates/loadgen/storm.py)
    #[arg(long)]
    pub attempt_log: Option<String>,
    /// Internal: run as worker K of the failover run
    #[arg(long, hide = true)]
    pub failover_worker: Option<usize>,
}

/// Client-side stages of a reconnect (see [`Client::stages`]).
const STAGES: usize = 6;
/// Names of the intervals between consecutive [`Client::stages`] (and from the kill to the
/// first).
const STAGE_NAMES: [&str; STAGES] =
    ["kill→noticed", "noticed→attempt", "attempt→tcp", "tcp→upgraded", "upgraded→AuthResult", "AuthResult→SyncDone"];

/// The SDK's reconnect backoff (`crates/sdk/src/im.rs::reconnect_delay`): round `n` of failures
/// (0 = none) → ms before the next round; capped as in a call (unconfirmed messages wait),
/// or, after a busy refusal (`busy`, see [`after_failure`]), at the idle cap as the SDK does.
fn reconnect_delay(n: u32, busy: bool, random: f64) -> u64 {
    if n == 0 {
        return 0;
    }
    let (base, cap) = (100.0f64, if busy { 4000.0f64 } else { 800.0f64 });
    let b = (base * 2f64.powi(n.min(20) as i32 - 1)).min(cap);
    (b * (0.5 + random)).min(cap) as u64
}

/// The SDK's `im::busy_delay`: the wait before coming back to a busy node that gave the turn
/// `retry_after_ms`, that turn +0–20 %, at most the idle cap (4 s).
fn busy_delay(retry_after_ms: u32, random: f64) -> u64 {
    (f64::from(retry_after_ms) * (1.0 + 0.2 * random)).min(4000.0) as u64
}

/// The SDK's `im::round_delay`: a busy node's turn when it gave one, else the backoff.
fn round_delay(n: u32, busy: bool, retry_after_ms: u32, random: f64) -> u64 {
    if retry_after_ms > 0 {
        busy_delay(retry_after_ms, random)
    } else {
        reconnect_delay(n, busy, random)
    }
}

/// The SDK's `im::after_failure`: an attempt refused as busy (31003) ends the round at once
/// (its wait: the node's turn, else the backoff with the idle cap); other failures try the
/// next node first.
fn after_failure(refusal: &str, round_over: bool) -> (bool, bool) {
    let busy = refusal.starts_with(BUSY_REFUSAL);
    (round_over || busy, busy)
}

/// How [`Client::handle`] words a busy refusal.
const BUSY_REFUSAL: &str = "auth refused 31003";

/// First seconds of the traffic left out of the steady-state latency and rate.
const WARMUP_SECS: u64 = 5;
/// Latency histogram: 0.1 ms buckets up to 30 s.
const BUCKET_US: u64 = 100;
const BUCKETS: usize = 300_000;

fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// The node of connection `i` (pair i / 2: caller on p mod n, callee on p + 1 mod n).
fn home(i: usize, n: usize) -> usize {
    (i / 2 + i % 2) % n
}

/// Connection `i`'s list of nodes: its home; then the nodes that are neither its home nor its
/// peer's, rotated by `i`; its peer's node last (a pair stays split where it can).
///
/// The rotation spreads a dead node's clients evenly over all the survivors, as a load
/// balancer in front of the nodes would. Of a node's clients, the callers (peer on the next
/// node) may not go to the next node and the callees (peer on the previous one) not to the
/// previous one, so each half has one node the other cannot use: it gets that node twice in
/// its rotation (2 of n − 1 slots, the n − 3 others 1 each), and every survivor then takes
/// 1/(n − 1) of the dead node's clients. (A plain rotation over each half's n − 2 nodes gave
/// the n − 3 nodes both halves use 2/(n − 2) of them each and the other two half that: at 7
/// nodes four survivors took 20 % and two 10 %, and the storm lasted as long as the four
/// took: BENCHMARKS.md "Session 19".)
fn node_order(i: usize, n: usize) -> Vec<usize> {
    let (me, peer) = (home(i, n), home(i ^ 1, n));
    let others: Vec<usize> = (0..n).filter(|&k| k != me && k != peer).collect();
    let mut order = vec![me];
    if !others.is_empty() {
        // The node only this half may use: the previous one for a caller, the next for a callee.
        let own = if i.is_multiple_of(2) { (me + n - 1) % n } else { (me + 1) % n };
        let mut slots = others.clone();
        if let Some(at) = others.iter().position(|&k| k == own) {
            slots.insert(at, own);
        }
        let first = slots[(i / 2) % slots.len()];
        let start = others.iter().position(|&k| k == first).unwrap_or(0);
        for j in 0..others.len() {
            order.push(others[(start + j) % others.len()]);
        }
    }
    if peer != me {
        order.push(peer);
    }
    order
}

/// A message the server has not confirmed yet.
struct Pending {
    client_seq: u64,
    request_id: u32,
    no_receipt: bool,
    frame: Vec<u8>,
}

/// One client, shared between its connection task and the worker's driver.
struct Client {
    user: Arc<str>,
    peer: Arc<str>,
    urls: Vec<String>,
    /// Index into `urls` of the node it is on (or trying).
    at: usize,
    src: Ipv4Addr,
    instance: u64,
    next_seq: u64,
    next_req: u32,
    unconfirmed: VecDeque<Pending>,
    /// Highest `client_seq` written on the current connection.
    written: u64,
    /// Highest `seq` processed: the resume point.
    last_seq: u64,
    acked: u64,
    /// Arrivals per peer `client_seq` (index 0 unused).
    got: Vec<u8>,
    /// Deliveries read, of any sender (the drain waits for them to stop).
    arrivals: u64,
    /// (issue time ns, latency µs) of every first arrival.
    lat: Vec<(u64, u32)>,
    connected: bool,
    /// Wall µs of the `SyncDone` of each reconnect.
    resumed: Vec<i64>,
    /// Wall µs at which the current connection was found ended (0: none yet).
    noticed: i64,
    /// Per reconnect, wall µs of: the old connection found ended, the successful attempt's
    /// start, its TCP connect, its WebSocket upgrade, its `AuthResult`, its `SyncDone`.
    stages: Vec<[i64; STAGES]>,
    /// Deliveries whose seq was not above the resume point (the server replayed what the
    /// client said it had processed).
    below_resume: u64,
    send_errors: u64,
    /// `client_seq`s the server refused (a `SendResult` with a code: the app hears of it, so
    /// not counted as lost).
    refused: Vec<u64>,
    connect_failures: u64,
    /// The last refusal's `AuthResult.retry_after_ms` (a busy node's turn; 0: none).
    retry_after_ms: u32,
    /// Why connections ended or attempts failed, and the codes of refused sends: (what, count).
    why: Vec<(String, u64)>,
    /// Index into the run's nodes of each of `urls` (the attempt log's node).
    node_ids: Vec<usize>,
    /// Reconnect attempts: (start wall µs, node, end wall µs, turn ms if busy, else -1 failed,
    /// -2 ok).
    attempts: Vec<(i64, usize, i64, i64)>,
}

impl Client {
    fn new(user: Arc<str>, peer: Arc<str>, urls: Vec<String>, node_ids: Vec<usize>, src: Ipv4Addr) -> Self {
        Client {
            instance: instance_id(&user),
            user,
            peer,
            urls,
            at: 0,
            src,
            next_seq: 1,
            next_req: 0,
            unconfirmed: VecDeque::new(),
            written: 0,
            last_seq: 0,
            acked: 0,
            got: Vec::new(),
            arrivals: 0,
            lat: Vec::new(),
            connected: false,
            resumed: Vec::new(),
            noticed: 0,
            stages: Vec::new(),
            below_resume: 0,
            send_errors: 0,
            refused: Vec::new(),
            connect_failures: 0,
            retry_after_ms: 0,
            why: Vec::new(),
            node_ids,
            attempts: Vec::new(),
        }
    }

    /// Connected, and every message waiting for a `SendResult` has it (the last messages
    /// without one are confirmed only by a later message's).
    fn settled(&self) -> bool {
        self.connected && self.unconfirmed.iter().all(|u| u.no_receipt)
    }

    fn note(&mut self, what: String) {
        match self.why.iter_mut().find(|w| w.0 == what) {
            Some(w) => w.1 += 1,
            None => self.why.push((what, 1)),
        }
    }

    fn issue(&mut self, step: usize, payload: usize) {
        let client_seq = self.next_seq;
        self.next_seq += 1;
        self.next_req = self.next_req.wrapping_add(1);
        let no_receipt = matches!(SCRIPT[step].1, "RCall:Media" | "RC:VCRinging");
        let mut content = now_ns().to_be_bytes().to_vec();
        content.resize(payload.saturating_sub(60).max(16), b'x');
        let frame = ClientFrame::new(C::Send(SendMessage {
            request_id: self.next_req,
            conversation_type: 1,
            target_id: self.peer.to_string(),
            message_type: SCRIPT[step].1.into(),
            content,
            no_receipt,
            client_seq,
            ..Default::default()
        }))
        .to_bytes();
        self.unconfirmed.push_back(Pending { client_seq, request_id: self.next_req, no_receipt, frame });
    }

    /// Frames to write now: what was issued since the last write.
    fn take_unwritten(&mut self) -> Vec<Vec<u8>> {
        if !self.connected {
            return Vec::new();
        }
        let w = self.written;
        let out: Vec<Vec<u8>> = self.unconfirmed.iter().filter(|p| p.client_seq > w).map(|p| p.frame.clone()).collect();
        if let Some(p) = self.unconfirmed.back() {
            self.written = self.written.max(p.client_seq);
        }
        out
    }

    /// Authenticated: as `ClientLink::connected`, forgets what the server has (except messages
    /// whose `SendResult` someone waits for) and resends the rest.
    fn on_connected(&mut self, accepted_upto: u64) -> Vec<Vec<u8>> {
        self.connected = true;
        self.unconfirmed.retain(|u| u.client_seq > accepted_upto || !u.no_receipt);
        self.written = 0;
        self.take_unwritten()
    }

    fn handle(&mut self, frame: &[u8]) -> Event {
        let Ok(f) = ServerFrame::from_bytes(frame) else { return Event::None };
        match f.body {
            Some(S::Deliver(d)) => {
                self.arrivals += 1;
                if d.seq <= self.last_seq {
                    self.below_resume += 1;
                }
                self.last_seq = self.last_seq.max(d.seq);
                let n = d.client_seq as usize;
                if d.sender_user_id.as_str() == &*self.peer && n > 0 {
                    if self.got.len() <= n {
                        self.got.resize(n + 1, 0);
                    }
                    self.got[n] = self.got[n].saturating_add(1);
                    if self.got[n] == 1 && d.content.len() >= 8 {
                        let t = u64::from_be_bytes(d.content[..8].try_into().unwrap());
                        let l = now_ns().saturating_sub(t) / 1000;
                        self.lat.push((t, l.min(u64::from(u32::MAX)) as u32));
                    }
                }
                Event::None
            }
            Some(S::SendResult(r)) => {
                if r.code != 0 {
                    self.send_errors += 1;
                    self.note(format!("send refused {}", r.code));
                    if let Some(u) = self.unconfirmed.iter().find(|u| u.request_id == r.request_id) {
                        let n = u.client_seq;
                        self.refused.push(n);
                    }
                }
                if let Some(i) = self.unconfirmed.iter().position(|u| u.request_id == r.request_id) {
                    self.unconfirmed.drain(..=i);
                }
                Event::None
            }
            Some(S::Pong(p)) => {
                while self.unconfirmed.front().is_some_and(|u| u.client_seq <= p.accepted_upto) {
                    self.unconfirmed.pop_front();
                }
                Event::None
            }
            Some(S::AuthResult(a)) if a.code != 0 => {
                self.retry_after_ms = a.retry_after_ms;
                Event::Refused(format!("auth refused {}: {}", a.code, a.message))
            }
            Some(S::AuthResult(a)) => Event::Auth(a.accepted_upto),
            Some(S::SyncDone(_)) => Event::SyncDone,
            Some(S::Kicked(k)) => Event::Refused(format!("kicked: {k:?}")),
            _ => Event::None,
        }
    }
}

enum Event {
    None,
    Auth(u64),
    SyncDone,
    Refused(String),
}

type Ws = WebSocketStream<TcpStream>;

/// One connection attempt to `url` from `src`: TCP, WebSocket, `Authenticate`. `tcp_at`: wall
/// µs when TCP was connected.
async fn open(url: &str, src: Ipv4Addr, tcp_at: &mut i64) -> Result<Ws, String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let addr: SocketAddr = rest.split('/').next().unwrap_or("").parse().map_err(|e| format!("{url}: {e}"))?;
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::new(src.into(), 0)).map_err(|e| format!("bind {src}: {e}"))?;
    let tcp = sock.connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    *tcp_at = wall_us();
    let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(16 * 1024);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(cfg)).await.map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

struct Keys {
    app_key: String,
    app_secret: String,
    payload: usize,
    /// The clients' app ping interval (`Args::client_ping_ms`; None = no app pings).
    ping: Option<Duration>,
    /// `--ignore-retry-after`.
    ignore_retry_after: bool,
}

/// Connects (trying the client's nodes in turn from where it is), authenticates with its
/// resume point and instance, resends what is unconfirmed, and reads up to `SyncDone`.
///
/// A reconnect (`!first`) follows the SDK: an attempt waits `attempt_timeout` for its
/// `AuthResult`, a failed one moves to the next node at once, and only a whole round of
/// failures waits the SDK's backoff ([`reconnect_delay`]).
async fn connect(c: &Rc<RefCell<Client>>, keys: &Keys, first: bool, attempt_timeout: Duration) -> Result<Ws, String> {
    let mut tries = 0;
    let mut rounds = 0u32;
    // Failures since the last backoff.
    let mut in_round = 0;
    loop {
        let (url, src, user, resume_from, instance) = {
            let c = c.borrow();
            (c.urls[c.at].clone(), c.src, c.user.clone(), c.last_seq, c.instance)
        };
        let mut times = [0i64; STAGES];
        times[0] = c.borrow().noticed;
        times[1] = wall_us();
        let attempt = async {
            let mut ws = open(&url, src, &mut times[2]).await?;
            times[3] = wall_us();
            let token = rcall_token::issue(&keys.app_key, &keys.app_secret, &user, super::wall_ms(), 3_600_000);
            let auth = ClientFrame::new(C::Authenticate(Authenticate { token, device_id: format!("{user}-dev"), resume_from, instance }));
            ws.send(Message::Binary(auth.to_bytes().into())).await.map_err(|e| format!("send auth: {e}"))?;
            let mut authed = false;
            loop {
                // (The SDK's attempt timeout ends at the `AuthResult`; the generator then waits
                // up to 30 s for the `SyncDone`, as the SDK waits for its replay.)
                let wait = if first || authed {
                    Duration::from_secs(30)
                } else {
                    attempt_timeout.saturating_sub(Duration::from_micros(wall_us().saturating_sub(times[1]) as u64))
                };
                let m = tokio::time::timeout(wait, ws.next()).await.map_err(|_| {
                    if authed {
                        "no SyncDone in 30 s".to_string()
                    } else {
                        "no AuthResult in time (attempt timeout)".to_string()
                    }
                })?;
                let b = match m {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => continue,
                    other => return Err(format!("auth: connection ended: {other:?}")),
                };
                let ev = c.borrow_mut().handle(&b);
                match ev {
                    Event::Auth(upto) => {
                        authed = true;
                        times[4] = wall_us();
                        let frames = c.borrow_mut().on_connected(upto);
                        for f in frames {
                            ws.feed(Message::Binary(f.into())).await.map_err(|e| format!("resend: {e}"))?;
                        }
                        ws.flush().await.map_err(|e| format!("resend: {e}"))?;
                    }
                    Event::SyncDone => {
                        times[5] = wall_us();
                        return Ok::<Ws, String>(ws);
                    }
                    Event::Refused(e) => return Err(e),
                    Event::None => {}
                }
            }
        };
        let (backoff, busy);
        let mut turn = 0;
        match attempt.await {
            Ok(ws) => {
                if !first {
                    let mut cb = c.borrow_mut();
                    let node = cb.node_ids[cb.at];
                    cb.attempts.push((times[1], node, times[5], -2));
                    cb.resumed.push(times[5]);
                    cb.stages.push(times);
                }
                return Ok(ws);
            }
            Err(e) => {
                let mut cb = c.borrow_mut();
                cb.connected = false;
                cb.connect_failures += 1;
                if !first {
                    let node = cb.node_ids[cb.at];
                    let busy_turn = if e.starts_with(BUSY_REFUSAL) { i64::from(cb.retry_after_ms) } else { -1 };
                    cb.attempts.push((times[1], node, wall_us(), busy_turn));
                }
                // Numbers vary per attempt (ports, ids): keep the words.
                let words: String = e.split(|ch: char| ch.is_ascii_digit()).collect::<Vec<_>>().join("#");
                cb.note(format!("connect failed: {}", words.chars().take(120).collect::<String>()));
                tries += 1;
                if first && tries >= 3 {
                    return Err(format!("{}: {e}", cb.user));
                }
                cb.at = (cb.at + 1) % cb.urls.len();
                in_round += 1;
                (backoff, busy) = after_failure(&e, in_round % cb.urls.len() == 0);
                let t = std::mem::take(&mut cb.retry_after_ms);
                if busy && !keys.ignore_retry_after {
                    turn = t;
                }
                if backoff {
                    in_round = 0;
                }
            }
        }
        if first {
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else if backoff {
            // A whole round failed (the SDK's `next_after_failure`), or a node said it is
            // busy: the SDK's wait.
            rounds += 1;
            let ms = round_delay(rounds, busy, turn, rand_below(1000) as f64 / 1000.0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// A client's life: connected, reading, writing what the driver issues; on a dropped
/// connection, reconnects to its next node.
async fn client_task(c: Rc<RefCell<Client>>, wake: Rc<Notify>, keys: Rc<Keys>, ws: Ws, jitter_ms: u64, attempt_timeout: Duration) {
    let mut ws = Some(ws);
    loop {
        let w = match ws.take() {
            Some(w) => w,
            None => {
                let j = if jitter_ms > 0 { rand_below(jitter_ms) } else { 0 };
                tokio::time::sleep(Duration::from_millis(j)).await;
                {
                    let mut cb = c.borrow_mut();
                    cb.at = (cb.at + 1) % cb.urls.len();
                }
                match connect(&c, &keys, false, attempt_timeout).await {
                    Ok(w) => w,
                    Err(_) => return,
                }
            }
        };
        let (mut sink, mut stream) = w.split();
        // The SDK's app ping, counted from the connection's start.
        let mut ping = keys.ping.map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
        // Anything issued while connecting.
        let frames = c.borrow_mut().take_unwritten();
        let mut ok = true;
        for f in frames {
            ok &= sink.feed(Message::Binary(f.into())).await.is_ok();
        }
        ok &= sink.flush().await.is_ok();
        while ok {
            tokio::select! {
                _ = wake.notified() => {
                    let frames = c.borrow_mut().take_unwritten();
                    for f in frames {
                        if sink.feed(Message::Binary(f.into())).await.is_err() { ok = false; break; }
                    }
                    if ok && sink.flush().await.is_err() { ok = false; }
                }
                _ = next_tick(&mut ping) => {
                    let p = ClientFrame::new(C::Ping(Ping { nonce: 0 }));
                    if sink.send(Message::Binary(p.to_bytes().into())).await.is_err() { ok = false; }
                }
                m = stream.next() => {
                    match m {
                        Some(Ok(Message::Binary(b))) => {
                            let ev = c.borrow_mut().handle(&b);
                            if let Event::Refused(e) = ev { c.borrow_mut().note(format!("ended: {e}")); ok = false; }
                            let ack = {
                                let mut cb = c.borrow_mut();
                                (cb.last_seq > cb.acked).then(|| { cb.acked = cb.last_seq; cb.last_seq })
                            };
                            if let Some(seq) = ack {
                                let a = ClientFrame::new(C::Ack(Ack { seq }));
                                if sink.send(Message::Binary(a.to_bytes().into())).await.is_err() { ok = false; }
                            }
                        }
                        Some(Ok(_)) => {}
                        other => {
                            let what = match other {
                                Some(Ok(Message::Close(f))) => format!("closed by the server: {f:?}"),
                                Some(Err(e)) => format!("read error: {e}"),
                                _ => "connection ended".into(),
                            };
                            c.borrow_mut().note(what);
                            ok = false;
                        }
                    }
                }
            }
        }
        let mut cb = c.borrow_mut();
        cb.connected = false;
        cb.noticed = wall_us();
    }
}

/// The next tick of `i`; never without one.
async fn next_tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// After the traffic: waits until the run has settled — every client connected, nothing
/// awaiting a `SendResult`, and no delivery for [`DRAIN_QUIET`] — or `max` passed, and returns
/// how long it waited. A fixed wait either cut off a loaded machine's backlog (messages still in
/// their recipients' mailboxes counted as lost) or wasted time on a quiet one.
async fn drain(clients: &[Rc<RefCell<Client>>], max: Duration) -> Duration {
    let start = Instant::now();
    let (mut arrivals, mut quiet_since) = (u64::MAX, Instant::now());
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now: u64 = clients.iter().map(|c| c.borrow().arrivals).sum();
        if now != arrivals {
            (arrivals, quiet_since) = (now, Instant::now());
        }
        if quiet_since.elapsed() >= DRAIN_QUIET && clients.iter().all(|c| c.borrow().settled()) {
            break;
        }
    }
    start.elapsed()
}

/// How long no delivery may arrive before the drain counts the run as settled.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// A small xorshift, seeded per process: jitter does not need a crate.
fn rand_below(n: u64) -> u64 {
    thread_local!(static S: std::cell::Cell<u64> = std::cell::Cell::new(instance_id("jitter")));
    S.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x % n
    })
}

/// Worker K: its pairs, connected; waits for GO; drives; prints its counts.
pub(crate) fn worker(a: &Args, k: usize, app_key: &str, app_secret: &str, payload: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    let ping = (a.client_ping_ms > 0).then(|| Duration::from_millis(a.client_ping_ms));
    let keys = Keys { app_key: app_key.into(), app_secret: app_secret.into(), payload, ping, ignore_retry_after: a.ignore_retry_after };
    local.block_on(&rt, worker_main(a.clone(), k, keys));
}

async fn worker_main(a: Args, k: usize, keys: Keys) {
    let _ = now_ns();
    let pairs = a.failover_conns / 2;
    let n = a.nodes.len();
    let (p0, p1) = (k * pairs / a.workers, (k + 1) * pairs / a.workers);
    let keys = Rc::new(keys);
    let mut clients: Vec<Rc<RefCell<Client>>> = Vec::new();
    for p in p0..p1 {
        for side in 0..2 {
            let i = 2 * p + side;
            let user: Arc<str> = Arc::from(format!("fo{p}{}", if side == 0 { 'a' } else { 'b' }));
            let peer: Arc<str> = Arc::from(format!("fo{p}{}", if side == 0 { 'b' } else { 'a' }));
            let node_ids = node_order(i, n);
            let urls = node_ids.iter().map(|&j| a.nodes[j].clone()).collect();
            let src = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(a.source_addrs.max(1))) as u8);
            clients.push(Rc::new(RefCell::new(Client::new(user, peer, urls, node_ids, src))));
        }
    }
    // Connect everyone; each connection is served (pings answered, deliveries read) from the
    // moment it is up.
    let wakes: Vec<Rc<Notify>> = clients.iter().map(|_| Rc::new(Notify::new())).collect();
    let t = Instant::now();
    let jitter = a.reconnect_jitter_ms;
    let attempt_timeout = Duration::from_millis(a.attempt_timeout_ms);
    let conns: Vec<Result<tokio::task::JoinHandle<()>, String>> = futures::stream::iter(clients.iter().cloned().zip(wakes.iter().cloned()))
        .map(|(c, wake)| {
            let keys = keys.clone();
            async move {
                let ws = connect(&c, &keys, true, attempt_timeout).await?;
                Ok(tokio::task::spawn_local(client_task(c, wake, keys, ws, jitter, attempt_timeout)))
            }
        })
        .buffered(a.failover_connect_concurrency)
        .collect()
        .await;
    let failed: Vec<&String> = conns.iter().filter_map(|r| r.as_ref().err()).collect();
    println!("CONNECTED {} {} {:.1}", conns.len() - failed.len(), failed.len(), t.elapsed().as_secs_f64());
    if let Some(e) = failed.first() {
        println!("ERROR first connect failure: {e}");
    }
    std::io::stdout().flush().ok();
    let tasks: Vec<tokio::task::JoinHandle<()>> = conns.into_iter().filter_map(Result::ok).collect();
    // Wait for GO <start wall ms> <kill wall ms> (a blocking read on a thread: the connections
    // keep being served meanwhile).
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.await.unwrap_or_default();
    let mut it = line.split_whitespace().skip(1).map(|v| v.parse::<i64>().unwrap_or(0));
    let (start_ms, kill_ms) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    let to_ns = |wall_ms: i64| -> u64 {
        let d = wall_ms * 1000 - wall_us();
        (now_ns() as i64 + d * 1000).max(0) as u64
    };
    let start_ns = to_ns(start_ms);
    let kill_ns = if kill_ms > 0 { to_ns(kill_ms) } else { u64::MAX };
    tokio::time::sleep(Duration::from_nanos(start_ns.saturating_sub(now_ns()))).await;
    // Drive: this worker's share of the rate, round robin over its pairs, on a 1 ms clock.
    let my_pairs = p1 - p0;
    let rate = a.failover_rate as f64 * my_pairs as f64 / pairs.max(1) as f64;
    let total = Duration::from_secs(a.failover_secs);
    let mut steps = vec![0usize; my_pairs];
    let mut issued = 0u64;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if my_pairs == 0 {
            break;
        }
        tick.tick().await;
        let el = start.elapsed();
        if el >= total {
            break;
        }
        let due = (el.as_secs_f64() * rate) as u64;
        while issued < due {
            let p = (issued % my_pairs as u64) as usize;
            let step = steps[p];
            let from = if SCRIPT[step].0 { 2 * p } else { 2 * p + 1 };
            clients[from].borrow_mut().issue(step, keys.payload);
            wakes[from].notify_one();
            steps[p] = (step + 1) % SCRIPT.len();
            issued += 1;
        }
    }
    let drained = drain(&clients, Duration::from_secs(a.drain_secs)).await;
    for t in &tasks {
        t.abort();
    }
    if let Some(prefix) = &a.attempt_log {
        write_attempts(&format!("{prefix}.{k}.log"), kill_ms, &clients);
    }
    // Counts.
    let (mut lost, mut lost_confirmed, mut dup, mut delivered) = (0u64, 0u64, 0u64, 0u64);
    // Confirmed to the sender, not delivered, and the recipient not connected at the end: in
    // its mailbox, waiting for it (not a loss the run can tell).
    let mut lost_confirmed_away = 0u64;
    let mut lostc = Vec::new();
    let (mut unconfirmed, mut below, mut errors, mut failures, mut disconnected) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut steady: Vec<u32> = Vec::new();
    let mut all = Vec::new();
    let steady_from = start_ns + WARMUP_SECS * 1_000_000_000;
    let steady_to = kill_ns.min(start_ns + total.as_nanos() as u64);
    let mut resumed = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut why = std::collections::BTreeMap::<String, u64>::new();
    for (i, c) in clients.iter().enumerate() {
        let c = c.borrow();
        let peer = clients[i ^ 1].borrow();
        let peer_issued = peer.next_seq - 1;
        // What the peer still holds unconfirmed was not necessarily lost by the cluster.
        let peer_unconfirmed_from = peer.unconfirmed.front().map_or(u64::MAX, |u| u.client_seq);
        let refused: std::collections::HashSet<u64> = peer.refused.iter().copied().collect();
        for n in 1..=peer_issued as usize {
            match c.got.get(n).copied().unwrap_or(0) {
                0 if refused.contains(&(n as u64)) => {}
                0 => {
                    lost += 1;
                    if (n as u64) < peer_unconfirmed_from {
                        lost_confirmed += 1;
                        if !c.connected {
                            lost_confirmed_away += 1;
                        } else if lostc.len() < 5 {
                            lostc.push(format!(
                                "LOSTC {} from {} client_seq {n}: recipient's resume point {}, reconnects {}, sender connected {} reconnects {}",
                                c.user,
                                peer.user,
                                c.last_seq,
                                c.resumed.len(),
                                peer.connected,
                                peer.resumed.len()
                            ));
                        }
                    }
                }
                g => {
                    delivered += 1;
                    dup += u64::from(g - 1);
                }
            }
        }
        unconfirmed += c.unconfirmed.len() as u64;
        below += c.below_resume;
        errors += c.send_errors;
        failures += c.connect_failures;
        disconnected += u64::from(!c.connected);
        resumed.extend(c.resumed.iter().copied());
        stages.extend(c.stages.iter().map(|t| t.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")));
        for (w, n) in &c.why {
            *why.entry(w.clone()).or_insert(0u64) += n;
        }
        for &(t, l) in &c.lat {
            all.push(l);
            if t >= steady_from && t < steady_to {
                steady.push(l);
            }
        }
    }
    let hist = |v: &[u32]| -> String {
        let mut h = std::collections::BTreeMap::<u64, u64>::new();
        for &l in v {
            *h.entry((u64::from(l) / BUCKET_US).min(BUCKETS as u64 - 1)).or_default() += 1;
        }
        h.iter().map(|(b, c)| format!("{b}:{c}")).collect::<Vec<_>>().join(",")
    };
    println!(
        "RESULT issued={issued} delivered={delivered} lost={lost} lost_confirmed={lost_confirmed} lost_confirmed_away={lost_confirmed_away} dup={dup} unconfirmed={unconfirmed} below_resume={below} send_errors={errors} connect_failures={failures} disconnected={disconnected} drain_ms={} steady_secs={:.3}",
        drained.as_millis(),
        (steady_to.saturating_sub(steady_from)) as f64 / 1e9
    );
    for l in &lostc {
        println!("{l}");
    }
    for (w, n) in &why {
        println!("WHY {n} {w}");
    }
    println!("HSTEADY {}", hist(&steady));
    println!("HALL {}", hist(&all));
    println!("STAGES {}", stages.join(";"));
    println!("RESUMED {}", resumed.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","));
    std::io::stdout().flush().ok();
    std::process::exit(0);
}

/// `--attempt-log`: the kill's wall ms, then one line per reconnect attempt: start wall µs,
/// node, end wall µs, outcome.
fn write_attempts(path: &str, kill_ms: i64, clients: &[Rc<RefCell<Client>>]) {
    let mut out = format!("kill_ms {kill_ms}\n");
    for c in clients {
        for &(start, node, end, what) in &c.borrow().attempts {
            let what = match what {
                -2 => "ok".to_string(),
                -1 => "fail".to_string(),
                t => format!("busy {t}"),
            };
            out.push_str(&format!("{start} {node} {end} {what}\n"));
        }
    }
    if let Err(e) = std::fs::write(path, out) {
        eprintln!("rcall-loadgen: {path}: {e}");
    }
}

#[derive(Default)]
struct Totals {
    issued: u64,
    delivered: u64,
    lost: u64,
    lost_confirmed: u64,
    lost_confirmed_away: u64,
    dup: u64,
    unconfirmed: u64,
    /// The longest worker's drain (ms).
    drain_ms: u64,
    below_resume: u64,
    send_errors: u64,
    connect_failures: u64,
    disconnected: u64,
    steady_secs: f64,
    steady: Vec<u64>,
    all: Vec<u64>,
    resumed: Vec<i64>,
    stages: Vec<[i64; STAGES]>,
    why: std::collections::BTreeMap<String, u64>,
}

fn add_hist(h: &mut Vec<u64>, s: &str) {
    if h.is_empty() {
        h.resize(BUCKETS, 0);
    }
    for kv in s.split(',').filter(|x| !x.is_empty()) {
        if let Some((b, c)) = kv.split_once(':') {
            if let (Ok(b), Ok(c)) = (b.parse::<usize>(), c.parse::<u64>()) {
                h[b.min(BUCKETS - 1)] += c;
            }
        }
    }
}

fn pct(h: &[u64], p: f64) -> f64 {
    let n: u64 = h.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    let want = ((n as f64) * p).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (b, c) in h.iter().enumerate() {
        acc += c;
        if acc >= want {
            return (b as u64 + 1) as f64 * BUCKET_US as f64 / 1000.0;
        }
    }
    f64::NAN
}

/// The coordinator: starts the workers, waits for their connections, starts the traffic,
/// kills the node, samples RSS, and prints the totals.
pub(crate) fn coordinator(a: &Args, redis_pid: Option<u32>, payload: usize) {
    let fail = |e: String| -> ! {
        eprintln!("rcall-loadgen: {e}");
        std::process::exit(2)
    };
    if a.failover_conns < 2 || !a.failover_conns.is_multiple_of(2) {
        fail(format!("--failover-conns {}: an even number ≥ 2", a.failover_conns));
    }
    if a.nodes.len() < 2 || a.node_pids.len() != a.nodes.len() {
        fail("--nodes needs ≥ 2 URLs and --node-pids one pid per node".into());
    }
    if a.kill_at_secs > 0 && (a.kill_node >= a.nodes.len() || a.kill_at_secs >= a.failover_secs) {
        fail("--kill-node must index --nodes and --kill-at-secs be inside --failover-secs".into());
    }
    let per_worker = a.failover_conns.div_ceil(a.workers.max(1));
    if per_worker > 18_000 {
        fail(format!("{per_worker} connections per worker: more --workers (a process holds < 20,000 files here)"));
    }
    let exe = std::env::current_exe().expect("own path");
    let mb = |b: u64| b as f64 / 1e6;
    let rss_all = |pids: &[u32]| -> u64 { pids.iter().filter_map(|&p| rss_bytes(p)).sum() };
    let mut all_pids = a.node_pids.clone();
    all_pids.extend(redis_pid);
    let rss0 = rss_all(&all_pids);
    let kill = match a.kill_at_secs {
        0 => "no node killed".to_string(),
        t => format!("kill -9 of node {} at {t} s", a.kill_node),
    };
    println!(
        "# failover: {} connections ({} pairs, each split across two nodes) on {} nodes + Redis, {} generator processes, {} msg/s offered for {} s, {kill}, {}-byte messages",
        a.failover_conns, a.failover_conns / 2, a.nodes.len(), a.workers, a.failover_rate, a.failover_secs, payload
    );
    let mut children = Vec::new();
    for k in 0..a.workers {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(std::env::args().skip(1)).arg("--failover-worker").arg(k.to_string());
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        children.push(cmd.spawn().unwrap_or_else(|e| fail(format!("worker: {e}"))));
    }
    let t0 = Instant::now();
    let mut readers: Vec<_> = children.iter_mut().map(|c| std::io::BufReader::new(c.stdout.take().unwrap()).lines()).collect();
    let (mut ok, mut bad) = (0u64, 0u64);
    for r in readers.iter_mut() {
        for line in r.by_ref() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.strip_prefix("CONNECTED ") {
                let v: Vec<&str> = rest.split_whitespace().collect();
                ok += v[0].parse::<u64>().unwrap_or(0);
                bad += v[1].parse::<u64>().unwrap_or(0);
                break;
            }
            println!("  worker: {line}");
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let per_node: Vec<String> = a.node_pids.iter().map(|&p| format!("{:.0}", mb(rss_bytes(p).unwrap_or(0)))).collect();
    let redis_rss = redis_pid.and_then(rss_bytes).unwrap_or(0);
    let rss1 = rss_all(&all_pids);
    println!(
        "connected {ok} ({bad} failed) in {secs:.1} s ({:.0}/s); RSS nodes + Redis {:.1} MB before, {:.1} MB connected ({:.0} B per connection); nodes [{}] MB, Redis {:.1} MB; load average {}",
        ok as f64 / secs,
        mb(rss0),
        mb(rss1),
        rss1.saturating_sub(rss0) as f64 / ok.max(1) as f64,
        per_node.join(", "),
        mb(redis_rss),
        loadavg()
    );
    // The rest of each worker's output, read as it comes: a worker blocked writing its
    // counts into a full pipe would not exit when its drain ends.
    let rest: Vec<std::thread::JoinHandle<Vec<String>>> =
        readers.into_iter().map(|r| std::thread::spawn(move || r.map(Result::unwrap_or_default).collect())).collect();
    let start_ms = super::wall_ms() + 1000;
    let kill_ms = if a.kill_at_secs > 0 { start_ms + a.kill_at_secs as i64 * 1000 } else { 0 };
    for c in children.iter_mut() {
        let _ = writeln!(c.stdin.as_mut().unwrap(), "GO {start_ms} {kill_ms}");
    }
    let cpu0: Vec<Option<f64>> = all_pids.iter().map(|&p| cpu_secs(p)).collect();
    // Sample RSS every 5 s; kill at its time.
    let end_ms = start_ms + (a.failover_secs + a.drain_secs) as i64 * 1000;
    let mut killed_at_us = None;
    let mut peak = (0u64, 0u64);
    // Each node's and Redis's own peak (RSS, s): which process the cluster's peak is.
    let mut peaks = vec![(0u64, 0u64); all_pids.len()];
    let mut alive = all_pids.clone();
    let mut next_sample = start_ms + 5000;
    loop {
        let now = super::wall_ms();
        // (Workers end their drain once their clients settled: often well before `end_ms`.)
        if now >= end_ms || children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
            break;
        }
        if kill_ms > 0 && killed_at_us.is_none() && now >= kill_ms {
            let pid = a.node_pids[a.kill_node];
            let st = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
            killed_at_us = Some(wall_us());
            alive.retain(|&p| p != pid);
            println!(
                "  {:>5.1} s  kill -9 node {} (pid {pid}): {:?}",
                (now - start_ms) as f64 / 1000.0,
                a.kill_node,
                st.map(|s| s.success())
            );
        }
        if now >= next_sample {
            let r = rss_all(&alive);
            let redis = redis_pid.and_then(rss_bytes).unwrap_or(0);
            println!(
                "  {:>5.1} s  RSS nodes + Redis {:.1} MB (Redis {:.1} MB), load average {}",
                (now - start_ms) as f64 / 1000.0,
                mb(r),
                mb(redis),
                loadavg()
            );
            if r > peak.0 {
                peak = (r, (now - start_ms) as u64 / 1000);
            }
            for (i, &p) in all_pids.iter().enumerate() {
                let v = if alive.contains(&p) { rss_bytes(p).unwrap_or(0) } else { 0 };
                if v > peaks[i].0 {
                    peaks[i] = (v, (now - start_ms) as u64 / 1000);
                }
            }
            next_sample += 5000;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu1: Vec<Option<f64>> = all_pids.iter().map(|&p| cpu_secs(p)).collect();
    let mut t = Totals::default();
    for r in rest {
        for line in r.join().unwrap_or_default() {
            if let Some(rest) = line.strip_prefix("RESULT ") {
                for kv in rest.split_whitespace() {
                    let Some((k, v)) = kv.split_once('=') else { continue };
                    let n = v.parse::<u64>().unwrap_or(0);
                    match k {
                        "issued" => t.issued += n,
                        "delivered" => t.delivered += n,
                        "lost" => t.lost += n,
                        "lost_confirmed" => t.lost_confirmed += n,
                        "lost_confirmed_away" => t.lost_confirmed_away += n,
                        "drain_ms" => t.drain_ms = t.drain_ms.max(n),
                        "dup" => t.dup += n,
                        "unconfirmed" => t.unconfirmed += n,
                        "below_resume" => t.below_resume += n,
                        "send_errors" => t.send_errors += n,
                        "connect_failures" => t.connect_failures += n,
                        "disconnected" => t.disconnected += n,
                        "steady_secs" => t.steady_secs = v.parse().unwrap_or(0.0),
                        _ => {}
                    }
                }
            } else if let Some(rest) = line.strip_prefix("WHY ") {
                if let Some((n, w)) = rest.split_once(' ') {
                    *t.why.entry(w.to_string()).or_default() += n.parse::<u64>().unwrap_or(0);
                }
            } else if let Some(rest) = line.strip_prefix("HSTEADY ") {
                add_hist(&mut t.steady, rest);
            } else if let Some(rest) = line.strip_prefix("HALL ") {
                add_hist(&mut t.all, rest);
            } else if let Some(rest) = line.strip_prefix("STAGES ") {
                for one in rest.split(';') {
                    let v: Vec<i64> = one.split(',').filter_map(|x| x.parse().ok()).collect();
                    if let Ok(st) = <[i64; STAGES]>::try_from(v) {
                        t.stages.push(st);
                    }
                }
            } else if let Some(rest) = line.strip_prefix("RESUMED ") {
                t.resumed.extend(rest.split(',').filter_map(|v| v.parse::<i64>().ok()));
                break;
            } else {
                println!("  worker: {line}");
            }
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
    for (w, n) in &t.why {
        println!("  {n:>7} × {w}");
    }
    let steady_n: u64 = t.steady.iter().sum();
    println!(
        "delivered {:.0} msg/s in the steady window ({:.1} s before the kill, after a {WARMUP_SECS} s warm-up; offered {}), p50 {:.2} ms, p99 {:.2} ms; whole run incl. the failover: p50 {:.2} ms, p99 {:.2} ms, max bucket {:.1} ms",
        steady_n as f64 / t.steady_secs.max(1e-9),
        t.steady_secs,
        a.failover_rate,
        pct(&t.steady, 0.5),
        pct(&t.steady, 0.99),
        pct(&t.all, 0.5),
        pct(&t.all, 0.99),
        pct(&t.all, 1.0),
    );
    let cpu: Vec<String> = all_pids
        .iter()
        .zip(cpu0.iter().zip(&cpu1))
        .map(|(p, (a, b))| match (a, b) {
            (Some(a), Some(b)) => format!("{p}:{:.1}s", b - a),
            _ => format!("{p}:?"),
        })
        .collect();
    println!(
        "RSS nodes + Redis: peak {:.1} MB at {} s (goal ≤ 1000 MB); at the end (survivors + Redis) {:.1} MB; CPU during the run per pid [{}]",
        mb(peak.0),
        peak.1,
        mb(rss_all(&alive)),
        cpu.join(", ")
    );
    let per: Vec<String> = peaks
        .iter()
        .enumerate()
        .map(|(i, (b, t))| {
            let who = if i < a.node_pids.len() { format!("node {i}") } else { "Redis".into() };
            format!("{who} {:.0} MB at {t} s", mb(*b))
        })
        .collect();
    println!("peak RSS per process: {}", per.join(", "));
    print_mem_gauges(&a.node_logs);
    if let Some(k) = killed_at_us {
        let before = t.resumed.iter().filter(|&&r| r < k).count();
        if before > 0 {
            println!("reconnects before the kill (connections that dropped for another reason): {before}");
        }
        let mut d: Vec<f64> = t.resumed.iter().filter(|&&r| r >= k).map(|&r| (r - k) as f64 / 1e6).collect();
        d.sort_by(f64::total_cmp);
        let q = |p: f64| d.get(((d.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
        let expected = a.failover_conns.div_ceil(a.nodes.len());
        println!(
            "resume after kill -9: {} clients resumed on another node (node held ~{expected}), kill → SyncDone p50 {:.2} s, p99 {:.2} s, max {:.2} s (goal ≤ 5 s); connect attempts refused/failed {}",
            d.len(),
            q(0.5),
            q(0.99),
            q(1.0),
            t.connect_failures
        );
        print_stages(&t.stages, k);
        print_server_stages(&a.node_logs, k / 1000);
    }
    println!(
        "messages: issued {}, delivered {}, lost {} (not delivered, not refused; of which confirmed to the sender: {}, {} of them to a recipient not connected at the end), duplicated {} (goal 0/0); replayed at or below the client's resume point {}; still unconfirmed at the end {}; refused with a SendResult code (the app is told) {}; clients not connected at the end {}; drain {:.1} s (at most {} s)",
        t.issued,
        t.delivered,
        t.lost,
        t.lost_confirmed,
        t.lost_confirmed_away,
        t.dup,
        t.below_resume,
        t.unconfirmed,
        t.send_errors,
        t.disconnected,
        t.drain_ms as f64 / 1000.0,
        a.drain_secs
    );
}

/// Each node's memory gauges (`rcall_server::mem` debug lines, every 5 s: `ws::sweep`) at its
/// highest RSS: what its outboxes held, the connections still opening, the logins in
/// progress, the cluster sends waiting on Redis; the rest of the RSS is per-connection state,
/// the allocator's retained pages and the Redis client's buffers.
fn print_mem_gauges(logs: &[String]) {
    for (i, path) in logs.iter().enumerate() {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        let field = |line: &str, k: &str| -> Option<u64> {
            line.split_whitespace().find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
        };
        let top = text.lines().filter(|l| l.contains("memory gauges")).max_by_key(|l| field(l, "rss_kb").unwrap_or(0));
        let Some(line) = top else { continue };
        let f = |k: &str| field(line, k).map_or("?".to_string(), |v| v.to_string());
        println!(
            "node {i} at its peak RSS ({} MB): {} serving connections, outboxes {} frames / {} KB, {} opening (auth, busy answers, logins, replay), {} logins in progress, {} sends waiting on Redis",
            field(line, "rss_kb").unwrap_or(0) / 1024,
            f("conns"),
            f("queued_items"),
            f("queued_kb"),
            f("opening"),
            f("logins"),
            f("routing")
        );
    }
}

/// p50 / p99 / max of `v` (sorted here), in ms.
fn quantiles_ms(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    format!("p50 {:.0} / p99 {:.0} / max {:.0}", q(0.5), q(0.99), q(1.0))
}

/// The client-side stages of the reconnects that followed the kill (at wall µs `kill`).
fn print_stages(stages: &[[i64; STAGES]], kill: i64) {
    // (As the resume figure: every `SyncDone` after the kill. A socket found ended a few ms
    // before `kill` was stamped shows a negative first stage.)
    let after: Vec<&[i64; STAGES]> = stages.iter().filter(|s| s[STAGES - 1] >= kill).collect();
    let mut parts = Vec::new();
    for (i, name) in STAGE_NAMES.iter().enumerate() {
        let from = |s: &[i64; STAGES]| if i == 0 { kill } else { s[i - 1] };
        let mut v: Vec<f64> = after.iter().map(|s| (s[i] - from(s)) as f64 / 1000.0).collect();
        parts.push(format!("{name} {}", quantiles_ms(&mut v)));
    }
    println!("resume stages, client side, ms ({} reconnects after the kill): {}", after.len(), parts.join("; "));
}

/// The server's login stages (`rcall_server::cluster::login` debug lines in the nodes' logs:
/// `auth_ms` upgrade → registered, `hold_ms` the user's channel subscribed, `rooms_ms`, `start_ms`
/// the join `MULTI` with the presence write and the first page, `replay_ms` the other pages)
/// of the logins that ended after the kill (wall ms `kill_ms`).
fn print_server_stages(logs: &[String], kill_ms: i64) {
    if logs.is_empty() {
        return;
    }
    let names = ["auth_ms", "hold_ms", "rooms_ms", "start_ms", "replay_ms", "total_ms"];
    let mut v: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // Logins the server dropped because their client had left (its attempt timed out).
    let mut abandoned = Vec::new();
    for path in logs {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        for line in text.lines().filter(|l| l.contains("cluster login")) {
            let field =
                |k: &str| -> Option<f64> { line.split_whitespace().find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok()) };
            if field("at_ms").is_none_or(|at| at < kill_ms as f64) {
                continue;
            }
            if line.contains("cluster login abandoned") {
                abandoned.extend(field("after_ms"));
                continue;
            }
            for (i, n) in names.iter().enumerate() {
                if let Some(x) = field(n) {
                    v[i].push(x);
                }
            }
        }
    }
    let parts: Vec<String> =
        names.iter().zip(v.iter_mut()).map(|(n, v)| format!("{} {}", n.trim_end_matches("_ms"), quantiles_ms(v))).collect();
    println!("resume stages, server side (logins after the kill), ms ({} logins): {}", v[0].len(), parts.join("; "));
    println!("logins abandoned after the kill (the client left first): {}, after ms {}", abandoned.len(), quantiles_ms(&mut abandoned));
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_span_two_nodes_and_failover_spreads() {
        let n = 7;
        for i in 0..1000 {
            assert_ne!(home(i, n), home(i ^ 1, n), "pair {} on one node", i / 2);
            let o = node_order(i, n);
            assert_eq!(o.len(), n);
            assert_eq!(o[0], home(i, n));
            assert_eq!(*o.last().unwrap(), home(i ^ 1, n));
        }
        // The clients of a dead node fail over to every other node evenly (each survivor
        // within 2 % of its 1/(n - 1) share; the old rotation gave four of them 20 % and two
        // 10 %), for any node count the benchmark runs.
        for n in 3..=8 {
            for dead in 0..n {
                let mut to = vec![0usize; n];
                let on: Vec<usize> = (0..2 * n * 6 * 500).filter(|&i| home(i, n) == dead).collect();
                for &i in &on {
                    let o = node_order(i, n);
                    assert_eq!(o.len(), n, "{i}: {o:?}");
                    let mut sorted = o.clone();
                    sorted.sort_unstable();
                    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{i}: each node once: {o:?}");
                    to[o[1]] += 1;
                }
                assert_eq!(to[dead], 0);
                let fair = on.len() as f64 / (n - 1) as f64;
                for (k, &t) in to.iter().enumerate().filter(|&(k, _)| k != dead) {
                    assert!((t as f64 - fair).abs() <= fair * 0.02, "n {n}, dead {dead}: node {k} took {t} of {}: {to:?}", on.len());
                }
            }
        }
    }

    #[test]
    fn reconnect_backoff_is_the_sdks() {
        // The values of `crates/sdk/src/im.rs`'s own test, in a call.
        assert_eq!(reconnect_delay(0, false, 0.9), 0, "first retry at once");
        assert_eq!(reconnect_delay(1, false, 0.0), 50);
        assert_eq!(reconnect_delay(1, false, 0.999), 149);
        assert!((0..40).all(|n| reconnect_delay(n, false, 0.999) <= 800));
        // After a busy refusal: the idle cap.
        assert!((0..40).all(|n| reconnect_delay(n, true, 0.999) <= 4000));
        assert!(reconnect_delay(10, true, 0.5) > 800);
        // A busy refusal ends the round at once, as in the SDK's `im::after_failure`.
        assert_eq!(after_failure("auth refused 31003: server busy", false), (true, true));
        assert_eq!(after_failure("no AuthResult in time (attempt timeout)", false), (false, false));
        assert_eq!(after_failure("auth: connection ended: None", true), (true, false));
        // A busy node's turn replaces the backoff, as in the SDK's `im::round_delay`.
        assert_eq!(busy_delay(450, 0.0), 450);
        assert_eq!(busy_delay(450, 0.999), 539);
        assert_eq!(busy_delay(u32::MAX, 0.0), 4_000);
        assert_eq!(round_delay(9, true, 450, 0.0), 450, "not the idle cap after many rounds");
        assert_eq!(round_delay(9, true, 0, 0.5), reconnect_delay(9, true, 0.5));
    }

    #[test]
    fn settled_once_connected_with_only_receiptless_messages_unconfirmed() {
        let mut c = Client::new("a".into(), "b".into(), vec!["ws://x".into()], vec![0], Ipv4Addr::LOCALHOST);
        assert!(!c.settled(), "not connected");
        c.on_connected(0);
        assert!(c.settled());
        // Steps 1 (RC:VCRinging) and 3 (RCall:Media) expect no SendResult; step 2 (RC:VCAccept)
        // does.
        c.issue(1, 300);
        assert!(c.settled(), "a message nobody answers does not hold the drain");
        c.issue(2, 300);
        assert!(!c.settled(), "waits for the SendResult");
        let r = ServerFrame::new(0, S::SendResult(rtc_core::proto::SendResult { request_id: c.next_req, ..Default::default() }));
        c.handle(&r.to_bytes());
        assert!(c.unconfirmed.is_empty(), "the SendResult confirms it and what came before");
        assert!(c.settled());
    }

    #[test]
    fn percentiles_of_a_histogram() {
        let mut h = Vec::new();
        add_hist(&mut h, "0:50,9:49,99:1");
        assert_eq!(pct(&h, 0.5), 0.1);
        assert_eq!(pct(&h, 0.99), 1.0);
        assert_eq!(pct(&h, 1.0), 10.0);
    }
}
