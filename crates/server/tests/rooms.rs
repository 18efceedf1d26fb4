//! `GetJoinedUserInfo` (CallLib's `getJoinedUserInfo`): which call each device of a user is in,
//! as the server follows the invites, accepts and hangups it routes. Real server, real
//! WebSockets.

mod common;

use common::*;
use rtc_core::proto::{
    call_content::Body as CallBody, Accept, Hangup, Invite, JoinedUserInfo, Ringing,
};

fn invite() -> CallBody {
    CallBody::Invite(Invite {
        media_type: 2,
        invite_user_ids: vec!["bob".into()],
        ..Default::default()
    })
}

fn rooms(info: &JoinedUserInfo) -> Vec<(String, String)> {
    assert_eq!(info.code, 0);
    info.devices
        .iter()
        .map(|d| (d.device_id.clone(), d.call_id.clone()))
        .collect()
}

#[tokio::test]
async fn invite_and_accept_join_hangup_leaves() {
    let ts = TestServer::start().await;
    let mut a = ts.client("alice", "a1").await;
    let mut b = ts.client("bob", "b1").await;
    let mut b2 = ts.client("bob", "b2").await;
    let mut watcher = ts.client("carol", "c1").await;

    assert!(rooms(&joined_user_info(&mut watcher, 1, "alice").await).is_empty());
    let t0 = now_ms();
    send_code(&mut a, 1, call_message("bob", "call-1", invite()), 0).await;
    // The caller is in the call from its invite; ringing devices are not.
    send_code(
        &mut b,
        2,
        call_message("alice", "call-1", CallBody::Ringing(Ringing {})),
        0,
    )
    .await;
    let alice = joined_user_info(&mut b, 2, "alice").await;
    assert_eq!(rooms(&alice), [("a1".to_string(), "call-1".to_string())]);
    assert!(alice.devices[0].join_time >= t0 && alice.devices[0].join_time <= now_ms());
    // Someone outside the call learns only that alice's device is in a call, and since when.
    let hidden = joined_user_info(&mut watcher, 2, "alice").await;
    assert_eq!(rooms(&hidden), [(String::new(), String::new())]);
    assert_eq!(hidden.devices[0].join_time, alice.devices[0].join_time);
    assert!(rooms(&joined_user_info(&mut watcher, 3, "bob").await).is_empty());

    send_code(
        &mut b,
        3,
        call_message(
            "alice",
            "call-1",
            CallBody::Accept(Accept { media_type: 2 }),
        ),
        0,
    )
    .await;
    assert_eq!(
        rooms(&joined_user_info(&mut a, 4, "bob").await),
        [("b1".to_string(), "call-1".to_string())],
        "only the device that accepted"
    );
    // The user itself sees its devices, from any of them.
    assert_eq!(
        rooms(&joined_user_info(&mut b2, 5, "bob").await),
        [("b1".to_string(), "call-1".to_string())]
    );

    send_code(
        &mut b,
        4,
        call_message("alice", "call-1", CallBody::Hangup(Hangup { reason: 1 })),
        0,
    )
    .await;
    // Bob's hangup ends the 1:1 call for alice too, although she sends nothing.
    assert!(rooms(&joined_user_info(&mut watcher, 6, "bob").await).is_empty());
    assert!(rooms(&joined_user_info(&mut watcher, 7, "alice").await).is_empty());

    // A device is in one call at a time: invites move alice's device from call-2 to call-3.
    send_code(&mut a, 5, call_message("bob", "call-2", invite()), 0).await;
    send_code(&mut a, 7, call_message("bob", "call-3", invite()), 0).await;
    assert_eq!(
        rooms(&joined_user_info(&mut a, 8, "alice").await),
        [("a1".to_string(), "call-3".to_string())]
    );
    // call-2 lost its only member: it is gone, ringing invitee and all.
    assert_eq!(ts.server.state().hub.rooms_size(0), (1, 1, 1));
    // A hangup for another call leaves it there.
    send_code(
        &mut a,
        6,
        call_message("bob", "call-1", CallBody::Hangup(Hangup { reason: 1 })),
        0,
    )
    .await;
    assert_eq!(
        rooms(&joined_user_info(&mut watcher, 9, "alice").await).len(),
        1
    );

    // A refused message changes nothing: carol is blacklisted by bob.
    api_ok(
        &ts,
        "/user/blacklist/add.json",
        &[("userId", "bob"), ("blackUserId", "carol")],
    )
    .await;
    send_code(
        &mut watcher,
        10,
        call_message("bob", "call-4", invite()),
        405,
    )
    .await;
    assert!(rooms(&joined_user_info(&mut b, 11, "carol").await).is_empty());

    // A bad request gets a code, not a hang.
    let bad = joined_user_info(&mut watcher, 12, "").await;
    assert_eq!(bad.code, 33003);
    assert!(bad.devices.is_empty());
}

#[tokio::test]
async fn a_disconnected_device_stays_listed_through_a_quick_reconnect() {
    let ts = TestServer::start().await;
    let mut a = ts.client("alice", "a1").await;
    let mut watcher = ts.client("carol", "c1").await;
    send_code(&mut a, 1, call_message("bob", "call-9", invite()), 0).await;
    drop(a);
    // The close reaches the server asynchronously; the entry must survive it (grace period).
    let hub = &ts.server.state().hub;
    for _ in 0..100 {
        if hub.connection_count("alice") == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        hub.connection_count("alice"),
        0,
        "alice's connection is gone"
    );
    assert_eq!(
        rooms(&joined_user_info(&mut watcher, 1, "alice").await).len(),
        1
    );
    let _back = ts.client("alice", "a1").await;
    assert_eq!(
        rooms(&joined_user_info(&mut watcher, 2, "alice").await).len(),
        1
    );
}

#[tokio::test]
async fn apps_do_not_see_each_others_calls() {
    let ts = TestServer::start_with(with_second_app).await;
    let mut a = ts.client("alice", "a1").await;
    send_code(&mut a, 1, call_message("bob", "call-1", invite()), 0).await;
    let mut other = Client::login(ts.addr, &app2_token("carol"), "x1").await;
    assert!(rooms(&joined_user_info(&mut other, 1, "alice").await).is_empty());
}
