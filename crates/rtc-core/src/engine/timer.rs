//! Every timer of the engine, in one table. The engine asks for one wake-up at the earliest
//! deadline of them all ([`super::Output::Wait`]); on [`super::Input::Timeout`] it fires, kind by
//! kind in the table's order, every timer that is due (a ring timeout that ends a call cancels
//! that call's link restarts).
//!
//! | timer | one per | armed by | when it fires (source) | firing |
//! |---|---|---|---|---|
//! | [`Timer::Ring`] | ringing member of a live call (`Member::ring_deadline`; replaced, never stacked) | an invite or ModifyMem sent (once the server took it) or received | [`RING_TIMEOUT_MS`] after the message's server `sentTime`, by the server clock (spec C.4); this device's own ringing [`ANSWER_MARGIN_MS`] sooner | member dropped with `onHungup(15)`, END(15) when fewer than two remain; our own: END(5), nothing sent (`Engine::ring_timed_out`) |
//! | [`Timer::LinkRestart`] | peer link with its transport lost, on its offerer (`Link::restart_at`) | the link's `disconnected` / `failed` | [`RESTART_GRACE_MS`] after `disconnected`, at once after `failed`, then every [`RESTART_RETRY_MS`] (rcall; CallLib had no recovery) | ICE restart ([`super::recovery`]) |
//! | [`Timer::SfuRestart`] | SFU connection (publisher / subscriber) of a live call with its transport lost (`SfuCall::health`) | the connection's `disconnected` / `failed` ([`super::SfuEvent::State`]) | as [`Timer::LinkRestart`]; at most [`super::SFU_RESTARTS`] times (rcall) | ICE restart in place; past the limit the call ends as a failed join, 9 / 10 ([`super::sfu`]) |
//! | [`Timer::Cutoff`] | engine, while the link to the server is down | [`super::Input::LinkDown`] | [`SELF_CUTOFF_MS`] after the client last heard from the server (rcall) | every live call ends with NETWORK_ERROR (7), a Hangup queued ([`super::connection`]) |

use super::call::Call;
use super::{CallEvent, Engine, Millis, Sender};
use crate::types::end_reason;

/// Ring timeout (spec C.4): fixed at 60 s in CallLib, counted from the server's sent time.
pub const RING_TIMEOUT_MS: Millis = 60_000;
/// A ringing device stops this long before the caller's timer for it fires. An answer in the
/// last moment would otherwise cross the caller's timeout: the caller drops the callee (a 1:1
/// caller ends silently, spec C.4) while the callee, having answered, thinks it is in the call.
/// One second covers the one-way delay of any usable network.
pub const ANSWER_MARGIN_MS: Millis = 1_000;
/// A client cut off from the server this long (since it last heard from it) ends its live calls
/// with NETWORK_ERROR (7): by then the server has found the connection dead and ended the
/// device's calls for the others (ping deadline + grace, README "Recovery"), so carrying on
/// alone would only show a frozen call.
pub const SELF_CUTOFF_MS: Millis = 30_000;
/// How long a `disconnected` link may recover by itself before it is restarted.
pub const RESTART_GRACE_MS: Millis = 2_000;
/// How often a restart is repeated while the link stays down.
pub const RESTART_RETRY_MS: Millis = 5_000;

/// The kinds of timer, in the order they fire (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    Ring,
    LinkRestart,
    SfuRestart,
    Cutoff,
}

impl Timer {
    const ALL: [Timer; 4] = [Timer::Ring, Timer::LinkRestart, Timer::SfuRestart, Timer::Cutoff];
}

impl Engine {
    /// The earliest deadline of every timer, for [`super::Output::Wait`].
    pub(super) fn next_deadline(&self) -> Option<Millis> {
        let sfu = self.calls.values().filter(|c| c.is_live()).filter_map(Engine::sfu_deadline);
        self.calls.values().filter_map(call_deadline).chain(sfu).chain(self.cutoff_deadline()).min()
    }

    /// [`super::Input::Timeout`]: fires every timer that is due.
    pub(super) fn on_timeout(&mut self) {
        for timer in Timer::ALL {
            match timer {
                Timer::Ring => self.expire_rings(),
                Timer::LinkRestart => self.restart_due_links(),
                Timer::SfuRestart => self.sfu_restart_due(),
                Timer::Cutoff => self.check_cutoff(),
            }
        }
    }

    fn expire_rings(&mut self) {
        let now = self.now;
        let mut expired: Vec<(String, String)> = Vec::new();
        for call in self.calls.values().filter(|c| c.is_live()) {
            for (user, m) in &call.users {
                if m.ring_deadline.is_some_and(|d| d <= now) {
                    expired.push((call.id.clone(), user.clone()));
                }
            }
        }
        for (call_id, user) in expired {
            self.ring_timed_out(&call_id, &user);
        }
    }

    /// Spec C.4: the ringing of `user` in `call_id` timed out.
    fn ring_timed_out(&mut self, call_id: &str, user: &str) {
        let me = self.cfg.self_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else { return };
        if !call.is_live() || !call.users.contains_key(user) {
            return;
        }
        if user == me {
            // Our own ringing: end locally with NO_RESPONSE and send nothing (5.2.5).
            let summary = self.end_call(call_id, end_reason::NO_RESPONSE, true);
            return self.close_event(call_id, summary);
        }
        let profile = call.users.remove(user).map(|m| m.profile).unwrap_or_default();
        call.timed_out.push(user.to_string());
        call.left.push(user.to_string());
        let remaining = call.users.len();
        let sender = Sender { user_id: user.to_string(), profile };
        let reason = end_reason::REMOTE_NO_RESPONSE;
        if remaining < 2 {
            // Caller side: the last invitee never answered; end silently (no hangup sent, and
            // endTimestamp stays 0 as in CallLib's summary).
            let summary = self.end_call(call_id, reason, false);
            self.emit(CallEvent::Hungup { call_id: call_id.to_string(), sender, reason });
            self.close_event(call_id, summary);
        } else {
            self.emit(CallEvent::Hungup { call_id: call_id.to_string(), sender, reason });
        }
    }
}

/// The first ring or link-restart deadline of a live call.
fn call_deadline(call: &Call) -> Option<Millis> {
    if !call.is_live() {
        return None;
    }
    let rings = call.users.values().filter_map(|m| m.ring_deadline);
    rings.chain(call.peers.iter().filter_map(|l| l.restart_at)).min()
}
