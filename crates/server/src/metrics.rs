//! Prometheus metrics, served as text at `GET /metrics`. Hand-rolled on atomics: a handful of
//! counters and one histogram do not need a metrics framework, and the hot path stays at one
//! relaxed atomic add per event.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the delivery latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub messages_routed: AtomicU64,
    pub deliveries: AtomicU64,
    pub offline_stored: AtomicU64,
    pub offline_replayed: AtomicU64,
    pub api_requests: AtomicU64,
    /// Connections closed at accept: the cap on not-yet-authenticated connections (global or
    /// per source IP) was reached.
    pub unauthenticated_refused: AtomicU64,
    /// Failed `accept` calls (e.g. EMFILE: out of file descriptors), each followed by a pause.
    pub accept_errors: AtomicU64,
    /// Most items one replay ever had queued for its connection at once (one page at most).
    pub replay_peak_queue: AtomicU64,
    /// Offline pushes queued for an app's webhook ([`crate::push`]).
    pub push_enqueued: AtomicU64,
    /// Offline pushes the webhook took (2xx).
    pub push_delivered: AtomicU64,
    /// Failed webhook attempts that were retried.
    pub push_retries: AtomicU64,
    /// Offline pushes given up (out of attempts, or refused with a 4xx).
    pub push_failed: AtomicU64,
    /// Offline pushes dropped because the push queue was full.
    pub push_dropped: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    errors: Mutex<BTreeMap<i32, u64>>,
}

/// Gauges sampled when `/metrics` is scraped.
pub struct Gauges {
    /// `(app key, authenticated connections)`.
    pub connections: Vec<(String, usize)>,
    pub offline_queue_depth: i64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error answered with `code` (auth refusals, refused sends, error frames,
    /// Server API errors).
    pub fn error(&self, code: i32) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// Time from the server accepting a message to writing it to a recipient's socket.
    pub fn observe_delivery(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(
            u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn error_count(&self, code: i32) -> u64 {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&code)
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut s = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP rcall_connections Authenticated WebSocket connections.\n# TYPE rcall_connections gauge"
        );
        for (app, n) in &gauges.connections {
            let _ = writeln!(s, "rcall_connections{{app=\"{}\"}} {n}", escape(app));
        }
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut s,
            "rcall_connections_accepted_total",
            "Connections that authenticated.",
            get(&self.connections_accepted),
        );
        counter(
            &mut s,
            "rcall_unauthenticated_refused_total",
            "Connections closed at accept because too many were not authenticated yet.",
            get(&self.unauthenticated_refused),
        );
        counter(
            &mut s,
            "rcall_accept_errors_total",
            "Failed accepts (e.g. out of file descriptors); each is retried after a pause.",
            get(&self.accept_errors),
        );
        counter(
            &mut s,
            "rcall_messages_routed_total",
            "Messages accepted for routing.",
            get(&self.messages_routed),
        );
        counter(
            &mut s,
            "rcall_deliveries_total",
            "Messages written live to recipient connections (replays count in rcall_offline_replayed_total).",
            get(&self.deliveries),
        );
        counter(
            &mut s,
            "rcall_offline_stored_total",
            "Messages stored for users with no connected device.",
            get(&self.offline_stored),
        );
        counter(
            &mut s,
            "rcall_offline_replayed_total",
            "Stored or retained messages replayed to connecting devices.",
            get(&self.offline_replayed),
        );
        counter(
            &mut s,
            "rcall_api_requests_total",
            "Server API requests.",
            get(&self.api_requests),
        );
        counter(
            &mut s,
            "rcall_push_enqueued_total",
            "Offline pushes queued for the app's push webhook.",
            get(&self.push_enqueued),
        );
        counter(
            &mut s,
            "rcall_push_delivered_total",
            "Offline pushes the push webhook accepted.",
            get(&self.push_delivered),
        );
        counter(
            &mut s,
            "rcall_push_retries_total",
            "Failed push webhook attempts that were retried.",
            get(&self.push_retries),
        );
        counter(
            &mut s,
            "rcall_push_failed_total",
            "Offline pushes given up (out of attempts or refused).",
            get(&self.push_failed),
        );
        counter(
            &mut s,
            "rcall_push_dropped_total",
            "Offline pushes dropped because the push queue was full.",
            get(&self.push_dropped),
        );
        let _ = writeln!(
            s,
            "# HELP rcall_offline_queue_depth Messages stored for offline users.\n# TYPE rcall_offline_queue_depth gauge\nrcall_offline_queue_depth {}",
            gauges.offline_queue_depth
        );
        let _ = writeln!(
            s,
            "# HELP rcall_delivery_latency_seconds Accepted to written to the recipient's socket.\n# TYPE rcall_delivery_latency_seconds histogram"
        );
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += get(&self.latency_buckets[i]);
            let _ = writeln!(
                s,
                "rcall_delivery_latency_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            s,
            "rcall_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {count}\nrcall_delivery_latency_seconds_sum {}\nrcall_delivery_latency_seconds_count {count}",
            get(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "# HELP rcall_errors_total Errors answered to clients, by code.\n# TYPE rcall_errors_total counter"
        );
        for (code, n) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(s, "rcall_errors_total{{code=\"{code}\"}} {n}");
        }
        s
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_errors() {
        let m = Metrics::default();
        Metrics::inc(&m.messages_routed);
        m.observe_delivery(Duration::from_micros(300));
        m.observe_delivery(Duration::from_secs(60));
        m.error(405);
        m.error(405);
        let text = m.render(&Gauges {
            connections: vec![("a\"pp".into(), 3)],
            offline_queue_depth: 7,
        });
        assert!(text.contains("rcall_messages_routed_total 1"));
        assert!(text.contains("rcall_connections{app=\"a\\\"pp\"} 3"));
        assert!(text.contains("rcall_offline_queue_depth 7"));
        assert!(text.contains("rcall_delivery_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("rcall_delivery_latency_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("rcall_errors_total{code=\"405\"} 2"));
    }
}
