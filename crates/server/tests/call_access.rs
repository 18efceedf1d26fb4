//! Nobody outside a call can get into it (issue 11): call messages for a call the server knows
//! only from its participants, `getJoinedUserInfo` details only for them, bounded rooms and
//! validated user ids. Real server, real WebSockets.

mod common;

use common::calls::{invite, private_call};
use common::*;
use rtc_core::proto::call_content::Body as CallBody;
use rtc_core::proto::{
    object_name, Accept, Hangup, JoinedUserInfo, MediaSignal, ModifyMem, SendMessage,
};

const NOT_IN_CALL: i32 = 40403;
const INVALID: i32 = 33003;

/// `user`'s calls, as a participant may ask for them (code 0).
async fn joined(c: &mut Client, request_id: u32, user: &str) -> JoinedUserInfo {
    let info = joined_user_info(c, request_id, user).await;
    assert_eq!(info.code, 0);
    info
}

fn ids(info: &JoinedUserInfo) -> Vec<(&str, &str)> {
    info.devices
        .iter()
        .map(|d| (d.device_id.as_str(), d.call_id.as_str()))
        .collect()
}

/// alice's a1 calls bob, b1 accepts; both have seen everything.
async fn one_to_one(ts: &TestServer) -> (Client, Client) {
    let mut a = ts.client("alice", "a1").await;
    let mut b = ts.client("bob", "b1").await;
    send_code(
        &mut a,
        1,
        private_call("a1", "bob", "call-1", invite(&["bob"])),
        0,
    )
    .await;
    assert_eq!(b.recv_delivered().await.message_type, object_name::INVITE);
    let accept = CallBody::Accept(Accept { media_type: 2 });
    send_code(&mut b, 1, private_call("b1", "alice", "call-1", accept), 0).await;
    assert_eq!(a.recv_delivered().await.message_type, object_name::ACCEPT);
    (a, b)
}

#[tokio::test]
async fn strangers_cannot_get_into_a_call() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = one_to_one(&ts).await;
    let mut m = ts.client("mallory", "m1").await;
    let attempts = [
        (
            "alice",
            CallBody::ModifyMem(ModifyMem {
                invite_user_ids: vec!["alice".into(), "bob".into(), "mallory".into()],
                caller: "alice".into(),
                modify_mem_type: 1,
                ..Default::default()
            }),
        ),
        ("alice", CallBody::Accept(Accept { media_type: 2 })),
        ("bob", CallBody::Hangup(Hangup { reason: 3 })),
        (
            "bob",
            CallBody::Media(MediaSignal {
                to_user_id: "bob".into(),
                to_device_id: "b1".into(),
                kind: None,
            }),
        ),
        ("bob", invite(&["bob", "mallory"])),
    ];
    for (i, (to, body)) in attempts.into_iter().enumerate() {
        send_code(
            &mut m,
            i as u32 + 1,
            private_call("m1", to, "call-1", body),
            NOT_IN_CALL,
        )
        .await;
    }
    // Nor with a body in disguise: the engine acts on the body, whatever the type says.
    let disguised = SendMessage {
        message_type: object_name::MUTE.into(),
        ..private_call(
            "m1",
            "alice",
            "call-1",
            CallBody::Accept(Accept { media_type: 2 }),
        )
    };
    send_code(&mut m, 8, disguised, INVALID).await;
    let modify = CallBody::ModifyMem(ModifyMem {
        invite_user_ids: vec!["alice".into(), "mallory".into()],
        ..Default::default()
    });
    let disguised = SendMessage {
        message_type: object_name::MEDIA.into(),
        ..private_call("b1", "alice", "call-1", modify)
    };
    send_code(&mut b, 8, disguised, INVALID).await;
    // Nothing reached the participants, and the call is as it was.
    a.barrier(1).await;
    b.barrier(2).await;
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 2, 0));
    // The participants go on as before.
    let media = CallBody::Media(MediaSignal {
        to_user_id: "alice".into(),
        to_device_id: "a1".into(),
        kind: None,
    });
    send_code(&mut b, 3, private_call("b1", "alice", "call-1", media), 0).await;
    assert_eq!(a.recv_delivered().await.message_type, object_name::MEDIA);
    // A user invited later gets in; the inviter may add people.
    let mut c = ts.client("carol", "c1").await;
    send_code(
        &mut a,
        2,
        private_call("a1", "carol", "call-1", invite(&["carol"])),
        0,
    )
    .await;
    let ringing = CallBody::Ringing(Default::default());
    send_code(&mut c, 1, private_call("c1", "alice", "call-1", ringing), 0).await;
    // A new call id is nobody's: mallory may start her own call.
    send_code(
        &mut m,
        9,
        private_call("m1", "bob", "call-m", invite(&["bob"])),
        0,
    )
    .await;
}

