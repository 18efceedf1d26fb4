//! CallLib 5.X flows (spec C.13) run on the call simulator's virtual clock.

mod common;

use rcall_sim::{Logged, Sim};
use rtc_core::engine::{CallEvent, Input, MediaAction, Received, ANSWER_MARGIN_MS, RING_TIMEOUT_MS};
use rtc_core::proto::{call_content::Body, conversation_type, Hangup};
use rtc_core::types::{end_reason, error_code, MediaType, SessionState, UserState};

fn names(sim: &Sim, dev: usize) -> Vec<String> {
    sim.timeline(dev)
}

fn summary(sim: &Sim, dev: usize) -> rtc_core::engine::EndSummary {
    sim.events(dev)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::SessionClosed { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .expect("session closed")
}

/// Starts A → B and runs until B rang; returns (sim, a, b, call_id).
fn ringing(media: MediaType) -> (Sim, usize, usize, String) {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let cmd = sim.call(a, "bob", media);
    sim.run_for(100);
    let (code, call_id) = sim.result(a, cmd).expect("call() settled");
    assert_eq!(code, error_code::SUCCESS);
    let call_id = call_id.expect("session");
    assert_eq!(sim.incoming(b).as_deref(), Some(call_id.as_str()));
    (sim, a, b, call_id)
}

#[test]
fn answered_call_hung_up_by_caller() {
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    let invite = sim.sent(a)[0].clone();
    assert_eq!(invite.directional_user_ids, vec!["bob".to_string()]);
    assert_eq!(invite.content.object_name(), Some("RC:VCInvite"));
    match &invite.content.body {
        Some(Body::Invite(i)) => {
            assert_eq!(i.engine_type, 4);
            assert_eq!(i.media_type, 2);
            assert_eq!(i.invite_user_ids, vec!["bob".to_string()]);
            assert_eq!(i.channel_info.as_ref().unwrap().id, call_id);
        }
        other => panic!("not an invite: {other:?}"),
    }
    assert_eq!(invite.push.as_ref().unwrap().push_title, "您有一条视频通话");

    let accepted_at = sim.now();
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    let view = sim.engine(a).session(&call_id).unwrap();
    assert_eq!(view.state, SessionState::Keeping);
    assert!(view.users.iter().all(|u| u.state == UserState::Keeping));

    sim.run_for(5_000);
    let hangup = sim.hangup(a, &call_id);
    let hung_up_at = sim.now();
    sim.run_for(100);
    assert_eq!(sim.result(a, hangup).unwrap().0, error_code::SUCCESS);

    assert_eq!(
        names(&sim, a),
        [
            "Track(alice/Audio,nosession)",
            "Track(alice/Video,nosession)",
            "Ringing(bob)",
            "Accept(bob)",
            "Track(bob/Audio)",
            "Track(bob/Video)",
            "Close(3)",
        ]
    );
    assert_eq!(
        names(&sim, b),
        ["Session", "Track(bob/Audio)", "Track(bob/Video)", "Track(alice/Audio)", "Track(alice/Video)", "Hungup(alice,13)", "Close(13)"]
    );
    // Summaries (C.11): begin at connect, end at hangup, duration between them.
    let sa = summary(&sim, a);
    let sb = summary(&sim, b);
    assert_eq!((sa.end_reason, sb.end_reason), (3, 13));
    assert!(sa.begin_timestamp > accepted_at && sa.begin_timestamp < accepted_at + 100);
    assert_eq!(sa.end_timestamp, hung_up_at);
    assert_eq!(sa.duration, sa.end_timestamp - sa.begin_timestamp);
    assert!(sb.duration > 5_000 && sb.duration < 7_000, "{sb:?}");
    assert_eq!(sb.target_id, "alice");
    assert_eq!(sa.target_id, "bob");
    assert_eq!(sa.media_type, MediaType::AudioVideo);
    // Both sides left the media "room".
    for dev in [a, b] {
        assert!(sim.log(dev).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Leave { .. }))));
        assert_eq!(sim.engine(dev).session(&call_id).unwrap().state, SessionState::End);
        assert!(!sim.engine(dev).has_live_call());
    }
}

