//! The engine while the connection to the server is gone (issue 10).
//!
//! The shell queues what the engine sends meanwhile ([`crate::link::ClientLink`]) and resends it
//! after the reconnect, so in-call messages (accept, mute, media, hangup) are emitted as usual.
//! What differs:
//! - `hungup()` ends the session at once and resolves at once with SUCCESS: the app must be able
//!   to leave a call whatever the network does; the Hangup follows once reconnected.
//! - `call()` and `invite()` fail at once with SEND_MSG_ERROR (53201), as CallLib's did with
//!   IMLib disconnected (its send failed): ringing someone minutes later would surprise both.
//! - Self cut-off: live calls end with NETWORK_ERROR (7) at `since + SELF_CUTOFF_MS` unless the
//!   link came back first; a Hangup(7) is queued (harmless if the server already ended them).
//! - The server's verdict: the server ends the calls of a device it found gone by sending an
//!   RC:VCHangup on its behalf, to the others and to the device itself (it gets it on
//!   reconnect). A Hangup from our own user *and device id* is that verdict: the session ends with
//!   its reason as-is (7 stays 7) and nothing is sent back.

use super::call::{Pending, Phase};
use super::Millis;
use super::{Engine, MediaAction, SendPurpose, SELF_CUTOFF_MS};
use crate::proto::{self, call_content::Body};
use crate::types::{end_reason, error_code};

impl Engine {
    pub(super) fn link_down(&mut self, since: Millis) {
        self.link_down_since = Some(self.link_down_since.map_or(since, |s| s.min(since)));
        self.check_cutoff();
    }

    pub(super) fn link_up(&mut self) {
        self.link_down_since = None;
        self.syncing = true;
    }

    pub(super) fn link_is_down(&self) -> bool {
        self.link_down_since.is_some()
    }

    /// When the self cut-off ends the live calls, while the link is down.
    pub(super) fn cutoff_deadline(&self) -> Option<Millis> {
        self.link_down_since.filter(|_| self.has_live_call()).map(|s| s + SELF_CUTOFF_MS)
    }

    pub(super) fn check_cutoff(&mut self) {
        if self.cutoff_deadline().is_some_and(|t| t <= self.now) {
            let live: Vec<String> = self.calls.values().filter(|c| c.is_live()).map(|c| c.id.clone()).collect();
            for call_id in live {
                self.end_self(&call_id, end_reason::NETWORK_ERROR, true);
            }
        }
    }

    /// The server ended this device's participation in `call_id` (see the module docs).
    pub(super) fn server_ended(&mut self, call_id: &str, reason: i32) {
        self.end_self(call_id, reason, false);
    }

    /// Ends a live call for a reason of this device's own, whatever stage it is at; the pending
    /// command of the call (if any) resolves. `tell_others`: queue a Hangup with `reason`.
    pub(super) fn end_self(&mut self, call_id: &str, reason: i32, tell_others: bool) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get(call_id).filter(|c| c.is_live()) else { return };
        let recipients = call.remote_ids(&me);
        let hangup = Body::Hangup(proto::Hangup { reason });
        if let Phase::Starting(start) = &call.phase {
            let command = start.command;
            // call() still starting: no session for the app yet; the invite may already be out.
            if tell_others {
                self.send(call_id, hangup, recipients, None, SendPurpose::Other);
            }
            self.calls.remove(call_id);
            self.media(MediaAction::Release { call_id: call_id.to_string() });
            return self.done(command, error_code::SEND_MSG_ERROR, None);
        }
        let pending = match call.pending() {
            Pending::Accepting(c) | Pending::AcceptCapture(c) | Pending::AcceptSend(c) | Pending::MergeCapture(c) => {
                Some((c, error_code::SEND_MSG_ERROR))
            }
            Pending::CameraCapture(c) => Some((c, error_code::GET_LOCAL_VIDEO_TRACK_ERROR)),
            Pending::MicCapture(c) => Some((c, error_code::GET_LOCAL_AUDIO_TRACK_ERROR)),
            _ => None,
        };
        if tell_others {
            let push = self.hangup_push(call_id, reason);
            self.send(call_id, hangup, recipients, push, SendPurpose::Hangup { command: None });
        }
        // CallLib leaves endTimestamp at 0 when another device took the call over (C.7).
        let taken_over = matches!(reason, end_reason::ACCEPT_BY_OTHER_CLIENT | end_reason::HANGUP_BY_OTHER_CLIENT);
        let summary = self.end_call(call_id, reason, !taken_over);
        if let Some((command, code)) = pending {
            self.done(command, code, None);
        }
        self.close_event(call_id, summary);
    }
}
