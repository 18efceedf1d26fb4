//! Random runs of several engines through the simulated server: random commands, delays,
//! jitter, timeouts and (in some runs) lost deliveries. Every run must keep CallLib's
//! invariants (spec C.14); loss-free runs must also end in agreement.
//!
//! Deterministic: each run is a seed. A run is drawn as a list of named steps
//! (`common/steps.rs`); a failing one is cut down to the fewest steps that still fail and
//! printed as a test to paste into `regressions.rs`, which replays it without this generator.
//! `RCALL_PROP_RUNS` sets the count; `RCALL_PROP_SEED` replays one run with its logs and prints
//! its steps (exact: the run as drawn).

mod common;

use common::live_calls;
use common::steps::{apply, call_number, check, others, play, shrink, shrink_by, source, start, Mode, Run, Seen, Step, Trace};
use rcall_sim::{DeviceId, Sim};
use rtc_core::engine::{TrackKind, VideoLayer};
use rtc_core::types::MediaType;

fn pick<T: Clone>(sim: &mut Sim, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[(sim.random() % items.len() as u64) as usize].clone())
    }
}

/// Draws a run for `seed` on `nodes` nodes, with faults among the commands or without, and
/// plays it as it draws: the simulator, its devices, what its faults were and the run drawn
/// (exact: replaying it draws the same numbers, so it is this very run).
fn generate(seed: u64, nodes: usize, faults: bool) -> (Sim, Vec<DeviceId>, Trace, Run) {
    let mut sim = Sim::new();
    sim.seed(seed);
    let mut run = Run { seed, nodes, exact: true, ..Run::default() };
    if nodes > 1 {
        run.bus_latency = (sim.random() % 25) as i64;
        run.rooms_latency = (sim.random() % 25) as i64;
        // Half the runs with Redis hops (async routes, acks and replays), half without.
        run.redis_latency = if sim.random().is_multiple_of(2) { Some((sim.random() % 8) as i64) } else { None };
        // Paged replays (1–3 entries a page, or all at once), from the seed: no draw, so the
        // runs' other draws are the runs they were.
        run.replay_page = [0, 1, 2, 3][(seed / 2 % 4) as usize];
    }
    run.jitter = (sim.random() % 40) as i64;
    if faults {
        run.reconnect_delay = Some(100 + (sim.random() % 2_000) as i64);
    } else {
        run.lossy = sim.random().is_multiple_of(4);
    }
    let devs = start(&mut sim, &run, Mode::Live);
    let mut trace = Trace::default();
    let count = 10 + sim.random() % 30;
    for _ in 0..count {
        let step = draw(&mut sim, &devs, nodes, faults);
        run.steps.push(apply(&mut sim, step, Mode::Live, &mut trace));
    }
    (sim, devs, trace, run)
}

/// One step of a run, drawn: calls, group calls, accepts, hangups, invites, mutes, time
/// passing; in fault runs drops, silent losses, closed tabs and restarts (node kills and
/// subscriber gaps on several nodes). `Idle` when what it drew does nothing.
fn draw(sim: &mut Sim, devs: &[DeviceId], nodes: usize, faults: bool) -> Step {
    use Step::*;
    let dev = pick(sim, devs).unwrap();
    if sim.is_closed(dev) {
        return Idle(1);
    }
    let others = others(sim, dev);
    let media = if sim.random().is_multiple_of(2) { MediaType::Audio } else { MediaType::AudioVideo };
    let calls = live_calls(sim, dev);
    let choice = sim.random() % if faults { 18 } else { 10 };
    let step = match choice {
        0 | 1 => Some(Call(dev, pick(sim, &others).unwrap(), media)),
        2 => Some(Group(dev, media)),
        3 | 4 => {
            let me = sim.engine(dev).self_id().to_string();
            let ringing: Vec<String> =
                calls.into_iter().filter(|c| sim.engine(dev).session(c).is_some_and(|v| v.caller_id != me)).collect();
            pick(sim, &ringing).map(|c| Accept(dev, call_number(&c), 0)) // (the wait is drawn as it is played)
        }
        5 => pick(sim, &calls).map(|c| Hangup(dev, call_number(&c))),
        6 => pick(sim, &calls).map(|c| Invite(dev, call_number(&c), pick(sim, &others).unwrap())),
        7 => pick(sim, &calls).map(|c| {
            let n = call_number(&c);
            if faults {
                let kind = if sim.random().is_multiple_of(2) { TrackKind::Audio } else { TrackKind::Video };
                Mute(dev, n, kind, sim.random().is_multiple_of(2))
            } else {
                match sim.random() % 4 {
                    0 => Descend(dev, n),
                    3 => {
                        let who = pick(sim, &others).unwrap();
                        Layer(dev, n, who, [VideoLayer::High, VideoLayer::Low, VideoLayer::Auto][(sim.random() % 3) as usize])
                    }
                    k => Mute(dev, n, if k == 1 { TrackKind::Audio } else { TrackKind::Video }, sim.random().is_multiple_of(2)),
                }
            }
        }),
        8 => Some(Wait((sim.random() % 70_000) as i64)),
        9 | 10 if faults => Some(Drop(dev, 100 + (sim.random() % 12_000) as i64)),
        11 if faults => Some(Silent(dev, 1_000 + (sim.random() % 45_000) as i64)),
        13 if faults && nodes > 1 => sim.random().is_multiple_of(3).then(|| {
            let node = (sim.random() % nodes as u64) as usize;
            if sim.random().is_multiple_of(2) {
                KillNode(node)
            } else {
                BusGap(node, 1 + (sim.random() % 3_000) as i64)
            }
        }),
        12 if faults => sim.random().is_multiple_of(3).then_some(CloseTab(dev)),
        13 if faults => sim.random().is_multiple_of(3).then_some(Restart),
        _ => Some(Wait((sim.random() % if faults { 3_000 } else { 300 }) as i64)),
    };
    // What was drawn for nothing: the device, the media, the choice, and a coin for a fault.
    step.unwrap_or(Idle(if choice >= 12 { 4 } else { 3 }))
}

