//! The browser shell around the call engine: one per page, like RongIMLib's singleton.
//!
//! It feeds [`rtc_core::Engine`] (app commands, server frames, media reports, the timer) and
//! carries out what the engine outputs: frames to the WebSocket, listener calls, media work.
//!
//! Re-entrancy rule: no `RefCell` borrow is held while JS runs (listeners may call back into
//! the SDK), and inputs that originate in JS event handlers (WebSocket, peer connection) are
//! fed from a fresh task so a handler is never dropped while it runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::Function;
use rtc_core::engine::{CallEvent, Command, CommandId, EndSummary, Input, Output, PushTexts, Sender, SessionView, TrackKind};
use rtc_core::small_map::SmallMap;
use rtc_core::{Engine, EngineConfig};
use wasm_bindgen::prelude::*;

use crate::im::Connection;
use crate::js;
use crate::media::MediaShell;
use crate::session::RCCallSession;

/// What `installPlugin(RCCall.installer, options)` was given.
pub struct CallOptions {
    pub on_session: Function,
    pub on_session_close: Function,
    pub on_offline_record: Option<Function>,
    pub lang: String,
    /// `isOffCameraWhenVideoDisable` (default true).
    pub camera_off: bool,
    /// `isAllowDemotionGetStream`: fall back to audio when the camera cannot be captured.
    pub demotion: bool,
    /// 2 with `isAllowPublishRetry` or `isAllowSubscribeRetry`, else 0: how often a peer link
    /// whose first negotiation failed is negotiated again (`EngineConfig::setup_retries`).
    pub setup_retries: u8,
    /// (publish, subscribe) retries through the SFU (`EngineConfig::sfu_publish_retries`).
    pub sfu_retries: (u8, u8),
}

/// A running `setInterval` and its callback.
type Interval = (i32, Closure<dyn FnMut()>);

/// A session object and the id cell it reads.
type SessionEntry = (JsValue, Rc<RefCell<String>>);

/// A command waiting for the engine's `Done`.
struct PendingCommand {
    reply: oneshot::Sender<(i32, Option<String>)>,
}

