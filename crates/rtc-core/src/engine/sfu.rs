//! SFU mode (docs/sfu.md): a GROUP call's media through the server's SFU instead of the mesh.
//!
//! Known at login (`AuthResult.sfu`, [`SfuInput::Enabled`]) and fixed per call when the call
//! starts. Such a call opens no peer links; once the server says the device is in the SFU room
//! ([`SfuInput::Joined`]) and local media is captured, the device publishes on one sending
//! connection, and once it is in the call it subscribes to the other members' streams on one
//! receiving connection. Everything else (ringing, accept, hangup, mute, members) stays on
//! the call messages, so an app cannot tell which path its group call took.
//!
//! Failures follow CallLib's join (spec D.2): each failed publish or subscribe of the join
//! fires `onTrackPublishFail` / `onTrackSubscribeFail`; with `isAllowPublishRetry` /
//! `isAllowSubscribeRetry` it is tried up to 2 more times, and the final failure ends the call
//! with PUBLISH_ERROR (9) / SUBSCRIBE_ERROR (10). A later subscription update that fails is only
//! dropped (CallLib only logged those); the next change of feeds subscribes again. When the SFU
//! restarted ([`SfuInput::Restart`], or `Joined` with a new generation) the device publishes and
//! subscribes afresh, with no hangup and no app event but the remote tracks' `onTrackReady`.
//!
//! Recovery (the mesh does the same for its links, `recovery.rs`): a connection whose transport
//! is lost (`failed`, or `disconnected` for [`RESTART_GRACE_MS`]) is restarted in place — the
//! publisher makes an ICE-restart offer, the subscriber asks the SFU for one
//! (`SfuSubscribe.restart`) — every [`RESTART_RETRY_MS`] while it stays down, with no hangup;
//! after [`SFU_RESTARTS`] restarts it gives up as a failed join does (`onTrackPublishFail` /
//! `onTrackSubscribeFail`, then the end reason 9 / 10). The SFU's offers are applied one at a
//! time in arrival order (a second one waits for the first one's answer), and an offer lost
//! while the socket was down is sent again by the server when the re-asked subscription says
//! the device has not seen it (`SfuSubscribe.offer_version`).

use super::timer::{RESTART_GRACE_MS, RESTART_RETRY_MS};
use super::{CallEvent, Engine, LinkState, MediaAction, Millis, Peer, TrackKind};
use crate::proto::{self, client_frame::Body as Frame, sfu_pc};
use crate::types::{end_reason, MediaType};

/// ICE restarts of one SFU connection while it stays down before the call gives up on it
/// (~2 s + 12 x 5 s: past a minute offline the server has ended the call anyway).
pub const SFU_RESTARTS: u8 = 12;

/// Pause before the join's publish / first subscription is retried after its 1st, 2nd…
/// failure (`isAllowPublishRetry` / `isAllowSubscribeRetry`), ±[`RETRY_JITTER_PERCENT`]: a
/// retry at once fails again while the server moves the call off a dead Janus (≥ 10 s), and
/// every member retrying in step would hit the server together.
pub const RETRY_BACKOFF_MS: [Millis; 2] = [1_000, 2_000];
pub const RETRY_JITTER_PERCENT: i64 = 20;

/// The pause before retry `failures` (≥ 1) of a request that failed at `at` (ms on the
/// engine's clock), [`RETRY_BACKOFF_MS`] with a jitter mixed from `at`: deterministic on a
/// virtual clock, and devices whose failures arrive even 1 ms apart spread over the range.
pub fn retry_delay(at: Millis, failures: u8) -> Millis {
    let i = (failures.max(1) as usize - 1).min(RETRY_BACKOFF_MS.len() - 1);
    let base = RETRY_BACKOFF_MS[i];
    let h = (at as u64 ^ failures as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let span = base * RETRY_JITTER_PERCENT / 100;
    base - span + (h % (2 * span as u64 + 1)) as Millis
}

/// Above this many remote videos every subscribed video asks for the low simulcast layer
/// (small tiles); up to it the server picks (-1).
pub const LOW_LAYER_ABOVE: usize = 4;

/// The layer an app asks to receive of a user's video (`session.setRemoteVideoLayer`, an rcall
/// extension, docs/sfu.md "Choosing a user's layer"): kept for the call, across new feeds and
/// SFU restarts, over the tile-count default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoLayer {
    /// The highest simulcast layer (a user shown large: the speaker, a screen).
    High,
    /// The lowest.
    Low,
    /// Back to the default: by the number of video tiles.
    Auto,
}

