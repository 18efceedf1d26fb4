//! Connection faults against rcall-server's own delivery core (issues 10 and 15): drops, silent
//! losses, closed tabs and server restarts, each played out on the virtual clock. The last tests
//! are the property test's findings on the real core, written out as plain sequences so they do
//! not depend on its random generator.

mod common;

use rcall_sim::{DeviceId, Logged, Sim, CLEAN_GRACE_MS, CLIENT_DEAD_AFTER_MS, LOST_GRACE_MS, SERVER_DEAD_AFTER_MS};
use rtc_core::engine::{Command, TrackKind, SELF_CUTOFF_MS};
use rtc_core::types::{end_reason, error_code, MediaType, SessionState};

fn connected() -> (Sim, DeviceId, DeviceId, String) {
    common::connected(MediaType::AudioVideo)
}

fn keeping(sim: &Sim, dev: DeviceId, call_id: &str) -> bool {
    sim.engine(dev).session(call_id).is_some_and(|v| v.state == SessionState::Keeping)
}

fn assert_exactly_once(sim: &Sim) {
    let r = sim.delivery_report();
    assert!(r.duplicates.is_empty() && r.missing.is_empty() && r.unsent.is_empty(), "{r:?}");
}

#[test]
fn a_short_drop_keeps_the_call_and_what_was_sent_meanwhile_arrives_once() {
    let (mut sim, a, b, call_id) = connected();
    assert!(sim.drop_connection(b, 2_000));
    // Bob mutes while disconnected; alice mutes too (her message waits at the server).
    let mute_b = sim.command(b, Command::MuteTrack { call_id: call_id.clone(), kind: TrackKind::Audio, muted: true });
    sim.command(a, Command::MuteTrack { call_id: call_id.clone(), kind: TrackKind::Video, muted: true });
    sim.run_for(1_000);
    assert!(!sim.timeline(a).iter().any(|l| l.starts_with("AudioMute(bob")), "not before the reconnect");
    sim.run_for(2_000);
    assert_eq!(sim.result(b, mute_b).unwrap().0, error_code::SUCCESS);
    assert_eq!(sim.timeline(a).iter().filter(|l| *l == "AudioMute(bob,muted)").count(), 1);
    assert_eq!(sim.timeline(b).iter().filter(|l| *l == "VideoMute(alice,muted)").count(), 1);
    sim.run_for(60_000);
    assert!(keeping(&sim, a, &call_id) && keeping(&sim, b, &call_id));
    assert!(sim.verdicts.is_empty());
    assert_exactly_once(&sim);
}

#[test]
fn a_drop_longer_than_the_grace_ends_the_call_by_the_servers_verdict() {
    let (mut sim, a, b, call_id) = connected();
    let t = sim.now();
    assert!(sim.drop_connection(b, 8_000));
    sim.run_for(20_000);
    // Alice: bob's hangup, sent by the server on his behalf once the grace ran out.
    let (at, reason) = sim.close_at(a, &call_id).expect("alice's call ended");
    assert_eq!(reason, end_reason::REMOTE_NETWORK_ERROR);
    assert!(at >= t + LOST_GRACE_MS && at <= t + LOST_GRACE_MS + 2 * sim.latency, "{at} vs {t}");
    assert!(sim.timeline(a).contains(&"Hungup(bob,17)".to_string()));
    // Bob: the verdict waits for him and ends his session with 7 on reconnect, nothing sent back.
    let (at, reason) = sim.close_at(b, &call_id).expect("bob's call ended");
    assert_eq!(reason, end_reason::NETWORK_ERROR);
    assert!(at >= t + 8_000 && at <= t + 8_000 + 3 * sim.latency);
    assert!(!sim.sent(b).iter().any(|s| s.content.object_name() == Some("RC:VCHangup")));
    assert_eq!(sim.verdicts.len(), 1);
    assert_exactly_once(&sim);
}

