//! The IM link: one binary WebSocket to the rcall server carrying the envelope protocol.
//!
//! `RongIMLib.connect(token)` opens it and authenticates; afterwards call messages flow into
//! the engine and the engine's sends flow out. Non-call messages are not surfaced (CallLib
//! apps only need the call plugin).
//!
//! Recovery (issue 10): every message the engine sends goes through the login's
//! [`rtc_core::link::ClientLink`], which numbers it and keeps it until the server confirms it;
//! while the socket is down it queues, and after a reconnect it resends what the server lacks.
//! A dropped socket therefore fails nothing (only `disconnect()` does). The SDK notices a
//! silent server with app pings ([`PING_INTERVAL_MS`], [`DEAD_AFTER_MS`]) and reconnects at
//! once, then with a short jittered backoff ([`reconnect_delay`]). The engine hears
//! `LinkDown { since }` / `LinkUp` and ends live calls itself if the link stays down.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Uint8Array};
use rtc_core::engine::{Input, Received, SfuInput};
use rtc_core::link::ClientLink;
use rtc_core::proto::{client_frame, object_name, server_frame, Ack, Authenticate, CallContent, ClientFrame, ServerFrame};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::connection::{ConnStatus, Status};
use crate::js;
use crate::navi::NaviList;
use rtc_core::text::int;

/// IMLib codes used by the connect flow (spec E), by their IMLib names: the client's own here,
/// the server's answers from `rtc_core::proto::error_code` (their one home).
pub mod code {
    pub use rtc_core::proto::error_code::{
        CONNECTION_EXIST as RC_CONNECTION_EXIST, INVALID_PARAMETER as BIZ_ERROR_INVALID_PARAMETER,
        SERVER_UNAVAILABLE as RC_CONN_SERVER_UNAVAILABLE, TOKEN_EXPIRED as RC_CONN_TOKEN_EXPIRED,
        TOKEN_INCORRECT as RC_CONN_TOKEN_INCORRECT, USER_BLOCKED as RC_CONN_USER_BLOCKED,
    };
    pub const SUCCESS: i32 = 0;
    pub const RC_NET_CHANNEL_INVALID: i32 = 30001;
    pub const RC_NET_UNAVAILABLE: i32 = 30002;
    pub const BIZ_ERROR_CLIENT_NOT_INIT: i32 = 33001;
    pub const CONNECTION_TIMEOUT: i32 = 34006;
}

/// How long `connect()` waits for the server's answer.
pub const CONNECT_TIMEOUT_MS: i32 = 10_000;
/// How long one reconnect attempt waits. A server that is down refuses at once; a black-holed
/// one (dead route, a firewall dropping packets) would otherwise hold the loop for
/// [`CONNECT_TIMEOUT_MS`]. 3 s still covers TCP + TLS + upgrade + auth at a 500 ms RTT.
const RECONNECT_TIMEOUT_MS: i32 = 3_000;
/// How long one `connect()` attempt waits with several navi URLs: the round stays within
/// about [`CONNECT_TIMEOUT_MS`], but no attempt gets less than [`RECONNECT_TIMEOUT_MS`].
pub fn attempt_timeout_ms(urls: usize) -> i32 {
    (CONNECT_TIMEOUT_MS / urls.max(1) as i32).max(RECONNECT_TIMEOUT_MS)
}
/// Reconnect backoff: the first retry goes at once (a blip or a server restart that is already
/// over), then `RECONNECT_BASE_MS × 2^(n-1)`, ±50 % so a restarted server is not hit by every
/// client in the same millisecond, capped as below.
const RECONNECT_BASE_MS: f64 = 100.0;
/// Cap while a call is live or messages wait to be sent: the call must be back within a second
/// of the server being reachable again (a mute, a hangup waiting in the queue); 800 ms leaves
/// the rest of that second to the handshake.
const RECONNECT_CAP_IN_CALL_MS: f64 = 800.0;
/// Cap otherwise: nothing waits on the link, and a server restarting under load is spared a
/// once-a-second storm from every idle page.
const RECONNECT_CAP_IDLE_MS: f64 = 4_000.0;
/// An app `Ping` this often while connected. Browsers hide WebSocket pings from JS, so the
/// `Pong` is the only way to hear from a quiet server; it also confirms sends
/// (`Pong.accepted_upto`) that had no receipt. The server's WebSocket ping waits for these to be
/// overdue, so an SDK connection costs one ping round trip per interval; 5 s is kept for the
/// 12 s dead-server detection below (BENCHMARKS.md, "Session 14: the cost of liveness").
pub const PING_INTERVAL_MS: i64 = 5_000;
/// Nothing at all received for this long (two pings unanswered) = the connection is dead:
/// close it (code 4000) and reconnect. Well above a slow mobile RTT, well below the engine's
/// 30 s self cut-off so a reconnect can still save the call.
pub const DEAD_AFTER_MS: i64 = 12_000;
/// ... but only once a ping has had this long to be answered: a page whose timers were
/// throttled (background tab) may not have pinged for a while, and a silence it caused itself
/// is not the server's.
const PONG_WAIT_MS: i64 = 4_000;
/// WebSocket close code for a connection given up as dead (application range 4000–4999).
const CLOSE_DEAD: u16 = 4000;
/// WebSocket close code for a deliberate close (`disconnect()`, leaving the page).
pub const CLOSE_NORMAL: u16 = 1000;