impl VideoLayer {
    /// The `SfuWant.substream` asked for (`None`: the tile default).
    fn substream(self) -> Option<i32> {
        match self {
            VideoLayer::High => Some(2),
            VideoLayer::Low => Some(0),
            VideoLayer::Auto => None,
        }
    }
}

/// Server frames of SFU mode, and the login's verdict.
#[derive(Debug, Clone)]
pub enum SfuInput {
    /// `AuthResult.sfu`: GROUP calls started from now on go through the SFU.
    Enabled(bool),
    Joined(proto::SfuJoined),
    Feeds(proto::SfuFeeds),
    Offer(proto::SfuOffer),
    Answer(proto::SfuAnswer),
    Failed(proto::SfuFailed),
    Restart(proto::SfuRestart),
    /// The highest layer of our camera anyone receives ([`SfuAction::Layers`]).
    PublisherLayers(proto::SfuPublisherLayers),
}

/// What the engine asks of the shell in SFU mode ([`MediaAction::Sfu`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SfuAction {
    /// Write this frame to the server (dropped while disconnected: a restart republishes).
    Send(Frame),
    /// (Re)create the call's publishing connection with its local tracks (video with simulcast)
    /// and make its offer; answer with [`SfuEvent::PublishOffer`]. An older one is closed first.
    Publish { call_id: String, video: bool },
    /// Apply the SFU's answer to the publishing connection.
    PublishAnswer { call_id: String, sdp: String },
    /// Apply the SFU's offer on the receiving connection (created if none) and answer with
    /// [`SfuEvent::SubscribeAnswer`] (an empty `sdp`: nothing to negotiate, only the map); `tracks` says whose stream each `mid` carries, so the
    /// shell registers each remote track under [`super::track_id`] and reports
    /// [`SfuEvent::Track`].
    Subscribe { call_id: String, sdp: String, tracks: Vec<SfuTrack> },
    /// Close both SFU connections of the call (the SFU restarted; new ones follow).
    Reset { call_id: String },
    /// Renegotiate the existing publishing connection and answer with
    /// [`SfuEvent::PublishOffer`]: with `video`, add a video sender if it has none and the
    /// call's local media has a camera track (a member that joined without a camera turned it
    /// on); with `ice_restart`, fresh ICE credentials (its transport was lost). Without a
    /// publishing connection, as [`SfuAction::Publish`].
    Republish { call_id: String, video: bool, ice_restart: bool },
    /// Keep the camera's simulcast encodings up to `max_substream` (0 low … 2 high, counted
    /// from the lowest) sending and pause the ones above: nobody receives them, and encoding
    /// them costs CPU. The lowest stays on whatever it says.
    Layers { call_id: String, max_substream: u32 },
}

/// One `mid` of the receiving connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuTrack {
    pub mid: String,
    pub user_id: String,
    pub kind: TrackKind,
    /// The publishing seat: stands for the sending device in the track's
    /// [`super::TrackInfo::device_id`] (the shell registers the track under it).
    pub feed: String,
}

/// What the shell reports in SFU mode.
#[derive(Debug, Clone)]
pub enum SfuEvent {
    /// The publishing connection's offer.
    PublishOffer { call_id: String, sdp: String },
    /// The receiving connection's answer to the latest [`SfuAction::Subscribe`].
    SubscribeAnswer { call_id: String, sdp: String },
    /// A local ICE candidate of one connection (`pc`: `sfu_pc`); empty = gathering done.
    Candidate { call_id: String, pc: u32, candidate: String, sdp_mid: String, sdp_mline_index: u32 },
    /// Media started arriving on `mid` of the receiving connection.
    Track { call_id: String, mid: String },
    /// One connection's transport state (`iceConnectionState`; `pc`: `sfu_pc`).
    State { call_id: String, pc: u32, state: LinkState },
}

/// Where one of the two connections stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Step {
    #[default]
    Idle,
    /// Waiting for the shell's offer (publisher).
    Offering,
    /// The request is with the server.
    Asked(u32),
    Up,
}

