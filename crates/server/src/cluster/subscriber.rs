//! The subscriber: a dedicated pub/sub connection (a subscribed connection can run no other
//! command) whose messages go to a bounded mpsc channel as [`BusEvent`]s.
//!
//! Redis pub/sub delivers at most once: a message published while the connection is down, or
//! dropped, is gone. So the subscriber never hides a gap. Whenever one may have happened — the
//! connection dropped (Redis restarted, network), a ping went unanswered, or the consumer fell
//! `capacity` events behind — it drops the connection, connects again (backing off while Redis
//! is away), subscribes to every channel again, and only then sends [`BusEvent::Resync`]. Every
//! message published after the consumer sees `Resync` reaches it; what came before must be
//! recovered from Redis's state (the hub resyncs its local devices). Falling behind is treated
//! like a drop rather than queued without bound, so a stuck consumer costs bounded memory.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::ProtocolVersion;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{ClusterError, RedisUrl, CONNECT_TIMEOUT};

/// A silent connection is pinged this often; no answer within the bus's response timeout
/// ([`super::Bus::response_timeout`]) counts as lost (a dead TCP peer would otherwise go
/// unnoticed until the kernel gives up).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// First pause before reconnecting after a failed attempt; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What a [`Subscriber`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message published on a subscribed channel.
    Message { channel: String, payload: Bytes },
    /// Delivery had (or may have had) a gap and is live again on every subscribed channel:
    /// resync local state from Redis.
    Resync,
}

/// The next event a follower task handles: `None` once the node shuts down or the
/// subscriber is gone (the follower then ends).
pub(super) async fn next_event(
    rx: &mut mpsc::Receiver<BusEvent>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<BusEvent> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        ev = rx.recv() => ev,
    }
}

/// A (un)subscription and who waits for it. Commands are applied in the order they were
/// queued; the queued ones go to Redis together, as their net effect (a node whose clients
/// all reconnect at once subscribes their channels in a few round trips, not one each; see
/// `Task::apply`).
struct Cmd {
    subscribe: bool,
    channels: Vec<String>,
    ack: oneshot::Sender<()>,
}

/// Commands merged into one (un)subscription at most.
const MAX_BATCH: usize = 4096;

