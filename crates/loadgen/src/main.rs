//! `rcall-loadgen`: a load generator for rcall-server's WebSocket signalling, and the same load
//! against a PeerJS server (npm `peer`) and matchbox_server for comparison.
//!
//! Load phase, per offered rate: `--pairs` pairs of authenticated clients run 1:1 call
//! signalling — invite, ringing, accept, offer, answer, 4 candidates, hangup, round and round —
//! at a fixed total offered rate (open loop: messages are issued on a 1 ms clock whatever the
//! server does), each message about `--payload` bytes. rcall clients are real protocol clients
//! and send what the SDK sends: token auth, `no_receipt` on ringing and the media negotiation
//! (the SDK waits for no answer to those; invites, accepts and hangups get their `SendResult`),
//! cumulative acks of every delivery. Measured over the
//! window after `--warmup-secs`: delivered messages per second, delivery latency p50/p99/max
//! (issue → receipt, one process so one clock), and the server's CPU time (utime + stime from
//! `/proc/<pid>/stat`) per delivered message.
//!
//! Idle phase (`--idle N`, run first, on the fresh server): opens N authenticated connections
//! that then stay silent and reports the growth of the server's RSS per connection.
//!
//! Active-memory phase (`--active-memory N`, rcall only, [`active_memory`]): N authenticated
//! connections in pairs carry a fixed total rate (`--active-rate`, `--active-secs`) while the
//! server's RSS is sampled every 5 s; reports the plateau per connection beside the idle figure.
//!
//! Isolation phase (`--hostile offline,fanout,slowloris`, rcall only): at each rate, a run
//! without an attacker, one run per attacker kind with that attacker going at full tilt
//! ([`hostile`]), and a second run without one (the drift of the machine); it prints each run's
//! p99 against the mean of the two attacker-free runs.
//!
//! Failover phase (`--failover-conns N`, [`failover`]): N connections over a cluster's nodes
//! and one node `kill -9`ed under them; reports lost and duplicated messages and resume times.
//!
//! With several servers, each rate runs on every server in turn before the next rate.
//!
//! It mints its clients' tokens with `rcall-token` (the server's own token crate), so it does
//! not depend on the server crate; it talks to servers only over the network.
//!
//! Run it on its own core and the server on another (`taskset`), e.g. via
//! `crates/loadgen/bench.sh`.

mod active_memory;
mod failover;
mod hostile;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{FutureExt, SinkExt, StreamExt};
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{Ack, Authenticate, ClientFrame, ServerFrame};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// An open client connection and the address its peers send to.
type Conn = (Ws, Arc<str>);