#[test]
fn answered_call_hung_up_by_callee() {
    let (mut sim, a, b, call_id) = ringing(MediaType::Audio);
    sim.accept(b, &call_id);
    sim.run_for(1_000);
    sim.hangup(b, &call_id);
    sim.run_for(100);
    assert_eq!(
        names(&sim, a),
        ["Track(alice/Audio,nosession)", "Ringing(bob)", "Accept(bob)", "Track(bob/Audio)", "Hungup(bob,13)", "Close(13)"]
    );
    assert_eq!(names(&sim, b), ["Session", "Track(bob/Audio)", "Track(alice/Audio)", "Close(3)"]);
    assert_eq!(sim.sent(a).iter().filter(|s| s.content.object_name() == Some("RC:VCHangup")).count(), 0);
}

#[test]
fn caller_cancels_before_answer() {
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.hangup(a, &call_id);
    sim.run_for(100);
    assert_eq!(summary(&sim, a).end_reason, end_reason::CANCEL);
    assert_eq!(summary(&sim, a).duration, 0);
    // C.13.2: never connected, so the callee closes BEFORE onHungup.
    assert_eq!(names(&sim, b), ["Session", "Close(11)", "Hungup(alice,11)"]);
}

#[test]
fn callee_rejects() {
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.hangup(b, &call_id);
    sim.run_for(100);
    assert_eq!(names(&sim, b), ["Session", "Close(2)"]);
    let a_events = names(&sim, a);
    assert_eq!(a_events[a_events.len() - 2..], ["Close(12)", "Hungup(bob,12)"]);
    assert_eq!(summary(&sim, a).duration, 0);
}

#[test]
fn nobody_answers_in_sixty_seconds() {
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    let invite_sent_time =
        sim.log(b).iter().find_map(|(t, l)| matches!(l, Logged::Event(CallEvent::Session { .. })).then_some(*t)).unwrap() - sim.latency;
    // The callee stops ANSWER_MARGIN_MS early, so that an answer in its last moment cannot
    // cross the caller's timeout.
    sim.run_until(invite_sent_time + RING_TIMEOUT_MS - ANSWER_MARGIN_MS - 1);
    assert!(sim.close_reason(a, &call_id).is_none() && sim.close_reason(b, &call_id).is_none());
    // Each side learns the server clock from frames that took `latency` to arrive, so its
    // estimate (and its timer) can be late by at most that one-way delay.
    sim.run_for(sim.latency + 1);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::NO_RESPONSE));
    assert!(sim.close_reason(a, &call_id).is_none());
    sim.run_until(invite_sent_time + RING_TIMEOUT_MS - 1);
    assert!(sim.close_reason(a, &call_id).is_none());
    sim.run_for(sim.latency + 1);
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_NO_RESPONSE));
    assert!(names(&sim, a).contains(&"Hungup(bob,15)".to_string()));
    // 5.2.5: the callee's own timeout sends no hangup; nobody sends one.
    for dev in [a, b] {
        assert!(sim.sent(dev).iter().all(|s| s.content.object_name() != Some("RC:VCHangup")));
        assert_eq!(summary(&sim, dev).duration, 0);
    }
    // Each close fired exactly once, and nothing happens later.
    sim.run_for(120_000);
    for dev in [a, b] {
        assert_eq!(names(&sim, dev).iter().filter(|n| n.starts_with("Close")).count(), 1);
    }
}

#[test]
fn ring_timeout_counts_from_server_sent_time() {
    // An invite the server accepted 30 s ago (by its clock) reaches Bob now: he rings for the
    // remaining 30 s, whatever his own clock says (the server's runs 7 s ahead of his).
    let mut sim = Sim::new();
    let b = sim.add_device("bob");
    let skew = 7_000;
    let server_now = sim.now() + skew;
    let body = Body::Invite(rtc_core::proto::Invite { media_type: 1, invite_user_ids: vec!["bob".into()], ..Default::default() });
    let invite = Received {
        sent_time: server_now - 30_000,
        server_time: server_now,
        ..sim.delivered(("alice", "d"), conversation_type::PRIVATE, "alice", "c1", body)
    };
    let t0 = sim.now();
    sim.inject(b, Input::Signal(invite));
    assert_eq!(sim.incoming(b).as_deref(), Some("c1"));
    // (minus the answer margin).
    sim.run_until(t0 + 30_000 - ANSWER_MARGIN_MS - 1);
    assert!(sim.close_reason(b, "c1").is_none());
    sim.run_for(1);
    assert_eq!(sim.close_reason(b, "c1"), Some(end_reason::NO_RESPONSE));
}

