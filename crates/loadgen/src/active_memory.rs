//! Memory under traffic (issue 15): the server's RSS per connection while every connection is
//! busy, beside the idle figure.
//!
//! `--active-memory N` opens N authenticated connections (N/2 pairs running the load phase's
//! call script, each connection acking every delivery as it reads it, as the SDK does), reads the
//! server's RSS, then carries `--active-rate` messages per second spread round robin over all
//! pairs for `--active-secs`, sampling the RSS every 5 s. The plateau is the highest of the last
//! third of the samples; "per active connection" is (plateau − RSS before connecting) / N, the
//! same baseline as the idle figure, so the two compare directly. What the server keeps per user
//! while messages flow (its resume window, outboxes, buffers) shows here and not in the idle
//! figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{connect_users, cpu_secs, drive, hostile, now_ns, rss_bytes, spawn_all, Tally, Target, Window};

/// RSS sampling period.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Upper bounds that keep the phase bounded (the machine caps a process at 20,000 files).
const MAX_CONNS: usize = 19_000;
const MAX_SECS: u64 = 3_600;

/// What the phase runs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub conns: usize,
    /// Total offered messages per second.
    pub rate: u64,
    pub secs: u64,
    /// Seconds at the start left out of the delivered rate and the latencies.
    pub warmup_secs: u64,
    pub payload: usize,
    pub connect_concurrency: usize,
}