#[derive(Debug, Clone, Parser)]
#[command(name = "rcall-loadgen", about)]
struct Args {
    /// rcall-server WebSocket URL, e.g. ws://127.0.0.1:8080/ws
    #[arg(long)]
    rcall: Option<String>,
    /// rcall-server process id (for CPU and RSS)
    #[arg(long)]
    rcall_pid: Option<u32>,
    /// App key the rcall server was started with
    #[arg(long, default_value = "bench-app")]
    app_key: String,
    /// App secret the rcall server was started with (tokens are minted with it)
    #[arg(long, default_value = "bench-secret-0123456789")]
    app_secret: String,
    /// PeerJS server WebSocket URL, e.g. ws://127.0.0.1:9000/peerjs
    #[arg(long)]
    peerjs: Option<String>,
    /// PeerJS server process id
    #[arg(long)]
    peerjs_pid: Option<u32>,
    /// matchbox_server base WebSocket URL, e.g. ws://127.0.0.1:3536 (each client joins a
    /// room of its own, `/<user>`; peers address each other by the id the server assigns)
    #[arg(long)]
    matchbox: Option<String>,
    /// matchbox_server process id
    #[arg(long)]
    matchbox_pid: Option<u32>,
    /// Client pairs (each pair = 2 connections)
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Offered rates to run, total messages per second (comma-separated; `--rates` with no
    /// value runs no load phase)
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "35000,70000")]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Approximate size of each signalling message, bytes
    #[arg(long, default_value_t = 300)]
    payload: usize,
    /// Idle connections to open for the memory measurement (0 = skip)
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Connections opened concurrently
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Isolation phase: attacker kinds to run against the honest load (offline, fanout,
    /// slowloris), comma-separated; replaces the plain load phase for rcall
    #[arg(long, value_delimiter = ',')]
    hostile: Vec<hostile::Kind>,
    /// Frames per second the flooding attackers offer (all their connections together)
    #[arg(long, default_value_t = 20_000)]
    hostile_rate: u64,
    /// Sockets the slowloris attacker keeps trying to hold
    #[arg(long, default_value_t = 512)]
    hostile_sockets: usize,
    /// Active-memory phase: connections (an even number, in pairs) carrying `--active-rate`
    /// for `--active-secs` while the server's RSS is sampled (0 = skip; rcall only)
    #[arg(long, default_value_t = 0)]
    active_memory: usize,
    /// Active-memory phase: total offered messages per second, spread over all pairs
    #[arg(long, default_value_t = 10_000)]
    active_rate: u64,
    /// Active-memory phase: how long the rate is carried, seconds (RSS sampled every 5 s). The
    /// default outlasts the server's 60 s resume window, so what it keeps reaches its plateau.
    #[arg(long, default_value_t = 90)]
    active_secs: u64,
    /// Active-memory phase on another (fresh) rcall-server instead of `--rcall`: memory freed
    /// by earlier phases stays with the process and would be reused, so the figure would be
    /// too low there
    #[arg(long)]
    active_rcall: Option<String>,
    /// Process id of `--active-rcall`
    #[arg(long)]
    active_rcall_pid: Option<u32>,
    /// Cluster mode: rcall-server nodes sharing one Redis (comma-separated WebSocket URLs),
    /// measured like `--rcall` with every pair split across two nodes (pair p: caller on node
    /// p mod n, callee on node p+1 mod n)
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// Process ids of the `--cluster` nodes, in the same order (their CPU is summed)
    #[arg(long, value_delimiter = ',')]
    cluster_pids: Vec<u32>,
    /// Process id of the Redis the `--cluster` nodes share: its own CPU per routed message
    #[arg(long)]
    redis_pid: Option<u32>,
    /// The 100,000-connection run with a node kill ([`failover`]) instead of everything else
    #[command(flatten)]
    failover: failover::Args,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[derive(Clone, Debug)]
enum Target {
    Rcall {
        url: String,
        app_key: String,
        app_secret: String,
    },
    PeerJs {
        url: String,
    },
    Matchbox {
        url: String,
    },
    /// rcall-server nodes in cluster mode: each connection goes to one of them
    /// ([`Target::for_conn`]); their CPU is summed, Redis's reported beside it.
    Cluster {
        urls: Vec<String>,
        app_key: String,
        app_secret: String,
        pids: Vec<u32>,
        redis_pid: Option<u32>,
    },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Rcall { .. } => "rcall-server",
            Target::PeerJs { .. } => "peerjs-server",
            Target::Matchbox { .. } => "matchbox",
            Target::Cluster { .. } => "rcall-cluster",
        }
    }

    /// Speaks rcall's protocol (a single node or a cluster).
    fn is_rcall(&self) -> bool {
        matches!(self, Target::Rcall { .. } | Target::Cluster { .. })
    }

    /// Where connection `i` goes: for a cluster, pair p = i / 2 has its caller (i even) on node
    /// p mod n and its callee on node p + 1 mod n, so with n ≥ 2 every pair spans two nodes
    /// and the pairs spread evenly.
    fn for_conn(&self, i: usize) -> Target {
        match self {
            Target::Cluster { urls, app_key, app_secret, .. } => {
                Target::Rcall { url: urls[(i / 2 + i % 2) % urls.len()].clone(), app_key: app_key.clone(), app_secret: app_secret.clone() }
            }
            t => t.clone(),
        }
    }

    /// Opens one client connection; returns it with the address its peers send to (the user
    /// id, or for matchbox the peer id the server assigned).
    async fn connect(&self, user: &Arc<str>) -> Result<Conn, String> {
        let cfg = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(64 * 1024);
        match self {
            Target::Rcall { url, app_key, app_secret } => {
                let mut ws = open(url, cfg).await?;
                let token = rcall_token::issue(app_key, app_secret, user, wall_ms(), 3_600_000);
                let auth = ClientFrame::new(C::Authenticate(Authenticate {
                    token,
                    device_id: format!("{user}-dev"),
                    resume_from: 0,
                    // Like the SDK: one random id per instance, messages numbered from 1.
                    instance: instance_id(user),
                }));
                ws.send(Message::Binary(auth.to_bytes().into())).await.map_err(|e| format!("send auth: {e}"))?;
                loop {
                    let msg = next_message(&mut ws, "AuthResult").await?;
                    let Some(Ok(Message::Binary(b))) = msg else {
                        return Err(format!("auth: unexpected {msg:?}"));
                    };
                    match ServerFrame::from_bytes(&b).map_err(|e| e.to_string())?.body {
                        Some(S::AuthResult(a)) if a.code != 0 => return Err(format!("auth refused {}: {}", a.code, a.message)),
                        Some(S::SyncDone(_)) => return Ok((ws, user.clone())),
                        _ => {}
                    }
                }
            }
            Target::PeerJs { url } => {
                let full = format!("{url}?key=peerjs&id={user}&token=t{user}");
                let mut ws = open(&full, cfg).await?;
                let msg = next_message(&mut ws, "OPEN").await?;
                match msg {
                    Some(Ok(Message::Text(t))) if t.contains("\"OPEN\"") => Ok((ws, user.clone())),
                    other => Err(format!("peerjs: expected OPEN, got {other:?}")),
                }
            }
            Target::Matchbox { url } => {
                // A room of its own: no NewPeer events; signals route by peer id server-wide.
                let full = format!("{}/{user}", url.trim_end_matches('/'));
                let mut ws = open(&full, cfg).await?;
                let msg = next_message(&mut ws, "IdAssigned").await?;
                match msg {
                    Some(Ok(Message::Text(t))) => match matchbox_id_assigned(&t) {
                        Some(id) => Ok((ws, Arc::from(id))),
                        None => Err(format!("matchbox: expected IdAssigned, got {t}")),
                    },
                    other => Err(format!("matchbox: expected IdAssigned, got {other:?}")),
                }
            }
            Target::Cluster { .. } => Box::pin(self.for_conn(0).connect(user)).await,
        }
    }
}

/// A client WebSocket to `url`.
async fn open(url: &str, cfg: WebSocketConfig) -> Result<Ws, String> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(cfg), true).await.map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// The server's next message, `what` it should be, within 30 s.
async fn next_message(ws: &mut Ws, what: &str) -> Result<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>, String> {
    tokio::time::timeout(Duration::from_secs(30), ws.next()).await.map_err(|_| format!("no {what} in 30 s"))
}

/// One 1:1 call: (sent by the caller?, rcall message type, PeerJS message type).
const SCRIPT: [(bool, &str, &str); 10] = [
    (true, "RC:VCInvite", "OFFER"),
    (false, "RC:VCRinging", "ANSWER"),
    (false, "RC:VCAccept", "ANSWER"),
    (true, "RCall:Media", "OFFER"),
    (false, "RCall:Media", "ANSWER"),
    (true, "RCall:Media", "CANDIDATE"),
    (false, "RCall:Media", "CANDIDATE"),
    (true, "RCall:Media", "CANDIDATE"),
    (false, "RCall:Media", "CANDIDATE"),
    (true, "RC:VCHangup", "CANDIDATE"),
];

enum Cmd {
    Send { to: Arc<str>, step: usize, t: u64 },
    Stop,
}

#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    received: u64,
    send_ok: u64,
    send_err: u64,
}

/// What the connection tasks of one run measured, summed once they stopped: one place for the
/// load and active-memory phases alike.
struct Tally {
    /// Delivery latencies, µs, sorted.
    lat: Vec<u32>,
    received: u64,
    /// Failed sends, plus one per task that did not end in time.
    send_errors: u64,
}