#[test]
fn remote_reasons_are_mapped_on_receipt() {
    for (wire, seen) in [(7, 17), (8, 18), (4, 14), (15, 5), (21, 31), (103, 13)] {
        let (mut sim, a, _b, call_id) = ringing(MediaType::Audio);
        // Bob's device sends a hangup with an arbitrary reason.
        let hangup = sim.delivered(("bob", "dev1"), conversation_type::PRIVATE, "bob", &call_id, Body::Hangup(Hangup { reason: wire }));
        sim.inject(a, Input::Signal(hangup));
        assert_eq!(sim.close_reason(a, &call_id), Some(seen), "wire {wire}");
        assert!(names(&sim, a).contains(&format!("Hungup(bob,{seen})")));
    }
}

#[test]
fn busy_callee_rejects_second_call_with_busy_line() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let c = sim.add_device("carol");
    let first_id = sim.dial(a, "bob", MediaType::Audio);
    sim.accept(b, &first_id);
    sim.run_for(100);
    let second = sim.call(c, "bob", MediaType::Audio);
    sim.run_for(200);
    let second_id = sim.result(c, second).unwrap().1.unwrap();
    // Bob's app saw the second session, then its close with BUSY_LINE.
    let bob = names(&sim, b);
    assert_eq!(bob[bob.len() - 2..], ["Session", "Close(4)"]);
    assert_eq!(sim.close_reason(b, &second_id), Some(end_reason::BUSY_LINE));
    // Carol heard ringing, then remote busy.
    let carol = names(&sim, c);
    assert_eq!(carol[carol.len() - 3..], ["Ringing(bob)", "Close(14)", "Hungup(bob,14)"]);
    // The first call is untouched.
    assert_eq!(sim.engine(b).session(&first_id).unwrap().state, SessionState::Keeping);
    assert!(sim.close_reason(a, &first_id).is_none());
}

#[test]
fn second_outgoing_call_and_self_call_are_refused() {
    let (mut sim, a, _b, _call_id) = ringing(MediaType::Audio);
    let again = sim.call(a, "carol", MediaType::Audio);
    sim.run_for(10);
    assert_eq!(sim.result(a, again), Some((error_code::STATE_MACHINE_EXIT, None)));
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let me = sim.call(a, "alice", MediaType::Audio);
    sim.run_for(10);
    assert_eq!(sim.result(a, me), Some((error_code::PARAM_ERROR, None)));
    assert!(sim.sent(a).is_empty());
    assert!(sim.log(a).iter().all(|(_, l)| !matches!(l, Logged::Media(MediaAction::Capture { .. }))));
}

#[test]
fn capture_failure_on_accept_ends_with_reason_8() {
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.fail_capture(b, Some(rtc_core::engine::CaptureError::PermissionDenied));
    let accept = sim.accept(b, &call_id);
    sim.run_for(100);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::GET_LOCAL_AUDIO_AND_VIDEO_TRACK_ERROR);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::GET_MEDIA_RESOURCES_ERROR));
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_GET_MEDIA_RESOURCE_ERROR));
}

/// When something was logged at `dev` first, by a predicate on the log entry.
fn first_at(sim: &Sim, dev: usize, f: impl Fn(&Logged) -> bool) -> Option<i64> {
    sim.log(dev).iter().find_map(|(t, l)| f(l).then_some(*t))
}

