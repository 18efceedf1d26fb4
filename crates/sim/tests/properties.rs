//! Random runs of several engines through the simulated server: random commands, delays,
//! jitter, timeouts and (in some runs) lost deliveries. Every run must keep CallLib's
//! invariants (spec C.14); loss-free runs must also end in agreement.
//!
//! Deterministic: each run is a seed; a failure names it. `RCALL_PROP_RUNS` sets the count.

mod common;

use common::{check_agreement, check_end_reasons, check_invariants, live_calls};
use rcall_sim::{DeviceId, Sim, CLEAN_GRACE_MS, HEARTBEAT_MS, LOST_GRACE_MS, SERVER_DEAD_AFTER_MS};
use rtc_core::engine::{Command, TrackKind};
use rtc_core::types::MediaType;

const USERS: [&str; 4] = ["ann", "bo", "cy", "ann"]; // "ann" has two devices

fn pick<T: Clone>(sim: &mut Sim, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[(sim.random() % items.len() as u64) as usize].clone())
    }
}

/// What one run exercised, to make sure the runs are not vacuous.
#[derive(Default)]
struct Seen {
    connected: usize,
    closes: usize,
    merged: usize,
    member_modify: usize,
    /// Cluster runs: call messages a replica behind the rooms log refused, checked again once
    /// it caught up, and how many of those went through.
    rechecks: usize,
    rechecks_admitted: usize,
}

/// The random steps both property tests take (choices 0–6 and 8 of their draw): calls, group
/// calls, accepts, hangups, invites and time passing. One place, so both stay alike; each
/// draws from the simulator's random source exactly as before.
fn common_step(sim: &mut Sim, dev: DeviceId, others: &[&str], media: MediaType, choice: u64) {
    match choice {
        0 | 1 => {
            let to = pick(sim, others).unwrap();
            sim.call(dev, to, media);
        }
        2 => {
            sim.call_in_group(dev, "g", others, media);
        }
        3 | 4 => {
            let me = sim.engine(dev).self_id().to_string();
            let ringing: Vec<String> =
                live_calls(sim, dev).into_iter().filter(|c| sim.engine(dev).session(c).is_some_and(|v| v.caller_id != me)).collect();
            if let Some(c) = pick(sim, &ringing) {
                sim.accept(dev, &c);
                let ms = (sim.random() % 500) as i64;
                sim.run_for(ms);
            }
        }
        5 => {
            if let Some(c) = {
                let calls = live_calls(sim, dev);
                pick(sim, &calls)
            } {
                sim.hangup(dev, &c);
            }
        }
        6 => {
            if let Some(c) = {
                let calls = live_calls(sim, dev);
                pick(sim, &calls)
            } {
                let who = pick(sim, others).unwrap().to_string();
                sim.command(
                    dev,
                    Command::Invite { call_id: c, user_ids: vec![who], extra: String::new(), push_title: None, push_content: None },
                );
            }
        }
        8 => {
            let ms = (sim.random() % 70_000) as i64;
            sim.run_for(ms);
        }
        _ => unreachable!("not a common step: {choice}"),
    }
}

/// Cluster mode for a run: `nodes` nodes (1 = today's single node, untouched) with channel
/// publishes taking up to `bus_latency` ms and rooms events up to `rooms_latency` ms.
fn configure(sim: &mut Sim, nodes: usize) {
    if nodes > 1 {
        sim.cluster(nodes);
        sim.bus_latency = (sim.random() % 25) as i64;
        sim.rooms_latency = (sim.random() % 25) as i64;
        // Half the runs with Redis hops (async routes, acks and replays), half without.
        sim.redis_latency = if sim.random().is_multiple_of(2) { (sim.random() % 8) as i64 } else { 0 };
    }
}