/// Transport health of one SFU connection (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Health {
    pub was_connected: bool,
    /// When to restart it (it is down).
    pub restart_at: Option<Millis>,
    /// Restarts since it was last connected.
    pub restarts: u8,
}

/// A call's SFU state (only GROUP calls started in SFU mode have one).
#[derive(Debug, Clone, Default)]
pub(crate) struct SfuCall {
    /// The SFU generation the server admitted us in (`None` before `SfuJoined`).
    pub generation: Option<u32>,
    /// The other members' published streams.
    pub feeds: Vec<proto::SfuFeed>,
    pub publish: Step,
    pub subscribe: Step,
    /// Failed attempts of the join's publish / first subscription in this generation.
    pub publish_failures: u8,
    pub subscribe_failures: u8,
    /// The first subscription of this generation succeeded (later failures are only dropped).
    pub subscribed_once: bool,
    /// The last subscription asked for.
    pub wanted: Vec<proto::SfuWant>,
    /// The receiving connection's `mid`s.
    pub tracks: Vec<SfuTrack>,
    /// The request id of the offer being answered.
    pub answering: u32,
    /// The request id of the first answer sent for the join's subscription (the first of
    /// this generation, or its retry): the SFU refusing that answer is the join's subscription
    /// failing. (The receiving connection's ICE state cannot tell: ICE connects before, and
    /// without, the SFU taking the answer.)
    pub join_answer: Option<u32>,
    /// Later answers the SFU refused in this generation (each subscribes afresh; past
    /// [`SFU_RESTARTS`] the call gives up as a failed join).
    pub answer_refusals: u8,
    /// An offer with an SDP is with the shell (its answer has not come back): later offers
    /// wait in `queued`, so the browser applies them one at a time, in order.
    pub applying: bool,
    pub queued: Vec<proto::SfuOffer>,
    /// The highest `SfuOffer.version` received (reported in `SfuSubscribe.offer_version`).
    pub offer_version: u32,
    /// Publisher, subscriber (indexed by `sfu_pc`).
    pub health: [Health; 2],
    /// The publishing connection's offer, sent again if its request may have been lost.
    pub offer: String,
    /// The app's layer per remote user ([`VideoLayer`]; none: the tile default). Kept across
    /// SFU restarts.
    pub layers: Vec<(String, i32)>,
    /// When a failed publish / join subscription (indexed by `sfu_pc`) is retried
    /// ([`retry_delay`]); until then it is not asked again.
    pub retry_at: [Option<Millis>; 2],
}

fn kind_of(kind: &str) -> Option<TrackKind> {
    match kind {
        "audio" => Some(TrackKind::Audio),
        "video" => Some(TrackKind::Video),
        _ => None,
    }
}

impl Engine {
    /// Whether a call started now with this conversation type goes through the SFU.
    pub(super) fn new_call_sfu(&self, conversation_type: i32) -> Option<Box<SfuCall>> {
        (self.sfu_enabled && conversation_type == proto::conversation_type::GROUP).then(Box::default)
    }

    pub(super) fn on_sfu(&mut self, input: SfuInput) {
        match input {
            SfuInput::Enabled(on) => self.sfu_enabled = on,
            SfuInput::Joined(j) => {
                let restart = self.sfu_call(&j.call_id).is_some_and(|s| s.generation.is_some_and(|g| g != j.generation));
                if restart {
                    self.sfu_restart(&j.call_id);
                }
                let Some(s) = self.sfu_call(&j.call_id) else { return };
                s.generation = Some(j.generation);
                s.feeds = j.feeds;
                self.sfu_progress(&j.call_id);
            }
            SfuInput::Feeds(f) => {
                let Some(s) = self.sfu_call(&f.call_id) else { return };
                s.feeds = f.feeds;
                self.sfu_progress(&f.call_id);
            }
            SfuInput::Offer(o) => self.sfu_offer(o),
            SfuInput::Answer(a) => {
                let Some(s) = self.sfu_call(&a.call_id) else { return };
                if s.publish != Step::Asked(a.request_id) {
                    return;
                }
                s.publish = Step::Up;
                self.sfu(SfuAction::PublishAnswer { call_id: a.call_id, sdp: a.sdp });
            }
            SfuInput::Failed(f) => self.sfu_failed(f),
            SfuInput::Restart(r) => {
                if self.sfu_call(&r.call_id).is_none_or(|s| s.generation.is_none()) {
                    return;
                }
                self.sfu_restart(&r.call_id);
                if let Some(s) = self.sfu_call(&r.call_id) {
                    s.generation = Some(r.generation);
                }
                self.sfu_progress(&r.call_id);
            }
            SfuInput::PublisherLayers(l) => {
                if self.sfu_call(&l.call_id).is_some() {
                    self.sfu(SfuAction::Layers { call_id: l.call_id, max_substream: l.max_substream });
                }
            }
        }
    }