#[derive(Default)]
pub struct Runtime {
    pub app_key: RefCell<String>,
    /// The rcall server's WebSocket URLs (`navi`, one or several), and which one is next.
    /// `None` until the first connect when `init()` named none (the page's origin is used).
    pub navi: RefCell<Option<crate::navi::NaviList>>,
    pub initialized: Cell<bool>,
    pub engine: RefCell<Option<Engine>>,
    pub conn: RefCell<Option<Rc<Connection>>>,
    /// Set after a successful connect; cleared by `disconnect()` (then nothing reconnects).
    pub login: RefCell<Option<crate::im::Login>>,
    /// Highest delivered `seq` processed, to resume from after a reconnect.
    pub last_seq: Cell<u64>,
    pub call_options: RefCell<Option<Rc<CallOptions>>>,
    /// RTC install options: ICE servers and transport policy for peer connections.
    pub peer_config: RefCell<web_rtc::PeerConfig>,
    /// ICE servers (STUN, TURN with fresh credentials) the server handed out at login; used
    /// when the app configured none.
    pub server_ice: RefCell<Vec<web_rtc::IceServer>>,
    /// `registerUserInfo()` profile; kept here so it survives (re)connects.
    profile: RefCell<rtc_core::proto::UserProfile>,
    /// The name and portrait the Server API registered for this user (`AuthResult.profile`):
    /// sent for every field `registerUserInfo()` left unset.
    server_profile: RefCell<rtc_core::proto::UserProfile>,
    /// `setPushConfig()` texts (call, hangup); kept like the profile.
    push: RefCell<(PushTexts, PushTexts)>,
    /// Session objects handed to the app, by call id (same object every time), with the id
    /// cell they read.
    sessions: RefCell<SmallMap<String, SessionEntry>>,
    /// Listener of each session, by call id.
    listeners: RefCell<SmallMap<String, JsValue>>,
    /// Sessions closed during the current drive: their listener and object stay reachable
    /// until the engine's outputs are drained, because CallLib fires `onHungup` right AFTER
    /// `onSessionClose` when a call ends before connecting (spec C.13.2).
    closing: RefCell<SmallMap<String, JsValue>>,
    /// CallLib constraints given to call()/accept(), by call id.
    pub constraints: RefCell<SmallMap<String, JsValue>>,
    /// Audio constraints of a pending `changeAudioDevice()`, by call id.
    pub mic_constraints: RefCell<SmallMap<String, JsValue>>,
    stats_timer: RefCell<Option<Interval>>,
    pub media: RefCell<MediaShell>,
    pending: RefCell<SmallMap<CommandId, PendingCommand>>,
    next_command: Cell<CommandId>,
    /// The login's side of the exactly-once contract: numbers what the engine sends, keeps it
    /// until confirmed, queues while disconnected. Created by `connect()`, kept across
    /// reconnects, dropped by `disconnect()`.
    pub link: RefCell<Option<rtc_core::link::ClientLink>>,
    /// Local time of the last frame received from the server (`LinkDown.since`, liveness).
    pub last_rx: Cell<i64>,
    /// When the oldest ping not followed by any frame was sent.
    pub ping_unanswered: Cell<Option<i64>>,
    pub last_ping: Cell<i64>,
    /// The engine was told `LinkDown` and not yet `LinkUp`.
    pub link_down: Cell<bool>,
    /// The server runs group calls' media through its SFU (`AuthResult.sfu`).
    pub sfu: Cell<bool>,
    /// Reconnect rounds (every navi URL tried once) that failed since the link was last up:
    /// the backoff step.
    pub reconnect_attempt: Cell<u32>,
    /// The `pagehide` listener (registered once, never dropped).
    page_hook: RefCell<Option<Closure<dyn FnMut()>>>,
    /// `RongIMLib.getConnectionStatus()`; changes fire the IMLib events (`connection`).
    pub status: Cell<crate::connection::Status>,
    /// `RongIMLib.addEventListener` listeners: (event name, function).
    pub im_listeners: RefCell<Vec<(String, JsValue)>>,
    driving: Cell<bool>,
    timer: RefCell<Option<(i32, i64)>>,
    timer_callback: RefCell<Option<Closure<dyn FnMut()>>>,
}

thread_local! {
    static RUNTIME: Rc<Runtime> = Rc::new(Runtime::default());
}

/// The page's runtime.
pub fn rt() -> Rc<Runtime> {
    RUNTIME.with(Rc::clone)
}

impl Runtime {
    /// Starts the engine for a freshly authenticated user.
    pub fn start_engine(self: &Rc<Self>, user_id: &str, device_id: &str) {
        let mut config = EngineConfig::new(user_id, device_id);
        if let Some(o) = self.call_options.borrow().as_ref() {
            config.lang = o.lang.clone();
            config.camera_off_when_video_disabled = o.camera_off;
            config.setup_retries = o.setup_retries;
            (config.sfu_publish_retries, config.sfu_subscribe_retries) = o.sfu_retries;
        }
        *self.engine.borrow_mut() = Some(Engine::new(config));
        self.feed(Input::Sfu(rtc_core::engine::SfuInput::Enabled(self.sfu.get())));
        self.start_stats();
        drop(self.command(Command::RegisterUserInfo(self.sent_profile())));
        let (call, hangup) = self.push.borrow().clone();
        drop(self.command(Command::SetPushConfig { call, hangup }));
    }

    /// `setPushConfig(callPushConfig, hungupPushConfig)`.
    pub fn set_push(self: &Rc<Self>, call: PushTexts, hangup: PushTexts) {
        *self.push.borrow_mut() = (call.clone(), hangup.clone());
        if self.engine.borrow().is_some() {
            drop(self.command(Command::SetPushConfig { call, hangup }));
        }
    }

