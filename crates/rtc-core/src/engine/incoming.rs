//! Flows started by received call messages (spec B.4).

use crate::small_map::SmallMap;

use super::call::{Call, CallParties, Member, Pending, Phase};
use super::{member, CallEvent, Engine, Peer, Received, SendPurpose, Sender, TrackKind};
use crate::proto::{self, call_content::Body, UserProfile};
use crate::types::{end_reason, map_remote_reason, MediaType, UserState};

impl Engine {
    pub(super) fn on_signal(&mut self, mut msg: Received) {
        let me = self.cfg.self_id.clone();
        let from_self = msg.sender_user_id == me;
        let call_id = msg.content.call_id.clone();
        let profile = msg.content.user.clone().unwrap_or_default();
        let sender = Sender { user_id: msg.sender_user_id.clone(), profile };
        if msg.content.body.is_none() {
            return;
        }
        // Our call() is still starting: keep its messages until it has resolved.
        if let Some(start) = self.calls.get_mut(&call_id).and_then(Call::start_mut) {
            start.held.push(msg);
            return;
        }
        // Taken, not cloned: the handlers below read the message's other fields only (a clone
        // of the body cost the wasm SDK 1.2 KB).
        let Some(body) = msg.content.body.take() else { return };
        if !from_self {
            self.note_profile(&call_id, &sender);
        }
        match body {
            // My other device's outgoing call is not a call for this device (spec C.7).
            Body::Invite(_) if from_self => {}
            Body::Invite(invite) => self.invited(&msg, invite, sender),
            Body::Ringing(_) => {
                if !from_self && self.live(&call_id) && self.tracks(&call_id, &msg.sender_user_id) {
                    let peer = Peer { user_id: msg.sender_user_id.clone(), device_id: msg.content.device_id.clone() };
                    self.peer_ringing(&call_id, peer);
                    self.emit(CallEvent::Ringing { call_id, sender });
                }
            }
            Body::Accept(_) if from_self => self.other_device_accepted(&call_id),
            Body::Accept(_) => self.remote_accepted(&call_id, sender, msg.content.device_id.clone()),
            // Sent on this very device's behalf: the server's verdict (see `connection`).
            Body::Hangup(h) if from_self && msg.sender_device_id == self.cfg.device_id => self.server_ended(&call_id, h.reason),
            // My other device hung up (rejected, was busy…): it ends the call here unless this
            // device is the one in the call (then it concerns only that other device).
            Body::Hangup(_) if from_self => {
                if !self.accepted_here(&call_id) {
                    self.other_device_took_over(&call_id, end_reason::HANGUP_BY_OTHER_CLIENT);
                }
            }
            Body::Hangup(h) => self.remote_hung_up(&call_id, sender, &msg.content.device_id, h.reason),
            Body::Media(signal) => {
                if from_self || signal.to_user_id != me || signal.to_device_id != self.cfg.device_id {
                    return;
                }
                // Only a participant may open or feed a link (no media toward a stranger).
                if !self.tracks(&call_id, &msg.sender_user_id) {
                    return;
                }
                let peer = Peer { user_id: msg.sender_user_id.clone(), device_id: msg.content.device_id.clone() };
                if let Some(kind) = signal.kind {
                    self.apply_remote_media(&call_id, peer, kind);
                }
            }
            Body::ModifyMem(_) if from_self => {}
            Body::ModifyMem(modify) => self.members_modified(&msg, modify, sender),
            Body::Mute(_) if from_self => {}
            Body::Mute(state) => self.remote_mute(&call_id, &msg.sender_user_id, state),
            Body::ModifyMedia(_) if from_self => {}
            Body::ModifyMedia(m) => self.media_modified(&call_id, sender, m.media_type),
        }
    }

    /// A tracked participant's latest profile (`content.user` of what it sends), for
    /// `getRemoteUsers()`: a message without one keeps what we knew.
    fn note_profile(&mut self, call_id: &str, sender: &Sender) {
        if sender.profile == UserProfile::default() {
            return;
        }
        if let Some(m) = self.calls.get_mut(call_id).and_then(|c| c.users.get_mut(&sender.user_id)) {
            m.profile = sender.profile.clone();
        }
    }

