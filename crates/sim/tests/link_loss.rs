//! The engine under connection loss (issue 10), on the virtual clock: what fails fast while
//! disconnected, the self cut-off, and the server's verdict for a device it found gone.

mod common;

use rcall_sim::{DeviceId, Logged, Sim};
use rtc_core::engine::{Command, Input, MediaAction, Received, SELF_CUTOFF_MS};
use rtc_core::proto::{call_content::Body, conversation_type, Hangup};
use rtc_core::types::{end_reason, error_code, MediaType, SessionState};

/// A → B answered; returns (sim, a, b, call_id).
fn connected() -> (Sim, DeviceId, DeviceId, String) {
    common::connected(MediaType::AudioVideo)
}

fn hangups_sent(sim: &Sim, dev: DeviceId) -> Vec<(i32, bool)> {
    sim.sent(dev)
        .iter()
        .filter_map(|s| match &s.content.body {
            Some(Body::Hangup(h)) => Some((h.reason, s.receipt)),
            _ => None,
        })
        .collect()
}

#[test]
fn hangup_while_disconnected_ends_at_once_with_success_and_queues_the_hangup() {
    let (mut sim, a, _b, call_id) = connected();
    let now = sim.now();
    sim.inject(a, Input::LinkDown { since: now - 3_000 });
    let cmd = sim.hangup(a, &call_id);
    // Resolved and closed in the same instant, no server answer needed.
    assert_eq!(sim.result(a, cmd), Some((error_code::SUCCESS, None)));
    assert_eq!(sim.close_at(a, &call_id), Some((now, end_reason::HANGUP)));
    // The Hangup is still emitted (the shell queues it), without asking for a result.
    assert_eq!(hangups_sent(&sim, a), [(end_reason::HANGUP, false)]);
}

#[test]
fn call_and_invite_fail_fast_while_disconnected_but_in_call_messages_go_out() {
    let mut sim = Sim::new();
    let a = sim.add_device("a");
    let b = sim.add_device("b");
    sim.add_device("c");
    let now = sim.now();
    sim.inject(a, Input::LinkDown { since: now });
    let cmd = sim.call(a, "b", MediaType::AudioVideo);
    assert_eq!(sim.result(a, cmd), Some((error_code::SEND_MSG_ERROR, None)));
    assert!(sim.sent(a).is_empty(), "nothing sent");
    assert!(!sim.log(a).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Capture { .. }))), "nothing captured");
    assert!(!sim.engine(a).has_live_call());
    // Back up: a group call; then b loses the link while ringing.
    sim.inject(a, Input::LinkUp);
    let call_id = sim.dial_group(a, "g", &["b"], MediaType::AudioVideo);
    let now = sim.now();
    sim.inject(b, Input::LinkDown { since: now });
    // accept() and mute go out as usual (queued by the shell), and the call connects.
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    let mute = sim.command(b, Command::MuteTrack { call_id: call_id.clone(), kind: rtc_core::engine::TrackKind::Audio, muted: true });
    sim.run_for(100);
    assert_eq!(sim.result(b, mute).unwrap().0, error_code::SUCCESS);
    let names: Vec<_> = sim.sent(b).iter().filter_map(|s| s.content.object_name()).collect();
    assert!(names.contains(&"RC:VCAccept") && names.contains(&"RCall:Mute"), "{names:?}");
    // invite() does not: it would ring someone whenever the link comes back.
    let invite = sim.invite(b, &call_id, &["c"]);
    assert_eq!(sim.result(b, invite), Some((error_code::SEND_MSG_ERROR, None)));
    assert!(!sim.sent(b).iter().any(|s| s.content.object_name() == Some("RC:VCModifyMem")));
}

#[test]
fn cut_off_for_thirty_seconds_ends_live_calls_with_network_error() {
    let (mut sim, a, b, call_id) = connected();
    let since = sim.now() - 10_000; // last heard from the server 10 s ago
    sim.inject(b, Input::LinkDown { since });
    sim.run_until(since + SELF_CUTOFF_MS - 1);
    assert_eq!(sim.engine(b).session(&call_id).unwrap().state, SessionState::Keeping);
    sim.run_until(since + SELF_CUTOFF_MS);
    assert_eq!(sim.close_at(b, &call_id), Some((since + SELF_CUTOFF_MS, end_reason::NETWORK_ERROR)));
    assert_eq!(sim.timeline(b).last().map(String::as_str), Some("Close(7)"));
    assert!(sim.log(b).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Leave { .. }))));
    // A Hangup(7) is queued for the others; here it gets through: alice sees 17.
    assert_eq!(hangups_sent(&sim, b), [(end_reason::NETWORK_ERROR, false)]);
    sim.run_for(100);
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_NETWORK_ERROR));
    assert!(sim.timeline(a).contains(&"Hungup(bob,17)".to_string()));
}