impl Tally {
    /// Tells every connection to stop and gathers their stats. A stopped task ends at once; one
    /// stuck on a dead socket does not hold the run (it counts as a send error).
    async fn stop_and_collect(senders: &[mpsc::UnboundedSender<Cmd>], tasks: Vec<tokio::task::JoinHandle<ConnStats>>) -> Tally {
        for s in senders {
            let _ = s.send(Cmd::Stop);
        }
        let mut t = Tally { lat: Vec::new(), received: 0, send_errors: 0 };
        for task in tasks {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(s)) => {
                    t.lat.extend(s.latencies_us);
                    t.received += s.received;
                    t.send_errors += s.send_err;
                }
                _ => t.send_errors += 1,
            }
        }
        t.lat.sort_unstable();
        t
    }

    /// The `p` quantile of the latencies in ms (1.0: the largest); NaN without any.
    fn pct_ms(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.lat[i]) / 1000.0
    }
}

#[derive(Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

/// The encoded `ClientFrame { Send(SendMessage { request_id, conversation_type: PRIVATE,
/// target_id: to, message_type, content }) }`, built by hand into one buffer (the generator must
/// stay much cheaper than the server it measures). `content` starts with the issue time.
fn encode_rcall(req: u32, to: &str, step: usize, t: u64, payload: usize) -> Message {
    // `client_seq` = the request id (1, 2, 3 … per connection), as the SDK numbers its sends.
    let client_seq = u64::from(req);
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    let content_len = payload.saturating_sub(40).max(16);
    let msg_type = SCRIPT[step].1.as_bytes();
    // Like the SDK: nobody waits for the outcome of these.
    let no_receipt = matches!(SCRIPT[step].1, "RCall:Media" | "RC:VCRinging");
    let inner_len = usize::from(no_receipt) * 2
        + 1
        + encoded_len_varint(client_seq)
        + 1
        + encoded_len_varint(u64::from(req))
        + 2
        + 1
        + encoded_len_varint(to.len() as u64)
        + to.len()
        + 1
        + encoded_len_varint(msg_type.len() as u64)
        + msg_type.len()
        + 1
        + encoded_len_varint(content_len as u64)
        + content_len;
    let mut buf = Vec::with_capacity(inner_len + 6);
    encode_key(2, WireType::LengthDelimited, &mut buf); // ClientFrame.body = Send
    encode_varint(inner_len as u64, &mut buf);
    encode_key(1, WireType::Varint, &mut buf);
    encode_varint(u64::from(req), &mut buf);
    encode_key(2, WireType::Varint, &mut buf);
    encode_varint(1, &mut buf);
    encode_key(3, WireType::LengthDelimited, &mut buf);
    encode_varint(to.len() as u64, &mut buf);
    buf.extend_from_slice(to.as_bytes());
    encode_key(6, WireType::LengthDelimited, &mut buf);
    encode_varint(msg_type.len() as u64, &mut buf);
    buf.extend_from_slice(msg_type);
    encode_key(7, WireType::LengthDelimited, &mut buf);
    encode_varint(content_len as u64, &mut buf);
    buf.extend_from_slice(&t.to_be_bytes());
    buf.resize(buf.len() + content_len - 8, b'x');
    if no_receipt {
        encode_key(9, WireType::Varint, &mut buf);
        encode_varint(1, &mut buf);
    }
    encode_key(10, WireType::Varint, &mut buf);
    encode_varint(client_seq, &mut buf);
    Message::Binary(buf.into())
}

/// A non-zero id for `user`'s SDK instance, different on every run.
fn instance_id(user: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(user.as_bytes());
    h.finish() | 1
}

/// What the generator needs from a `ServerFrame`, read without decoding the whole message.
#[derive(Debug, PartialEq)]
enum Seen {
    /// `Deliver`: its seq and the issue time at the start of its content.
    Deliver {
        seq: u64,
        t: Option<u64>,
    },
    /// `SendResult`: its code.
    SendResult {
        code: i32,
    },
    Other,
}

/// Iterates the (field, wire value) pairs of one protobuf message.
fn fields(mut b: &[u8]) -> impl Iterator<Item = (u32, FieldVal<'_>)> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let key = prost::encoding::decode_varint(&mut b).ok()?;
        let (field, wire) = ((key >> 3) as u32, key & 7);
        let v = match wire {
            0 => FieldVal::Varint(prost::encoding::decode_varint(&mut b).ok()?),
            2 => {
                let len = prost::encoding::decode_varint(&mut b).ok()? as usize;
                if len > b.len() {
                    return None;
                }
                let (v, rest) = b.split_at(len);
                b = rest;
                FieldVal::Bytes(v)
            }
            1 => {
                b = b.get(8..)?;
                FieldVal::Other
            }
            5 => {
                b = b.get(4..)?;
                FieldVal::Other
            }
            _ => return None,
        };
        Some((field, v))
    })
}

enum FieldVal<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn scan_server_frame(frame: &[u8]) -> Seen {
    for (f, v) in fields(frame) {
        match (f, v) {
            (3, FieldVal::Bytes(d)) => {
                let (mut seq, mut t) = (0, None);
                for (g, w) in fields(d) {
                    match (g, w) {
                        (1, FieldVal::Varint(s)) => seq = s,
                        (9, FieldVal::Bytes(c)) if c.len() >= 8 => t = Some(u64::from_be_bytes(c[..8].try_into().unwrap())),
                        _ => {}
                    }
                }
                return Seen::Deliver { seq, t };
            }
            (4, FieldVal::Bytes(r)) => {
                let mut code = 0;
                for (g, w) in fields(r) {
                    if let (2, FieldVal::Varint(c)) = (g, w) {
                        code = c as i64 as i32;
                    }
                }
                return Seen::SendResult { code };
            }
            _ => {}
        }
    }
    Seen::Other
}

fn encode_peerjs(to: &str, step: usize, t: u64, payload: usize) -> Message {
    let head = format!("{{\"type\":\"{}\",\"dst\":\"{to}\",\"payload\":\"{t}:", SCRIPT[step].2);
    padded(&head, "\"}", payload)
}

/// matchbox's `PeerRequest::Signal` as JSON, `data` a string starting with the issue time.
fn encode_matchbox(to: &str, t: u64, payload: usize) -> Message {
    let head = format!("{{\"Signal\":{{\"receiver\":\"{to}\",\"data\":\"{t}:");
    padded(&head, "\"}}", payload)
}