    /// Before a call sets up peer connections: refresh the server's TURN credentials (only when
    /// the server hands out ICE servers; the answer arrives long before the first link opens,
    /// which waits for the callee's ringing).
    pub fn refresh_ice_servers(&self) {
        if self.server_ice.borrow().is_empty() {
            return;
        }
        let conn = self.conn.borrow().clone();
        if let Some(c) = conn {
            c.request_ice_servers();
        }
    }

    /// What a new peer connection uses: the app's ICE servers if it gave any, else the
    /// server's.
    pub fn effective_peer_config(&self) -> web_rtc::PeerConfig {
        let mut config = self.peer_config.borrow().clone();
        if config.ice_servers.is_empty() {
            config.ice_servers = self.server_ice.borrow().clone();
        }
        config
    }

    /// Sets the profile sent as `content.user` with every call message.
    pub fn set_profile(self: &Rc<Self>, profile: rtc_core::proto::UserProfile) {
        *self.profile.borrow_mut() = profile;
        self.profile_changed();
    }

    /// The server's profile of this user, from each `AuthResult` (the backend may have changed
    /// it between two connects).
    pub fn set_server_profile(self: &Rc<Self>, profile: rtc_core::proto::UserProfile) {
        if *self.server_profile.borrow() == profile {
            return;
        }
        *self.server_profile.borrow_mut() = profile;
        self.profile_changed();
    }

    fn profile_changed(self: &Rc<Self>) {
        if self.engine.borrow().is_some() {
            drop(self.command(Command::RegisterUserInfo(self.sent_profile())));
        }
    }

    /// What peers see as our `ISenderInfo`: `registerUserInfo()`'s fields, else the name and
    /// portrait registered with the Server API (getToken), so an app that registers users only
    /// on its backend still shows names.
    fn sent_profile(&self) -> rtc_core::proto::UserProfile {
        let app = self.profile.borrow();
        let server = self.server_profile.borrow();
        rtc_core::proto::UserProfile {
            name: app.name.clone().or_else(|| server.name.clone()),
            portrait_uri: app.portrait_uri.clone().or_else(|| server.portrait_uri.clone()),
            extra: app.extra.clone(),
        }
    }

    pub fn current_user(&self) -> Option<String> {
        self.engine.borrow().as_ref().map(|e| e.self_id().to_string())
    }

    pub fn session_view(&self, call_id: &str) -> Option<SessionView> {
        self.engine.borrow().as_ref().and_then(|e| e.session(call_id))
    }

    /// Feeds an app command; the returned receiver yields `(code, call_id)`.
    pub fn command(self: &Rc<Self>, cmd: Command) -> oneshot::Receiver<(i32, Option<String>)> {
        let (tx, rx) = oneshot::channel();
        if self.engine.borrow().is_none() {
            // Not connected: nothing can be sent.
            let _ = tx.send((rtc_core::types::error_code::SEND_MSG_ERROR, None));
            return rx;
        }
        let id = self.next_command.get() + 1;
        self.next_command.set(id);
        self.pending.borrow_mut().insert(id, PendingCommand { reply: tx });
        self.feed(Input::Command(id, cmd));
        rx
    }

    /// Feeds one input now and carries out the outputs.
    pub fn feed(self: &Rc<Self>, input: Input) {
        {
            let mut engine = self.engine.borrow_mut();
            let Some(engine) = engine.as_mut() else { return };
            engine.handle_input(js::now(), input);
        }
        self.drive();
    }

    /// Feeds one input from a fresh task (for inputs raised inside JS event handlers).
    pub fn feed_later(self: &Rc<Self>, input: Input) {
        let rt = self.clone();
        js::spawn(async move { rt.feed(input) });
    }