#[test]
fn the_caller_gets_the_accept_while_the_callee_camera_starts() {
    // Better than CallLib (capture, then send): rcall sends the Accept while the callee's camera
    // starts, so with a 400 ms camera start the caller hears of the answer after two hops and
    // puts its media on the link at once. The callee's app still sees CallLib's order.
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.capture_delay = 400;
    let t0 = sim.now();
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    let heard = first_at(&sim, a, |l| matches!(l, Logged::Event(CallEvent::Accept { .. }))).unwrap();
    let attached = first_at(&sim, a, |l| matches!(l, Logged::Media(MediaAction::Attach { .. }))).unwrap();
    assert!(heard - t0 <= 2 * sim.latency + 1, "caller heard of the accept after {} ms", heard - t0);
    assert!(attached - t0 <= 2 * sim.latency + 1, "caller attached after {} ms", attached - t0);
    let done = first_at(&sim, b, |l| matches!(l, Logged::Done { command, .. } if *command == accept)).unwrap();
    assert!(done - t0 >= 400, "accept() resolved before the camera was up");
    // The callee's app: nothing between Session and accept() resolving, then CallLib's order.
    assert!(sim
        .log(b)
        .iter()
        .all(|(t, l)| !matches!(l, Logged::Event(e) if *t > t0 && *t < done && !matches!(e, CallEvent::Session { .. }))));
    assert_eq!(names(&sim, b), ["Session", "Track(bob/Audio)", "Track(bob/Video)", "Track(alice/Audio)", "Track(alice/Video)"]);
    assert_eq!(sim.engine(b).session(&call_id).unwrap().state, SessionState::Keeping);
}

#[test]
fn capture_failing_after_the_accept_went_out_ends_both_sides() {
    // The Accept is already through when the camera fails: the caller sees the accept, then the
    // callee's Hangup(8) as 18 — the call still ends on both sides with CallLib's reasons.
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.capture_delay = 300;
    sim.fail_capture(b, Some(rtc_core::engine::CaptureError::NotFound));
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::GET_LOCAL_AUDIO_AND_VIDEO_TRACK_ERROR);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::GET_MEDIA_RESOURCES_ERROR));
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_GET_MEDIA_RESOURCE_ERROR));
    let sent: Vec<_> = sim.sent(b).iter().map(|s| s.content.object_name().unwrap()).collect();
    assert_eq!(sent[sent.len() - 2..], ["RC:VCAccept", "RC:VCHangup"]);
    // The callee's app saw no tracks: it never got in.
    assert_eq!(names(&sim, b), ["Session", "Close(8)"]);
    assert!(!sim.engine(a).has_live_call() && !sim.engine(b).has_live_call());
}

#[test]
fn a_camera_start_longer_than_the_ring_timeout_does_not_drop_an_answered_call() {
    // E.g. a permission prompt the user takes 70 s to answer: the Accept is out, so the callee's
    // ring timer must not end the call as unanswered (which would send nothing and strand the
    // caller); once the camera is up the call goes on.
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.capture_delay = 70_000;
    let accept = sim.accept(b, &call_id);
    sim.run_for(65_000);
    assert!(sim.result(b, accept).is_none(), "accept() resolved before the camera was up");
    assert!(sim.engine(a).has_live_call() && sim.engine(b).has_live_call());
    sim.run_for(10_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    assert_eq!(sim.engine(b).session(&call_id).unwrap().state, SessionState::Keeping);
    assert_eq!(sim.engine(a).session(&call_id).unwrap().state, SessionState::Keeping);
}

#[test]
fn capture_failure_on_call_returns_code_and_no_session() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    sim.fail_capture(a, Some(rtc_core::engine::CaptureError::NotFound));
    let cmd = sim.call(a, "bob", MediaType::Audio);
    sim.run_for(100);
    assert_eq!(sim.result(a, cmd), Some((error_code::GET_LOCAL_AUDIO_TRACK_ERROR, None)));
    // The app got nothing but the code; the invite that went out in parallel was cancelled.
    assert!(sim.events(a).is_empty());
    assert!(!sim.engine(a).has_live_call());
    let kinds: Vec<_> = sim.sent(a).iter().map(|s| s.content.object_name().unwrap()).collect();
    assert_eq!(kinds, ["RC:VCInvite", "RC:VCHangup"]);
    let bob = names(&sim, b);
    assert_eq!(bob[bob.len() - 2..], ["Close(18)", "Hungup(alice,18)"]);
}

