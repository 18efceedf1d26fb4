//! WebSocket signalling at `GET /ws`: one binary protobuf frame per message (see
//! `rtc_core::proto::envelope`).
//!
//! Each connection runs two halves in one task: the reader authenticates, then handles frames
//! one at a time (so one connection's messages are accepted in the order it sent them), and the
//! writer drains the connection's ordered [`Outbox`], which the hub and the reader both feed,
//! writing everything that is queued before one flush (one syscall for a burst).
//! Any protocol violation ends only that connection, after an `ErrorFrame` saying why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use rtc_core::proto::client_frame::Body as ClientBody;
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{
    error_code, AuthResult, Authenticate, ClientFrame, ErrorFrame, IceServers, Pong, SendResult,
    ServerFrame,
};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::hub::{encode_body, AppId, Origin, Outbox, Outgoing, PushError, CODE_SEND_TOO_FAST};
use crate::metrics::Metrics;
use crate::token::{self, Claims, TokenError};
use crate::{ice, AppState};

/// IMLib `RC_CONNECTION_EXIST`: `Authenticate` on an already authenticated connection.
pub const CODE_CONNECTION_EXIST: i32 = 34001;
/// Longest accepted device id.
pub const MAX_DEVICE_ID_CHARS: usize = 128;
/// Socket read buffer per connection: small, because idle connections dominate memory.
const READ_BUFFER_BYTES: usize = 2048;

/// WebSocket close codes (RFC 6455) sent after an `ErrorFrame`.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// Time allowed to flush the last frames of a closing connection.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn ws_handler(State(state): State<Arc<AppState>>, upgrade: WebSocketUpgrade) -> Response {
    // The transport limit sits well above our own limit so an oversized frame reaches us and
    // gets a proper FRAME_TOO_LARGE instead of a torn connection; it still bounds memory.
    let transport_limit = state.config.max_frame_bytes.saturating_mul(16).max(1 << 20);
    let tracker = state.tracker.clone();
    upgrade
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .read_buffer_size(std::env::var("DBG_RB").ok().and_then(|v| v.parse().ok()).unwrap_or(READ_BUFFER_BYTES))
        .on_upgrade(move |socket| {
            let f = run_connection(state, socket);

            tracker.track_future(f)
        })
}

/// A client frame, or why the connection must end.
enum Inbound {
    Frame(ClientFrame),
    /// WebSocket ping/pong: handled by the transport, nothing for us to do.
    Control,
    /// The peer closed, or the transport failed.
    Closed,
    Violation(ErrorFrame),
}

fn error_frame(code: i32, message: impl Into<String>) -> ErrorFrame {
    ErrorFrame {
        code,
        message: message.into(),
    }
}

fn classify(msg: Option<Result<Message, axum::Error>>, max: usize) -> Inbound {
    match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Inbound::Closed,
        Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => Inbound::Control,
        Some(Ok(Message::Text(_))) => Inbound::Violation(error_frame(
            error_code::TEXT_FRAME,
            "text frames are not part of the protocol; send binary ClientFrame messages",
        )),
        Some(Ok(Message::Binary(bytes))) => {
            if bytes.len() > max {
                return Inbound::Violation(error_frame(
                    error_code::FRAME_TOO_LARGE,
                    format!(
                        "frame of {} bytes exceeds the limit of {max} bytes",
                        bytes.len()
                    ),
                ));
            }
            match ClientFrame::from_bytes(&bytes) {
                Ok(frame) => Inbound::Frame(frame),
                Err(e) => Inbound::Violation(error_frame(
                    error_code::MALFORMED_FRAME,
                    format!("frame does not decode as ClientFrame: {e}"),
                )),
            }
        }
    }
}

fn close_code_for(err: &ErrorFrame) -> u16 {
    match err.code {
        error_code::FRAME_TOO_LARGE => close_code::TOO_BIG,
        error_code::TEXT_FRAME => close_code::UNSUPPORTED,
        error_code::MALFORMED_FRAME => close_code::PROTOCOL,
        _ => close_code::POLICY,
    }
}

type Sink = SplitSink<WebSocket, Message>;

fn encode(body: Body) -> Message {
    Message::Binary(ServerFrame::new(now_ms(), body).to_bytes().into())
}

/// `ServerFrame { server_time, body }` from a pre-encoded body: protobuf fields concatenate.
fn frame_bytes(server_time: i64, body: &Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(11 + body.len());
    prost::encoding::int64::encode(1, &server_time, &mut buf);
    buf.extend_from_slice(body);
    buf.freeze()
}