/// One random run, checked at its end; a failure is shrunk and printed, then fails the test.
fn run(seed: u64, nodes: usize, faults: bool, seen: &mut Seen) {
    let (mut sim, devs, trace, run) = generate(seed, nodes, faults);
    if std::env::var("RCALL_PROP_SEED").is_ok() {
        let kind = if faults { "faults" } else { "run" };
        println!("seed {seed}'s run ({nodes} node(s)), exact:\n{}", source(&run, &format!("seed_{seed}_{kind}")));
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut sim, &devs, &run, &trace, seen)));
    if let Err(e) = outcome {
        let min = shrink(&run);
        let kind = if faults { "fault run" } else { "run" };
        eprintln!(
            "seed {seed} ({kind}, {nodes} node(s)) failed: {}\nits run cut down to {} steps; paste into crates/sim/tests/regressions.rs:\n\n/// Seed {seed} ({kind}): WHAT IT FOUND.\n{}",
            common::steps::panic_message(&*e),
            min.steps.len(),
            source(&min, &format!("seed_{seed}"))
        );
        std::panic::resume_unwind(e);
    }
}

/// The seeds a property test runs: `RCALL_PROP_SEED` alone when set (to replay one run with its
/// logs), else 1..=`RCALL_PROP_RUNS` (default `default_runs`). Seeds that once failed are kept
/// as their runs' steps in `regressions.rs`, which do not depend on this generator. `sweep`: a
/// full run, whose coverage may be judged.
struct Seeds {
    runs: u64,
    sweep: bool,
    list: Vec<u64>,
}

fn seeds(default_runs: u64) -> Seeds {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let runs = env("RCALL_PROP_RUNS").unwrap_or(default_runs);
    match env("RCALL_PROP_SEED") {
        Some(seed) => Seeds { runs, sweep: false, list: vec![seed] },
        None => Seeds { runs, sweep: true, list: (1..=runs).collect() },
    }
}

#[test]
fn random_runs_keep_the_invariants() {
    let Seeds { runs, sweep, list } = seeds(400);
    let mut seen = Seen::default();
    for seed in list {
        run(seed, 1, false, &mut seen);
    }
    println!(
        "{runs} runs: {} accepts, {} closes, {} merges, {} member modifications",
        seen.connected, seen.closes, seen.merged, seen.member_modify
    );
    if sweep && runs >= 100 {
        assert!(seen.connected > runs as usize / 2 && seen.closes > runs as usize, "runs exercised too little");
        assert!(seen.member_modify > 0, "no mid-call invite was exercised");
    }
}

// ----- connection faults (issue 10) -------------------------------------------------------------

#[test]
fn random_faults_keep_the_invariants_and_deliver_exactly_once() {
    let Seeds { runs, sweep, list } = seeds(300);
    let mut seen = Seen::default();
    for seed in list {
        run(seed, 1, true, &mut seen);
    }
    println!(
        "{runs} fault runs: {} drops, {} silent losses, {} closed tabs, {} restarts, {} verdicts, {} cut-off and {} verdict checks, {} resends dropped (by the server or receivers), {} accepts",
        seen.drops, seen.silent, seen.closed, seen.restarts, seen.verdicts, seen.cutoff_checks, seen.verdict_checks, seen.repeats_dropped, seen.connected
    );
    if sweep && runs >= 100 {
        assert!(seen.drops > 0 && seen.silent > 0 && seen.closed > 0 && seen.restarts > 0, "a fault kind was never exercised");
        assert!(seen.verdicts > 0 && seen.cutoff_checks > 0 && seen.verdict_checks > 0, "no verdict or cut-off was checked");
        assert!(seen.repeats_dropped > 0, "no resend was ever deduplicated");
    }
}

