//! The IM link: one binary WebSocket to the rcall server carrying the envelope protocol.
//!
//! `RongIMLib.connect(token)` opens it and authenticates; afterwards call messages flow into
//! the engine and the engine's sends flow out. Non-call messages are not surfaced (CallLib
//! apps only need the call plugin).

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{ArrayBuffer, Uint8Array};
use rtc_core::engine::{Input, Received};
use rtc_core::proto::{
    client_frame, object_name, server_frame, Ack, Authenticate, CallContent, ClientFrame, SendMessage, ServerFrame,
};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::connection::{self, Status};
use crate::js;
use crate::runtime::rt;

/// IMLib codes used by the connect flow (spec E).
pub mod code {
    pub const SUCCESS: i32 = 0;
    pub const RC_NET_CHANNEL_INVALID: i32 = 30001;
    pub const RC_NET_UNAVAILABLE: i32 = 30002;
    pub const BIZ_ERROR_CLIENT_NOT_INIT: i32 = 33001;
    pub const BIZ_ERROR_INVALID_PARAMETER: i32 = 33003;
    pub const RC_CONN_USER_BLOCKED: i32 = 31009;
    pub const RC_CONNECTION_EXIST: i32 = 34001;
    pub const CONNECTION_TIMEOUT: i32 = 34006;
}

/// How long `connect()` waits for the server's answer.
const CONNECT_TIMEOUT_MS: i32 = 10_000;

type AuthReply = oneshot::Sender<Result<String, i32>>;

