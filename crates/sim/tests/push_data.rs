//! The push data the engine writes by hand as JSON (spec B.5): exact text, with ids that need
//! escaping (the SDK builds it without `core::fmt`, BENCHMARKS.md "SDK size").

use rcall_sim::Sim;
use rtc_core::engine::{CallRequest, Command, PushTexts};
use rtc_core::types::MediaType;

#[test]
fn invite_and_hangup_push_data_are_exact_json() {
    let mut sim = Sim::new();
    let (a, _b) = (sim.add_device("a"), sim.add_device("b"));
    let texts = |t: &str| PushTexts { title: Some(t.into()), content: None, options: None };
    sim.command(a, Command::SetPushConfig { call: texts("incoming"), hangup: texts("missed") });
    let req = CallRequest {
        call_id: "x\\_\u{1f}".into(),
        conversation_type: 1,
        target_id: "b".into(),
        user_ids: vec![],
        media_type: MediaType::AudioVideo,
        channel_id: String::new(),
        extra: String::new(),
        push_title: None,
        push_content: None,
    };
    sim.command(a, Command::Call(req));
    sim.run_for(100);
    sim.hangup(a, "x\\_\u{1f}");
    sim.run_for(100);
    let sent = sim.sent(a);
    let invite = sent[0].push.as_ref().unwrap();
    assert_eq!(invite.push_data, r#"{"mediaType":2,"userIdList":["b"],"callId":"x\\_\u001f"}"#);
    let hangup = sent.iter().find(|s| s.content.object_name() == Some("RC:VCHangup")).unwrap();
    assert_eq!(hangup.push.as_ref().unwrap().push_data, r#"{"callId":"x\\_\u001f","reason":1}"#);
}
