//! A property run as data: its network settings and a list of named steps ([`Run`]), the one
//! place that plays a step on the simulator ([`apply`]) and checks a run's end ([`check`]).
//! The random generator of `properties.rs` draws its steps and plays them here; a failing run
//! is cut down ([`shrink`]) and printed as a [`Run`] literal ([`source`]) for `regressions.rs`,
//! where it is replayed without the generator, so it keeps testing the same thing whatever
//! becomes of the generator.
//!
//! Four devices: 0 and 3 are `ann`, 1 `bo`, 2 `cy`. Calls are named by the order they were
//! made in (`#0` is the run's first call); a step about a call its device does not have (any
//! more), or by a device whose tab closed, does nothing, as in the random runs.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rcall_sim::{DeviceId, Sim, CLEAN_GRACE_MS, HEARTBEAT_MS, LOST_GRACE_MS, SERVER_DEAD_AFTER_MS};
use rtc_core::engine::{Command, TrackKind, VideoLayer};
use rtc_core::types::MediaType;

use super::{check_agreement, check_end_reasons, check_invariants, live_calls};

pub const USERS: [&str; 4] = ["ann", "bo", "cy", "ann"]; // "ann" has two devices

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The device calls a user.
    Call(DeviceId, &'static str, MediaType),
    /// The device calls the other two users in group `g`.
    Group(DeviceId, MediaType),
    /// The device accepts call #n, then this many ms pass.
    Accept(DeviceId, u64, i64),
    Hangup(DeviceId, u64),
    /// The device invites a user into call #n.
    Invite(DeviceId, u64, &'static str),
    /// The device mutes (true) or unmutes its audio or video in call #n.
    Mute(DeviceId, u64, TrackKind, bool),
    /// The device turns call #n into an audio call.
    Descend(DeviceId, u64),
    /// The device asks for a user's simulcast layer in call #n (`setRemoteVideoLayer`: a
    /// success that changes nothing in the simulator's mesh calls, a parameter error for a
    /// user not in the call).
    Layer(DeviceId, u64, &'static str, VideoLayer),
    /// Time passes.
    Wait(i64),
    /// The device's connection closes; it reconnects after this many ms.
    Drop(DeviceId, i64),
    /// Nothing flows on the device's connection for this many ms, and nobody is told.
    Silent(DeviceId, i64),
    /// The device's tab closes for good.
    CloseTab(DeviceId),
    /// The server restarts (gracefully; one node).
    Restart,
    /// Cluster runs: the node dies.
    KillNode(usize),
    /// Cluster runs: the node's subscriber misses this many ms of the bus.
    BusGap(usize, i64),
    /// The generator drew this many numbers and did nothing (exact runs only).
    Idle(u64),
}
use Step::*;

/// A run: its network settings and its steps.
#[derive(Debug, Clone)]
pub struct Run {
    /// The property run it came from (its random generator's seed; also seeds the network).
    pub seed: u64,
    /// Server nodes (1: one server; more: cluster mode over the model of the Redis side).
    pub nodes: usize,
    /// Cluster runs: ms a bus publish / a rooms event takes at most.
    pub bus_latency: i64,
    pub rooms_latency: i64,
    /// Cluster runs: the ms of a Redis hop, or `None` for none (routes and acks inline).
    pub redis_latency: Option<i64>,
    /// Cluster runs: replays read this many mailbox entries a page (0: all at once;
    /// `Sim::replay_page`).
    pub replay_page: usize,
    pub jitter: i64,
    /// Fault runs: reconnect delay after a restart (and the fault run's longer end and checks).
    pub reconnect_delay: Option<i64>,
    /// 5 % of frames lost (the agreement checks do not apply).
    pub lossy: bool,
    /// The seed's whole run as its generator made it: each step draws the random numbers the
    /// generator drew for it, so the network's draws fall as they did and the replay is that
    /// very run. (A shrunk sequence is not exact: it fails with its own `seed` and `jitter`.)
    pub exact: bool,
    pub steps: Vec<Step>,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            seed: 0,
            nodes: 1,
            bus_latency: 0,
            rooms_latency: 0,
            redis_latency: None,
            replay_page: 0,
            jitter: 0,
            reconnect_delay: None,
            lossy: false,
            exact: false,
            steps: Vec::new(),
        }
    }
}