    fn live(&self, call_id: &str) -> bool {
        self.calls.get(call_id).is_some_and(Call::is_live)
    }

    /// Whether `user` is a participant of `call_id` as this device tracks it (invited, ringing
    /// or in). Messages about a call from anyone else change nothing: the server routes what
    /// any user addresses to us, so the sender's say-so is not membership.
    pub(super) fn tracks(&self, call_id: &str, user: &str) -> bool {
        self.calls.get(call_id).is_some_and(|c| c.users.contains_key(user))
    }

    /// RC:VCInvite for this user (spec B.4, C.13.1 step 2, C.6 busy).
    fn invited(&mut self, msg: &Received, invite: proto::Invite, sender: Sender) {
        let me = self.cfg.self_id.clone();
        let call_id = msg.content.call_id.clone();
        if call_id.is_empty() || self.calls.contains_key(&call_id) || !invite.invite_user_ids.contains(&me) {
            return;
        }
        if msg.conversation_type == proto::conversation_type::PRIVATE {
            if let Some(mine) = self.crossing_call(&sender.user_id) {
                if mine < call_id {
                    // Our call wins: the peer merges into it on their side.
                    return;
                }
                return self.merge_into(msg, invite, sender, mine);
            }
        }
        let busy = self.has_live_call();
        let deadline = self.ring_deadline(msg.sent_time);
        let mut users = SmallMap::new();
        // The caller is in the call through the device that invited (for `remote_hung_up`).
        let mut caller = member(UserState::Waiting, sender.profile.clone());
        caller.device_id = Some(msg.content.device_id.clone());
        users.insert(sender.user_id.clone(), caller);
        for u in &invite.invite_user_ids {
            let mut m = member(UserState::Waiting, UserProfile::default());
            m.ring_deadline = Some(deadline);
            users.get_or_insert_with(u.clone(), || m);
        }
        if let Some(m) = users.get_mut(&me) {
            m.profile = self.profile.clone();
            m.ring_deadline = Some(self.own_ring_deadline(msg.sent_time));
        }
        let call = self.rung_call(msg, invite.media_type, sender.user_id, users, invite.extra.clone());
        self.calls.insert(call_id.clone(), call);
        self.ring_and_announce(&call_id, invite.extra, busy);
    }

    /// A new call, WAITING and handed to the app, its media through the SFU when the server runs
    /// this GROUP call's media there; each flow adjusts what differs.
    pub(super) fn new_call(&self, parties: CallParties, extra: String) -> Call {
        let mut call = Call::new(parties);
        call.sfu = self.new_call_sfu(call.conversation_type);
        call.extra = extra;
        call
    }

    /// The call `msg` (an RC:VCInvite or RC:VCModifyMem) rings this device for, as
    /// [`Engine::new_call`]: addressed as `msg` is, its sender the inviter.
    pub(super) fn rung_call(
        &self,
        msg: &Received,
        media_type: i32,
        caller_id: String,
        users: SmallMap<String, Member>,
        extra: String,
    ) -> Call {
        let parties = CallParties {
            id: msg.content.call_id.clone(),
            conversation_type: msg.conversation_type,
            target_id: msg.target_id.clone(),
            channel_id: msg.channel_id.clone(),
            media_type: MediaType::from_i32(media_type).unwrap_or(MediaType::Audio),
            caller_id,
            inviter_id: msg.sender_user_id.clone(),
            users,
        };
        self.new_call(parties, extra)
    }

    /// A new incoming call is tracked: ring back, hand the session to the app, and if another
    /// call is in progress end this one at once as busy (spec C.6).
    pub(super) fn ring_and_announce(&mut self, call_id: &str, extra: String, busy: bool) {
        let me = self.cfg.self_id.clone();
        let call_id = call_id.to_string();
        // Ring back to everyone else in the call.
        let recipients = self.calls[&call_id].remote_ids(&me);
        self.send(&call_id, Body::Ringing(proto::Ringing {}), recipients.clone(), None, SendPurpose::Other);
        self.emit(CallEvent::Session { call_id: call_id.clone(), extra });
        if busy {
            // Spec C.6: the app saw the session; it ends at once with BUSY_LINE and the caller
            // hears REMOTE_BUSY_LINE. The call already in progress is untouched.
            self.send(&call_id, Body::Hangup(proto::Hangup { reason: end_reason::BUSY_LINE }), recipients, None, SendPurpose::Other);
            let summary = self.end_call(&call_id, end_reason::BUSY_LINE, false);
            self.close_event(&call_id, summary);
        }
    }