/// An open (or opening) connection.
pub struct Connection {
    ws: WebSocket,
    auth_reply: RefCell<Option<AuthReply>>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

impl Connection {
    /// Opens the socket and authenticates. Resolves to the user id, or an IMLib error code.
    pub async fn open(url: &str, token: &str, device_id: &str, resume_from: u64) -> Result<(Rc<Connection>, String), i32> {
        let ws = WebSocket::new(url).map_err(|_| code::BIZ_ERROR_INVALID_PARAMETER)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, rx) = oneshot::channel();
        let auth = ClientFrame::new(client_frame::Body::Authenticate(Authenticate {
            token: token.to_string(),
            device_id: device_id.to_string(),
            resume_from,
            instance: 0,
        }))
        .to_bytes();
        let on_open = {
            let ws = ws.clone();
            Closure::<dyn FnMut()>::new(move || {
                let _ = ws.send_with_u8_array(&auth);
            })
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
            let Ok(buf) = ev.data().dyn_into::<ArrayBuffer>() else { return };
            let bytes = Uint8Array::new(&buf).to_vec();
            match ServerFrame::from_bytes(&bytes) {
                Ok(frame) => js::spawn(async move { on_frame(frame) }),
                Err(e) => js::warn(&format!("[rcall] undecodable frame from the server: {e}")),
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(|_ev: CloseEvent| {
            js::spawn(async { on_closed() });
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let conn = Rc::new(Connection {
            ws,
            auth_reply: RefCell::new(Some(tx)),
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        let rt = rt();
        *rt.conn.borrow_mut() = Some(conn.clone());
        // Time out rather than leave connect() pending forever.
        let timeout = Closure::once_into_js(|| {
            let rt = crate::runtime::rt();
            let conn = rt.conn.borrow().clone();
            if let Some(tx) = conn.and_then(|c| c.auth_reply.borrow_mut().take()) {
                let _ = tx.send(Err(code::CONNECTION_TIMEOUT));
            }
        });
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(timeout.unchecked_ref(), CONNECT_TIMEOUT_MS);
        }
        match rx.await {
            Ok(Ok(user_id)) => Ok((conn, user_id)),
            Ok(Err(code)) => {
                *rt.conn.borrow_mut() = None;
                Err(code)
            }
            Err(_) => {
                *rt.conn.borrow_mut() = None;
                Err(code::RC_NET_UNAVAILABLE)
            }
        }
    }

    /// Writes one message; false if the socket is not open.
    pub fn send_message(&self, msg: SendMessage) -> bool {
        self.send_frame(ClientFrame::new(client_frame::Body::Send(msg)))
    }

    /// Asks for fresh ICE servers: TURN credentials from login expire on long-lived
    /// connections. The answer (`IceServers`) replaces the known ones.
    pub fn request_ice_servers(&self) {
        self.send_frame(ClientFrame::new(client_frame::Body::GetIceServers(rtc_core::proto::GetIceServers {})));
    }

    /// Asks which calls `user_id`'s devices are in; answered by `JoinedUserInfo`.
    pub fn query_joined_user_info(&self, request_id: u32, user_id: String) -> bool {
        let query = rtc_core::proto::GetJoinedUserInfo { request_id, user_id };
        self.send_frame(ClientFrame::new(client_frame::Body::GetJoinedUserInfo(query)))
    }

    /// Keeps idle connections (and proxies on the way) from timing out.
    pub fn ping(&self) {
        self.send_frame(ClientFrame::new(client_frame::Body::Ping(rtc_core::proto::Ping { nonce: 0 })));
    }

    fn send_frame(&self, frame: ClientFrame) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && self.ws.send_with_u8_array(&frame.to_bytes()).is_ok()
    }

    fn settle_auth(&self, result: Result<String, i32>) {
        if let Some(tx) = self.auth_reply.borrow_mut().take() {
            let _ = tx.send(result);
        }
    }
}

fn on_frame(frame: ServerFrame) {
    let rt = rt();
    let Some(conn) = rt.conn.borrow().clone() else { return };
    let server_time = frame.server_time;
    match frame.body {
        Some(server_frame::Body::AuthResult(r)) => {
            if r.code == code::SUCCESS {
                *rt.server_ice.borrow_mut() = ice_servers(r.ice_servers);
            }
            conn.settle_auth(if r.code == code::SUCCESS { Ok(r.user_id) } else { Err(r.code) });
        }
        Some(server_frame::Body::IceServers(s)) => *rt.server_ice.borrow_mut() = ice_servers(s.ice_servers),
        Some(server_frame::Body::Kicked(k)) => rt.feed(Input::Kicked { call_id: k.call_id }),
        Some(server_frame::Body::Deliver(d)) => {
            let seq = d.seq;
            rt.last_seq.set(rt.last_seq.get().max(seq));
            if object_name::ALL.contains(&d.message_type.as_str()) {
                match CallContent::from_bytes(&d.content) {
                    Ok(content) => rt.feed(Input::Signal(Received {
                        sender_user_id: d.sender_user_id,
                        sender_device_id: d.sender_device_id,
                        conversation_type: d.conversation_type,
                        target_id: d.target_id,
                        channel_id: d.channel_id,
                        sent_time: d.sent_time,
                        server_time,
                        offline: d.offline,
                        content,
                    })),
                    Err(e) => js::warn(&format!("[rcall] dropped an undecodable {} message: {e}", d.message_type)),
                }
            }
            conn.send_frame(ClientFrame::new(client_frame::Body::Ack(Ack { seq })));
        }
        Some(server_frame::Body::SendResult(r)) => {
            rt.in_flight.borrow_mut().retain(|id| *id != r.request_id);
            let result = if r.code == 0 { Ok(r.sent_time) } else { Err(r.code) };
            rt.feed(Input::SendResult { request_id: r.request_id, server_time, result });
        }
        Some(server_frame::Body::Error(e)) => {
            js::error(&format!("[rcall] server error {}: {}", e.code, e.message), &JsValue::UNDEFINED);
            if e.code == code::RC_CONN_USER_BLOCKED {
                // Blocked by the operator: reconnecting would only be refused.
                *rt.login.borrow_mut() = None;
                connection::set(&rt, Status::Disconnected, Some(e.code));
            }
        }
        Some(server_frame::Body::SyncDone(_)) => rt.feed(Input::SyncDone),
        Some(server_frame::Body::JoinedUserInfo(info)) => {
            crate::joined::settle(info.request_id, (info.code == 0).then_some(info.devices))
        }
        Some(server_frame::Body::Pong(_)) | None => {}
    }
}

fn ice_servers(list: Vec<rtc_core::proto::IceServer>) -> Vec<web_rtc::IceServer> {
    list.into_iter()
        .map(|s| web_rtc::IceServer {
            urls: s.urls,
            username: (!s.username.is_empty()).then_some(s.username),
            credential: (!s.credential.is_empty()).then_some(s.credential),
        })
        .collect()
}

fn on_closed() {
    let rt = rt();
    let Some(conn) = rt.conn.borrow().clone() else { return };
    let was_logging_in = conn.auth_reply.borrow().is_some();
    conn.settle_auth(Err(code::RC_NET_UNAVAILABLE));
    rt.fail_in_flight(code::RC_NET_CHANNEL_INVALID);
    crate::joined::fail_all();
    *rt.conn.borrow_mut() = None;
    if !was_logging_in && rt.login.borrow().is_some() {
        connection::set(&rt, Status::Suspended, Some(code::RC_NET_UNAVAILABLE));
        schedule_reconnect(1_000);
    }
}

/// The connection dropped after login: reconnect with the same token and resume from the last
/// message processed, so nothing is lost or repeated (calls in progress carry on). Backs off
/// 1, 2, 4 … 16 s; stops on an auth error (the app must connect again) or on `disconnect()`.
fn schedule_reconnect(delay_ms: i32) {
    let Some(login) = rt().login.borrow().clone() else { return };
    let retry = Closure::once_into_js(move || {
        js::spawn(async move {
            let rt = rt();
            if rt.login.borrow().is_none() || rt.conn.borrow().is_some() {
                return;
            }
            connection::set(&rt, Status::Connecting, None);
            match Connection::open(&login.url, &login.token, &login.device_id, rt.last_seq.get()).await {
                Ok(_) => connection::set(&rt, Status::Connected, None),
                Err(c @ (31004 | 31009 | 31020)) => {
                    js::warn(&format!("[rcall] reconnect refused ({c}); call RongIMLib.connect again"));
                    *rt.login.borrow_mut() = None;
                    connection::set(&rt, Status::Disconnected, Some(c));
                }
                Err(c) => {
                    connection::set(&rt, Status::Suspended, Some(c));
                    schedule_reconnect((delay_ms * 2).min(16_000));
                }
            }
        });
    });
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(retry.unchecked_ref(), delay_ms);
    }
}

/// What a reconnect needs.
#[derive(Clone)]
pub struct Login {
    pub url: String,
    pub token: String,
    pub device_id: String,
}

/// `ws(s)://host/ws` for a navi base URL `http(s)://host[/path]`.
pub fn websocket_url(navi: &str) -> Option<String> {
    let navi = navi.trim_end_matches('/');
    let rest = navi
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| navi.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .or_else(|| (navi.starts_with("ws://") || navi.starts_with("wss://")).then(|| navi.to_string()))?;
    Some(format!("{rest}/ws"))
}

/// CallLib's persistent device id (spec B.2): localStorage `RCCallDeviceId`, created once as
/// a random 0–9999 integer followed by `Date.now()`.
pub fn device_id() -> String {
    let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
    if let Some(id) = storage.as_ref().and_then(|s| s.get_item("RCCallDeviceId").ok().flatten()) {
        return id;
    }
    let id = format!("{}{}", (js_sys::Math::random() * 10_000.0) as u32, js::now());
    if let Some(s) = storage {
        let _ = s.set_item("RCCallDeviceId", &id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::websocket_url;

    #[test]
    fn navi_becomes_websocket_url() {
        assert_eq!(websocket_url("http://127.0.0.1:8080").as_deref(), Some("ws://127.0.0.1:8080/ws"));
        assert_eq!(websocket_url("https://call.example.com/").as_deref(), Some("wss://call.example.com/ws"));
        assert_eq!(websocket_url("ftp://x"), None);
    }
}
