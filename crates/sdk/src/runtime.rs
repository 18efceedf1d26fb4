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

use rtc_core::engine::{CallEvent, Command, CommandId, EndSummary, Input, Output, PushTexts, Sender, SessionView, TrackKind};
use rtc_core::small_map::SmallMap;
use rtc_core::types::SessionState;
use rtc_core::{Engine, EngineConfig};
use wasm_bindgen::prelude::*;

use crate::im::ImLink;
use crate::js;
use crate::media::MediaShell;
use crate::reply;
use crate::sessions::Sessions;

/// A running `setInterval` and its callback.
type Interval = (i32, Closure<dyn FnMut()>);

/// A command waiting for the engine's `Done`.
struct PendingCommand {
    reply: reply::Sender<(i32, Option<String>)>,
}

#[derive(Default)]
pub struct Runtime {
    im: ImLink,
    sessions: Sessions,
    media: RefCell<MediaShell>,
    /// RTC install options: ICE servers and transport policy for peer connections.
    peer_config: RefCell<web_rtc::PeerConfig>,
    /// `registerUserInfo()` profile; kept here so it survives (re)connects.
    profile: RefCell<rtc_core::proto::UserProfile>,
    /// The name and portrait the Server API registered for this user (`AuthResult.profile`):
    /// sent for every field `registerUserInfo()` left unset.
    server_profile: RefCell<rtc_core::proto::UserProfile>,
    /// `setPushConfig()` texts (call, hangup); kept like the profile.
    push: RefCell<(PushTexts, PushTexts)>,
    engine: RefCell<Option<Engine>>,
    stats_timer: RefCell<Option<Interval>>,
    pending: RefCell<SmallMap<CommandId, PendingCommand>>,
    next_command: Cell<CommandId>,
    /// The `pagehide` listener (registered once, never dropped).
    page_hook: RefCell<Option<Closure<dyn FnMut()>>>,
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
    /// The IM link (connection, login, status).
    pub fn im(&self) -> &ImLink {
        &self.im
    }

    /// The sessions the app holds, their listeners and constraints, the install options.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// `RCRTC.installer.setup()`'s peer connection options.
    pub fn set_peer_config(&self, config: web_rtc::PeerConfig) {
        *self.peer_config.borrow_mut() = config;
    }

    /// Starts the engine for a freshly authenticated user.
    pub fn start_engine(self: &Rc<Self>, user_id: &str, device_id: &str) {
        let mut config = EngineConfig::new(user_id, device_id);
        if let Some(o) = self.sessions.options() {
            config.lang = o.lang.clone();
            config.camera_off_when_video_disabled = o.camera_off;
            config.setup_retries = o.setup_retries;
            (config.sfu_publish_retries, config.sfu_subscribe_retries) = o.sfu_retries;
        }
        *self.engine.borrow_mut() = Some(Engine::new(config));
        self.feed(Input::Sfu(rtc_core::engine::SfuInput::Enabled(self.im.sfu())));
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
        if !self.im.has_server_ice() {
            return;
        }
        if let Some(c) = self.im.connection() {
            c.request_ice_servers();
        }
    }

    /// Sets the profile sent as `content.user` with every call message.
    pub fn set_profile(self: &Rc<Self>, profile: rtc_core::proto::UserProfile) {
        *self.profile.borrow_mut() = profile;
        self.profile_changed();
    }

