//! Login admission in cluster mode: a node runs a bounded number of logins at once
//! (`max_logins_in_progress`) and tells the clients past the bound when to come back.
//!
//! After a node's kill all its clients log in again on the others at once. A node that took
//! them all queued them past the clients' attempt timeout (issue 15); one that refused them
//! busy (31003) left the clients to guess when to return, and they guessed with their idle
//! backoff (2–4 s, round after round): in the 100,000-connection run the logins' server side
//! took ~0.5 s, the clients' waits ~10 s. The node knows its login rate, the clients do not:
//! so each busy answer carries a turn (`AuthResult.retry_after_ms`) in a virtual queue. The
//! node's rate is its bound over a login's duration (Little's law: `max` slots, each free
//! again after a login's duration); each refused client gets the next free turn at that rate,
//! so the clients come back spread out at the pace the node can serve them — no idle gap, no
//! storm — and none holds a socket while it waits.
//!
//! A storm's refusals mostly come before the node knows its rate: its first logins, run while
//! thousands of sockets open at once, look 5–10× slower than the same node's logins a second
//! later (a 30,000-connection failover: 250–500 logins a second per survivor in the storm's
//! first second, 2,000–3,000 after it). The clients the queue cannot place within the
//! longest turn ([`MAX_TURN_MS`]) therefore do not all get that turn (they came back in one
//! burst at the cap, after the node had idled with room to spare): their turns are spread over
//! the window from the running logins' expected end to the cap, so they come back as a steady
//! stream the node serves as fast as it turns out to be, and those it still cannot take get a
//! new turn at the rate known then.
//!
//! Even so a storm's first turns were too long (session 18, BENCHMARKS.md "Session 18"): while
//! a survivor answers the thousands of sockets that opened at once, its logins run 5–10× slower
//! than a second later, so the rate it knows then placed the refused clients up to 2 s out, and
//! once the sockets were answered (1–1.5 s into the storm) the survivors served logins in 1–5 ms
//! with their clients still away, for 1–2 s. No estimate the node has then predicts its later
//! rate (its throughput then is lower still), so the turns are bounded by what the node does
//! know: how long the storm has lasted. A turn is no longer than the node has been refusing
//! ([`FIRST_TURN_MS`] at least, [`MAX_TURN_MS`] at most): a short storm's clients come back
//! soon; a storm that goes on is met with longer turns as it goes on, so a refused client that
//! comes back too early (one more refusal, ~60 µs of the node's CPU) is what the short turns
//! risk, never an idle node.
//!
//! Pure (the caller passes the time), so its arithmetic is unit-tested here.

/// Added to every turn: the refused client's own round trip and a new socket take about
/// this, and a node whose estimate starts low (its logins were quick before the storm) is not
/// asked again at once by every client it refused in the storm's first milliseconds.
pub const MIN_RETRY_MS: u32 = 200;
/// The SDK's idle backoff cap (`im::RECONNECT_CAP_IDLE_MS`), which turns stay under
/// ([`MAX_TURN_MS`]): a client is never asked to wait longer than it would have without a turn, so a node whose estimate runs
/// high (a starved node's logins look slow) costs no more than the old backoff; past it the
/// clients come back and get a new turn.
pub const MAX_RETRY_MS: u32 = 4_000;
/// The longest turn the node gives (a storm's horizon grows to it from [`FIRST_TURN_MS`]).
/// Under [`MAX_RETRY_MS`] × 5/6: the SDK waits a turn +0–20 % (`im::busy_delay`: clients
/// given the same turn do not come back in the same millisecond) but never past
/// [`MAX_RETRY_MS`], so a turn at that cap lost its jitter (and every client sent there came
/// back at once, into another storm). 2 s, not the 3.3 s that allows: a turn is given on the
/// rate the node knows when it refuses, which in a storm's first second is 5–10× slower than
/// the rate it serves at once the sockets are open, and a client asked back later than needed
/// waits while the node idles. Shorter turns let the rate known
/// later correct them (a 30,000-connection failover, BENCHMARKS.md "Session 16": resume p50
/// 3.8–4.2 s, p99 5.3–5.6 s with 3.3 s turns and the overflow at the cap; 2.0 s, 3.1–3.2 s
/// with 2 s turns and the overflow spread, fewer busy answers too).
pub const MAX_TURN_MS: u32 = 2_000;
/// The longest turn at a storm's start (its first refusal); it grows with the storm's age up
/// to [`MAX_TURN_MS`] (see the module doc). Wide enough over [`MIN_RETRY_MS`] for a spread of
/// a few hundred ms; short enough that clients refused while a survivor still answers the
/// storm's sockets are back about when it has (0.5–1.5 s into a 50,000-connection failover's
/// storm).
pub const FIRST_TURN_MS: u32 = 500;
/// Golden-ratio step of the overflow's spread (see [`Admission::begin`]): successive
/// fractions of the window land evenly, with no randomness to test around.
const SPREAD_STEP: f64 = 0.618_033_988_749_895;
/// Weight of the newest login's duration in the average (1/8: a storm's durations, hundreds
/// a second, replace a quiet time's in a few dozen logins).
const EWMA_WEIGHT: f64 = 0.125;

