//! Only participants act in a call (issue 11): the server routes whatever any user addresses to
//! us, so a message about a call is taken only from someone the call already has.

use rcall_sim::{DeviceId, Logged, Sim};
use rtc_core::engine::{Input, MediaAction};
use rtc_core::proto::{self, call_content::Body, conversation_type, media_signal, MemberProfile};
use rtc_core::types::{call_status, error_code, MediaType, SessionState};

/// A message from the stranger "eve" (device "evil") about `call_id`, as the server delivers it.
fn from_eve(sim: &Sim, ct: i32, target: &str, call_id: &str, body: Body) -> Input {
    Input::Signal(sim.delivered(("eve", "evil"), ct, target, call_id, body))
}

/// Eve lists herself CONNECTED in a ModifyMem, then accepts, offers media, rings, mutes and
/// hangs up, at `victim`. Nothing of it may change anything.
fn eve_attacks(sim: &mut Sim, victim: DeviceId, ct: i32, target: &str, call_id: &str) {
    let before = sim.log(victim).len();
    let view_before = sim.engine(victim).session(call_id).unwrap();
    let profile = |u: &str, status| MemberProfile { user_id: u.into(), media_type: 2, call_status: status };
    let me = sim.engine(victim).self_id().to_string();
    let modify = Body::ModifyMem(proto::ModifyMem {
        engine_type: 4,
        media_type: 2,
        invite_user_ids: vec![me.clone()],
        caller: "eve".into(),
        modify_mem_type: 1,
        existed_user_pofiles: vec![profile("eve", call_status::CONNECTED), profile(&me, call_status::CONNECTED)],
        ..Default::default()
    });
    let offer = Body::Media(proto::MediaSignal {
        to_user_id: me.clone(),
        to_device_id: format!("dev{victim}"),
        kind: Some(media_signal::Kind::Offer("offer from eve".into())),
    });
    let bodies = [
        modify,
        Body::Accept(proto::Accept { media_type: 2 }),
        offer,
        Body::Ringing(proto::Ringing {}),
        Body::Mute(proto::MuteState { video: false, muted: true }),
        Body::Hangup(proto::Hangup { reason: 3 }),
    ];
    for body in bodies {
        let input = from_eve(sim, ct, target, call_id, body);
        sim.inject(victim, input);
        sim.run_for(50);
    }
    sim.run_for(1_000);
    let view = sim.engine(victim).session(call_id).unwrap();
    assert!(view.users.iter().all(|u| u.user_id != "eve"), "eve became a member: {view:?}");
    assert_eq!(view.state, view_before.state);
    assert_eq!(view.users.len(), view_before.users.len());
    let new: Vec<&Logged> = sim.log(victim)[before..].iter().map(|(_, l)| l).collect();
    for l in &new {
        match l {
            Logged::Event(e) => panic!("event caused by a stranger: {e:?}"),
            Logged::Media(MediaAction::Connect { peer, .. } | MediaAction::Apply { peer, .. }) if peer.user_id == "eve" => {
                panic!("media toward a stranger: {l:?}")
            }
            Logged::Media(MediaAction::Attach { .. }) => panic!("tracks attached after a stranger's messages: {l:?}"),
            Logged::Sent(s) if s.directional_user_ids.contains(&"eve".to_string()) => panic!("sent to a stranger: {s:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_stranger_cannot_join_a_one_to_one_call() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::AudioVideo);
    // While ringing, at both ends.
    eve_attacks(&mut sim, b, conversation_type::PRIVATE, "eve", &call_id);
    eve_attacks(&mut sim, a, conversation_type::PRIVATE, "eve", &call_id);
    // Connected: still nothing, and the call itself goes on.
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    eve_attacks(&mut sim, a, conversation_type::PRIVATE, "eve", &call_id);
    eve_attacks(&mut sim, b, conversation_type::PRIVATE, "eve", &call_id);
    for dev in [a, b] {
        assert_eq!(sim.engine(dev).session(&call_id).unwrap().state, SessionState::Keeping);
    }
}

#[test]
fn a_stranger_cannot_join_a_group_call_and_members_still_can_invite() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let d = sim.add_device("d");
    let call_id = sim.dial_group(a, "g", &["b", "c"], MediaType::AudioVideo);
    sim.accept(b, &call_id);
    sim.run_for(1_000);
    for dev in [a, b, c] {
        eve_attacks(&mut sim, dev, conversation_type::GROUP, "g", &call_id);
    }
    // A member's invite still works: b invites d, who joins with a's and b's media.
    let invite = sim.invite(b, &call_id, &["d"]);
    sim.run_for(200);
    assert_eq!(sim.result(b, invite).unwrap().0, error_code::SUCCESS);
    // (c still rings, so b lists it as invited too.)
    assert!(sim.timeline(a).contains(&"MemberModify(b,[c,d])".to_string()), "{:?}", sim.timeline(a));
    assert_eq!(sim.incoming(d).as_deref(), Some(call_id.as_str()));
    sim.accept(d, &call_id);
    sim.run_for(1_000);
    for o in ["a", "b"] {
        assert!(sim.timeline(d).contains(&format!("Track({o}/Video)")), "{:?}", sim.timeline(d));
    }
}

#[test]
fn a_ringing_member_cannot_invite() {
    // a calls b and c; b, still ringing, tries to invite d: refused, nothing sent (it would
    // list itself CONNECTED and d would count it in for good if it never answered).
    let mut sim = Sim::new();
    let (a, b, _c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let d = sim.add_device("d");
    let call_id = sim.dial_group(a, "g", &["b", "c"], MediaType::Audio);
    let invite = sim.invite(b, &call_id, &["d"]);
    assert_eq!(sim.result(b, invite).unwrap().0, error_code::PARAM_ERROR);
    assert!(!sim.sent(b).iter().any(|s| s.content.object_name() == Some("RC:VCModifyMem")));
    sim.run_for(200);
    assert!(sim.incoming(d).is_none());
    // Once in, it can.
    sim.accept(b, &call_id);
    sim.run_for(500);
    let invite = sim.invite(b, &call_id, &["d"]);
    sim.run_for(200);
    assert_eq!(sim.result(b, invite).unwrap().0, error_code::SUCCESS);
    assert_eq!(sim.incoming(d).as_deref(), Some(call_id.as_str()));
    let _ = a;
}

#[test]
fn a_ringing_member_listed_connected_by_a_calllib_invite_is_not_taken_as_in() {
    // A CallLib client still ringing may invite anyway, listing itself CONNECTED: the caller
    // keeps ringing it, and its ring timeout still ends the call if nobody answers.
    let mut sim = Sim::new();
    let a = sim.add_device("a");
    sim.add_device("b");
    let call_id = sim.dial_group(a, "g", &["b", "c"], MediaType::Audio);
    let profile = |u: &str, status| MemberProfile { user_id: u.into(), media_type: 1, call_status: status };
    let modify = Body::ModifyMem(proto::ModifyMem {
        engine_type: 4,
        media_type: 1,
        invite_user_ids: vec!["a".into(), "c".into(), "d".into()],
        caller: "a".into(),
        modify_mem_type: 1,
        existed_user_pofiles: vec![
            profile("a", call_status::CONNECTED),
            profile("b", call_status::CONNECTED),
            profile("c", call_status::RINGING),
            profile("d", call_status::RINGING),
        ],
        ..Default::default()
    });
    let input = sim.delivered(("b", "dev1"), conversation_type::GROUP, "g", &call_id, modify);
    sim.inject(a, Input::Signal(input));
    let state = |sim: &Sim, u: &str| sim.engine(a).session(&call_id).unwrap().users.iter().find(|v| v.user_id == u).map(|v| v.state);
    assert_eq!(state(&sim, "b"), Some(rtc_core::types::UserState::Waiting));
    sim.run_for(70_000);
    assert!(!sim.engine(a).has_live_call(), "{:?}", sim.engine(a).session(&call_id));
}