/// How [`apply`] treats the random source.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    /// The generator: it drew the step itself; an Accept draws its wait after accepting.
    Live,
    /// An exact replay: each step draws what the generator drew for it ([`draws`]).
    Exact,
    /// A plain replay: the steps draw nothing.
    Plain,
}

/// The random numbers the generator of `properties.rs` draws for a step: before it (the
/// device, the media, the choice, its own picks) and after it (an Accept's wait).
fn draws(step: Step) -> (u64, u64) {
    match step {
        Group(..) => (3, 0),
        Accept(..) => (4, 1),
        Invite(..) | Descend(..) => (5, 0),
        Layer(..) => (7, 0),
        Mute(..) | KillNode(_) => (6, 0),
        BusGap(..) => (7, 0),
        Idle(n) => (n, 0),
        _ => (4, 0),
    }
}

fn burn(sim: &mut Sim, n: u64) {
    for _ in 0..n {
        sim.random();
    }
}

/// The number of call `id` (`#n`).
pub fn call_number(id: &str) -> u64 {
    id.strip_prefix("simcall").and_then(|s| s.get(..16)).and_then(|n| n.parse().ok()).expect("a simulator call id")
}

/// The id of call #n among the device's calls, if it has it.
fn call(sim: &Sim, dev: DeviceId, n: u64) -> Option<String> {
    let prefix = format!("simcall{n:016}_");
    live_calls(sim, dev).into_iter().find(|c| c.starts_with(&prefix))
}

/// The users other than the device's own.
pub fn others(sim: &Sim, dev: DeviceId) -> Vec<&'static str> {
    let me = sim.engine(dev).self_id().to_string();
    ["ann", "bo", "cy"].into_iter().filter(|u| *u != me).collect()
}

/// What the faults of a run were, as its checks need them, and what it exercised.
#[derive(Default, Debug)]
pub struct Trace {
    /// Calls the server counted a closed tab in, to be ended by its verdict: (device, call, at, clean).
    pub gone: Vec<(DeviceId, String, i64, bool)>,
    pub restarts: Vec<i64>,
    /// When each device's connection broke: (time, device, the server's verdict is due this
    /// long after unless it comes back: 5 s after a drop, 15 + 5 s after a silent loss).
    pub breaks: Vec<(i64, DeviceId, i64)>,
    pub kills: Vec<i64>,
    /// Cluster mode: when each subscriber gap ended (the node resynced).
    pub gap_ends: Vec<i64>,
    pub drops: usize,
    pub silent: usize,
    pub closed: usize,
}

/// Sets `sim` up for `run` (seeded; in exact mode drawing what the generator drew for the
/// settings) and adds the devices.
pub fn start(sim: &mut Sim, run: &Run, mode: Mode) -> Vec<DeviceId> {
    if mode != Mode::Live {
        sim.seed(run.seed);
    }
    let exact = mode == Mode::Exact;
    if run.nodes > 1 {
        sim.cluster(run.nodes);
        // The bus and rooms latencies, the coin for Redis hops and their latency.
        burn(sim, if exact { 3 + run.redis_latency.is_some() as u64 } else { 0 });
        sim.bus_latency = run.bus_latency;
        sim.rooms_latency = run.rooms_latency;
        sim.redis_latency = run.redis_latency.unwrap_or(0);
        sim.replay_page = run.replay_page;
    }
    burn(sim, if exact { 2 } else { 0 }); // the jitter, the loss or reconnect delay
    sim.jitter = run.jitter;
    if run.lossy {
        sim.loss = 0.05;
    }
    if let Some(d) = run.reconnect_delay {
        sim.reconnect_delay = d;
    }
    let devs = USERS.iter().map(|u| sim.add_device(u)).collect();
    burn(sim, if exact { 1 } else { 0 }); // the step count
    devs
}