/// What the IM link needs of the rest of the SDK (the runtime implements it): its own state,
/// and the engine, which hears what arrives. Passed explicitly, so this module names no
/// runtime.
pub trait Host: 'static {
    fn im(&self) -> &ImLink;
    /// Hands an input to the engine now (and carries out what it outputs).
    fn feed(self: &Rc<Self>, input: Input);
    /// The server's profile of this user, from each `AuthResult`.
    fn server_profile(self: &Rc<Self>, profile: rtc_core::proto::UserProfile);
    /// The engine runs (a login is complete and `disconnect()` was not called).
    fn running(&self) -> bool;
    /// Whether the engine has `call_id` and it has not ended.
    fn live(&self, call_id: &str) -> bool;
    /// Whether any call is live (reconnects are then urgent).
    fn in_call(&self) -> bool;
}

/// The IM link's state: the connection, the login it re-establishes, where delivery resumes,
/// the exactly-once link, liveness, the reconnect schedule and the connection status. Only
/// this module changes it.
#[derive(Default)]
pub struct ImLink {
    initialized: Cell<bool>,
    /// The rcall server's WebSocket URLs (`navi`, one or several), and which one is next.
    /// `None` until the first connect when `init()` named none (the page's origin is used).
    navi: RefCell<Option<NaviList>>,
    conn: RefCell<Option<Rc<Connection>>>,
    /// Set after a successful connect; cleared by `disconnect()` (then nothing reconnects).
    login: RefCell<Option<Login>>,
    /// Highest delivered `seq` processed, to resume from after a reconnect.
    last_seq: Cell<u64>,
    /// The login's side of the exactly-once contract: numbers what the engine sends, keeps it
    /// until confirmed, queues while disconnected. Created by `connect()`, kept across
    /// reconnects, dropped by `disconnect()`.
    link: RefCell<Option<ClientLink>>,
    /// Local time of the last frame received from the server (`LinkDown.since`, liveness).
    last_rx: Cell<i64>,
    /// When the oldest ping not followed by any frame was sent.
    ping_unanswered: Cell<Option<i64>>,
    last_ping: Cell<i64>,
    /// The engine was told `LinkDown` and not yet `LinkUp`.
    link_down: Cell<bool>,
    /// The server runs group calls' media through its SFU (`AuthResult.sfu`).
    sfu: Cell<bool>,
    /// Reconnect rounds (every navi URL tried once) that failed since the link was last up:
    /// the backoff step.
    reconnect_attempt: Cell<u32>,
    /// The last reconnect attempt was refused as busy (see [`after_failure`]).
    server_busy: Cell<bool>,
    /// The last refusal's `AuthResult.retry_after_ms`: the turn a busy node gave (0: none).
    retry_after: Cell<u32>,
    /// ICE servers (STUN, TURN with fresh credentials) the server handed out at login; used
    /// when the app configured none.
    server_ice: RefCell<Vec<web_rtc::IceServer>>,
    /// `RongIMLib.getConnectionStatus()` and its listeners.
    status: ConnStatus,
}

impl ImLink {
    /// `RongIMLib.init()`: the navi list (`None`: the page's origin at connect time).
    pub fn init(&self, navi: Option<NaviList>) {
        *self.navi.borrow_mut() = navi;
        self.initialized.set(true);
    }

    pub fn status(&self) -> &ConnStatus {
        &self.status
    }

    /// The open (or opening) connection.
    pub fn connection(&self) -> Option<Rc<Connection>> {
        self.conn.borrow().clone()
    }

    /// The ICE servers the server handed out (empty when it gives none).
    pub fn server_ice(&self) -> Vec<web_rtc::IceServer> {
        self.server_ice.borrow().clone()
    }

    pub fn has_server_ice(&self) -> bool {
        !self.server_ice.borrow().is_empty()
    }

    /// Whether the server runs group calls through its SFU (as of the last login).
    pub fn sfu(&self) -> bool {
        self.sfu.get()
    }

    /// Hands a message to the link: written now when connected, else queued until the next
    /// reconnect. False: not logged in, or the queue is full (logged). Synchronous (leaving the
    /// page relies on it: the write happens before this returns).
    pub fn send(&self, message: rtc_core::proto::SendMessage) -> bool {
        let queued = self.link.borrow_mut().as_mut().map(|l| l.send(message));
        match queued {
            Some(Ok(Some(frame))) => {
                // A socket that is closing already keeps the message unconfirmed: it goes again
                // after the reconnect.
                if let Some(c) = self.connection() {
                    c.write(&frame);
                }
                true
            }
            Some(Ok(None)) => true,
            Some(Err(full)) => {
                js::warn(&["[rcall] ", &full.message()].concat());
                false
            }
            None => false,
        }
    }

