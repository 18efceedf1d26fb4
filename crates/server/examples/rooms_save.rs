//! What saving the call rooms costs (docs/sfu.md "Restarts"): per routed call message, and per
//! save tick with and without a change, against the old SFU-mode saver that encoded every
//! app's snapshot each second to compare it with the last one.
//!
//! `cargo run --release -p rcall-server --example rooms_save [CALLS]` (default 2,000 calls of
//! two members). Figures are wall-clock on a shared machine: the load average is printed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery::rooms::{route_of, CallMsg, Kind, Rooms};
use prost::Message as _;
use rtc_core::proto::conversation_type;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn msg(kind: Kind, call: &str, invited: &[String]) -> CallMsg {
    CallMsg {
        kind,
        call_id: call.into(),
        invited: invited.to_vec(),
        profile: None,
    }
}

/// Runs `f` `n` times; ns per run.
fn per_run(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let t0 = Instant::now();
    for i in 0..n {
        f(i);
    }
    t0.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let mut r = Rooms::new(Duration::from_secs(1), Duration::from_secs(5));
    let users: Vec<(Arc<str>, Arc<str>)> = (0..calls * 2)
        .map(|i| (Arc::from(format!("u{i}")), Arc::from(format!("d{i}"))))
        .collect();
    for c in 0..calls as usize {
        let (a, b) = (&users[2 * c], &users[2 * c + 1]);
        let call = format!("call-{c}");
        let to_b = route_of(conversation_type::PRIVATE, &b.0, "");
        let to_a = route_of(conversation_type::PRIVATE, &a.0, "");
        r.admit(
            &a.0,
            &a.1,
            &msg(Kind::Invite, &call, &[b.0.to_string()]),
            &to_b,
            &[&b.0],
            1,
        )
        .unwrap();
        r.admit(
            &b.0,
            &b.1,
            &msg(Kind::Accept, &call, &[]),
            &to_a,
            &[&a.0],
            2,
        )
        .unwrap();
    }
    let encoded = r.snapshot().encode_to_vec().len();
    println!(
        "{calls} calls of 2 members, snapshot {encoded} B encoded; load average {}",
        loadavg()
    );

    // A call's media signalling (SDP, ICE), the bulk of call messages: through admit, with
    // the change count (it does not move: nothing saved changes).
    let media: Vec<(CallMsg, delivery::rooms::Route)> = (0..calls as usize)
        .map(|c| {
            let to = route_of(conversation_type::PRIVATE, &users[2 * c + 1].0, "");
            (msg(Kind::Other, &format!("call-{c}"), &[]), to)
        })
        .collect();
    let before = r.changes();
    let n = 20_000;
    let ns = per_run(n, |i| {
        let c = (i % calls) as usize;
        let (a, (m, to)) = (&users[2 * c], &media[c]);
        let res = r.admit(&a.0, &a.1, m, to, &[&users[2 * c + 1].0], 3);
        black_box(res).unwrap();
    });
    println!(
        "admit of a member's media message: {ns:.0} ns; changes counted over {n}: {} (snapshots \
         encoded by the message path: 0); load average {}",
        r.changes() - before,
        loadavg()
    );

    // The saver's tick with nothing changed: new (compare the count) against old (encode the
    // whole snapshot, compare it with the last encoding).
    let last_count = r.changes();
    let ticks = 20;
    let new_idle = per_run(ticks * 1000, |_| {
        black_box(black_box(&r).changes() != last_count);
    });
    let last = r.snapshot().encode_to_vec();
    let old_idle = per_run(ticks, |_| {
        let snap = black_box(&r).snapshot().encode_to_vec();
        black_box(snap != last);
    });
    println!(
        "save tick, nothing changed: new {new_idle:.1} ns (count compare), old {:.0} µs \
         (snapshot + encode + compare, under the app lock, every second in SFU mode); load \
         average {}",
        old_idle / 1000.0,
        loadavg()
    );
    // With a change: both take the snapshot and encode it (new: at most every 250 ms, and
    // only then).
    let changed = per_run(ticks, |_| {
        black_box(black_box(&r).snapshot().encode_to_vec());
    });
    println!(
        "save tick with a change (both): {:.0} µs snapshot + encode; load average {}",
        changed / 1000.0,
        loadavg()
    );
}
