//! Hostile clients for the isolation benchmark (SECURITY.md, BENCHMARKS.md "One hostile client"):
//! while the honest pairs run, one attacker does one of the things issue 11 found could exhaust
//! the server, at full tilt. The server must keep the honest pairs' p99 within 2× of a run
//! without the attacker.
//!
//! The attacker connects from 127.0.0.2 (a different source address on the loopback network),
//! as an attacker on another machine would: the per-address limits then apply to it and not to
//! the honest clients on 127.0.0.1. It runs on its own OS thread (its own single-threaded tokio
//! runtime), so the honest generator's event loop never waits for it; both share the
//! generator's CPU. Because of that, the isolation phase also reads the server's own
//! delivery-latency histogram (`/metrics`) around each window ([`latency_histogram`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rtc_core::proto::client_frame::Body as C;
use rtc_core::proto::server_frame::Body as S;
use rtc_core::proto::{Authenticate, ClientFrame, SendMessage, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The attacker's source address.
const ATTACKER_IP: [u8; 4] = [127, 0, 0, 2];

/// What the attacker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Finding 8: one user's connections (the per-user cap of them) send 4 KB messages to
    /// random never-seen user ids, asking the server to store each one.
    Offline,
    /// Finding 7: one user's connections each send to the user itself (the server copies each
    /// message to every other connection of the user) and never read.
    Fanout,
    /// Findings 4 and 5: hundreds of sockets that send half an HTTP request and then a byte a
    /// second, or upgrade and start a 1 MiB frame, reopened as soon as the server closes them.
    Slowloris,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "offline" => Ok(Kind::Offline),
            "fanout" => Ok(Kind::Fanout),
            "slowloris" => Ok(Kind::Slowloris),
            _ => Err(format!("unknown hostile kind {s:?} (offline, fanout, slowloris)")),
        }
    }
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Offline => "offline",
            Kind::Fanout => "fanout",
            Kind::Slowloris => "slowloris",
        }
    }
}

/// What the attacker managed, for the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames_sent: u64,
    /// `SendResult` codes the attacker read back (0 = accepted).
    pub results: BTreeMap<i32, u64>,
    pub connections_opened: u64,
    /// Connections the server closed (or refused) under the attacker.
    pub connections_closed: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames sent, {} connections opened, {} closed by the server",
            self.frames_sent, self.connections_opened, self.connections_closed
        )?;
        if !self.results.is_empty() {
            let codes: Vec<String> = self.results.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            write!(f, ", SendResult codes {{{}}}", codes.join(", "))?;
        }
        Ok(())
    }
}

/// Where and as whom the attacker connects.
#[derive(Clone)]
pub struct Target {
    /// `ws://host:port/path` of the rcall server.
    pub url: String,
    pub app_key: String,
    pub app_secret: String,
}

/// A running attacker; [`Attack::stop`] ends it and returns what it did.
pub struct Attack {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Stats>,
}

impl Attack {
    /// Starts `kind` at up to `rate` frames per second (the floods) or `sockets` sockets
    /// (slowloris).
    pub fn start(kind: Kind, target: Target, rate: u64, sockets: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("attacker runtime");
            rt.block_on(run(kind, target, rate, sockets, flag))
        });
        Attack { stop, thread }
    }

    pub fn stop(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("attacker thread")
    }
}