#[test]
fn a_silent_loss_is_found_by_the_server_and_by_the_client_cut_off() {
    // 25 s: the server ends the call at 15 + 5 s; bob finds out on reconnect.
    let (mut sim, a, b, call_id) = connected();
    let t = sim.now();
    assert!(sim.silent_loss(b, 25_000));
    sim.run_for(CLIENT_DEAD_AFTER_MS + 1);
    assert!(sim.log(b).iter().any(|(at, l)| matches!(l, Logged::Link { up: false }) && *at == t + CLIENT_DEAD_AFTER_MS));
    sim.run_for(40_000);
    let (at, reason) = sim.close_at(a, &call_id).unwrap();
    assert_eq!(reason, end_reason::REMOTE_NETWORK_ERROR);
    let verdict_at = t + SERVER_DEAD_AFTER_MS + LOST_GRACE_MS;
    assert!(at >= verdict_at && at <= verdict_at + 2 * sim.latency);
    let (at, reason) = sim.close_at(b, &call_id).unwrap();
    assert_eq!(reason, end_reason::NETWORK_ERROR);
    assert!(at > t + 25_000 && at < t + SELF_CUTOFF_MS, "by the verdict, before its own cut-off");
    assert_exactly_once(&sim);

    // 60 s: bob's own cut-off ends it at 30 s (its Hangup(7) and the verdict both reach alice,
    // who already ended at 20 s).
    let (mut sim, a, b, call_id) = connected();
    let t = sim.now();
    assert!(sim.silent_loss(b, 60_000));
    sim.run_for(90_000);
    assert_eq!(sim.close_at(b, &call_id), Some((t + SELF_CUTOFF_MS, end_reason::NETWORK_ERROR)));
    assert_eq!(sim.close_at(a, &call_id).unwrap().1, end_reason::REMOTE_NETWORK_ERROR);
    assert_eq!(sim.timeline(a).iter().filter(|l| l.starts_with("Close(")).count(), 1);
    assert!(sim.checks().iter().all(|c| c.ok) && !sim.checks().is_empty(), "{:?}", sim.checks());
    assert_exactly_once(&sim);
}

#[test]
fn a_closed_tab_ends_its_calls_after_a_second() {
    // Answered: the others see a hangup (13).
    let (mut sim, a, b, call_id) = connected();
    let t = sim.now();
    assert!(sim.close_tab(b));
    sim.run_for(5_000);
    let (at, reason) = sim.close_at(a, &call_id).unwrap();
    assert_eq!(reason, end_reason::REMOTE_HANGUP);
    assert!(at >= t + CLEAN_GRACE_MS && at <= t + CLEAN_GRACE_MS + 2 * sim.latency);
    // Ringing: the caller closing cancels (11).
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    sim.close_tab(a);
    sim.run_for(2_000);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::REMOTE_CANCEL));
    assert_exactly_once(&sim);
}

#[test]
fn a_server_restart_keeps_calls_and_loses_no_message() {
    let (mut sim, a, b, call_id) = connected();
    // Messages in flight both ways when the server goes down.
    sim.command(a, Command::MuteTrack { call_id: call_id.clone(), kind: TrackKind::Audio, muted: true });
    sim.command(b, Command::MuteTrack { call_id: call_id.clone(), kind: TrackKind::Audio, muted: true });
    sim.run_for(sim.latency + 1); // reached the server; their deliveries are on the way
    sim.restart_server();
    sim.run_for(10_000);
    assert!(keeping(&sim, a, &call_id) && keeping(&sim, b, &call_id));
    assert_eq!(sim.timeline(a).iter().filter(|l| *l == "AudioMute(bob,muted)").count(), 1);
    assert_eq!(sim.timeline(b).iter().filter(|l| *l == "AudioMute(alice,muted)").count(), 1);
    // Their results were lost with the server, so both were sent again; the restarted server
    // still knew them (each device's accepted client_seqs are stored when its connection
    // closes) and confirmed them without routing them again.
    assert!(sim.delivery_report().dropped_by_server >= 2, "{:?}", sim.delivery_report());
    // A hangup sent in the restart window arrives once.
    sim.restart_server();
    sim.hangup(a, &call_id);
    sim.run_for(10_000);
    assert_eq!(sim.close_at(b, &call_id).unwrap().1, end_reason::REMOTE_HANGUP);
    assert!(sim.verdicts.is_empty());
    assert_exactly_once(&sim);
}

