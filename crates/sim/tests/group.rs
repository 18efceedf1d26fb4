//! Group calls, mid-call invites, downgrade, crossing calls and offline records (spec C.6–C.13,
//! F) on the call simulator's virtual clock.

use rcall_sim::{DeviceId, Logged, Sim};
use rtc_core::engine::{CallEvent, Command, Input, MediaAction, Received, TrackKind, RING_TIMEOUT_MS};
use rtc_core::proto::{self, call_content::Body, conversation_type};
use rtc_core::types::{end_reason, error_code, MediaType, SessionState, UserState};

fn connects(sim: &Sim, dev: DeviceId) -> Vec<(String, bool)> {
    sim.log(dev)
        .iter()
        .filter_map(|(_, l)| match l {
            Logged::Media(MediaAction::Connect { peer, offerer, .. }) => Some((peer.user_id.clone(), *offerer)),
            _ => None,
        })
        .collect()
}

fn has(sim: &Sim, dev: DeviceId, line: &str) -> bool {
    sim.timeline(dev).iter().any(|l| l == line)
}

fn count(sim: &Sim, dev: DeviceId, prefix: &str) -> usize {
    sim.timeline(dev).iter().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn three_way_group_call_forms_a_mesh_and_survives_one_leaving() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
    let invite = sim.sent(a)[0].clone();
    assert_eq!(invite.conversation_type, conversation_type::GROUP);
    assert_eq!(invite.target_id, "g");
    assert_eq!(invite.directional_user_ids, ["b", "c"]);
    // Every invitee rings everyone else (C.13.6 step 2).
    assert!(has(&sim, a, "Ringing(b)") && has(&sim, a, "Ringing(c)"));
    assert!(has(&sim, b, "Ringing(c)") && has(&sim, c, "Ringing(b)"));

    sim.accept(b, &id);
    sim.run_for(200);
    assert!(has(&sim, a, "Accept(b)") && has(&sim, c, "Accept(b)"));
    // C, still ringing, does not become KEEPING itself (legacy bug).
    assert_eq!(sim.engine(c).session(&id).unwrap().users.iter().find(|u| u.user_id == "c").unwrap().state, UserState::Waiting);
    sim.accept(c, &id);
    sim.run_for(500);
    // Mesh: the earlier member offers to the later one; nobody offers twice.
    assert_eq!(connects(&sim, a), [("b".to_string(), true), ("c".to_string(), true)]);
    assert_eq!(connects(&sim, b), [("a".to_string(), false), ("c".to_string(), true)]);
    assert_eq!(connects(&sim, c), [("a".to_string(), false), ("b".to_string(), false)]);
    for (dev, others) in [(a, ["b", "c"]), (b, ["a", "c"]), (c, ["a", "b"])] {
        for o in others {
            assert!(has(&sim, dev, &format!("Track({o}/Video)")), "{dev} sees {o}: {:?}", sim.timeline(dev));
        }
    }
    // B leaves: A and C continue.
    sim.hangup(b, &id);
    sim.run_for(100);
    assert!(has(&sim, a, "Hungup(b,13)") && has(&sim, c, "Hungup(b,13)"));
    assert_eq!(sim.engine(a).session(&id).unwrap().state, SessionState::Keeping);
    assert_eq!(sim.close_reason(b, &id), Some(end_reason::HANGUP));
    // C leaves: A, the last one, closes with REMOTE_HANGUP.
    sim.hangup(c, &id);
    sim.run_for(100);
    assert_eq!(sim.close_reason(a, &id), Some(end_reason::REMOTE_HANGUP));
    let a_line = sim.timeline(a);
    assert_eq!(a_line[a_line.len() - 2..], ["Hungup(c,13)", "Close(13)"]);
}