fn run(seed: u64, seen: &mut Seen, nodes: usize) {
    let mut sim = Sim::new();
    sim.seed(seed);
    configure(&mut sim, nodes);
    sim.jitter = (sim.random() % 40) as i64;
    let lossy = sim.random().is_multiple_of(4);
    if lossy {
        sim.loss = 0.05;
    }
    let devs: Vec<DeviceId> = USERS.iter().map(|u| sim.add_device(u)).collect();
    let steps = 10 + sim.random() % 30;
    for _ in 0..steps {
        let dev = pick(&mut sim, &devs).unwrap();
        let me = sim.engine(dev).self_id().to_string();
        let others: Vec<&str> = ["ann", "bo", "cy"].into_iter().filter(|u| *u != me).collect();
        let media = if sim.random().is_multiple_of(2) { MediaType::Audio } else { MediaType::AudioVideo };
        match sim.random() % 10 {
            n @ (0..=6 | 8) => common_step(&mut sim, dev, &others, media, n),
            7 => {
                if let Some(c) = {
                    let calls = live_calls(&sim, dev);
                    pick(&mut sim, &calls)
                } {
                    let cmd = match sim.random() % 3 {
                        0 => Command::DescendAbility { call_id: c },
                        n => {
                            let kind = if n == 1 { TrackKind::Audio } else { TrackKind::Video };
                            Command::MuteTrack { call_id: c, kind, muted: sim.random().is_multiple_of(2) }
                        }
                    };
                    sim.command(dev, cmd);
                }
            }
            _ => {
                let ms = (sim.random() % 300) as i64;
                sim.run_for(ms);
            }
        }
    }
    sim.run_for(2_000);
    if std::env::var("RCALL_PROP_SEED").is_ok() {
        for &dev in &devs {
            println!("device {dev} ({}):", sim.engine(dev).self_id());
            for (t, l) in sim.log(dev) {
                println!("  {t} {l:?}");
            }
        }
    }
    if !lossy {
        check_agreement(&sim, &devs, seed);
    }
    // Everyone hangs up whatever is left; then nothing may remain anywhere.
    for &dev in &devs {
        for c in live_calls(&sim, dev) {
            sim.hangup(dev, &c);
        }
    }
    sim.run_for(200_000);
    seen.rechecks += sim.rechecks;
    seen.rechecks_admitted += sim.rechecks_admitted;
    for &dev in &devs {
        if !lossy {
            assert!(!sim.engine(dev).has_live_call(), "seed {seed}: device {dev} still in a call");
        }
        check_invariants(&sim, dev, seed);
    }
    if !lossy {
        check_end_reasons(&sim, &devs, seed, false);
    }
    for &dev in &devs {
        for line in sim.timeline(dev) {
            match line.as_str() {
                l if l.starts_with("Accept(") => seen.connected += 1,
                l if l.starts_with("Close(") => seen.closes += 1,
                "Merged" => seen.merged += 1,
                l if l.starts_with("MemberModify(") => seen.member_modify += 1,
                _ => {}
            }
        }
    }
}

/// The seeds a property test runs: `RCALL_PROP_SEED` alone when set (to replay one run with its
/// logs), else 1..=`RCALL_PROP_RUNS` (default `default_runs`) followed by `pinned`, seeds that
/// once failed and stay in every run (each is also written out as a plain sequence of steps,
/// which does not depend on this generator: `regressions.rs`, and `faults.rs` for 8, 62, 8926
/// and 101). `sweep`: a full run, whose coverage may be judged.
struct Seeds {
    runs: u64,
    sweep: bool,
    list: Vec<u64>,
}

fn seeds(default_runs: u64, pinned: &[u64]) -> Seeds {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let runs = env("RCALL_PROP_RUNS").unwrap_or(default_runs);
    match env("RCALL_PROP_SEED") {
        Some(seed) => Seeds { runs, sweep: false, list: vec![seed] },
        None => Seeds { runs, sweep: true, list: (1..=runs).chain(pinned.iter().copied()).collect() },
    }
}