async fn send_close(sink: &mut Sink, code: u16) {
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: "".into(),
    }));
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
        let _ = sink.send(close).await;
        let _ = sink.close().await;
    })
    .await;
}

/// Sends frames, then closes; used before the connection is registered.
async fn send_and_close(mut sink: Sink, bodies: Vec<Body>, code: u16) {
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
        for body in bodies {
            if sink.send(encode(body)).await.is_err() {
                return;
            }
        }
    })
    .await;
    send_close(&mut sink, code).await;
}

fn refusal(code: i32, message: impl Into<String>) -> Body {
    Body::AuthResult(AuthResult {
        code,
        user_id: String::new(),
        message: message.into(),
        ice_servers: Vec::new(),
    })
}

/// Picks the app the token claims and verifies the token with that app's secret.
fn verify_token(state: &AppState, token: &str, now: i64) -> Result<(AppId, Claims), TokenError> {
    let key = token::claimed_app_key(token).ok_or(TokenError::Malformed)?;
    let app = state.hub.app_by_key(&key).ok_or(TokenError::WrongApp)?;
    let claims = token::verify(&key, state.hub.app(app).secret(), token, now)?;
    Ok((app, claims))
}

async fn run_connection(state: Arc<AppState>, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let max = state.config.max_frame_bytes;
    let metrics = &state.metrics;

    // Authentication: the first frame, within the deadline.
    let first = tokio::select! {
        _ = state.shutdown.cancelled() => return send_and_close(sink, vec![], close_code::GOING_AWAY).await,
        r = tokio::time::timeout(state.config.auth_timeout, next_frame(&mut stream, max)) => r,
    };
    let auth = match first {
        Err(_elapsed) => {
            metrics.error(error_code::NOT_AUTHENTICATED);
            let err = error_frame(
                error_code::NOT_AUTHENTICATED,
                "no Authenticate frame in time",
            );
            return send_and_close(sink, vec![Body::Error(err)], close_code::POLICY).await;
        }
        // (`next_frame` never yields Control.)
        Ok(Inbound::Closed) | Ok(Inbound::Control) => return,
        Ok(Inbound::Violation(err)) => {
            metrics.error(err.code);
            let code = close_code_for(&err);
            return send_and_close(sink, vec![Body::Error(err)], code).await;
        }
        Ok(Inbound::Frame(ClientFrame {
            body: Some(ClientBody::Authenticate(a)),
        })) => a,
        Ok(Inbound::Frame(_)) => {
            metrics.error(error_code::NOT_AUTHENTICATED);
            let err = error_frame(
                error_code::NOT_AUTHENTICATED,
                "the first frame must be Authenticate",
            );
            return send_and_close(sink, vec![Body::Error(err)], close_code::POLICY).await;
        }
    };
    let Authenticate {
        token,
        device_id,
        resume_from,
    } = auth;
    let now = now_ms();
    let (app, claims) = match verify_token(&state, &token, now) {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(reason = %e, "authentication refused");
            metrics.error(e.imlib_code());
            let body = refusal(e.imlib_code(), e.to_string());
            return send_and_close(sink, vec![body], close_code::POLICY).await;
        }
    };
    if device_id.chars().count() > MAX_DEVICE_ID_CHARS {
        metrics.error(crate::hub::CODE_INVALID_PARAMETER);
        let body = refusal(
            crate::hub::CODE_INVALID_PARAMETER,
            format!("device id is longer than {MAX_DEVICE_ID_CHARS} characters"),
        );
        return send_and_close(sink, vec![body], close_code::POLICY).await;
    }

    let outbox = Arc::new(Outbox::new());
    let auth_ok = encode_body(&Body::AuthResult(AuthResult {
        code: 0,
        user_id: claims.u.clone(),
        message: String::new(),
        ice_servers: ice::ice_servers(&state.config, &claims.u, now),
    }));
    let reg = match state.hub.register(
        app,
        &claims.u,
        &device_id,
        claims.iat,
        resume_from,
        outbox.clone(),
        auth_ok,
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(user_id = claims.u, reason = %e, "connection refused");
            metrics.error(e.imlib_code());
            let body = refusal(e.imlib_code(), e.to_string());
            return send_and_close(sink, vec![body], close_code::POLICY).await;
        }
    };
    drop(claims);
    drop(token);

    // Replay before live traffic.
    let data = match state
        .store
        .sync_data(
            state.hub.app(app).key.clone(),
            reg.user_id.clone(),
            reg.device_id.clone(),
            reg.cursor,
            now_ms(),
        )
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "loading stored messages failed; replaying memory only");
            Default::default()
        }
    };
    let replayed = state.hub.finish_sync(app, &reg, data);
    tracing::info!(
        user_id = &*reg.user_id,
        device_id = &*reg.device_id,
        conn_id = reg.conn_id,
        replayed,
        "connected"
    );
    let origin = Origin {
        app,
        conn_id: reg.conn_id,
        user_id: reg.user_id,
        device_id: reg.device_id,
    };

    let cancel = state.kill.child_token();
    let reader = read_loop(&state, &origin, stream, &outbox, &cancel);
    let writer = write_loop(&state, sink, &outbox, &cancel);
    tokio::join!(reader, writer);
    tracing::info!(
        user_id = &*origin.user_id,
        conn_id = origin.conn_id,
        "disconnected"
    );
}

