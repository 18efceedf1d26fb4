//! The changelog behaviours of spec F (5.0.1 → 5.2.10) not covered by the flow tests, one test
//! each, on the call simulator.

use rcall_sim::Sim;
use rtc_core::engine::{CallEvent, Command, PushTexts};
use rtc_core::proto::call_content::Body;
use rtc_core::types::{end_reason, error_code, MediaType, UserState};

#[test]
fn f_5_0_7_extra_and_custom_push_texts_travel_with_the_invite() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add_device("a"), sim.add_device("b"));
    let req = rtc_core::engine::CallRequest {
        call_id: "x_1_1".into(),
        conversation_type: 1,
        target_id: "b".into(),
        user_ids: vec![],
        media_type: MediaType::Audio,
        channel_id: "org-7".into(),
        extra: "{\"room\":42}".into(),
        push_title: Some("Ann calls".into()),
        push_content: Some("tap to answer".into()),
    };
    sim.command(a, Command::Call(req));
    sim.run_for(100);
    let invite = sim.sent(a)[0].clone();
    let push = invite.push.clone().unwrap();
    assert_eq!((push.push_title.as_str(), push.push_content.as_str()), ("Ann calls", "tap to answer"));
    assert!(push.push_data.contains("\"callId\":\"x_1_1\""));
    assert_eq!(invite.channel_id, "org-7");
    assert!(sim.events(b).iter().any(|e| matches!(e, CallEvent::Session { extra, .. } if extra == "{\"room\":42}")));
    assert_eq!(sim.engine(b).session("x_1_1").unwrap().channel_id, "org-7");
}

#[test]
fn f_5_1_2_set_push_config_applies_to_invites_and_hangups() {
    let mut sim = Sim::new();
    let (a, _b) = (sim.add_device("a"), sim.add_device("b"));
    let texts = |t: &str| PushTexts { title: Some(t.into()), content: None, options: None };
    sim.command(a, Command::SetPushConfig { call: texts("incoming"), hangup: texts("missed") });
    let id = sim.dial(a, "b", MediaType::AudioVideo);
    sim.hangup(a, &id);
    sim.run_for(100);
    let sent = sim.sent(a);
    assert_eq!(sent[0].push.as_ref().unwrap().push_title, "incoming");
    let hangup = sent.iter().find(|s| s.content.object_name() == Some("RC:VCHangup")).unwrap();
    let push = hangup.push.as_ref().expect("hangups carry the hangup push config");
    assert_eq!(push.push_title, "missed");
    assert!(push.push_data.contains("\"reason\":1"));
    // Without setPushConfig a hangup carries no push (legacy prepared but did not attach it).
    let mut sim = Sim::new();
    let (a, _b) = (sim.add_device("a"), sim.add_device("b"));
    let id = sim.dial(a, "b", MediaType::Audio);
    sim.hangup(a, &id);
    sim.run_for(100);
    assert!(sim.sent(a).iter().filter(|s| s.content.object_name() == Some("RC:VCHangup")).all(|s| s.push.is_none()));
    // The default title follows the language and the media type.
    assert_eq!(sim.sent(a)[0].push.as_ref().unwrap().push_title, "您有一条音频通话");
}

#[test]
fn f_5_2_4_full_push_config_travels_on_the_wire_with_invites_and_hangups() {
    use prost::Message as _;
    use rtc_core::proto::{AndroidPushConfig, ClientFrame, HarmonyOsPushConfig, IosPushConfig, PushOptions};
    let mut sim = Sim::new();
    let (a, _b) = (sim.add_device("a"), sim.add_device("b"));
    let options = PushOptions {
        push_data: Some("app-data".into()),
        ios_config: Some(IosPushConfig {
            thread_id: Some("t1".into()),
            interruption_level: Some("time-sensitive".into()),
            ..Default::default()
        }),
        android_config: Some(AndroidPushConfig {
            category_hw: Some("VOIP".into()),
            category_vivo: Some("IM".into()),
            importance_hw: Some("NORMAL".into()),
            google_config_json: Some("{\"collapseKey\":\"c\"}".into()),
            extra_json: "{\"channelIdNew\":\"x\"}".into(),
            ..Default::default()
        }),
        harmony_os_config: Some(HarmonyOsPushConfig { category: Some("VOIP".into()), ..Default::default() }),
        disable_push_title: Some(false),
        template_id: Some("tpl".into()),
        ..Default::default()
    };
    let hangup_options = PushOptions { force_show_detail_content: Some(true), ..Default::default() };
    sim.command(
        a,
        Command::SetPushConfig {
            call: PushTexts { title: None, content: None, options: Some(Box::new(options.clone())) },
            hangup: PushTexts { title: None, content: None, options: Some(Box::new(hangup_options.clone())) },
        },
    );
    let id = sim.dial(a, "b", MediaType::Audio);
    sim.hangup(a, &id);
    sim.run_for(100);
    let sent = sim.sent(a);
    // Through the envelope's bytes, as the server sees it.
    let wire = |s: &rtc_core::engine::OutgoingSignal| {
        let frame = ClientFrame { body: Some(rtc_core::proto::client_frame::Body::Send(s.to_send_message())) };
        match ClientFrame::decode(frame.encode_to_vec().as_slice()).unwrap().body {
            Some(rtc_core::proto::client_frame::Body::Send(m)) => m.push.unwrap(),
            _ => unreachable!(),
        }
    };
    let invite = wire(sent[0]);
    assert_eq!(invite.options.as_deref(), Some(&options));
    // Title and content keep their defaults: only the vendor part came from setPushConfig.
    assert_eq!(invite.push_title, "您有一条音频通话");
    assert!(invite.push_data.contains("\"callId\""));
    let hangup = sent.iter().find(|s| s.content.object_name() == Some("RC:VCHangup")).unwrap();
    let hangup = wire(hangup);
    assert_eq!(hangup.options.as_deref(), Some(&hangup_options), "a hangup push with only vendor options is still sent");
}