    fn drive(self: &Rc<Self>) {
        if self.driving.replace(true) {
            return; // the outer loop will drain what this nested input produced
        }
        loop {
            let out = {
                let mut engine = self.engine.borrow_mut();
                match engine.as_mut() {
                    Some(e) => e.poll_output(),
                    None => break,
                }
            };
            match out {
                Output::Wait(deadline) => {
                    self.set_timer(deadline);
                    break;
                }
                Output::Send(signal) => self.send(signal),
                Output::Event(ev) => self.dispatch_event(ev),
                Output::Media(action) => MediaShell::act(self, action),
                Output::Done { command, code, call_id } => {
                    let pending = self.pending.borrow_mut().remove(&command);
                    let Some(p) = pending else { continue };
                    if let Some(id) = &call_id {
                        // call() resolved: the session object exists from now on, and what the
                        // engine emits next (e.g. ringing that arrived while the camera
                        // started) reaches the app after its `await call()` continuation,
                        // as in CallLib.
                        self.session_object(id);
                        let _ = p.reply.send((code, call_id));
                        self.driving.set(false);
                        return self.resume_later();
                    }
                    let _ = p.reply.send((code, call_id));
                }
            }
        }
        self.driving.set(false);
        let closed = std::mem::take(&mut *self.closing.borrow_mut());
        for call_id in closed.keys() {
            self.forget_listener(call_id);
            self.constraints.borrow_mut().remove(call_id);
        }
    }