    /// `disconnect()`: forgets the login, closes the socket (1000), drops the link.
    pub fn shut_down(&self) {
        *self.login.borrow_mut() = None;
        self.status.set(Status::Disconnected, Some(crate::connection::ACTIVE_DISCONNECT));
        self.last_seq.set(0);
        *self.conn.borrow_mut() = None; // closes the socket with 1000
        if let Some(mut l) = self.link.borrow_mut().take() {
            l.reset();
        }
        self.link_down.set(false);
        self.ping_unanswered.set(None);
    }

    /// Fills in the page's own origin when `init()` named no navi (also when a later `init()`
    /// without one replaced the list mid-session). False if there is no origin to use.
    fn ensure_navi(&self) -> bool {
        if self.navi.borrow().is_none() {
            let origin = web_sys::window().and_then(|w| w.location().origin().ok());
            let url = origin.and_then(|o| crate::navi::websocket_url_for(&o, false));
            *self.navi.borrow_mut() = url.and_then(|u| NaviList::new(vec![u]));
        }
        self.navi.borrow().is_some()
    }

    fn current_url(&self) -> Option<String> {
        self.navi.borrow().as_ref().map(|l| l.current().to_string())
    }
}

/// `RongIMLib.connect(token)`: one round over the navi URLs, from the one that last worked (a
/// refused token ends it). Resolves to (user id, device id) once authenticated; the caller
/// starts the engine.
pub async fn login<H: Host>(host: &Rc<H>, token: JsValue) -> Result<(String, String), i32> {
    let im = host.im();
    if !im.initialized.get() {
        return Err(code::BIZ_ERROR_CLIENT_NOT_INIT);
    }
    let Some(token) = token.as_string().filter(|t| !t.is_empty()) else {
        return Err(code::BIZ_ERROR_INVALID_PARAMETER);
    };
    if host.running() {
        return Err(code::RC_CONNECTION_EXIST);
    }
    if !im.ensure_navi() {
        return Err(code::BIZ_ERROR_INVALID_PARAMETER);
    }
    let timeout_ms = attempt_timeout_ms(im.navi.borrow().as_ref().map_or(1, NaviList::len));
    let device_id = device_id();
    im.status.set(Status::Connecting, None);
    // One link per login, kept across reconnects; a fresh instance so its numbering restarts.
    let link = ClientLink::new(new_instance());
    let instance = link.instance();
    *im.link.borrow_mut() = Some(link);
    let ours = || im.link.borrow().as_ref().is_some_and(|l| l.instance() == instance);
    if let Some(l) = im.navi.borrow_mut().as_mut() {
        l.start_round();
    }
    let (started, mut attempt_ms) = (js::now(), timeout_ms);
    let opened = loop {
        let Some(url) = im.current_url() else {
            break Err(code::BIZ_ERROR_INVALID_PARAMETER);
        };
        match Connection::open(host, &url, &token, &device_id, 0, instance, attempt_ms).await {
            Ok((_conn, user_id)) => break Ok(user_id),
            Err(c @ (code::RC_CONN_TOKEN_INCORRECT | code::RC_CONN_USER_BLOCKED | code::RC_CONN_TOKEN_EXPIRED)) => break Err(c),
            Err(c) if !ours() => break Err(c), // disconnect() meanwhile
            Err(c) => {
                let url_round_over = im.navi.borrow_mut().as_mut().is_none_or(|l| l.next_after_failure());
                let (round_over, busy) = after_failure(c, url_round_over);
                let retry_after = im.retry_after.take();
                if !round_over {
                    continue;
                }
                let elapsed = (js::now() - started) as i32;
                let turn = if busy { retry_after } else { 0 };
                let Some((delay, next_ms)) = connect_retry(turn, elapsed, timeout_ms, js_sys::Math::random()) else {
                    break Err(c);
                };
                sleep(delay).await;
                if !ours() {
                    break Err(c);
                }
                attempt_ms = next_ms;
            }
        }
    };
    let user_id = opened.inspect_err(|_| {
        if ours() {
            *im.link.borrow_mut() = None;
            im.status.set_quietly(Status::Disconnected)
        }
    })?;
    im.status.set(Status::Connected, None);
    *im.login.borrow_mut() = Some(Login { token, device_id: device_id.clone() });
    Ok((user_id, device_id))
}

type AuthReply = crate::reply::Sender<Result<String, i32>>;

/// An open (or opening) connection.
pub struct Connection {
    /// Tells this socket's frames from a replaced one's (their tasks may still be queued).
    id: u32,
    ws: WebSocket,
    auth_reply: RefCell<Option<AuthReply>>,
    /// Authenticated (AuthResult 0 seen).
    ready: Cell<bool>,
    /// The code sent when this connection is closed by the SDK.
    close_code: Cell<u16>,
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
        let _ = self.ws.close_with_code(self.close_code.get());
    }
}

thread_local! {
    static NEXT_CONN: Cell<u32> = const { Cell::new(0) };
}