/// `head`, then `x`s up to `payload` bytes in all, then `tail`: a JSON text message of a fixed
/// size whatever its header.
fn padded(head: &str, tail: &str, payload: usize) -> Message {
    let pad = payload.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(payload);
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    Message::Text(s.into())
}

/// The peer id in matchbox's first event, `{"IdAssigned":"<uuid>"}`.
fn matchbox_id_assigned(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("{\"IdAssigned\":\"")?;
    Some(&rest[..rest.find('"')?])
}

/// The issue time carried by a relayed matchbox `Signal` event.
fn matchbox_ts(text: &str) -> Option<u64> {
    let i = text.find("\"data\":\"")? + 8;
    let rest = &text[i..];
    let j = rest.find(':')?;
    rest[..j].parse().ok()
}

/// The issue time carried by a relayed PeerJS message.
fn peerjs_ts(text: &str) -> Option<u64> {
    let i = text.find("\"payload\":\"")? + 11;
    let rest = &text[i..];
    let j = rest.find(':')?;
    rest[..j].parse().ok()
}

fn record(stats: &mut ConnStats, w: Window, t_sent: u64) {
    let now = now_ns();
    if now >= w.start && now < w.end {
        stats.received += 1;
    }
    if t_sent >= w.start && t_sent < w.end {
        stats.latencies_us.push(((now.saturating_sub(t_sent)) / 1000).min(u64::from(u32::MAX)) as u32);
    }
}

/// One [`conn_task`] per connection: their command senders and join handles, in order.
#[allow(clippy::type_complexity)]
fn spawn_all(
    target: &Target,
    conns: Vec<Conn>,
    w: Window,
    payload: usize,
    ack_on_read: bool,
) -> (Vec<mpsc::UnboundedSender<Cmd>>, Vec<tokio::task::JoinHandle<ConnStats>>) {
    conns
        .into_iter()
        .map(|(ws, _)| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(conn_task(target.clone(), ws, rx, w, payload, ack_on_read));
            (tx, task)
        })
        .unzip()
}

async fn conn_task(
    target: Target,
    ws: Ws,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    w: Window,
    payload: usize,
    ack_on_read: bool,
) -> ConnStats {
    let rcall = target.is_rcall();
    let matchbox = matches!(target, Target::Matchbox { .. });
    let (mut sink, mut stream) = ws.split();
    let mut stats = ConnStats::default();
    let mut req = 0u32;
    let mut pending_ack = 0u64;
    let mut acked = 0u64;
    let handle = |msg: Message, stats: &mut ConnStats, pending_ack: &mut u64| match msg {
        Message::Binary(b) => match scan_server_frame(&b) {
            Seen::Deliver { seq, t } => {
                *pending_ack = (*pending_ack).max(seq);
                if let Some(t) = t {
                    record(stats, w, t);
                }
            }
            Seen::SendResult { code: 0 } => stats.send_ok += 1,
            Seen::SendResult { .. } => stats.send_err += 1,
            Seen::Other => {}
        },
        Message::Text(t) => {
            let ts = if matchbox { matchbox_ts(&t) } else { peerjs_ts(&t) };
            if let Some(ts) = ts {
                record(stats, w, ts);
                stats.send_ok += 1;
            }
        }
        _ => {}
    };
    'outer: loop {
        tokio::select! {
            cmd = rx.recv() => {
                let mut next = cmd;
                let mut stop = false;
                loop {
                    match next {
                        None | Some(Cmd::Stop) => { stop = true; break; }
                        Some(Cmd::Send { to, step, t }) => {
                            req = req.wrapping_add(1);
                            let m = if rcall {
                                encode_rcall(req, &to, step, t, payload)
                            } else if matchbox {
                                encode_matchbox(&to, t, payload)
                            } else {
                                encode_peerjs(&to, step, t, payload)
                            };
                            if sink.feed(m).await.is_err() { break 'outer; }
                        }
                    }
                    match rx.try_recv() {
                        Ok(c) => next = Some(c),
                        Err(_) => break,
                    }
                }
                // Cumulative ack rides along with this write.
                if rcall && pending_ack > acked {
                    let a = ClientFrame::new(C::Ack(Ack { seq: pending_ack }));
                    if sink.feed(Message::Binary(a.to_bytes().into())).await.is_err() { break; }
                    acked = pending_ack;
                }
                if sink.flush().await.is_err() || stop { break; }
            }
            msg = stream.next() => {
                let Some(Ok(m)) = msg else { break };
                handle(m, &mut stats, &mut pending_ack);
                while let Some(Some(Ok(m))) = stream.next().now_or_never() {
                    handle(m, &mut stats, &mut pending_ack);
                }
                // As the SDK does (it acks each delivery as it handles it): the server may then
                // forget what this device has seen without waiting for its next send.
                if ack_on_read && rcall && pending_ack > acked {
                    let a = ClientFrame::new(C::Ack(Ack { seq: pending_ack }));
                    if sink.send(Message::Binary(a.to_bytes().into())).await.is_err() { break; }
                    acked = pending_ack;
                }
            }
        }
    }
    if rcall && pending_ack > acked {
        let a = ClientFrame::new(C::Ack(Ack { seq: pending_ack }));
        let _ = sink.send(Message::Binary(a.to_bytes().into())).await;
    }
    let _ = sink.close().await;
    stats
}

/// utime + stime of `pid`, seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

fn clk_tck() -> f64 {
    static T: OnceLock<f64> = OnceLock::new();
    *T.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resident set size of `pid`, bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Connects `n` users named `{prefix}0`, `{prefix}1`…
async fn connect_users(target: &Target, prefix: &str, n: usize, concurrency: usize) -> Vec<Conn> {
    let users: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("{prefix}{i}").as_str())).collect();
    connect_all(target, &users, concurrency).await
}