#[test]
fn f_5_1_1_user_ids_with_underscores_are_callable() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add_device("user_a_1"), sim.add_device("user_b_2"));
    let id = sim.dial(a, "user_b_2", MediaType::AudioVideo);
    sim.accept(b, &id);
    sim.run_for(500);
    assert!(sim.timeline(a).contains(&"Track(user_b_2/Video)".to_string()));
    assert!(sim.timeline(b).contains(&"Track(user_a_1/Video)".to_string()));
}

#[test]
fn f_5_1_1_inviting_after_the_call_was_handled_elsewhere_returns_a_code() {
    let mut sim = Sim::new();
    let a = sim.add_device("a");
    let (b1, b2) = (sim.add_device("b"), sim.add_device("b"));
    let id = sim.dial_group(a, "g", &["b"], MediaType::Audio);
    sim.accept(b1, &id);
    sim.run_for(300);
    // b2's session ended with 101; inviting from it is a code, not a crash or an exception.
    let inv = sim.invite(b2, &id, &["c"]);
    sim.run_for(10);
    assert_eq!(sim.result(b2, inv).unwrap().0, error_code::PARAM_ERROR);
}

#[test]
fn f_5_2_3_states_are_right_after_accept_and_a_connected_hangup_is_3_while_an_invite_rings() {
    let mut sim = Sim::new();
    let (a, b, _c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let id = sim.dial_group(a, "g", &["b"], MediaType::Audio);
    sim.accept(b, &id);
    sim.run_for(300);
    // getRemoteUsers on both sides: the other is in the call, flags right.
    for (dev, other, caller) in [(a, "b", false), (b, "a", true)] {
        let view = sim.engine(dev).session(&id).unwrap();
        let u = view.users.iter().find(|u| u.user_id == other).unwrap();
        assert_eq!((u.state, u.is_remote, u.is_caller), (UserState::Keeping, true, caller), "device {dev}");
        let me = view.users.iter().find(|u| u.user_id != other).unwrap();
        assert!(!me.is_remote);
    }
    sim.invite(a, &id, &["c"]);
    sim.run_for(100);
    // A connected member hanging up while an invite rings says HANGUP, not CANCEL.
    sim.hangup(b, &id);
    sim.run_for(100);
    assert_eq!(sim.close_reason(b, &id), Some(end_reason::HANGUP));
    assert!(sim.timeline(a).contains(&"Hungup(b,13)".to_string()));
}

#[test]
fn f_5_2_2_offline_window_uses_server_time_not_the_local_clock() {
    // The device's clock is 10 minutes fast; an invite the server accepted 20 s ago still rings,
    // for the rest of its 60 s minus the answer margin.
    use rtc_core::engine::{Input, Received, ANSWER_MARGIN_MS};
    use rtc_core::proto::{self};
    let mut sim = Sim::new();
    let b = sim.add_device("b");
    let server_now = sim.now() - 600_000;
    let body = Body::Invite(proto::Invite { media_type: 1, invite_user_ids: vec!["b".into()], ..Default::default() });
    let msg = Received {
        sent_time: server_now - 20_000,
        server_time: server_now,
        offline: true,
        ..sim.delivered(("a", "d"), 1, "a", "off_1_1", body)
    };
    sim.inject(b, Input::Signal(msg));
    sim.inject(b, Input::SyncDone);
    assert_eq!(sim.timeline(b), ["Session", "OfflineRecord(a,5)"]);
    let t0 = sim.now();
    sim.run_until(t0 + 40_000 - ANSWER_MARGIN_MS - 1);
    assert!(sim.close_reason(b, "off_1_1").is_none());
    sim.run_for(2);
    assert_eq!(sim.close_reason(b, "off_1_1"), Some(end_reason::NO_RESPONSE));
}