/// The logins in progress and the virtual queue of the clients told to come back.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    running: usize,
    /// Sum of the running logins' start times (ms): their mean age bounds a login's duration
    /// from below before any of them completed.
    started_sum: f64,
    /// Mean duration of a login, ms (`None` before the first completed).
    avg_ms: Option<f64>,
    /// The virtual queue: refused clients still ahead (in logins), as of `queue_at_ms`. It
    /// drains at the node's *current* rate: a turn is one login's share at the rate known
    /// when it is given, and a storm's first logins (all the slots started at once) run far
    /// slower than its later ones, so turns kept as times would hold the next clients behind
    /// turns computed on that stale, slow estimate (see [`Self::begin`]).
    queue: f64,
    queue_at_ms: f64,
    /// The last turn given (ms): once it has passed, every refused client has come back.
    tail_ms: f64,
    /// When the last client refused is due back (ms; its turn included, unlike `tail_ms`,
    /// which is when the queue ahead of it is served).
    due_ms: f64,
    /// When the node began refusing (ms): the first refusal once every client refused before
    /// was due back. Turns are no longer than the time since ([`Self::horizon`]).
    storm_from_ms: f64,
    /// Refused clients the queue had no room for so far: where the next one's turn falls in
    /// the spread window.
    spilled: u64,
}

impl Admission {
    /// At most `max` logins at once (0: no bound).
    pub fn new(max: usize) -> Self {
        Admission {
            max: if max == 0 { usize::MAX } else { max },
            running: 0,
            started_sum: 0.0,
            avg_ms: None,
            queue: 0.0,
            queue_at_ms: 0.0,
            tail_ms: 0.0,
            due_ms: 0.0,
            storm_from_ms: 0.0,
            spilled: 0,
        }
    }

