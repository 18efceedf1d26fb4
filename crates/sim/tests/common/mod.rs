//! What the property runs and the regression sequences check, in one place: the engine's
//! invariants on each device's log (spec C.14), agreement on who is in a call, and consistent
//! end reasons. Each check panics naming `seed` (the run or the sequence it failed in).

#![allow(dead_code)] // each test file uses its part

pub mod steps;

use std::collections::{BTreeMap, BTreeSet};

use rcall_sim::{DeviceId, Logged, Sim};
use rtc_core::engine::CallEvent;
use rtc_core::types::{map_remote_reason, MediaType, SessionState, UserState};

/// `a` calls the user of `b` with `media` and `b` answers: a second later both are in the call
/// (asserted). Returns the call id.
pub fn answer(sim: &mut Sim, a: DeviceId, b: DeviceId, media: MediaType) -> String {
    let callee = sim.engine(b).self_id().to_string();
    let call_id = sim.dial(a, &callee, media);
    sim.accept(b, &call_id);
    sim.run_for(1_000);
    for dev in [a, b] {
        assert_eq!(sim.engine(dev).session(&call_id).map(|v| v.state), Some(SessionState::Keeping), "device {dev}");
    }
    call_id
}

/// Alice (device 0) calls bob (device 1) with `media` and he answers: (sim, a, b, call_id).
pub fn connected(media: MediaType) -> (Sim, DeviceId, DeviceId, String) {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = answer(&mut sim, a, b, media);
    (sim, a, b, call_id)
}

/// The calls `dev` has (handed to the app, not ended), in id order.
pub fn live_calls(sim: &Sim, dev: DeviceId) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for (_, l) in sim.log(dev) {
        match l {
            Logged::Event(CallEvent::Session { call_id, .. } | CallEvent::Merged { into: call_id, .. }) => {
                ids.insert(call_id.clone());
            }
            Logged::Done { call_id: Some(c), .. } => {
                ids.insert(c.clone());
            }
            _ => {}
        }
    }
    ids.into_iter().filter(|c| sim.engine(dev).session(c).is_some_and(|v| v.state != SessionState::End)).collect()
}

