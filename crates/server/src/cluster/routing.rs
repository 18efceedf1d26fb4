//! Cluster mode's routing on one node (docs/cluster.md, step 1): a message between users on
//! different nodes.
//!
//! - Sending: the connection task admits the message under the app's lock
//!   ([`crate::hub::Hub::admit`]), then runs the shared route script ([`Mailboxes::route`])
//!   outside it. The script's reply marker comes back on the sender's user channel, behind
//!   every copy of the message for the sender's devices, and becomes the `SendResult`.
//! - Receiving: the node subscribes to the channel of every user with a connection here (on
//!   its first connection, before its mailbox is read; dropped with its last), and one task
//!   ([`follow`]) hands what arrives to the core ([`crate::hub::Hub::deliver_sequenced`],
//!   [`crate::hub::Hub::reply_to_conn`]).
//! - Connecting: the replay comes from the mailbox, a page at a time ([`Routing::sync_start`],
//!   [`Routing::sync_page`]).
//! - Presence: every connection held here is counted in its user's presence
//!   ([`super::presence`]); the route script flags copies for users on no node `offline`.
//!
//! Call rooms across nodes: [`super::rooms`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rtc_core::proto::SendResult;
use tokio::sync::mpsc::Receiver;

use super::admission::Admission;
use super::mailbox::{user_channel, ConnRef, Mailboxes, RouteRequest, Routed, UserEvent};
use super::presence::Presence;
use super::route_batch::PreparedRoute;
use super::subscriber::next_event;
use super::{BusEvent, ClusterError, Subscriber};
use crate::hub::{AppId, ConnId, Registered, SequencedFrom, StoredMessage};

/// Events the user-channel subscriber buffers before it resyncs instead.
pub const EVENT_CAPACITY: usize = 16 * 1024;
/// Mailboxes re-read per round trip after a resync.
pub const RESYNC_BATCH: usize = 256;

/// A user with connections on this node.
struct Held {
    app: AppId,
    user: Arc<str>,
    conns: usize,
}

/// One node's side of cluster routing.
pub struct Routing {
    pub mailboxes: Mailboxes,
    /// Who is connected where, and which nodes are alive (counted in `hold` / `release`).
    pub presence: Arc<Presence>,
    sub: Subscriber,
    /// User channel → the user it belongs to, while subscribed. (Un)subscriptions are decided
    /// and queued under this lock, in the order connections come and go, so a user's channel
    /// is subscribed exactly while it has a connection here.
    held: Mutex<HashMap<String, Held>>,
    /// Connection → its user's channel, and whether its login's presence write is still to
    /// come ([`Routing::hold`] pinned it, [`Routing::sync_open`] writes it).
    conns: Mutex<HashMap<ConnId, (String, bool)>>,
    /// The `SendResult`s of this node's connections, between the route script and its reply
    /// marker (see [`Routing::routed`]).
    replies: Mutex<Replies>,
    /// Acks not yet sent to Redis, and whether the task sending them runs ([`Routing::ack`]).
    acks: Mutex<AckQueue>,
    /// Messages waiting for the next route script call, and whether the task making the
    /// calls runs ([`Routing::route`]).
    routes: Mutex<RouteQueue>,
    /// Route script calls made so far ([`Routing::route_calls`]).
    route_calls: std::sync::atomic::AtomicU64,
    /// Ack script calls made so far ([`Routing::ack_calls`]).
    ack_calls: std::sync::atomic::AtomicU64,
    /// Logins in progress and the turns of those refused ([`Routing::begin_login`]).
    logins: Arc<Logins>,
    /// Logins refused as busy, and logins dropped because their client left first.
    logins_refused: std::sync::atomic::AtomicU64,
    logins_abandoned: std::sync::atomic::AtomicU64,
}

/// Logins a node runs at once by default (`max_logins_in_progress`). A login costs a few
/// Redis round trips; after a node's kill its clients all come at once, and a node that
/// takes them all queues them behind each other until they outlast the clients' attempt
/// timeout, then serves their retries too (issue 15's run: 168,385 logins for 14,286
/// clients). Past the bound a login is refused at once as busy (31003) with a turn to come
/// back at ([`crate::cluster::admission`]), which the SDK honours.
pub const DEFAULT_MAX_LOGINS: usize = 256;

