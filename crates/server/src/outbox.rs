//! A connection's ordered queue of frames to write, and its liveness. The delivery core pushes
//! into it (through [`crate::hub`]'s shell) while it routes; the connection task drains it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use delivery::{Outgoing, PushError};
use rtc_core::proto::ErrorFrame;

use crate::clock::mono_ms;

/// Live frames waiting to be written to one connection. A client that stops reading is
/// disconnected (it can resume) rather than growing the server's memory.
pub const OUTBOX_CAPACITY: usize = 1024;

/// `clock::mono_ms` as of the last liveness sweep: connections stamp every frame with it, without
/// reading the clock per frame (it is at most one sweep tick behind).
static LIVENESS_NOW: AtomicU64 = AtomicU64::new(0);

/// The liveness clock (what a frame heard now is stamped with): the bound a test can derive a
/// connection's earliest death from, whatever the sweeper's delays.
pub fn liveness_now() -> u64 {
    LIVENESS_NOW.load(Ordering::Relaxed)
}

/// Advances the liveness clock (by the sweep) and returns it.
pub fn tick_liveness_clock() -> u64 {
    let now = mono_ms();
    LIVENESS_NOW.fetch_max(now, Ordering::Relaxed);
    now
}

#[derive(Default)]
struct OutQ {
    items: VecDeque<Outgoing>,
    closed: bool,
    aborted: bool,
    /// The connection task, while it waits for items (or for a stuck write, for an abort).
    /// Taken by the first push or close that follows, so a burst wakes it once.
    waker: Option<Waker>,
}

/// A connection's ordered queue of frames to write. Empty when idle (no allocation), so idle
/// connections stay small.
#[derive(Default)]
pub struct Outbox {
    q: Mutex<OutQ>,
    /// When the client last sent anything, frames or pongs (`clock::mono_ms`).
    last_heard: AtomicU64,
    /// When the server last pinged it (`clock::mono_ms`).
    last_ping: AtomicU64,
    /// The client sends app `Ping`s of its own (the SDK does, every 5 s): see [`Self::app_pinged`].
    app_pings: AtomicBool,
}

impl Outbox {
    pub fn new() -> Self {
        let o = Self::default();
        o.last_heard.store(mono_ms(), Ordering::Relaxed);
        o
    }

    /// The client sent something: it is alive.
    pub fn heard(&self) {
        let now = LIVENESS_NOW.load(Ordering::Relaxed);
        if self.last_heard.load(Ordering::Relaxed) < now {
            self.last_heard.store(now, Ordering::Relaxed);
        }
    }

    /// The client sent an app `Ping`: from now on the server's WebSocket ping waits for its
    /// pings to be overdue (silent for 1.5 ping intervals) instead of one interval. The SDK pings
    /// on the server's own interval, and the liveness clock stamps what it hears up to a sweep
    /// tick late, so with one interval nearly every SDK connection also got a WebSocket ping
    /// (and sent its pong) every interval: twice the liveness traffic for nothing. A client
    /// whose pings stop (a throttled background tab) is still pinged twice before `dead_ms`
    /// (with `dead_ms` under three intervals, where that would not hold, the old rule stays).
    pub fn app_pinged(&self) {
        if !self.app_pings.load(Ordering::Relaxed) {
            self.app_pings.store(true, Ordering::Relaxed);
        }
    }