    /// Our own 1:1 call to `peer` that nobody answered yet, if any: a call from `peer` now
    /// means both dialled each other.
    fn crossing_call(&self, peer: &str) -> Option<String> {
        let me = &self.cfg.self_id;
        self.calls
            .values()
            .find(|c| {
                // Our invite is out (its SendResult and our camera may still be on their way),
                // and our capture has not failed.
                let invited = match &c.phase {
                    Phase::Waiting { pending: Pending::None, .. } => true,
                    Phase::Starting(start) => !matches!(start.captured, Some(Err(_))),
                    _ => false,
                };
                invited
                    && !c.is_group()
                    && c.caller_id == *me
                    && c.target_id == peer
                    && c.users.values().all(|m| m.state != UserState::Keeping)
            })
            .map(|c| c.id.clone())
    }

    /// Crossing calls (rcall extension): our call `mine` lost to the peer's `msg` call (larger
    /// id). Cancel ours, take theirs over with the media we already captured, accept it at once.
    fn merge_into(&mut self, msg: &Received, invite: proto::Invite, sender: Sender, mine: String) {
        let me = self.cfg.self_id.clone();
        let Some(old) = self.calls.get(&mine) else { return };
        let recipients = old.remote_ids(&me);
        // A call() still waiting for the server settles with the merged call, after announcing
        // the local tracks it captured (as it would have).
        // Captured: None while the camera is still starting.
        let (pending_call, captured): (Option<super::CommandId>, Option<Vec<TrackKind>>) = match &old.phase {
            Phase::Starting(start) => (Some(start.command), start.captured.clone().and_then(Result::ok)),
            _ => (None, Some(Vec::new())),
        };
        // Cancel our call on the peer's devices (the one that dialled us ignores it).
        self.send(&mine, Body::Hangup(proto::Hangup { reason: end_reason::CANCEL }), recipients, None, SendPurpose::Other);
        self.calls.remove(&mine);
        let call_id = msg.content.call_id.clone();
        let mut users = SmallMap::new();
        // The caller is in the call through the device that invited (for `remote_hung_up`).
        let mut caller = member(UserState::Waiting, sender.profile.clone());
        caller.device_id = Some(msg.content.device_id.clone());
        users.insert(sender.user_id.clone(), caller);
        users.insert(me.clone(), member(UserState::Waiting, self.profile.clone()));
        self.calls.insert(call_id.clone(), {
            let mut call = self.rung_call(msg, invite.media_type, sender.user_id.clone(), users, invite.extra);
            // Our media from the call that lost is reused; it was already announced.
            call.local_announced = true;
            let pending = match (pending_call, &captured) {
                (Some(cmd), None) => Pending::MergeCapture(cmd),
                _ => Pending::MergeAccept,
            };
            call.phase = Phase::Waiting { pending, captured: true };
            call
        });
        self.media(super::MediaAction::Rename { from: mine.clone(), into: call_id.clone() });
        self.renamed.insert(mine.clone(), call_id.clone());
        self.emit(CallEvent::Merged { from: mine, into: call_id.clone() });
        match (pending_call, captured) {
            // Our camera is still starting (only while call() runs): accept once it has
            // started (see `merge_captured`).
            (_, None) => {}
            (pending_call, Some(kinds)) => {
                if let Some(cmd) = pending_call {
                    for kind in kinds {
                        self.local_track_ready(&call_id, kind, false);
                    }
                    self.done(cmd, crate::types::error_code::SUCCESS, Some(call_id.clone()));
                }
                self.send_merge_accept(&call_id);
            }
        }
    }

