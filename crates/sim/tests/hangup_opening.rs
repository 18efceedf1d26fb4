//! A call hung up while the caller's camera is still opening (`call()` not resolved yet): the
//! callees stop ringing at once, `call()` settles without a session, and the media that lands
//! afterwards is released without ever reaching a peer connection.

use rcall_sim::{Logged, Sim};
use rtc_core::engine::{CallEvent, Input, MediaAction, MediaEvent, TrackKind};
use rtc_core::proto::call_content::Body;
use rtc_core::types::{end_reason, error_code, MediaType, SessionState};

const CAMERA_OPENS_AFTER: i64 = 5_000;

/// A calls B with a camera that takes [`CAMERA_OPENS_AFTER`]; after 200 ms B rings and A's
/// `call()` is still pending. Returns (sim, a, b, call() command, call id).
fn opening() -> (Sim, usize, usize, u64, String) {
    let mut sim = Sim::new();
    sim.capture_delay = CAMERA_OPENS_AFTER;
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let cmd = sim.call(a, "bob", MediaType::AudioVideo);
    let call_id = sim.sent(a)[0].content.call_id.clone();
    sim.run_for(200);
    assert!(sim.result(a, cmd).is_none(), "call() resolved before the camera opened");
    assert_eq!(sim.incoming(b).as_deref(), Some(call_id.as_str()));
    (sim, a, b, cmd, call_id)
}

fn hangup_reasons(sim: &Sim, dev: usize) -> Vec<i32> {
    sim.sent(dev)
        .iter()
        .filter_map(|s| match &s.content.body {
            Some(Body::Hangup(h)) => Some(h.reason),
            _ => None,
        })
        .collect()
}

#[test]
fn hangup_while_the_camera_opens_cancels_at_once_and_releases_the_late_media() {
    let (mut sim, a, b, call_cmd, call_id) = opening();
    let hung_up_at = sim.now();
    let hangup = sim.hangup(a, &call_id);

    // At once, before any more time passes: call() settles without a session, a Hangup(1) is out.
    assert_eq!(sim.result(a, call_cmd), Some((error_code::SEND_MSG_ERROR, None)));
    assert_eq!(hangup_reasons(&sim, a), [end_reason::CANCEL]);
    let hangup_msg = sim.sent(a).into_iter().find(|s| matches!(s.content.body, Some(Body::Hangup(_)))).unwrap().clone();
    assert_eq!(hangup_msg.directional_user_ids, ["bob".to_string()]);
    assert!(!sim.engine(a).has_live_call());
    assert_eq!(sim.engine(a).session(&call_id).unwrap().state, SessionState::End);
    assert!(sim.engine(a).live_call_ids().is_empty());

    // The callee stops ringing as soon as the Hangup arrives (C.13.2 order).
    sim.run_for(2 * sim.latency + 1);
    assert_eq!(sim.timeline(b), ["Session", "Close(11)", "Hungup(alice,11)"]);
    assert_eq!(sim.result(a, hangup).map(|r| r.0), Some(error_code::SUCCESS));

    // The camera opens later: its tracks are released, never announced nor attached.
    sim.run_for(CAMERA_OPENS_AFTER + 1_000);
    let log = sim.log(a);
    let captured_at = hung_up_at - 200 + CAMERA_OPENS_AFTER;
    let released_after_capture =
        log.iter().any(|(t, l)| *t >= captured_at && matches!(l, Logged::Media(MediaAction::Release { call_id: c }) if *c == call_id));
    assert!(released_after_capture, "the late capture was not released: {log:?}");
    let linked = log.iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Connect { .. } | MediaAction::Attach { .. })));
    assert!(!linked, "a peer connection was made for a cancelled call");
    // The app of A heard nothing: no tracks (they were never announced), no session to close.
    assert!(sim.events(a).is_empty(), "{:?}", sim.timeline(a));
    assert_eq!(hangup_reasons(&sim, a), [end_reason::CANCEL], "sent more than one Hangup");
    assert!(!sim.engine(b).has_live_call());
}