impl Plan {
    /// Refuses what the phase cannot measure, with the reason.
    pub fn check(&self) -> Result<(), String> {
        if self.conns < 2 || !self.conns.is_multiple_of(2) {
            return Err(format!("--active-memory {}: needs an even number of connections (pairs), at least 2", self.conns));
        }
        if self.conns > MAX_CONNS {
            return Err(format!("--active-memory {}: at most {MAX_CONNS} connections", self.conns));
        }
        if self.rate == 0 {
            return Err("--active-rate 0: give the offered messages per second".into());
        }
        if self.secs < SAMPLE_EVERY.as_secs() || self.secs > MAX_SECS {
            return Err(format!(
                "--active-secs {}: between {} and {MAX_SECS} (RSS is sampled every {} s)",
                self.secs,
                SAMPLE_EVERY.as_secs(),
                SAMPLE_EVERY.as_secs()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub conns: usize,
    pub rate: u64,
    /// RSS before the phase's connections were opened.
    pub before: u64,
    /// RSS with every connection open and authenticated, before any traffic.
    pub connected: u64,
    /// (seconds since the traffic started, RSS).
    pub samples: Vec<(u64, u64)>,
    pub issued_per_sec: f64,
    pub delivered_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub send_errors: u64,
    /// Share of one core the server and the generator used while the rate ran (a saturated
    /// side explains a high p99).
    pub server_cpu: Option<f64>,
    pub loadgen_cpu: Option<f64>,
    /// The upper bound of the server's own delivery-latency bucket holding the p99 (accepted →
    /// written, from `/metrics`), ms: the server's share of the p99, without the generator's.
    pub server_p99_ms: Option<f64>,
}

/// The plateau of a series of RSS samples: the highest of the last third (at least the last
/// one), and how many samples that covers.
pub(crate) fn plateau(samples: &[u64]) -> Option<(u64, usize)> {
    let n = samples.len();
    let k = (n / 3).max(1).min(n);
    samples[n - k..].iter().copied().max().map(|m| (m, k))
}

impl Report {
    fn plateau(&self) -> Option<(u64, usize)> {
        plateau(&self.samples.iter().map(|s| s.1).collect::<Vec<_>>())
    }

    /// (plateau − RSS before connecting) / connections: the same baseline as the idle figure.
    pub fn bytes_per_conn(&self) -> Option<f64> {
        self.plateau().map(|(p, _)| p.saturating_sub(self.before) as f64 / self.conns as f64)
    }

    /// Whether the samples the plateau is taken from still rose by more than 5 % of the growth
    /// since connecting: then the run was too short to reach the plateau.
    fn still_growing(&self) -> bool {
        let Some((p, k)) = self.plateau() else {
            return false;
        };
        let tail = &self.samples[self.samples.len() - k..];
        let rise = tail[k - 1].1.saturating_sub(tail[0].1);
        rise * 20 > p.saturating_sub(self.connected)
    }

    /// The first sample at or above 95 % of the way from `connected` to the plateau.
    fn settled_at(&self) -> Option<u64> {
        let (p, _) = self.plateau()?;
        let mark = self.connected + p.saturating_sub(self.connected) * 95 / 100;
        self.samples.iter().find(|s| s.1 >= mark).map(|s| s.0)
    }

    /// The summary lines.
    pub fn summary(&self, server: &str, idle_bytes_per_conn: Option<f64>) -> Vec<String> {
        let mb = |b: u64| b as f64 / 1e6;
        let pct = |c: Option<f64>| c.map_or("?".into(), |c| format!("{:.0}%", c * 100.0));
        let Some((p, k)) = self.plateau() else {
            return vec![format!("{server:<14} active memory: no RSS sample")];
        };
        let tail = &self.samples[self.samples.len() - k..];
        let per = self.bytes_per_conn().unwrap_or(f64::NAN);
        let traffic = p.saturating_sub(self.connected) as f64 / self.conns as f64;
        let idle = match idle_bytes_per_conn {
            Some(i) => format!("{i:.0} B per idle connection in this run (x{:.1})", per / i),
            None => "no idle figure in this run (--idle N)".into(),
        };
        vec![
            format!(
                "{server:<14} active {} connections at {}/s: RSS {:.1} MB before connecting, {:.1} MB connected, plateau {:.1} MB (max of the last {k} samples, {}-{} s; they moved {:+.1} MB; 95 % reached at {} s){}",
                self.conns,
                self.rate,
                mb(self.before),
                mb(self.connected),
                mb(p),
                tail[0].0,
                tail[k - 1].0,
                (tail[k - 1].1 as f64 - tail[0].1 as f64) / 1e6,
                self.settled_at().map_or("?".into(), |t| t.to_string()),
                if self.still_growing() { " STILL GROWING: run longer (--active-secs)" } else { "" },
            ),
            format!(
                "{server:<14} RSS per active connection {per:.0} B (traffic alone {traffic:.0} B) vs {idle}"
            ),
            format!(
                "{server:<14} carried: offered {}/s, issued {:.0}/s, delivered {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (server's own p99 bucket {}), max {:.2} ms, send errors {}, server cpu {}, loadgen cpu {}",
                self.rate,
                self.issued_per_sec,
                self.delivered_per_sec,
                self.p50_ms,
                self.p99_ms,
                self.server_p99_ms.map_or("?".into(), |v| format!("≤{v} ms")),
                self.max_ms,
                self.send_errors,
                pct(self.server_cpu),
                pct(self.loadgen_cpu),
            ),
        ]
    }
}

/// Runs the phase against `target` (rcall), whose process is `pid`.
pub(crate) async fn run(target: &Target, pid: u32, plan: &Plan) -> Report {
    let mb = |b: u64| b as f64 / 1e6;
    // Let the closes of an earlier phase settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(pid).unwrap_or(0);
    let conns = connect_users(target, "am", plan.conns, plan.connect_concurrency).await;
    let addrs: Vec<Arc<str>> = conns.iter().map(|(_, a)| a.clone()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = rss_bytes(pid).unwrap_or(0);
    println!(
        "# active memory: {} connections ({} pairs), {}/s offered for {} s ({:.1}/s per pair), {}-byte messages; RSS {:.1} MB before connecting, {:.1} MB connected",
        plan.conns,
        plan.conns / 2,
        plan.rate,
        plan.secs,
        plan.rate as f64 / (plan.conns / 2) as f64,
        plan.payload,
        mb(before),
        mb(connected)
    );
    let total = Duration::from_secs(plan.secs);
    let warmup = Duration::from_secs(plan.warmup_secs.min(plan.secs / 2));
    let t0 = now_ns();
    let w = Window { start: t0 + warmup.as_nanos() as u64, end: t0 + total.as_nanos() as u64 };
    let (senders, tasks) = spawn_all(target, conns, w, plan.payload, true);
    let me = std::process::id();
    let metrics = match target {
        Target::Rcall { url, .. } => hostile::metrics_addr(url),
        Target::PeerJs { .. } | Target::Matchbox { .. } | Target::Cluster { .. } => None,
    };
    let hist0 = match metrics {
        Some(m) => hostile::latency_histogram(m).await,
        None => None,
    };
    let (cpu0, own0) = (cpu_secs(pid), cpu_secs(me));
    let start = Instant::now();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut at = SAMPLE_EVERY;
        while at <= total {
            tokio::time::sleep_until((start + at).into()).await;
            let rss = rss_bytes(pid).unwrap_or(0);
            println!("    {:>5} s  RSS {:>7.1} MB", at.as_secs(), mb(rss));
            samples.push((at.as_secs(), rss));
            at += SAMPLE_EVERY;
        }
        samples
    });
    let issued = drive(&senders, &addrs, plan.rate, total).await;
    let elapsed = start.elapsed().as_secs_f64();
    let issued_per_sec = issued as f64 / elapsed;
    let share = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) / elapsed);
    let server_cpu = share(cpu0, cpu_secs(pid));
    let loadgen_cpu = share(own0, cpu_secs(me));
    let hist1 = match metrics {
        Some(m) => hostile::latency_histogram(m).await,
        None => None,
    };
    let server_p99_ms = hist0.zip(hist1).and_then(|(a, b)| hostile::p99_bucket_ms(&a, &b));
    let samples = sampler.await.expect("sampler");
    // Let the deliveries in flight arrive: their latencies count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = Tally::stop_and_collect(&senders, tasks).await;
    let report = Report {
        conns: plan.conns,
        rate: plan.rate,
        before,
        connected,
        samples,
        issued_per_sec,
        delivered_per_sec: tally.received as f64 / (total - warmup).as_secs_f64(),
        p50_ms: tally.pct_ms(0.50),
        p99_ms: tally.pct_ms(0.99),
        max_ms: tally.pct_ms(1.0),
        send_errors: tally.send_errors,
        server_cpu,
        loadgen_cpu,
        server_p99_ms,
    };
    // Let the server notice the closes before anything else runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conn_task, Cmd};
    use futures::{SinkExt, StreamExt};
    use rtc_core::proto::client_frame::Body as C;
    use rtc_core::proto::server_frame::Body as S;
    use rtc_core::proto::{AuthResult, ClientFrame, Delivered, ServerFrame, SyncDone};
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;

    fn plan(conns: usize, rate: u64, secs: u64) -> Plan {
        Plan { conns, rate, secs, warmup_secs: 3, payload: 300, connect_concurrency: 10 }
    }

    #[test]
    fn bad_plans_are_refused_with_the_reason() {
        assert!(plan(5000, 10_000, 90).check().is_ok());
        for (p, what) in [
            (plan(0, 10_000, 60), "even"),
            (plan(5001, 10_000, 60), "even"),
            (plan(40_000, 10_000, 60), "at most"),
            (plan(5000, 0, 60), "--active-rate"),
            (plan(5000, 10_000, 2), "--active-secs"),
            (plan(5000, 10_000, 100_000), "--active-secs"),
        ] {
            let e = p.check().unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn the_plateau_is_the_highest_of_the_last_third() {
        assert_eq!(plateau(&[]), None);
        assert_eq!(plateau(&[7]), Some((7, 1)));
        assert_eq!(plateau(&[1, 9, 2]), Some((2, 1)));
        // 12 samples (60 s): the last 4.
        let s = [10, 50, 100, 150, 200, 250, 300, 312, 313, 311, 313, 310];
        assert_eq!(plateau(&s), Some((313, 4)));
    }

    #[test]
    fn the_summary_compares_with_the_idle_figure() {
        let r = Report {
            conns: 5000,
            rate: 10_000,
            before: 8_000_000,
            connected: 25_000_000,
            samples: (1..=12).map(|k| (5 * k, 8_000_000 + 25_000_000 * k.min(8))).collect(),
            issued_per_sec: 10_000.0,
            delivered_per_sec: 9_999.0,
            p50_ms: 0.5,
            p99_ms: 2.0,
            max_ms: 9.0,
            send_errors: 0,
            server_cpu: Some(0.25),
            loadgen_cpu: None,
            server_p99_ms: Some(0.5),
        };
        // Plateau 208 MB from 40 s on: (208 − 8) MB / 5000 = 40,000 B.
        assert_eq!(r.bytes_per_conn(), Some(40_000.0));
        let lines = r.summary("rcall-server", Some(3_500.0)).join("\n");
        assert!(lines.contains("RSS per active connection 40000 B (traffic alone 36600 B) vs 3500 B per idle connection"), "{lines}");
        assert!(lines.contains("95 % reached at 40 s)\n"), "{lines}");
        let mut growing = r.clone();
        growing.samples.truncate(7); // the last 2 still rising by 25 MB each
        let lines = growing.summary("rcall-server", None).join("\n");
        assert!(lines.contains("STILL GROWING"), "{lines}");
        assert!(lines.contains("delivered 9999/s") && lines.contains("p99 2.00 ms (server's own p99 bucket ≤0.5 ms)"), "{lines}");
        assert!(lines.contains("server cpu 25%, loadgen cpu ?"), "{lines}");
        assert!(r.summary("x", None).join("\n").contains("no idle figure"));
    }

    /// The phase's clients ack what they read without waiting to send something themselves:
    /// a client that only receives still lets the server advance its cursor.
    #[tokio::test(flavor = "current_thread")]
    async fn a_receiving_client_acks_each_read_without_sending() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A stand-in server: accepts the auth, delivers two messages, waits for an ack.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let Some(Ok(Message::Binary(_auth))) = ws.next().await else { panic!("no auth") };
            for body in [S::AuthResult(AuthResult::default()), S::SyncDone(SyncDone::default())] {
                ws.send(Message::Binary(ServerFrame::new(1, body).to_bytes().into())).await.unwrap();
            }
            for seq in [41, 42] {
                let d = S::Deliver(Delivered { seq, content: vec![0; 16], ..Default::default() });
                ws.send(Message::Binary(ServerFrame::new(1, d).to_bytes().into())).await.unwrap();
            }
            let mut acked = 0;
            let got = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(Message::Binary(b))) = ws.next().await {
                    if let Some(C::Ack(a)) = ClientFrame::from_bytes(&b).unwrap().body {
                        acked = a.seq;
                        if acked == 42 {
                            break;
                        }
                    }
                }
            })
            .await;
            (got.is_ok(), acked)
        });
        let target = Target::Rcall { url: format!("ws://{addr}/ws"), app_key: "k".into(), app_secret: "s".into() };
        let (ws, _) = target.connect(&Arc::from("u")).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Window { start: 0, end: u64::MAX };
        let task = tokio::spawn(conn_task(target, ws, rx, w, 300, true));
        let (in_time, acked) = server.await.unwrap();
        assert!(in_time, "no ack of seq 42 within 5 s (last acked {acked})");
        let _ = tx.send(Cmd::Stop);
        let _ = task.await;
    }
}
