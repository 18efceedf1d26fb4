//! The call engine: CallLib 5.X's per-call state machines behind one sans-IO interface.
//!
//! One [`Engine`] per logged-in client. Feed it with [`Engine::handle_input`] and drain
//! [`Engine::poll_output`] until it returns [`Output::Wait`]; time only moves when the caller
//! says so (`now` on every input), so every flow runs on a virtual clock in tests.
//!
//! Differences from CallLib that apps can only notice as fixes:
//! - No 200 ms hold-and-sort buffer for incoming messages (spec B.7): our server delivers each
//!   device's messages in order, so they are handled the moment they arrive.
//! - `call()` while another call exists fails with 53200 *before* capturing the camera,
//!   not after (CallLib captured, announced the local tracks, then destroyed them).
//! - `call()` sends the invite while the camera starts (CallLib captured first), so the callee
//!   rings ~150 ms sooner; the caller's app still sees CallLib's order: local tracks, `call()`
//!   resolved, then ringing. If the capture fails, the invite is cancelled (the callee sees 18).
//!   Hung up before `call()` resolved (`disconnect()`/`pagehide` while the camera opens), the
//!   call is cancelled at once (the callee sees 11) and `call()` resolves 53201 without a session.
//! - Ring timers are cleared on END and removed users never fire again (legacy leaked them).
//! - Crossing calls merge: when A calls B while B calls A and both invites cross, both sides
//!   keep the call with the smaller call id; the side whose own call lost cancels it and accepts
//!   the other at once ([`CallEvent::Merged`] re-points its session). Two users who dial each
//!   other get one connected call instead of two busy rejections.
//! - Offers never cross: a participant already in the call offers to each participant whose
//!   Accept it receives. The server delivers in order, so of two members accepting at once the
//!   one accepted first by the server is "in" when the other's Accept arrives, and the other is
//!   not yet "in" when the first's arrives: exactly one of them offers.
//! - Only participants act in a call: Ringing, Accept, media, mute, ModifyMedia and Hangup count
//!   only from users the call tracks, and RC:VCModifyMem for a known call only from a member (not
//!   one that left), and never for a 1:1 call (`invite()` there is 53311, so no CallLib sends one).
//!   CallLib took a stranger's ModifyMem listing itself CONNECTED, and its Accept then got our
//!   tracks. (A ModifyMem for an unknown call is an invitation, from anyone, like RC:VCInvite.)
//! - Connection loss (see `connection.rs`): while disconnected `hungup()` ends at once with
//!   SUCCESS, `call()`/`invite()` fail at once with 53201; live calls end with NETWORK_ERROR (7)
//!   after [`SELF_CUTOFF_MS`] without the server; a Hangup the server sends on this very device's
//!   behalf ends its session with that reason as-is. CallLib left this to RTCLib's room pings.
//! - An offer from a member the ModifyMem that brought us in listed as ringing means it is in
//!   (only members in the call offer): its Accept crossed that ModifyMem. It counts as accepted
//!   (`onAccept`) instead of being rung out a minute later while in the call.
//! - `invite()` from a device still ringing (not in the call) is PARAM_ERROR: it would list
//!   itself CONNECTED, and the invitees would count it in for good if it never answered.
//! - A late Accept (delayed, e.g. we were cut off when it reached the server, or replayed to a
//!   device that was away): from a user our ring timer gave up on, it takes that user back into
//!   a call that goes on; for a call that is over here it is answered with a Hangup to the
//!   accepter (reason 15 if we timed it out, so it ends with NO_RESPONSE 5; else 3), so the late
//!   accepter does not sit alone in a call nobody else is in (CallLib ignored it).
//! - Messages stored while we were disconnected (`offline`) for a call this engine knows are
//!   handled as they arrive, not as an offline batch (which would drop a known call's hangup);
//!   between a reconnect and SyncDone, every message of a call we do not know joins the batch,
//!   whatever its `offline` flag (else a replayed invite whose cancel or other-device answer
//!   follows would ring, or be rejected as busy, for a call already over).

mod call;
mod connection;
mod event;
mod incoming;
mod io;
mod media;
mod modify;
mod mute;
mod offline;
mod outgoing;
mod peers;
mod recovery;
mod sfu;
mod timer;

use std::collections::VecDeque;

use crate::small_map::SmallMap;