#[test]
fn an_accept_delayed_past_the_callers_ring_timeout_is_answered_with_a_hangup() {
    // Alice calls bob and loses her connection silently just before her ring timer runs out;
    // bob answers meanwhile (the server takes it), alice's timer gives up on him (silently, C.4).
    let mut sim = Sim::new();
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    sim.run_for(55_000);
    assert!(sim.silent_loss(a, 12_000));
    let accept = sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.result(b, accept).unwrap().0, error_code::SUCCESS);
    assert!(keeping(&sim, b, &call_id));
    sim.run_for(5_000);
    assert_eq!(sim.close_reason(a, &call_id), Some(end_reason::REMOTE_NO_RESPONSE));
    // Alice reconnects, finds bob's Accept and tells him: he is not left alone in the call.
    sim.run_for(20_000);
    assert_eq!(sim.close_reason(b, &call_id), Some(end_reason::NO_RESPONSE));
    let late: Vec<_> =
        sim.sent(a).iter().filter(|s| s.content.object_name() == Some("RC:VCHangup")).map(|s| s.directional_user_ids.clone()).collect();
    assert_eq!(late, [vec!["bob".to_string()]]);
    assert!(sim.verdicts.is_empty());
    assert_exactly_once(&sim);
}

#[test]
fn a_group_member_whose_accept_was_delayed_past_its_ring_timeout_is_taken_back() {
    let mut sim = Sim::new();
    let (a, b, c) = (sim.add_device("a"), sim.add_device("b"), sim.add_device("c"));
    let call_id = sim.dial_group(a, "g", &["b", "c"], MediaType::Audio);
    sim.accept(b, &call_id);
    sim.run_for(54_000);
    // c answers into a connection that just died silently: its Accept waits for the reconnect,
    // and a and b give up on c meanwhile.
    assert!(sim.silent_loss(c, 8_000));
    sim.accept(c, &call_id);
    sim.run_for(7_000);
    assert!(sim.timeline(a).contains(&"Hungup(c,15)".to_string()));
    sim.run_for(10_000);
    for dev in [a, b] {
        let line = sim.timeline(dev);
        let back = line.iter().position(|l| l == "Hungup(c,15)").unwrap();
        assert!(
            line[back..].contains(&"Accept(c)".to_string()) && line[back..].contains(&"Track(c/Audio)".to_string()),
            "device {dev}: {line:?}"
        );
    }
    for dev in [a, b, c] {
        let view = sim.engine(dev).session(&call_id).unwrap();
        assert!(view.users.iter().all(|u| u.state == rtc_core::types::UserState::Keeping), "device {dev}: {view:?}");
    }
    assert_exactly_once(&sim);
}

/// Seed 8: a device away while its sibling was live missed nothing when the server restarted
/// before it came back (the window, where such messages wait, is memory: the shutdown stores it).
#[test]
fn what_an_away_device_missed_survives_a_restart() {
    let mut sim = Sim::new();
    let _a1 = sim.add_device("ann");
    let a2 = sim.add_device("ann");
    let b = sim.add_device("bo");
    assert!(sim.drop_connection(a2, 30_000));
    sim.run_for(100);
    sim.call(b, "ann", MediaType::Audio);
    sim.run_for(2_000); // ann's first device rings; the second is away
    sim.restart_server();
    sim.run_for(60_000);
    assert!(sim.is_connected(a2));
    assert_exactly_once(&sim);
}

/// Seed 62: a member whose page does not come back after a restart is hung up for (the rooms
/// outlive the restart), so the others are not left in the call with it.
#[test]
fn a_member_that_does_not_come_back_after_a_restart_is_hung_up_for() {
    let (mut sim, a, b, call_id) = connected();
    let t = sim.now();
    sim.restart_server();
    assert!(sim.close_tab(b)); // gone while reconnecting: the server never hears from it again
    sim.run_for(20_000);
    let (at, reason) = sim.close_at(a, &call_id).expect("alice's call ended");
    assert_eq!(reason, end_reason::REMOTE_NETWORK_ERROR);
    assert!(at >= t + LOST_GRACE_MS && at <= t + LOST_GRACE_MS + 2 * sim.latency + 100, "{at}");
    assert_eq!(sim.verdicts.len(), 1);
}