/// Handle of a running subscriber task; dropping it stops the task and closes its connection.
pub struct Subscriber {
    cmds: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Connects and starts the task; fails if Redis cannot be reached now.
    pub(super) async fn start(
        url: RedisUrl,
        capacity: usize,
        response_timeout: Duration,
    ) -> Result<(Subscriber, mpsc::Receiver<BusEvent>), ClusterError> {
        if capacity == 0 {
            return Err(ClusterError::OutOfRange(
                "subscriber capacity must be > 0".into(),
            ));
        }
        // RESP2: the classic dedicated pub/sub connection, whatever the URL asked for.
        let info = url.connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP2);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| ClusterError::connect(&url, e))?;
        let conn = connect(&client)
            .await
            .map_err(|e| ClusterError::connect(&url, e))?;
        let (events, rx) = mpsc::channel(capacity);
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let task = Task {
            client,
            url,
            response_timeout,
            channels: HashSet::new(),
            events,
            cmds: cmd_rx,
        };
        let task = tokio::spawn(task.run(conn));
        Ok((Subscriber { cmds, task }, rx))
    }

    /// Subscribes to `channels`. Returns once Redis confirmed it, or, while Redis is
    /// unreachable, once it is recorded: it is then made before the next [`BusEvent::Resync`].
    pub async fn subscribe(&self, channels: &[&str]) -> Result<(), ClusterError> {
        self.queue(true, channels)?
            .await
            .map_err(|_| ClusterError::SubscriberStopped)
    }

    /// Unsubscribes from `channels`: once this returns, no further message of theirs is added
    /// to the event queue (some may already wait in it).
    pub async fn unsubscribe(&self, channels: &[&str]) -> Result<(), ClusterError> {
        self.queue(false, channels)?
            .await
            .map_err(|_| ClusterError::SubscriberStopped)
    }

    /// Queues a (un)subscription now (commands are applied in the order they are queued) and
    /// returns what answers once it is applied ([`Self::subscribe`]). Synchronous, so a caller
    /// can decide and queue under its own lock and wait outside it. Subscribing to a channel
    /// already subscribed changes nothing but still answers in order: after the subscription
    /// queued before it is confirmed.
    pub fn queue(
        &self,
        subscribe: bool,
        channels: &[&str],
    ) -> Result<oneshot::Receiver<()>, ClusterError> {
        let (ack, rx) = oneshot::channel();
        let channels = channels.iter().map(|c| c.to_string()).collect();
        self.cmds
            .send(Cmd {
                subscribe,
                channels,
                ack,
            })
            .map_err(|_| ClusterError::SubscriberStopped)?;
        Ok(rx)
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
        Ok(r) => r.map(|p| p.split()),
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// Why a connected phase ended.
enum End {
    /// The subscriber handle or the event receiver is gone.
    Stop,
    /// The connection is unusable, or delivery had a gap: reconnect and resync.
    Gap(String),
}

struct Task {
    client: redis::Client,
    url: RedisUrl,
    /// How long a ping or (un)subscription waits for Redis's answer.
    response_timeout: Duration,
    /// Every channel subscribed to, made again on each new connection.
    channels: HashSet<String>,
    events: mpsc::Sender<BusEvent>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
}

impl Task {
    async fn run(mut self, first: (PubSubSink, PubSubStream)) {
        let mut conn = first;
        loop {
            let reason = match self.serve(&mut conn.0, &mut conn.1).await {
                End::Stop => return,
                End::Gap(reason) => reason,
            };
            drop(conn);
            tracing::warn!(redis = %self.url, %reason, "cluster subscriber: delivery interrupted; reconnecting");
            conn = match self.reconnect().await {
                Some(c) => c,
                None => return,
            };
        }
    }

    /// Delivers messages and applies commands until the connection ends or a gap occurs.
    async fn serve(&mut self, sink: &mut PubSubSink, stream: &mut PubSubStream) -> End {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => {
                    let Some(cmd) = cmd else { return End::Stop };
                    let batch = self.drain(cmd);
                    if let Err(e) = self.apply(batch, Some(sink)).await {
                        return End::Gap(e);
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return End::Gap("connection closed".into());
                    };
                    let channel = msg.get_channel_name();
                    if !self.channels.contains(channel) {
                        continue; // unsubscribed while the message was in flight
                    }
                    let ev = BusEvent::Message {
                        channel: channel.to_owned(),
                        payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
                    };
                    match self.events.try_send(ev) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            return End::Gap(format!(
                                "consumer fell {} events behind",
                                self.events.max_capacity()
                            ));
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return End::Stop,
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(self.response_timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return End::Gap(format!("ping failed: {e}")),
                        Err(_) => return End::Gap("ping unanswered".into()),
                    }
                }
                _ = self.events.closed() => return End::Stop,
            }
        }
    }

    /// `first` and the commands queued behind it (at most [`MAX_BATCH`]), in order.
    fn drain(&mut self, first: Cmd) -> Vec<Cmd> {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match self.cmds.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        batch
    }

    /// Records commands in the channel set, in order, and, when connected, sends Redis the
    /// batch's net effect: one UNSUBSCRIBE of the channels it dropped and one SUBSCRIBE of those
    /// it added, two round trips at most however the commands interleave. (One command per
    /// run of one kind took a round trip per login in a login storm, where connections coming
    /// and going alternate: seconds of `hold`.) A channel dropped and added again within the
    /// batch stays subscribed; what arrives is filtered by the channel set, so no caller sees
    /// the difference. Every caller is answered either way (a recorded subscription is made on
    /// the next connection); an error means the connection is unusable.
    async fn apply(&mut self, cmds: Vec<Cmd>, sink: Option<&mut PubSubSink>) -> Result<(), String> {
        // Channel → whether it was subscribed before the batch, for those it changed.
        let mut before: HashMap<String, bool> = HashMap::new();
        let mut acks = Vec::with_capacity(cmds.len());
        for c in cmds {
            for ch in c.channels {
                let was = self.channels.contains(&ch);
                if was != c.subscribe {
                    if c.subscribe {
                        self.channels.insert(ch.clone());
                    } else {
                        self.channels.remove(&ch);
                    }
                    before.entry(ch).or_insert(was);
                }
            }
            acks.push(c.ack);
        }
        let (mut added, mut dropped) = (Vec::new(), Vec::new());
        for (ch, was) in before {
            match (was, self.channels.contains(&ch)) {
                (false, true) => added.push(ch),
                (true, false) => dropped.push(ch),
                _ => {}
            }
        }
        let mut result = Ok(());
        if let Some(sink) = sink {
            for (subscribe, list) in [(false, dropped), (true, added)] {
                if list.is_empty() || result.is_err() {
                    continue;
                }
                let sent = if subscribe {
                    tokio::time::timeout(self.response_timeout, sink.subscribe(&list)).await
                } else {
                    tokio::time::timeout(self.response_timeout, sink.unsubscribe(&list)).await
                };
                result = match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("(un)subscribe failed: {e}")),
                    Err(_) => Err("(un)subscribe unanswered".into()),
                };
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
        result
    }

    /// Connects again (backing off while Redis is away), subscribes to every channel, then
    /// emits `Resync`. None: stop (handle or receiver gone).
    async fn reconnect(&mut self) -> Option<(PubSubSink, PubSubStream)> {
        let mut backoff = MIN_BACKOFF;
        let mut first = true;
        loop {
            // Room for the Resync first, so it can follow the resubscription at once: no
            // message of the new connection may precede it.
            let permit = self.wait(self.events.clone().reserve_owned()).await?.ok()?;
            if !first {
                let pause = tokio::time::sleep(backoff);
                self.wait(pause).await?;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            first = false;
            let client = self.client.clone();
            let (mut sink, stream) = match self.wait(connect(&client)).await? {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(redis = %self.url, error = %e, "cluster subscriber: reconnect failed");
                    continue;
                }
            };
            let all: Vec<String> = self.channels.iter().cloned().collect();
            if !all.is_empty() {
                match tokio::time::timeout(self.response_timeout, sink.subscribe(&all)).await {
                    Ok(Ok(())) => {}
                    _ => continue,
                }
            }
            permit.send(BusEvent::Resync);
            tracing::info!(redis = %self.url, channels = all.len(), "cluster subscriber: reconnected; resync");
            return Some((sink, stream));
        }
    }

    /// Awaits `fut` while still answering commands (recorded for the next connection). None:
    /// the handle was dropped.
    async fn wait<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                cmd = self.cmds.recv() => {
                    let batch = self.drain(cmd?);
                    let _ = self.apply(batch, None).await;
                }
            }
        }
    }
}