async fn connect_all(target: &Target, users: &[Arc<str>], concurrency: usize) -> Vec<Conn> {
    let results: Vec<(usize, Result<Conn, String>)> = futures::stream::iter(users.iter().cloned().enumerate())
        .map(|(i, u)| {
            let t = target.for_conn(i);
            async move { (i, t.connect(&u).await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut out: Vec<Option<Conn>> = (0..users.len()).map(|_| None).collect();
    for (i, r) in results {
        match r {
            Ok(ws) => out[i] = Some(ws),
            Err(e) => panic!("{}: connection {i} failed: {e}", target.name()),
        }
    }
    out.into_iter().map(Option::unwrap).collect()
}

#[derive(Debug, Clone)]
struct LoadResult {
    offered: u64,
    issued_per_sec: f64,
    delivered_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu_us_per_msg: Option<f64>,
    server_cpu_util: Option<f64>,
    /// Cluster only: Redis's own CPU (utime + stime) per delivered message, µs.
    redis_cpu_us_per_msg: Option<f64>,
    /// rcall only: the upper bound of the server's delivery-latency histogram bucket holding
    /// the window's p99 (accepted → written to the recipient's socket; `/metrics`), ms. The
    /// server's own view, unaffected by the generator's scheduling.
    server_p99_ms: Option<f64>,
    loadgen_cpu_util: Option<f64>,
    send_errors: u64,
}

async fn run_load(args: &Args, target: &Target, pid: Option<u32>, rate: u64, run: usize) -> LoadResult {
    let n = args.pairs * 2;
    let users: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("r{run}u{i}").as_str())).collect();
    let conns = connect_all(target, &users, args.connect_concurrency).await;
    let addrs: Vec<Arc<str>> = conns.iter().map(|(_, a)| a.clone()).collect();
    let warmup = Duration::from_secs(args.warmup_secs);
    let duration = Duration::from_secs(args.duration_secs);
    let t0 = now_ns();
    let w = Window { start: t0 + warmup.as_nanos() as u64, end: t0 + (warmup + duration).as_nanos() as u64 };
    let (senders, tasks) = spawn_all(target, conns, w, args.payload, false);
    // Server CPU (and its latency histogram) over exactly the window.
    let me = std::process::id();
    let metrics = match target {
        Target::Rcall { url, .. } => hostile::metrics_addr(url),
        Target::PeerJs { .. } | Target::Matchbox { .. } | Target::Cluster { .. } => None,
    };
    // The server's CPU: its process, or the sum of a cluster's nodes; Redis's apart.
    let (pids, redis_pid): (Vec<u32>, Option<u32>) = match target {
        Target::Cluster { pids, redis_pid, .. } => (pids.clone(), *redis_pid),
        _ => (pid.into_iter().collect(), None),
    };
    let total_cpu = move || -> Option<f64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| cpu_secs(p)).sum()
    };
    let redis_cpu = tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        let a = redis_pid.and_then(cpu_secs);
        tokio::time::sleep(duration).await;
        a.zip(redis_pid.and_then(cpu_secs)).map(|(a, b)| b - a)
    });
    let cpu = tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        let a = total_cpu();
        let self_a = cpu_secs(me);
        let hist_a = match metrics {
            Some(m) => hostile::latency_histogram(m).await,
            None => None,
        };
        tokio::time::sleep(duration).await;
        let b = total_cpu();
        let self_b = cpu_secs(me);
        let hist_b = match metrics {
            Some(m) => hostile::latency_histogram(m).await,
            None => None,
        };
        (
            a.zip(b).map(|(a, b)| b - a),
            self_a.zip(self_b).map(|(a, b)| b - a),
            hist_a.zip(hist_b).and_then(|(a, b)| hostile::p99_bucket_ms(&a, &b)),
        )
    });
    let start = Instant::now();
    let issued = drive(&senders, &addrs, rate, warmup + duration).await;
    let issued_per_sec = issued as f64 / start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = Tally::stop_and_collect(&senders, tasks).await;
    let (received, send_errors) = (tally.received, tally.send_errors);
    let (cpu, own_cpu, server_p99_ms) = cpu.await.unwrap_or((None, None, None));
    let redis_cpu = redis_cpu.await.unwrap_or(None);
    let delivered_per_sec = received as f64 / duration.as_secs_f64();
    // Let the server notice the closes before the next phase.
    tokio::time::sleep(Duration::from_millis(500)).await;
    LoadResult {
        offered: rate,
        issued_per_sec,
        delivered_per_sec,
        p50_ms: tally.pct_ms(0.50),
        p99_ms: tally.pct_ms(0.99),
        max_ms: tally.pct_ms(1.0),
        cpu_us_per_msg: cpu.map(|c| c * 1e6 / received.max(1) as f64),
        server_cpu_util: cpu.map(|c| c / duration.as_secs_f64()),
        redis_cpu_us_per_msg: redis_cpu.map(|c| c * 1e6 / received.max(1) as f64),
        server_p99_ms,
        loadgen_cpu_util: own_cpu.map(|c| c / duration.as_secs_f64()),
        send_errors,
    }
}

/// The open-loop driver on a 1 ms clock: for `total`, issues `rate` messages per second round
/// robin over the pairs (connections 2p and 2p+1 with `users[2p]`, `users[2p+1]`), each pair
/// going through [`SCRIPT`]. Returns how many it issued.
async fn drive(senders: &[mpsc::UnboundedSender<Cmd>], addrs: &[Arc<str>], rate: u64, total: Duration) -> u64 {
    let pairs = senders.len() / 2;
    let start = Instant::now();
    let mut steps = vec![0usize; pairs];
    let mut issued: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let el = start.elapsed();
        if el >= total {
            break;
        }
        let due = (el.as_secs_f64() * rate as f64) as u64;
        let t = now_ns();
        while issued < due {
            let p = (issued % pairs as u64) as usize;
            let step = steps[p];
            let (a, b) = (2 * p, 2 * p + 1);
            let (from, to) = if SCRIPT[step].0 { (a, b) } else { (b, a) };
            let _ = senders[from].send(Cmd::Send { to: addrs[to].clone(), step, t });
            steps[p] = (step + 1) % SCRIPT.len();
            issued += 1;
        }
    }
    issued
}