#[test]
fn cut_off_resolves_a_pending_accept_and_a_ringing_call() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::AudioVideo);
    // Bob accepts behind a camera prompt that takes a minute; the link is gone meanwhile.
    sim.capture_delay = 60_000;
    let since = sim.now();
    sim.inject(b, Input::LinkDown { since });
    let accept = sim.accept(b, &call_id);
    sim.run_until(since + SELF_CUTOFF_MS);
    assert_eq!(sim.result(b, accept).map(|r| r.0), Some(error_code::SEND_MSG_ERROR));
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::NETWORK_ERROR));
    sim.run_for(61_000);
    assert_eq!(sim.timeline(b).iter().filter(|l| l.starts_with("Close(")).count(), 1);
}

#[test]
fn the_link_coming_back_in_time_keeps_the_call() {
    let (mut sim, a, b, call_id) = connected();
    let since = sim.now();
    sim.inject(b, Input::LinkDown { since });
    sim.run_until(since + SELF_CUTOFF_MS - 1);
    sim.inject(b, Input::LinkUp);
    sim.run_for(120_000);
    for dev in [a, b] {
        assert_eq!(sim.engine(dev).session(&call_id).unwrap().state, SessionState::Keeping, "device {dev}");
    }
    assert!(hangups_sent(&sim, b).is_empty());
    // And a hangup after it is an ordinary one again: resolved by the server's answer.
    let cmd = sim.hangup(b, &call_id);
    assert_eq!(sim.result(b, cmd), None);
    sim.run_for(100);
    assert_eq!(sim.result(b, cmd).unwrap().0, error_code::SUCCESS);
    assert_eq!(hangups_sent(&sim, b), [(end_reason::HANGUP, true)]);
}

/// A Hangup for `call_id` "from" bob's device `device` (what the server sends on its behalf).
fn verdict(sim: &Sim, to_self: bool, device: &str, call_id: &str, reason: i32) -> Input {
    let target = if to_self { "alice" } else { "bob" };
    Input::Signal(sim.delivered(("bob", device), conversation_type::PRIVATE, target, call_id, Body::Hangup(Hangup { reason })))
}

#[test]
fn the_servers_verdict_ends_the_gone_device_as_is_and_the_others_as_remote() {
    for (reason, others_see) in
        [(end_reason::NETWORK_ERROR, end_reason::REMOTE_NETWORK_ERROR), (end_reason::HANGUP, end_reason::REMOTE_HANGUP)]
    {
        let (mut sim, a, b, call_id) = connected();
        let sent_before = sim.sent(b).len();
        // Bob's device (dev1) reconnects and finds the server's Hangup for itself.
        let input = verdict(&sim, true, "dev1", &call_id, reason);
        sim.inject(b, input);
        assert_eq!(sim.close_reason(b, &call_id), Some(reason), "kept as is, not mapped");
        assert_eq!(sim.timeline(b).last().map(String::as_str), Some(format!("Close({reason})").as_str()));
        assert!(!sim.timeline(b).iter().any(|l| l.starts_with("Hungup(")));
        assert_eq!(sim.sent(b).len(), sent_before, "nothing sent back");
        // Alice gets the same message: an ordinary hangup from bob.
        let input = verdict(&sim, false, "dev1", &call_id, reason);
        sim.inject(a, input);
        assert_eq!(sim.close_reason(a, &call_id), Some(others_see));
        assert!(sim.timeline(a).contains(&format!("Hungup(bob,{others_see})")));
        sim.run_for(1_000);
        assert_eq!(sim.timeline(b).iter().filter(|l| l.starts_with("Close(")).count(), 1);
    }
}

#[test]
fn a_hangup_from_my_other_device_is_102_while_ringing_and_nothing_once_in() {
    // In the call through this device: another device of ours (busy, or gone) does not end it.
    let (mut sim, _a, b, call_id) = connected();
    let input = verdict(&sim, true, "bob-phone", &call_id, end_reason::BUSY_LINE);
    sim.inject(b, input);
    assert_eq!(sim.engine(b).session(&call_id).unwrap().state, SessionState::Keeping);
    // Still ringing here: the other device rejected, for the whole user (spec C.7).
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    let input = verdict(&sim, true, "bob-phone", &call_id, end_reason::REJECT);
    sim.inject(b, input);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::HANGUP_BY_OTHER_CLIENT));
}