#[test]
fn the_callee_rings_while_the_caller_camera_starts() {
    // rcall sends the invite while capturing: with a 300 ms camera start the callee rings after
    // two hops, yet the caller's app still sees CallLib's order (tracks, call() resolved,
    // then ringing).
    let mut sim = Sim::new();
    sim.capture_delay = 300;
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let t0 = sim.now();
    let cmd = sim.call(a, "bob", MediaType::AudioVideo);
    sim.run_for(1_000);
    let rang_at = sim.log(b).iter().find_map(|(t, l)| matches!(l, Logged::Event(CallEvent::Session { .. })).then_some(*t)).unwrap();
    assert!(rang_at - t0 <= 2 * sim.latency + 1, "callee rang after {} ms", rang_at - t0);
    let done_at = sim.log(a).iter().find_map(|(t, l)| matches!(l, Logged::Done { command, .. } if *command == cmd).then_some(*t)).unwrap();
    assert!(done_at - t0 >= 300);
    assert_eq!(names(&sim, a), ["Track(alice/Audio,nosession)", "Track(alice/Video,nosession)", "Ringing(bob)"]);
    let ringing_at = sim.log(a).iter().find_map(|(t, l)| matches!(l, Logged::Event(CallEvent::Ringing { .. })).then_some(*t)).unwrap();
    assert!(ringing_at >= done_at);
}

#[test]
fn accepted_on_another_device_ends_this_one_with_101() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b1 = sim.add_device("bob");
    let b2 = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    assert_eq!(sim.incoming(b2).as_deref(), Some(call_id.as_str()));
    sim.accept(b1, &call_id);
    sim.run_for(200);
    assert_eq!(names(&sim, b2), ["Session", "Close(101)"]);
    assert!(sim.sent(b2).iter().all(|s| s.content.object_name() != Some("RC:VCHangup")));
    assert_eq!(sim.engine(a).session(&call_id).unwrap().state, SessionState::Keeping);
}

#[test]
fn two_devices_answering_at_once_leave_the_first_in_the_call() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b1 = sim.add_device("bob");
    let b2 = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    // Both Accepts are on their way before either device hears of the other's.
    let first = sim.accept(b1, &call_id);
    sim.run_for(1);
    let second = sim.accept(b2, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b1, first).unwrap().0, error_code::SUCCESS);
    assert_eq!(sim.engine(b1).session(&call_id).unwrap().state, SessionState::Keeping);
    assert_eq!(sim.close_reason(b2, &call_id), Some(end_reason::ACCEPT_BY_OTHER_CLIENT));
    assert_ne!(sim.result(b2, second).unwrap().0, error_code::SUCCESS, "the second accept() does not succeed");
    // Alice stays connected to the first device only (she pre-connected to both while they rang).
    assert_eq!(sim.engine(a).session(&call_id).unwrap().state, SessionState::Keeping);
    let disconnected = |dev: &str| {
        sim.log(a).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Disconnect { peer, .. }) if peer.device_id == dev))
    };
    assert!(disconnected("dev2") && !disconnected("dev1"));
    // A Hangup from bob's other device (e.g. the server's, when that device goes) does not take
    // bob out of the call he is in through dev1.
    let hangup = sim.delivered(("bob", "dev2"), conversation_type::PRIVATE, "bob", &call_id, Body::Hangup(Hangup { reason: 7 }));
    sim.inject(a, Input::Signal(hangup));
    assert_eq!(sim.engine(a).session(&call_id).unwrap().state, SessionState::Keeping);
    // Closing dev2's tab: the server never counted it in the call, so nothing happens.
    sim.close_tab(b2);
    sim.run_for(10_000);
    assert!(sim.verdicts.is_empty());
    assert_eq!(sim.engine(b1).session(&call_id).unwrap().state, SessionState::Keeping);
}

#[test]
fn nothing_is_sent_for_a_call_after_it_ended() {
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    sim.accept(b, &call_id);
    sim.run_for(500);
    sim.hangup(a, &call_id);
    let ended_at = sim.now();
    sim.run_for(70_000);
    for dev in [a, b] {
        let closes = names(&sim, dev).iter().filter(|n| n.starts_with("Close")).count();
        assert_eq!(closes, 1);
        let late_sends = sim.log(dev).iter().filter(|(t, l)| *t > ended_at + 2 * sim.latency && matches!(l, Logged::Sent(_))).count();
        assert_eq!(late_sends, 0, "device {dev} sent after the end");
    }
}