async fn run(kind: Kind, target: Target, rate: u64, sockets: usize, stop: Arc<AtomicBool>) -> Stats {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let addr = socket_addr(&target.url);
    let mut tasks = Vec::new();
    match kind {
        Kind::Offline | Kind::Fanout => {
            // The per-user cap: 4 devices × 4 connections.
            let conns = 16u64;
            for i in 0..conns {
                let per_conn = (rate / conns).max(1);
                tasks.push(tokio::spawn(flooder(kind, target.clone(), addr, i, per_conn, stop.clone(), stats.clone())));
            }
        }
        Kind::Slowloris => {
            for i in 0..sockets {
                tasks.push(tokio::spawn(slow_socket(addr, i % 2 == 1, stop.clone(), stats.clone())));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(stats).map(Mutex::into_inner).unwrap_or_default()
}

fn socket_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    host.parse().unwrap_or_else(|e| panic!("hostile mode needs an ip:port URL, got {url}: {e}"))
}

async fn connect_from_attacker(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((ATTACKER_IP, 0)))?;
    sock.connect(addr).await
}

/// One of the attacker's authenticated connections, reconnecting whenever the server closes it.
async fn flooder(kind: Kind, target: Target, addr: SocketAddr, index: u64, rate: u64, stop: Arc<AtomicBool>, stats: Arc<Mutex<Stats>>) {
    let user = "hostile-user";
    let device = format!("hostile-dev{}", index % 4);
    let mut victim = index << 40;
    while !stop.load(Ordering::Relaxed) {
        let ws = match authenticated(&target, addr, user, &device).await {
            Ok(ws) => ws,
            Err(_) => {
                stats.lock().await.connections_closed += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        stats.lock().await.connections_opened += 1;
        let (mut sink, mut stream) = ws.split();
        // The fan-out attacker never reads: its socket buffers fill and the server has to
        // hold (or drop) what it copies to it.
        let reader = (kind == Kind::Offline).then(|| {
            let stats = stats.clone();
            tokio::spawn(async move {
                while let Some(Ok(Message::Binary(b))) = stream.next().await {
                    if let Ok(ServerFrame { body: Some(S::SendResult(r)), .. }) = ServerFrame::from_bytes(&b) {
                        *stats.lock().await.results.entry(r.code).or_default() += 1;
                    }
                }
            })
        });
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut req = 0u32;
        'conn: while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            let n = due.saturating_sub(sent);
            for _ in 0..n {
                req = req.wrapping_add(1);
                victim += 1;
                let to = match kind {
                    Kind::Offline => format!("victim-{victim:x}"),
                    _ => user.to_string(),
                };
                let frame = ClientFrame::new(C::Send(SendMessage {
                    request_id: req,
                    conversation_type: 1,
                    target_id: to,
                    message_type: "RC:TxtMsg".into(),
                    content: vec![b'x'; 4000],
                    client_seq: u64::from(req),
                    ..Default::default()
                }));
                if sink.feed(Message::Binary(frame.to_bytes().into())).await.is_err() {
                    break 'conn;
                }
            }
            sent += n;
            if sink.flush().await.is_err() {
                break;
            }
        }
        if let Some(r) = reader {
            r.abort();
        }
        let mut s = stats.lock().await;
        s.frames_sent += sent;
        if !stop.load(Ordering::Relaxed) {
            s.connections_closed += 1;
        }
    }
}

/// Token auth over a socket from the attacker's address; `Err` when refused or closed.
async fn authenticated(target: &Target, addr: SocketAddr, user: &str, device: &str) -> Result<WebSocketStream<TcpStream>, String> {
    let tcp = connect_from_attacker(addr).await.map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::client_async(target.url.as_str(), tcp).await.map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let token = rcall_token::issue(&target.app_key, &target.app_secret, user, now, 3_600_000);
    // A fresh SDK instance per connection, numbering its messages from 1 (the same instance
    // would make every message after a reconnect a resend the server only confirms).
    let instance = crate::instance_id(&format!("{device}-{}", crate::now_ns()));
    let auth = ClientFrame::new(C::Authenticate(Authenticate { token, device_id: device.into(), resume_from: 0, instance }));
    ws.send(Message::Binary(auth.to_bytes().into())).await.map_err(|e| e.to_string())?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.map_err(|_| "no AuthResult".to_string())?;
        let Some(Ok(Message::Binary(b))) = msg else { return Err(format!("auth: {msg:?}")) };
        match ServerFrame::from_bytes(&b).map_err(|e| e.to_string())?.body {
            Some(S::AuthResult(a)) if a.code != 0 => return Err(format!("auth refused {}", a.code)),
            Some(S::SyncDone(_)) => return Ok(ws),
            _ => {}
        }
    }
}

/// One slowloris socket: half a request header, then a byte a second (or, with `frame`, a
/// completed upgrade and the start of a 1 MiB frame, then a byte a second). Reopened a second
/// after the server closes it.
async fn slow_socket(addr: SocketAddr, frame: bool, stop: Arc<AtomicBool>, stats: Arc<Mutex<Stats>>) {
    while !stop.load(Ordering::Relaxed) {
        let opened = async {
            let mut s = connect_from_attacker(addr).await?;
            if frame {
                s.write_all(
                    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .await?;
                // Read the 101 response head.
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                        .await
                        .map_err(|_| std::io::ErrorKind::TimedOut)??;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                // FIN + binary, masked, 64-bit length 1 MiB, a mask key, then 8 KiB of it.
                let mut f = vec![0x82, 0xff];
                f.extend_from_slice(&(1u64 << 20).to_be_bytes());
                f.extend_from_slice(&[1, 2, 3, 4]);
                f.extend(std::iter::repeat_n(0u8, 8192));
                s.write_all(&f).await?;
            } else {
                s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await?;
            }
            Ok::<_, std::io::Error>(s)
        }
        .await;
        if let Ok(mut s) = opened {
            stats.lock().await.connections_opened += 1;
            let mut buf = [0u8; 256];
            // A byte a second until the server closes the socket (read returns 0 or fails).
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        if s.write_all(b"a").await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        stats.lock().await.connections_closed += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `/metrics` of the server behind a `ws://host:port/...` URL (it answers loopback peers).
pub fn metrics_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next()?.parse().ok()
}

/// The cumulative buckets `(le seconds, count)` of `rcall_delivery_latency_seconds`, read with
/// a plain HTTP/1.0 GET (no client library for one request a run).
pub async fn latency_histogram(addr: SocketAddr) -> Option<Vec<(f64, u64)>> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await.ok()?.ok()?;
    Some(parse_histogram(&String::from_utf8_lossy(&body)))
}

fn parse_histogram(text: &str) -> Vec<(f64, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("rcall_delivery_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bound (ms) of the bucket holding the p99 of what was observed between two
/// snapshots of the histogram.
pub fn p99_bucket_ms(before: &[(f64, u64)], after: &[(f64, u64)]) -> Option<f64> {
    let diff: Vec<(f64, u64)> =
        after.iter().map(|&(le, n)| (le, n.saturating_sub(before.iter().find(|b| b.0 == le).map_or(0, |b| b.1)))).collect();
    let total = diff.iter().map(|d| d.1).max()?;
    if total == 0 {
        return None;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    diff.iter().find(|d| d.1 >= want).map(|d| d.0 * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_urls_give_the_socket_address() {
        assert_eq!("fanout".parse::<Kind>(), Ok(Kind::Fanout));
        assert!("nope".parse::<Kind>().is_err());
        assert_eq!(socket_addr("ws://127.0.0.1:8080/ws"), "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn the_p99_bucket_of_a_window_comes_from_two_histogram_snapshots() {
        let text = |a: u64, b: u64, inf: u64| {
            format!(
                "# TYPE x histogram\nrcall_delivery_latency_seconds_bucket{{le=\"0.001\"}} {a}\nrcall_delivery_latency_seconds_bucket{{le=\"0.0025\"}} {b}\nrcall_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {inf}\n"
            )
        };
        let before = parse_histogram(&text(50, 60, 60));
        assert_eq!(before, vec![(0.001, 50), (0.0025, 60), (f64::INFINITY, 60)]);
        // In the window: 900 under 1 ms, 95 more under 2.5 ms, 5 slower: p99 is in the 2.5 ms bucket.
        let after = parse_histogram(&text(950, 1055, 1060));
        assert_eq!(p99_bucket_ms(&before, &after), Some(2.5));
        assert_eq!(p99_bucket_ms(&before, &before), None);
    }
}
