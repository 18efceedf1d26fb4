//! CallLib's `isAllowPublishRetry` / `isAllowSubscribeRetry` on rcall's P2P links: a link that
//! fails before it ever connected is re-negotiated (ICE restart from its offerer) up to
//! `setup_retries` more times; by default (both options false) it is left alone, as before.

use rcall_sim::Sim;
use rtc_core::engine::{Input, LinkState, MediaEvent, Peer, RESTART_RETRY_MS};
use rtc_core::types::{MediaType, SessionState};

fn link_state(sim: &mut Sim, dev: usize, call_id: &str, peer_user: &str, peer_dev: usize, state: LinkState) {
    let peer = Peer { user_id: peer_user.into(), device_id: format!("dev{peer_dev}") };
    sim.inject(dev, Input::Media(MediaEvent::LinkState { call_id: call_id.into(), peer, state }));
}

fn restarts(sim: &Sim, dev: usize) -> usize {
    sim.restarts.iter().filter(|(_, d, _, _)| *d == dev).count()
}

/// A → B answered, links not yet connected; `retries` for both devices.
fn answered(retries: u8) -> (Sim, usize, usize, String) {
    let mut sim = Sim::new();
    let a = sim.add_device_with("alice", |c| c.setup_retries = retries);
    let b = sim.add_device_with("bob", |c| c.setup_retries = retries);
    let call_id = sim.dial(a, "bob", MediaType::AudioVideo);
    sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.engine(a).session(&call_id).unwrap().state, SessionState::Keeping);
    (sim, a, b, call_id)
}

#[test]
fn without_retries_a_link_failing_its_setup_is_left_alone() {
    let (mut sim, a, b, call_id) = answered(0);
    link_state(&mut sim, a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(3 * RESTART_RETRY_MS);
    assert_eq!(restarts(&sim, a), 0);
}

#[test]
fn with_retries_the_offerer_renegotiates_a_failed_setup_twice_then_gives_up() {
    let (mut sim, a, b, call_id) = answered(2);
    // The answering side never restarts (its restart offer would cross the offerer's).
    link_state(&mut sim, b, &call_id, "alice", a, LinkState::Failed);
    sim.run_for(100);
    assert_eq!(restarts(&sim, b), 0);
    // Each failure of the setup is retried at once, twice in all.
    for n in 1..=3 {
        link_state(&mut sim, a, &call_id, "bob", b, LinkState::Failed);
        sim.run_for(100);
        assert_eq!(restarts(&sim, a), n.min(2), "after failure {n}");
    }
    // `disconnected` during setup is not a failure: no retry is spent on it.
    let (mut sim, a, b, call_id) = answered(2);
    link_state(&mut sim, a, &call_id, "bob", b, LinkState::Disconnected);
    sim.run_for(3 * RESTART_RETRY_MS);
    assert_eq!(restarts(&sim, a), 0);
    // A retried setup that connects is then recovered like any link (restarts unbounded).
    link_state(&mut sim, a, &call_id, "bob", b, LinkState::Failed);
    link_state(&mut sim, a, &call_id, "bob", b, LinkState::Connected);
    link_state(&mut sim, a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(3 * RESTART_RETRY_MS + 100);
    assert!(restarts(&sim, a) >= 4, "{}", restarts(&sim, a));
}