#[test]
fn inviter_leaving_before_anyone_answers_ends_the_group_call() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
    sim.hangup(a, &id);
    sim.run_for(100);
    assert_eq!(sim.close_reason(a, &id), Some(end_reason::CANCEL));
    assert_eq!(sim.close_reason(b, &id), Some(end_reason::REMOTE_CANCEL));
    assert_eq!(sim.close_reason(c, &id), Some(end_reason::REMOTE_CANCEL));
}

#[test]
fn members_continue_after_the_caller_leaves_a_connected_group_call() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.accept(c, &id);
    sim.run_for(500);
    sim.hangup(a, &id);
    sim.run_for(100);
    for dev in [b, c] {
        assert!(has(&sim, dev, "Hungup(a,13)"));
        assert_eq!(sim.engine(dev).session(&id).unwrap().state, SessionState::Keeping);
    }
}

#[test]
fn invite_mid_call_adds_a_member_who_then_joins_the_mesh() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b"], MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.run_for(300);
    let cmd = sim.command(
        b,
        Command::Invite {
            call_id: id.clone(),
            user_ids: vec!["c".into(), "a".into()],
            extra: "hi".into(),
            push_title: None,
            push_content: None,
        },
    );
    sim.run_for(100);
    assert_eq!(sim.result(b, cmd).unwrap().0, error_code::SUCCESS);
    let modify = sim.sent(b).into_iter().find(|s| s.content.object_name() == Some("RC:VCModifyMem")).unwrap().clone();
    match &modify.content.body {
        Some(Body::ModifyMem(m)) => {
            assert_eq!(m.caller, "a");
            assert_eq!(m.modify_mem_type, 1);
            let statuses: Vec<(&str, i32)> = m.existed_user_pofiles.iter().map(|p| (p.user_id.as_str(), p.call_status)).collect();
            assert_eq!(statuses, [("a", 4), ("b", 4), ("c", 3)]);
            assert_eq!(m.invite_user_ids, ["a", "c"]);
        }
        other => panic!("{other:?}"),
    }
    // Existing members hear about it; the inviter does not; the invitee rings.
    assert!(has(&sim, a, "MemberModify(b,[c])"));
    assert_eq!(count(&sim, b, "MemberModify"), 0);
    assert!(sim.events(c).iter().any(|e| matches!(e, CallEvent::Session { extra, .. } if extra == "hi")));
    assert_eq!(sim.engine(c).session(&id).unwrap().caller_id, "a");
    assert!(has(&sim, a, "Ringing(c)") && has(&sim, b, "Ringing(c)"));
    sim.accept(c, &id);
    sim.run_for(500);
    assert!(has(&sim, c, "Track(a/Video)") && has(&sim, c, "Track(b/Video)"));
    assert_eq!(connects(&sim, c), [("a".to_string(), false), ("b".to_string(), false)]);

    // Everyone invited is already in: PARAM_ERROR, nothing sent (5.2.8 decision).
    let sent_before = sim.sent(a).len();
    let again = sim.invite(a, &id, &["b", "c"]);
    sim.run_for(50);
    assert_eq!(sim.result(a, again).unwrap().0, error_code::PARAM_ERROR);
    assert_eq!(sim.sent(a).len(), sent_before);
}

#[test]
fn invite_on_a_one_to_one_call_is_refused() {
    let mut sim = Sim::new();
    let (a, _b) = (sim.add_device("a"), sim.add_device("b"));
    let id = sim.dial(a, "b", MediaType::Audio);
    let inv = sim.invite(a, &id, &["c"]);
    sim.run_for(10);
    assert_eq!(sim.result(a, inv).unwrap().0, error_code::CONVERSATION_NOT_GROUP_ERROR);
}

#[test]
fn an_invitee_timing_out_leaves_the_others_in_the_call() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b"], MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.run_for(300);
    sim.invite(a, &id, &["c"]);
    sim.run_for(RING_TIMEOUT_MS + 1_000);
    // 5.0.4 / 5.2.3 / 5.2.5: the others see C time out once, never "A hung up".
    for dev in [a, b] {
        assert_eq!(count(&sim, dev, "Hungup(c,15)"), 1, "{:?}", sim.timeline(dev));
        assert_eq!(count(&sim, dev, "Hungup(a"), 0);
        assert_eq!(sim.engine(dev).session(&id).unwrap().state, SessionState::Keeping);
    }
    assert_eq!(sim.close_reason(c, &id), Some(end_reason::NO_RESPONSE));
}