impl Connection {
    /// Opens the socket and authenticates. Resolves to the user id, or an IMLib error code.
    #[allow(clippy::too_many_arguments)]
    pub async fn open<H: Host>(
        host: &Rc<H>,
        url: &str,
        token: &str,
        device_id: &str,
        resume_from: u64,
        instance: u64,
        timeout_ms: i32,
    ) -> Result<(Rc<Connection>, String), i32> {
        let ws = WebSocket::new(url).map_err(|_| code::BIZ_ERROR_INVALID_PARAMETER)?;
        let id = NEXT_CONN.with(|n| {
            n.set(n.get().wrapping_add(1));
            n.get()
        });
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, rx) = crate::reply::channel();
        let auth = ClientFrame::new(client_frame::Body::Authenticate(Authenticate {
            token: token.to_string(),
            device_id: device_id.to_string(),
            resume_from,
            instance,
        }))
        .to_bytes();
        let on_open = {
            let ws = ws.clone();
            Closure::<dyn FnMut()>::new(move || {
                let _ = ws.send_with_u8_array(&auth);
            })
        };
        // The handlers hold the host strongly: the connection is dropped (and they with it) when
        // it is replaced or given up, and the host lives as long as the page.
        let h = host.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let Ok(buf) = ev.data().dyn_into::<ArrayBuffer>() else { return };
            let bytes = Uint8Array::new(&buf).to_vec();
            match ServerFrame::from_bytes(&bytes) {
                Ok(frame) => {
                    let h = h.clone();
                    js::spawn(async move { on_frame(&h, id, frame) })
                }
                Err(e) => js::warn_err("undecodable frame from the server", &e),
            }
        });
        let h = host.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_ev: CloseEvent| {
            let h = h.clone();
            js::spawn(async move { on_closed(&h, id) });
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let conn = Rc::new(Connection {
            id,
            ws,
            auth_reply: RefCell::new(Some(tx)),
            ready: Cell::new(false),
            close_code: Cell::new(CLOSE_NORMAL),
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        let im = host.im();
        *im.conn.borrow_mut() = Some(conn.clone());
        // Time out rather than leave connect() pending forever (this attempt only: a later
        // attempt has its own timer).
        let weak: Weak<Connection> = Rc::downgrade(&conn);
        let timeout = Closure::once_into_js(move || {
            if let Some(c) = weak.upgrade() {
                c.settle_auth(Err(code::CONNECTION_TIMEOUT));
            }
        });
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(timeout.unchecked_ref(), timeout_ms);
        }
        let result = match rx.await {
            Some(Ok(user_id)) => return Ok((conn, user_id)),
            Some(Err(code)) => code,
            None => code::RC_NET_UNAVAILABLE,
        };
        let current = im.conn.borrow().as_ref().is_some_and(|c| Rc::ptr_eq(c, &conn));
        if current {
            *im.conn.borrow_mut() = None;
        }
        Err(result)
    }

    /// Writes a frame the client link produced.
    pub fn write(&self, frame: &ClientFrame) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && self.ws.send_with_u8_array(&frame.to_bytes()).is_ok()
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

    /// Proves the server is still there (its `Pong`), and keeps proxies from timing out.
    pub fn ping(&self) {
        self.send_frame(ClientFrame::new(client_frame::Body::Ping(rtc_core::proto::Ping { nonce: 0 })));
    }

    fn send_frame(&self, frame: ClientFrame) -> bool {
        self.write(&frame)
    }

    fn settle_auth(&self, result: Result<String, i32>) {
        if let Some(tx) = self.auth_reply.borrow_mut().take() {
            tx.send(result);
        }
    }
}