/// The next non-control frame.
async fn next_frame(stream: &mut SplitStream<WebSocket>, max: usize) -> Inbound {
    loop {
        match classify(stream.next().await, max) {
            Inbound::Control => continue,
            other => return other,
        }
    }
}

/// Per-connection token bucket. Frames over the limit are refused; a connection that keeps
/// sending while refused (more than `burst` frames in debt) is closed.
struct RateLimiter {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

#[derive(Debug, PartialEq)]
enum RateDecision {
    Allow,
    Refuse,
    Close,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self, cost: f64, now: Instant) -> RateDecision {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            RateDecision::Allow
        } else if self.tokens > -self.burst {
            self.tokens -= cost;
            RateDecision::Refuse
        } else {
            RateDecision::Close
        }
    }
}

enum Reply {
    None,
    Frame(Body),
    Fatal(ErrorFrame),
}

async fn read_loop(
    state: &AppState,
    origin: &Origin,
    mut stream: SplitStream<WebSocket>,
    outbox: &Outbox,
    cancel: &CancellationToken,
) {
    let max = state.config.max_frame_bytes;
    let mut limiter = RateLimiter::new(
        state.config.rate_limit_per_sec,
        state.config.rate_limit_burst,
    );
    loop {
        let inbound = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = state.shutdown.cancelled() => break,
            i = next_frame(&mut stream, max) => i,
        };
        let reply = match inbound {
            Inbound::Closed => break,
            Inbound::Control => continue,
            Inbound::Violation(err) => Reply::Fatal(err),
            Inbound::Frame(frame) => handle_frame(state, origin, frame, &mut limiter),
        };
        match reply {
            Reply::None => {}
            Reply::Frame(body) => {
                let item = Outgoing::Frame {
                    body: encode_body(&body),
                    accepted: None,
                };
                match outbox.push(item, true) {
                    Ok(()) => {}
                    Err(PushError::Closed) => break,
                    Err(PushError::Full) => {
                        state.metrics.error(error_code::SLOW_CONSUMER);
                        outbox.abort_with(error_frame(
                            error_code::SLOW_CONSUMER,
                            "too many unread frames; reconnect and resume",
                        ));
                        break;
                    }
                }
            }
            Reply::Fatal(err) => {
                tracing::info!(
                    conn_id = origin.conn_id,
                    code = err.code,
                    "protocol violation, closing"
                );
                state.metrics.error(err.code);
                let _ = outbox.push(Outgoing::Fatal(err), false);
                break;
            }
        }
    }
    // Leave the routing table first: after this nothing new is queued, so the writer drains
    // the outbox and closes.
    state
        .hub
        .unregister(origin.app, &origin.user_id, origin.conn_id);
    outbox.close();
}