#[test]
fn ring_timers_are_per_user_and_replaced_not_stacked() {
    // 5.1.1: invite C, C times out, invite D, then C again: D's timeout must not end C.
    let mut sim = Sim::new();
    let (a, b) = (sim.add_device("a"), sim.add_device("b"));
    let _c = sim.add_device("c");
    let _d = sim.add_device("d");
    let id = sim.dial_group(a, "g", &["b"], MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.run_for(300);
    let invite = |sim: &mut Sim, who: &str| sim.invite(a, &id, &[who]);
    invite(&mut sim, "c");
    sim.run_for(RING_TIMEOUT_MS + 10_000);
    invite(&mut sim, "d");
    sim.run_for(20_000);
    invite(&mut sim, "c");
    sim.run_for(RING_TIMEOUT_MS - 20_000 + 1_000); // D times out now, C not yet
    assert_eq!(count(&sim, a, "Hungup(d,15)"), 1);
    assert_eq!(count(&sim, a, "Hungup(c,15)"), 1);
    assert_eq!(sim.engine(a).session(&id).unwrap().users.iter().find(|u| u.user_id == "c").unwrap().state, UserState::Waiting);
    sim.run_for(20_000);
    assert_eq!(count(&sim, a, "Hungup(c,15)"), 2);
    assert_eq!(count(&sim, b, "Hungup(c,15)"), 2, "5.2.5: the second timeout is reported too");
}

#[test]
fn descend_ability_drops_video_everywhere() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add_device("a"), sim.add_device("b"));
    let id = sim.dial(a, "b", MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.run_for(300);
    let down = sim.command(b, Command::DescendAbility { call_id: id.clone() });
    sim.run_for(100);
    assert_eq!(sim.result(b, down).unwrap().0, error_code::SUCCESS);
    assert!(has(&sim, a, "MediaModify(b,1)"));
    assert_eq!(count(&sim, b, "MediaModify"), 0);
    for dev in [a, b] {
        assert_eq!(sim.engine(dev).session(&id).unwrap().media_type, MediaType::Audio);
        assert!(sim.log(dev).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::DropVideo { .. }))));
    }
    sim.hangup(a, &id);
    sim.run_for(100);
    let summary = sim.events(b).into_iter().find_map(|e| match e {
        CallEvent::SessionClosed { summary, .. } => Some(summary.clone()),
        _ => None,
    });
    assert_eq!(summary.unwrap().media_type, MediaType::Audio);
}

#[test]
fn crossing_calls_merge_into_one_connected_call() {
    // Bob dials 0–19 ms after Alice: his invite is in flight, or already acknowledged, when
    // hers arrives; the call ids decide which survives, whoever dialled first.
    // (Bob must dial before Alice's invite reaches him: 2 hops of 10 ms.)
    for offset in [0, 1, 3, 7, 12, 19] {
        crossing(offset, 5);
        // Cameras that take 200 ms: the invites cross while both are still capturing.
        crossing(offset, 200);
    }
}

