//! Presence across nodes and node liveness (docs/cluster.md, "Presence").
//!
//! - **Liveness.** Every node beats every [`Config::node_heartbeat`](crate::Config) period:
//!   one script ([`NODES_KEY`], a sorted set node id → deadline in Redis's clock, ms) sets its
//!   own deadline to now + [`TTL_BEATS`] periods and takes out every node whose deadline has
//!   passed. Scripts run one at a time, so each dead node is taken out by exactly one live node:
//!   that node removes the dead node's presence fields and then announces it on
//!   [`Presence::dead_nodes`] (a local broadcast on the claiming node only; the other nodes hear
//!   nothing). A node that beats again after being taken out (it was paused past its deadline)
//!   or after Redis lost the set writes all of its presence again.
//! - **Presence.** Per user, hash `rcall:{app}:presence:U`: node id → that node's number of
//!   connections of `U` (a field exists only while the count is > 0, so an empty hash is gone
//!   and `EXISTS` answers "connected anywhere?"). Each node writes only its own fields, from
//!   its own counts ([`Presence::add`], [`Presence::remove`]), through one writer task that
//!   writes the *current* count of every user marked since its last write: the value in Redis
//!   is exact once the writer caught up, and a failed write is retried. A login writes its
//!   user's count itself, in the `MULTI` that reads its mailbox ([`Presence::pin`],
//!   [`Presence::login_write`]): one round trip, and the count is in Redis before the read,
//!   atomically. The writer shares the login's connection ([`super::Lane::Login`]) and leaves a
//!   user alone while a login of it is in flight, so no older count of its lands after a
//!   newer one; the set
//!   `rcall:{app}:node-users:<node>` lists the users a node has fields for, so whoever takes
//!   a dead node out can remove them. After a [`super::BusEvent::Resync`] (Redis may have lost
//!   everything) or a beat that found the node missing, every local user is written again.
//! - **Use.** The route script flags a recipient's copy `offline` when the recipient's presence
//!   hash is empty, and reports those recipients; the routing node then pushes to them (see
//!   `route.lua`, [`super::mailbox::RouteRequest::presence`]).
//!
//! A graceful shutdown writes what its closing connections changed, then stops beating
//! ([`Presence::stop`]): it is taken out like a dead node, with no fields left to remove.
//!
//! The cleanup is leased: a node taken out stays in [`UNCLEAN_KEY`] until its fields are gone,
//! and if its cleaner dies or fails, a beat of any node hands it out again a TTL later (to
//! clean up, not to announce again).
//!
//! Limits: a node paused past its deadline is taken out while its connections live on, then
//! writes its presence again at its next beat (a cleanup running at that moment may still
//! remove some of the rewritten fields; they come back at the user's next connect or
//! disconnect, or the next resync). Cleanup covers the apps the cleaning node serves (every
//! node is meant to serve the same apps).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{keys, Bus, ClusterError, Lane, LuaScript, NodeId};
use crate::hub::AppId;

/// The cluster-wide sorted set of live nodes: node id → deadline (Redis's clock, ms).
pub const NODES_KEY: &str = "rcall:{nodes}:live";
/// Sorted set of the nodes taken out whose presence is not removed yet: node id → when
/// another node may take the cleanup over (its cleaner died or failed).
pub const UNCLEAN_KEY: &str = "rcall:{nodes}:unclean";
/// Key kind of a user's presence hash ([`presence_key`]).
pub const KIND_PRESENCE: &str = "presence";
/// Key kind of the set of users a node has presence fields for ([`node_users_key`]).
pub const KIND_NODE_USERS: &str = "node-users";
/// The default beat period.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// A node missing this many beats in a row is dead. (3 was too few for a busy Redis: a beat
/// waiting seconds behind a reconnect surge made live nodes look dead.)
pub const TTL_BEATS: u32 = 5;
/// Subscribers of [`Presence::dead_nodes`] that fall this far behind lose the oldest.
const DEAD_CAPACITY: usize = 64;