#[test]
fn random_runs_keep_the_invariants() {
    // Seeds that once failed in long runs, kept in every run:
    // - 84119: a device's uplink reordered by the simulator (fixed in the simulator);
    // - 39885: an answer in the callee's last moment crossed the caller's ring timeout (fixed
    //   by ANSWER_MARGIN_MS).
    let Seeds { runs, sweep, list } = seeds(400, &[84_119, 39_885]);
    let mut seen = Seen::default();
    for seed in list {
        run(seed, &mut seen, 1);
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

/// What the fault runs exercised.
#[derive(Default)]
struct FaultSeen {
    drops: usize,
    silent: usize,
    closed: usize,
    restarts: usize,
    verdicts: usize,
    cutoff_checks: usize,
    verdict_checks: usize,
    repeats_dropped: usize,
    connected: usize,
    node_kills: usize,
    bus_gaps: usize,
    rechecks: usize,
}

/// Whether a verdict at `at` is on time for a fault at `t` whose grace (with detection) is
/// `after`: exactly then on one node; in cluster mode up to two trips through Redis and the
/// rooms channel later (the `Gone`, then the `GraceOver`).
fn on_time(sim: &Sim, nodes: usize, t: i64, after: i64, at: i64) -> bool {
    let slack = if nodes > 1 { 2 * (sim.redis_latency + sim.rooms_latency) } else { 0 };
    (t + after..=t + after + slack).contains(&at)
}

/// Cluster mode: whether a verdict at `at` may come from node kill `k`: the devices the dead
/// node held are lost once another node took it out (its beats 3 periods late, noticed at the
/// next beat) and reported it (`NodeLost`); the graces it ran are run by that node from then.
fn after_kill(sim: &Sim, k: i64, at: i64) -> bool {
    let slack = 3 * (sim.redis_latency + sim.rooms_latency);
    (k + 2 * HEARTBEAT_MS..=k + 4 * HEARTBEAT_MS + LOST_GRACE_MS + slack).contains(&at)
}

/// One random run with faults among the commands; returns nothing, panics naming the seed.
/// With several `nodes` (cluster mode), restarts give way to node kills.
fn run_faults(seed: u64, seen: &mut FaultSeen, nodes: usize) {
    let mut sim = Sim::new();
    sim.seed(seed);
    configure(&mut sim, nodes);
    sim.jitter = (sim.random() % 40) as i64;
    sim.reconnect_delay = 100 + (sim.random() % 2_000) as i64;
    let devs: Vec<DeviceId> = USERS.iter().map(|u| sim.add_device(u)).collect();
    // Calls the server counted a closed tab in, to be ended by its verdict: (device, call, at, clean).
    let mut gone: Vec<(DeviceId, String, i64, bool)> = Vec::new();
    let mut restarts: Vec<i64> = Vec::new();
    // When each device's connection broke: (time, device, the server's verdict is due this long
    // after unless it comes back: 5 s after a drop, 15 + 5 s after a silent loss).
    let mut breaks: Vec<(i64, DeviceId, i64)> = Vec::new();
    let mut kills: Vec<i64> = Vec::new();
    // Cluster mode: when each subscriber gap ended (the node resynced).
    let mut gap_ends: Vec<i64> = Vec::new();
    let steps = 10 + sim.random() % 30;
    for _ in 0..steps {
        let dev = pick(&mut sim, &devs).unwrap();
        if sim.is_closed(dev) {
            continue;
        }
        let me = sim.engine(dev).self_id().to_string();
        let others: Vec<&str> = ["ann", "bo", "cy"].into_iter().filter(|u| *u != me).collect();
        let media = if sim.random().is_multiple_of(2) { MediaType::Audio } else { MediaType::AudioVideo };
        match sim.random() % 18 {
            n @ (0..=6 | 8) => common_step(&mut sim, dev, &others, media, n),
            7 => {
                if let Some(c) = {
                    let calls = live_calls(&sim, dev);
                    pick(&mut sim, &calls)
                } {
                    let kind = if sim.random().is_multiple_of(2) { TrackKind::Audio } else { TrackKind::Video };
                    let muted = sim.random().is_multiple_of(2);
                    sim.command(dev, Command::MuteTrack { call_id: c, kind, muted });
                }
            }
            9 | 10 => {
                let after = 100 + (sim.random() % 12_000) as i64;
                if sim.drop_connection(dev, after) {
                    seen.drops += 1;
                    breaks.push((sim.now(), dev, LOST_GRACE_MS));
                }
            }
            11 => {
                let duration = 1_000 + (sim.random() % 45_000) as i64;
                if sim.silent_loss(dev, duration) {
                    seen.silent += 1;
                    breaks.push((sim.now(), dev, SERVER_DEAD_AFTER_MS + LOST_GRACE_MS));
                }
            }
            13 if nodes > 1 => {
                if sim.random().is_multiple_of(3) {
                    let node = (sim.random() % nodes as u64) as usize;
                    if sim.random().is_multiple_of(2) {
                        kills.push(sim.now());
                        sim.kill_node(node);
                        seen.node_kills += 1;
                    } else {
                        let gap = 1 + (sim.random() % 3_000) as i64;
                        gap_ends.push(sim.now() + gap);
                        sim.bus_gap(node, gap);
                        seen.bus_gaps += 1;
                    }
                }
            }
            12 => {
                if sim.random().is_multiple_of(3) {
                    let clean = sim.is_connected(dev);
                    let calls: Vec<String> =
                        live_calls(&sim, dev).into_iter().filter(|c| sim.server_participants(c).contains(&dev)).collect();
                    let t = sim.now();
                    sim.close_tab(dev);
                    // 1 s after a clean close; 5 s when its socket was not (yet) up at the server.
                    breaks.push((t, dev, CLEAN_GRACE_MS));
                    breaks.push((t, dev, LOST_GRACE_MS));
                    seen.closed += 1;
                    gone.extend(calls.into_iter().map(|c| (dev, c, t, clean)));
                }
            }
            13 => {
                if sim.random().is_multiple_of(3) {
                    restarts.push(sim.now());
                    sim.restart_server();
                    seen.restarts += 1;
                }
            }
            _ => {
                let ms = (sim.random() % 3_000) as i64;
                sim.run_for(ms);
            }
        }
    }
    // No more faults: everyone reconnects, every timer runs out.
    sim.run_for(60_000);
    sim.run_for(200_000);
    let alive: Vec<DeviceId> = devs.iter().copied().filter(|d| !sim.is_closed(*d)).collect();
    if std::env::var("RCALL_PROP_SEED").is_ok() {
        for &dev in &devs {
            println!("device {dev} ({}{}):", sim.engine(dev).self_id(), if sim.is_closed(dev) { ", closed" } else { "" });
            for (t, l) in sim.log(dev) {
                println!("  {t} {l:?}");
            }
        }
        println!("verdicts: {:?}", sim.verdicts);
        println!("refusals: {:?}", sim.refusals);
        println!("gone: {gone:?} restarts: {restarts:?} breaks: {breaks:?} kills: {kills:?} gap ends: {gap_ends:?}");
    }
    for &dev in &alive {
        assert!(sim.is_connected(dev), "seed {seed}: device {dev} never reconnected");
    }
    // Exactly once: nothing lost, nothing fed twice, everything sent accepted.
    let report = sim.delivery_report();
    assert!(report.duplicates.is_empty(), "seed {seed}: fed twice: {:?}", report.duplicates);
    assert!(report.missing.is_empty(), "seed {seed}: lost: {:?}", report.missing);
    assert!(report.unsent.is_empty(), "seed {seed}: never accepted: {:?}", report.unsent);
    seen.repeats_dropped += report.dropped_by_receivers + report.dropped_by_server;
    // The bounds checked as the faults played out: down for SELF_CUTOFF_MS → no live call;
    // the server's verdict about a gone device → the others no longer count it.
    for c in sim.checks() {
        assert!(c.ok, "seed {seed}: {c:?}");
        match c.what {
            "cutoff" => seen.cutoff_checks += 1,
            _ => seen.verdict_checks += 1,
        }
    }
    // A closed tab's calls are ended by the server on its behalf; a clean close after 1 s.
    // (Without a verdict the call must be over at the server anyway: the others all left it
    // before the grace ran out, e.g. the only callee rejected.)
    for (dev, call, t, clean) in &gone {
        let v = sim.verdicts.iter().find(|(_, d, c, _)| d == dev && c == call);
        let Some((at, ..)) = v else {
            assert!(
                !sim.server_participants(call).contains(dev),
                "seed {seed}: no verdict for closed device {dev} in {call}, still counted in it"
            );
            continue;
        };
        let restarted = restarts.iter().any(|r| r >= t && *r <= t + CLEAN_GRACE_MS);
        let killed = kills.iter().chain(&gap_ends).any(|k| k >= t && *k <= *at);
        if *clean && !restarted && !killed {
            assert!(on_time(&sim, nodes, *t, CLEAN_GRACE_MS, *at), "seed {seed}: verdict for {dev} in {call} at {at}, closed at {t}");
        }
    }
    // Every verdict comes exactly its grace (plus the detection time of a silent loss) after
    // the device's connection broke, or after a restart it did not come back from (cluster
    // mode: after the Redis trips, or after a node kill's takeover).
    // A grace that ran out while its runner's subscribers were away ends when it resyncs; one
    // whose `Gone` it missed starts there then (deadlines are each replica's own clock).
    let resynced = |due: i64, at: i64| {
        let slack = 2 * (sim.redis_latency + sim.rooms_latency);
        let late = |e: i64| [0, CLEAN_GRACE_MS, LOST_GRACE_MS].iter().any(|g| (e + g..=e + g + slack).contains(&at));
        due <= at && gap_ends.iter().any(|e| late(*e))
    };
    for (at, dev, call, _) in &sim.verdicts {
        let on_time = breaks.iter().any(|(t, d, after)| d == dev && (on_time(&sim, nodes, *t, *after, *at) || resynced(t + after, *at)))
            || restarts.iter().any(|r| r + LOST_GRACE_MS == *at)
            || kills.iter().any(|k| after_kill(&sim, *k, *at) || resynced(k + 2 * HEARTBEAT_MS + LOST_GRACE_MS, *at));
        assert!(on_time, "seed {seed}: verdict for {dev} in {call} at {at}: no fault {LOST_GRACE_MS}/{CLEAN_GRACE_MS} ms before");
    }
    seen.verdicts += sim.verdicts.len();
    // Nobody is left alone in a call: every live call is live on another device still there.
    for &dev in &alive {
        for c in live_calls(&sim, dev) {
            let with = alive.iter().any(|&o| o != dev && live_calls(&sim, o).contains(&c));
            assert!(with, "seed {seed}: device {dev} alone in {c}: {:?}", sim.engine(dev).session(&c));
        }
    }
    check_agreement(&sim, &alive, seed);
    for &dev in &alive {
        for c in live_calls(&sim, dev) {
            sim.hangup(dev, &c);
        }
    }
    sim.run_for(200_000);
    seen.rechecks += sim.rechecks;
    for &dev in &devs {
        if !sim.is_closed(dev) {
            assert!(!sim.engine(dev).has_live_call(), "seed {seed}: device {dev} still in a call");
        }
        check_invariants(&sim, dev, seed);
    }
    check_end_reasons(&sim, &devs, seed, true); // closed tabs' ends count too
    seen.connected += devs.iter().map(|&d| sim.timeline(d).iter().filter(|l| l.starts_with("Accept(")).count()).sum::<usize>();
}

#[test]
fn random_faults_keep_the_invariants_and_deliver_exactly_once() {
    // Seeds that once failed, kept in every run: 89 a ringing member's invite marked it in; 104
    // a SendResult lost with the connection (covered by accepted_upto) never came; 587 an Accept
    // delayed past the cut-off caller's ring timeout; 750, 4460, 1056, 6864 two devices of one
    // user answering/busy at once; 16866 a replayed cancel before its stored invite; 28673 an
    // Accept whose answer a restart lost, while the other device rejected; 44144 a late group
    // Accept answered with a Hangup (the server took it as leaving); 45223 a replayed invite
    // whose other-device rejection followed; 71590 a delayed ModifyMem from a member gone; 84337
    // the sim server counted a ringing member's ModifyMem as joining; 97691 a member's invite
    // rang (and busy-rejected from) the other device of a user already in the call; 179658 an
    // Accept replayed into a call over for everyone else; 179860 a ringing member's invite
    // listed it CONNECTED for the new member; 310507 hanging up during a pending accept() was
    // sent as a cancel (1); 437762 the checker left a closed tab's end out; 360775 the checker
    // paired a verdict's reason with what the gone device did before; 594828 an Accept crossing
    // the ModifyMem that brought a new member in; 476717 a gone device's stale offer taken as
    // its Accept. Found once the sim ran the server's real delivery core: 8 what was routed to
    // an away device while its sibling was live was lost with the window at a restart; 59 a
    // message stored while both of a user's devices were away was deleted by the first one's
    // ack; 62 a device that did not come back after a restart stayed in its call forever (the
    // rooms were lost); 46 no verdict is owed when the call ended before the grace did; 5117 a
    // second hangup of a device that had just left the call was refused (40403); 8926 a page's
    // dead socket kept its device present after the page reconnected and closed cleanly; 52528
    // the server counted both of a user's devices that answered at once, so the first one's
    // departure went unannounced.
    let Seeds { runs, sweep, list } = seeds(
        300,
        &[
            89, 104, 587, 750, 1_056, 4_460, 6_864, 16_866, 28_673, 44_144, 45_223, 71_590, 84_337, 97_691, 179_658, 179_860, 310_507,
            437_762, 360_775, 594_828, 476_717, 8, 46, 59, 62, 5_117, 8_926, 52_528,
        ],
    );
    let mut seen = FaultSeen::default();
    for seed in list {
        run_faults(seed, &mut seen, 1);
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
    // Seeds that once failed: 101 a sibling device's live copy swallowed by a replay on its
    // node (fixed: per-connection replay marks); 67404 a ghost member re-learnt from a stale
    // ModifyMem where a single node's grace would have ended the call (fixed: the nodes run the
    // rooms replica and its graces).
    // 591 (again, after the merge that announces only devices in calls): a page's dead socket,
    // never announced, was announced late on its old node once a call involved the device,
    // taking the page's live node out of presence (fixed: `rooms_node::AfterApply::moved`).
    // Each seed runs twice on 2 or 3 nodes over the model of the Redis side: once without
    // faults and once with drops, silent losses, closed tabs and node kills; both keep every
    // check of the single node's runs (call outcomes included: the nodes run the replicated
    // rooms, so they decide as one node would).
    let Seeds { runs, sweep, list } = seeds(200, &[101, 591, 67_404]);
    let (mut seen, mut fault_seen) = (Seen::default(), FaultSeen::default());
    for seed in list {
        let nodes = 2 + (seed % 2) as usize;
        run(seed, &mut seen, nodes);
        run_faults(seed, &mut fault_seen, nodes);
    }
    println!(
        "{runs} cluster runs: {} accepts, {} closes, {} member modifications, {} rechecks after the replica caught up ({} admitted); with faults: {} drops, {} silent losses, {} closed tabs, {} node kills, {} subscriber gaps, {} verdicts, {} verdict checks, {} resends dropped, {} accepts, {} rechecks",
        seen.connected, seen.closes, seen.member_modify, seen.rechecks, seen.rechecks_admitted, fault_seen.drops, fault_seen.silent, fault_seen.closed, fault_seen.node_kills, fault_seen.bus_gaps, fault_seen.verdicts, fault_seen.verdict_checks, fault_seen.repeats_dropped, fault_seen.connected, fault_seen.rechecks
    );
    if sweep && runs >= 100 {
        assert!(seen.connected > runs as usize / 2 && seen.closes > runs as usize, "runs exercised too little");
        assert!(
            fault_seen.drops > 0 && fault_seen.silent > 0 && fault_seen.node_kills > 0 && fault_seen.closed > 0 && fault_seen.bus_gaps > 0,
            "a fault kind was never exercised"
        );
        assert!(fault_seen.verdicts > 0 && fault_seen.verdict_checks > 0, "no grace ran out in cluster mode");
        assert!(fault_seen.repeats_dropped > 0, "no resend was ever deduplicated");
    }
}
