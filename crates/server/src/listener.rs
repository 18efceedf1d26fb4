//! The accept loop and HTTP/1 serving (instead of `axum::serve`, which exposes neither a
//! header-read timeout nor a hook per accepted connection).
//!
//! - Every request head must arrive within `Config::header_read_timeout`, which also closes
//!   keep-alive connections idle that long (hyper starts the timer whenever it waits for a
//!   head): half-sent requests (slowloris) are cut.
//! - Connections that have not authenticated yet — plain HTTP, and WebSockets until their
//!   `AuthResult` — are capped server-wide and per source IP ([`Gate`]); past a cap a new
//!   connection is closed at accept. A WebSocket leaves the count once authenticated.
//! - Before authentication a WebSocket may read only a few KB (`GuardedIo`, below): an anonymous
//!   client cannot make the server buffer a large frame.
//! - Accept errors (EMFILE, ENFILE, ECONNABORTED, …) are logged and retried after a pause,
//!   never spun on and never fatal; at start the soft `RLIMIT_NOFILE` is raised to the hard one
//!   ([`raise_nofile_limit`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::AppState;

/// Pause after a failed `accept` (e.g. EMFILE: out of file descriptors) before the next one:
/// the listener stays readable while the error lasts, so retrying at once would spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Largest HTTP/1 read buffer (request head plus whatever the client sent early). hyper's
/// default is ~400 KB per connection; request heads of browsers fit in a fraction of this.
const MAX_HTTP_BUFFER: usize = 64 * 1024;
/// WebSocket framing (header, mask) and control frames (pings before `Authenticate`) a
/// connection may read before authenticating, on top of `Config::pre_auth_frame_bytes`.
const PRE_AUTH_SLACK_BYTES: usize = 1024;

/// Counts the connections that have not authenticated yet, in total and per source IP.
pub struct Gate {
    max_total: usize,
    max_per_ip: usize,
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Gate {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection from `ip`, or `None` past a cap.
    fn admit(self: &Arc<Self>, ip: IpAddr, pre_auth_bytes: usize) -> Option<Arc<ConnGuard>> {
        let mut g = self.lock();
        let per_ip = g.1.get(&ip).copied().unwrap_or(0);
        if g.0 >= self.max_total || per_ip >= self.max_per_ip {
            return None;
        }
        g.0 += 1;
        g.1.insert(ip, per_ip + 1);
        Some(Arc::new(ConnGuard {
            ip,
            gate: self.clone(),
            counted: AtomicBool::new(true),
            websocket: AtomicBool::new(false),
            read: AtomicUsize::new(0),
            budget: pre_auth_bytes.saturating_add(PRE_AUTH_SLACK_BYTES),
            over: AtomicBool::new(false),
        }))
    }

    fn release(&self, ip: IpAddr) {
        let mut g = self.lock();
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&ip);
            }
        }
    }

    /// Connections not authenticated yet (tests, metrics).
    pub fn unauthenticated(&self) -> usize {
        self.lock().0
    }
}

/// One accepted connection's standing with the [`Gate`]; in the request extensions so the
/// WebSocket handler can mark it.
pub struct ConnGuard {
    ip: IpAddr,
    gate: Arc<Gate>,
    /// Still counted as not authenticated.
    counted: AtomicBool,
    /// The request was a WebSocket upgrade: reads from now on count against `budget` until
    /// authenticated.
    websocket: AtomicBool,
    read: AtomicUsize,
    budget: usize,
    /// The budget ran out (the transport failed the read).
    over: AtomicBool,
}

impl ConnGuard {
    /// The connection authenticated: it no longer counts, and its reads are not limited.
    pub fn authenticated(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            self.gate.release(self.ip);
        }
    }

    /// The request is a WebSocket upgrade: limit what it reads until it authenticates.
    pub fn upgrading(&self) {
        self.websocket.store(true, Ordering::Release);
    }

    /// Whether the pre-auth read budget ran out.
    pub fn over_budget(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.authenticated();
    }
}

/// The TCP stream, with the pre-auth read budget of its WebSocket. The WebSocket takes it back
/// from hyper after the upgrade (`socket::Io`).
pub struct GuardedIo {
    tcp: TcpStream,
    guard: Arc<ConnGuard>,
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let g = &self.guard;
        let limited = g.websocket.load(Ordering::Acquire) && g.counted.load(Ordering::Acquire);
        if !limited {
            return Pin::new(&mut self.tcp).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            let total = self.guard.read.fetch_add(n, Ordering::AcqRel) + n;
            if total > self.guard.budget {
                self.guard.over.store(true, Ordering::Release);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "frame before authentication exceeds the pre-auth limit",
                )));
            }
        }
        r
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection is a file descriptor;
/// the common 1,024 default is far below what the server can hold). Returns (soft, hard)
/// after the change.
pub fn raise_nofile_limit() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    lim = want;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        Some((lim.rlim_cur as u64, lim.rlim_max as u64))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Accepts and serves connections until shutdown, then waits (up to the shutdown timeout)
/// for the HTTP connections to finish their requests.
pub async fn run(state: Arc<AppState>, listener: TcpListener, app: Router) {
    let gate = state.gate.clone();
    let http = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .max_buf_size(MAX_HTTP_BUFFER);
    let builder = Arc::new(builder);
    let mut last_error_log: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // Per-connection errors (the peer reset before accept) need no pause.
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionRefused
                ) {
                    continue;
                }
                crate::Metrics::inc(&state.metrics.accept_errors);
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::error!(error = %e, "accept failed; retrying");
                    last_error_log = Some(std::time::Instant::now());
                }
                tokio::select! {
                    _ = state.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
                continue;
            }
        };
        let Some(guard) = gate.admit(peer.ip(), state.config.pre_auth_frame_bytes) else {
            crate::Metrics::inc(&state.metrics.unauthenticated_refused);
            tracing::debug!(%peer, "too many unauthenticated connections; closing");
            drop(tcp);
            continue;
        };
        // Signalling frames are small and latency-bound: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(GuardedIo {
            tcp,
            guard: guard.clone(),
        });
        let router = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(guard.clone());
            let mut router = router.clone();
            async move { tower_service::Service::call(&mut router, req).await }
        });
        let builder = builder.clone();
        let shutdown = state.shutdown.clone();
        http.spawn(async move {
            let conn = builder.serve_connection(io, svc).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let done = tokio::select! {
                _ = conn.as_mut() => true,
                _ = shutdown.cancelled() => false,
            };
            if !done {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
    drop(listener);
    http.close();
    let _ = tokio::time::timeout(state.config.shutdown_timeout, http.wait()).await;
}

/// The peer address of an accepted connection, as the router sees it.
pub type Peer = ConnectInfo<SocketAddr>;
