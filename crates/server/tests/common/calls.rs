//! Call messages as the SDK sends them (`RC:VC*` object names, a `CallContent` body), for the
//! tests that drive calls by hand: one home for the content, its object name and the bodies
//! the tests use.

use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::{Accept, CallContent, Hangup, Invite, SendMessage};

use super::{group, private};

/// The `CallContent` of a call message from `device`.
fn call_content(call_id: &str, device: &str, body: CallBody) -> CallContent {
    CallContent {
        platform: "Web".into(),
        device_id: device.into(),
        call_id: call_id.into(),
        body: Some(body),
        ..Default::default()
    }
}

/// The encoded `CallContent` of a call message from `device`.
pub fn content(call_id: &str, device: &str, body: CallBody) -> Vec<u8> {
    call_content(call_id, device, body).to_bytes()
}

/// `msg` carrying `content`, typed by its object name.
fn typed(content: &CallContent, msg: impl FnOnce(&[u8]) -> SendMessage) -> SendMessage {
    let message_type = content.object_name().expect("a call body").into();
    SendMessage {
        message_type,
        ..msg(&content.to_bytes())
    }
}

/// A PRIVATE call message from `device` to `target`.
pub fn private_call(device: &str, target: &str, call_id: &str, body: CallBody) -> SendMessage {
    typed(&call_content(call_id, device, body), |c| private(target, c))
}

/// A PRIVATE call message to `target` whose content names no platform or device.
pub fn call_message(target: &str, call_id: &str, body: CallBody) -> SendMessage {
    let content = CallContent {
        call_id: call_id.into(),
        body: Some(body),
        ..Default::default()
    };
    typed(&content, |c| private(target, c))
}

/// A GROUP call message from `device` to `recipients` of group `g`.
pub fn group_call(
    device: &str,
    g: &str,
    recipients: &[&str],
    call_id: &str,
    body: CallBody,
) -> SendMessage {
    typed(&call_content(call_id, device, body), |c| {
        group(g, recipients, c)
    })
}

/// A video invite of `users`.
pub fn invite(users: &[&str]) -> CallBody {
    CallBody::Invite(Invite {
        media_type: 2,
        invite_user_ids: users.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

/// A video accept.
pub fn accept() -> CallBody {
    CallBody::Accept(Accept { media_type: 2 })
}

/// A hangup with reason 3 (the user hung up).
pub fn hangup() -> CallBody {
    CallBody::Hangup(Hangup { reason: 3 })
}