    /// A login arrives at `now_ms`: `Ok(())` when it may start (then [`Self::finish`] it), else
    /// the busy answer's `retry_after_ms`: the client's turn, behind the refused clients still
    /// ahead, one login's share of the node's time (a login's duration over the bound) each,
    /// [`MIN_RETRY_MS`] added, at most the storm's horizon (between
    /// [`FIRST_TURN_MS`] and [`MAX_TURN_MS`]).
    ///
    /// The clients ahead are counted, not their turns' times: the queue drains at the rate
    /// known now. (With turns kept as times, a storm's first refusals, given on the slow
    /// logins of its start — every slot began at once — pushed the queue to the cap, and every
    /// later client was sent there however fast the node then served: in a 30,000-connection
    /// failover the node's logins took 20 ms at p50 while its clients waited 3.6 s for their
    /// turns.)
    ///
    /// A client the queue has no room for (its turn would pass the horizon) gets a turn
    /// spread evenly over the window from the running logins' expected end (one login's
    /// duration on) to the horizon, not the horizon itself: the node's rate then is likely
    /// higher than the one it knows now, and whoever it still cannot take is refused again with
    /// a turn at the rate known then. The window is at least the horizon's upper half (a storm's
    /// first logins outlast its first, short horizon: its overflow stays spread, not one burst
    /// at the horizon).
    pub fn begin(&mut self, now_ms: f64) -> Result<(), u32> {
        if self.running < self.max {
            self.running += 1;
            self.started_sum += now_ms;
            return Ok(());
        }
        let mean_age = now_ms - self.started_sum / self.running as f64;
        let duration = self.avg_ms.unwrap_or(0.0).max(mean_age).max(1.0);
        let share = duration / self.max as f64;
        // Every client refused before was due back: this refusal starts a storm.
        if now_ms >= self.due_ms {
            self.storm_from_ms = now_ms;
        }
        // Every turn given has passed: those clients came back (refused again, they count
        // anew).
        let drained = if now_ms >= self.tail_ms {
            0.0
        } else {
            self.queue - (now_ms - self.queue_at_ms).max(0.0) / share
        };
        let horizon = self.horizon(now_ms);
        // (The queue never reaches past the horizon: a turn given beyond it would not be kept.)
        let room = (horizon - f64::from(MIN_RETRY_MS)) / share;
        let ahead = drained.max(0.0);
        self.queue_at_ms = now_ms;
        if ahead + 1.0 > room {
            self.queue = room;
            self.tail_ms = self.tail_ms.max(now_ms + horizon);
            self.spilled += 1;
            let from =
                (f64::from(MIN_RETRY_MS) + duration).min((f64::from(MIN_RETRY_MS) + horizon) / 2.0);
            let at = (self.spilled as f64 * SPREAD_STEP).fract();
            return Err(self.turn(now_ms, from + at * (horizon - from)));
        }
        self.queue = ahead + 1.0;
        let wait = self.queue * share;
        self.tail_ms = self.tail_ms.max(now_ms + wait);
        Err(self.turn(now_ms, (wait + f64::from(MIN_RETRY_MS)).min(horizon)))
    }

    /// The turn `ms` given at `now_ms`, noted as due then.
    fn turn(&mut self, now_ms: f64, ms: f64) -> u32 {
        self.due_ms = self.due_ms.max(now_ms + ms);
        ms as u32
    }

    /// The longest turn at `now_ms` (ms): as long as the node has been refusing
    /// ([`Self::storm_from_ms`]), at least [`FIRST_TURN_MS`], at most [`MAX_TURN_MS`].
    fn horizon(&self, now_ms: f64) -> f64 {
        (now_ms - self.storm_from_ms).clamp(f64::from(FIRST_TURN_MS), f64::from(MAX_TURN_MS))
    }

    /// The login that began at `started_ms` ended (done, failed or abandoned) at `now_ms`.
    pub fn finish(&mut self, started_ms: f64, now_ms: f64) {
        self.running = self.running.saturating_sub(1);
        self.started_sum -= started_ms;
        if self.running == 0 {
            self.started_sum = 0.0; // no drift from the float sums
        }
        let d = (now_ms - started_ms).max(0.0);
        self.avg_ms = Some(match self.avg_ms {
            Some(avg) => avg + (d - avg) * EWMA_WEIGHT,
            None => d,
        });
    }

