//! Flows started by this device: call, accept, hang up, and the media layer's reports.

use crate::small_map::SmallMap;
use crate::text::{int, join};

use super::call::{Call, CallParties, CallStart, Pending, Phase};
use super::{
    member, send_error_code, CallEvent, CallRequest, CaptureError, CommandId, Engine, MediaAction, MediaEvent, SendPurpose, TrackInfo,
    TrackKind,
};
use crate::proto::{self, call_content::Body, ChannelInfo, PushConfig, UserProfile};
use crate::types::{end_reason, error_code, MediaType, UserState};

impl Engine {
    pub(super) fn on_command(&mut self, id: CommandId, cmd: super::Command) {
        use super::Command;
        match cmd {
            Command::Call(req) => self.start_call(id, req),
            Command::Accept { call_id } => self.accept(id, &call_id),
            Command::Hangup { call_id } => self.hangup(Some(id), &call_id),
            Command::RegisterUserInfo(profile) => {
                self.profile = profile;
                self.done(id, error_code::SUCCESS, None);
            }
            Command::Invite { call_id, user_ids, extra, push_title, push_content } => self.invite_members(
                id,
                &call_id,
                user_ids,
                extra,
                super::PushTexts { title: push_title, content: push_content, options: None },
            ),
            Command::DescendAbility { call_id } => self.descend(id, &call_id),
            Command::MuteTrack { call_id, kind, muted } => self.mute_track(id, &call_id, kind, muted),
            Command::ChangeMicrophone { call_id } => self.change_microphone(id, &call_id),
            Command::RemoteVideoLayer { call_id, user_id, layer } => self.set_remote_video_layer(id, &call_id, &user_id, layer),
            Command::SetPushConfig { call, hangup } => {
                self.call_push = call;
                self.hangup_push = hangup;
                self.done(id, error_code::SUCCESS, None);
            }
        }
    }

    /// `call()` / `callInGroup()` (spec C.13.1 step 1): capture, then invite.
    fn start_call(&mut self, id: CommandId, req: CallRequest) {
        let me = self.cfg.self_id.clone();
        let group = req.conversation_type == proto::conversation_type::GROUP;
        // Spec C.8 (5.2.7): calling oneself is a parameter error; nothing is captured or sent.
        if (!group && req.target_id == me) || (group && req.user_ids.contains(&me)) {
            return self.done(id, error_code::PARAM_ERROR, None);
        }
        if self.has_live_call() || self.calls.contains_key(&req.call_id) {
            return self.done(id, error_code::STATE_MACHINE_EXIT, None);
        }
        // Disconnected: fail at once, as CallLib's send failed with IMLib disconnected.
        if self.link_is_down() {
            return self.done(id, error_code::SEND_MSG_ERROR, None);
        }
        let invitees = if group { dedup(&req.user_ids) } else { vec![req.target_id.clone()] };
        let mut users = SmallMap::new();
        users.insert(me.clone(), member(UserState::Waiting, self.profile.clone()));
        for u in invitees {
            users.insert(u, member(UserState::Waiting, UserProfile::default()));
        }
        let call_id = req.call_id.clone();
        self.calls.insert(call_id.clone(), {
            let mut call = self.new_call(
                CallParties {
                    id: call_id.clone(),
                    conversation_type: req.conversation_type,
                    target_id: req.target_id,
                    channel_id: req.channel_id,
                    media_type: req.media_type,
                    caller_id: me.clone(),
                    inviter_id: me,
                    users,
                },
                req.extra,
            );
            // Not a session for the app until the invite went out (getState() says END).
            call.phase = Phase::Starting(Box::new(CallStart { command: id, captured: None, sent: None, held: Vec::new() }));
            call.push_title = req.push_title;
            call.push_content = req.push_content;
            call
        });
        self.media(MediaAction::Capture { call_id: call_id.clone(), video: req.media_type.has_video() });
        self.send_invite(&call_id);
    }