#[test]
fn kicked_by_the_server_ends_with_23_and_the_peer_sees_33() {
    let (mut sim, a, b, call_id) = ringing(MediaType::Audio);
    sim.accept(b, &call_id);
    sim.run_for(300);
    sim.inject(b, Input::Kicked { call_id: call_id.clone() });
    sim.run_for(100);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::KICKED_BY_SERVER));
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_KICKED_BY_SERVER));
    // A kick for a call that is not live changes nothing.
    sim.inject(b, Input::Kicked { call_id: "nope".into() });
    assert_eq!(names(&sim, b).iter().filter(|n| n.starts_with("Close")).count(), 1);
}

#[test]
fn only_messages_someone_waits_for_ask_for_a_send_result() {
    // call(), accept() and hungup() resolve on the server's answer; ringing and the media
    // negotiation are fire-and-forget (`no_receipt` on the wire), and the call still connects.
    let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    let hangup = sim.command(a, rtc_core::engine::Command::Hangup { call_id: call_id.clone() });
    sim.run_for(1_000);
    assert_eq!(sim.result(a, hangup).unwrap().0, error_code::SUCCESS);
    let receipts = |dev: usize| -> Vec<(String, bool)> {
        sim.sent(dev).iter().map(|s| (s.content.object_name().unwrap().to_string(), s.receipt)).collect()
    };
    let (sa, sb) = (receipts(a), receipts(b));
    for (name, receipt) in sa.iter().chain(sb.iter()) {
        let expected = ["RC:VCInvite", "RC:VCAccept", "RC:VCHangup"].contains(&name.as_str());
        assert_eq!(*receipt, expected, "{name}: {sa:?} / {sb:?}");
        assert_eq!(
            sim.sent(a)
                .iter()
                .chain(sim.sent(b).iter())
                .find(|s| s.content.object_name() == Some(name.as_str()))
                .unwrap()
                .to_send_message()
                .no_receipt,
            !expected
        );
    }
    assert!(sb.iter().any(|(n, _)| n == "RC:VCRinging") && sa.iter().chain(sb.iter()).any(|(n, _)| n == "RCall:Media"));
}

// ----- ICE restarts -----------------------------------------------------------------------------

fn restarts_at(sim: &Sim, dev: usize) -> Vec<i64> {
    sim.restarts.iter().filter(|(_, d, _, _)| *d == dev).map(|(t, ..)| *t).collect()
}

/// Whether `dev` asked for keyframes at or after `since`.
fn key_frames_asked(sim: &Sim, dev: usize, since: i64) -> bool {
    sim.log(dev).iter().any(|(t, l)| *t >= since && matches!(l, Logged::Media(MediaAction::RequestKeyFrames { peer: Some(_), .. })))
}

/// An answered call; returns (sim, caller, callee, call_id). The caller offered the link.
/// `up`: both sides' browsers reported the link connected.
fn answered(up: bool) -> (Sim, usize, usize, String) {
    let (mut sim, a, b, call_id) = common::connected(MediaType::AudioVideo);
    if up {
        sim.link_state(a, &call_id, "bob", b, rtc_core::engine::LinkState::Connected);
        sim.link_state(b, &call_id, "alice", a, rtc_core::engine::LinkState::Connected);
    }
    (sim, a, b, call_id)
}

fn connected() -> (Sim, usize, usize, String) {
    answered(true)
}