// ----- several nodes (issue 15) ---------------------------------------------------------------

#[test]
fn random_cluster_runs_keep_the_invariants_and_deliver_exactly_once() {
    // Each seed runs twice on 2 or 3 nodes over the model of the Redis side: once without
    // faults and once with drops, silent losses, closed tabs and node kills; both keep every
    // check of the single node's runs (call outcomes included: the nodes run the replicated
    // rooms, so they decide as one node would).
    let Seeds { runs, sweep, list } = seeds(200);
    let (mut seen, mut fault_seen) = (Seen::default(), Seen::default());
    for seed in list {
        let nodes = 2 + (seed % 2) as usize;
        run(seed, nodes, false, &mut seen);
        run(seed, nodes, true, &mut fault_seen);
    }
    println!(
        "{runs} cluster runs: {} accepts, {} closes, {} member modifications, {} rechecks after the replica caught up ({} admitted); with faults: {} drops, {} silent losses, {} closed tabs, {} node kills, {} subscriber gaps, {} replay pages after a full one, {} verdicts, {} verdict checks, {} resends dropped, {} accepts, {} rechecks",
        seen.connected, seen.closes, seen.member_modify, seen.rechecks, seen.rechecks_admitted, fault_seen.drops, fault_seen.silent, fault_seen.closed, fault_seen.node_kills, fault_seen.bus_gaps, fault_seen.replay_pages, fault_seen.verdicts, fault_seen.verdict_checks, fault_seen.repeats_dropped, fault_seen.connected, fault_seen.rechecks
    );
    if sweep && runs >= 100 {
        assert!(seen.connected > runs as usize / 2 && seen.closes > runs as usize, "runs exercised too little");
        assert!(
            fault_seen.drops > 0
                && fault_seen.silent > 0
                && fault_seen.node_kills > 0
                && fault_seen.closed > 0
                && fault_seen.bus_gaps > 0
                && fault_seen.replay_pages > 0,
            "a fault kind was never exercised"
        );
        assert!(fault_seen.verdicts > 0 && fault_seen.verdict_checks > 0, "no grace ran out in cluster mode");
        assert!(fault_seen.repeats_dropped > 0, "no resend was ever deduplicated");
    }
}

// ----- the steps themselves -------------------------------------------------------------------

/// A drawn run replayed from its steps is that very run (what `regressions.rs` relies on for
/// its exact runs): every device's timeline, the verdicts and the clock come out the same.
#[test]
fn drawn_runs_replay_exactly_from_their_steps() {
    for seed in 1..=40 {
        for (nodes, faults) in [(1, false), (1, true), (2 + (seed % 2) as usize, false), (2 + (seed % 2) as usize, true)] {
            let (drawn, devs, _, run) = generate(seed, nodes, faults);
            let (replayed, ..) = play(&run);
            for &dev in &devs {
                assert_eq!(drawn.timeline(dev), replayed.timeline(dev), "seed {seed} ({nodes} node(s), faults {faults}): device {dev}");
            }
            assert_eq!((drawn.now(), &drawn.verdicts), (replayed.now(), &replayed.verdicts), "seed {seed}");
        }
    }
}

/// Shrinking keeps what fails and drops the rest: here "fails" is a stand-in failure (ann's
/// first device calls cy and a restart follows), so the minimal run is known.
#[test]
fn a_failing_run_shrinks_to_the_steps_that_fail() {
    use Step::*;
    let (.., run) = generate(7, 1, true);
    let mut run = Run { steps: run.steps.clone(), ..run };
    run.steps.insert(3, Call(0, "cy", MediaType::Audio));
    run.steps.insert(run.steps.len() - 2, Restart);
    let fails = |r: &Run| {
        let call = r.steps.iter().position(|s| *s == Call(0, "cy", MediaType::Audio));
        call.is_some_and(|i| r.steps[i..].contains(&Restart))
    };
    let min = shrink_by(&run, fails);
    assert_eq!(min.steps, [Call(0, "cy", MediaType::Audio), Restart]);
    assert!(!min.exact, "a plain replay");
    let printed = source(&min, "seed_7");
    assert!(printed.contains("steps: vec![\n            Call(0, \"cy\", A),\n            Restart,\n        ],"), "{printed}");
}