fn on_frame<H: Host>(rt: &Rc<H>, conn_id: u32, frame: ServerFrame) {
    let im = rt.im();
    let Some(conn) = im.conn.borrow().clone().filter(|c| c.id == conn_id) else { return };
    im.last_rx.set(js::now());
    im.ping_unanswered.set(None);
    let server_time = frame.server_time;
    match frame.body {
        Some(server_frame::Body::AuthResult(r)) => {
            if r.code != code::SUCCESS {
                im.retry_after.set(r.retry_after_ms);
                return conn.settle_auth(Err(r.code));
            }
            *im.server_ice.borrow_mut() = ice_servers(r.ice_servers);
            rt.server_profile(r.profile.unwrap_or_default());
            conn.ready.set(true);
            im.reconnect_attempt.set(0);
            im.server_busy.set(false);
            im.sfu.set(r.sfu);
            rt.feed(Input::Sfu(SfuInput::Enabled(r.sfu)));
            // What the server lacks goes again, in order, before anything new.
            let frames = im.link.borrow_mut().as_mut().map(|l| l.connected(r.accepted_upto)).unwrap_or_default();
            for f in &frames {
                conn.write(f);
            }
            if im.link_down.replace(false) {
                rt.feed(Input::LinkUp);
            }
            conn.settle_auth(Ok(r.user_id));
        }
        Some(server_frame::Body::IceServers(s)) => *im.server_ice.borrow_mut() = ice_servers(s.ice_servers),
        Some(server_frame::Body::Kicked(k)) => rt.feed(Input::Kicked { call_id: k.call_id }),
        Some(server_frame::Body::Deliver(d)) => {
            let seq = d.seq;
            im.last_seq.set(im.last_seq.get().max(seq));
            // A repeat of a message already processed (resent across a server restart) is
            // acked but not handled again.
            let fresh = im.link.borrow_mut().as_mut().is_none_or(|l| l.accept_delivery(&d));
            if fresh && object_name::ALL.contains(&d.message_type.as_str()) {
                match CallContent::from_bytes(&d.content) {
                    Ok(content) => {
                        // Stored while this page was briefly disconnected, for a call it still
                        // has live (a mute, a hangup): that is live traffic, not history for the
                        // offline batch (which only turns invites into records).
                        let live = rt.live(&content.call_id);
                        rt.feed(Input::Signal(Received {
                            sender_user_id: d.sender_user_id,
                            sender_device_id: d.sender_device_id,
                            conversation_type: d.conversation_type,
                            target_id: d.target_id,
                            channel_id: d.channel_id,
                            sent_time: d.sent_time,
                            server_time,
                            offline: d.offline && !live,
                            content,
                        }))
                    }
                    Err(e) => {
                        js::warn(&["[rcall] dropped an undecodable ", &d.message_type, " message: ", &js::Detail::detail(&e)].concat())
                    }
                }
            }
            conn.send_frame(ClientFrame::new(client_frame::Body::Ack(Ack { seq })));
        }
        Some(server_frame::Body::SendResult(r)) => {
            if let Some(l) = im.link.borrow_mut().as_mut() {
                l.on_send_result(r.request_id);
            }
            let result = if r.code == 0 { Ok(r.sent_time) } else { Err(r.code) };
            rt.feed(Input::SendResult { request_id: r.request_id, server_time, result });
        }
        Some(server_frame::Body::Error(e)) => {
            js::error(&["[rcall] server error ", &int(e.code.into()), ": ", &e.message].concat(), &JsValue::UNDEFINED);
            if e.code == code::RC_CONN_USER_BLOCKED {
                // Blocked by the operator: reconnecting would only be refused.
                *im.login.borrow_mut() = None;
                im.status.set(Status::Disconnected, Some(e.code));
            }
        }
        Some(server_frame::Body::SyncDone(_)) => rt.feed(Input::SyncDone),
        Some(server_frame::Body::JoinedUserInfo(info)) => crate::joined::settle(info.request_id, (info.code == 0).then_some(info.devices)),
        Some(server_frame::Body::Pong(p)) => {
            if let Some(l) = im.link.borrow_mut().as_mut() {
                l.on_pong(p.accepted_upto);
            }
        }
        // SFU mode (docs/sfu.md): group calls' media through the server's SFU.
        Some(server_frame::Body::SfuJoined(j)) => rt.feed(Input::Sfu(SfuInput::Joined(j))),
        Some(server_frame::Body::SfuFeeds(f)) => rt.feed(Input::Sfu(SfuInput::Feeds(f))),
        Some(server_frame::Body::SfuOffer(o)) => rt.feed(Input::Sfu(SfuInput::Offer(o))),
        Some(server_frame::Body::SfuAnswer(a)) => rt.feed(Input::Sfu(SfuInput::Answer(a))),
        Some(server_frame::Body::SfuFailed(f)) => rt.feed(Input::Sfu(SfuInput::Failed(f))),
        Some(server_frame::Body::SfuRestart(r)) => rt.feed(Input::Sfu(SfuInput::Restart(r))),
        Some(server_frame::Body::SfuPublisherLayers(l)) => rt.feed(Input::Sfu(SfuInput::PublisherLayers(l))),
        None => {}
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

fn on_closed<H: Host>(rt: &Rc<H>, conn_id: u32) {
    let Some(conn) = rt.im().conn.borrow().clone().filter(|c| c.id == conn_id) else { return };
    lost(rt, conn, true);
}

/// The connection is gone (closed by the server or the network, or given up by the SDK):
/// sends queue from now on, the engine hears `LinkDown`, and after login the SDK reconnects.
/// In-flight sends are not failed: the link resends them. `node_failed`: the server's fault (not
/// a deliberate close), so reconnecting starts with the next navi URL.
fn lost<H: Host>(rt: &Rc<H>, conn: Rc<Connection>, node_failed: bool) {
    let im = rt.im();
    let was_ready = conn.ready.get();
    conn.settle_auth(Err(code::RC_NET_UNAVAILABLE));
    crate::joined::fail_all();
    let current = im.conn.borrow().as_ref().is_some_and(|c| Rc::ptr_eq(c, &conn));
    if current {
        *im.conn.borrow_mut() = None; // closes it (with its close_code) if still open
    }
    drop(conn);
    if let Some(l) = im.link.borrow_mut().as_mut() {
        l.disconnected();
    }
    if !was_ready {
        return; // a login or reconnect attempt: its caller handles the failure
    }
    // Live calls end at `since + SELF_CUTOFF_MS` unless the link is back first (also when no
    // reconnect follows: a blocked user, a refused token).
    if !im.link_down.replace(true) {
        rt.feed(Input::LinkDown { since: im.last_rx.get() });
    }
    if im.login.borrow().is_none() {
        return;
    }
    im.status.set(Status::Suspended, Some(code::RC_NET_UNAVAILABLE));
    im.reconnect_attempt.set(0);
    im.server_busy.set(false);
    if let Some(l) = im.navi.borrow_mut().as_mut() {
        if node_failed {
            l.lost();
        } else {
            l.start_round();
        }
    }
    schedule_reconnect(rt, false);
}

/// Called every second while logged in: pings, and gives up a connection that went silent.
pub fn tick<H: Host>(rt: &Rc<H>) {
    let im = rt.im();
    let Some(conn) = im.conn.borrow().clone().filter(|c| c.ready.get()) else { return };
    let now = js::now();
    if now - im.last_ping.get() >= PING_INTERVAL_MS {
        conn.ping();
        im.last_ping.set(now);
        if im.ping_unanswered.get().is_none() {
            im.ping_unanswered.set(Some(now));
        }
    }
    let silent = now - im.last_rx.get();
    if im.ping_unanswered.get().is_some_and(|p| now - p >= PONG_WAIT_MS) && silent >= DEAD_AFTER_MS {
        js::warn(&["[rcall] nothing heard from the server for ", &int(silent), " ms: reconnecting"].concat());
        conn.close_code.set(CLOSE_DEAD);
        lost(rt, conn, true);
    }
}

/// Closes the connection on purpose (`disconnect()` is separate: it forgets the login).
/// `pagehide`: the socket goes with code 1000 right after the hangups written before it; a page
/// restored from the back/forward cache reconnects by itself.
pub fn close_now<H: Host>(rt: &Rc<H>) {
    let conn = rt.im().connection();
    if let Some(c) = conn {
        c.close_code.set(CLOSE_NORMAL);
        lost(rt, c, false);
    }
}

/// A failed reconnect attempt refused with `code`: whether the round is over (back off before
/// the next attempt) and whether the server said it is busy. A busy node (31003: its logins
/// are full, e.g. every client of a failed node at once) ends the round: the other nodes are
/// likely as loaded, and trying them all at once only feeds the storm that made it busy. The
/// wait is then the turn the node gave (`AuthResult.retry_after_ms`, see [`round_delay`]);
/// without one (a connection limit, or an older server) the idle backoff, even in a call.
fn after_failure(code: i32, url_round_over: bool) -> (bool, bool) {
    let busy = code == code::RC_CONN_SERVER_UNAVAILABLE;
    (url_round_over || busy, busy)
}

/// `connect()` after a round of failures ended, `elapsed_ms` after it began: the delay before
/// the next round and that round's attempt timeout, or `None` to give up with the failure's
/// code. `retry_after_ms`: the turn a busy node gave (0: not busy).
///
/// A busy node (31003 with a turn: its logins are full, e.g. every client of a failed node
/// logging in again at once) says nothing about this login, only "not yet". A page that loads
/// during such a storm expects `connect()` to work as it would a second later, not to handle
/// a code it never sees otherwise, so it comes back at its turn ([`busy_delay`]) within its
/// [`CONNECT_TIMEOUT_MS`]; the last attempt keeps at least [`RECONNECT_TIMEOUT_MS`], and the
/// whole stays within the timeout. Still busy then, it resolves 31003
/// (RC_CONN_SERVER_UNAVAILABLE). A connection limit (31003 without a turn: the app, user or
/// device has all its connections) resolves 31003 at once, as CallLib does: waiting does not
/// change it (so does an older server's busy answer, which has no turn). Other failures (unreachable, timed out) have used the round's time already: they
/// end it at once.
fn connect_retry(retry_after_ms: u32, elapsed_ms: i32, timeout_ms: i32, random: f64) -> Option<(i32, i32)> {
    let left = CONNECT_TIMEOUT_MS.saturating_sub(elapsed_ms);
    if retry_after_ms == 0 || left < RECONNECT_TIMEOUT_MS {
        return None;
    }
    let delay = busy_delay(retry_after_ms, random).min(left - RECONNECT_TIMEOUT_MS);
    Some((delay, (left - delay).min(timeout_ms)))
}

/// The wait before coming back to a busy node that gave the turn `retry_after_ms`: that turn,
/// +0–20 % (`random` in [0, 1)) so clients the nodes gave the same turn do not come in the
/// same millisecond; never earlier, since the node spaced its turns at the rate it serves; and
/// never longer than the idle backoff's cap (a server asking for more is asked again then).
fn busy_delay(retry_after_ms: u32, random: f64) -> i32 {
    (f64::from(retry_after_ms) * (1.0 + 0.2 * random)).min(RECONNECT_CAP_IDLE_MS) as i32
}

/// The wait before the next round of reconnect attempts after `n` failed ones: a busy node's
/// turn when it gave one ([`busy_delay`]), else the backoff ([`reconnect_delay`]).
fn round_delay(n: u32, in_call: bool, retry_after_ms: u32, random: f64) -> i32 {
    if retry_after_ms > 0 {
        busy_delay(retry_after_ms, random)
    } else {
        reconnect_delay(n, in_call, random)
    }
}

/// Resolves after `ms` (a timer: the page's event loop goes on meanwhile). A promise the
/// timer resolves, not a `Closure` of its own: the shims it needs are in the wasm already
/// (measured: the busy retry cost +758 B gzip with a oneshot and a `Closure`, +385 B so).
async fn sleep(ms: i32) {
    let timer = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(timer).await;
}

/// Delay before reconnect attempt `n` (0 = the first, at once); `random` in [0, 1) gives the
/// jitter. See the constants.
fn reconnect_delay(n: u32, in_call: bool, random: f64) -> i32 {
    if n == 0 {
        return 0;
    }
    let cap = if in_call { RECONNECT_CAP_IN_CALL_MS } else { RECONNECT_CAP_IDLE_MS };
    let base = (RECONNECT_BASE_MS * 2f64.powi(n.min(20) as i32 - 1)).min(cap);
    (base * (0.5 + random)).min(cap) as i32
}

/// Reconnects with the same token and resumes from the last message processed, so nothing is
/// lost or repeated (calls in progress carry on). Stops on an auth error (the app must connect
/// again) or on `disconnect()`. Each attempt goes to the navi list's current URL; a failed one
/// moves to the next URL at once (`backoff` false), and only after a whole round of failures
/// waits [`reconnect_delay`] (`backoff` true; a single URL: after every failure, as before).
fn schedule_reconnect<H: Host>(rt: &Rc<H>, backoff: bool) {
    let im = rt.im();
    if im.login.borrow().is_none() {
        return;
    }
    let n = im.reconnect_attempt.get();
    let turn = im.retry_after.take();
    let turn = if im.server_busy.get() { turn } else { 0 };
    // Urgent while a call is live or something waits to be sent (e.g. a hangup made while down).
    let in_call = !im.server_busy.get() && (rt.in_call() || im.link.borrow().as_ref().is_some_and(|l| l.unconfirmed() > 0));
    let rt = rt.clone();
    let retry = Closure::once_into_js(move || {
        js::spawn(async move {
            let im = rt.im();
            let Some(login) = im.login.borrow().clone() else { return };
            if im.conn.borrow().is_some() {
                return;
            }
            let instance = im.link.borrow().as_ref().map_or(0, |l| l.instance());
            if !im.ensure_navi() {
                return;
            }
            let Some(url) = im.current_url() else { return };
            im.status.set(Status::Connecting, None);
            let opened =
                Connection::open(&rt, &url, &login.token, &login.device_id, im.last_seq.get(), instance, RECONNECT_TIMEOUT_MS).await;
            if im.login.borrow().is_none() {
                return; // disconnect() meanwhile
            }
            match opened {
                Ok(_) => im.status.set(Status::Connected, None),
                Err(c @ (code::RC_CONN_TOKEN_INCORRECT | code::RC_CONN_USER_BLOCKED | code::RC_CONN_TOKEN_EXPIRED)) => {
                    js::warn(&["[rcall] reconnect refused (", &int(c.into()), "); call RongIMLib.connect again"].concat());
                    *im.login.borrow_mut() = None;
                    im.status.set(Status::Disconnected, Some(c));
                }
                Err(c) => {
                    // Within a round the status stays CONNECTING: the next URL is tried at once.
                    let url_round_over = im.navi.borrow_mut().as_mut().is_none_or(|l| l.next_after_failure());
                    let (round_over, busy) = after_failure(c, url_round_over);
                    im.server_busy.set(busy);
                    if round_over {
                        im.status.set(Status::Suspended, Some(c));
                        im.reconnect_attempt.set(im.reconnect_attempt.get().saturating_add(1));
                    }
                    schedule_reconnect(&rt, round_over);
                }
            }
        });
    });
    if let Some(w) = web_sys::window() {
        let delay = if backoff { round_delay(n, in_call, turn, js_sys::Math::random()) } else { 0 };
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(retry.unchecked_ref(), delay);
    }
}

/// A random nonzero `Authenticate.instance` for a new login.
pub fn new_instance() -> u64 {
    let mut bytes = [0u8; 8];
    js::random_bytes(&mut bytes);
    u64::from_le_bytes(bytes).max(1)
}

/// What a reconnect needs (the URL comes from the navi list).
#[derive(Clone)]
pub struct Login {
    pub token: String,
    pub device_id: String,
}

/// Whether the page is https (a bare `host[:port]` navi then means `wss://`).
pub fn secure_page() -> bool {
    web_sys::window().and_then(|w| w.location().protocol().ok()).is_some_and(|p| p == "https:")
}

/// CallLib's persistent device id (spec B.2): localStorage `RCCallDeviceId`, created once as
/// a random 0–9999 integer followed by `Date.now()`.
pub fn device_id() -> String {
    let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
    if let Some(id) = storage.as_ref().and_then(|s| s.get_item("RCCallDeviceId").ok().flatten()) {
        return id;
    }
    let id = [&*int((js_sys::Math::random() * 10_000.0) as i64), &*int(js::now())].concat();
    if let Some(s) = storage {
        let _ = s.set_item("RCCallDeviceId", &id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::{
        after_failure, attempt_timeout_ms, busy_delay, code, connect_retry, reconnect_delay, round_delay, CONNECT_TIMEOUT_MS,
        RECONNECT_TIMEOUT_MS,
    };

    /// A first `connect()` refused as busy comes back at the node's turn within its own
    /// timeout; any other failure (or the timeout used up) gives up.
    #[test]
    fn a_busy_server_is_retried_at_its_turn_within_the_connect_timeout() {
        assert_eq!(connect_retry(0, 0, CONNECT_TIMEOUT_MS, 0.5), None, "not busy: the round's failure is the answer");
        assert_eq!(connect_retry(300, 20, CONNECT_TIMEOUT_MS, 0.0), Some((300, CONNECT_TIMEOUT_MS - 320)), "busy: at its turn");
        assert_eq!(connect_retry(300, 20, 5_000, 0.5), Some((330, 5_000)), "several URLs: their attempt timeout");
        assert_eq!(connect_retry(9_000, CONNECT_TIMEOUT_MS - 3_500, 5_000, 0.5), Some((500, 3_000)), "the last one fits");
        assert_eq!(connect_retry(200, CONNECT_TIMEOUT_MS - 2_999, 5_000, 0.5), None, "no time left for an attempt");
        // However it goes, the rounds end within the timeout, each attempt with its floor, and
        // there are several of them.
        for random in [0.0, 0.5, 0.999] {
            let (mut elapsed, mut rounds) = (0, 0);
            while let Some((delay, attempt)) = connect_retry(1_000, elapsed, CONNECT_TIMEOUT_MS, random) {
                assert!(attempt >= RECONNECT_TIMEOUT_MS && elapsed + delay + attempt <= CONNECT_TIMEOUT_MS);
                rounds += 1;
                elapsed += delay + 5; // refused at once
            }
            assert!(rounds >= 5, "{random}: {rounds} rounds");
        }
    }

    /// A connection limit (31003 without a turn) is `connect()`'s answer at once: before, it
    /// was retried as busy for the whole connect timeout (~10 s) and then resolved 31003 all
    /// the same.
    #[test]
    fn a_connection_limit_resolves_at_once() {
        let (round_over, busy) = after_failure(code::RC_CONN_SERVER_UNAVAILABLE, false);
        assert!(round_over && busy);
        assert_eq!(connect_retry(0, 5, CONNECT_TIMEOUT_MS, 0.5), None);
    }

    /// A busy node's turn is kept (never earlier: the node spaced its turns at the rate it
    /// serves, up to 20 % later so equal turns spread), whatever the round or the call; without
    /// a turn the backoff is as before.
    #[test]
    fn a_busy_nodes_turn_replaces_the_backoff() {
        assert_eq!(busy_delay(450, 0.0), 450);
        assert_eq!(busy_delay(450, 0.999), 539);
        assert_eq!(busy_delay(u32::MAX, 0.0), 4_000, "capped as the idle backoff");
        assert_eq!(round_delay(9, false, 450, 0.0), 450, "not the idle cap after many rounds");
        assert_eq!(round_delay(9, true, 0, 0.5), reconnect_delay(9, true, 0.5));
        assert_eq!(round_delay(0, false, 0, 0.5), 0);
    }

    #[test]
    fn a_busy_server_ends_the_round_other_failures_try_the_next_url() {
        assert_eq!(after_failure(code::RC_CONN_SERVER_UNAVAILABLE, false), (true, true), "busy: back off now");
        assert_eq!(after_failure(code::RC_NET_UNAVAILABLE, false), (false, false), "unreachable: next URL at once");
        assert_eq!(after_failure(code::CONNECTION_TIMEOUT, true), (true, false), "a whole round failed: back off");
    }

    #[test]
    fn a_navi_list_shares_the_connect_timeout_down_to_a_floor() {
        assert_eq!(attempt_timeout_ms(1), CONNECT_TIMEOUT_MS, "a single navi: as before");
        assert_eq!(attempt_timeout_ms(2), 5_000);
        assert_eq!(attempt_timeout_ms(10), RECONNECT_TIMEOUT_MS);
    }

    #[test]
    fn reconnect_backoff_starts_at_once_and_stays_under_its_cap() {
        assert_eq!(reconnect_delay(0, true, 0.9), 0, "first retry at once");
        assert_eq!(reconnect_delay(1, true, 0.0), 50, "100 ms -50 %");
        assert_eq!(reconnect_delay(1, true, 0.999), 149, "100 ms +50 %");
        assert_eq!(reconnect_delay(3, false, 0.5), 400);
        for n in 1..40 {
            for r in [0.0, 0.5, 0.999] {
                assert!(reconnect_delay(n, true, r) <= 800, "in a call: back within a second");
                assert!(reconnect_delay(n, false, r) <= 4000);
            }
        }
        assert!(reconnect_delay(30, true, 0.0) >= 400, "jitter at the cap still spreads the attempts");
    }
}