#[test]
fn media_landing_after_the_hangup_is_only_released() {
    // The media layer answers for a cancelled call with tracks (or an error): either way the
    // engine hands nothing to the app and asks for the tracks to be stopped.
    let (mut sim, a, _b, _cmd, call_id) = opening();
    sim.hangup(a, &call_id);
    let before = sim.log(a).len();
    sim.inject(a, Input::Media(MediaEvent::Captured { call_id: call_id.clone(), result: Ok(vec![TrackKind::Audio]) }));
    let after: Vec<_> = sim.log(a)[before..].iter().map(|(_, l)| l.clone()).collect();
    assert!(matches!(after.as_slice(), [Logged::Media(MediaAction::Release { call_id: c })] if *c == call_id), "{after:?}");
    assert!(!sim.events(a).iter().any(|e| matches!(e, CallEvent::TrackReady { .. })));
}

#[test]
fn hangup_after_the_server_refused_the_invite_sends_nothing() {
    let mut sim = Sim::new();
    sim.capture_delay = CAMERA_OPENS_AFTER;
    let a = sim.add_device("alice");
    let _b = sim.add_device("bob");
    let cmd = sim.call(a, "bob", MediaType::Audio);
    let invite = sim.sent(a)[0].clone();
    // The server refuses the invite (blacklisted) before its real answer gets here.
    let server_time = sim.now();
    sim.inject(a, Input::SendResult { request_id: invite.request_id, server_time, result: Err(405) });
    assert!(sim.result(a, cmd).is_none(), "call() waits for the camera as well");
    let hangup = sim.hangup(a, &invite.content.call_id);
    assert_eq!(sim.result(a, cmd), Some((error_code::REJECTED_BY_BLACKLIST, None)));
    assert_eq!(sim.result(a, hangup).map(|r| r.0), Some(error_code::SUCCESS));
    assert!(hangup_reasons(&sim, a).is_empty(), "nobody rings, so nothing is cancelled");
    assert!(!sim.engine(a).has_live_call());
}

#[test]
fn hangup_while_disconnected_and_the_camera_opens_is_queued_and_settles_at_once() {
    let (mut sim, a, b, call_cmd, call_id) = opening();
    assert!(sim.drop_connection(a, 2_000));
    sim.run_for(10);
    let hangup = sim.hangup(a, &call_id);
    assert_eq!(sim.result(a, call_cmd), Some((error_code::SEND_MSG_ERROR, None)));
    assert_eq!(sim.result(a, hangup).map(|r| r.0), Some(error_code::SUCCESS));
    // The queued Hangup goes out after the reconnect; the callee stops ringing then.
    sim.run_for(3_000);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::REMOTE_CANCEL));
}

#[test]
fn hangup_of_a_call_merged_while_the_camera_opens_settles_its_call() {
    // Crossing calls merged while both cameras open: the side whose call lost holds the merged
    // call, its call() still pending. Hanging up (disconnect, pagehide) must settle that call().
    let mut sim = Sim::new();
    sim.capture_delay = CAMERA_OPENS_AFTER;
    let (a, b) = (sim.add_device("alice"), sim.add_device("bob"));
    let from_a = sim.call(a, "bob", MediaType::AudioVideo);
    let from_b = sim.call(b, "alice", MediaType::AudioVideo);
    sim.run_for(200);
    let merged = |dev| sim.events(dev).iter().any(|e| matches!(e, CallEvent::Merged { .. }));
    let (loser, loser_cmd, winner) = if merged(a) { (a, from_a, b) } else { (b, from_b, a) };
    assert!(sim.result(loser, loser_cmd).is_none());
    let live = sim.engine(loser).live_call_ids();
    assert_eq!(live.len(), 1);
    sim.hangup(loser, &live[0]);
    assert_eq!(sim.result(loser, loser_cmd), Some((error_code::SEND_MSG_ERROR, None)));
    assert!(!sim.engine(loser).has_live_call());
    sim.run_for(CAMERA_OPENS_AFTER + 1_000);
    assert!(!sim.engine(winner).has_live_call(), "{:?}", sim.timeline(winner));
    let linked = sim.log(loser).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Attach { .. })));
    assert!(!linked);
}