    /// The server's profile of this user, from each `AuthResult` (the backend may have changed
    /// it between two connects).
    fn set_server_profile(self: &Rc<Self>, profile: rtc_core::proto::UserProfile) {
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
    pub fn command(self: &Rc<Self>, cmd: Command) -> reply::Receiver<(i32, Option<String>)> {
        let (tx, rx) = reply::channel();
        if self.engine.borrow().is_none() {
            // Not connected: nothing can be sent.
            tx.send((rtc_core::types::error_code::SEND_MSG_ERROR, None));
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
                        self.sessions.object(id);
                        p.reply.send((code, call_id));
                        self.driving.set(false);
                        return self.resume_later();
                    }
                    p.reply.send((code, call_id));
                }
            }
        }
        self.driving.set(false);
        self.sessions.drained();
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
        // The queue is full, or not logged in: failed like an unreachable server.
        if !self.im.send(signal.to_send_message()) {
            self.feed_later(Input::SendFailed { request_id: signal.request_id, code: crate::im::code::RC_NET_CHANNEL_INVALID });
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

    // ----- engine events to the app ---------------------------------------------------------

    fn dispatch_event(self: &Rc<Self>, ev: CallEvent) {
        match ev {
            CallEvent::Session { call_id, extra } => {
                self.refresh_ice_servers();
                let session = self.sessions.object(&call_id);
                if let Some(o) = self.sessions.options() {
                    js::call_function(&o.on_session, "onSession", &[session, extra.into()]);
                }
                if !self.sessions.has_listener(&call_id) {
                    js::error(
                        "[RCCallClient onSession] session Must Have Listener: call session.registerSessionListener(listener) inside onSession",
                        &JsValue::from_str(&call_id),
                    );
                }
            }
            CallEvent::Ringing { call_id, sender } => {
                self.sessions.to_listener(&call_id, "onRinging", vec![sender_object(&sender)], true);
            }
            CallEvent::Accept { call_id, sender } => {
                self.sessions.to_listener(&call_id, "onAccept", vec![sender_object(&sender)], true);
            }
            CallEvent::Hungup { call_id, sender, reason } => {
                self.sessions.to_listener(&call_id, "onHungup", vec![sender_object(&sender), reason.into()], true);
            }
            CallEvent::TrackReady { call_id, track, with_session } => {
                let found = self.media.borrow().track_object(&call_id, &track.track_id, &track.device_id);
                let Some(track_obj) = found else { return };
                self.sessions.to_listener(&call_id, "onTrackReady", vec![track_obj], with_session);
            }
            CallEvent::MemberModify { call_id, sender, invited } => {
                let invited: js_sys::Array = invited.iter().map(sender_object).collect();
                self.sessions.to_listener(&call_id, "onMemberModify", vec![sender_object(&sender), invited.into()], true);
            }
            CallEvent::MediaModify { call_id, sender, media_type } => {
                let args = vec![sender_object(&sender), (media_type as i32).into()];
                self.sessions.to_listener(&call_id, "onMediaModify", args, true);
            }
            CallEvent::OfflineRecord(r) => {
                if let Some(f) = self.sessions.options().and_then(|o| o.on_offline_record.clone()) {
                    js::call_function(&f, "onOfflineRecord", &[offline_record_object(&r)]);
                }
            }
            CallEvent::Merged { from, into } => self.sessions.rename(&from, &into),
            CallEvent::PublishFail { call_id, code } => self.sessions.notify(&call_id, "onTrackPublishFail", vec![code.into()]),
            CallEvent::SubscribeFail { call_id, code } => self.sessions.notify(&call_id, "onTrackSubscribeFail", vec![code.into()]),
            CallEvent::MuteChange { call_id, user_id, kind, muted, track_id } => {
                let (method, kind) = match kind {
                    TrackKind::Audio => ("onAudioMuteChange", "audio"),
                    TrackKind::Video => ("onVideoMuteChange", "video"),
                };
                let mute_user =
                    js::obj(&[("userId", user_id.into()), ("muted", muted.into()), ("kind", kind.into()), ("trackId", track_id.into())]);
                self.sessions.to_listener(&call_id, method, vec![mute_user], true);
            }
            CallEvent::SessionClosed { call_id, summary } => {
                // Removed from the client's list just before the callback (spec A.7).
                let session = self.sessions.close(&call_id);
                if let (Some(o), Some(session)) = (self.sessions.options(), session) {
                    js::call_function(&o.on_session_close, "onSessionClose", &[session, summary_object(&summary)]);
                }
            }
        }
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
        *self.engine.borrow_mut() = None;
        // What waits for the server is failed below (pending commands) with the engine gone.
        self.im.shut_down();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, p) in pending {
            p.reply.send((rtc_core::types::error_code::SEND_MSG_ERROR, None));
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

impl crate::im::Host for Runtime {
    fn im(&self) -> &ImLink {
        &self.im
    }

    fn feed(self: &Rc<Self>, input: Input) {
        Runtime::feed(self, input)
    }

    fn server_profile(self: &Rc<Self>, profile: rtc_core::proto::UserProfile) {
        self.set_server_profile(profile)
    }

    fn running(&self) -> bool {
        self.engine.borrow().is_some()
    }

    fn live(&self, call_id: &str) -> bool {
        self.session_view(call_id).is_some_and(|v| v.state != SessionState::End)
    }

    fn in_call(&self) -> bool {
        self.engine.borrow().as_ref().is_some_and(|e| e.has_live_call())
    }
}

impl crate::media::Host for Runtime {
    fn media(&self) -> &RefCell<MediaShell> {
        &self.media
    }

    fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    fn feed(self: &Rc<Self>, input: Input) {
        Runtime::feed(self, input)
    }

    fn feed_later(self: &Rc<Self>, input: Input) {
        Runtime::feed_later(self, input)
    }

    /// The app's ICE servers if it gave any, else the server's.
    fn peer_config(&self) -> web_rtc::PeerConfig {
        let mut config = self.peer_config.borrow().clone();
        if config.ice_servers.is_empty() {
            config.ice_servers = self.im.server_ice();
        }
        config
    }

    fn current_user(&self) -> Option<String> {
        Runtime::current_user(self)
    }

    fn running(&self) -> bool {
        self.engine.borrow().is_some()
    }

    fn write(&self, frame: &rtc_core::proto::ClientFrame) {
        if let Some(c) = self.im.connection() {
            c.write(frame);
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