/// Spec C.14, from one device's log.
pub fn check_invariants(sim: &Sim, dev: DeviceId, seed: u64) {
    let mut handed: BTreeSet<String> = BTreeSet::new();
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut hungup: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut invited: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut last_was_close: Option<String> = None;
    for (_, l) in sim.log(dev) {
        let after_close_ok = last_was_close.take();
        match l {
            Logged::Done { call_id: Some(c), .. } => {
                handed.insert(c.clone());
            }
            Logged::Event(ev) => {
                let call = match ev {
                    CallEvent::Session { call_id, .. } => {
                        handed.insert(call_id.clone());
                        call_id
                    }
                    CallEvent::Merged { into, .. } => {
                        handed.insert(into.clone());
                        into
                    }
                    CallEvent::SessionClosed { call_id, .. } => {
                        assert!(handed.contains(call_id), "seed {seed} dev {dev}: close before the app had {call_id}");
                        assert!(closed.insert(call_id.clone()), "seed {seed} dev {dev}: {call_id} closed twice");
                        last_was_close = Some(call_id.clone());
                        continue;
                    }
                    CallEvent::Ringing { call_id, .. }
                    | CallEvent::Accept { call_id, .. }
                    | CallEvent::Hungup { call_id, .. }
                    | CallEvent::TrackReady { call_id, .. }
                    | CallEvent::PublishFail { call_id, .. }
                    | CallEvent::SubscribeFail { call_id, .. }
                    | CallEvent::MemberModify { call_id, .. }
                    | CallEvent::MediaModify { call_id, .. }
                    | CallEvent::MuteChange { call_id, .. } => call_id,
                    CallEvent::OfflineRecord(_) => continue,
                };
                if let CallEvent::Hungup { call_id, sender, .. } = ev {
                    *hungup.entry((call_id.clone(), sender.user_id.clone())).or_default() += 1;
                    // CallLib's one exception: a call that never connected closes just before
                    // its onHungup (spec C.13.2).
                    if closed.contains(call_id) {
                        assert_eq!(after_close_ok.as_ref(), Some(call_id), "seed {seed} dev {dev}: event after close");
                        continue;
                    }
                }
                // A user timed out and then taken back by its late Accept may leave again.
                if let CallEvent::Accept { call_id, sender } = ev {
                    if hungup.contains_key(&(call_id.clone(), sender.user_id.clone())) {
                        *invited.entry((call_id.clone(), sender.user_id.clone())).or_default() += 1;
                    }
                }
                if let CallEvent::MemberModify { call_id, invited: who, .. } = ev {
                    for u in who {
                        *invited.entry((call_id.clone(), u.user_id.clone())).or_default() += 1;
                    }
                }
                assert!(!closed.contains(call), "seed {seed} dev {dev}: {ev:?} after {call} closed");
            }
            Logged::Sent(s) => {
                let call = &s.content.call_id;
                // The one message after the end: the answer to a late Accept, to its sender only
                // (see the engine's module docs).
                let late_accept_answer = s.directional_user_ids.len() == 1
                    && matches!(&s.content.body, Some(rtc_core::proto::call_content::Body::Hangup(h)) if h.reason == 15 || h.reason == 3);
                assert!(
                    late_accept_answer || !closed.contains(call),
                    "seed {seed} dev {dev}: sent {:?} after {call} ended",
                    s.content.object_name()
                );
                if let Some(rtc_core::proto::call_content::Body::ModifyMem(m)) = &s.content.body {
                    for p in &m.existed_user_pofiles {
                        if p.call_status == 3 {
                            *invited.entry((call.clone(), p.user_id.clone())).or_default() += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // At most one onHungup per user per time that user was (re)invited.
    for ((call, user), n) in hungup {
        let allowed = 1 + invited.get(&(call.clone(), user.clone())).copied().unwrap_or(0);
        assert!(n <= allowed, "seed {seed} dev {dev}: {n} onHungup for {user} in {call}");
    }
}

/// Loss-free runs: everyone in a live call who is in it sees the same members in it.
pub fn check_agreement(sim: &Sim, devs: &[DeviceId], seed: u64) {
    let mut views: BTreeMap<String, Vec<(DeviceId, BTreeSet<String>)>> = BTreeMap::new();
    for &dev in devs {
        for c in live_calls(sim, dev) {
            let view = sim.engine(dev).session(&c).unwrap();
            let me = sim.engine(dev).self_id().to_string();
            if view.users.iter().any(|u| u.user_id == me && u.state == UserState::Keeping) {
                let keeping: BTreeSet<String> =
                    view.users.iter().filter(|u| u.state == UserState::Keeping).map(|u| u.user_id.clone()).collect();
                views.entry(c).or_default().push((dev, keeping));
            }
        }
    }
    for (call, list) in views {
        for w in list.windows(2) {
            assert_eq!(w[0].1, w[1].1, "seed {seed}: devices {} and {} disagree on who is in {call}", w[0].0, w[1].0);
        }
    }
}

/// Loss-free runs: the two ends of a 1:1 call agree on why it ended.
/// With `faults`, a call either side saw end by the network (7 / 17), or that the server ended for
/// a gone device, may pair with anything: the server may end a device's part before (or after)
/// what that device did itself gets through.
pub fn check_end_reasons(sim: &Sim, devs: &[DeviceId], seed: u64, faults: bool) {
    let mut reasons: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    for &dev in devs {
        let me = sim.engine(dev).self_id().to_string();
        for e in sim.events(dev) {
            if let CallEvent::SessionClosed { call_id, summary } = e {
                if summary.conversation_type == 1 {
                    reasons.entry(call_id.clone()).or_default().push((me.clone(), summary.end_reason));
                }
            }
        }
    }
    for (call, ends) in reasons {
        let distinct_users: BTreeSet<&String> = ends.iter().map(|(u, _)| u).collect();
        if distinct_users.len() < 2 {
            continue;
        }
        let local: Vec<i32> = ends.iter().map(|(_, r)| *r).filter(|r| !matches!(r, 101 | 102)).collect();
        // (A user whose only end was on another device's account, 101/102, has nothing to pair.)
        // The server's verdict speaks for a gone device, whatever that device last did.
        let verdict = sim.verdicts.iter().any(|(_, _, c, _)| *c == call);
        if local.len() < 2 || (faults && (verdict || local.iter().any(|r| matches!(r, 7 | 17)))) {
            continue;
        }
        // Either one side's reason is the other's seen from the far end, or both ended the call
        // themselves at the same moment (e.g. a cancel crossing a reject).
        let paired = local.iter().any(|a| local.iter().any(|b| map_remote_reason(*a) == *b || (*a == 5 && *b == 15)));
        // (15 is the caller's own ring timer, which can fire as a reject is in flight.)
        let both_own = local.iter().all(|r| (1..=10).contains(r) || *r == 15);
        let consistent = paired || both_own;
        assert!(consistent, "seed {seed}: {call} ended with {ends:?}");
    }
}