    /// Logins in progress.
    pub fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused clients get successive turns one login's share apart (a login's duration over
    /// the bound: the node's rate), so they come back at the pace the node serves them.
    #[test]
    fn refused_logins_get_turns_at_the_nodes_login_rate() {
        let mut a = Admission::new(4);
        // Logins took 200 ms each before: 4 slots serve 20 logins a second.
        for _ in 0..8 {
            a.begin(0.0).unwrap();
            a.finish(0.0, 200.0);
        }
        for _ in 0..4 {
            a.begin(1000.0).unwrap();
        }
        let turns: Vec<u32> = (0..5).map(|_| a.begin(1000.0).unwrap_err()).collect();
        assert_eq!(turns, [250, 300, 350, 400, 450]);
        // Turns already passed are not waited for: a later refusal starts from now (and the
        // logins running for 1 s now say a login takes that long at least: 250 ms per slot).
        assert_eq!(a.begin(2000.0), Err(MIN_RETRY_MS + 250));
        // A slot freed: the next login starts.
        a.finish(1000.0, 2100.0);
        assert_eq!(a.begin(2100.0), Ok(()));
        assert_eq!(a.running(), 4);
    }

    /// Before any login of the storm completed, the running logins' age says how long one
    /// takes at least (the average from quiet times is far too short then).
    #[test]
    fn a_storms_first_turns_grow_with_the_running_logins_age() {
        let mut a = Admission::new(2);
        a.begin(0.0).unwrap();
        a.finish(0.0, 2.0); // quick while quiet
        a.begin(10.0).unwrap();
        a.begin(10.0).unwrap();
        assert_eq!(a.begin(10.0), Err(MIN_RETRY_MS + 1), "2 ms over 2 slots");
        // 610 ms on, neither finished: a login takes 600 ms at least, 300 ms per slot.
        assert_eq!(a.begin(610.0), Err(MIN_RETRY_MS + 300));
    }

    /// A storm's first logins are slow (every slot started at once), its later ones fast: a
    /// client refused once the node serves fast is not put behind the turns given on the slow
    /// estimate (it was sent to the cap, 4 s, while the node had room within 250 ms).
    #[test]
    fn turns_follow_the_nodes_current_rate_not_the_storms_start() {
        let mut a = Admission::new(4);
        for _ in 0..4 {
            a.begin(0.0).unwrap();
        }
        // 4 s in, none done: a login takes 4 s, 1 s per slot, past the storm's first horizon:
        // the refused are spread below it.
        let slow: Vec<u32> = (0..3).map(|_| a.begin(4000.0).unwrap_err()).collect();
        assert!(
            slow.iter().all(|t| (350..=FIRST_TURN_MS).contains(t)),
            "{slow:?}"
        );
        // Then the node serves fast: logins of 40 ms (10 ms per slot).
        for _ in 0..4 {
            a.finish(0.0, 4000.0);
        }
        for i in 0..40 {
            let t = 4000.0 + f64::from(i);
            a.begin(t).unwrap();
            a.finish(t, t + 40.0);
        }
        for _ in 0..4 {
            a.begin(4100.0).unwrap();
        }
        // The clients ahead are a few logins' shares at the node's rate now (~15 ms per
        // slot: drained within these 100 ms), not the start's.
        let turn = a.begin(4100.0).unwrap_err();
        assert!(turn < 300, "{turn}");
        // Still behind each other.
        assert!(a.begin(4100.0).unwrap_err() > turn);
    }

    #[test]
    fn turns_are_capped_and_no_bound_refuses_nothing() {
        let mut a = Admission::new(1);
        a.begin(0.0).unwrap();
        // A login 60 s long and clients refused every 100 ms for 4 s: the storm's turns grow
        // to the cap and stay under it.
        let mut last = 0;
        for i in 0..40 {
            last = a.begin(60_000.0 + 100.0 * f64::from(i)).unwrap_err();
            assert!(last <= MAX_TURN_MS, "{i}: {last}");
        }
        // (The login outlasts the whole window: the overflow is spread over its upper half.)
        assert!(
            ((MIN_RETRY_MS + MAX_TURN_MS) / 2..=MAX_TURN_MS).contains(&last),
            "{last}"
        );
        // The client's +0–20 % still fits under its own cap: capped turns stay spread.
        const { assert!(MAX_TURN_MS * 6 / 5 <= MAX_RETRY_MS) };
        const { assert!(MIN_RETRY_MS < FIRST_TURN_MS && FIRST_TURN_MS <= MAX_TURN_MS) };
        // The queue stops at the cap: once the node is served again, turns shrink at once.
        a.finish(0.0, 64_000.0);
        a.begin(64_000.0).unwrap();
        a.finish(64_000.0, 64_001.0);
        a.begin(64_001.0).unwrap();
        assert!(a.begin(64_001.0).unwrap_err() <= MAX_TURN_MS);
        let mut free = Admission::new(0);
        assert!((0..10_000).all(|_| free.begin(0.0).is_ok()));
    }