#[test]
fn the_cut_off_of_a_call_still_starting_fails_call_without_a_session() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    sim.add_device("bob");
    sim.capture_delay = 5_000;
    let cmd = sim.call(a, "bob", MediaType::Audio);
    sim.run_for(100);
    let call_id = match &sim.sent(a)[0].content.body {
        Some(Body::Invite(i)) => i.channel_info.as_ref().unwrap().id.clone(),
        _ => panic!("no invite"),
    };
    // The invite went out; the camera is still starting when the cut-off comes.
    let since = sim.now() - SELF_CUTOFF_MS;
    sim.inject(a, Input::LinkDown { since });
    assert_eq!(sim.result(a, cmd), Some((error_code::SEND_MSG_ERROR, None)));
    assert!(sim.timeline(a).is_empty(), "no session, no close: {:?}", sim.timeline(a));
    // The callee, already ringing, hears it cancelled with our network error.
    assert_eq!(hangups_sent(&sim, a), [(end_reason::NETWORK_ERROR, false)]);
    sim.run_for(10_000);
    assert!(sim.engine(a).session(&call_id).is_none());
    assert_eq!(sim.close_reason(1, &call_id), Some(end_reason::REMOTE_NETWORK_ERROR));
    assert!(!sim.engine(a).has_live_call());
    assert!(sim.log(a).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Release { .. }))));
}

#[test]
fn a_stored_hangup_for_a_known_call_is_handled_on_arrival() {
    // Alice was disconnected when bob hung up: the server stored it (offline) and replays it on
    // her reconnect. It ends her call at once; an offline batch would have dropped it.
    let (mut sim, a, _b, call_id) = connected();
    let Input::Signal(mut msg) = verdict(&sim, false, "dev1", &call_id, end_reason::HANGUP) else { unreachable!() };
    msg.offline = true;
    sim.inject(a, Input::Signal(msg));
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_HANGUP));
    sim.inject(a, Input::SyncDone);
    assert!(!sim.timeline(a).iter().any(|l| l.starts_with("OfflineRecord")));
}

#[test]
fn a_live_cancel_replayed_after_its_stored_invite_does_not_ring() {
    // Reconnect replay: the invite was stored (offline) while no device of ours was connected,
    // its cancel was routed live to our other device; both come before SyncDone, in that order.
    let mut sim = Sim::new();
    let b = sim.add_device("bob");
    let msg = |offline: bool, body: Body| Received {
        sent_time: sim.now() - 2_000,
        offline,
        ..sim.delivered(("alice", "a1"), conversation_type::PRIVATE, "alice", "c1", body)
    };
    let invite = rtc_core::proto::Invite { engine_type: 4, media_type: 1, invite_user_ids: vec!["bob".into()], ..Default::default() };
    let invite = msg(true, Body::Invite(invite));
    let cancel = msg(false, Body::Hangup(Hangup { reason: end_reason::CANCEL }));
    sim.inject(b, Input::Signal(invite));
    sim.inject(b, Input::Signal(cancel));
    sim.inject(b, Input::SyncDone);
    assert!(!sim.engine(b).has_live_call(), "{:?}", sim.timeline(b));
    assert_eq!(sim.timeline(b), ["OfflineRecord(alice,11)"]);
}

#[test]
fn a_call_that_began_and_ended_while_we_were_away_does_not_ring_on_reconnect() {
    // Our other device was online: the replay brings the invite and that device's rejection,
    // both routed live (`offline: false`), before SyncDone.
    let mut sim = Sim::new();
    let b = sim.add_device("bob");
    let now = sim.now();
    sim.inject(b, Input::LinkDown { since: now });
    sim.run_for(5_000);
    sim.inject(b, Input::LinkUp);
    let msg = |from: &str, dev: &str, body: Body| Received {
        sent_time: sim.now() - 3_000,
        ..sim.delivered((from, dev), conversation_type::PRIVATE, "alice", "c1", body)
    };
    let invite = rtc_core::proto::Invite { engine_type: 4, media_type: 1, invite_user_ids: vec!["bob".into()], ..Default::default() };
    let invite = msg("alice", "a1", Body::Invite(invite));
    let reject = msg("bob", "bob-phone", Body::Hangup(Hangup { reason: end_reason::REJECT }));
    sim.inject(b, Input::Signal(invite));
    sim.inject(b, Input::Signal(reject));
    assert!(sim.timeline(b).is_empty(), "held until SyncDone: {:?}", sim.timeline(b));
    sim.inject(b, Input::SyncDone);
    assert!(!sim.engine(b).has_live_call());
    assert_eq!(sim.timeline(b), ["OfflineRecord(alice,2)"]);
    assert!(sim.sent(b).is_empty(), "no ringing, no busy hangup");
}