fn crossing(offset: i64, capture_delay: i64) {
    let mut sim = Sim::new();
    sim.capture_delay = capture_delay;
    let (a, b) = (sim.add_device("alice"), sim.add_device("bob"));
    let from_a = sim.call(a, "bob", MediaType::AudioVideo);
    sim.run_for(offset);
    let from_b = sim.call(b, "alice", MediaType::AudioVideo);
    sim.run_for(1_000);
    let ida = sim.result(a, from_a).unwrap().1.unwrap();
    let idb = sim.result(b, from_b).unwrap().1.unwrap();
    // Both call()s resolve with the one surviving call.
    assert_eq!(ida, idb);
    let winner = ida;
    let (loser_dev, winner_dev) = if count(&sim, a, "Merged") == 1 { (a, b) } else { (b, a) };
    for dev in [a, b] {
        let view = sim.engine(dev).session(&winner).unwrap();
        assert_eq!(view.state, SessionState::Keeping, "{:?}", sim.timeline(dev));
        assert_eq!(count(&sim, dev, "Close"), 0, "{:?}", sim.timeline(dev));
        assert_eq!(count(&sim, dev, "Session"), 0);
        assert!(!sim.engine(dev).has_live_call() || sim.engine(dev).session(&winner).is_some());
    }
    assert_eq!(count(&sim, loser_dev, "Merged"), 1);
    assert!(has(&sim, winner_dev, &format!("Accept({})", sim.engine(loser_dev).self_id())));
    assert!(has(&sim, a, "Track(bob/Video)") && has(&sim, b, "Track(alice/Video)"));
    // Local tracks were announced once, inside call().
    assert_eq!(count(&sim, loser_dev, &format!("Track({}/Video", sim.engine(loser_dev).self_id())), 1);
}

#[test]
fn hung_up_on_another_device_ends_this_one_with_102() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let (b1, b2) = (sim.add_device("bob"), sim.add_device("bob"));
    let id = sim.dial(a, "bob", MediaType::Audio);
    sim.hangup(b1, &id);
    sim.run_for(100);
    assert_eq!(sim.timeline(b2), ["Session", "Close(102)"]);
    assert_eq!(sim.close_reason(a, &id), Some(end_reason::REMOTE_REJECT));
    assert!(sim.sent(b2).iter().all(|s| s.content.object_name() != Some("RC:VCHangup")));
}

// ----- offline records -------------------------------------------------------------------------

fn offline(sim: &Sim, from: &str, call_id: &str, sent_ago: i64, body: Body) -> Input {
    Input::Signal(Received {
        sent_time: sim.now() - sent_ago,
        offline: true,
        ..sim.delivered((from, "x"), conversation_type::PRIVATE, from, call_id, body)
    })
}

fn invite_body(to: &str) -> Body {
    Body::Invite(proto::Invite { engine_type: 4, media_type: 2, invite_user_ids: vec![to.into()], ..Default::default() })
}

#[test]
fn offline_batch_becomes_live_calls_and_records() {
    let mut sim = Sim::new();
    let b = sim.add_device("bob");
    // Still ringing (10 s old): a live call with 50 s left, plus a record.
    let m = offline(&sim, "alice", "c1", 10_000, invite_body("bob"));
    sim.inject(b, m);
    // Too old (2 min): a record only.
    let m = offline(&sim, "carol", "c2", 120_000, invite_body("bob"));
    sim.inject(b, m);
    // Cancelled while offline: a record with the mapped reason, no call.
    let m = offline(&sim, "dave", "c3", 20_000, invite_body("bob"));
    sim.inject(b, m);
    let m = offline(&sim, "dave", "c3", 15_000, Body::Hangup(proto::Hangup { reason: 1 }));
    sim.inject(b, m);
    // Orphan hangup of an unknown call: dropped.
    let m = offline(&sim, "erin", "c4", 5_000, Body::Hangup(proto::Hangup { reason: 3 }));
    sim.inject(b, m);
    assert!(sim.events(b).is_empty(), "offline messages wait for SyncDone");
    sim.inject(b, Input::SyncDone);
    assert_eq!(sim.timeline(b), ["Session", "OfflineRecord(alice,5)", "OfflineRecord(carol,5)", "OfflineRecord(dave,11)"]);
    let t0 = sim.now();
    sim.run_until(t0 + 50_000 - rtc_core::engine::ANSWER_MARGIN_MS - 20);
    assert!(sim.close_reason(b, "c1").is_none());
    sim.run_for(100);
    assert_eq!(sim.close_reason(b, "c1"), Some(end_reason::NO_RESPONSE));
}

