//! Changes to a running call: inviting members into a group call (RC:VCModifyMem, spec C.9)
//! and downgrading to audio (RC:VCModifyMedia, spec D.5).

use super::outgoing::dedup;
use super::{member, CallEvent, CommandId, Engine, MediaAction, Millis, PushTexts, Received, SendPurpose, Sender};
use crate::proto::{self, call_content::Body, ChannelInfo, MemberProfile, UserProfile};
use crate::small_map::SmallMap;
use crate::types::{call_status, error_code, MediaType, UserState};

impl Engine {
    /// `session.invite(userIds)`.
    pub(super) fn invite_members(&mut self, id: CommandId, call_id: &str, user_ids: Vec<String>, extra: String, texts: PushTexts) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id).filter(|c| c.has_session()) else {
            // 5.1.1: inviting after the call ended (e.g. handled on another device) is a code,
            // never an exception.
            return self.done(id, error_code::PARAM_ERROR, None);
        };
        if !call.is_group() {
            return self.done(id, error_code::CONVERSATION_NOT_GROUP_ERROR, None);
        }
        // Only someone in the call brings others in: a member still ringing would be listed
        // CONNECTED (CallLib lists the sender so), and the new member would count it in for good
        // if it never answers.
        if !call.self_in(&me) {
            return self.done(id, error_code::PARAM_ERROR, None);
        }
        // 5.2.8 / spec G.6 decision: users already in the call are left out silently; if nobody
        // new remains the invite is a PARAM_ERROR and nothing is sent.
        let new_users: Vec<String> = dedup(&user_ids).into_iter().filter(|u| *u != me && !call.users.contains_key(u)).collect();
        if new_users.is_empty() {
            return self.done(id, error_code::PARAM_ERROR, None);
        }
        if self.link_is_down() {
            return self.done(id, error_code::SEND_MSG_ERROR, None);
        }
        // In the call: whoever is KEEPING, the inviter (us), and the caller unless it left and
        // rings again. CallLib listed a not-yet-answered caller as RINGING, and receivers then
        // timed the caller out; we do not.
        let in_call = |u: &String, m: &super::call::Member| {
            m.state == UserState::Keeping || *u == me || (*u == call.caller_id && m.ring_deadline.is_none())
        };
        let mut profiles: Vec<MemberProfile> = call
            .users
            .iter()
            .map(|(u, m)| MemberProfile {
                user_id: u.clone(),
                media_type: call.media_type as i32,
                call_status: if in_call(u, m) { call_status::CONNECTED } else { call_status::RINGING },
            })
            .collect();
        profiles.extend(new_users.iter().map(|u| MemberProfile {
            user_id: u.clone(),
            media_type: call.media_type as i32,
            call_status: call_status::RINGING,
        }));
        let everyone: Vec<String> = profiles.iter().map(|p| p.user_id.clone()).filter(|u| *u != me).collect();
        let body = Body::ModifyMem(proto::ModifyMem {
            engine_type: proto::ENGINE_TYPE,
            channel_info: Some(ChannelInfo { id: call_id.to_string(), key: String::new() }),
            media_type: call.media_type as i32,
            invite_user_ids: everyone.clone(),
            observer_user_ids: Vec::new(),
            caller: call.caller_id.clone(),
            modify_mem_type: 1,
            existed_user_pofiles: profiles,
            extra,
        });
        let push = self.invite_push(call_id, &new_users, &texts);
        let purpose = SendPurpose::Modify { command: id, call_id: call_id.to_string(), new_users };
        self.send(call_id, body, everyone, Some(push), purpose);
    }

    pub(super) fn modify_sent(&mut self, command: CommandId, call_id: &str, new_users: Vec<String>, result: Result<Millis, i32>) {
        match result {
            Ok(sent_time) => {
                let deadline = self.ring_deadline(sent_time);
                if let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) {
                    for u in new_users {
                        let mut m = member(UserState::Waiting, UserProfile::default());
                        m.ring_deadline = Some(deadline);
                        call.users.insert(u, m);
                    }
                }
                self.done(command, error_code::SUCCESS, None);
            }
            // The new users are simply not added (legacy left them in the map with NONE).
            Err(code) => self.done(command, super::send_error_code(code), None),
        }
    }

    /// RC:VCModifyMem received (spec B.4, C.9).
    pub(super) fn members_modified(&mut self, msg: &Received, modify: proto::ModifyMem, sender: Sender) {
        let me = self.cfg.self_id.clone();
        let call_id = msg.content.call_id.clone();
        let deadline = self.ring_deadline(msg.sent_time);
        // Members as the sender lists them; mobile peers may list only new invitees in
        // `inviteUserIds`, so both lists count (spec B.8).
        let mut members: Vec<(String, i32)> = modify.existed_user_pofiles.iter().map(|p| (p.user_id.clone(), p.call_status)).collect();
        for u in &modify.invite_user_ids {
            if !members.iter().any(|(m, _)| m == u) {
                members.push((u.clone(), call_status::RINGING));
            }
        }
        // The sender is in the call whatever an older client listed for it.
        match members.iter_mut().find(|(m, _)| *m == sender.user_id) {
            Some(entry) => entry.1 = call_status::CONNECTED,
            None => members.push((sender.user_id.clone(), call_status::CONNECTED)),
        }
        if let Some(call) = self.calls.get_mut(&call_id) {
            // Only a member of the call (whoever invited us is one until it leaves) may change
            // its members, and only in a group call: `invite()` on a 1:1 call is 53311, so no
            // CallLib client sends one. A stranger listing itself CONNECTED would otherwise
            // join, and its Accept would get our tracks; a member that left (e.g. ended by the
            // server's verdict) would come back with its delayed invite.
            let allowed = call.users.contains_key(&sender.user_id);
            if !call.is_live() || !call.is_group() || !allowed {
                return;
            }
            // Already in this call: track the new members (5.0.3) and tell the app.
            let mut invited = Vec::new();
            for (u, status) in &members {
                if *u == me || *status == call_status::IDLE {
                    continue;
                }
                let ringing = *status != call_status::CONNECTED;
                let m = call.users.get_or_insert_with(u.clone(), || member(UserState::Waiting, UserProfile::default()));
                if ringing && m.state != UserState::Keeping {
                    m.state = UserState::Waiting;
                    // One timer per user, replaced, never stacked (5.1.1, 5.2.5).
                    m.ring_deadline = Some(deadline);
                    invited.push(Sender { user_id: u.clone(), profile: UserProfile::default() });
                } else if !ringing && m.ring_deadline.is_none() {
                    // Someone we still ring is only in once its own Accept arrives (it comes
                    // before this message when there is one): a ringing member that invites
                    // lists itself CONNECTED, and taking that would leave its ring timer off
                    // and the call open for good if it never answers.
                    m.state = UserState::Keeping;
                }
            }
            self.emit(CallEvent::MemberModify { call_id, sender, invited });
            return;
        }
        // Only a new invitee rings: listed CONNECTED, we are in the call on another device (the
        // ModifyMem goes to every member), and this device has nothing to join.
        if !members.iter().any(|(m, status)| *m == me && *status != call_status::CONNECTED) {
            return;
        }
        // A new invitee: like an invite, with the caller named by the message (spec C.9).
        let busy = self.has_live_call();
        let mut users = SmallMap::new();
        for (u, status) in &members {
            if *status == call_status::IDLE {
                continue;
            }
            let mut m = if *status == call_status::CONNECTED && *u != me {
                member(UserState::Keeping, UserProfile::default())
            } else {
                let mut m = member(UserState::Waiting, UserProfile::default());
                m.ring_deadline = Some(deadline);
                m.maybe_in = true;
                m
            };
            if *u == sender.user_id {
                m.profile = sender.profile.clone();
                m.device_id = Some(msg.content.device_id.clone());
            }
            if *u == me {
                m.profile = self.profile.clone();
                m.ring_deadline = Some(self.own_ring_deadline(msg.sent_time));
            }
            users.insert(u.clone(), m);
        }
        let caller = if modify.caller.is_empty() { sender.user_id.clone() } else { modify.caller.clone() };
        let call = self.rung_call(msg, modify.media_type, caller, users, modify.extra.clone());
        self.calls.insert(call_id.clone(), call);
        self.ring_and_announce(&call_id, modify.extra, busy);
    }

    /// `session.descendAbility()`: tell everyone, then drop our video once the server took it.
    pub(super) fn descend(&mut self, id: CommandId, call_id: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id).filter(|c| c.has_session()) else {
            return self.done(id, error_code::PARAM_ERROR, None);
        };
        if call.media_type == MediaType::Audio {
            return self.done(id, error_code::SUCCESS, None);
        }
        let recipients = call.remote_ids(&me);
        let body = Body::ModifyMedia(proto::ModifyMedia { media_type: MediaType::Audio as i32 });
        self.send(call_id, body, recipients, None, SendPurpose::Descend { command: id, call_id: call_id.to_string() });
    }

    pub(super) fn descend_sent(&mut self, command: CommandId, call_id: &str, result: Result<Millis, i32>) {
        match result {
            Ok(_) => {
                if let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) {
                    call.media_type = MediaType::Audio;
                    self.media(MediaAction::DropVideo { call_id: call_id.to_string() });
                }
                self.done(command, error_code::SUCCESS, None);
            }
            Err(code) => self.done(command, super::send_error_code(code), None),
        }
    }

    /// RC:VCModifyMedia from another participant: only the downgrade to audio exists.
    pub(super) fn media_modified(&mut self, call_id: &str, sender: Sender, media_type: i32) {
        let Some(call) = self.calls.get_mut(call_id).filter(|c| c.is_live()) else { return };
        if !call.users.contains_key(&sender.user_id) || media_type != MediaType::Audio as i32 {
            return;
        }
        let was_video = call.media_type == MediaType::AudioVideo;
        call.media_type = MediaType::Audio;
        if was_video {
            self.media(MediaAction::DropVideo { call_id: call_id.to_string() });
        }
        self.emit(CallEvent::MediaModify { call_id: call_id.to_string(), sender, media_type: MediaType::Audio });
    }
}