/// Server RSS growth per idle authenticated connection, bytes.
async fn run_idle(args: &Args, target: &Target, pid: u32) -> (f64, u64, u64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(pid).unwrap_or(0);
    let conns = connect_users(target, "idle", args.idle, args.connect_concurrency).await;
    // Read (a browser answers the server's WebSocket pings; rcall closes silent connections).
    let readers: Vec<_> =
        conns.into_iter().map(|(mut ws, _)| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_bytes(pid).unwrap_or(0);
    for r in &readers {
        r.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    ((after.saturating_sub(before)) as f64 / args.idle as f64, before, after)
}

struct TargetReport {
    name: &'static str,
    loads: Vec<LoadResult>,
    idle_bytes_per_conn: Option<f64>,
}

fn print_load(name: &str, r: &LoadResult) {
    println!(
        "{name:<14} offered {:>7}/s  issued {:>9.0}/s  delivered {:>9.0}/s  p50 {:>7.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  server p99 {:>7} ms  cpu/msg {:>6} µs  server cpu {:>5}  loadgen cpu {:>5}  send errors {}",
        r.offered,
        r.issued_per_sec,
        r.delivered_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.server_p99_ms.map_or("?".into(), |v| format!("≤{v}")),
        r.cpu_us_per_msg.map_or("?".into(), |v| format!("{v:.1}")),
        r.server_cpu_util.map_or("?".into(), |v| format!("{:.0}%", v * 100.0)),
        r.loadgen_cpu_util.map_or("?".into(), |v| format!("{:.0}%", v * 100.0)),
        r.send_errors,
    );
    if let Some(c) = r.redis_cpu_us_per_msg {
        println!("{:<14}   + Redis cpu/msg {c:.1} µs (nodes + Redis {} µs)", "", us_plain(r.cpu_us_per_msg.map(|n| n + c)));
    }
}

fn us_plain(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.1}"))
}

/// Highest delivered rate that kept up with the offered rate (≥ 99 %) at p99 ≤ 10 ms.
fn best(r: &TargetReport) -> Option<&LoadResult> {
    r.loads
        .iter()
        .filter(|l| l.delivered_per_sec >= 0.99 * l.offered as f64 && l.p99_ms <= 10.0)
        .max_by(|a, b| a.delivered_per_sec.total_cmp(&b.delivered_per_sec))
}

/// The isolation phase at one rate: attacker-free, each attacker, attacker-free again.
async fn run_isolation(args: &Args, target: &Target, pid: Option<u32>, attacker: &hostile::Target, rate: u64, run: &mut usize) {
    *run += 1;
    let before = run_load(args, target, pid, rate, *run).await;
    print_load("no attacker", &before);
    let mut attacked = Vec::new();
    for &kind in &args.hostile {
        let rss0 = pid.and_then(rss_bytes);
        let attack = hostile::Attack::start(kind, attacker.clone(), args.hostile_rate, args.hostile_sockets);
        // Let the attacker reach full tilt (and the server its limits) first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        *run += 1;
        let r = run_load(args, target, pid, rate, *run).await;
        let rss1 = pid.and_then(rss_bytes);
        let stats = attack.stop();
        print_load(&format!("+{}", kind.name()), &r);
        println!("    attacker {}: {stats}; server RSS {} -> {} MB", kind.name(), mb(rss0), mb(rss1));
        attacked.push((kind, r));
        // Let the server notice the attacker's closes before the next run.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    *run += 1;
    let after = run_load(args, target, pid, rate, *run).await;
    print_load("no attacker", &after);
    let base = (before.p99_ms + after.p99_ms) / 2.0;
    println!(
        "# isolation at {rate}/s, {} pairs: p99 without attacker {:.2} / {:.2} ms (mean {base:.2})",
        args.pairs, before.p99_ms, after.p99_ms
    );
    for (kind, r) in &attacked {
        let delivered = r.delivered_per_sec / r.offered as f64;
        println!(
            "#   {:<10} p99 {:>7.2} ms = x{:.2} of the attacker-free mean (server's own p99 bucket ≤{} ms, attacker-free ≤{} / ≤{} ms), {:.1} % of the offered rate delivered, {} honest send errors",
            kind.name(),
            r.p99_ms,
            r.p99_ms / base,
            r.server_p99_ms.map_or("?".into(), |v| v.to_string()),
            before.server_p99_ms.map_or("?".into(), |v| v.to_string()),
            after.server_p99_ms.map_or("?".into(), |v| v.to_string()),
            delivered * 100.0,
            r.send_errors
        );
    }
}

fn mb(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| format!("{:.1}", b as f64 / 1e6))
}

/// The server, its pid and the plan of the active-memory phase; exits with the reason when the
/// arguments cannot give a figure.
fn active_memory_target(args: &Args) -> (Target, u32, active_memory::Plan) {
    let fail = |e: String| -> ! {
        eprintln!("rcall-loadgen: {e}");
        std::process::exit(2)
    };
    let plan = active_memory::Plan {
        conns: args.active_memory,
        rate: args.active_rate,
        secs: args.active_secs,
        warmup_secs: args.warmup_secs,
        payload: args.payload,
        connect_concurrency: args.connect_concurrency,
    };
    plan.check().unwrap_or_else(|e| fail(e));
    let (url, pid) = match &args.active_rcall {
        Some(u) => (Some(u.clone()), args.active_rcall_pid),
        None => (args.rcall.clone(), args.rcall_pid),
    };
    let Some(url) = url else { fail("--active-memory needs --rcall or --active-rcall".into()) };
    let Some(pid) = pid else { fail("--active-memory needs the server's pid (--rcall-pid or --active-rcall-pid) for its RSS".into()) };
    let target = Target::Rcall { url, app_key: args.app_key.clone(), app_secret: args.app_secret.clone() };
    (target, pid, plan)
}

fn main() {
    let args = Args::parse();
    if args.failover.failover_conns > 0 {
        match args.failover.failover_worker {
            Some(k) => failover::worker(&args.failover, k, &args.app_key, &args.app_secret, args.payload),
            None => failover::coordinator(&args.failover, args.redis_pid, args.payload),
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async_main(args));
}

async fn async_main(args: Args) {
    let _ = now_ns();
    let mut targets: Vec<(Target, Option<u32>)> = Vec::new();
    if let Some(url) = &args.rcall {
        targets
            .push((Target::Rcall { url: url.clone(), app_key: args.app_key.clone(), app_secret: args.app_secret.clone() }, args.rcall_pid));
    }
    if let Some(url) = &args.peerjs {
        targets.push((Target::PeerJs { url: url.clone() }, args.peerjs_pid));
    }
    if let Some(url) = &args.matchbox {
        targets.push((Target::Matchbox { url: url.clone() }, args.matchbox_pid));
    }
    if !args.cluster.is_empty() {
        targets.push((
            Target::Cluster {
                urls: args.cluster.clone(),
                app_key: args.app_key.clone(),
                app_secret: args.app_secret.clone(),
                pids: args.cluster_pids.clone(),
                redis_pid: args.redis_pid,
            },
            None,
        ));
    }
    assert!(!targets.is_empty(), "give --rcall, --peerjs, --matchbox and/or --cluster");
    // The active-memory phase runs last; its arguments are checked before anything runs.
    let active = (args.active_memory > 0).then(|| active_memory_target(&args));
    println!(
        "# {} pairs, {}-byte messages, rates {:?}, warmup {} s, window {} s, idle {}",
        args.pairs, args.payload, args.rates, args.warmup_secs, args.duration_secs, args.idle
    );
    let mut reports = Vec::new();
    let mut run = 0;
    let mut rcall_idle = None;
    for (target, pid) in &targets {
        let mut rep = TargetReport { name: target.name(), loads: Vec::new(), idle_bytes_per_conn: None };
        // Idle memory first, on the fresh server: after the load phases the allocator keeps
        // memory the idle connections would reuse, and the figure would be too good.
        if let (true, Some(pid)) = (args.idle > 0, *pid) {
            let (per, before, after) = run_idle(&args, target, pid).await;
            println!(
                "{:<14} idle {} connections: RSS {:.1} MB -> {:.1} MB = {:.0} bytes per connection",
                target.name(),
                args.idle,
                before as f64 / 1e6,
                after as f64 / 1e6,
                per
            );
            rep.idle_bytes_per_conn = Some(per);
            if let Target::Rcall { .. } = target {
                rcall_idle = Some(per);
            }
        }
        if let (false, Target::Rcall { url, app_key, app_secret }) = (args.hostile.is_empty(), target) {
            let attacker = hostile::Target { url: url.clone(), app_key: app_key.clone(), app_secret: app_secret.clone() };
            for &rate in &args.rates {
                run_isolation(&args, target, *pid, &attacker, rate, &mut run).await;
            }
            continue;
        }
        reports.push((rep, target, *pid));
    }
    // Rate by rate, every server in turn: the servers compared at one rate are measured
    // within a minute of each other, so drift on a shared machine moves the ratios less.
    for &rate in &args.rates {
        for (rep, target, pid) in reports.iter_mut() {
            run += 1;
            let r = run_load(&args, target, *pid, rate, run).await;
            print_load(target.name(), &r);
            rep.loads.push(r);
        }
    }
    if let Some((target, pid, plan)) = &active {
        if args.active_rcall.is_none() && (args.idle > 0 || !args.rates.is_empty()) {
            println!("# active memory on the server the earlier phases used: memory they freed is reused, the figure reads low (--active-rcall: a fresh server)");
        }
        let r = active_memory::run(target, *pid, plan).await;
        for line in r.summary(target.name(), rcall_idle) {
            println!("{line}");
        }
    }
    let reports: Vec<TargetReport> = reports.into_iter().map(|(r, _, _)| r).collect();
    let (cluster, reports): (Vec<TargetReport>, Vec<TargetReport>) = reports.into_iter().partition(|r| r.name == "rcall-cluster");
    print_summary(&reports);
    if let Some(c) = cluster.first() {
        print_cluster_summary(reports.iter().find(|r| r.name == "rcall-server"), c, args.cluster.len());
    }
}

/// The cluster against the single node of the same run: per rate, CPU per routed message of
/// the nodes (summed) and of Redis, and each one's knee.
fn print_cluster_summary(single: Option<&TargetReport>, cluster: &TargetReport, nodes: usize) {
    println!("# rcall-server: {nodes} nodes + Redis (pairs split across nodes) against one node (SQLite) in the same run");
    for (i, c) in cluster.loads.iter().enumerate() {
        let s = single.and_then(|s| s.loads.get(i));
        let total = c.cpu_us_per_msg.zip(c.redis_cpu_us_per_msg).map(|(a, b)| a + b);
        let mut line = format!(
            "offered {:>7}/s: cpu/msg nodes {} + Redis {} = {}",
            c.offered,
            us(c.cpu_us_per_msg),
            us(c.redis_cpu_us_per_msg),
            us(total)
        );
        if let Some(s) = s {
            line += &format!(", single node {}", us(s.cpu_us_per_msg));
            if let (Some(t), Some(x)) = (total, s.cpu_us_per_msg) {
                line += &format!(" (cluster / single = x{:.2})", t / x);
            }
            line += &format!("; p99 ms: cluster {:.2}, single {:.2}", c.p99_ms, s.p99_ms);
        } else {
            line += &format!("; p99 {:.2} ms", c.p99_ms);
        }
        println!("{line}");
    }
    let knee = |r: &TargetReport| {
        best(r).map_or("none".to_string(), |b| format!("{} (delivered {:.0}/s, p99 {:.2} ms)", b.offered, b.delivered_per_sec, b.p99_ms))
    };
    println!(
        "knee (highest offered rate delivered in full at p99 <= 10 ms): cluster {}, single node {}",
        knee(cluster),
        single.map_or("not run".into(), knee)
    );
}

/// Per rate: each server's CPU per routed message and rcall's ratio to the better (cheaper)
/// peer; each server's knee (highest rate delivered in full at p99 <= 10 ms) and idle memory.
fn print_summary(reports: &[TargetReport]) {
    let Some((rcall, peers)) = reports.split_first() else { return };
    if rcall.name != "rcall-server" || peers.is_empty() {
        return;
    }
    println!("# rcall-server against the better peer ({})", peers.iter().map(|p| p.name).collect::<Vec<_>>().join(", "));
    for (i, x) in rcall.loads.iter().enumerate() {
        let mut line = format!("offered {:>7}/s: cpu/msg rcall {}", x.offered, us(x.cpu_us_per_msg));
        let mut better: Option<(&str, f64)> = None;
        for p in peers {
            let Some(y) = p.loads.get(i) else { continue };
            line += &format!(", {} {}", p.name, us(y.cpu_us_per_msg));
            if let Some(c) = y.cpu_us_per_msg {
                if better.is_none_or(|(_, b)| c < b) {
                    better = Some((p.name, c));
                }
            }
        }
        match (x.cpu_us_per_msg, better) {
            (Some(c), Some((name, b))) => line += &format!(" => rcall / better peer ({name}) = x{:.2}", c / b),
            _ => line += " => ratio ?",
        }
        let p99s: Vec<String> =
            std::iter::once(rcall).chain(peers).filter_map(|r| r.loads.get(i).map(|l| format!("{} {:.2}", r.name, l.p99_ms))).collect();
        line += &format!("; p99 ms: {}", p99s.join(", "));
        println!("{line}");
    }
    let knee = |r: &TargetReport| best(r).map(|b| b.offered);
    let knees: Vec<String> =
        std::iter::once(rcall).chain(peers).map(|r| format!("{} {}", r.name, knee(r).map_or("none".into(), |k| k.to_string()))).collect();
    let mut line = format!("knee (highest offered rate delivered in full at p99 <= 10 ms): {}", knees.join(", "));
    if let (Some(a), Some(b)) = (knee(rcall), peers.iter().filter_map(knee).max()) {
        line += &format!("; rcall / better peer = x{:.2}", a as f64 / b as f64);
    }
    println!("{line}");
    for p in peers {
        if let (Some(x), Some(y)) = (rcall.idle_bytes_per_conn, p.idle_bytes_per_conn) {
            println!("idle memory per connection: rcall {x:.0} B vs {} {y:.0} B = x{:.2}", p.name, x / y);
        }
    }
    for r in reports.iter().filter(|r| !r.loads.is_empty()) {
        if let Some(b) = best(r) {
            println!(
                "{}: best {:.0} msg/s delivered at p99 {:.2} ms, {} CPU/msg",
                r.name,
                b.delivered_per_sec,
                b.p99_ms,
                us(b.cpu_us_per_msg)
            );
        } else {
            println!("{}: no rate met p99 <= 10 ms with >= 99 % delivered", r.name);
        }
    }
}

fn us(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.1} µs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peerjs_messages_carry_their_timestamp_and_size() {
        let Message::Text(t) = encode_peerjs("u1", 0, 123_456, 300) else { panic!() };
        assert_eq!(t.len(), 300);
        assert_eq!(peerjs_ts(&t), Some(123_456));
        // The server adds src; the payload still parses.
        let relayed = t.replace("{\"type\"", "{\"src\":\"u0\",\"type\"");
        assert_eq!(peerjs_ts(&relayed), Some(123_456));
    }

    #[test]
    fn matchbox_messages_carry_their_timestamp_and_size() {
        let Message::Text(t) = encode_matchbox("0b9c1e2a-7d4f-4c7e-9a51-3f2d8e6b1c00", 123_456, 300) else { panic!() };
        assert_eq!(t.len(), 300);
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["Signal"]["receiver"], "0b9c1e2a-7d4f-4c7e-9a51-3f2d8e6b1c00");
        // The server relays it as {"Signal":{"sender":…,"data":…}}.
        let relayed = format!("{{\"Signal\":{{\"sender\":\"x\",\"data\":{}}}}}", v["Signal"]["data"]);
        assert_eq!(matchbox_ts(&relayed), Some(123_456));
        assert_eq!(matchbox_id_assigned("{\"IdAssigned\":\"abc-1\"}"), Some("abc-1"));
        assert_eq!(matchbox_id_assigned("{\"NewPeer\":\"abc-1\"}"), None);
    }

    #[test]
    fn rcall_messages_are_about_the_payload_size_and_decode() {
        let Message::Binary(b) = encode_rcall(300, "r1u1", 3, 99, 300) else { panic!() };
        assert!((280..=320).contains(&b.len()), "{}", b.len());
        let f = ClientFrame::from_bytes(&b).unwrap();
        let Some(C::Send(m)) = f.body else { panic!() };
        assert_eq!((m.request_id, m.conversation_type), (300, 1));
        assert_eq!((m.target_id.as_str(), m.message_type.as_str()), ("r1u1", "RCall:Media"));
        assert!(m.no_receipt, "media negotiation is fire-and-forget, as in the SDK");
        let Message::Binary(b) = encode_rcall(301, "r1u1", 0, 99, 300) else { panic!() };
        let Some(C::Send(invite)) = ClientFrame::from_bytes(&b).unwrap().body else { panic!() };
        assert_eq!(invite.message_type, "RC:VCInvite");
        assert!(!invite.no_receipt, "call() waits for the invite's SendResult");
        assert_eq!((m.client_seq, invite.client_seq), (300, 301));
        assert_eq!(&m.content[..8], &99u64.to_be_bytes());
    }

    #[test]
    fn the_scanner_reads_deliver_and_send_result() {
        use rtc_core::proto::{Delivered, SendResult};
        let mut content = 1234u64.to_be_bytes().to_vec();
        content.extend_from_slice(b"padding");
        let d = ServerFrame::new(
            5,
            S::Deliver(Delivered {
                seq: 1_700_000_000_000_123,
                message_uid: "U".into(),
                sender_user_id: "a".into(),
                content,
                sent_time: 9,
                offline: true,
                ..Default::default()
            }),
        );
        assert_eq!(scan_server_frame(&d.to_bytes()), Seen::Deliver { seq: 1_700_000_000_000_123, t: Some(1234) });
        let r = ServerFrame::new(5, S::SendResult(SendResult { request_id: 3, code: 405, ..Default::default() }));
        assert_eq!(scan_server_frame(&r.to_bytes()), Seen::SendResult { code: 405 });
        let ok = ServerFrame::new(5, S::SendResult(SendResult::default()));
        assert_eq!(scan_server_frame(&ok.to_bytes()), Seen::SendResult { code: 0 });
        assert_eq!(scan_server_frame(&[0xff, 0xff]), Seen::Other);
    }
}