/// Plays one step; returns it as played (in `Live` mode with an Accept's wait drawn).
pub fn apply(sim: &mut Sim, step: Step, mode: Mode, trace: &mut Trace) -> Step {
    let (before, after) = if mode == Mode::Exact { draws(step) } else { (0, 0) };
    burn(sim, before);
    if let Call(dev, ..) | Group(dev, _) | Accept(dev, ..) | Hangup(dev, _) | Invite(dev, ..) | Mute(dev, ..) | Descend(dev, _) = step {
        if sim.is_closed(dev) {
            return step;
        }
    }
    match step {
        Call(dev, to, media) => {
            sim.call(dev, to, media);
        }
        Group(dev, media) => {
            let others = others(sim, dev);
            sim.call_in_group(dev, "g", &others, media);
        }
        Accept(dev, n, wait) => {
            if let Some(c) = call(sim, dev, n) {
                sim.accept(dev, &c);
                burn(sim, after);
                let wait = if mode == Mode::Live { (sim.random() % 500) as i64 } else { wait };
                sim.run_for(wait);
                return Accept(dev, n, wait);
            }
        }
        Hangup(dev, n) => {
            if let Some(c) = call(sim, dev, n) {
                sim.hangup(dev, &c);
            }
        }
        Invite(dev, n, who) => {
            if let Some(call_id) = call(sim, dev, n) {
                let user_ids = vec![who.to_string()];
                sim.command(dev, Command::Invite { call_id, user_ids, extra: String::new(), push_title: None, push_content: None });
            }
        }
        Mute(dev, n, kind, muted) => {
            if let Some(call_id) = call(sim, dev, n) {
                sim.command(dev, Command::MuteTrack { call_id, kind, muted });
            }
        }
        Descend(dev, n) => {
            if let Some(call_id) = call(sim, dev, n) {
                sim.command(dev, Command::DescendAbility { call_id });
            }
        }
        Layer(dev, n, user, layer) => {
            if let Some(call_id) = call(sim, dev, n) {
                sim.command(dev, Command::RemoteVideoLayer { call_id, user_id: user.to_string(), layer });
            }
        }
        Wait(ms) => sim.run_for(ms),
        Drop(dev, after) => {
            if sim.drop_connection(dev, after) {
                trace.drops += 1;
                trace.breaks.push((sim.now(), dev, LOST_GRACE_MS));
            }
        }
        Silent(dev, ms) => {
            if sim.silent_loss(dev, ms) {
                trace.silent += 1;
                trace.breaks.push((sim.now(), dev, SERVER_DEAD_AFTER_MS + LOST_GRACE_MS));
            }
        }
        CloseTab(dev) => {
            if !sim.is_closed(dev) {
                let clean = sim.is_connected(dev);
                let calls: Vec<String> = live_calls(sim, dev).into_iter().filter(|c| sim.server_participants(c).contains(&dev)).collect();
                let t = sim.now();
                sim.close_tab(dev);
                // 1 s after a clean close; 5 s when its socket was not (yet) up at the server.
                trace.breaks.push((t, dev, CLEAN_GRACE_MS));
                trace.breaks.push((t, dev, LOST_GRACE_MS));
                trace.closed += 1;
                trace.gone.extend(calls.into_iter().map(|c| (dev, c, t, clean)));
            }
        }
        Restart => {
            trace.restarts.push(sim.now());
            sim.restart_server();
        }
        KillNode(node) => {
            trace.kills.push(sim.now());
            sim.kill_node(node);
        }
        BusGap(node, gap) => {
            trace.gap_ends.push(sim.now() + gap);
            sim.bus_gap(node, gap);
        }
        Idle(_) => {}
    }
    step
}