/// The node's [`Admission`] on its clock (ms since `base`).
#[derive(Debug)]
struct Logins {
    base: std::time::Instant,
    admission: Mutex<Admission>,
}

impl Logins {
    fn now_ms(&self) -> f64 {
        self.base.elapsed().as_secs_f64() * 1000.0
    }
}

/// A login in progress, counted until dropped (see [`Routing::begin_login`]).
#[derive(Debug)]
pub struct LoginPermit {
    logins: Arc<Logins>,
    started_ms: f64,
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        let now = self.logins.now_ms();
        lock(&self.logins.admission).finish(self.started_ms, now);
    }
}

/// How long an ack waits for others to share its script call: a node's acks go to Redis
/// together, one call per app per round trip, at most every `ACK_LINGER` (one call per
/// delivery cost Redis a script, a read and a write each, about as much as the route itself).
/// An ack late in Redis only keeps a mailbox entry that long: a device that resumes elsewhere
/// says what it has itself (`resume_from`).
pub const ACK_LINGER: std::time::Duration = std::time::Duration::from_millis(10);
/// Devices per ack script call at most: a script runs alone in Redis, so one of ~128 devices
/// (~10 commands each, ~1 ms) holds up every route script for at most that long.
pub const ACK_BATCH: usize = 128;

/// The acks waiting for the next call, per device the highest (acks are cumulative).
#[derive(Default)]
struct AckQueue {
    pending: HashMap<DeviceKey, (Arc<str>, u64)>,
    /// The sending task runs: it takes whatever is pending at its next turn.
    running: bool,
}

/// (app, user, device).
type DeviceKey = (AppId, Arc<str>, Arc<str>);

/// Messages per route script call at most: a script runs alone in Redis, so a batch of 32
/// (~15 commands each, ~1.5 ms) holds up every other command for at most that long.
pub const ROUTE_BATCH: usize = 32;

/// The messages waiting for the next route script call ([`Routing::route`]), in the order
/// they came.
#[derive(Default)]
struct RouteQueue {
    pending: std::collections::VecDeque<QueuedRoute>,
    /// The calling task runs: it takes whatever is pending when its call returns.
    running: bool,
}

struct QueuedRoute {
    route: PreparedRoute,
    done: tokio::sync::oneshot::Sender<Result<Routed, ClusterError>>,
}

/// A reply marker is published, not stored: one published while the subscriber was
/// reconnecting is lost. The connection task knows the result when the script returns, so
/// whichever of the two comes second knows the other came: a result whose marker was not seen
/// by the next resync is answered then.
///
/// A request one of whose attempts failed (a timeout: the script may have run, and publish
/// its marker, without the node getting its result) may get a marker per run: the first
/// answers, and its `Answered` stays until the connection goes (`retried`), so the resend's
/// duplicate marker is not a second `SendResult` (it was, whenever the resend's result
/// reached the node before its marker).
#[derive(Default)]
struct Replies {
    /// Resyncs so far.
    epoch: u64,
    by_request: HashMap<(ConnId, u32), ReplyState>,
    /// Requests with a failed attempt ([`Routing::route`]).
    retried: std::collections::HashSet<(ConnId, u32)>,
}