    /// Drains the rest of the engine's outputs from a macrotask, after pending promise
    /// continuations have run.
    fn resume_later(self: &Rc<Self>) {
        let later = Closure::once_into_js(|| rt().drive());
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(later.unchecked_ref(), 0);
        }
    }

    /// Hands a message to the link: written now when connected, else queued until the next
    /// reconnect. Synchronous (leaving the page relies on it: the write happens before this
    /// returns).
    fn send(self: &Rc<Self>, signal: rtc_core::engine::OutgoingSignal) {
        let queued = self.link.borrow_mut().as_mut().map(|l| l.send(signal.to_send_message()));
        match queued {
            Some(Ok(Some(frame))) => {
                let conn = self.conn.borrow().clone();
                // A socket that is closing already keeps the message unconfirmed: it goes again
                // after the reconnect.
                if let Some(c) = conn {
                    c.write(&frame);
                }
            }
            Some(Ok(None)) => {}
            // The queue is full, or not logged in: failed like an unreachable server.
            failed => {
                if let Some(Err(full)) = failed {
                    js::warn(&["[rcall] ", &full.message()].concat());
                }
                self.feed_later(Input::SendFailed { request_id: signal.request_id, code: crate::im::code::RC_NET_CHANNEL_INVALID });
            }
        }
    }

    /// Hangs up every live call at once, like `session.hungup()` (reason by state): the
    /// Hangup messages are handed to the socket and `onSessionClose` fires before this returns.
    /// The engine's list, not the app's sessions: a `call()` still opening the camera has no
    /// session object yet, but its callees already ring (it is cancelled, `call()` → 53201).
    pub fn hang_up_all(self: &Rc<Self>) {
        let ids = self.engine.borrow().as_ref().map(Engine::live_call_ids).unwrap_or_default();
        for call_id in ids {
            drop(self.command(Command::Hangup { call_id }));
        }
    }

    /// Registers the `pagehide` handler once: leaving the page (tab closed, navigation, reload)
    /// ends this page's calls for everyone at once instead of after the server notices the
    /// socket is gone. Everything on that path is synchronous: a page being unloaded runs no
    /// further tasks or microtasks.
    pub fn watch_page(self: &Rc<Self>) {
        if self.page_hook.borrow().is_some() {
            return;
        }
        let Some(window) = web_sys::window() else { return };
        let cb = Closure::<dyn FnMut()>::new(|| {
            let rt = rt();
            rt.hang_up_all();
            crate::im::close_now(&rt);
        });
        let _ = window.add_event_listener_with_callback("pagehide", cb.as_ref().unchecked_ref());
        *self.page_hook.borrow_mut() = Some(cb);
    }

    // ----- sessions and listeners ----------------------------------------------------------

    /// The session object for `call_id`, created on first use.
    pub fn session_object(&self, call_id: &str) -> JsValue {
        self.sessions
            .borrow_mut()
            .get_or_insert_with(call_id.to_string(), || {
                let id = Rc::new(RefCell::new(call_id.to_string()));
                (RCCallSession::new(id.clone()).into(), id)
            })
            .0
            .clone()
    }

    pub fn set_listener(&self, call_id: &str, listener: JsValue) {
        let copy = js::shallow_copy(&listener);
        // The seed's stats sample spells the key `OnRTCStateReport`; CallLib read only
        // `onRTCStateReport`. Both work here (the lower-case one wins when both are given).
        if js::get_function(&copy, "onRTCStateReport").is_none() {
            if let Some(f) = js::get_function(&copy, "OnRTCStateReport") {
                let _ = js_sys::Reflect::set(&copy, &"onRTCStateReport".into(), &f);
            }
        }
        self.listeners.borrow_mut().insert(call_id.to_string(), copy);
    }

    pub fn forget_listener(&self, call_id: &str) {
        self.listeners.borrow_mut().remove(call_id);
    }

    fn listener(&self, call_id: &str) -> Option<JsValue> {
        self.listeners.borrow().get(call_id).cloned()
    }

    fn dispatch_event(self: &Rc<Self>, ev: CallEvent) {
        match ev {
            CallEvent::Session { call_id, extra } => {
                self.refresh_ice_servers();
                let session = self.session_object(&call_id);
                let options = self.call_options.borrow().clone();
                if let Some(o) = options {
                    js::call_function(&o.on_session, "onSession", &[session, extra.into()]);
                }
                if self.listener(&call_id).is_none() {
                    js::error(
                        "[RCCallClient onSession] session Must Have Listener: call session.registerSessionListener(listener) inside onSession",
                        &JsValue::from_str(&call_id),
                    );
                }
            }
            CallEvent::Ringing { call_id, sender } => {
                self.to_listener(&call_id, "onRinging", vec![sender_object(&sender)], true);
            }
            CallEvent::Accept { call_id, sender } => {
                self.to_listener(&call_id, "onAccept", vec![sender_object(&sender)], true);
            }
            CallEvent::Hungup { call_id, sender, reason } => {
                self.to_listener(&call_id, "onHungup", vec![sender_object(&sender), reason.into()], true);
            }
            CallEvent::TrackReady { call_id, track, with_session } => {
                let found = self.media.borrow().track_object(&call_id, &track.track_id, &track.device_id);
                let Some(track_obj) = found else { return };
                self.to_listener(&call_id, "onTrackReady", vec![track_obj], with_session);
            }
            CallEvent::MemberModify { call_id, sender, invited } => {
                let invited: js_sys::Array = invited.iter().map(sender_object).collect();
                self.to_listener(&call_id, "onMemberModify", vec![sender_object(&sender), invited.into()], true);
            }
            CallEvent::MediaModify { call_id, sender, media_type } => {
                let args = vec![sender_object(&sender), (media_type as i32).into()];
                self.to_listener(&call_id, "onMediaModify", args, true);
            }
            CallEvent::OfflineRecord(r) => {
                let options = self.call_options.borrow().clone();
                if let Some(f) = options.and_then(|o| o.on_offline_record.clone()) {
                    js::call_function(&f, "onOfflineRecord", &[offline_record_object(&r)]);
                }
            }
            CallEvent::Merged { from, into } => self.rename_call(&from, &into),
            CallEvent::PublishFail { call_id, code } => self.notify(&call_id, "onTrackPublishFail", vec![code.into()]),
            CallEvent::SubscribeFail { call_id, code } => self.notify(&call_id, "onTrackSubscribeFail", vec![code.into()]),
            CallEvent::MuteChange { call_id, user_id, kind, muted, track_id } => {
                let (method, kind) = match kind {
                    TrackKind::Audio => ("onAudioMuteChange", "audio"),
                    TrackKind::Video => ("onVideoMuteChange", "video"),
                };
                let mute_user =
                    js::obj(&[("userId", user_id.into()), ("muted", muted.into()), ("kind", kind.into()), ("trackId", track_id.into())]);
                self.to_listener(&call_id, method, vec![mute_user], true);
            }
            CallEvent::SessionClosed { call_id, summary } => {
                // Removed from the client's list just before the callback (spec A.7).
                let session = self.sessions.borrow_mut().remove(&call_id).map(|(s, _)| s);
                if let Some(s) = &session {
                    self.closing.borrow_mut().insert(call_id.clone(), s.clone());
                }
                let options = self.call_options.borrow().clone();
                if let (Some(o), Some(session)) = (options, session) {
                    js::call_function(&o.on_session_close, "onSessionClose", &[session, summary_object(&summary)]);
                }
            }
        }
    }

    /// Crossing calls merged: everything known under `from` now belongs to `into`.
    fn rename_call(&self, from: &str, into: &str) {
        // (Each value is taken out in its own statement: a `RefMut` temporary in an `if let`
        // head would still be borrowed inside the block.)
        let session = self.sessions.borrow_mut().remove(from);
        if let Some((obj, id)) = session {
            *id.borrow_mut() = into.to_string();
            self.sessions.borrow_mut().insert(into.to_string(), (obj, id));
        }
        let listener = self.listeners.borrow_mut().remove(from);
        if let Some(l) = listener {
            self.listeners.borrow_mut().insert(into.to_string(), l);
        }
        let constraints = self.constraints.borrow_mut().remove(from);
        if let Some(c) = constraints {
            self.constraints.borrow_mut().insert(into.to_string(), c);
        }
    }

    /// Calls the session listener's `method(...args, session)`, if the session is open.
    pub fn notify(&self, call_id: &str, method: &str, args: Vec<JsValue>) {
        self.to_listener(call_id, method, args, true);
    }

    /// Whether the session's listener has `method`.
    pub fn listens(&self, call_id: &str, method: &str) -> bool {
        self.listener(call_id).is_some_and(|l| js::get_function(&l, method).is_some())
    }

    /// Starts the once-a-second stats reports (idempotent; runs while connected).
    pub fn start_stats(&self) {
        if self.stats_timer.borrow().is_some() {
            return;
        }
        let Some(window) = web_sys::window() else { return };
        let cb = Closure::<dyn FnMut()>::new(|| {
            let rt = rt();
            crate::media::report_stats(&rt);
            crate::im::tick(&rt);
        });
        if let Ok(handle) = window.set_interval_with_callback_and_timeout_and_arguments_0(cb.as_ref().unchecked_ref(), 1000) {
            *self.stats_timer.borrow_mut() = Some((handle, cb));
        }
    }

    /// Calls `listener[method](...args, session?)` for the session's listener.
    fn to_listener(&self, call_id: &str, method: &str, mut args: Vec<JsValue>, with_session: bool) {
        let Some(listener) = self.listener(call_id) else { return };
        if with_session {
            let open = self.sessions.borrow().get(call_id).map(|(s, _)| s.clone());
            let session = open.or_else(|| self.closing.borrow().get(call_id).cloned());
            if let Some(s) = session {
                args.push(s);
            }
        }
        js::call_method(&listener, method, &args);
    }

    // ----- the engine's timer --------------------------------------------------------------

    fn set_timer(self: &Rc<Self>, deadline: Option<i64>) {
        let Some(window) = web_sys::window() else { return };
        let current = *self.timer.borrow();
        if current.map(|(_, d)| d) == deadline {
            return;
        }
        if let Some((handle, _)) = current {
            window.clear_timeout_with_handle(handle);
        }
        *self.timer.borrow_mut() = None;
        let Some(deadline) = deadline else { return };
        if self.timer_callback.borrow().is_none() {
            // One closure for the page's lifetime: it is never dropped, so it can never be
            // dropped while running.
            let cb = Closure::<dyn FnMut()>::new(|| {
                let rt = rt();
                *rt.timer.borrow_mut() = None;
                rt.feed(Input::Timeout);
            });
            *self.timer_callback.borrow_mut() = Some(cb);
        }
        let delay = (deadline - js::now()).clamp(0, i32::MAX as i64) as i32;
        let cb = self.timer_callback.borrow();
        let Some(cb) = cb.as_ref() else { return };
        if let Ok(handle) = window.set_timeout_with_callback_and_timeout_and_arguments_0(cb.as_ref().unchecked_ref(), delay) {
            *self.timer.borrow_mut() = Some((handle, deadline));
        }
    }

    /// Ends everything (disconnect): pending commands fail, media stops.
    pub fn shut_down(self: &Rc<Self>) {
        *self.login.borrow_mut() = None;
        crate::connection::set(self, crate::connection::Status::Disconnected, Some(crate::connection::ACTIVE_DISCONNECT));
        self.last_seq.set(0);
        *self.engine.borrow_mut() = None;
        *self.conn.borrow_mut() = None; // closes the socket with 1000
                                        // What waits for the server is failed below (pending commands) with the engine gone.
        if let Some(mut l) = self.link.borrow_mut().take() {
            l.reset();
        }
        self.link_down.set(false);
        self.ping_unanswered.set(None);
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, p) in pending {
            let _ = p.reply.send((rtc_core::types::error_code::SEND_MSG_ERROR, None));
        }
        MediaShell::stop_all(self);
        // The interval's closure is only dropped here, never while it runs (it is not running:
        // shut_down is called from app code).
        if let (Some(window), Some((handle, _))) = (web_sys::window(), self.stats_timer.borrow_mut().take()) {
            window.clear_interval_with_handle(handle);
        }
        if let (Some(window), Some((handle, _))) = (web_sys::window(), self.timer.borrow_mut().take()) {
            window.clear_timeout_with_handle(handle);
        }
    }
}