#[test]
fn offline_record_of_a_call_taken_elsewhere_has_its_duration() {
    let mut sim = Sim::new();
    let b = sim.add_device("bob");
    let msgs = [
        offline(&sim, "alice", "c9", 50_000, invite_body("bob")),
        // Bob's other device accepted and later hung up.
        offline(&sim, "bob", "c9", 40_000, Body::Accept(proto::Accept { media_type: 2 })),
        offline(&sim, "bob", "c9", 10_000, Body::Hangup(proto::Hangup { reason: 3 })),
    ];
    for m in msgs {
        sim.inject(b, m);
    }
    sim.inject(b, Input::SyncDone);
    let rec = sim.events(b).into_iter().find_map(|e| match e {
        CallEvent::OfflineRecord(r) => Some(r.clone()),
        _ => None,
    });
    let rec = rec.expect("one record");
    assert_eq!((rec.end_reason, rec.duration, rec.inviter_id.as_str()), (3, 30_000, "alice"));
    assert_eq!(rec.media_type, MediaType::AudioVideo);
    assert_eq!(count(&sim, b, "Session"), 0);
}

// ----- pre-connected media --------------------------------------------------------------------

fn media_actions(sim: &Sim, dev: DeviceId) -> Vec<String> {
    sim.log(dev)
        .iter()
        .filter_map(|(_, l)| match l {
            Logged::Media(MediaAction::Capture { .. }) => Some("Capture".to_string()),
            Logged::Media(MediaAction::Connect { peer, offerer, attach, .. }) => Some(format!(
                "Connect({}/{},{},{})",
                peer.user_id,
                peer.device_id,
                if *offerer { "offer" } else { "answer" },
                if *attach { "attached" } else { "prepared" }
            )),
            Logged::Media(MediaAction::Attach { peer, .. }) => {
                Some(format!("Attach({})", peer.as_ref().map_or("all".to_string(), |p| format!("{}/{}", p.user_id, p.device_id))))
            }
            Logged::Media(MediaAction::RequestKeyFrames { peer, .. }) => {
                Some(format!("KeyFrames({})", peer.as_ref().map_or("all".to_string(), |p| format!("{}/{}", p.user_id, p.device_id))))
            }
            Logged::Media(MediaAction::Disconnect { peer, .. }) => Some(format!("Disconnect({}/{})", peer.user_id, peer.device_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn links_are_ready_while_ringing_and_carry_media_only_after_accept() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let (b1, b2) = (sim.add_device("bob"), sim.add_device("bob"));
    let cmd = sim.call(a, "bob", MediaType::AudioVideo);
    sim.run_for(2_000);
    let id = sim.result(a, cmd).unwrap().1.unwrap();
    // While ringing: Alice pre-connects to both of Bob's devices; nothing is captured on Bob's
    // side and no remote track reaches either app.
    assert_eq!(media_actions(&sim, a), ["Capture", "Connect(bob/dev1,offer,prepared)", "Connect(bob/dev2,offer,prepared)"]);
    assert_eq!(media_actions(&sim, b1), ["Connect(alice/dev0,answer,prepared)"]);
    for dev in [a, b1, b2] {
        assert!(sim.timeline(dev).iter().all(|l| !l.starts_with("Track(alice/") || dev == a), "{:?}", sim.timeline(dev));
        assert!(sim.timeline(dev).iter().all(|l| !l.starts_with("Track(bob/")));
    }
    sim.accept(b1, &id);
    sim.run_for(500);
    // Accepting asks Alice for a keyframe (she starts sending as soon as she hears of it),
    // captures and attaches; Alice asks the device that answered for a keyframe, attaches to
    // it and drops the other one, which closes with 101.
    assert_eq!(media_actions(&sim, b1), ["Connect(alice/dev0,answer,prepared)", "KeyFrames(all)", "Capture", "Attach(all)"]);
    assert_eq!(media_actions(&sim, a)[3..], ["Disconnect(bob/dev2)", "KeyFrames(bob/dev1)", "Attach(bob/dev1)"]);
    assert_eq!(sim.close_reason(b2, &id), Some(end_reason::ACCEPT_BY_OTHER_CLIENT));
    let alice = sim.timeline(a);
    let accept_at = alice.iter().position(|l| l == "Accept(bob)").unwrap();
    assert!(alice[accept_at + 1..].contains(&"Track(bob/Video)".to_string()), "{alice:?}");
    assert!(has(&sim, b1, "Track(alice/Video)"));
}

#[test]
fn mute_state_reaches_everyone_including_late_joiners() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
    // Video cannot be switched before the call is joined (no track published yet).
    let early = sim.command(b, Command::MuteTrack { call_id: id.clone(), kind: TrackKind::Video, muted: true });
    sim.run_for(10);
    assert_eq!(sim.result(b, early).unwrap().0, error_code::MISSING_VIDEO_TRACK_ERROR);
    sim.accept(b, &id);
    sim.run_for(300);
    let mute = sim.command(b, Command::MuteTrack { call_id: id.clone(), kind: TrackKind::Audio, muted: true });
    let off = sim.command(b, Command::MuteTrack { call_id: id.clone(), kind: TrackKind::Video, muted: true });
    sim.run_for(100);
    assert_eq!(sim.result(b, mute).unwrap().0, error_code::SUCCESS);
    assert_eq!(sim.result(b, off).unwrap().0, error_code::SUCCESS);
    assert!(has(&sim, a, "AudioMute(b,muted)") && has(&sim, a, "VideoMute(b,muted)"));
    // Camera-off mode released the camera.
    assert!(sim.log(b).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::DropVideo { .. }))));
    // C joins later and still learns B's state.
    sim.accept(c, &id);
    sim.run_for(300);
    assert!(has(&sim, c, "AudioMute(b,muted)") && has(&sim, c, "VideoMute(b,muted)"), "{:?}", sim.timeline(c));
    // Enabling video captures a new camera track, announces it, tells the others.
    let on = sim.command(b, Command::MuteTrack { call_id: id.clone(), kind: TrackKind::Video, muted: false });
    sim.run_for(100);
    assert_eq!(sim.result(b, on).unwrap().0, error_code::SUCCESS);
    assert!(sim.log(b).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::CaptureCamera { .. }))));
    assert_eq!(count(&sim, b, "Track(b/Video)"), 2);
    assert!(has(&sim, a, "VideoMute(b,unmuted)") && has(&sim, c, "VideoMute(b,unmuted)"));
    // A failed camera capture is 53302.
    sim.command(b, Command::MuteTrack { call_id: id.clone(), kind: TrackKind::Video, muted: true });
    sim.run_for(100);
    sim.fail_capture(b, Some(rtc_core::engine::CaptureError::NotFound));
    let fail = sim.command(b, Command::MuteTrack { call_id: id.clone(), kind: TrackKind::Video, muted: false });
    sim.run_for(100);
    assert_eq!(sim.result(b, fail).unwrap().0, error_code::GET_LOCAL_VIDEO_TRACK_ERROR);
    // Audio calls have no camera.
    let mut sim = Sim::new();
    let (a, b) = (sim.add_device("a"), sim.add_device("b"));
    let id = sim.dial(a, "b", MediaType::Audio);
    sim.accept(b, &id);
    sim.run_for(300);
    let v = sim.command(a, Command::MuteTrack { call_id: id, kind: TrackKind::Video, muted: true });
    sim.run_for(10);
    assert_eq!(sim.result(a, v).unwrap().0, error_code::MISSING_VIDEO_TRACK_ERROR);
}

