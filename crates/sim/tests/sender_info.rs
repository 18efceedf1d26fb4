//! `ISenderInfo` (seed A.9): every listener event names its sender with the profile the sender
//! registered (`content.user`), `onAccept` included (CallLib passed only `{userId}` there), and
//! `getRemoteUsers()` shows the latest profile each participant sent.

use rcall_sim::Sim;
use rtc_core::engine::{CallEvent, Command};
use rtc_core::proto::UserProfile;
use rtc_core::types::{error_code, MediaType};

fn profile(name: &str, portrait: &str, extra: Option<&str>) -> UserProfile {
    UserProfile { name: Some(name.into()), portrait_uri: Some(portrait.into()), extra: extra.map(Into::into) }
}

fn accept_sender(sim: &Sim, dev: usize) -> UserProfile {
    sim.events(dev)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::Accept { sender, .. } => Some(sender.profile.clone()),
            _ => None,
        })
        .expect("onAccept")
}

#[test]
fn on_accept_and_the_others_carry_the_senders_profile() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let alice = profile("Alice", "http://p/a.png", Some("a-extra"));
    let bob = profile("Bob", "http://p/b.png", None);
    sim.command(a, Command::RegisterUserInfo(alice.clone()));
    sim.command(b, Command::RegisterUserInfo(bob.clone()));
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    sim.run_for(1_000);
    let ringing = sim.events(a).into_iter().find_map(|e| match e {
        CallEvent::Ringing { sender, .. } => Some(sender.clone()),
        _ => None,
    });
    assert_eq!(ringing.map(|s| (s.user_id, s.profile)), Some(("bob".to_string(), bob.clone())));
    // The callee knows the caller's profile from the invite.
    let seen_by_b = sim.engine(b).session(&call_id).expect("b's session").users;
    assert_eq!(seen_by_b.iter().find(|u| u.user_id == "alice").map(|u| u.profile.clone()), Some(alice.clone()));

    let cmd = sim.accept(b, &call_id);
    sim.run_for(2_000);
    assert_eq!(sim.result(b, cmd).map(|r| r.0), Some(error_code::SUCCESS));
    assert_eq!(accept_sender(&sim, a), bob);
    let seen_by_a = sim.engine(a).session(&call_id).expect("a's session").users;
    assert_eq!(seen_by_a.iter().find(|u| u.user_id == "bob").map(|u| u.profile.clone()), Some(bob.clone()));

    sim.hangup(b, &call_id);
    sim.run_for(1_000);
    let hungup = sim.events(a).into_iter().find_map(|e| match e {
        CallEvent::Hungup { sender, .. } => Some(sender.profile.clone()),
        _ => None,
    });
    assert_eq!(hungup, Some(bob));
}

#[test]
fn a_profile_changed_mid_call_reaches_get_remote_users_and_a_bare_one_keeps_it() {
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    sim.run_for(1_000);
    // Bob registers only now: his accept carries it.
    let bob = profile("Bob", "http://p/b.png", Some("x"));
    sim.command(b, Command::RegisterUserInfo(bob.clone()));
    sim.accept(b, &call_id);
    sim.run_for(2_000);
    assert_eq!(accept_sender(&sim, a), bob);
    let users = sim.engine(a).session(&call_id).expect("session").users;
    assert_eq!(users.iter().find(|u| u.user_id == "bob").map(|u| u.profile.clone()), Some(bob.clone()));
    // A later message without a profile (cleared registration) does not erase what we knew.
    sim.command(b, Command::RegisterUserInfo(UserProfile::default()));
    sim.command(b, Command::MuteTrack { call_id: call_id.clone(), kind: rtc_core::engine::TrackKind::Audio, muted: true });
    sim.run_for(1_000);
    let users = sim.engine(a).session(&call_id).expect("session").users;
    assert_eq!(users.iter().find(|u| u.user_id == "bob").map(|u| u.profile.clone()), Some(bob));
}