/// What runs exercised, to make sure they are not vacuous.
#[derive(Default, Debug)]
pub struct Seen {
    pub connected: usize,
    pub closes: usize,
    pub merged: usize,
    pub member_modify: usize,
    /// Cluster runs: call messages a replica behind the rooms log refused, checked again once
    /// it caught up, and how many of those went through.
    pub rechecks: usize,
    pub rechecks_admitted: usize,
    pub drops: usize,
    pub silent: usize,
    pub closed: usize,
    pub restarts: usize,
    pub node_kills: usize,
    pub bus_gaps: usize,
    /// Replay pages read after a full one (cluster runs with `Run::replay_page`).
    pub replay_pages: usize,
    pub verdicts: usize,
    pub cutoff_checks: usize,
    pub verdict_checks: usize,
    pub repeats_dropped: usize,
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

/// The end of a run, as the property runs check it: every timer runs out; runs without loss
/// must deliver exactly once, keep the fault bounds and agree; fault runs must also hand down
/// each verdict on time and leave nobody alone; then everyone hangs up
/// what is left, nothing may stay live, and the engine's invariants and end reasons hold.
/// Panics naming the seed; counts what the run exercised into `seen`.
pub fn check(sim: &mut Sim, devs: &[DeviceId], run: &Run, trace: &Trace, seen: &mut Seen) {
    let seed = run.seed;
    let faults = run.reconnect_delay.is_some();
    if faults {
        // No more faults: everyone reconnects, every timer runs out.
        sim.run_for(60_000);
        sim.run_for(200_000);
    } else {
        sim.run_for(2_000);
    }
    if std::env::var("RCALL_PROP_SEED").is_ok() {
        for &dev in devs {
            println!("device {dev} ({}{}):", sim.engine(dev).self_id(), if sim.is_closed(dev) { ", closed" } else { "" });
            for (t, l) in sim.log(dev) {
                println!("  {t} {l:?}");
            }
        }
        println!("verdicts: {:?}", sim.verdicts);
        println!("refusals: {:?}", sim.refusals);
        println!("{trace:?}");
    }
    let alive: Vec<DeviceId> = devs.iter().copied().filter(|d| !sim.is_closed(*d)).collect();
    if faults || !run.lossy {
        check_delivery(sim, &alive, seed, seen);
    }
    if faults {
        check_faults(sim, &alive, run, trace, seen);
    }
    if !run.lossy {
        check_agreement(sim, &alive, seed);
    }
    // Everyone hangs up whatever is left; then nothing may remain anywhere.
    for &dev in &alive {
        for c in live_calls(sim, dev) {
            sim.hangup(dev, &c);
        }
    }
    sim.run_for(200_000);
    seen.rechecks += sim.rechecks;
    seen.rechecks_admitted += sim.rechecks_admitted;
    for &dev in devs {
        if !run.lossy && !sim.is_closed(dev) {
            assert!(!sim.engine(dev).has_live_call(), "seed {seed}: device {dev} still in a call");
        }
        check_invariants(sim, dev, seed);
    }
    if !run.lossy {
        check_end_reasons(sim, devs, seed, faults); // closed tabs' ends count too
    }
    for &dev in devs {
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
    seen.drops += trace.drops;
    seen.silent += trace.silent;
    seen.closed += trace.closed;
    seen.restarts += trace.restarts.len();
    seen.node_kills += trace.kills.len();
    seen.bus_gaps += trace.gap_ends.len();
    seen.replay_pages += sim.replay_pages;
}

/// Every device still there is connected, everything was delivered exactly once and the
/// bounds checked as the faults played out held (see [`check`]).
fn check_delivery(sim: &Sim, alive: &[DeviceId], seed: u64, seen: &mut Seen) {
    for &dev in alive {
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
}

/// The fault runs' checks of the server's verdicts once every timer ran out (see [`check`]).
fn check_faults(sim: &Sim, alive: &[DeviceId], run: &Run, trace: &Trace, seen: &mut Seen) {
    let (seed, nodes) = (run.seed, run.nodes);
    let Trace { gone, restarts, breaks, kills, gap_ends, .. } = trace;
    // A closed tab's calls are ended by the server on its behalf; a clean close after 1 s.
    // (Without a verdict the call must be over at the server anyway: the others all left it
    // before the grace ran out, e.g. the only callee rejected.)
    for (dev, call, t, clean) in gone {
        let v = sim.verdicts.iter().find(|(_, d, c, _)| d == dev && c == call);
        let Some((at, ..)) = v else {
            assert!(
                !sim.server_participants(call).contains(dev),
                "seed {seed}: no verdict for closed device {dev} in {call}, still counted in it"
            );
            continue;
        };
        let restarted = restarts.iter().any(|r| r >= t && *r <= t + CLEAN_GRACE_MS);
        let killed = kills.iter().chain(gap_ends).any(|k| k >= t && *k <= *at);
        if *clean && !restarted && !killed {
            assert!(on_time(sim, nodes, *t, CLEAN_GRACE_MS, *at), "seed {seed}: verdict for {dev} in {call} at {at}, closed at {t}");
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
        let on_time = breaks.iter().any(|(t, d, after)| d == dev && (on_time(sim, nodes, *t, *after, *at) || resynced(t + after, *at)))
            || restarts.iter().any(|r| r + LOST_GRACE_MS == *at)
            || kills.iter().any(|k| after_kill(sim, *k, *at) || resynced(k + 2 * HEARTBEAT_MS + LOST_GRACE_MS, *at));
        assert!(on_time, "seed {seed}: verdict for {dev} in {call} at {at}: no fault {LOST_GRACE_MS}/{CLEAN_GRACE_MS} ms before");
    }
    seen.verdicts += sim.verdicts.len();
    // Nobody is left alone in a call: every live call is live on another device still there.
    for &dev in alive {
        for c in live_calls(sim, dev) {
            let with = alive.iter().any(|&o| o != dev && live_calls(sim, o).contains(&c));
            assert!(with, "seed {seed}: device {dev} alone in {c}: {:?}", sim.engine(dev).session(&c));
        }
    }
}

/// Plays `run` from the start (exact or plain, as it says); the simulator, its devices and
/// what its faults were.
pub fn play(run: &Run) -> (Sim, Vec<DeviceId>, Trace) {
    let mut sim = Sim::new();
    let mode = if run.exact { Mode::Exact } else { Mode::Plain };
    let devs = start(&mut sim, run, mode);
    let mut trace = Trace::default();
    for &step in &run.steps {
        apply(&mut sim, step, mode, &mut trace);
    }
    (sim, devs, trace)
}

/// Plays `run` and checks its end as the property runs do; panics if a check fails.
pub fn replay(run: &Run) {
    let (mut sim, devs, trace) = play(run);
    check(&mut sim, &devs, run, &trace, &mut Seen::default());
}

/// Whether replaying `run` fails a check: the failure's message, if so.
pub fn fails(run: &Run) -> Option<String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| replay(run)));
    outcome.err().map(|e| panic_message(&*e))
}

pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// A failing run cut down to as few steps, and as short waits, as still fail some check: a
/// plain replay (no generator draws) where one fails, else (the network's draws fell
/// differently) an exact one, each kept step drawing what it drew in the run.
/// Panic output is silenced while it searches.
pub fn shrink(run: &Run) -> Run {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let min = shrink_by(run, |r| fails(r).is_some());
    std::panic::set_hook(hook);
    min
}

/// [`shrink`] with the failure `fails` tells.
pub fn shrink_by(run: &Run, fails: impl Fn(&Run) -> bool) -> Run {
    let plain = |r: &Run| Run { exact: false, steps: r.steps.iter().copied().filter(|s| !matches!(s, Idle(_))).collect(), ..r.clone() };
    let mut best = if fails(&plain(run)) { plain(run) } else { Run { steps: merge_idle(&run.steps), ..run.clone() } };
    loop {
        best = cut_down(best, &fails);
        // An exact run cut down may fail as a plain one too: then that, cut down further.
        if !best.exact || !fails(&plain(&best)) {
            return best;
        }
        best = plain(&best);
    }
}

/// Drops steps (halving the chunks down to single steps) and halves waits while `fails` holds,
/// until nothing more goes.
fn cut_down(mut best: Run, fails: &impl Fn(&Run) -> bool) -> Run {
    loop {
        let before = best.steps.clone();
        let mut chunk = best.steps.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < best.steps.len() {
                let mut cut = best.clone();
                cut.steps.drain(i..(i + chunk).min(cut.steps.len()));
                if fails(&cut) {
                    best = cut;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        for i in 0..best.steps.len() {
            for _ in 0..8 {
                let shorter = match best.steps[i] {
                    Wait(ms) if ms > 1 => Wait(ms / 2),
                    Accept(d, n, ms) if ms > 0 => Accept(d, n, ms / 2),
                    _ => break,
                };
                let mut cut = best.clone();
                cut.steps[i] = shorter;
                if !fails(&cut) {
                    break;
                }
                best = cut;
            }
        }
        if best.steps == before {
            return best;
        }
    }
}

fn merge_idle(steps: &[Step]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for &s in steps {
        match (out.last_mut(), s) {
            (Some(Idle(a)), Idle(b)) => *a += b,
            _ => out.push(s),
        }
    }
    out
}

/// `n` as a Rust literal with `_` thousands separators.
fn lit(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn step_source(s: Step) -> String {
    let media = |m: MediaType| if m == MediaType::Audio { "A" } else { "AV" };
    let n = |v: u64| lit(v as i64);
    match s {
        Call(d, to, m) => format!("Call({d}, {to:?}, {})", media(m)),
        Group(d, m) => format!("Group({d}, {})", media(m)),
        Accept(d, c, ms) => format!("Accept({d}, {}, {})", n(c), lit(ms)),
        Hangup(d, c) => format!("Hangup({d}, {})", n(c)),
        Invite(d, c, who) => format!("Invite({d}, {}, {who:?})", n(c)),
        Mute(d, c, k, m) => format!("Mute({d}, {}, TrackKind::{k:?}, {m})", n(c)),
        Descend(d, c) => format!("Descend({d}, {})", n(c)),
        Layer(d, c, who, l) => format!("Layer({d}, {}, {who:?}, VideoLayer::{l:?})", n(c)),
        Wait(ms) => format!("Wait({})", lit(ms)),
        Drop(d, ms) => format!("Drop({d}, {})", lit(ms)),
        Silent(d, ms) => format!("Silent({d}, {})", lit(ms)),
        CloseTab(d) => format!("CloseTab({d})"),
        Restart => "Restart".into(),
        KillNode(node) => format!("KillNode({node})"),
        BusGap(node, ms) => format!("BusGap({node}, {})", lit(ms)),
        Idle(k) => format!("Idle({k})"),
    }
}

/// `run` as a test for `regressions.rs`: the `Run` literal (fields at their defaults left out).
pub fn source(run: &Run, name: &str) -> String {
    let d = Run::default();
    let mut fields = vec![format!("seed: {}", lit(run.seed as i64))];
    if run.nodes != d.nodes {
        fields.push(format!("nodes: {}", run.nodes));
    }
    if run.bus_latency != d.bus_latency {
        fields.push(format!("bus_latency: {}", run.bus_latency));
    }
    if run.rooms_latency != d.rooms_latency {
        fields.push(format!("rooms_latency: {}", run.rooms_latency));
    }
    if let Some(ms) = run.redis_latency {
        fields.push(format!("redis_latency: Some({ms})"));
    }
    if run.replay_page != d.replay_page {
        fields.push(format!("replay_page: {}", run.replay_page));
    }
    fields.push(format!("jitter: {}", run.jitter));
    if let Some(ms) = run.reconnect_delay {
        fields.push(format!("reconnect_delay: Some({})", lit(ms)));
    }
    if run.lossy {
        fields.push("lossy: true".into());
    }
    if run.exact {
        fields.push("exact: true".into());
    }
    let steps: Vec<String> = run.steps.iter().map(|s| format!("            {},\n", step_source(*s))).collect();
    format!(
        "#[test]\nfn {name}() {{\n    replay(&Run {{\n        {},\n        steps: vec![\n{}        ],\n        ..Run::default()\n    }});\n}}\n",
        fields.join(",\n        "),
        steps.concat()
    )
}