enum ReplyState {
    /// The script returned; its marker has not arrived (yet). The `u64`: the sender's own
    /// copy's seq (0: none), which the marker follows on the user's channel.
    Pending(AppId, Arc<str>, SendResult, u64),
    /// The connection got its `SendResult` already (the marker came first, or it was answered
    /// after a resync): a marker arriving now is ignored.
    Answered,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("mailboxes", &self.mailboxes)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Routing {
    /// Starts the user-channel subscriber; its events go to [`follow`].
    /// `max_logins`: logins in progress at most ([`Self::begin_login`]; 0: no bound).
    pub async fn start(
        mailboxes: Mailboxes,
        presence: Arc<Presence>,
        max_logins: usize,
    ) -> Result<(Arc<Routing>, Receiver<BusEvent>), ClusterError> {
        let (sub, rx) = mailboxes.bus().subscriber(EVENT_CAPACITY).await?;
        let r = Routing {
            mailboxes,
            presence,
            sub,
            held: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            replies: Mutex::new(Replies::default()),
            acks: Mutex::new(AckQueue::default()),
            ack_calls: Default::default(),
            routes: Mutex::new(RouteQueue::default()),
            route_calls: Default::default(),
            logins: Arc::new(Logins {
                base: std::time::Instant::now(),
                admission: Mutex::new(Admission::new(max_logins)),
            }),
            logins_refused: Default::default(),
            logins_abandoned: Default::default(),
        };
        Ok((Arc::new(r), rx))
    }

    /// A login may start (before any of its Redis work), or `Err(retry_after_ms)` when the
    /// node already runs its bound of logins: the client is to be told to come back then
    /// (busy, 31003, `AuthResult.retry_after_ms`; see [`crate::cluster::admission`]).
    pub fn begin_login(&self) -> Result<LoginPermit, u32> {
        let now = self.logins.now_ms();
        let begun = lock(&self.logins.admission).begin(now);
        match begun {
            Ok(()) => Ok(LoginPermit {
                logins: self.logins.clone(),
                started_ms: now,
            }),
            Err(retry_after_ms) => {
                self.logins_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(retry_after_ms)
            }
        }
    }

    /// A login was dropped because its client left before it completed (its attempt timed
    /// out): counted, see [`Self::logins_abandoned`].
    pub fn login_abandoned(&self) {
        self.logins_abandoned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Logins in progress now.
    pub fn logins_in_progress(&self) -> usize {
        lock(&self.logins.admission).running()
    }

    /// Logins refused as busy so far ([`Self::begin_login`]).
    pub fn logins_refused(&self) -> u64 {
        self.logins_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Logins dropped so far because their client had left ([`Self::login_abandoned`]).
    pub fn logins_abandoned(&self) -> u64 {
        self.logins_abandoned
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn conn_ref(&self, conn: ConnId) -> ConnRef {
        ConnRef {
            node: self.mailboxes.bus().node_id().clone(),
            conn,
        }
    }

    /// Connection `conn` of `user` is here: subscribes to the user's channel if it is the
    /// user's first, and counts it in the user's presence (written by [`Self::sync_open`], in
    /// the same `MULTI` as the mailbox read: see [`Presence::pin`]). Returns once Redis
    /// confirmed the subscription (or recorded it while unreachable: a resync follows).
    pub async fn hold(
        &self,
        app: AppId,
        app_key: &str,
        user: &Arc<str>,
        conn: ConnId,
    ) -> Result<(), ClusterError> {
        let channel = user_channel(app_key, user);
        // Decided and queued under the lock, awaited outside it: subscriptions reach Redis in
        // the order connections come and go, and a node's concurrent connects share round
        // trips (the subscriber merges what is queued). A later connection of the same user
        // queues a no-op that is answered only after the first one's subscription.
        let subscribed = {
            let mut held = lock(&self.held);
            lock(&self.conns).insert(conn, (channel.clone(), true));
            self.presence.pin(app, user);
            let h = held.entry(channel.clone()).or_insert_with(|| Held {
                app,
                user: user.clone(),
                conns: 0,
            });
            h.conns += 1;
            self.sub.queue(true, &[&channel])
        };
        subscribed?
            .await
            .map_err(|_| ClusterError::SubscriberStopped)?;
        Ok(())
    }

    /// `device` of `user` acked up to `seq`: its cursor in Redis moves (in the background,
    /// within about [`ACK_LINGER`]). Coalesced per device (acks are cumulative) and batched
    /// across the node's devices: one task sends everything pending, per app one script call
    /// of up to [`ACK_BATCH`] devices, then waits [`ACK_LINGER`] and sends what came meanwhile.
    /// A busy or slow Redis therefore gets at most one ack per device per round trip.
    pub fn ack(
        self: &Arc<Self>,
        app: AppId,
        app_key: Arc<str>,
        user: &Arc<str>,
        device: &Arc<str>,
        seq: u64,
    ) {
        let key = (app, user.clone(), device.clone());
        {
            let mut q = lock(&self.acks);
            let e = q.pending.entry(key).or_insert((app_key, 0));
            e.1 = e.1.max(seq);
            if q.running {
                return;
            }
            q.running = true;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ACK_LINGER).await;
                let batch: Vec<(DeviceKey, (Arc<str>, u64))> = {
                    let mut q = lock(&me.acks);
                    if q.pending.is_empty() {
                        q.running = false;
                        return;
                    }
                    q.pending.drain().collect()
                };
                me.send_acks(batch).await;
            }
        });
    }

    /// One round of [`Self::ack`]: per app, script calls of up to [`ACK_BATCH`] devices.
    async fn send_acks(&self, mut batch: Vec<(DeviceKey, (Arc<str>, u64))>) {
        batch.sort_unstable_by_key(|((app, ..), _)| *app);
        for chunk in batch
            .chunk_by(|a, b| a.0 .0 == b.0 .0)
            .flat_map(|c| c.chunks(ACK_BATCH))
        {
            let app_key = chunk[0].1 .0.clone();
            let acks: Vec<(&str, &str, u64)> = chunk
                .iter()
                .map(|((_, user, device), (_, seq))| (&**user, &**device, *seq))
                .collect();
            self.ack_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = self.mailboxes.ack_many(&app_key, &acks).await {
                tracing::warn!(error = %e, devices = acks.len(), "cluster: acks failed");
            }
        }
    }

    /// Routes one message through the route script ([`Mailboxes::route`]), in a batch with
    /// whatever other messages this node's connections queued meanwhile: with no call running,
    /// the message goes at once, in a call of its own (no timer: an idle node adds no wait);
    /// while one runs, the messages queued meanwhile go together in the next, up to
    /// [`ROUTE_BATCH`] of one app per call, in the order they came (one script call per
    /// message cost Redis a fixed share of every message: `cluster/route_batch.rs`). So a
    /// busy node's calls carry more messages each, and an idle node's one each.
    ///
    /// The guarantees are each message's as if it were routed alone: a connection routes one
    /// message at a time (awaiting this), so its `client_seq` order holds; the script routes a
    /// batch in order; a message failing inside the script fails alone. A failed call is an
    /// `Err` for each of its messages (the caller retries, [`crate::ws`]; what did run comes
    /// back a duplicate).
    pub async fn route(self: &Arc<Self>, req: &RouteRequest<'_>) -> Result<Routed, ClusterError> {
        let route = self.mailboxes.prepare_route(req)?;
        let request = req.request_id.map(|id| (req.from.conn.conn, id));
        let (done, result) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = lock(&self.routes);
            q.pending.push_back(QueuedRoute { route, done });
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.send_routes().await });
        }
        let routed = result.await.map_err(|_| {
            ClusterError::OutOfRange("cluster: the route task stopped before answering".into())
        })?;
        if let (Err(_), Some(key)) = (&routed, request) {
            // It may have run: its marker may come, beside the resend's (see `Replies`).
            lock(&self.replies).retried.insert(key);
        }
        routed
    }

    /// The task of [`Self::route`]: one call at a time, each with what is queued when it
    /// starts (of the first message's app), until nothing is.
    async fn send_routes(&self) {
        loop {
            let batch: Vec<QueuedRoute> = {
                let mut q = lock(&self.routes);
                let Some(first) = q.pending.front() else {
                    q.running = false;
                    return;
                };
                let app = first.route.app.clone();
                if q.pending.iter().all(|r| r.route.app == app) {
                    let n = q.pending.len().min(ROUTE_BATCH);
                    q.pending.drain(..n).collect()
                } else {
                    // Several apps (rare: one call's keys must share an app's tag): this app's,
                    // the others keep their order for the next calls.
                    let mut batch = Vec::new();
                    let mut rest = std::collections::VecDeque::new();
                    for r in q.pending.drain(..) {
                        if r.route.app == app && batch.len() < ROUTE_BATCH {
                            batch.push(r);
                        } else {
                            rest.push_back(r);
                        }
                    }
                    q.pending = rest;
                    batch
                }
            };
            self.route_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let routes: Vec<&PreparedRoute> = batch.iter().map(|r| &r.route).collect();
            match self.mailboxes.route_prepared(&routes).await {
                Ok(results) => {
                    for (r, result) in batch.into_iter().zip(results) {
                        let _ = r.done.send(result);
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for r in batch {
                        let _ = r.done.send(Err(ClusterError::Shared(e.clone())));
                    }
                }
            }
        }
    }

    /// Route script calls this node made so far ([`Self::route`]; each carries the messages
    /// queued while the previous one ran).
    pub fn route_calls(&self) -> u64 {
        self.route_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ack script calls this node made so far (each carries every device acked since the
    /// previous one, per app).
    pub fn ack_calls(&self) -> u64 {
        self.ack_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resyncs so far: read before running the route script, for [`Self::routed`].
    pub fn epoch(&self) -> u64 {
        lock(&self.replies).epoch
    }

    /// The route script returned `result` for request `request_id` of connection `conn`
    /// (started at resync `epoch`). Returns the result when the connection must be answered
    /// now: its marker was not seen and a resync came meanwhile (the marker may have been lost
    /// in the gap). Otherwise the marker answers it, or the next resync does, in its place
    /// behind `own_seq` (the sender's own copy's seq, 0 if none).
    pub fn routed(
        &self,
        app: AppId,
        user: &Arc<str>,
        conn: ConnId,
        epoch: u64,
        result: SendResult,
        own_seq: u64,
    ) -> Option<SendResult> {
        let mut r = lock(&self.replies);
        let key = (conn, result.request_id);
        if let Some(ReplyState::Answered) = r.by_request.get(&key) {
            if !r.retried.contains(&key) {
                r.by_request.remove(&key);
            }
            return None;
        }
        if r.epoch != epoch {
            r.by_request.insert(key, ReplyState::Answered);
            return Some(result);
        }
        r.by_request
            .insert(key, ReplyState::Pending(app, user.clone(), result, own_seq));
        None
    }

    /// A reply marker arrived: true when the connection is still to be answered.
    fn marker(&self, conn: ConnId, request_id: u32) -> bool {
        let mut r = lock(&self.replies);
        let key = (conn, request_id);
        let retried = r.retried.contains(&key);
        match r.by_request.remove(&key) {
            Some(ReplyState::Answered) => {
                if retried {
                    r.by_request.insert(key, ReplyState::Answered);
                }
                false
            }
            Some(ReplyState::Pending(..)) => {
                if retried {
                    r.by_request.insert(key, ReplyState::Answered);
                }
                true
            }
            None => {
                r.by_request.insert(key, ReplyState::Answered);
                true
            }
        }
    }

    /// A resync: every result still waiting for its marker is to be answered now, each behind
    /// its user's copies up to its own seq (the last field).
    fn resynced(&self) -> Vec<(AppId, Arc<str>, ConnId, SendResult, u64)> {
        let mut r = lock(&self.replies);
        r.epoch += 1;
        let mut out = Vec::new();
        for (key, state) in r.by_request.iter_mut() {
            if let ReplyState::Pending(..) = state {
                if let ReplyState::Pending(app, user, result, after) =
                    std::mem::replace(state, ReplyState::Answered)
                {
                    out.push((app, user, key.0, result, after));
                }
            }
        }
        out
    }

    /// Connection `conn` is gone (idempotent): unsubscribes its user's channel with its last.
    pub async fn release(&self, conn: ConnId) {
        {
            let mut r = lock(&self.replies);
            r.by_request.retain(|k, _| k.0 != conn);
            r.retried.retain(|k| k.0 != conn);
        }
        let unsubscribed = {
            let mut held = lock(&self.held);
            let Some((channel, pinned)) = lock(&self.conns).remove(&conn) else {
                return;
            };
            if let Some(h) = held.get(&channel) {
                if pinned {
                    self.presence.unpin(h.app, &h.user, false);
                }
                self.presence.remove(h.app, &h.user);
            }
            let last = match held.get_mut(&channel) {
                Some(h) if h.conns > 1 => {
                    h.conns -= 1;
                    false
                }
                Some(_) => {
                    held.remove(&channel);
                    true
                }
                None => false,
            };
            // Queued under the lock: in order with the subscriptions (see `hold`).
            last.then(|| self.sub.queue(false, &[&channel]))
        };
        let done = match unsubscribed {
            None => return,
            Some(Ok(rx)) => rx.await.map_err(|_| ClusterError::SubscriberStopped),
            Some(Err(e)) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "cluster: unsubscribing a user channel failed");
        }
    }

    /// The start of a connecting device's replay: makes it a known device of its user (cursor
    /// 0 if new) and returns its cursor in Redis, the user's other known devices, and for a
    /// new device its history boundary.
    pub async fn sync_start(
        &self,
        app_key: &str,
        reg: &Registered,
    ) -> Result<SyncStart, ClusterError> {
        let m = &self.mailboxes;
        let joined = m
            .join_device(app_key, &reg.user_id, &reg.device_id, 0)
            .await?;
        let devices = m
            .known_devices(app_key, &reg.user_id)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .filter(|d| !joined.new || **d != *reg.device_id)
            .collect();
        Ok(SyncStart {
            acked: joined.cursor,
            devices,
            history_upto: joined.new.then_some(joined.last_seq),
            accepted: 0,
            profile: None,
        })
    }

    /// One page of a replay: up to `page` entries of `user`'s mailbox above `above`. Paged
    /// like the single node's replay, so a device with a long backlog — or every device of a
    /// killed node reconnecting at once — holds a page each in memory, not its whole mailbox.
    ///
    /// `history_upto` (a new device): of the entries up to it, only the copies stored
    /// `offline` (routed while the user had no device anywhere) are replayed, as on a single
    /// node — the rest were its siblings' live traffic, and a call invite among them would
    /// ring on the new device as if it were new.
    ///
    /// `has_upto`: what the device says it has (`resume_from`), not replayed. The read starts
    /// at the node's capped cursor, but a device's acks may not have reached Redis (lost with
    /// its previous node) and its `resume_from`, a seq of Redis's clock, may be ahead of this
    /// node's clock; `last` still counts what was skipped, so the device's live copies of it
    /// are dropped too.
    pub async fn sync_page(
        &self,
        app_key: &str,
        user: &str,
        above: u64,
        page: usize,
        history_upto: Option<u64>,
        has_upto: u64,
    ) -> Result<SyncPage, ClusterError> {
        let page = page.max(1);
        let entries = self
            .mailboxes
            .read_above(app_key, user, above, page)
            .await?;
        Ok(page_of(entries, page, history_upto, has_upto))
    }

    /// [`Self::sync_start`] and the first [`Self::sync_page`] (from `reg.cursor` or the
    /// device's cursor in Redis, whichever is higher) in one round trip: the page is read from
    /// `reg.cursor` with the join, and read again only in the rare case the cursor in Redis is
    /// ahead of it. The connection's presence ([`Self::hold`]) is written in the same `MULTI`,
    /// before the read: every route script runs either before it (the copy is in this
    /// replay, flagged `offline` when the user was on no node then) or after it (the user
    /// counts as here: an online copy, live on the channel subscribed before). So once the
    /// client has its `SyncDone`, every node sees it.
    ///
    /// `instance` (not 0: an SDK instance): what the route script accepted from it is read in
    /// the same `MULTI` ([`SyncStart::accepted`]), for the caller to apply before the
    /// connection's first frame is routed ([`crate::hub::Hub::join_result`]).
    pub async fn sync_open(
        &self,
        app: AppId,
        app_key: &str,
        reg: &Registered,
        instance: u64,
        page: usize,
    ) -> Result<(SyncStart, SyncPage), ClusterError> {
        let page = page.max(1);
        // The pin is taken off the connection only once the `MULTI` returned: a login dropped
        // while it waits (its client left) is unpinned by `release`.
        let pinned = lock(&self.conns).get(&reg.conn_id).is_some_and(|(_, p)| *p);
        let presence = &self.presence;
        let opened = self
            .mailboxes
            .open_device(
                app_key,
                &reg.user_id,
                &reg.device_id,
                instance,
                reg.cursor,
                page,
                |p| {
                    if pinned {
                        presence.login_write(p, app, &reg.user_id);
                    }
                },
            )
            .await;
        let pinned = pinned
            && lock(&self.conns)
                .get_mut(&reg.conn_id)
                .is_some_and(|(_, p)| std::mem::take(p));
        if pinned {
            presence.unpin(app, &reg.user_id, opened.is_ok());
        }
        let super::mailbox::Opened {
            joined,
            devices,
            entries,
            accepted,
            profile,
        } = opened?;
        let start = SyncStart {
            acked: joined.cursor,
            // (Read before the join: a new device is not among them.)
            devices,
            history_upto: joined.new.then_some(joined.last_seq),
            accepted,
            profile,
        };
        let first = if joined.cursor > reg.cursor {
            self.sync_page(
                app_key,
                &reg.user_id,
                joined.cursor,
                page,
                start.history_upto,
                reg.resume_from,
            )
            .await?
        } else {
            page_of(entries, page, start.history_upto, reg.resume_from)
        };
        Ok((start, first))
    }

    fn held_users(&self) -> Vec<(AppId, Arc<str>, String)> {
        lock(&self.held)
            .iter()
            .map(|(ch, h)| (h.app, h.user.clone(), ch.clone()))
            .collect()
    }
}

/// A replay page of `entries` read with `page` as the limit (see [`Routing::sync_page`]).
fn page_of(
    entries: Vec<super::mailbox::MailboxEntry>,
    page: usize,
    history_upto: Option<u64>,
    has_upto: u64,
) -> SyncPage {
    {
        use prost::Message as _;
        let full = entries.len() == page;
        let last = entries.last().map(|e| e.seq);
        let messages = entries
            .into_iter()
            .filter(|e| e.seq > has_upto)
            .filter(|e| {
                history_upto.is_none_or(|h| {
                    e.seq > h
                        || rtc_core::proto::Delivered::decode(&e.delivered[..])
                            .is_ok_and(|d| d.offline)
                })
            })
            .map(|e| StoredMessage {
                seq: e.seq,
                exclude_device: e.exclude_device.unwrap_or_default(),
                payload: e.delivered.to_vec(),
            })
            .collect();
        SyncPage {
            messages,
            last,
            full,
        }
    }
}

/// See [`Routing::sync_start`].
#[derive(Debug)]
pub struct SyncStart {
    /// The device's cursor in Redis.
    pub acked: u64,
    /// The user's known devices (without this one if it is new).
    pub devices: Vec<String>,
    /// A new device: the user's last seq when it joined (see [`Routing::sync_page`]).
    pub history_upto: Option<u64>,
    /// The highest `client_seq` the route script accepted from the connection's SDK instance
    /// ([`Routing::sync_open`] only; 0 otherwise).
    pub accepted: u64,
    /// The user's profile from Redis ([`Routing::sync_open`] only; `None` otherwise).
    pub profile: Option<rtc_core::proto::UserProfile>,
}

/// See [`Routing::sync_page`].
#[derive(Debug)]
pub struct SyncPage {
    /// What to replay, in seq order.
    pub messages: Vec<StoredMessage>,
    /// The last seq read (replayed or not): where the next page starts.
    pub last: Option<u64>,
    /// The page was full: more may follow.
    pub full: bool,
}

/// Hands what arrives on the user channels to the hub until shutdown.
pub async fn follow(
    routing: Arc<Routing>,
    state: Arc<crate::AppState>,
    mut rx: Receiver<BusEvent>,
) {
    let hub = &state.hub;
    let me = routing.mailboxes.bus().node_id().clone();
    while let Some(ev) = next_event(&mut rx, &state.shutdown).await {
        match ev {
            BusEvent::Message { channel, payload } => {
                let Some((app, user)) = lock(&routing.held)
                    .get(&channel)
                    .map(|h| (h.app, h.user.clone()))
                else {
                    continue; // (unsubscribed meanwhile)
                };
                let (first, reply) = match UserEvent::decode_pair(&payload) {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "cluster: user-channel event ignored");
                        continue;
                    }
                };
                for ev in std::iter::once(first).chain(reply) {
                    match ev {
                        UserEvent::Deliver {
                            seq,
                            skip,
                            delivered,
                        } => {
                            let skip = skip.filter(|c| c.node == me).map(|c| c.conn);
                            hub.deliver_sequenced(
                                app,
                                &user,
                                seq,
                                &delivered,
                                SequencedFrom::Conn(skip),
                            );
                        }
                        UserEvent::Reply {
                            conn,
                            request_id,
                            sent_time,
                            message_uid,
                        } => {
                            if conn.node == me && routing.marker(conn.conn, request_id) {
                                let result = SendResult {
                                    request_id,
                                    code: 0,
                                    sent_time,
                                    message_uid,
                                };
                                hub.reply_to_conn(app, &user, conn.conn, result);
                            }
                        }
                    }
                }
            }
            BusEvent::Resync => {
                // Redis may have lost every node's presence.
                routing.presence.rewrite_all();
                // Results whose reply marker may have been lost in the gap (see `Replies`):
                // each is answered where its marker was, behind its user's copies up to the
                // sender's own (found by the simulator: answered before the mailbox reads, a
                // device's Accept was confirmed ahead of its sibling's earlier reject).
                let mut pending = routing.resynced();
                let mut answer = |app: AppId, user: &str, below: u64| {
                    pending.retain(|(a, u, conn, result, after)| {
                        let due = *a == app && **u == *user && *after < below;
                        if due {
                            hub.reply_to_conn(app, u, *conn, result.clone());
                        }
                        !due
                    });
                };
                // Whatever was published during the gap is in the mailboxes: read each local
                // user's above what it has here (repeats are dropped by seq), a pipeline of
                // RESYNC_BATCH users per round trip (one at a time, 16,000 users took
                // minutes on a busy Redis while this task delivered nothing else).
                let mut n = 0usize;
                let limit = routing.mailboxes.limits().max_len.saturating_mul(2);
                let mut users: Vec<(AppId, Arc<str>, u64)> = routing
                    .held_users()
                    .into_iter()
                    .filter_map(|(app, user, _)| {
                        Some((app, user.clone(), hub.last_seq(app, &user)?))
                    })
                    .collect();
                users.sort_by_key(|u| u.0);
                for chunk in users
                    .chunk_by(|a, b| a.0 == b.0)
                    .flat_map(|c| c.chunks(RESYNC_BATCH))
                {
                    let app = chunk[0].0;
                    let key = hub.app(app).key.clone();
                    let ask: Vec<(&str, u64)> = chunk.iter().map(|(_, u, s)| (&**u, *s)).collect();
                    match routing.mailboxes.read_above_many(&key, &ask, limit).await {
                        Ok(all) => {
                            for ((_, user, _), entries) in chunk.iter().zip(all) {
                                for e in entries {
                                    answer(app, user, e.seq);
                                    // The sending connection of a copy is not known here: a
                                    // copy of the user's own message goes to every local
                                    // device but the one that sent it.
                                    n += hub.deliver_sequenced(
                                        app,
                                        user,
                                        e.seq,
                                        &e.delivered,
                                        SequencedFrom::Device(e.exclude_device.as_deref()),
                                    );
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, users = chunk.len(), "cluster: re-reading mailboxes after a resync failed")
                        }
                    }
                }
                for (app, user, conn, result, _) in pending {
                    hub.reply_to_conn(app, &user, conn, result);
                }
                tracing::info!(
                    delivered = n,
                    users = users.len(),
                    "cluster: user channels resynced"
                );
            }
        }
    }
}