    pub(super) fn on_sfu_media(&mut self, ev: SfuEvent) {
        match ev {
            SfuEvent::PublishOffer { call_id, sdp } => {
                let request_id = self.next_request_id();
                let Some(s) = self.sfu_call(&call_id).filter(|s| s.publish == Step::Offering) else { return };
                if sdp.is_empty() {
                    // A `Republish` that had nothing to change.
                    s.publish = Step::Up;
                    return;
                }
                s.publish = Step::Asked(request_id);
                s.offer = sdp.clone();
                self.sfu(SfuAction::Send(Frame::SfuPublish(proto::SfuPublish { request_id, call_id, sdp_offer: sdp })));
            }
            SfuEvent::SubscribeAnswer { call_id, sdp } => {
                let Some(s) = self.sfu_call(&call_id).filter(|s| s.applying) else { return };
                s.applying = false;
                let request_id = s.answering;
                // Empty: the shell could not apply the offer (logged there); nothing to send.
                if !sdp.is_empty() {
                    s.join_answer.get_or_insert(request_id);
                    self.sfu(SfuAction::Send(Frame::SfuAnswer(proto::SfuAnswer { request_id, call_id: call_id.clone(), sdp })));
                }
                self.sfu_apply_next(&call_id);
            }
            SfuEvent::State { call_id, pc, state } => self.sfu_state(&call_id, pc, state),
            SfuEvent::Candidate { call_id, pc, candidate, sdp_mid, sdp_mline_index } => {
                if self.sfu_call(&call_id).is_none() {
                    return;
                }
                let t = proto::SfuTrickle { call_id, pc, candidate, sdp_mid, sdp_mline_index };
                self.sfu(SfuAction::Send(Frame::SfuTrickle(t)));
            }
            SfuEvent::Track { call_id, mid } => {
                let Some(s) = self.sfu_call(&call_id) else { return };
                let Some(t) = s.tracks.iter().find(|t| t.mid == mid) else { return };
                let (peer, kind) = (Peer { user_id: t.user_id.clone(), device_id: t.feed.clone() }, t.kind);
                let Some(call) = self.calls.get_mut(&call_id) else { return };
                if !call.early_tracks.contains(&(peer.clone(), kind)) {
                    call.early_tracks.push((peer, kind));
                }
                self.surface_tracks(&call_id);
            }
        }
    }

    fn sfu(&mut self, action: SfuAction) {
        self.media(MediaAction::Sfu(action));
    }

    fn next_request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    /// The SFU state of a live SFU call.
    fn sfu_call(&mut self, call_id: &str) -> Option<&mut SfuCall> {
        self.calls.get_mut(call_id).filter(|c| c.is_live()).and_then(|c| c.sfu.as_deref_mut())
    }