#[test]
fn changing_the_microphone_announces_the_new_track() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add_device("a"), sim.add_device("b"));
    let id = sim.dial(a, "b", MediaType::Audio);
    // Not in the call yet: nothing to change.
    let early = sim.command(b, Command::ChangeMicrophone { call_id: id.clone() });
    sim.run_for(10);
    assert_eq!(sim.result(b, early).unwrap().0, error_code::PARAM_ERROR);
    sim.accept(b, &id);
    sim.run_for(300);
    let change = sim.command(a, Command::ChangeMicrophone { call_id: id.clone() });
    sim.run_for(100);
    assert_eq!(sim.result(a, change).unwrap().0, error_code::SUCCESS);
    assert_eq!(count(&sim, a, "Track(a/Audio"), 2);
    assert!(sim.log(a).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::CaptureMicrophone { .. }))));
    sim.fail_capture(a, Some(rtc_core::engine::CaptureError::NotFound));
    let fail = sim.command(a, Command::ChangeMicrophone { call_id: id });
    sim.run_for(100);
    assert_eq!(sim.result(a, fail).unwrap().0, error_code::GET_LOCAL_AUDIO_TRACK_ERROR);
}

#[test]
fn members_accepting_at_once_while_their_cameras_start_still_connect_exactly_once() {
    // B and C accept at the same moment; each camera takes longer to start than the other's
    // Accept takes to arrive. The one whose Accept the server took first must still offer,
    // without tracks until its camera is up — else nobody connects B and C.
    for capture_delay in [0, 20, 150, 800] {
        let mut sim = Sim::new();
        let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
        let id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
        sim.capture_delay = capture_delay;
        sim.accept(b, &id);
        sim.accept(c, &id);
        sim.run_for(2_000);
        let bc = connects(&sim, b).into_iter().filter(|(p, _)| p == "c").collect::<Vec<_>>();
        let cb = connects(&sim, c).into_iter().filter(|(p, _)| p == "b").collect::<Vec<_>>();
        assert_eq!(bc.len() + cb.len(), 2, "delay {capture_delay}: one link each side: {bc:?} / {cb:?}");
        assert_eq!(bc.iter().chain(cb.iter()).filter(|(_, offerer)| *offerer).count(), 1, "delay {capture_delay}: exactly one offerer");
        for (dev, others) in [(a, ["b", "c"]), (b, ["a", "c"]), (c, ["a", "b"])] {
            for o in others {
                assert!(has(&sim, dev, &format!("Track({o}/Video)")), "delay {capture_delay}: {dev} sees {o}: {:?}", sim.timeline(dev));
            }
        }
        // The offerer's tracks went on the B–C link once its camera was up.
        let offerer = if bc.iter().any(|(_, o)| *o) { b } else { c };
        assert!(sim.log(offerer).iter().any(|(_, l)| matches!(l, Logged::Media(MediaAction::Attach { .. }))));
    }
}

#[test]
fn a_member_whose_accept_crossed_the_invite_of_a_new_member_is_in_for_it() {
    // c accepts while b invites d: b's ModifyMem still lists c as ringing, and c's Accept went
    // only to a and b. d learns c is in from c's offer, and does not ring c out a minute later.
    let mut sim = Sim::new();
    let (a, b, c, d) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"), sim.add_device("d"));
    let id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.run_for(500);
    sim.accept(c, &id);
    sim.invite(b, &id, &["d"]);
    sim.run_for(300);
    sim.accept(d, &id);
    sim.run_for(1_000);
    assert!(has(&sim, d, "Accept(c)"), "{:?}", sim.timeline(d));
    sim.run_for(70_000);
    for dev in [a, b, c, d] {
        let view = sim.engine(dev).session(&id).unwrap();
        assert_eq!(view.state, SessionState::Keeping, "device {dev}");
        assert!(view.users.iter().all(|u| u.state == UserState::Keeping) && view.users.len() == 4, "device {dev}: {view:?}");
    }
    assert!(has(&sim, d, "Track(c/Video)"), "{:?}", sim.timeline(d));
}