/// Seed 8926: a page that reconnected while its old socket was dead without the server knowing,
/// then closed cleanly, is gone at once (clean grace, hangup), not after the dead socket's
/// ping deadline and the lost grace (network error).
#[test]
fn a_clean_close_after_a_silent_loss_and_reconnect_is_final_at_once() {
    let (mut sim, a, b, call_id) = connected();
    assert!(sim.silent_loss(b, 1_000));
    sim.run_for(CLIENT_DEAD_AFTER_MS + sim.reconnect_delay + 500); // b is back; the server still holds its dead socket
    assert!(sim.is_connected(b));
    let t = sim.now();
    assert!(sim.close_tab(b));
    sim.run_for(30_000);
    let (at, reason) = sim.close_at(a, &call_id).expect("alice's call ended");
    assert_eq!(reason, end_reason::REMOTE_HANGUP);
    assert!(at <= t + CLEAN_GRACE_MS + 2 * sim.latency + 100, "at {at}, closed at {t}");
}

// ----- several nodes (issue 15) ---------------------------------------------------------------

/// Found by the cluster property runs (seed 101): a device connecting to a node where another
/// device of its user is already live read a message from the mailbox before that message's
/// live copy reached the node; the replay marked the message as here for the whole user, so
/// the live copy was dropped for the other device too, which never got it.
#[test]
fn a_sibling_connecting_on_the_same_node_does_not_swallow_a_live_copy() {
    let mut sim = Sim::new();
    sim.cluster(2);
    sim.bus_latency = 20;
    let cy = sim.add_device("cy"); // node 0
    let ann_a = sim.add_device("ann"); // node 1
    let ann_b = sim.add_device("ann"); // node 0
    assert_eq!((sim.node_of(cy), sim.node_of(ann_a), sim.node_of(ann_b)), (Some(0), Some(1), Some(1 - 1)));
    sim.run_for(100);
    // ann's second device reconnects to ann_a's node right after cy's invite was routed
    // (10 ms up), before its publish reached that node (20 ms later).
    assert!(sim.drop_connection(ann_b, 15));
    sim.connect_to(ann_b, 1);
    let call = sim.call(cy, "ann", MediaType::Audio);
    sim.run_for(1_000);
    assert_eq!(sim.node_of(ann_b), Some(1));
    assert!(sim.result(cy, call).is_some_and(|(code, _)| code == error_code::SUCCESS));
    assert!(sim.incoming(ann_b).is_some(), "the replay has it");
    assert!(sim.incoming(ann_a).is_some(), "the live copy reached the device that was already live");
    assert_exactly_once(&sim);
}

/// A node dies between admitting a message and hearing back from the route script (which
/// Redis ran): the recipient on another node gets it once; the sender resumes on the other
/// node, resends it, and is confirmed as for a duplicate.
#[test]
fn a_node_killed_with_a_route_in_flight_delivers_once_and_confirms_the_resend() {
    let mut sim = Sim::new();
    sim.cluster(2);
    sim.redis_latency = 5;
    sim.bus_latency = 5;
    let alice = sim.add_device("alice"); // node 0
    let bob = sim.add_device("bob"); // node 1
    sim.run_for(100);
    let call = sim.call(alice, "bob", MediaType::Audio);
    sim.run_for(12); // admitted on node 0 at +10; its script runs at +15
    sim.kill_node(0);
    sim.run_for(3_000);
    assert_eq!(sim.node_of(alice), Some(1));
    assert!(sim.result(alice, call).is_some_and(|(code, _)| code == error_code::SUCCESS));
    assert!(sim.incoming(bob).is_some());
    let r = sim.delivery_report();
    assert!(r.dropped_by_server >= 1, "the resend was a duplicate: {r:?}");
    assert_exactly_once(&sim);
}