    /// Liveness check at `now` (`clock::mono_ms`): queues a Ping once per `ping_ms` of silence;
    /// kills the connection after `dead_ms` of silence. True when it was killed just now.
    pub fn check_alive(&self, now: u64, ping_ms: u64, dead_ms: u64) -> bool {
        let silent = now.saturating_sub(self.last_heard.load(Ordering::Relaxed));
        if silent >= dead_ms {
            let mut q = self.lock();
            if q.aborted {
                return false;
            }
            q.items.clear();
            q.closed = true;
            q.aborted = true;
            Self::wake(q);
            return true;
        }
        // Only where that still leaves two pings before `dead_ms` (the default: 15 s = 3 × 5 s).
        let ping_after = if self.app_pings.load(Ordering::Relaxed) && dead_ms >= 3 * ping_ms {
            ping_ms + ping_ms / 2
        } else {
            ping_ms
        };
        if silent >= ping_after
            && now.saturating_sub(self.last_ping.load(Ordering::Relaxed)) >= ping_ms
        {
            self.last_ping.store(now, Ordering::Relaxed);
            let _ = self.push(Outgoing::Ping, false);
        }
        false
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Items queued now and their encoded bytes (the memory gauges: a backlog's share).
    pub fn queued(&self) -> (usize, usize) {
        let q = self.lock();
        let bytes = q
            .items
            .iter()
            .map(|i| match i {
                Outgoing::Frame { body, .. } | Outgoing::Durable { body, .. } => body.len(),
                Outgoing::Fatal(_) | Outgoing::Ping => 0,
            })
            .sum();
        (q.items.len(), bytes)
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Killed or aborted: nothing more is written.
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutQ> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`; `bounded` refuses it once [`OUTBOX_CAPACITY`] items wait.
    pub fn push(&self, item: Outgoing, bounded: bool) -> Result<(), PushError> {
        self.push_inner(item, bounded, true)
    }

    /// [`Self::push`] from the connection's own task, which takes its queue before it waits
    /// again: no wake-up needed.
    pub fn push_own(&self, item: Outgoing, bounded: bool) -> Result<(), PushError> {
        self.push_inner(item, bounded, false)
    }

    fn push_inner(&self, item: Outgoing, bounded: bool, wake: bool) -> Result<(), PushError> {
        let mut q = self.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if bounded && q.items.len() >= OUTBOX_CAPACITY {
            return Err(PushError::Full);
        }
        q.items.push_back(item);
        let waker = if wake { q.waker.take() } else { None };
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Wakes the connection task (after a state change under the lock).
    fn wake(mut q: std::sync::MutexGuard<'_, OutQ>) {
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Rewrites the first queued item in place (none queued: nothing), under the queue's lock:
    /// nothing pushed meanwhile is reordered. A cluster login's `AuthResult`, queued at
    /// registration, gets what its join read later ([`crate::hub::Hub::join_result`]).
    pub fn update_first(&self, f: impl FnOnce(&mut Outgoing)) {
        if let Some(first) = self.lock().items.front_mut() {
            f(first);
        }
    }

    /// Drops everything queued and makes `err` the last frame.
    pub fn abort_with(&self, err: ErrorFrame) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        q.items.clear();
        q.items.push_back(Outgoing::Fatal(err));
        q.closed = true;
        q.aborted = true;
        Self::wake(q);
    }

    /// Drops what is queued and closes: the connection closes without writing more.
    pub fn kill(&self) {
        let mut q = self.lock();
        q.items.clear();
        q.closed = true;
        q.aborted = true;
        Self::wake(q);
    }

    /// No more items: the writer drains what is queued, then closes the connection.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        Self::wake(q);
    }

    /// Moves every queued item into `out`; true once closed (nothing more will come).
    pub fn take(&self, out: &mut Vec<Outgoing>) -> bool {
        let mut q = self.lock();
        if !q.items.is_empty() {
            if out.is_empty() {
                // The queue's buffer itself moves to `out` (no copy); the queue gets `out`'s
                // empty one. [`Self::recycle`] brings a buffer back after the write, so a
                // connection's push → take → write cycle allocates nothing.
                let spare = VecDeque::from(std::mem::take(out));
                *out = Vec::from(std::mem::replace(&mut q.items, spare));
            } else {
                out.extend(q.items.drain(..));
                // An idle connection keeps at most one buffer (see `recycle`).
                q.items = VecDeque::new();
            }
        }
        q.closed
    }

    /// Gives the writer's emptied `buf` back to the queue when the queue has no buffer, so the
    /// next push needs no allocation; otherwise drops it. Either way one connection keeps at
    /// most one buffer between writes (idle connections dominate memory).
    pub fn recycle(&self, buf: &mut Vec<Outgoing>) {
        debug_assert!(buf.is_empty());
        let mut q = self.lock();
        if q.items.capacity() == 0 {
            q.items = VecDeque::from(std::mem::take(buf));
        } else {
            *buf = Vec::new();
        }
    }

    /// Ready when items are queued or the outbox is closed; otherwise wakes the task of `cx`
    /// on the next push, close or abort.
    pub fn poll_pending(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.lock();
        if !q.items.is_empty() || q.closed {
            return Poll::Ready(());
        }
        Self::register(&mut q, cx);
        Poll::Pending
    }

    /// Ready once the outbox was aborted; otherwise wakes the task of `cx` on the next push,
    /// close or abort (a spurious wake-up for anything but the abort).
    pub fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.lock();
        if q.aborted {
            return Poll::Ready(());
        }
        Self::register(&mut q, cx);
        Poll::Pending
    }

    fn register(q: &mut OutQ, cx: &mut Context<'_>) {
        match &mut q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }

    /// Resolves when items are queued or the outbox is closed (tests; the connection task
    /// polls [`Self::poll_pending`]).
    #[cfg(test)]
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| self.poll_pending(cx)).await
    }

    /// Resolves once the outbox was aborted (tests; the connection task polls
    /// [`Self::poll_aborted`]).
    #[cfg(test)]
    pub async fn aborted(&self) {
        std::future::poll_fn(|cx| self.poll_aborted(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn liveness_pings_once_per_interval_then_kills() {
        let o = Outbox::new();
        let t0 = o.last_heard.load(Ordering::Relaxed);
        assert!(!o.check_alive(t0 + 99, 100, 300));
        assert!(!o.check_alive(t0 + 100, 100, 300));
        assert!(!o.check_alive(t0 + 150, 100, 300));
        let mut v = Vec::new();
        o.take(&mut v);
        assert_eq!(v.len(), 1, "one ping per interval");
        assert!(matches!(v[0], Outgoing::Ping));
        assert!(o.check_alive(t0 + 300, 100, 300), "killed");
        assert!(o.is_aborted());
        assert!(!o.check_alive(t0 + 400, 100, 300), "only once");
    }

    /// An SDK-like client pings on the server's own interval, heard up to a sweep tick late:
    /// it gets no WebSocket ping of the server's on top; once its pings stop it still gets two
    /// before it is killed.
    #[test]
    fn a_client_that_app_pings_on_time_is_not_pinged_too() {
        let pings = |o: &Outbox| {
            let mut v = Vec::new();
            o.take(&mut v);
            v.iter().filter(|i| matches!(i, Outgoing::Ping)).count()
        };
        let o = Outbox::new();
        o.app_pinged();
        let t0 = o.last_heard.load(Ordering::Relaxed);
        // Heard at t0 (stamped a 25 ms tick late), swept every 25 ms until its next ping.
        for t in (t0..=t0 + 125).step_by(25) {
            assert!(!o.check_alive(t, 100, 300));
        }
        assert_eq!(pings(&o), 0, "its own pings are on time");
        // Silent from t0 on: pinged at 150 and 250 (1.5 and 2.5 intervals), killed at 300.
        for t in (t0 + 150..t0 + 300).step_by(25) {
            assert!(!o.check_alive(t, 100, 300));
        }
        assert_eq!(pings(&o), 2);
        assert!(o.check_alive(t0 + 300, 100, 300), "killed");
        // Closed sooner than three intervals: pinged after one, as a silent client.
        let o = Outbox::new();
        o.app_pinged();
        let t0 = o.last_heard.load(Ordering::Relaxed);
        assert!(!o.check_alive(t0 + 100, 100, 250));
        assert_eq!(pings(&o), 1);
    }

    #[tokio::test]
    async fn a_waiting_connection_is_woken_by_a_push_and_by_an_abort() {
        let o = Arc::new(Outbox::new());
        let frame = || Outgoing::Frame {
            body: Bytes::new(),
            accepted: None,
        };
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.notified().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "nothing queued yet");
        o.push(frame(), true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        // A push from the connection's own task queues without waking.
        let mut v = Vec::new();
        o.take(&mut v);
        o.push_own(frame(), true).unwrap();
        assert_eq!(o.lock().items.len(), 1);
        // A task waiting for an abort is woken (spuriously) by pushes and for good by the abort.
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.aborted().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        o.push(frame(), true).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a push is not an abort");
        o.abort_with(ErrorFrame::default());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_push_take_recycle_cycle_keeps_order_and_one_buffer() {
        let o = Outbox::new();
        let frame = |i: u8| Outgoing::Frame {
            body: Bytes::from(vec![i]),
            accepted: None,
        };
        let mut batch = Vec::new();
        for round in 0..3u8 {
            o.push(frame(2 * round), true).unwrap();
            o.push(frame(2 * round + 1), true).unwrap();
            assert!(!o.take(&mut batch));
            let got: Vec<u8> = batch
                .iter()
                .map(|b| match b {
                    Outgoing::Frame { body, .. } => body[0],
                    _ => panic!(),
                })
                .collect();
            assert_eq!(got, [2 * round, 2 * round + 1]);
            batch.clear();
            o.recycle(&mut batch);
            // The queue holds the one buffer; the writer none.
            assert_eq!(batch.capacity(), 0);
            assert!(o.lock().items.capacity() > 0);
        }
        // A take into a non-empty batch appends, in order.
        o.push(frame(7), true).unwrap();
        let mut batch = vec![frame(6)];
        o.take(&mut batch);
        assert_eq!(batch.len(), 2);
        assert!(matches!(&batch[1], Outgoing::Frame { body, .. } if body[0] == 7));
        // Pushes during a write: the queue has its own buffer again, the writer's is dropped.
        o.push(frame(8), true).unwrap();
        batch.clear();
        let mut spare = Vec::with_capacity(4);
        o.recycle(&mut spare);
        assert_eq!(spare.capacity(), 0);
        assert_eq!(o.len(), 1);
    }

    #[tokio::test]
    async fn outbox_is_bounded_ordered_and_drains_after_close() {
        let o = Outbox::new();
        for i in 0..OUTBOX_CAPACITY {
            o.push(
                Outgoing::Frame {
                    body: Bytes::from(vec![i as u8]),
                    accepted: None,
                },
                true,
            )
            .unwrap();
        }
        let extra = || Outgoing::Frame {
            body: Bytes::new(),
            accepted: None,
        };
        assert_eq!(o.push(extra(), true), Err(PushError::Full));
        assert!(o.push(extra(), false).is_ok());
        o.close();
        assert_eq!(o.push(extra(), false), Err(PushError::Closed));
        let mut v = Vec::new();
        assert!(o.take(&mut v), "closed");
        assert_eq!(v.len(), OUTBOX_CAPACITY + 1);
        v.clear();
        assert!(o.take(&mut v));
        assert!(v.is_empty());
        // Closed: waiting returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), o.notified())
            .await
            .unwrap();
    }
}