pub use event::{CallEvent, EndSummary, OfflineRecord, Sender, SessionView, TrackInfo, UserView};
pub use io::{CallRequest, Command, CommandId, Input, Millis, OutgoingSignal, Output, PushTexts, Received};
pub use media::{track_id, CaptureError, LinkState, MediaAction, MediaEvent, Peer, TrackKind, TRACK_TAG};
pub use sfu::{retry_delay, SfuAction, SfuEvent, SfuInput, SfuTrack, VideoLayer, LOW_LAYER_ABOVE, RETRY_BACKOFF_MS, SFU_RESTARTS};
pub use timer::{ANSWER_MARGIN_MS, RESTART_GRACE_MS, RESTART_RETRY_MS, RING_TIMEOUT_MS, SELF_CUTOFF_MS};

use crate::proto::{call_content::Body, CallContent, PushConfig, UserProfile};
use crate::types::{end_reason, error_code, UserState};
use call::{Call, Member, Phase};

/// Ended sessions kept so getters keep answering after `onSessionClose`.
const ENDED_KEPT: usize = 16;

/// Who this engine is.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub self_id: String,
    /// Persistent per-browser id (CallLib's `RCCallDeviceId`).
    pub device_id: String,
    /// `"zh"` or `"en"`: language of the default push titles.
    pub lang: String,
    /// CallLib's `isOffCameraWhenVideoDisable` (default true): disabling video releases the
    /// camera, enabling it captures a new one.
    pub camera_off_when_video_disabled: bool,
    /// How often a link whose first negotiation failed is negotiated again: CallLib's
    /// `isAllowPublishRetry` / `isAllowSubscribeRetry` ("retried up to 2 more times"; default
    /// 0, as both default to false). See `recovery`.
    pub setup_retries: u8,
    /// SFU mode: how often a failed publish / first subscription of a group call's join is
    /// tried again (2 with `isAllowPublishRetry` / `isAllowSubscribeRetry`, else 0; see `sfu`).
    pub sfu_publish_retries: u8,
    pub sfu_subscribe_retries: u8,
}

impl EngineConfig {
    /// A config with CallLib's defaults.
    pub fn new(self_id: &str, device_id: &str) -> Self {
        Self {
            self_id: self_id.to_string(),
            device_id: device_id.to_string(),
            lang: "zh".into(),
            camera_off_when_video_disabled: true,
            setup_retries: 0,
            sfu_publish_retries: 0,
            sfu_subscribe_retries: 0,
        }
    }
}

/// What a sent message is for, so its `SendResult` can be routed.
#[derive(Debug, Clone)]
enum SendPurpose {
    Invite { call_id: String },
    Accept { call_id: String },
    Hangup { command: Option<CommandId> },
    Modify { command: CommandId, call_id: String, new_users: Vec<String> },
    Descend { command: CommandId, call_id: String },
    Mute { command: Option<CommandId> },
    Other,
}