/// `rcall:{app}:presence:<user>`: hash, node id → the node's connections of `user`.
pub fn presence_key(app: &str, user: &str) -> String {
    keys::app_key(app, KIND_PRESENCE, &[user])
}

/// `rcall:{app}:node-users:<node>`: set of the users `node` has presence fields for in `app`.
pub fn node_users_key(app: &str, node: &NodeId) -> String {
    keys::app_key(app, KIND_NODE_USERS, &[node.as_str()])
}

/// Beats and reaps in one step. KEYS[1] = [`NODES_KEY`], KEYS[2] = [`UNCLEAN_KEY`];
/// ARGV[1] = node id, ARGV[2] = TTL (ms). Returns `{added, dead id…, '', stale id…}`: `added`
/// is 1 when the node was not live (its first beat, or it was taken out, or Redis lost the
/// set); the dead ids were just taken out by this node (to clean up and announce); the stale
/// ids were taken out earlier and their cleanup not finished within a TTL (to clean up only).
/// Either kind is this node's to clean for the next TTL.
static BEAT: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "node_beat",
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = now + tonumber(ARGV[2])
local added = redis.call('ZADD', KEYS[1], lease, ARGV[1])
if added == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
local out = {tostring(added)}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], lease, id)
  out[#out + 1] = id
end
out[#out + 1] = ''
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)) do
  redis.call('ZADD', KEYS[2], lease, id)
  out[#out + 1] = id
end
return out
"#,
    )
});

#[derive(Default)]
struct Counts {
    /// This node's connections per (app, user); absent = 0.
    conns: HashMap<(AppId, Arc<str>), usize>,
    /// Users whose count changed since the writer last took them.
    dirty: HashSet<(AppId, Arc<str>)>,
    /// Marks so far; the writer publishes on `written` the mark count it took.
    marks: u64,
    /// Users with a login in flight that writes their count itself ([`Presence::pin`]): the
    /// writer leaves them dirty until the last of those logins is done.
    pinned: HashMap<(AppId, Arc<str>), Pinned>,
    /// The users of the writer's batch in flight (its counts were read before a later pin).
    in_flight: HashSet<(AppId, Arc<str>)>,
}

/// A user's logins in flight ([`Counts::pinned`]).
struct Pinned {
    logins: u32,
    /// The writer writes the user once they are done: their writes may have reached Redis
    /// out of order (two logins at once, a batch of the writer in flight when pinned, or a
    /// login that failed and whose write may still run).
    rewrite: bool,
}

/// A connection counted by [`Presence::add`]: [`Presence::written`] waits for its write.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u64);