    /// A storm's first refusals, given while its logins look slow (all slots begun at once,
    /// the node busy answering the storm's sockets), are more than the queue can place: they
    /// are spread no further than the storm's first horizon, not over the whole 2 s window
    /// (where, in a 50,000-connection failover, the survivors then served logins in 1–5 ms
    /// with their clients still away; BENCHMARKS.md "Session 18") nor all at its end.
    #[test]
    fn a_storms_first_turns_are_spread_no_further_than_it_has_lasted() {
        let mut a = Admission::new(256);
        for _ in 0..256 {
            a.begin(0.0).unwrap();
        }
        // 500 ms in, none done (~2 ms per slot): the storm's first refusals.
        let turns: Vec<u32> = (0..4000).map(|_| a.begin(500.0).unwrap_err()).collect();
        assert!(
            turns
                .iter()
                .all(|t| (MIN_RETRY_MS..=FIRST_TURN_MS).contains(t)),
            "{:?}",
            turns.iter().max()
        );
        // The queue first: successive turns at the node's rate.
        assert!(
            turns[..150].windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            &turns[..10]
        );
        // Then the overflow, evenly over the window's upper half (the running logins'
        // expected end, 200 + 500 ms, is past the horizon): no burst at its end.
        let spilled = &turns[200..];
        let at_end = spilled.iter().filter(|&&t| t == FIRST_TURN_MS).count();
        assert!(at_end < spilled.len() / 100, "{at_end} at the horizon");
        let from = (MIN_RETRY_MS + FIRST_TURN_MS) / 2;
        assert!(
            spilled.iter().all(|&t| t >= from),
            "{:?}",
            spilled.iter().min()
        );
        let width = (FIRST_TURN_MS - from) / 4;
        for q in 0..4 {
            let lo = from + q * width;
            let n = spilled
                .iter()
                .filter(|&&t| t >= lo && t < lo + width)
                .count();
            let share = n as f64 / spilled.len() as f64;
            assert!((0.2..0.3).contains(&share), "quarter {q}: {share}");
        }
    }

    /// A storm that goes on (every slot still taken, clients refused throughout) is met with
    /// turns as long as it has lasted, up to the cap: the short first turns cost a refusal
    /// more per client while the storm is young, not one per client every 500 ms however long
    /// it lasts.
    #[test]
    fn a_storms_turns_grow_with_its_age_up_to_the_cap() {
        let mut a = Admission::new(256);
        for _ in 0..256 {
            a.begin(0.0).unwrap();
        }
        let mut longest = Vec::new();
        for step in 0..30 {
            let now = 500.0 + 100.0 * f64::from(step);
            let age = now - 500.0;
            let max = (0..100).map(|_| a.begin(now).unwrap_err()).max().unwrap();
            let horizon = age.clamp(f64::from(FIRST_TURN_MS), f64::from(MAX_TURN_MS));
            assert!(f64::from(max) <= horizon, "{age} ms in: {max}");
            longest.push(max);
        }
        // 2.5 s into the storm its overflow reaches the cap (spread below it).
        assert!(
            longest[25..].iter().all(|&t| t > MAX_TURN_MS * 9 / 10),
            "{longest:?}"
        );
        // A storm ends once every client refused was due back: the next one starts short.
        let max = (0..100)
            .map(|_| a.begin(10_000.0).unwrap_err())
            .max()
            .unwrap();
        assert!(max <= FIRST_TURN_MS, "{max}");
    }
}
