//! A message the shell could not hand to the server (`Input::SendFailed`) fails its command
//! without touching the engine's server clock. `cargo test -p rtc-core --test send_failed`.

use rtc_core::engine::{CallEvent, Input, Output, Received};
use rtc_core::proto::{self, call_content::Body, conversation_type, CallContent};
use rtc_core::types::MediaType;
use rtc_core::{Engine, EngineConfig};

/// This device's clock runs 50 s ahead of the server's.
const SKEW: i64 = 50_000;

/// An invite from `a` to `b`, stored while `b` was offline, sent 20 s ago (server time).
fn offline_invite(now: i64) -> Received {
    let server_now = now - SKEW;
    let invite = proto::Invite {
        engine_type: proto::ENGINE_TYPE,
        channel_info: None,
        media_type: MediaType::Audio as i32,
        invite_user_ids: vec!["b".into()],
        observer_user_ids: Vec::new(),
        extra: String::new(),
    };
    let content = CallContent {
        platform: "Web".into(),
        device_id: "a-dev".into(),
        call_id: "c1".into(),
        user: None,
        body: Some(Body::Invite(invite)),
    };
    Received {
        sender_user_id: "a".into(),
        sender_device_id: "a-dev".into(),
        conversation_type: conversation_type::PRIVATE,
        target_id: "a".into(),
        channel_id: String::new(),
        sent_time: server_now - 20_000,
        server_time: server_now,
        offline: true,
        content,
    }
}

fn drain(engine: &mut Engine) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match engine.poll_output() {
            Output::Wait(_) => return out,
            o => out.push(o),
        }
    }
}

/// The offline invite still has 40 s to ring: after a local send failure between its delivery and
/// SyncDone it must still ring. The shell used to report the failure as a `SendResult` stamped
/// with the local clock as server time, which reset the offset: 50 s of skew then made the
/// invite look 70 s old, and the call was only an offline record.
#[test]
fn a_local_send_failure_keeps_the_server_clock() {
    let mut engine = Engine::new(EngineConfig::new("b", "b-dev"));
    let now = 1_000_000_000;
    engine.handle_input(now, Input::Signal(offline_invite(now)));
    drain(&mut engine);
    engine.handle_input(now + 5, Input::SendFailed { request_id: 7, code: 30001 });
    drain(&mut engine);
    engine.handle_input(now + 10, Input::SyncDone);
    let out = drain(&mut engine);
    let rang = out.iter().any(|o| matches!(o, Output::Event(CallEvent::Session { call_id, .. }) if call_id == "c1"));
    assert!(rang, "the offline invite with 40 s left did not ring: {out:?}");
}
