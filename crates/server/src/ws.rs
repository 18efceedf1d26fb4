//! WebSocket signalling at `GET /ws`: one binary protobuf frame per message (see
//! `rtc_core::proto::envelope`).
//!
//! Each connection runs two halves in one task: the reader authenticates, then handles frames
//! one at a time (so one connection's messages are accepted in the order it sent them), and the
//! writer drains the connection's ordered outbox, which the hub and the reader both feed.
//! Any protocol violation ends only that connection, after an `ErrorFrame` saying why.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use rtc_core::proto::client_frame::Body as ClientBody;
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{
    error_code, AuthResult, Authenticate, ClientFrame, ErrorFrame, Pong, SendResult, ServerFrame,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::hub::{Origin, Outgoing, OUTBOX_CAPACITY};
use crate::token;
use crate::AppState;

/// IMLib `RC_CONNECTION_EXIST`: `Authenticate` on an already authenticated connection.
pub const CODE_CONNECTION_EXIST: i32 = 34001;

/// WebSocket close codes (RFC 6455) sent after an `ErrorFrame`.
mod close_code {
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
    upgrade
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_upgrade(move |socket| run_connection(state, socket))
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

async fn send_close(sink: &mut Sink, code: u16, reason: &'static str) {
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
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
    send_close(&mut sink, code, "").await;
}

async fn run_connection(state: Arc<AppState>, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let cancel = state.shutdown.child_token();
    let max = state.config.max_frame_bytes;

    // Authentication: the first frame, within the deadline.
    let first = tokio::select! {
        _ = cancel.cancelled() => return send_and_close(sink, vec![], close_code::GOING_AWAY).await,
        r = tokio::time::timeout(state.config.auth_timeout, next_frame(&mut stream, max)) => r,
    };
    let auth = match first {
        Err(_elapsed) => {
            let err = error_frame(
                error_code::NOT_AUTHENTICATED,
                "no Authenticate frame in time",
            );
            return send_and_close(sink, vec![Body::Error(err)], close_code::POLICY).await;
        }
        // (`next_frame` never yields Control.)
        Ok(Inbound::Closed) | Ok(Inbound::Control) => return,
        Ok(Inbound::Violation(err)) => {
            let code = close_code_for(&err);
            return send_and_close(sink, vec![Body::Error(err)], code).await;
        }
        Ok(Inbound::Frame(ClientFrame {
            body: Some(ClientBody::Authenticate(a)),
        })) => a,
        Ok(Inbound::Frame(_)) => {
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
    let cfg = &state.config;
    let user_id = match token::verify(&cfg.app_key, &cfg.app_secret, &token, now_ms()) {
        Ok(claims) => claims.u,
        Err(e) => {
            tracing::info!(reason = %e, "authentication refused");
            let result = AuthResult {
                code: e.imlib_code(),
                user_id: String::new(),
                message: e.to_string(),
            };
            return send_and_close(sink, vec![Body::AuthResult(result)], close_code::POLICY).await;
        }
    };

    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let ok = AuthResult {
        code: 0,
        user_id: user_id.clone(),
        message: String::new(),
    };
    // Queued before registering, so nothing can overtake it.
    let _ = tx.try_send(Outgoing::Frame(Body::AuthResult(ok)));
    let conn_id = state.hub.register(
        &user_id,
        &device_id,
        resume_from,
        tx.clone(),
        cancel.clone(),
    );
    tracing::info!(user_id, device_id, conn_id, "connected");
    let origin = Origin {
        conn_id,
        user_id,
        device_id,
    };

    let reader = read_loop(&state, &origin, stream, tx, cancel.clone());
    let writer = write_loop(sink, rx, cancel.clone());
    tokio::join!(reader, writer);
    tracing::info!(user_id = origin.user_id, conn_id, "disconnected");
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

async fn read_loop(
    state: &AppState,
    origin: &Origin,
    mut stream: SplitStream<WebSocket>,
    tx: mpsc::Sender<Outgoing>,
    cancel: CancellationToken,
) {
    let max = state.config.max_frame_bytes;
    loop {
        let inbound = tokio::select! {
            _ = cancel.cancelled() => break,
            i = next_frame(&mut stream, max) => i,
        };
        let reply = match inbound {
            Inbound::Closed => break,
            Inbound::Control => continue,
            Inbound::Violation(err) => {
                tracing::info!(
                    conn_id = origin.conn_id,
                    code = err.code,
                    "protocol violation, closing"
                );
                let _ = send_or_cancel(&tx, Outgoing::Fatal(err), &cancel).await;
                break;
            }
            Inbound::Frame(frame) => handle_frame(state, origin, frame),
        };
        if let Some(body) = reply {
            if !send_or_cancel(&tx, Outgoing::Frame(body), &cancel).await {
                break;
            }
        }
    }
    // Leave the routing table first: after this no new frame is queued, so the writer drains
    // the outbox and stops once `tx` (the last sender) is dropped here.
    state.hub.unregister(&origin.user_id, origin.conn_id);
}

/// Queues a frame, waiting if the outbox is full; false if the connection is going away.
async fn send_or_cancel(
    tx: &mpsc::Sender<Outgoing>,
    item: Outgoing,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        r = tx.send(item) => r.is_ok(),
    }
}

/// Handles one authenticated frame; returns the direct reply, if any.
fn handle_frame(state: &AppState, origin: &Origin, frame: ClientFrame) -> Option<Body> {
    match frame.body? {
        ClientBody::Send(msg) => {
            let request_id = msg.request_id;
            Some(Body::SendResult(match state.hub.route(origin, msg) {
                Ok(acc) => SendResult {
                    request_id,
                    code: 0,
                    sent_time: acc.sent_time,
                    message_uid: acc.message_uid,
                },
                Err(e) => {
                    tracing::debug!(conn_id = origin.conn_id, error = %e, "send refused");
                    SendResult {
                        request_id,
                        code: e.imlib_code(),
                        sent_time: 0,
                        message_uid: String::new(),
                    }
                }
            }))
        }
        ClientBody::Ping(p) => Some(Body::Pong(Pong { nonce: p.nonce })),
        ClientBody::Ack(a) => {
            state.hub.ack(&origin.user_id, &origin.device_id, a.seq);
            None
        }
        ClientBody::Authenticate(_) => Some(Body::AuthResult(AuthResult {
            code: CODE_CONNECTION_EXIST,
            user_id: origin.user_id.clone(),
            message: "already authenticated".into(),
        })),
    }
}

async fn write_loop(mut sink: Sink, mut rx: mpsc::Receiver<Outgoing>, cancel: CancellationToken) {
    loop {
        let item = tokio::select! {
            biased;
            item = rx.recv() => item,
            _ = cancel.cancelled() => {
                send_close(&mut sink, close_code::GOING_AWAY, "").await;
                break;
            }
        };
        match item {
            None => {
                send_close(&mut sink, close_code::NORMAL, "").await;
                break;
            }
            Some(Outgoing::Frame(body)) => {
                let sent = tokio::select! {
                    _ = cancel.cancelled() => false,
                    r = sink.send(encode(body)) => r.is_ok(),
                };
                if !sent {
                    cancel.cancel();
                    break;
                }
            }
            Some(Outgoing::Fatal(err)) => {
                let code = close_code_for(&err);
                let _ =
                    tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, sink.send(encode(Body::Error(err))))
                        .await;
                send_close(&mut sink, code, "").await;
                cancel.cancel();
                break;
            }
        }
    }
}