/// `ISenderInfo`.
pub fn sender_object(sender: &Sender) -> JsValue {
    let mut pairs = vec![("userId", JsValue::from_str(&sender.user_id))];
    let p = &sender.profile;
    if let Some(n) = &p.name {
        pairs.push(("name", n.into()));
    }
    if let Some(u) = &p.portrait_uri {
        pairs.push(("portraitUri", u.into()));
    }
    if let Some(e) = &p.extra {
        pairs.push(("extra", e.into()));
    }
    js::obj(&pairs)
}

/// `IOfflineRecord`.
pub fn offline_record_object(r: &rtc_core::engine::OfflineRecord) -> JsValue {
    js::obj(&[
        ("channelId", r.channel_id.as_str().into()),
        ("conversationType", r.conversation_type.into()),
        ("targetId", r.target_id.as_str().into()),
        ("callId", r.call_id.as_str().into()),
        ("inviterId", r.inviter_id.as_str().into()),
        ("mediaType", (r.media_type as i32).into()),
        ("endReason", r.end_reason.into()),
        ("beginTimestamp", (r.begin_timestamp as f64).into()),
        ("endTimestamp", (r.end_timestamp as f64).into()),
        ("duration", (r.duration as f64).into()),
    ])
}

/// `IEndSummary`.
pub fn summary_object(s: &EndSummary) -> JsValue {
    js::obj(&[
        ("conversationType", s.conversation_type.into()),
        ("channelId", s.channel_id.as_str().into()),
        ("targetId", s.target_id.as_str().into()),
        ("mediaType", (s.media_type as i32).into()),
        ("beginTimestamp", (s.begin_timestamp as f64).into()),
        ("endTimestamp", (s.end_timestamp as f64).into()),
        ("duration", (s.duration as f64).into()),
        ("endReason", s.end_reason.into()),
    ])
}