/// CallLib's call engine for one logged-in client. See the module docs.
pub struct Engine {
    cfg: EngineConfig,
    profile: UserProfile,
    /// Live and recently ended calls by call id.
    calls: SmallMap<String, Call>,
    /// The ended calls still kept, oldest first. A `Vec` (16 entries): a `VecDeque` of strings
    /// ships its own ring-buffer code in the SDK.
    ended: Vec<String>,
    out: VecDeque<Output>,
    sends: SmallMap<u32, SendPurpose>,
    next_request: u32,
    /// Server clock minus local clock, from the latest server frame.
    server_offset: Millis,
    now: Millis,
    /// `setPushConfig()` texts for invites and hangups.
    call_push: PushTexts,
    hangup_push: PushTexts,
    /// Messages stored while we were offline, held until [`Input::SyncDone`].
    offline: Vec<Received>,
    /// Calls merged into another (crossing calls): old id → new id, for late media reports.
    renamed: SmallMap<String, String>,
    /// While the connection to the server is down: when we last heard from it.
    link_down_since: Option<Millis>,
    /// Reconnected, and the server is still replaying what we missed (until `SyncDone`).
    syncing: bool,
    /// The server runs GROUP calls' media through its SFU (`AuthResult.sfu`).
    sfu_enabled: bool,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            profile: UserProfile::default(),
            calls: SmallMap::new(),
            ended: Vec::new(),
            out: VecDeque::new(),
            sends: SmallMap::new(),
            next_request: 1,
            server_offset: 0,
            now: 0,
            call_push: PushTexts::default(),
            hangup_push: PushTexts::default(),
            offline: Vec::new(),
            renamed: SmallMap::new(),
            link_down_since: None,
            syncing: false,
            sfu_enabled: false,
        }
    }

    pub fn self_id(&self) -> &str {
        &self.cfg.self_id
    }

    /// Read-only view of a live or recently ended session.
    pub fn session(&self, call_id: &str) -> Option<SessionView> {
        self.calls.get(call_id).map(|c| c.view(&self.cfg.self_id))
    }

    /// Whether any call is in progress (an outgoing one still being set up counts).
    pub fn has_live_call(&self) -> bool {
        self.calls.values().any(Call::is_live)
    }

    /// Ids of every call in progress, including an outgoing one whose `call()` has not resolved
    /// yet (no session object exists for it): what leaving the page must hang up.
    pub fn live_call_ids(&self) -> Vec<String> {
        self.calls.values().filter(|c| c.is_live()).map(|c| c.id.clone()).collect()
    }

    pub fn handle_input(&mut self, now: Millis, input: Input) {
        self.now = now;
        match input {
            Input::Command(id, cmd) => self.on_command(id, cmd),
            Input::Signal(msg) => {
                self.server_offset = msg.server_time - now;
                // A call this engine already knows is live traffic even when stored while we
                // were disconnected (offline batches only turn into new calls and records). The
                // reconnect replay mixes stored and live-routed messages (ones our other devices
                // got meanwhile): until SyncDone every message of a call we do not know joins the
                // batch, so a call that started and ended meanwhile does not ring.
                let call_id = &msg.content.call_id;
                let batched = self.offline.iter().any(|m| m.content.call_id == *call_id);
                if ((msg.offline || self.syncing) && !self.calls.contains_key(call_id)) || batched {
                    self.offline.push(msg);
                } else {
                    self.on_signal(msg);
                }
            }
            Input::SyncDone => {
                self.syncing = false;
                self.on_sync_done()
            }
            Input::Kicked { call_id } => self.end_with_hangup(&call_id, end_reason::KICKED_BY_SERVER),
            Input::SendResult { request_id, server_time, result } => {
                self.server_offset = server_time - now;
                self.on_send_result(request_id, result);
            }
            Input::SendFailed { request_id, code } => self.on_send_result(request_id, Err(code)),
            Input::Media(ev) => self.on_media(ev),
            Input::Timeout => self.on_timeout(),
            Input::LinkDown { since } => self.link_down(since),
            Input::LinkUp => {
                self.link_up();
                self.sfu_link_up();
            }
            Input::Sfu(sfu) => self.on_sfu(sfu),
        }
        // SFU calls publish and subscribe as soon as capture, membership and the server allow.
        let sfu_calls: Vec<String> = self.calls.values().filter(|c| c.sfu.is_some() && c.is_live()).map(|c| c.id.clone()).collect();
        for call_id in sfu_calls {
            self.sfu_progress(&call_id);
        }
    }

    /// Next output; [`Output::Wait`] once everything is drained.
    pub fn poll_output(&mut self) -> Output {
        self.out.pop_front().unwrap_or_else(|| Output::Wait(self.next_deadline()))
    }

    // ----- shared plumbing ------------------------------------------------------------------

    fn emit(&mut self, ev: CallEvent) {
        self.out.push_back(Output::Event(ev));
    }

    fn media(&mut self, action: MediaAction) {
        self.out.push_back(Output::Media(action));
    }

    fn done(&mut self, command: CommandId, code: i32, call_id: Option<String>) {
        self.out.push_back(Output::Done { command, code, call_id });
    }

    /// Server time now, as best we know it.
    fn server_now(&self) -> Millis {
        self.now + self.server_offset
    }

    /// Local deadline for ringing that started with a message sent at `sent_time` (spec C.4):
    /// 60 s minus the time already elapsed on the server clock; a negative elapsed time (clock
    /// skew) counts as 500 ms.
    fn ring_deadline(&self, sent_time: Millis) -> Millis {
        let elapsed = self.server_now() - sent_time;
        let elapsed = if elapsed < 0 { 500 } else { elapsed };
        self.now + (RING_TIMEOUT_MS - elapsed)
    }

    /// Our own ringing's deadline: [`ANSWER_MARGIN_MS`] before the caller's timer for us.
    fn own_ring_deadline(&self, sent_time: Millis) -> Millis {
        self.ring_deadline(sent_time) - ANSWER_MARGIN_MS
    }

    /// Sends `body` for `call_id` to `recipients`, addressed as the call is.
    fn send(&mut self, call_id: &str, body: Body, recipients: Vec<String>, push: Option<PushConfig>, purpose: SendPurpose) {
        let Some(call) = self.calls.get(call_id) else { return };
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let content = CallContent {
            platform: "Web".into(),
            device_id: self.cfg.device_id.clone(),
            call_id: call_id.to_string(),
            user: Some(self.profile.clone()),
            body: Some(body),
        };
        // Results nobody waits for are not asked for (see `OutgoingSignal::receipt`).
        let receipt = !matches!(purpose, SendPurpose::Other | SendPurpose::Hangup { command: None } | SendPurpose::Mute { command: None });
        let signal = OutgoingSignal {
            request_id,
            conversation_type: call.conversation_type,
            target_id: call.target_id.clone(),
            channel_id: call.channel_id.clone(),
            directional_user_ids: recipients,
            content,
            push,
            receipt,
        };
        if receipt {
            self.sends.insert(request_id, purpose);
        }
        self.out.push_back(Output::Send(signal));
    }

    /// Ends a live call: everyone NONE, timers cleared, media torn down, `onSessionClose` owed
    /// to the app (and emitted here unless `close_after` events must come first).
    ///
    /// Returns whether the session had been announced (so a close was emitted).
    fn end_call(&mut self, call_id: &str, reason: i32, set_end_time: bool) -> Option<EndSummary> {
        let now = self.now;
        let call = self.calls.get_mut(call_id)?;
        if !call.is_live() {
            return None;
        }
        // A call whose `call()` had not resolved was never handed to the app: nothing to close.
        let announced = !matches!(call.phase, Phase::Starting(_));
        let was_joined = call.joined();
        let had_media = call.has_local_media();
        call.phase = Phase::Ended { reason };
        if set_end_time {
            call.end = now;
        }
        for m in call.users.values_mut() {
            m.state = UserState::None;
            m.ring_deadline = None;
        }
        let remote: Vec<String> = call.users.keys().cloned().collect();
        call.left.extend(remote);
        call.users.clear();
        let in_sfu = call.sfu.take().is_some_and(|s| s.generation.is_some());
        let joined = was_joined || !call.peers.is_empty() || in_sfu;
        call.peers.clear();
        call.early_tracks.clear();
        let summary = call.summary();
        if joined {
            self.media(MediaAction::Leave { call_id: call_id.to_string() });
        }
        if had_media {
            self.media(MediaAction::Release { call_id: call_id.to_string() });
        }
        self.ended.push(call_id.to_string());
        if self.ended.len() > ENDED_KEPT {
            let old = self.ended.remove(0);
            self.calls.remove(&old);
        }
        announced.then_some(summary)
    }

    fn close_event(&mut self, call_id: &str, summary: Option<EndSummary>) {
        if let Some(summary) = summary {
            self.emit(CallEvent::SessionClosed { call_id: call_id.to_string(), summary });
        }
    }

    fn on_send_result(&mut self, request_id: u32, result: Result<Millis, i32>) {
        let Some(purpose) = self.sends.remove(&request_id) else { return };
        match purpose {
            SendPurpose::Invite { call_id } => self.call_progress(&call_id, None, Some(result)),
            SendPurpose::Accept { call_id } => self.accept_sent(&call_id, result),
            SendPurpose::Hangup { command: Some(cmd) } => {
                let code = result.map_or_else(send_error_code, |_| error_code::SUCCESS);
                self.done(cmd, code, None);
            }
            SendPurpose::Modify { command, call_id, new_users } => self.modify_sent(command, &call_id, new_users, result),
            SendPurpose::Descend { command, call_id } => self.descend_sent(command, &call_id, result),
            SendPurpose::Mute { command: Some(cmd) } => {
                let code = result.map_or_else(send_error_code, |_| error_code::SUCCESS);
                self.done(cmd, code, None);
            }
            SendPurpose::Hangup { command: None } | SendPurpose::Mute { command: None } | SendPurpose::Other => {}
        }
    }
}

/// IM send failure → `RCCallErrorCode` (spec B.1).
fn send_error_code(im_code: i32) -> i32 {
    match im_code {
        crate::proto::error_code::REJECTED_BY_BLACKLIST => error_code::REJECTED_BY_BLACKLIST,
        crate::proto::error_code::NOT_IN_GROUP => error_code::NOT_IN_GROUP,
        _ => error_code::SEND_MSG_ERROR,
    }
}

fn member(state: UserState, profile: UserProfile) -> Member {
    Member { state, profile, ring_deadline: None, device_id: None, muted: call::Muted::default(), maybe_in: false }
}