/// One node's presence writer and heartbeat (see the module docs).
pub struct Presence {
    bus: Bus,
    /// App keys by [`AppId`].
    apps: Vec<Arc<str>>,
    period: Duration,
    counts: Mutex<Counts>,
    wake: Notify,
    /// The highest mark whose write was attempted (done or failed).
    written: watch::Sender<u64>,
    dead: broadcast::Sender<NodeId>,
    /// Cancelled by [`Presence::stop`] or [`Presence::halt`]: the tasks stop.
    stop: CancellationToken,
    /// When a beat was last answered ([`crate::clock::mono_ms`]; 0: never).
    beat_answered: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("node", self.bus.node_id())
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Presence {
    /// Starts the writer and the heartbeat (the first beat at once); both run until
    /// [`Self::stop`] (a server's graceful shutdown, once its connections are gone) or
    /// [`Self::halt`]. `period` must be > 0.
    pub fn start(
        bus: Bus,
        apps: Vec<Arc<str>>,
        period: Duration,
    ) -> Result<Arc<Presence>, ClusterError> {
        if period.is_zero() {
            return Err(ClusterError::OutOfRange(
                "node heartbeat period must be > 0".into(),
            ));
        }
        let p = Arc::new(Presence {
            bus,
            apps,
            period,
            counts: Mutex::new(Counts::default()),
            wake: Notify::new(),
            written: watch::channel(0).0,
            dead: broadcast::channel(DEAD_CAPACITY).0,
            stop: CancellationToken::new(),
            beat_answered: Default::default(),
        });
        tokio::spawn(p.clone().writer());
        tokio::spawn(p.clone().heartbeat());
        Ok(p)
    }

    pub fn node_id(&self) -> &NodeId {
        self.bus.node_id()
    }

    /// Redis answered one of this node's beats within the last 3 beat periods: it is alive,
    /// if slow on the main connection (the beats have a connection of their own). Callers
    /// waiting on the main connection use it to tell a backlog from an outage.
    pub fn redis_answering(&self) -> bool {
        let at = self
            .beat_answered
            .load(std::sync::atomic::Ordering::Relaxed);
        let within = (self.period * 3).as_millis() as u64;
        at != 0 && crate::clock::mono_ms().saturating_sub(at) <= within
    }

    /// How long a node may go without beating before it is dead.
    pub fn ttl(&self) -> Duration {
        self.period * TTL_BEATS
    }

    /// Nodes this node took out, each announced once, after their presence fields were
    /// removed (or the removal failed once; it is retried). Only the claiming node hears of a
    /// dead node: run what a dead node leaves behind here (e.g. its devices' graces).
    pub fn dead_nodes(&self) -> broadcast::Receiver<NodeId> {
        self.dead.subscribe()
    }

    /// Graceful shutdown, after the connections closed: writes what is left (waiting at most
    /// the bus's response timeout), then stops beating. Another node takes this one out after its
    /// deadline and announces it on [`Self::dead_nodes`], as for a dead node, but finds no
    /// presence left to remove.
    pub async fn stop(&self) {
        let mark = Mark(lock(&self.counts).marks);
        self.written(mark).await;
        self.halt();
    }

    /// Stops beating and writing, leaving everything in Redis as it is: what `kill -9` would
    /// do to this node's presence (tests).
    pub fn halt(&self) {
        self.stop.cancel();
    }

    /// A connection of `user` is here (counted at once, written in the background).
    pub fn add(&self, app: AppId, user: &Arc<str>) -> Mark {
        let mut c = lock(&self.counts);
        *c.conns.entry((app, user.clone())).or_insert(0) += 1;
        self.mark(&mut c, (app, user.clone()))
    }

    /// [`Self::add`] for a login that writes the user's count itself, in its mailbox read
    /// ([`Self::login_write`]): until [`Self::unpin`], the writer leaves this user alone.
    pub fn pin(&self, app: AppId, user: &Arc<str>) {
        let mut c = lock(&self.counts);
        let key = (app, user.clone());
        *c.conns.entry(key.clone()).or_insert(0) += 1;
        let busy = c.in_flight.contains(&key);
        let p = c.pinned.entry(key).or_insert(Pinned {
            logins: 0,
            rewrite: false,
        });
        p.rewrite |= busy || p.logins > 0;
        p.logins += 1;
    }

    /// The commands that write `user`'s current count, for a pinned login's `MULTI` (which
    /// runs them before its mailbox read: a message routed after that read sees the user
    /// here, one routed before it is in the replay).
    pub fn login_write(&self, p: &mut redis::Pipeline, app: AppId, user: &Arc<str>) {
        let n = lock(&self.counts)
            .conns
            .get(&(app, user.clone()))
            .copied()
            .unwrap_or(0);
        self.write_cmds(p, app, user, n);
    }

    /// A login pinned by [`Self::pin`] is done; `written`: its `MULTI` succeeded (otherwise it
    /// may run later or not at all: the writer writes the count again after it, on the same
    /// connection).
    pub fn unpin(&self, app: AppId, user: &Arc<str>, written: bool) {
        let mut c = lock(&self.counts);
        let key = (app, user.clone());
        let Some(p) = c.pinned.get_mut(&key) else {
            return;
        };
        p.rewrite |= !written;
        p.logins -= 1;
        if p.logins > 0 {
            return;
        }
        let rewrite = p.rewrite;
        c.pinned.remove(&key);
        if rewrite || c.dirty.contains(&key) {
            self.mark(&mut c, key);
        }
    }

    fn write_cmds(&self, p: &mut redis::Pipeline, app: AppId, user: &str, n: usize) {
        let key = &self.apps[app];
        let node = self.node_id();
        let (pk, nk) = (presence_key(key, user), node_users_key(key, node));
        if n > 0 {
            p.hset(&pk, node.as_str(), n).ignore();
            p.sadd(&nk, user).ignore();
        } else {
            p.hdel(&pk, node.as_str()).ignore();
            p.srem(&nk, user).ignore();
        }
    }

    /// A connection counted by [`Self::add`] or [`Self::pin`] is gone.
    pub fn remove(&self, app: AppId, user: &Arc<str>) {
        let mut c = lock(&self.counts);
        let key = (app, user.clone());
        match c.conns.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                c.conns.remove(&key);
            }
            None => return,
        }
        self.mark(&mut c, key);
    }

    fn mark(&self, c: &mut Counts, key: (AppId, Arc<str>)) -> Mark {
        c.dirty.insert(key);
        c.marks += 1;
        self.wake.notify_one();
        Mark(c.marks)
    }

    /// Waits until the write of `mark` was attempted (at most the bus's response timeout, and not at
    /// all once halted): a connection is then visible to every node before it is served,
    /// unless Redis is failing (the writer retries).
    pub async fn written(&self, mark: Mark) {
        let mut rx = self.written.subscribe();
        let wait = rx.wait_for(|&w| w >= mark.0);
        tokio::select! {
            _ = wait => {}
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(self.bus.response_timeout()) => {}
        }
    }

    /// Writes every local user's count again (after a resync: Redis may have lost them).
    pub fn rewrite_all(&self) {
        let mut c = lock(&self.counts);
        let all: Vec<_> = c.conns.keys().cloned().collect();
        c.dirty.extend(all);
        c.marks += 1;
        self.wake.notify_one();
    }

    /// `user`'s connections per node, as Redis holds them.
    pub async fn nodes_of(
        &self,
        app: &str,
        user: &str,
    ) -> Result<HashMap<String, u64>, ClusterError> {
        let key = presence_key(app, user);
        redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| ClusterError::command(self.bus.url(), format!("HGETALL {key}"), e))
    }

    /// The nodes not taken out yet (some may be past their deadline, waiting for a beat to
    /// take them out), sorted.
    pub async fn live_nodes(&self) -> Result<Vec<NodeId>, ClusterError> {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(NODES_KEY)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| ClusterError::command(self.bus.url(), "ZRANGE nodes", e))?;
        let mut ids: Vec<NodeId> = ids.into_iter().map(NodeId).collect();
        ids.sort();
        Ok(ids)
    }

    fn conn(&self) -> ConnectionManager {
        self.bus.connection()
    }

    /// The writer's connection: the logins' (see the module docs).
    pub fn login_conn(&self) -> ConnectionManager {
        self.bus.lane(Lane::Login)
    }

    /// Writes what changed, one pipeline per wake-up, until stopped.
    async fn writer(self: Arc<Self>) {
        let mut pause = Duration::from_millis(20);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake.notified() => {}
            }
            let (batch, taken) = {
                let mut c = lock(&self.counts);
                let c = &mut *c;
                let keys: Vec<_> = if c.pinned.is_empty() {
                    c.dirty.drain().collect()
                } else {
                    // A pinned user stays dirty: its login writes it (see `unpin`).
                    let pinned = &c.pinned;
                    c.dirty.extract_if(|k| !pinned.contains_key(k)).collect()
                };
                let batch: Vec<_> = keys
                    .into_iter()
                    .map(|k| {
                        let n = c.conns.get(&k).copied().unwrap_or(0);
                        (k, n)
                    })
                    .collect();
                c.in_flight = batch.iter().map(|(k, _)| k.clone()).collect();
                (batch, c.marks)
            };
            if batch.is_empty() {
                self.written.send_replace(taken);
                continue;
            }
            let mut p = redis::pipe();
            for ((app, user), n) in &batch {
                self.write_cmds(&mut p, *app, user, *n);
            }
            let r = p.query_async::<()>(&mut self.login_conn()).await;
            lock(&self.counts).in_flight.clear();
            self.written.send_replace(taken);
            match r {
                Ok(()) => pause = Duration::from_millis(20),
                Err(e) => {
                    tracing::warn!(error = %e, users = batch.len(), "cluster: writing presence failed; retrying");
                    {
                        let mut c = lock(&self.counts);
                        c.dirty.extend(batch.into_iter().map(|(k, _)| k));
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                    self.wake.notify_one();
                }
            }
        }
    }

    /// Beats every period until stopped; cleans up after the nodes it takes out.
    async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ttl_ms = u64::try_from(self.ttl().as_millis()).unwrap_or(u64::MAX);
        let mut first = true;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let call = BEAT
                .call()
                .key(NODES_KEY)
                .key(UNCLEAN_KEY)
                .arg(self.node_id().as_str())
                .arg(ttl_ms);
            match self.bus.run_in::<Vec<String>>(Lane::Beat, &call).await {
                Ok(out) => {
                    self.beat_answered.store(
                        crate::clock::mono_ms(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    if out.first().map(String::as_str) == Some("1") && !first {
                        tracing::warn!(node = %self.node_id(), "cluster: this node was missing from the live nodes (taken out, or Redis lost them); writing its presence again");
                        self.rewrite_all();
                    }
                    first = false;
                    // Cleaned up beside the beats, not between them: removing a node's
                    // thousands of fields from a busy Redis can take seconds, and a node
                    // that stops beating meanwhile is taken out itself (at 100,000
                    // connections one kill cascaded into a live node taken out every few
                    // seconds, each costing a cleanup and a rewrite of all its presence).
                    let mut ids = out.into_iter().skip(1);
                    for id in ids.by_ref().take_while(|id| !id.is_empty()) {
                        let dead = NodeId(id);
                        tracing::warn!(node = %dead, "cluster: node missed its heartbeats; cleaning up after it");
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.clean_up(&dead).await;
                            let _ = me.dead.send(dead);
                        });
                    }
                    for id in ids {
                        let dead = NodeId(id);
                        tracing::warn!(node = %dead, "cluster: taking over the unfinished cleanup after a dead node");
                        let me = self.clone();
                        tokio::spawn(async move { me.clean_up(&dead).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cluster: heartbeat failed"),
            }
        }
    }

    /// Removes `dead`'s presence fields, then its entry in [`UNCLEAN_KEY`]. On failure the
    /// entry stays, and a beat (of any node) returns it for another try a TTL later.
    async fn clean_up(&self, dead: &NodeId) {
        let r = async {
            self.remove_fields(dead).await?;
            redis::cmd("ZREM")
                .arg(UNCLEAN_KEY)
                .arg(dead.as_str())
                .query_async::<()>(&mut self.conn())
                .await
                .map_err(|e| ClusterError::command(self.bus.url(), "ZREM unclean", e))
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(node = %dead, error = %e, "cluster: removing a dead node's presence failed; retried later");
        }
    }

    /// Removes `dead`'s presence fields in every app this node serves.
    async fn remove_fields(&self, dead: &NodeId) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let err = |op: &str, e| ClusterError::command(self.bus.url(), op, e);
        for app in &self.apps {
            let nk = node_users_key(app, dead);
            let users: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&nk)
                .query_async(&mut conn)
                .await
                .map_err(|e| err("SMEMBERS node users", e))?;
            let mut p = redis::pipe();
            for u in &users {
                p.hdel(presence_key(app, u), dead.as_str()).ignore();
            }
            p.del(&nk).ignore();
            p.query_async::<()>(&mut conn)
                .await
                .map_err(|e| err("remove dead node presence", e))?;
        }
        Ok(())
    }
}
