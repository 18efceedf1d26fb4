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
/// The longest turn the node gives: the SDK waits a turn +0–20 % (`im::busy_delay`: clients
/// given the same turn do not come back in the same millisecond) but never past
/// [`MAX_RETRY_MS`], so a turn at that cap lost its jitter, and every client a storm sent
/// there came back at once, 4 s later, into another storm (a 30,000-connection failover's
/// resume p99, 6–12 s, was two or three 4 s laps while a login took tens of ms at p50).
/// 5/6 of the cap keeps the jitter whole: capped turns come back spread over 3.3–4 s.
pub const MAX_TURN_MS: u32 = MAX_RETRY_MS * 5 / 6;
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
        }
    }

    /// A login arrives at `now_ms`: `Ok(())` when it may start (then [`Self::finish`] it), else
    /// the busy answer's `retry_after_ms`: the client's turn, behind the refused clients still
    /// ahead, one login's share of the node's time (a login's duration over the bound) each,
    /// [`MIN_RETRY_MS`] added, at most [`MAX_TURN_MS`].
    ///
    /// The clients ahead are counted, not their turns' times: the queue drains at the rate
    /// known now. (With turns kept as times, a storm's first refusals, given on the slow
    /// logins of its start — every slot began at once — pushed the queue to the cap, and every
    /// later client was sent there however fast the node then served: in a 30,000-connection
    /// failover the node's logins took 20 ms at p50 while its clients waited 3.6 s for their
    /// turns.)
    pub fn begin(&mut self, now_ms: f64) -> Result<(), u32> {
        if self.running < self.max {
            self.running += 1;
            self.started_sum += now_ms;
            return Ok(());
        }
        let mean_age = now_ms - self.started_sum / self.running as f64;
        let duration = self.avg_ms.unwrap_or(0.0).max(mean_age).max(1.0);
        let share = duration / self.max as f64;
        // Every turn given has passed: those clients came back (refused again, they count
        // anew).
        let drained = if now_ms >= self.tail_ms {
            0.0
        } else {
            self.queue - (now_ms - self.queue_at_ms).max(0.0) / share
        };
        // (The queue never reaches past the cap: a turn given beyond it would not be kept.)
        let room = f64::from(MAX_TURN_MS - MIN_RETRY_MS) / share;
        self.queue = (drained.max(0.0) + 1.0).min(room);
        self.queue_at_ms = now_ms;
        let wait = self.queue * share;
        self.tail_ms = self.tail_ms.max(now_ms + wait);
        Err((wait as u32 + MIN_RETRY_MS).min(MAX_TURN_MS))
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
        // Logins took 400 ms each before: 4 slots serve 10 logins a second.
        for _ in 0..8 {
            a.begin(0.0).unwrap();
            a.finish(0.0, 400.0);
        }
        for _ in 0..4 {
            a.begin(1000.0).unwrap();
        }
        let turns: Vec<u32> = (0..5).map(|_| a.begin(1000.0).unwrap_err()).collect();
        assert_eq!(turns, [300, 400, 500, 600, 700]);
        // Turns already passed are not waited for: a later refusal starts from now (and the
        // logins running for 4 s now say a login takes that long at least: 1 s per slot).
        assert_eq!(a.begin(5000.0), Err(MIN_RETRY_MS + 1000));
        // A slot freed: the next login starts.
        a.finish(1000.0, 1400.0);
        assert_eq!(a.begin(1400.0), Ok(()));
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
        // 4 s in, none done: a login takes 4 s, 1 s per slot.
        let slow: Vec<u32> = (0..3).map(|_| a.begin(4000.0).unwrap_err()).collect();
        assert_eq!(slow, [1200, 2200, 3200]);
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
        // The 3 clients ahead are a few logins' shares at the node's rate now (~15 ms per
        // slot: drained within these 100 ms), not 3.2 s of the start's.
        let turn = a.begin(4100.0).unwrap_err();
        assert!(turn < 300, "{turn}");
        // Still behind each other.
        assert!(a.begin(4100.0).unwrap_err() > turn);
    }

    #[test]
    fn turns_are_capped_and_no_bound_refuses_nothing() {
        let mut a = Admission::new(1);
        a.begin(0.0).unwrap();
        assert_eq!(a.begin(60_000.0), Err(MAX_TURN_MS));
        // The client's +0–20 % still fits under its own cap: capped turns stay spread.
        const { assert!(MAX_TURN_MS * 6 / 5 <= MAX_RETRY_MS) };
        // The queue stops at the cap: once the node is served again, turns shrink at once.
        a.finish(0.0, 60_000.0);
        a.begin(60_000.0).unwrap();
        a.finish(60_000.0, 60_001.0);
        a.begin(60_001.0).unwrap();
        assert!(a.begin(60_001.0).unwrap_err() <= MAX_TURN_MS);
        let mut free = Admission::new(0);
        assert!((0..10_000).all(|_| free.begin(0.0).is_ok()));
    }
}