#[tokio::test]
async fn joined_user_info_details_only_for_participants() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = one_to_one(&ts).await;
    let mut m = ts.client("mallory", "m1").await;
    let mut a2 = ts.client("alice", "a2").await;
    assert_eq!(
        ids(&joined(&mut a2, 1, "alice").await),
        [("a1", "call-1")],
        "the user itself"
    );
    assert_eq!(
        ids(&joined(&mut b, 2, "alice").await),
        [("a1", "call-1")],
        "a participant"
    );
    assert_eq!(ids(&joined(&mut a, 3, "bob").await), [("b1", "call-1")]);
    let hidden = joined(&mut m, 4, "alice").await;
    assert_eq!(
        ids(&hidden),
        [("", "")],
        "in a call, but not which or on which device"
    );
    assert!(hidden.devices[0].join_time > 0);
    assert!(joined(&mut m, 5, "mallory").await.devices.is_empty());
}

#[tokio::test]
async fn rooms_stay_bounded_and_bad_user_ids_are_refused() {
    let ts = TestServer::start_with(|c| {
        c.offline_quota_per_sender = u32::MAX;
        c.rate_limit_per_sec = 1_000_000;
        c.rate_limit_burst = 1_000_000;
        c.user_rate_per_sec = 1_000_000;
        c.user_rate_burst = 1_000_000;
    })
    .await;
    let mut a = ts.client("alice", "a1").await;
    let long: Vec<String> = (0..64).map(|i| format!("{i:0>64}")).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    // 1,500 invites to herself, each a new call with 64 invitees of 64 characters: each moves
    // a1 on, and the call it leaves has no member left.
    const N: u32 = 1500;
    for i in 0..N {
        let msg = private_call("a1", "alice", &format!("c{i}"), invite(&long));
        a.send_message(i, msg).await;
    }
    for i in 0..N {
        let r = a.recv_send_result().await;
        assert_eq!((r.request_id, r.code), (i, 0));
    }
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 1, 64));

    let too_long = "x".repeat(65);
    // Invitees: too long, NUL, control characters, empty; and too many of them.
    for (i, bad) in [too_long.as_str(), "a\0b", "a\nb", ""]
        .into_iter()
        .enumerate()
    {
        let msg = private_call("a1", "bob", "c-bad", invite(&["bob", bad]));
        send_code(&mut a, 100 + i as u32, msg, INVALID).await;
    }
    let many: Vec<String> = (0..65).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    send_code(
        &mut a,
        110,
        private_call("a1", "bob", "c-many", invite(&many)),
        INVALID,
    )
    .await;
    // Targets and group recipients.
    send_code(&mut a, 111, private(&too_long, b"x"), INVALID).await;
    send_code(&mut a, 112, private("bo\u{7f}b", b"x"), INVALID).await;
    create_group(&ts, "g", &["alice", "bob"]).await;
    send_code(&mut a, 113, group("g", &["bob", "\u{1}"], b"x"), INVALID).await;
    send_code(&mut a, 114, group("g", &["bob", &too_long], b"x"), INVALID).await;
    // The longest ids are fine, in any script.
    send_code(&mut a, 115, private(&"ü".repeat(64), b"x"), 0).await;
    assert_eq!(
        ts.server.state().hub.rooms_size(0),
        (1, 1, 64),
        "nothing changed"
    );
}