    fn send_invite(&mut self, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id) else { return };
        let invitees = call.remote_ids(&me);
        let texts = super::PushTexts { title: call.push_title.clone(), content: call.push_content.clone(), options: None };
        let body = Body::Invite(proto::Invite {
            engine_type: proto::ENGINE_TYPE,
            channel_info: Some(ChannelInfo { id: call_id.to_string(), key: String::new() }),
            media_type: call.media_type as i32,
            invite_user_ids: invitees.clone(),
            observer_user_ids: Vec::new(),
            extra: call.extra.clone(),
        });
        let push = self.invite_push(call_id, &invitees, &texts);
        self.send(call_id, body, invitees, Some(push), SendPurpose::Invite { call_id: call_id.to_string() });
    }

    /// Capture or invite of an outgoing call finished; when both have, settle `call()`.
    pub(super) fn call_progress(
        &mut self,
        call_id: &str,
        captured: Option<Result<Vec<TrackKind>, CaptureError>>,
        sent: Option<Result<super::Millis, i32>>,
    ) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else { return };
        let Some(start) = call.start_mut() else { return };
        let command = start.command;
        if captured.is_some() {
            start.captured = captured;
        }
        if sent.is_some() {
            start.sent = sent;
        }
        let (Some(captured), Some(sent)) = (start.captured.clone(), start.sent) else { return };
        let held = std::mem::take(&mut start.held);
        let kinds = match (captured, sent) {
            (Ok(kinds), Ok(sent_time)) => (kinds, sent_time),
            (captured, sent) => {
                // No session was handed out: nothing but the code reaches the app (spec C.2).
                let code = match (&captured, sent) {
                    (_, Err(im_code)) => send_error_code(im_code),
                    _ => capture_error_code(call.media_type),
                };
                if sent.is_ok() {
                    // The callee is already ringing: cancel with our capture failure (→ 18).
                    let recipients = call.remote_ids(&me);
                    let body = Body::Hangup(proto::Hangup { reason: end_reason::GET_MEDIA_RESOURCES_ERROR });
                    self.send(call_id, body, recipients, None, SendPurpose::Other);
                }
                self.calls.remove(call_id);
                self.media(MediaAction::Release { call_id: call_id.to_string() });
                return self.done(command, code, None);
            }
        };
        let (kinds, sent_time) = kinds;
        let deadline = self.ring_deadline(sent_time);
        let call = self.calls.get_mut(call_id).expect("checked above");
        call.phase = Phase::Waiting { pending: Pending::None, captured: true };
        call.local_announced = true;
        for (user, m) in call.users.iter_mut() {
            if *user != me {
                m.ring_deadline = Some(deadline);
            }
        }
        // CallLib announces the caller's own tracks inside call(), without a session (D.3),
        // then resolves call(); only then do the callees' answers reach the app.
        for kind in kinds {
            self.local_track_ready(call_id, kind, false);
        }
        self.done(command, error_code::SUCCESS, Some(call_id.to_string()));
        for msg in held {
            self.on_signal(msg);
        }
    }

    /// `session.accept()` (spec A.5, C.13.1 step 4).
    ///
    /// Better than CallLib, which captures first and sends the Accept after: rcall sends the
    /// Accept while the camera starts, so the caller starts sending its media a camera start
    /// earlier (a real camera takes hundreds of ms; its frames reach us while ours opens).
    /// What the app sees keeps CallLib's order: nothing changes for it until both the capture
    /// and the send are done, then `accept()` resolves and the tracks follow. If the capture
    /// fails after the Accept went out, a Hangup(8) follows it: the caller sees an accepted
    /// call end at once with 18, as it would have without the Accept.
    fn accept(&mut self, id: CommandId, call_id: &str) {
        let me = self.cfg.self_id.clone();
        // Spec G.15 decision: accepting a session that can no longer be accepted (ended, already
        // accepted, or our own outgoing call) fails fast with PARAM_ERROR and sends nothing.
        let acceptable =
            self.calls.get(call_id).is_some_and(|c| matches!(c.phase, Phase::Waiting { pending: Pending::None, .. }) && c.ringing(&me));
        if !acceptable {
            return self.done(id, error_code::PARAM_ERROR, None);
        }
        // Accepting one call hangs up every other live one (spec C.6).
        let others: Vec<String> = self.calls.values().filter(|c| c.is_live() && c.id != call_id).map(|c| c.id.clone()).collect();
        for other in others {
            self.hangup(None, &other);
        }
        let call = self.calls.get_mut(call_id).expect("checked above");
        call.phase = Phase::Waiting { pending: Pending::Accepting(id), captured: true };
        // We answered: our ring timer must not end the call as unanswered while the camera
        // starts (e.g. behind a permission prompt) — the caller already has our Accept.
        if let Some(m) = call.users.get_mut(&me) {
            m.ring_deadline = None;
        }
        let video = call.media_type.has_video();
        let recipients = call.remote_ids(&me);
        let media_type = call.media_type as i32;
        // The caller starts sending as soon as it hears of the Accept, long before our camera is
        // up: its first frame should already be a keyframe.
        if call.peers.iter().any(|l| !l.attached) {
            self.media(MediaAction::RequestKeyFrames { call_id: call_id.to_string(), peer: None });
        }
        self.media(MediaAction::Capture { call_id: call_id.to_string(), video });
        self.send(
            call_id,
            Body::Accept(proto::Accept { media_type }),
            recipients,
            None,
            SendPurpose::Accept { call_id: call_id.to_string() },
        );
    }

    /// The capture of an `accept()` finished; `sent`: the server already took our Accept.
    fn accept_captured(&mut self, call_id: &str, command: CommandId, result: Result<Vec<TrackKind>, CaptureError>, sent: bool) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else { return };
        if result.is_err() {
            // Capture failed: hang up with GET_MEDIA_RESOURCES_ERROR (8) and report 53301/53303.
            let code = capture_error_code(call.media_type);
            let recipients = call.remote_ids(&me);
            self.send(
                call_id,
                Body::Hangup(proto::Hangup { reason: end_reason::GET_MEDIA_RESOURCES_ERROR }),
                recipients,
                None,
                SendPurpose::Hangup { command: None },
            );
            let summary = self.end_call(call_id, end_reason::GET_MEDIA_RESOURCES_ERROR, true);
            self.done(command, code, None);
            return self.close_event(call_id, summary);
        }
        if sent {
            call.set_pending(Pending::None);
            self.accept_joined(call_id, Some(command));
        } else {
            call.set_pending(Pending::AcceptSend(command));
        }
    }

    pub(super) fn accept_sent(&mut self, call_id: &str, result: Result<super::Millis, i32>) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        let (command, capturing) = match call.pending() {
            Pending::AcceptSend(c) => (Some(c), false),
            Pending::Accepting(c) => (Some(c), true),
            Pending::MergeAccept => (None, false),
            _ => return,
        };
        call.set_pending(Pending::None);
        let done = |engine: &mut Engine, code: i32| {
            if let Some(c) = command {
                engine.done(c, code, None);
            }
        };
        if !call.is_live() {
            return done(self, error_code::SEND_MSG_ERROR);
        }
        match result {
            // Still capturing: the app hears of it once the camera is up (accept_captured).
            Ok(_) if capturing => call.set_pending(Pending::AcceptCapture(command.expect("set above"))),
            Ok(_) => self.accept_joined(call_id, command),
            Err(im_code) => {
                let reason = if im_code == 405 { end_reason::ADDED_TO_BLACKLIST } else { end_reason::NETWORK_ERROR };
                let summary = self.end_call(call_id, reason, true);
                done(self, send_error_code(im_code));
                self.close_event(call_id, summary);
            }
        }
    }

    /// Our Accept is through and our media captured: we are in the call.
    fn accept_joined(&mut self, call_id: &str, command: Option<CommandId>) {
        let me = self.cfg.self_id.clone();
        let now = self.now;
        let Some(call) = self.calls.get_mut(call_id) else { return };
        if let Some(m) = call.users.get_mut(&me) {
            m.state = UserState::Keeping;
            m.ring_deadline = None;
        }
        // The caller never sends an Accept: it is in the call while it has not left. (A
        // caller who left and was invited back rings again: it has a ring timer.)
        let caller = call.caller_id.clone();
        if let Some(m) = call.users.get_mut(&caller).filter(|m| m.ring_deadline.is_none()) {
            m.state = UserState::Keeping;
        }
        call.keep();
        if call.begin == 0 {
            call.begin = now;
        }
        let kinds: &[TrackKind] = match (call.local_announced, call.media_type.has_video()) {
            (true, _) => &[],
            (false, true) => &[TrackKind::Audio, TrackKind::Video],
            (false, false) => &[TrackKind::Audio],
        };
        call.local_announced = true;
        // Media first: our tracks go on the pre-connected links before the app hears anything
        // (its handlers may take a while); `self_joined` below then has nothing left to attach.
        self.attach_links(call_id);
        if let Some(c) = command {
            self.done(c, error_code::SUCCESS, None);
        }
        // Media is "published" once we are in: announce our tracks with the session (D.3).
        for &kind in kinds {
            self.local_track_ready(call_id, kind, true);
        }
        self.self_joined(call_id);
    }

    /// `session.hungup()` (spec C.5): cancel, reject or hang up; teardown happens at once, the
    /// command's code is the send result.
    pub(super) fn hangup(&mut self, command: Option<CommandId>, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id).filter(|c| c.is_live()) else {
            if let Some(cmd) = command {
                self.done(cmd, error_code::PARAM_ERROR, None);
            }
            return;
        };
        if let Phase::Starting(start) = &call.phase {
            return self.cancel_starting_call(command, call_id, start.command);
        }
        let merging_call = if let Pending::MergeCapture(c) = call.pending() { Some(c) } else { None };
        let pending_accept = match call.pending() {
            Pending::Accepting(c) | Pending::AcceptCapture(c) | Pending::AcceptSend(c) => Some(c),
            _ => None,
        };
        // A callee whose accept() is still under way is no caller cancelling: it hangs up if the
        // server already took its Accept (the others count it in), else it rejects.
        let reason = if call.user_state(&me) == UserState::Keeping || matches!(call.pending(), Pending::AcceptCapture(_)) {
            end_reason::HANGUP
        } else if pending_accept.is_some() || call.ringing(&me) {
            end_reason::REJECT
        } else {
            end_reason::CANCEL
        };
        let recipients = call.remote_ids(&me);
        let push = self.hangup_push(call_id, reason);
        // Disconnected: the Hangup is queued and the app is not kept waiting for it.
        let down = self.link_is_down();
        let purpose = SendPurpose::Hangup { command: if down { None } else { command } };
        self.send(call_id, Body::Hangup(proto::Hangup { reason }), recipients, push, purpose);
        let summary = self.end_call(call_id, reason, true);
        if let Some(c) = pending_accept {
            self.done(c, error_code::SEND_MSG_ERROR, None);
        }
        // A call() merged into the peer's call while its camera was still opening: it settles
        // as a call() hung up before it resolved (see `cancel_starting_call`).
        if let Some(c) = merging_call {
            self.done(c, error_code::SEND_MSG_ERROR, None);
        }
        if let Some(c) = command.filter(|_| down) {
            self.done(c, error_code::SUCCESS, None);
        }
        self.close_event(call_id, summary);
    }

    /// Hangup of an outgoing call whose `call()` has not resolved yet: the camera is still
    /// opening (getUserMedia may wait seconds, or on a permission prompt) or the server has not
    /// confirmed the invite. The app has no session object then, so this comes from
    /// `disconnect()` / `pagehide` (the SDK hangs up every live call). It ends the call at once,
    /// like a caller cancelling (spec C.5): the callees get a Hangup(1 CANCEL) now, so their
    /// ringing stops instead of lasting until the server's gone-device grace — unless the server
    /// refused the invite, then nobody rings and nothing is sent. The call's media is released;
    /// a capture still under way is released when it lands (`on_media`), no link is opened.
    ///
    /// Decision (CallLib had no such moment: it captured before inviting): `call()` resolves
    /// `{code: SEND_MSG_ERROR}` without a session, and no `onSessionClose` fires, as the app
    /// never held the session. That is what CallLib's `call()` would give for a disconnect
    /// during its capture (the invite send after it fails), and what `call()` gives while
    /// disconnected.
    fn cancel_starting_call(&mut self, command: Option<CommandId>, call_id: &str, call_command: CommandId) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else { return };
        let refused = match call.start_mut().and_then(|s| s.sent) {
            Some(Err(im_code)) => Some(im_code),
            _ => None,
        };
        // Messages held for after call() (e.g. the callee's Ringing) are for a call that is over:
        // they go with the start data when the call ends below.
        let recipients = call.remote_ids(&me);
        let down = self.link_is_down();
        let reason = end_reason::CANCEL;
        let sent = refused.is_none();
        if sent {
            let push = self.hangup_push(call_id, reason);
            let purpose = SendPurpose::Hangup { command: if down { None } else { command } };
            self.send(call_id, Body::Hangup(proto::Hangup { reason }), recipients, push, purpose);
        }
        let summary = self.end_call(call_id, reason, true);
        debug_assert!(summary.is_none(), "an unresolved call() was never announced");
        // A refused invite keeps its own code (as if the capture had finished first).
        self.done(call_command, refused.map_or(error_code::SEND_MSG_ERROR, send_error_code), None);
        if let Some(c) = command.filter(|_| down || !sent) {
            self.done(c, error_code::SUCCESS, None);
        }
    }

    /// Ends a live call for a reason of our own and tells the others (kick, failures).
    pub(super) fn end_with_hangup(&mut self, call_id: &str, reason: i32) {
        let summary = self.hang_up_and_end(call_id, reason);
        self.close_event(call_id, summary);
    }

    /// Sends a Hangup with `reason` to the others and ends a live session; the summary is for
    /// the close the app is owed (see `end_call`).
    pub(super) fn hang_up_and_end(&mut self, call_id: &str, reason: i32) -> Option<super::EndSummary> {
        let me = self.cfg.self_id.clone();
        let call = self.calls.get(call_id).filter(|c| c.has_session())?;
        let recipients = call.remote_ids(&me);
        let push = self.hangup_push(call_id, reason);
        self.send(call_id, Body::Hangup(proto::Hangup { reason }), recipients, push, SendPurpose::Hangup { command: None });
        self.end_call(call_id, reason, true)
    }

    pub(super) fn on_media(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Captured { call_id, result } => {
                let call_id = self.renamed.get(&call_id).cloned().unwrap_or(call_id);
                let starting = self.calls.get(&call_id).is_some_and(|c| matches!(c.phase, Phase::Starting(_)));
                let pending = self.calls.get(&call_id).map(Call::pending);
                if let (Some(call), Ok(kinds)) = (self.calls.get_mut(&call_id), &result) {
                    if !matches!(pending, Some(Pending::MicCapture(_))) {
                        call.no_camera = call.media_type.has_video() && !kinds.contains(&TrackKind::Video);
                    }
                }
                match pending {
                    Some(_) if starting => self.call_progress(&call_id, Some(result), None),
                    Some(Pending::MergeCapture(cmd)) => self.merge_captured(&call_id, cmd, result),
                    Some(Pending::Accepting(cmd)) => self.accept_captured(&call_id, cmd, result, false),
                    Some(Pending::AcceptCapture(cmd)) => self.accept_captured(&call_id, cmd, result, true),
                    Some(Pending::CameraCapture(cmd)) => self.camera_captured(&call_id, cmd, result),
                    Some(Pending::MicCapture(cmd)) => self.microphone_captured(&call_id, cmd, result),
                    // The call ended while capturing: give the tracks back.
                    _ => self.media(MediaAction::Release { call_id }),
                }
            }
            MediaEvent::LocalSignal { call_id, peer, signal } => self.local_media_signal(&call_id, peer, signal),
            MediaEvent::RemoteTrack { call_id, peer, kind } => self.remote_track(&call_id, peer, kind),
            MediaEvent::LinkState { call_id, peer, state } => self.link_state(&call_id, &peer, state),
            MediaEvent::Sfu(ev) => self.on_sfu_media(ev),
        }
    }

    pub(super) fn local_track_ready(&mut self, call_id: &str, kind: TrackKind, with_session: bool) {
        let me = self.cfg.self_id.clone();
        let track = TrackInfo { track_id: super::track_id(&me, kind), user_id: me, device_id: String::new(), kind, local: true };
        self.emit(CallEvent::TrackReady { call_id: call_id.to_string(), track, with_session });
    }

    /// Push data of a hangup: only when the app set `hungupPushConfig` (spec B.5, 5.1.2).
    pub(super) fn hangup_push(&self, call_id: &str, reason: i32) -> Option<PushConfig> {
        let texts = &self.hangup_push;
        if *texts == super::PushTexts::default() {
            return None;
        }
        let data = ["{\"callId\":", &json_string(call_id), ",\"reason\":", &int(reason.into()), "}"].concat();
        Some(PushConfig {
            push_title: texts.title.clone().unwrap_or_default(),
            push_content: texts.content.clone().unwrap_or_else(|| data.clone()),
            push_data: data,
            options: super::io::clone_options(&texts.options),
        })
    }

    /// Push data of invite-type messages (spec B.5). Decision for spec G.2: per-call
    /// `pushTitle`/`pushContent` win over `setPushConfig`, which wins over the defaults.
    pub(super) fn invite_push(&self, call_id: &str, invitees: &[String], per_call: &super::PushTexts) -> PushConfig {
        let call = &self.calls[call_id];
        let video = call.media_type.has_video();
        let default_title = match (self.cfg.lang.as_str(), video) {
            ("en", false) => "You have a voice call",
            ("en", true) => "You have a video call",
            (_, false) => "您有一条音频通话",
            (_, true) => "您有一条视频通话",
        };
        let ids: Vec<String> = invitees.iter().map(|u| json_string(u)).collect();
        let media = int(call.media_type as i64);
        let data = ["{\"mediaType\":", &media, ",\"userIdList\":[", &join(&ids, ","), "],\"callId\":", &json_string(call_id), "}"].concat();
        let title = per_call.title.clone().or_else(|| self.call_push.title.clone());
        let content = per_call.content.clone().or_else(|| self.call_push.content.clone());
        PushConfig {
            push_title: title.unwrap_or_else(|| default_title.to_string()),
            push_content: content.unwrap_or_else(|| data.clone()),
            push_data: data,
            // Per-call params carry only title and content; the per-OS / vendor part is the
            // app's `setPushConfig` (5.2.4).
            options: super::io::clone_options(&self.call_push.options),
        }
    }
}

/// `RCCallErrorCode` for a failed capture of a call of this media type.
pub(super) fn capture_error_code(media_type: MediaType) -> i32 {
    match media_type {
        MediaType::Audio => error_code::GET_LOCAL_AUDIO_TRACK_ERROR,
        MediaType::AudioVideo => error_code::GET_LOCAL_AUDIO_AND_VIDEO_TRACK_ERROR,
    }
}

pub(super) fn dedup(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Minimal JSON string literal (ids are arbitrary strings).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(HEX[c as usize >> 4] as char);
                out.push(HEX[c as usize & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