/// Handles one authenticated frame.
fn handle_frame(
    state: &AppState,
    origin: &Origin,
    frame: ClientFrame,
    limiter: &mut RateLimiter,
) -> Reply {
    let Some(body) = frame.body else {
        return Reply::None;
    };
    // Acks are cumulative and cheap; they still count a little so they cannot flood.
    let cost = if matches!(body, ClientBody::Ack(_)) {
        0.1
    } else {
        1.0
    };
    match limiter.take(cost, Instant::now()) {
        RateDecision::Allow => {}
        RateDecision::Refuse => {
            state.metrics.error(CODE_SEND_TOO_FAST);
            return match body {
                ClientBody::Send(m) => Reply::Frame(Body::SendResult(SendResult {
                    request_id: m.request_id,
                    code: CODE_SEND_TOO_FAST,
                    sent_time: 0,
                    message_uid: String::new(),
                })),
                _ => Reply::None,
            };
        }
        RateDecision::Close => {
            return Reply::Fatal(error_frame(
                error_code::RATE_LIMITED,
                "rate limit exceeded repeatedly",
            ))
        }
    }
    match body {
        ClientBody::Send(msg) => {
            let request_id = msg.request_id;
            Reply::Frame(Body::SendResult(match state.hub.route(origin, msg) {
                Ok(acc) => SendResult {
                    request_id,
                    code: 0,
                    sent_time: acc.sent_time,
                    message_uid: acc.message_uid,
                },
                Err(e) => {
                    tracing::debug!(conn_id = origin.conn_id, error = %e, "send refused");
                    state.metrics.error(e.imlib_code());
                    SendResult {
                        request_id,
                        code: e.imlib_code(),
                        sent_time: 0,
                        message_uid: String::new(),
                    }
                }
            }))
        }
        ClientBody::Ping(p) => Reply::Frame(Body::Pong(Pong { nonce: p.nonce })),
        ClientBody::Ack(a) => {
            state.hub.ack(origin, a.seq);
            Reply::None
        }
        ClientBody::GetIceServers(_) => Reply::Frame(Body::IceServers(IceServers {
            ice_servers: ice::ice_servers(&state.config, &origin.user_id, now_ms()),
        })),
        ClientBody::Authenticate(_) => {
            state.metrics.error(CODE_CONNECTION_EXIST);
            Reply::Frame(Body::AuthResult(AuthResult {
                code: CODE_CONNECTION_EXIST,
                user_id: origin.user_id.to_string(),
                message: "already authenticated".into(),
                ice_servers: Vec::new(),
            }))
        }
    }
}

/// Awaits `fut` unless the connection is cancelled first (then `None`).
async fn or_cancel<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        v = fut => Some(v),
    }
}

async fn write_loop(state: &AppState, mut sink: Sink, outbox: &Outbox, cancel: &CancellationToken) {
    let metrics: &Metrics = &state.metrics;
    let mut batch = Vec::new();
    let mut accepted: Vec<Instant> = Vec::new();
    loop {
        let more = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                send_close(&mut sink, close_code::GOING_AWAY).await;
                return;
            }
            more = outbox.next_batch(&mut batch) => more,
        };
        if !more {
            let code = if state.shutdown.is_cancelled() {
                close_code::GOING_AWAY
            } else {
                close_code::NORMAL
            };
            send_close(&mut sink, code).await;
            cancel.cancel();
            return;
        }
        let server_time = now_ms();
        let mut fatal = None;
        let mut ok = true;
        for item in batch.drain(..) {
            match item {
                Outgoing::Frame { body, accepted: a } => {
                    let msg = Message::Binary(frame_bytes(server_time, &body));
                    if !matches!(or_cancel(cancel, sink.feed(msg)).await, Some(Ok(()))) {
                        ok = false;
                        break;
                    }
                    if let Some(a) = a {
                        accepted.push(a);
                    }
                }
                Outgoing::Fatal(err) => {
                    fatal = Some(err);
                    break;
                }
            }
        }
        batch.clear();
        if ok && !matches!(or_cancel(cancel, sink.flush()).await, Some(Ok(()))) {
            ok = false;
        }
        if !accepted.is_empty() {
            let now = Instant::now();
            for a in accepted.drain(..) {
                metrics.observe_delivery(now.duration_since(a));
            }
        }
        if !ok {
            cancel.cancel();
            return;
        }
        if let Some(err) = fatal {
            let code = close_code_for(&err);
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, sink.send(encode(Body::Error(err))))
                .await;
            send_close(&mut sink, code).await;
            cancel.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_refuses_then_closes_and_recovers() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 5);
        for _ in 0..5 {
            assert_eq!(r.take(1.0, t0), RateDecision::Allow);
        }
        assert_eq!(r.take(1.0, t0), RateDecision::Refuse);
        // One second later 10 tokens came back (capped at the burst).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.take(1.0, t1), RateDecision::Allow);
        // Flooding: refused up to `burst` in debt, then closed.
        let mut last = RateDecision::Allow;
        for _ in 0..20 {
            last = r.take(1.0, t1);
            if last == RateDecision::Close {
                break;
            }
        }
        assert_eq!(last, RateDecision::Close);
    }
}
