//! CallLib's `isAllowPublishRetry` / `isAllowSubscribeRetry` on rcall's P2P links: a link that
//! fails before it ever connected is re-negotiated (ICE restart from its offerer) up to
//! `setup_retries` more times; by default (both options false) it is left alone, as before.

mod common;

use rcall_sim::Sim;
use rtc_core::engine::{LinkState, RESTART_RETRY_MS};
use rtc_core::types::MediaType;

fn restarts(sim: &Sim, dev: usize) -> usize {
    sim.restarts.iter().filter(|(_, d, _, _)| *d == dev).count()
}

/// A → B answered, links not yet connected; `retries` for both devices.
fn answered(retries: u8) -> (Sim, usize, usize, String) {
    let mut sim = Sim::new();
    let a = sim.add_device_with("alice", |c| c.setup_retries = retries);
    let b = sim.add_device_with("bob", |c| c.setup_retries = retries);
    let call_id = common::answer(&mut sim, a, b, MediaType::AudioVideo);
    (sim, a, b, call_id)
}

#[test]
fn without_retries_a_link_failing_its_setup_is_left_alone() {
    let (mut sim, a, b, call_id) = answered(0);
    sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(3 * RESTART_RETRY_MS);
    assert_eq!(restarts(&sim, a), 0);
}

#[test]
fn with_retries_the_offerer_renegotiates_a_failed_setup_twice_then_gives_up() {
    let (mut sim, a, b, call_id) = answered(2);
    // The answering side never restarts (its restart offer would cross the offerer's).
    sim.link_state(b, &call_id, "alice", a, LinkState::Failed);
    sim.run_for(100);
    assert_eq!(restarts(&sim, b), 0);
    // Each failure of the setup is retried at once, twice in all.
    for n in 1..=3 {
        sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
        sim.run_for(100);
        assert_eq!(restarts(&sim, a), n.min(2), "after failure {n}");
    }
    // `disconnected` during setup is not a failure: no retry is spent on it.
    let (mut sim, a, b, call_id) = answered(2);
    sim.link_state(a, &call_id, "bob", b, LinkState::Disconnected);
    sim.run_for(3 * RESTART_RETRY_MS);
    assert_eq!(restarts(&sim, a), 0);
    // A retried setup that connects is then recovered like any link (restarts unbounded).
    sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
    sim.link_state(a, &call_id, "bob", b, LinkState::Connected);
    sim.link_state(a, &call_id, "bob", b, LinkState::Failed);
    sim.run_for(3 * RESTART_RETRY_MS + 100);
    assert!(restarts(&sim, a) >= 4, "{}", restarts(&sim, a));
}