    /// Publishes and subscribes as far as the call allows now (idempotent): called on every
    /// SFU frame, after local capture and once we are in the call.
    pub(super) fn sfu_progress(&mut self, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id).filter(|c| c.is_live()) else { return };
        let Some(s) = call.sfu.as_deref().filter(|s| s.generation.is_some()) else { return };
        // Captured (or being re-captured for a camera or microphone change: the shell swaps
        // the track on the sender).
        let captured = call.media_captured();
        let waits = |pc: u32| s.retry_at[pc as usize].is_some();
        let publish = captured && s.publish == Step::Idle && !waits(sfu_pc::PUBLISHER);
        let video = call.media_type.has_video();
        let want = Self::sfu_wants(call, s, &me);
        let changed = !want.is_empty() && !matches!(s.subscribe, Step::Asked(_)) && want != s.wanted && !waits(sfu_pc::SUBSCRIBER);
        // Only layers changed (the app's choice) on a subscription the server has: `SfuLayers`
        // for those streams, no renegotiation.
        let same_streams = s.subscribed_once
            && want.len() == s.wanted.len()
            && want.iter().zip(&s.wanted).all(|(a, b)| (&a.feed, &a.mid) == (&b.feed, &b.mid));
        let subscribe = changed && !same_streams;
        let layers: Vec<proto::SfuWant> = want
            .iter()
            .zip(&s.wanted)
            .filter(|(a, b)| changed && same_streams && a.substream != b.substream)
            .map(|(a, _)| a.clone())
            .collect();
        let request_id = if subscribe { self.next_request_id() } else { 0 };
        let s = self.sfu_call(call_id).expect("checked above");
        if publish {
            s.publish = Step::Offering;
        }
        if changed {
            s.wanted = want.clone();
        }
        if subscribe {
            s.subscribe = Step::Asked(request_id);
        }
        if publish {
            self.sfu(SfuAction::Publish { call_id: call_id.to_string(), video });
        }
        if !layers.is_empty() {
            self.sfu(SfuAction::Send(Frame::SfuLayers(proto::SfuLayers { call_id: call_id.to_string(), want: layers })));
        }
        if subscribe {
            let offer_version = Some(self.sfu_call(call_id).map_or(0, |s| s.offer_version));
            let sub = proto::SfuSubscribe { request_id, call_id: call_id.to_string(), want, offer_version, restart: false };
            self.sfu(SfuAction::Send(Frame::SfuSubscribe(sub)));
        }
    }

    /// The streams to subscribe to now: every other member's audio, and video unless the call
    /// is audio only, at the app's layer for that user ([`VideoLayer`]) or else the tile
    /// default (above [`LOW_LAYER_ABOVE`] videos the low layer, up to it the server's pick).
    fn sfu_wants(call: &super::call::Call, s: &SfuCall, me: &str) -> Vec<proto::SfuWant> {
        if !call.self_in(me) {
            return Vec::new();
        }
        let audio_only = call.media_type == MediaType::Audio;
        let others = || s.feeds.iter().filter(|f| f.user_id != me);
        let videos = others().flat_map(|f| &f.streams).filter(|st| st.kind == "video").count();
        let tile_default = if videos > LOW_LAYER_ABOVE { 0 } else { -1 };
        let mut want = Vec::new();
        for f in others() {
            let asked = s.layers.iter().find(|(u, _)| *u == f.user_id).map(|(_, l)| *l);
            for st in &f.streams {
                let substream = match st.kind.as_str() {
                    "video" if audio_only => continue,
                    "video" => asked.unwrap_or(tile_default),
                    _ => -1,
                };
                want.push(proto::SfuWant { feed: f.feed.clone(), mid: st.mid.clone(), substream });
            }
        }
        want
    }

    /// `session.setRemoteVideoLayer(userId, layer)`: keeps the app's choice for the call;
    /// `sfu_progress` (after every input) tells the server (`SfuLayers` for the streams already
    /// subscribed; the relay remembers it for later offers and raises the publisher's paused
    /// layers at once) and uses it in every later subscription. A user not in the call is a
    /// parameter error; a mesh call has no layers to pick (each link sends one), so there it is
    /// a success that changes nothing.
    pub(super) fn set_remote_video_layer(&mut self, id: super::CommandId, call_id: &str, user_id: &str, layer: VideoLayer) {
        use crate::types::error_code::{PARAM_ERROR, SUCCESS};
        let me = &self.cfg.self_id;
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.has_session() && user_id != me && c.users.contains_key(user_id)) else {
            return self.done(id, PARAM_ERROR, None);
        };
        if let Some(s) = call.sfu.as_deref_mut() {
            s.layers.retain(|(u, _)| u != user_id);
            if let Some(sub) = layer.substream() {
                s.layers.push((user_id.to_string(), sub));
            }
        }
        self.done(id, SUCCESS, None);
    }

    /// The SFU's offer for the receiving connection: answer to our subscription, or an update
    /// the server started (`request_id` 0).
    fn sfu_offer(&mut self, o: proto::SfuOffer) {
        let Some(s) = self.sfu_call(&o.call_id) else { return };
        let ours = s.subscribe == Step::Asked(o.request_id);
        if !ours && o.request_id != 0 {
            return;
        }
        if ours {
            s.subscribe = Step::Up;
            s.subscribed_once = true;
        }
        s.offer_version = s.offer_version.max(o.version);
        let call_id = o.call_id.clone();
        s.queued.push(o);
        if !s.applying {
            self.sfu_apply_next(&call_id);
        }
        // Feeds that changed while this subscription was under way.
        self.sfu_progress(&call_id);
    }

    /// Hands the shell the queued offers up to and including the next one it must answer.
    fn sfu_apply_next(&mut self, call_id: &str) {
        loop {
            let Some(s) = self.sfu_call(call_id) else { return };
            if s.queued.is_empty() {
                return;
            }
            let o = s.queued.remove(0);
            s.answering = o.request_id;
            s.applying = !o.sdp.is_empty();
            s.tracks = o
                .mids
                .iter()
                .filter_map(|m| {
                    let kind = kind_of(&m.kind)?;
                    Some(SfuTrack { mid: m.mid.clone(), user_id: m.user_id.clone(), kind, feed: m.feed.clone() })
                })
                .collect();
            let (tracks, applying) = (s.tracks.clone(), s.applying);
            self.sfu(SfuAction::Subscribe { call_id: o.call_id, sdp: o.sdp, tracks });
            if applying {
                return;
            }
        }
    }

    /// A connection's transport changed state: schedule (or cancel) its restart.
    fn sfu_state(&mut self, call_id: &str, pc: u32, state: LinkState) {
        let now = self.now;
        let Some(s) = self.sfu_call(call_id) else { return };
        let Some(h) = s.health.get_mut(pc as usize) else { return };
        match state {
            LinkState::Connected => *h = Health { was_connected: true, restart_at: None, restarts: 0 },
            // Before it ever connected the first negotiation may still be under way.
            LinkState::Disconnected if h.was_connected => h.restart_at = Some(h.restart_at.unwrap_or(now + RESTART_GRACE_MS)),
            LinkState::Disconnected => {}
            LinkState::Failed => h.restart_at = Some(h.restart_at.map_or(now, |t| t.min(now))),
        }
        self.sfu_restart_due();
    }

    /// Restarts every SFU connection whose time has come, and asks again for the failed join
    /// requests whose pause is over (called on every timeout).
    pub(super) fn sfu_restart_due(&mut self) {
        let now = self.now;
        // (call, Some(pc): restart that connection; None: ask the failed join requests again)
        let mut due: Vec<(String, Option<u32>)> = Vec::new();
        for call in self.calls.values_mut().filter(|c| c.is_live()) {
            let Some(s) = call.sfu.as_deref_mut() else { continue };
            for (pc, h) in s.health.iter_mut().enumerate() {
                if h.restart_at.is_some_and(|t| t <= now) {
                    h.restart_at = Some(now + RESTART_RETRY_MS);
                    h.restarts = h.restarts.saturating_add(1);
                    due.push((call.id.clone(), Some(pc as u32)));
                }
            }
            // A failed join request whose pause is over is asked again.
            for at in &mut s.retry_at {
                if at.is_some_and(|t| t <= now) {
                    *at = None;
                    due.push((call.id.clone(), None));
                }
            }
        }
        for (call_id, pc) in due {
            match pc {
                Some(pc) => self.sfu_restart_connection(&call_id, pc),
                None => self.sfu_progress(&call_id),
            }
        }
    }

    /// The earliest SFU connection restart or request retry of the call.
    pub(super) fn sfu_deadline(call: &super::call::Call) -> Option<Millis> {
        let s = call.sfu.as_deref()?;
        s.health.iter().filter_map(|h| h.restart_at).chain(s.retry_at.iter().flatten().copied()).min()
    }

    fn sfu_restart_connection(&mut self, call_id: &str, pc: u32) {
        let video = self.calls.get(call_id).is_some_and(|c| c.media_type.has_video());
        let request_id = self.next_request_id();
        let Some(s) = self.sfu_call(call_id) else { return };
        if s.health[pc as usize].restarts > SFU_RESTARTS {
            // Retries ran out: as a failed join (spec D.2).
            let (event, reason) = if pc == sfu_pc::PUBLISHER {
                (
                    CallEvent::PublishFail { call_id: call_id.to_string(), code: proto::error_code::SFU_REQUEST_FAILED },
                    end_reason::PUBLISH_ERROR,
                )
            } else {
                (
                    CallEvent::SubscribeFail { call_id: call_id.to_string(), code: proto::error_code::SFU_REQUEST_FAILED },
                    end_reason::SUBSCRIBE_ERROR,
                )
            };
            self.emit(event);
            return self.end_with_hangup(call_id, reason);
        }
        if pc == sfu_pc::PUBLISHER {
            if s.publish == Step::Idle {
                return; // a new publish is on its way anyway
            }
            s.publish = Step::Offering;
            self.sfu(SfuAction::Republish { call_id: call_id.to_string(), video, ice_restart: true });
        } else {
            if s.wanted.is_empty() {
                return;
            }
            s.subscribe = Step::Asked(request_id);
            let sub = proto::SfuSubscribe {
                request_id,
                call_id: call_id.to_string(),
                want: s.wanted.clone(),
                offer_version: Some(s.offer_version),
                restart: true,
            };
            self.sfu(SfuAction::Send(Frame::SfuSubscribe(sub)));
        }
    }

    /// A camera was captured for the call (`enableVideoTrack()`): a publishing connection made
    /// without a video sender (the member joined without a camera) gets one.
    pub(super) fn sfu_camera_added(&mut self, call_id: &str) {
        let Some(s) = self.sfu_call(call_id) else { return };
        if matches!(s.publish, Step::Idle | Step::Offering) {
            return; // the coming publish takes the camera as it is now
        }
        s.publish = Step::Offering;
        self.sfu(SfuAction::Republish { call_id: call_id.to_string(), video: true, ice_restart: false });
    }

    fn sfu_failed(&mut self, f: proto::SfuFailed) {
        let publish_retries = self.cfg.sfu_publish_retries;
        let now = self.now;
        let call_id = f.call_id.clone();
        let Some(s) = self.sfu_call(&call_id) else { return };
        let publisher = f.pc == sfu_pc::PUBLISHER;
        if f.answer && !publisher {
            return self.sfu_answer_refused(f);
        }
        let step = if publisher { s.publish } else { s.subscribe };
        // Our request's failure, or one the server noticed itself on a live connection.
        let ours = step == Step::Asked(f.request_id) || (f.request_id == 0 && step != Step::Idle);
        if !ours {
            return;
        }
        if publisher {
            let h = s.health[sfu_pc::PUBLISHER as usize];
            if h.was_connected && h.restart_at.is_some() {
                // An ICE restart of a connection that was up: the restart loop tries again
                // (every RESTART_RETRY_MS, giving up after SFU_RESTARTS), not a failed join —
                // its Janus may be dead, and the server moving the call (SfuRestart follows).
                s.publish = Step::Up;
                return;
            }
            s.publish = Step::Idle;
            s.publish_failures += 1;
            s.retry_at[sfu_pc::PUBLISHER as usize] = Some(now + retry_delay(now, s.publish_failures));
            let give_up = s.publish_failures > publish_retries;
            self.emit(CallEvent::PublishFail { call_id: call_id.clone(), code: f.code });
            if give_up {
                return self.end_with_hangup(&call_id, end_reason::PUBLISH_ERROR);
            }
        } else {
            s.subscribe = Step::Idle;
            if s.subscribed_once {
                // A later update: CallLib only logged these. `wanted` stays, so the same set is
                // not asked for again at once; the next change of feeds subscribes again.
                return;
            }
            return self.join_subscription_failed(&call_id, f.code, true);
        }
        self.sfu_progress(&call_id);
    }

    /// The join's subscription failed (a refused `SfuSubscribe`, or the SFU refused our answer
    /// to its first offer): `onTrackSubscribeFail`, then a retry (when `retry`: nothing is
    /// already asked) while `isAllowSubscribeRetry`'s count lasts, else the end reason 10.
    fn join_subscription_failed(&mut self, call_id: &str, code: i32, retry: bool) {
        let subscribe_retries = self.cfg.sfu_subscribe_retries;
        let now = self.now;
        let Some(s) = self.sfu_call(call_id) else { return };
        s.subscribe_failures += 1;
        if retry {
            s.subscribe = Step::Idle;
            s.wanted.clear();
            s.retry_at[sfu_pc::SUBSCRIBER as usize] = Some(now + retry_delay(now, s.subscribe_failures));
        }
        let give_up = s.subscribe_failures > subscribe_retries;
        self.emit(CallEvent::SubscribeFail { call_id: call_id.to_owned(), code });
        if give_up {
            return self.end_with_hangup(call_id, end_reason::SUBSCRIBE_ERROR);
        }
        self.sfu_progress(call_id);
    }

    /// The SFU refused our answer to its offer (`SfuFailed.answer`): the server dropped our
    /// subscription, so whatever the receiving connection had is gone and offers still queued
    /// from it are stale. The answer to the join's subscription ([`SfuCall::join_answer`]): the
    /// join's subscription failed, as a refused `SfuSubscribe` does (`onTrackSubscribeFail`,
    /// retried with `isAllowSubscribeRetry`, else the end reason 10). A later answer (to an
    /// update, or to the server's own offer): as a lost transport — subscribed afresh at once
    /// with an ICE-restart subscription (the browser takes the fresh subscriber's offer on the
    /// same connection), no app event (CallLib only logged later failures), giving up after
    /// [`SFU_RESTARTS`] of them as a failed join.
    fn sfu_answer_refused(&mut self, f: proto::SfuFailed) {
        let call_id = f.call_id;
        let Some(s) = self.sfu_call(&call_id) else { return };
        s.queued.clear();
        // A subscription sent after that answer reaches the server after the drop: it joins
        // afresh, and its offer is the new subscription (no need to ask again).
        let asked = matches!(s.subscribe, Step::Asked(_));
        if s.join_answer != Some(f.request_id) {
            // (Bounded: a SFU refusing every answer cannot keep us subscribing for ever.)
            s.answer_refusals = s.answer_refusals.saturating_add(1);
            if s.answer_refusals > SFU_RESTARTS {
                self.emit(CallEvent::SubscribeFail { call_id: call_id.clone(), code: f.code });
                return self.end_with_hangup(&call_id, end_reason::SUBSCRIBE_ERROR);
            }
            if !asked {
                self.sfu_restart_connection(&call_id, sfu_pc::SUBSCRIBER);
            }
            return;
        }
        s.subscribed_once = false;
        s.join_answer = None;
        self.join_subscription_failed(&call_id, f.code, !asked);
    }

    /// The socket to the server is back: SFU requests still unanswered were likely written while
    /// it was down (the shell drops those), or their answers lost. The publish goes again with
    /// the same offer (the connection still waits for its answer; the server renegotiates a
    /// published one), and the subscription is asked for again (also an answered one: the
    /// server's own offers meanwhile were lost too).
    pub(super) fn sfu_link_up(&mut self) {
        let ids: Vec<String> = self.calls.values().filter(|c| c.is_live() && c.sfu.is_some()).map(|c| c.id.clone()).collect();
        for call_id in ids {
            let request_id = self.next_request_id();
            let Some(s) = self.sfu_call(&call_id) else { continue };
            // Asked: the request or its answer may be lost. Up: an offer the server made by
            // itself may be (`offer_version` lets the server tell and send it again).
            if s.subscribe != Step::Idle {
                s.subscribe = Step::Idle;
                s.wanted.clear();
            }
            if matches!(s.publish, Step::Asked(_)) {
                s.publish = Step::Asked(request_id);
                let sdp_offer = s.offer.clone();
                self.sfu(SfuAction::Send(Frame::SfuPublish(proto::SfuPublish { request_id, call_id, sdp_offer })));
            }
        }
    }

    /// The SFU lost our connections: close them and start over (publish at once; subscribe
    /// once the server lists the new generation's feeds).
    fn sfu_restart(&mut self, call_id: &str) {
        let Some(s) = self.sfu_call(call_id) else { return };
        *s = SfuCall { layers: std::mem::take(&mut s.layers), ..SfuCall::default() };
        self.sfu(SfuAction::Reset { call_id: call_id.to_string() });
    }
}
