//! Runs CallLib flows on the call simulator and prints what each app would see — no browser,
//! no network, no waiting: 60 s of ringing take microseconds.
//!
//! `cargo run -p rtc-core --example simulate_call`
//!
//! Use the same pattern in your own tests to check how your call logic reacts to busy lines,
//! timeouts, a second device answering, or a group member leaving.

use rcall_sim::Sim;
use rtc_core::engine::Command;
use rtc_core::types::MediaType;

fn main() {
    // 1. Alice calls Bob, who has two devices; his phone answers.
    let mut sim = Sim::new();
    let alice = sim.add_device("alice");
    let bob_laptop = sim.add_device("bob");
    let bob_phone = sim.add_device("bob");
    let call = sim.call(alice, "bob", MediaType::AudioVideo);
    sim.run_for(500);
    let call_id = sim.result(alice, call).and_then(|(_, id)| id).expect("call placed");
    sim.accept(bob_phone, &call_id);
    sim.run_for(5_000);
    sim.hangup(alice, &call_id);
    sim.run_for(500);
    print("alice", sim.timeline(alice));
    print("bob (laptop)", sim.timeline(bob_laptop));
    print("bob (phone)", sim.timeline(bob_phone));

    // 2. A group call where nobody answers Carol; Dave leaves after a while.
    let mut sim = Sim::new();
    let (a, c, d) = (sim.add_device("ann"), sim.add_device("carol"), sim.add_device("dave"));
    let cmd = sim.call_in_group(a, "team", &["carol", "dave"], MediaType::Audio);
    sim.run_for(100);
    let id = sim.result(a, cmd).and_then(|(_, id)| id).expect("call placed");
    sim.accept(d, &id);
    sim.run_for(61_000); // Carol's 60 s ring timeout passes
    sim.command(d, Command::Hangup { call_id: id });
    sim.run_for(100);
    print("ann", sim.timeline(a));
    print("carol", sim.timeline(c));
    print("dave", sim.timeline(d));

    // 3. Faults: Erin's connection drops for 2 s (the call goes on, her mute arrives once she is
    //    back); then her tab closes, and the server ends her part for Frank a second later.
    let mut sim = Sim::new();
    let (e, f) = (sim.add_device("erin"), sim.add_device("frank"));
    let cmd = sim.call(e, "frank", MediaType::Audio);
    sim.run_for(100);
    let id = sim.result(e, cmd).and_then(|(_, id)| id).expect("call placed");
    sim.accept(f, &id);
    sim.run_for(1_000);
    sim.drop_connection(e, 2_000);
    sim.command(e, Command::MuteTrack { call_id: id.clone(), kind: rtc_core::engine::TrackKind::Audio, muted: true });
    sim.run_for(5_000);
    sim.close_tab(e);
    sim.run_for(2_000);
    print("erin", sim.timeline(e));
    print("frank", sim.timeline(f));
}

fn print(who: &str, timeline: Vec<String>) {
    println!("{who:>13}: {}", timeline.join(" → "));
}