#[test]
fn a_disconnected_link_gets_a_grace_period_then_its_offerer_restarts_ice() {
    use rtc_core::engine::{LinkState, RESTART_GRACE_MS, RESTART_RETRY_MS};
    let (mut sim, a, b, call_id) = connected();
    let t0 = sim.now();
    // Back within the grace period: nothing happens.
    sim.link_state(a, &call_id, "bob", b, LinkState::Disconnected);
    sim.run_for(RESTART_GRACE_MS - 500);
    sim.link_state(a, &call_id, "bob", b, LinkState::Connected);
    sim.run_for(10_000);
    assert!(restarts_at(&sim, a).is_empty());
    // Down for longer: one restart after the grace period, repeated while it stays down.
    let t1 = sim.now();
    sim.link_state(a, &call_id, "bob", b, LinkState::Disconnected);
    sim.run_for(RESTART_GRACE_MS + 2 * RESTART_RETRY_MS + 100);
    assert_eq!(
        restarts_at(&sim, a),
        [t1 + RESTART_GRACE_MS, t1 + RESTART_GRACE_MS + RESTART_RETRY_MS, t1 + RESTART_GRACE_MS + 2 * RESTART_RETRY_MS]
    );
    // Each restart offer reached the callee, which answered it; no new tracks, no new events.
    let offers = sim.sent(a).iter().filter(|s| format!("{:?}", s.content.body).contains("restart offer")).count();
    let answers_after = sim.sent(b).iter().filter(|s| s.content.object_name() == Some("RCall:Media")).count();
    assert_eq!(offers, 3);
    assert!(answers_after >= 4, "b answered the first offer and the three restarts ({answers_after})");
    assert_eq!(names(&sim, b).iter().filter(|n| n.starts_with("Track(alice/")).count(), 2);
    // Connected again: a keyframe is asked for (the decoder lost its references), no more
    // restarts, and the call goes on.
    let t2 = sim.now();
    sim.link_state(a, &call_id, "bob", b, LinkState::Connected);
    assert!(key_frames_asked(&sim, a, t2), "{:?}", sim.log(a).last());
    let n = restarts_at(&sim, a).len();
    sim.run_for(30_000);
    assert_eq!(restarts_at(&sim, a).len(), n);
    assert_eq!(sim.engine(b).session(&call_id).unwrap().state, SessionState::Keeping);
    assert!(t0 < t1);
}

#[test]
fn a_failed_link_restarts_at_once_only_from_its_offerer_and_stops_with_the_call() {
    use rtc_core::engine::{LinkState, RESTART_RETRY_MS};
    let (mut sim, a, b, call_id) = connected();
    // The answering side never restarts: it waits for the offerer; it asks for a keyframe
    // once its link is back.
    sim.link_state(b, &call_id, "alice", a, LinkState::Failed);
    sim.run_for(20_000);
    assert!(restarts_at(&sim, b).is_empty());
    let back = sim.now();
    sim.link_state(b, &call_id, "alice", a, LinkState::Connected);
    assert!(key_frames_asked(&sim, b, back));
    let count = |sim: &Sim| {
        sim.log(b).iter().filter(|(_, l)| matches!(l, Logged::Media(MediaAction::RequestKeyFrames { peer: Some(_), .. }))).count()
    };
    let n = count(&sim);
    sim.link_state(b, &call_id, "alice", a, LinkState::Connected);
    assert_eq!(count(&sim), n, "only after an outage");
    let t = sim.now();
    sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(RESTART_RETRY_MS / 2);
    assert_eq!(restarts_at(&sim, a), [t]);
    // The call ends: no restarts after that.
    sim.hangup(b, &call_id);
    sim.run_for(1_000);
    assert!(sim.close_reason(a, &call_id).is_some());
    sim.run_for(4 * RESTART_RETRY_MS);
    assert_eq!(restarts_at(&sim, a), [t]);
}

#[test]
fn a_link_that_never_connected_is_not_restarted() {
    // Its first offer/answer may still be under way; a restart offer would cross the answer.
    use rtc_core::engine::{LinkState, RESTART_RETRY_MS};
    let (mut sim, a, b, call_id) = answered(false);
    sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(3 * RESTART_RETRY_MS);
    assert!(restarts_at(&sim, a).is_empty(), "never connected: left alone");
    sim.link_state(a, &call_id, "bob", b, LinkState::Connected);
    sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(100);
    assert_eq!(restarts_at(&sim, a).len(), 1, "connected once: restarted");
}

#[test]
fn hanging_up_during_accept_rejects_or_hangs_up_never_cancels() {
    for (wait, own, seen) in [(5, end_reason::REJECT, end_reason::REMOTE_REJECT), (500, end_reason::HANGUP, end_reason::REMOTE_HANGUP)] {
        let (mut sim, a, b, call_id) = ringing(MediaType::AudioVideo);
        sim.capture_delay = 2_000; // a camera prompt
        sim.accept(b, &call_id);
        // Before the server took the Accept: a rejection; after: a hangup (the caller has it).
        sim.run_for(wait);
        sim.hangup(b, &call_id);
        sim.run_for(100);
        assert_eq!(sim.close_reason(b, &call_id), Some(own), "after {wait} ms");
        assert_eq!(sim.close_reason(a, &call_id), Some(seen), "after {wait} ms");
    }
}