    fn send_merge_accept(&mut self, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id) else { return };
        let body = Body::Accept(proto::Accept { media_type: call.media_type as i32 });
        let recipients = call.remote_ids(&me);
        self.send(call_id, body, recipients, None, SendPurpose::Accept { call_id: call_id.to_string() });
    }

    /// The camera of a call() that was merged into the peer's call has started (or not).
    pub(super) fn merge_captured(&mut self, call_id: &str, command: super::CommandId, result: Result<Vec<TrackKind>, super::CaptureError>) {
        let Some(call) = self.calls.get_mut(call_id) else { return };
        match result {
            Ok(kinds) => {
                call.set_pending(Pending::MergeAccept);
                for kind in kinds {
                    self.local_track_ready(call_id, kind, false);
                }
                self.done(command, crate::types::error_code::SUCCESS, Some(call_id.to_string()));
                self.send_merge_accept(call_id);
            }
            Err(_) => {
                // No session was handed out: hang up the merged call, report the capture error.
                let code = super::outgoing::capture_error_code(call.media_type);
                // Nothing to close: the session was never the app's.
                let _ = self.hang_up_and_end(call_id, end_reason::GET_MEDIA_RESOURCES_ERROR);
                self.calls.remove(call_id);
                self.done(command, code, None);
            }
        }
    }

    /// RC:VCAccept from another participant (spec B.4, C.13.1 step 5).
    fn remote_accepted(&mut self, call_id: &str, sender: Sender, device_id: String) {
        let me = self.cfg.self_id.clone();
        let now = self.now;
        if self.late_accept(call_id, &sender.user_id) {
            return;
        }
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) else { return };
        let Some(m) = call.users.get_mut(&sender.user_id) else { return };
        // Two devices of one user answered at once: the first (in server order) is in, the other
        // ends itself with 101 (`other_device_accepted`).
        if m.state == UserState::Keeping && other_device(m.device_id.as_deref(), &device_id) {
            return;
        }
        m.ring_deadline = None;
        m.state = UserState::Keeping;
        m.device_id = Some(device_id.clone());
        let self_in = call.self_in(&me);
        if self_in {
            if let Some(m) = call.users.get_mut(&me) {
                m.state = UserState::Keeping;
            }
            call.keep();
            // Spec C.11: keep the FIRST connect time (CallLib overwrote it on every accept).
            if call.begin == 0 {
                call.begin = now;
            }
            // Whoever is already in the call connects to the one who just accepted.
            self.peer_joined(call_id, Peer { user_id: sender.user_id.clone(), device_id });
        } else if matches!(call.pending(), Pending::AcceptCapture(_)) {
            // Our Accept went through before theirs (the server orders them) but our camera is
            // still starting: we are still the one to connect, without tracks for now; they go
            // on the link once captured (`accept_joined` → `attach_links`). Waiting until then
            // would leave two members accepting at once with no link between them.
            self.connect_peer(call_id, Peer { user_id: sender.user_id.clone(), device_id }, true, false);
        }
        // The seed types the sender as ISenderInfo; CallLib passed only `{userId}` (spec G.13).
        self.emit(CallEvent::Accept { call_id: call_id.to_string(), sender });
        // Pre-connected links already know the remote tracks: announce them after onAccept.
        self.surface_tracks(call_id);
    }

    /// A late Accept from `user`, who is not (or no longer) in our view of `call_id`: if the call
    /// goes on and our ring timer gave up on `user`, it is taken back (it answered in its own
    /// time; everyone in the call sees the same Accept). If the call is over here (a caller ending
    /// a 1:1 call by its ring timer sends nothing, spec C.4), the accepter is told, once, that we
    /// are out, or it could stay alone in the call. Whether the Accept was answered that way.
    fn late_accept(&mut self, call_id: &str, user: &str) -> bool {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else { return false };
        if user == me || call.users.contains_key(user) {
            return false;
        }
        let timed_out = call.timed_out.iter().any(|u| u == user);
        if call.is_live() {
            if timed_out {
                call.timed_out.retain(|u| u != user);
                call.users.insert(user.to_string(), super::member(UserState::Waiting, UserProfile::default()));
            }
            return false;
        }
        if !call.left.iter().any(|u| u == user) || call.told_gone.iter().any(|u| u == user) {
            return false; // a stranger, or told already
        }
        call.told_gone.push(user.to_string());
        let reason = if timed_out { end_reason::REMOTE_NO_RESPONSE } else { end_reason::HANGUP };
        let body = Body::Hangup(proto::Hangup { reason });
        self.send(call_id, body, vec![user.to_string()], None, SendPurpose::Other);
        true
    }

    /// RC:VCHangup from another participant (spec B.4, C.3, C.10, C.13.1–3).
    fn remote_hung_up(&mut self, call_id: &str, sender: Sender, device_id: &str, wire_reason: i32) {
        let now = self.now;
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) else { return };
        let Some(m) = call.users.get(&sender.user_id) else { return };
        // A user in the call through one device is not taken out by another of its devices (one
        // that lost an answering race, or the server's Hangup for such a device when it goes).
        if m.state == UserState::Keeping && other_device(m.device_id.as_deref(), device_id) {
            return;
        }
        call.users.remove(&sender.user_id);
        call.left.push(sender.user_id.clone());
        let reason = map_remote_reason(wire_reason);
        call.end = now;
        let peers: Vec<Peer> = call.peers.iter().filter(|l| l.peer.user_id == sender.user_id).map(|l| l.peer.clone()).collect();
        call.peers.retain(|l| l.peer.user_id != sender.user_id);
        call.early_tracks.retain(|(p, _)| p.user_id != sender.user_id);
        let anyone_keeping = call.users.values().any(|m| m.state == UserState::Keeping);
        let inviter_left_unanswered = call.is_group() && sender.user_id == call.inviter_id && !anyone_keeping;
        let ends = call.users.len() < 2 || inviter_left_unanswered;
        let joined = call.joined();
        for peer in peers {
            self.media(super::MediaAction::Disconnect { call_id: call_id.to_string(), peer });
        }
        let hungup = CallEvent::Hungup { call_id: call_id.to_string(), sender, reason };
        if !ends {
            return self.emit(hungup);
        }
        let summary = self.end_call(call_id, reason, true);
        if joined {
            // In a call: `onHungup` first, `onSessionClose` once the room is left (C.13.1 step 8).
            self.emit(hungup);
            self.close_event(call_id, summary);
        } else {
            // Never connected: CallLib closes synchronously before `onHungup` (C.13.2, C.13.3).
            self.close_event(call_id, summary);
            self.emit(hungup);
        }
    }

    /// My other device accepted or hung up this call (spec C.7): end here (a pending `accept()`
    /// resolves), sending nothing — unless our own Accept is on its way: the server may have
    /// taken it first after all (its answer lost with a restart), so the others hear that this
    /// device is out. (Where the other device is in, they ignore it: it is not that device.)
    fn other_device_took_over(&mut self, call_id: &str, reason: i32) {
        let accept_in_flight = self
            .calls
            .get(call_id)
            .is_some_and(|c| matches!(c.pending(), Pending::Accepting(_) | Pending::AcceptSend(_) | Pending::MergeAccept));
        self.end_self(call_id, reason, accept_in_flight);
    }

    /// My other device accepted: it took the call (101), unless the server already took our own
    /// Accept, which then came first (the server orders them, and the others follow the first).
    /// CallLib ended both devices when both answered at once, leaving the caller alone.
    fn other_device_accepted(&mut self, call_id: &str) {
        if !self.accepted_here(call_id) {
            self.other_device_took_over(call_id, end_reason::ACCEPT_BY_OTHER_CLIENT);
        }
    }

    /// The server took this device's Accept for `call_id`, or this device placed the call.
    fn accepted_here(&self, call_id: &str) -> bool {
        let me = &self.cfg.self_id;
        self.calls.get(call_id).is_some_and(|c| {
            let placed_here = c.caller_id == *me && c.users.get(me).is_some_and(|m| m.ring_deadline.is_none());
            placed_here || matches!(c.pending(), Pending::AcceptCapture(_)) || (c.idle() && c.user_state(me) == UserState::Keeping)
        })
    }
}

/// Whether a message from `device` comes from another device than `known` (the one a member is in
/// the call through). Unknown on either side (a client that sends no device id): not another.
fn other_device(known: Option<&str>, device: &str) -> bool {
    known.is_some_and(|d| !d.is_empty() && !device.is_empty() && d != device)
}
