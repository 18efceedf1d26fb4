//! Call rooms across nodes (docs/cluster.md "Rooms"): every node keeps a replica of each
//! app's [`delivery::rooms::Rooms`], a deterministic state machine, and applies the same
//! events in the same order, so `getJoinedUserInfo`, the `NOT_IN_CALL` check and the
//! gone-participant graces agree on every node.
//!
//! - **The rooms log.** Each event ([`RoomsEvent`]) is numbered by Redis and appended to the
//!   app's log stream and published on its rooms channel in one script: a call message by the
//!   route script itself (so the log's order is the order of the deliveries: two accepts at once
//!   are applied in the order every member received them), anything else by `APPEND` (below).
//!   Numbers follow each other (`n + 1`); a new or restarted Redis starts at its clock (µs), so
//!   numbers only grow.
//! - **Presence.** Only devices the rooms care about are announced: members of a call and
//!   devices with a grace running ([`delivery::rooms::Rooms::involves`]). Such a device's first
//!   connection on a node publishes `Here`, its last one `Gone` (clean or lost) with the node's
//!   id; the replicas know which nodes hold each of them. A device that is not involved when it
//!   connects is announced before its first call message is routed (a device becomes a member
//!   only by sending one), or when an applied event involves it while it is connected here
//!   (its message routed by another node, a grace started by a `Gone` or `NodeLost`, a
//!   snapshot). Every other device costs the replicas nothing (at 100,000 connections every
//!   node held every device, ~70 MB per node, and every connect and disconnect was an event).
//! - **Graces.** A member device that no node holds starts its grace on every replica, run by
//!   the node that published the `Gone`. When it is over there, that node publishes
//!   `GraceOver`; applying it ends the participation on every replica (unless the device came
//!   back or spoke first, earlier in the log) and the running node routes the server's hangup
//!   through the route script, once. [`RoomsSync::node_lost`] (a node's heartbeat expired)
//!   publishes `NodeLost`: the dead node's devices get lost graces, run by the reporting node
//!   (a second report finds nothing left to do).
//! - **Admission.** The routing node checks a call message against its replica (at worst a few
//!   events behind) and lets the route script publish its event; the replica changes when the
//!   event comes back, on every node alike (a message refused on apply changes nothing).
//! - **Gaps.** Events arrive numbered: one that skips a number, or a [`BusEvent::Resync`],
//!   makes the node read the log from its last applied number. When the log does not reach back
//!   that far (trimmed, or Redis restarted), the node loads the **snapshot** of the replica that
//!   every node writes to `rcall:{app}:rooms:snap` at most every [`SNAPSHOT_INTERVAL`] when its
//!   replica moved (kept only if its number is the highest), then applies the log above it.
//!   With no usable snapshot (Redis came back empty) a node keeps its own replica, applies what
//!   the log holds, and writes its snapshot for nodes that start later. After a resync each
//!   node announces its local devices again (`Here`), so presence survives a Redis restart.
//!
//! Keys (per app `A`): `rcall:{A}:rooms:n` (last event number), `rcall:{A}:rooms:log`
//! (stream, id `<n>-0`, fields `t` = the script's clock in ms, `e` = the encoded event; about
//! [`LOG_MAX_LEN`] entries), `rcall:{A}:rooms:snap` (`<n>\n<encoded RoomsSnapshot>`), channel
//! `rcall:{A}:ch:rooms` (`<n> <t>\n<event>`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use delivery::rooms::{rooms_event, Ended, MessageEvent, RoomsEvent, RoomsSnapshot};
use delivery::rooms_node::{self, Involves, Presence};
use delivery::Departure;
use prost::Message as _;
use redis::Value;
use tokio::sync::mpsc::Receiver;

use super::mailbox::{bytes_of, ConnRef, OwnCopy, Recipient, RouteRequest, Sender};
use super::{keys, Bus, BusEvent, ClusterError, LuaScript, Subscriber};
use crate::hub::{AppId, ConnId};
use crate::{clock, AppState};

/// Key kind of an app's rooms log, its counter and its snapshot.
pub const KIND_ROOMS: &str = "rooms";
/// Events the rooms log keeps (approximately): a node further behind loads the snapshot.
pub const LOG_MAX_LEN: usize = 10_000;
/// Events the rooms subscriber buffers before it resyncs instead.
pub const EVENT_CAPACITY: usize = 16 * 1024;
/// How often a node writes its replica's snapshot when it changed.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a node looks for graces it runs that are over.
const GRACE_TICK: Duration = Duration::from_millis(50);
/// Log entries read per XRANGE.
const PAGE: usize = 1000;
/// Longest [`RoomsSync::caught_up`] waits for the replica (only a stuck follower takes long).
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

pub fn counter_key(app: &str) -> String {
    keys::app_key(app, KIND_ROOMS, &["n"])
}
pub fn log_key(app: &str) -> String {
    keys::app_key(app, KIND_ROOMS, &["log"])
}
pub fn snapshot_key(app: &str) -> String {
    keys::app_key(app, KIND_ROOMS, &["snap"])
}
pub fn channel(app: &str) -> String {
    keys::app_channel(app, "rooms")
}

/// A call message's event, as the route script appends it.
pub fn encode_message(m: MessageEvent) -> Vec<u8> {
    RoomsEvent {
        event: Some(rooms_event::Event::Message(m)),
    }
    .encode_to_vec()
}

/// Appends one event to the app's rooms log and publishes it (numbering as in `route.lua`).
/// KEYS[1] counter, KEYS[2] log; ARGV[1] channel, ARGV[2] log max length, ARGV[3] event.
/// Returns the event's number.
static APPEND: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "rooms_append",
        r#"#!lua
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local function int(n) return string.format('%.0f', n) end
local last = redis.call('GET', KEYS[1])
local n
if last then
  n = tonumber(last) + 1
else
  n = now_us
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[2])
    for j = 1, #info, 2 do
      if info[j] == 'last-generated-id' then
        n = math.max(n, tonumber(string.match(info[j + 1], '^(%d+)')) + 1)
      end
    end
  end
end
redis.call('SET', KEYS[1], int(n))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], int(n) .. '-0', 't', int(now_ms), 'e', ARGV[3])
redis.call('PUBLISH', ARGV[1], int(n) .. ' ' .. int(now_ms) .. '\n' .. ARGV[3])
return int(n)
"#,
    )
});

/// Keeps a snapshot only if its number is above the stored one's.
/// KEYS[1] snapshot key; ARGV[1] number, ARGV[2] encoded snapshot. Returns 1 when written.
static SAVE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "rooms_save",
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local p = tonumber(string.match(cur, '^(%d+)'))
  if p and p >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. ARGV[2])
return 1
"#,
    )
});

/// (app, user, device).
type DeviceKey = (AppId, Arc<str>, Arc<str>);
/// (app, user, device, SDK instance): presence is per page (`rooms::DeviceEvent::instance`).
type PageKey = (AppId, Arc<str>, Arc<str>, u64);

/// One node's side of the replicated rooms.
pub struct RoomsSync {
    bus: Bus,
    /// Kept: dropping it ends the subscription.
    _sub: Subscriber,
    /// Rooms channel → app.
    channels: HashMap<String, AppId>,
    /// Per device: its `Here`/`Gone` go out one at a time, in the order its connections come
    /// and go. Devices do not wait for each other (a global lock held across each append made
    /// a node's connects queue behind one another: 100,000 reconnects took minutes); their
    /// appends share the multiplexed Redis connection, and Redis numbers them in one order.
    order: Mutex<HashMap<DeviceKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Connection → its page.
    conns: Mutex<HashMap<ConnId, PageKey>>,
    /// Per device with connections here: its pages, with how many connections each and
    /// whether its `Here` went out. (Keyed by device: an applied event names a device, and
    /// finds its pages with one lookup.)
    devices: Mutex<HashMap<DeviceKey, Held>>,
    /// Per app: the last event number the replica applied ([`RoomsSync::caught_up`]).
    applied: Vec<AtomicU64>,
    /// Woken whenever an event was applied.
    progress: tokio::sync::Notify,
    /// Tests: the follower leaves the events queued while set.
    paused: AtomicBool,
}

/// A device's announcement lock ([`RoomsSync::order`]), taken out of the map when dropped once
/// nobody else holds or waits for it. A guard, so a hold cancelled while it waits (a login
/// whose client left, `ws.rs`) leaves no entry behind.
struct DeviceOrder<'a> {
    rooms: &'a RoomsSync,
    key: DeviceKey,
    order: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl DeviceOrder<'_> {
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.order
            .as_ref()
            .expect("taken only on drop")
            .lock()
            .await
    }
}

impl Drop for DeviceOrder<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.rooms.order);
        drop(self.order.take());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

impl std::fmt::Debug for RoomsSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomsSync")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A device with connections on this node: its pages (usually one).
#[derive(Default)]
struct Held {
    pages: Vec<HeldPage>,
}

/// A page (SDK instance) with connections on this node.
struct HeldPage {
    instance: u64,
    conns: usize,
    /// Its `Here` was published (or attempted): its last connection publishes `Gone`.
    announced: bool,
}

impl Held {
    fn page(&mut self, instance: u64) -> Option<&mut HeldPage> {
        self.pages.iter_mut().find(|p| p.instance == instance)
    }

    /// Pages with a connection here whose `Here` has not gone out.
    fn unannounced(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages
            .iter()
            .filter(|p| p.conns > 0 && !p.announced)
            .map(|p| p.instance)
    }
}

/// One entry of the rooms log (or one publication).
struct Entry {
    n: u64,
    t_ms: i64,
    event: Vec<u8>,
}

/// Parses `<n> <t>\n<event>`.
fn parse_published(payload: &[u8]) -> Option<Entry> {
    let nl = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..nl]).ok()?;
    let (n, t) = head.split_once(' ')?;
    Some(Entry {
        n: n.parse().ok()?,
        t_ms: t.parse().ok()?,
        event: payload[nl + 1..].to_vec(),
    })
}

fn parse_log(reply: Value) -> Option<Vec<Entry>> {
    super::mailbox::stream_entries(reply, |n, fields| {
        let (mut t_ms, mut event) = (None, None);
        for (k, v) in fields {
            match k.as_slice() {
                b"t" => t_ms = String::from_utf8(bytes_of(v)?).ok()?.parse().ok(),
                b"e" => event = Some(bytes_of(v)?),
                _ => {}
            }
        }
        Some(Entry {
            n,
            t_ms: t_ms?,
            event: event?,
        })
    })
}

impl RoomsSync {
    /// Makes every app's rooms a replica and subscribes to the apps' rooms channels; the
    /// events go to [`follow`].
    pub async fn start(
        bus: Bus,
        hub: &crate::hub::Hub,
    ) -> Result<(Arc<RoomsSync>, Receiver<BusEvent>), ClusterError> {
        let (sub, rx) = bus.subscriber(EVENT_CAPACITY).await?;
        let mut channels = HashMap::new();
        for (i, app) in hub.apps().iter().enumerate() {
            hub.core(i).replicate_rooms();
            channels.insert(channel(&app.key), i);
        }
        let names: Vec<&str> = channels.keys().map(String::as_str).collect();
        sub.subscribe(&names).await?;
        let r = RoomsSync {
            bus,
            _sub: sub,
            channels,
            order: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            applied: (0..hub.apps().len()).map(|_| AtomicU64::new(0)).collect(),
            progress: tokio::sync::Notify::new(),
            paused: AtomicBool::new(false),
        };
        Ok((Arc::new(r), rx))
    }

    fn me(&self) -> &str {
        self.bus.node_id().as_str()
    }

    /// Appends `ev` to `app_key`'s rooms log; returns its number.
    pub async fn publish(&self, app_key: &str, ev: &RoomsEvent) -> Result<u64, ClusterError> {
        let call = APPEND
            .call()
            .key(counter_key(app_key))
            .key(log_key(app_key))
            .arg(channel(app_key))
            .arg(LOG_MAX_LEN)
            .arg(ev.encode_to_vec());
        let n: String = self.bus.run(&call).await?;
        n.parse()
            .map_err(|_| ClusterError::OutOfRange(format!("rooms_append returned {n:?}")))
    }

    /// The `Here` / `Gone` of page `key` of this node.
    fn presence(&self, key: &PageKey, change: Presence) -> RoomsEvent {
        rooms_node::presence_event(self.me(), &key.1, &key.2, key.3, change)
    }

    /// Connection `conn` of page `instance` of `device` of `user` is here. The page's first one
    /// announces it (`Here`) when the rooms care about its device ([`rooms_node::announces`]: a
    /// member coming back, before its replay, so before it can send anything; its dead sockets
    /// on other nodes then no longer hold the device); others are announced later if they
    /// become involved ([`Self::announce_device`]).
    ///
    /// May be dropped while it waits (a login whose client left): [`Self::release`] of `conn`
    /// then undoes whatever part of it ran.
    #[allow(clippy::too_many_arguments)]
    pub async fn hold(
        &self,
        hub: &crate::hub::Hub,
        app: AppId,
        app_key: &str,
        user: &Arc<str>,
        device: &Arc<str>,
        instance: u64,
        conn: ConnId,
    ) -> Result<(), ClusterError> {
        let page: PageKey = (app, user.clone(), device.clone(), instance);
        let key: DeviceKey = (app, user.clone(), device.clone());
        let order = self.device_order(&key);
        let _order = order.lock().await;
        lock(&self.conns).insert(conn, page.clone());
        let announce = {
            let mut d = lock(&self.devices);
            let h = d.entry(key.clone()).or_default();
            if h.page(instance).is_none() {
                h.pages.push(HeldPage {
                    instance,
                    conns: 0,
                    announced: false,
                });
            }
            let p = h.page(instance).expect("pushed above");
            p.conns += 1;
            let announce = p.conns == 1
                && rooms_node::announces(p.announced, || hub.rooms_involve(app, user, device));
            p.announced |= announce;
            announce
        };
        if announce {
            self.publish(app_key, &self.presence(&page, Presence::Here))
                .await?;
        }
        Ok(())
    }

    /// Announces the pages of `device` of `user` (`Here`) that have a connection here and were
    /// not announced yet: called before its call message is routed (it may become a member by
    /// it) and when an applied event involved it. A failed publish is logged; the page is then
    /// announced at the next try or resync, and its `Gone` goes out at its last disconnect
    /// either way.
    /// `only`: of these pages (late announcements, [`rooms_node::late_here`]), else all.
    pub async fn announce_device(
        &self,
        app: AppId,
        app_key: &str,
        user: &Arc<str>,
        device: &Arc<str>,
        only: Option<&[u64]>,
    ) {
        let key: DeviceKey = (app, user.clone(), device.clone());
        // (Fast path: the common case, a device announced already, takes no lock of its own.)
        let pending = |d: &HashMap<DeviceKey, Held>| {
            d.get(&key)
                .is_some_and(|h| h.unannounced().next().is_some())
        };
        if !pending(&lock(&self.devices)) {
            return;
        }
        let order = self.device_order(&key);
        {
            let _order = order.lock().await;
            let pages: Vec<u64> = {
                let mut d = lock(&self.devices);
                match d.get_mut(&key) {
                    Some(h) => {
                        let pages: Vec<u64> = h
                            .unannounced()
                            .filter(|i| only.is_none_or(|o| o.contains(i)))
                            .collect();
                        for p in &pages {
                            if let Some(p) = h.page(*p) {
                                p.announced = true;
                            }
                        }
                        pages
                    }
                    None => Vec::new(),
                }
            };
            for instance in pages {
                let page = (app, user.clone(), device.clone(), instance);
                if let Err(e) = self
                    .publish(app_key, &self.presence(&page, Presence::Here))
                    .await
                {
                    tracing::warn!(error = %e, "cluster: announcing a device to the rooms failed");
                }
            }
        }
    }

    /// Page `instance` of `device` of `user` connected on another node: its connection here,
    /// if any, counts as announced (see `rooms_node::RoomsNode::supersede`).
    fn supersede(&self, app: AppId, user: &str, device: &str, instance: u64) {
        let key: DeviceKey = (app, Arc::from(user), Arc::from(device));
        if let Some(p) = lock(&self.devices)
            .get_mut(&key)
            .and_then(|h| h.page(instance))
        {
            p.announced = true;
        }
    }

    /// Pages connected here not announced yet (of `app`, of `only` that device).
    fn unannounced(&self, app: AppId, only: Option<(&str, &str)>) -> Vec<rooms_node::Page> {
        let d = lock(&self.devices);
        let page = |k: &DeviceKey, h: &Held| -> Vec<rooms_node::Page> {
            h.unannounced()
                .map(|i| (k.1.clone(), k.2.clone(), i))
                .collect()
        };
        match only {
            Some((user, device)) => {
                let key: DeviceKey = (app, Arc::from(user), Arc::from(device));
                d.get(&key).map(|h| page(&key, h)).unwrap_or_default()
            }
            None => d
                .iter()
                .filter(|(k, _)| k.0 == app)
                .flat_map(|(k, h)| page(k, h))
                .collect(),
        }
    }

    /// Connection `conn` ended (idempotent): the page's last one here withdraws it (`Gone`,
    /// clean or lost) if it was announced or the rooms care about its device now
    /// ([`rooms_node::announces`]), which starts its grace if it is in a call and no other page
    /// holds the device.
    pub async fn release(
        &self,
        hub: &crate::hub::Hub,
        app_key: &str,
        conn: ConnId,
        departure: Departure,
    ) {
        let Some(page) = lock(&self.conns).get(&conn).cloned() else {
            return;
        };
        let key: DeviceKey = (page.0, page.1.clone(), page.2.clone());
        let order = self.device_order(&key);
        {
            let _order = order.lock().await;
            if lock(&self.conns).remove(&conn).is_some() {
                let last = {
                    let mut d = lock(&self.devices);
                    let last = match d.get_mut(&key) {
                        Some(h) => match h.pages.iter().position(|p| p.instance == page.3) {
                            Some(i) if h.pages[i].conns > 1 => {
                                h.pages[i].conns -= 1;
                                None
                            }
                            Some(i) => Some(h.pages.swap_remove(i).announced),
                            None => None,
                        },
                        None => None,
                    };
                    if d.get(&key).is_some_and(|h| h.pages.is_empty()) {
                        d.remove(&key);
                    }
                    last
                };
                let gone = last.is_some_and(|announced| {
                    rooms_node::announces(announced, || hub.rooms_involve(key.0, &key.1, &key.2))
                });
                if gone {
                    let ev = self.presence(&page, Presence::Gone(departure));
                    if let Err(e) = self.publish(app_key, &ev).await {
                        tracing::warn!(error = %e, "cluster: publishing a device's departure failed");
                    }
                }
            }
        }
    }

    /// The lock that orders `key`'s announcements (see `order`).
    fn device_order(&self, key: &DeviceKey) -> DeviceOrder<'_> {
        DeviceOrder {
            rooms: self,
            key: key.clone(),
            order: Some(lock(&self.order).entry(key.clone()).or_default().clone()),
        }
    }

    /// Node `dead` is gone (its heartbeat expired): in every app, its devices are lost and
    /// this node runs their graces (and those it ran). Harmless when another node reported it
    /// first. For the node-heartbeat hook.
    pub async fn node_lost(&self, hub: &crate::hub::Hub, dead: &str) -> Result<(), ClusterError> {
        for app in hub.apps() {
            let ev = rooms_node::node_lost(self.me(), dead);
            self.publish(&app.key, &ev).await?;
        }
        Ok(())
    }

    /// Waits until this node's replica of `app` applied every event Redis had numbered when
    /// this was called (at most [`CATCH_UP_WAIT`]). A call message refused against the replica
    /// is checked again after it: what made its sender a participant (an invite whose delivery
    /// it answered) was numbered before, but may still be on its way to this replica.
    pub async fn caught_up(&self, app: AppId, app_key: &str) -> Result<(), ClusterError> {
        let key = counter_key(app_key);
        let target: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.bus.connection())
            .await
            .map_err(|e| ClusterError::command(self.bus.url(), format!("GET {key}"), e))?;
        let Some(target) = target else {
            return Ok(());
        };
        let reached = async {
            loop {
                let notified = self.progress.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.applied[app].load(Ordering::Acquire) >= target {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(CATCH_UP_WAIT, reached).await.is_err() {
            tracing::warn!(
                target,
                "cluster: the rooms replica did not catch up in time"
            );
        }
        Ok(())
    }

    /// Tests: while paused, this node's replica applies nothing (its events wait, queued).
    #[doc(hidden)]
    pub fn pause_for_tests(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    fn progressed(&self, app: AppId, n: u64) {
        self.applied[app].store(n, Ordering::Release);
        self.progress.notify_waiters();
    }

    /// This node is leaving (graceful shutdown, after its connections closed and published
    /// their `Gone`): the graces it runs go to `runner` (a live node), else to the lowest node
    /// still holding an announced device. (Only devices in calls are announced, so there may
    /// be none: the leaving node names a live one when it knows one.)
    pub async fn leaving(
        &self,
        hub: &crate::hub::Hub,
        runner: Option<&str>,
    ) -> Result<(), ClusterError> {
        for app in hub.apps() {
            let ev = rooms_node::leaving(self.me(), runner);
            self.publish(&app.key, &ev).await?;
        }
        Ok(())
    }

    /// The pages held here and whether each was announced, for a resync.
    fn held(&self) -> Vec<(PageKey, bool)> {
        let d = lock(&self.devices);
        let mut out = Vec::new();
        for (k, h) in d.iter() {
            for p in &h.pages {
                out.push(((k.0, k.1.clone(), k.2.clone(), p.instance), p.announced));
            }
        }
        out
    }

    /// Marks held pages as announced (their `Here` is going out).
    fn mark_announced(&self, pages: &[PageKey]) {
        let mut d = lock(&self.devices);
        for (app, user, device, instance) in pages {
            let key: DeviceKey = (*app, user.clone(), device.clone());
            if let Some(p) = d.get_mut(&key).and_then(|h| h.page(*instance)) {
                p.announced = true;
            }
        }
    }

    /// Up to [`PAGE`] log entries above `n`.
    async fn read_log(&self, app_key: &str, n: u64) -> Result<Vec<Entry>, ClusterError> {
        let key = log_key(app_key);
        let reply: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({n}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut self.bus.connection())
            .await
            .map_err(|e| ClusterError::command(self.bus.url(), format!("XRANGE {key}"), e))?;
        parse_log(reply)
            .ok_or_else(|| ClusterError::OutOfRange(format!("XRANGE {key}: unexpected reply")))
    }

    /// The stored snapshot and its number.
    async fn load_snapshot(
        &self,
        app_key: &str,
    ) -> Result<Option<(u64, RoomsSnapshot)>, ClusterError> {
        let key = snapshot_key(app_key);
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.bus.connection())
            .await
            .map_err(|e| ClusterError::command(self.bus.url(), format!("GET {key}"), e))?;
        let Some(v) = v else { return Ok(None) };
        let parsed = v.iter().position(|&b| b == b'\n').and_then(|nl| {
            let n = std::str::from_utf8(&v[..nl]).ok()?.parse().ok()?;
            Some((n, RoomsSnapshot::decode(&v[nl + 1..]).ok()?))
        });
        if parsed.is_none() {
            tracing::warn!(%key, "cluster: unreadable rooms snapshot ignored");
        }
        Ok(parsed)
    }

    async fn save_snapshot(
        &self,
        app_key: &str,
        n: u64,
        snap: &RoomsSnapshot,
    ) -> Result<bool, ClusterError> {
        let call = SAVE
            .call()
            .key(snapshot_key(app_key))
            .arg(n)
            .arg(snap.encode_to_vec());
        let written: i64 = self.bus.run(&call).await?;
        Ok(written == 1)
    }
}

/// The follower's per-app position.
#[derive(Default, Clone, Copy)]
struct Position {
    /// Last event number applied (0: none yet).
    applied: u64,
    /// Last number whose snapshot this node wrote.
    saved: u64,
}

struct Follower {
    rooms: Arc<RoomsSync>,
    state: Arc<AppState>,
    pos: Vec<Position>,
}

impl Follower {
    fn key(&self, app: AppId) -> Arc<str> {
        self.state.hub.app(app).key.clone()
    }

    /// Applies one event in order; the hangup of a grace this node ran is routed here.
    async fn apply(&mut self, app: AppId, e: Entry) {
        self.pos[app].applied = e.n;
        self.rooms.progressed(app, e.n);
        let Ok(ev) = RoomsEvent::decode(&e.event[..]) else {
            tracing::warn!(n = e.n, "cluster: undecodable rooms event skipped");
            return;
        };
        let ended = self
            .state
            .hub
            .core(app)
            .apply_rooms_event(&ev, e.t_ms, clock::now());
        // SFU mode: a GROUP call's membership may have changed (cluster messages do not pass
        // `Hub::route`, which tells the SFU task on a single node).
        if let Some(delivery::rooms::rooms_event::Event::Message(m)) = &ev.event {
            if m.conversation_type == rtc_core::proto::conversation_type::GROUP {
                self.state.hub.notify_sfu(app, &m.call_id);
            }
        }
        // (The same rules as the simulator's nodes: `delivery::rooms_node`.)
        let after = rooms_node::after_apply(self.rooms.me(), &ev, ended);
        if let Some(ended) = after.hang_up {
            self.hang_up_for(app, ended).await;
        }
        // A page that connected to another node: its connection here is a dead socket, never
        // to be announced late (`rooms_node::AfterApply::moved`).
        if let Some((user, device, instance)) = &after.moved {
            self.rooms.supersede(app, user, device, *instance);
        }
        // A device connected here but not announced that this event involved.
        match &after.involves {
            Involves::Device(user, device) => self.announce_involved(app, Some((user, device))),
            Involves::All => self.announce_involved(app, None),
            Involves::Nothing => {}
        }
        // Taken for dead while still running (frozen past its deadline): the devices still
        // connected here are here, before their lost graces run out.
        if after.announce {
            self.announce(Some(app)).await;
        }
    }

    /// Announces the devices connected here, not announced yet, that the replica of `app` now
    /// involves (of `only` that device, else all): in the background, in each device's order.
    fn announce_involved(&self, app: AppId, only: Option<(&str, &str)>) {
        let candidates = self.rooms.unannounced(app, only);
        if candidates.is_empty() {
            return;
        }
        let me = self.rooms.me().to_owned();
        let mut due: HashMap<(Arc<str>, Arc<str>), Vec<u64>> = HashMap::new();
        {
            let core = self.state.hub.core(app);
            for (u, d, i) in candidates {
                if rooms_node::late_here(&core, &me, &u, &d, i) {
                    due.entry((u, d)).or_default().push(i);
                }
            }
        }
        for ((user, device), pages) in due {
            let (rooms, key) = (self.rooms.clone(), self.key(app));
            tokio::spawn(async move {
                rooms
                    .announce_device(app, &key, &user, &device, Some(&pages))
                    .await
            });
        }
    }

    /// Routes the hangup of a gone participant through the route script, as if its device had
    /// sent it, to the other participants and to every device of its user.
    async fn hang_up_for(&self, app: AppId, e: Ended) {
        let Some(routing) = &self.state.routing else {
            return;
        };
        tracing::info!(
            user_id = &*e.user,
            device_id = &*e.device,
            reason = e.reason,
            "participant gone; hanging up for it"
        );
        let key = self.key(app);
        let private = e.route.conversation_type == rtc_core::proto::conversation_type::PRIVATE;
        let message = rtc_core::proto::Delivered {
            conversation_type: e.route.conversation_type,
            target_id: if private {
                e.user.to_string()
            } else {
                e.route.target_id.clone()
            },
            channel_id: e.route.channel_id.clone(),
            message_type: rtc_core::proto::object_name::HANGUP.to_owned(),
            content: e.content(),
            ..Default::default()
        };
        let req = RouteRequest {
            app: &key,
            from: Sender {
                user: &e.user,
                device: &e.device,
                instance: 0,
                // No connection 0: every device of the user gets its copy.
                conn: ConnRef {
                    node: self.rooms.bus.node_id().clone(),
                    conn: 0,
                },
            },
            client_seq: 0,
            request_id: None,
            message,
            recipients: e
                .recipients
                .iter()
                .filter(|r| **r != *e.user)
                .map(|r| Recipient {
                    user: r.clone(),
                    offline: false,
                })
                .collect(),
            own_copy: Some(OwnCopy {
                target_id: e.route.target_id.clone(),
                offline: false,
                all_devices: true,
            }),
            floor_us: 0,
            presence: true,
            // Every replica ended the participation with the `GraceOver` already.
            rooms_event: None,
        };
        match routing.mailboxes.route(&req).await {
            Ok(_) => {
                self.state
                    .metrics
                    .messages_routed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: routing a gone participant's hangup failed")
            }
        }
    }

    /// Reads the log above what was applied (see the module docs for a gap the log does not
    /// cover).
    async fn catch_up(&mut self, app: AppId) -> Result<(), ClusterError> {
        let key = self.key(app);
        let mut entries = self.rooms.read_log(&key, self.pos[app].applied).await?;
        let applied = self.pos[app].applied;
        // (Nothing applied yet: start from the snapshot, if there is one.)
        let contiguous = applied > 0 && entries.first().is_none_or(|e| e.n == applied + 1);
        if !contiguous {
            let first = entries.first().map_or(0, |e| e.n);
            match self.rooms.load_snapshot(&key).await? {
                // (Older than the log's start after a Redis restart: the log then starts
                // over, and everything in it is above the snapshot.)
                Some((n, snap)) if n > applied => {
                    self.state
                        .hub
                        .core(app)
                        .load_rooms_replica(snap, clock::now());
                    self.pos[app].applied = n;
                    self.rooms.progressed(app, n);
                    tracing::info!(n, "cluster: rooms replica loaded from the snapshot");
                    self.announce_involved(app, None);
                    if first > n + 1 && applied > 0 {
                        // (After a Redis restart the log starts over above every old number.)
                        tracing::warn!(n, first, "cluster: the rooms log starts after the snapshot; events between may be lost");
                    }
                    if n >= first {
                        entries = self.rooms.read_log(&key, n).await?;
                    }
                }
                _ if applied > 0 => {
                    tracing::warn!(applied, first, "cluster: the rooms log has a gap no snapshot covers; keeping this node's rooms");
                    // (Written again for nodes that start later.)
                    self.pos[app].saved = 0;
                }
                _ => {}
            }
        }
        loop {
            let last = entries.last().map(|e| e.n);
            for e in entries {
                if e.n > self.pos[app].applied {
                    self.apply(app, e).await;
                }
            }
            match last {
                Some(n) => entries = self.rooms.read_log(&key, n).await?,
                None => return Ok(()),
            }
        }
    }

    /// After a resync: the log from where each app stands, then this node's devices again.
    async fn resync(&mut self) {
        for app in 0..self.pos.len() {
            if let Err(e) = self.catch_up(app).await {
                tracing::warn!(error = %e, "cluster: reading the rooms log failed");
            }
            // A Redis that came back empty has no snapshot: write ours.
            self.pos[app].saved = 0;
        }
        self.announce(None).await;
    }

    /// Makes what the replicas say this node holds true (of `only` that app): devices here are
    /// announced again, devices that left while their `Gone` could not be published leave now.
    async fn announce(&mut self, only: Option<AppId>) {
        let held = self.rooms.held();
        let me = self.rooms.me().to_owned();
        let mut events = Vec::new();
        for app in (0..self.pos.len()).filter(|a| only.is_none_or(|o| o == *a)) {
            // Pages gone meanwhile leave; announced pages, and those the rooms care about now,
            // are announced again (`rooms_node::announcements`).
            let here: Vec<(rooms_node::Page, bool)> = held
                .iter()
                .filter(|(h, _)| h.0 == app)
                .map(|((_, u, d, i), a)| ((u.clone(), d.clone(), *i), *a))
                .collect();
            let (evs, announced) = {
                let core = self.state.hub.core(app);
                let known = core.rooms_held_by(&me);
                rooms_node::announcements(
                    &me,
                    &here,
                    &known,
                    |(u, d, i)| rooms_node::late_here(&core, &me, u, d, *i),
                    |(u, d, i)| core.rooms_page_held_elsewhere(u, d, *i, &me),
                )
            };
            let announced: Vec<PageKey> = announced
                .into_iter()
                .map(|(u, d, i)| (app, u, d, i))
                .collect();
            self.rooms.mark_announced(&announced);
            events.extend(evs.into_iter().map(|ev| (app, ev)));
        }
        for (app, ev) in events {
            if let Err(e) = self.rooms.publish(&self.key(app), &ev).await {
                tracing::warn!(error = %e, "cluster: announcing a device again failed");
            }
        }
    }

    /// Publishes `GraceOver` for the graces this node runs that are over.
    async fn graces(&mut self) {
        let me = self.rooms.me().to_owned();
        for app in 0..self.pos.len() {
            let due = self.state.hub.core(app).rooms_graces_due(clock::now(), &me);
            for (user, device, how) in due {
                let ev = rooms_node::grace_over(&me, &user, &device, how);
                if let Err(e) = self.rooms.publish(&self.key(app), &ev).await {
                    tracing::warn!(error = %e, "cluster: publishing a grace's end failed (retried)");
                }
            }
        }
    }

    /// Writes each app's snapshot when its replica moved since the last one — on one node
    /// only, the lowest live one (replicas are equal, and a snapshot holds every connected
    /// device of the app: at 100,000 connections every node encoding and writing megabytes a
    /// second cost CPU, Redis traffic and memory for nothing). When that node dies the next
    /// lowest takes over within a beat or two; the log bridges the gap.
    async fn snapshots(&mut self) {
        if let Some(routing) = &self.state.routing {
            match routing.presence.live_nodes().await {
                Ok(live) if live.first().is_some_and(|n| n.as_str() != self.rooms.me()) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: live nodes unknown; writing the rooms snapshot anyway")
                }
            }
        }
        for app in 0..self.pos.len() {
            let Position { applied, saved } = self.pos[app];
            if applied == 0 || applied == saved {
                continue;
            }
            let snap = self.state.hub.core(app).rooms_snapshot();
            match self
                .rooms
                .save_snapshot(&self.key(app), applied, &snap)
                .await
            {
                Ok(_) => self.pos[app].saved = applied,
                Err(e) => tracing::warn!(error = %e, "cluster: writing the rooms snapshot failed"),
            }
        }
    }
}

/// Reports every node this node took out (`Presence::dead_nodes`) to the rooms
/// ([`RoomsSync::node_lost`]), until shutdown.
pub async fn follow_dead_nodes(
    rooms: Arc<RoomsSync>,
    state: Arc<AppState>,
    mut dead: tokio::sync::broadcast::Receiver<super::NodeId>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let node = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            n = dead.recv() => n,
        };
        match node {
            Ok(node) => {
                if let Err(e) = rooms.node_lost(&state.hub, node.as_str()).await {
                    tracing::warn!(error = %e, %node, "cluster: reporting a dead node to the rooms failed");
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "cluster: dead-node reports missed")
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Applies the rooms events as they arrive, runs this node's graces and writes snapshots,
/// until shutdown.
pub async fn follow(rooms: Arc<RoomsSync>, state: Arc<AppState>, mut rx: Receiver<BusEvent>) {
    let apps = state.hub.apps().len();
    let mut f = Follower {
        rooms,
        state,
        pos: vec![Position::default(); apps],
    };
    // A node that starts into a running cluster begins from the snapshot and the log.
    f.resync().await;
    let mut tick = tokio::time::interval(GRACE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = Instant::now();
    loop {
        let ev = tokio::select! {
            _ = f.state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                f.graces().await;
                if last_save.elapsed() >= SNAPSHOT_INTERVAL {
                    last_save = Instant::now();
                    f.snapshots().await;
                    // A node that found no snapshot at its start looks again.
                    for app in 0..f.pos.len() {
                        if f.pos[app].applied == 0 {
                            if let Err(e) = f.catch_up(app).await {
                                tracing::warn!(error = %e, "cluster: reading the rooms log failed");
                            }
                        }
                    }
                }
                continue;
            }
            ev = rx.recv() => ev,
        };
        while f.rooms.paused.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match ev {
            None => return,
            Some(BusEvent::Message { channel, payload }) => {
                let Some(&app) = f.rooms.channels.get(&channel) else {
                    continue;
                };
                let Some(e) = parse_published(&payload) else {
                    tracing::warn!(%channel, "cluster: malformed rooms event ignored");
                    continue;
                };
                let applied = f.pos[app].applied;
                if e.n <= applied {
                    continue; // (read from the log already)
                }
                if e.n == applied + 1 {
                    f.apply(app, e).await;
                } else if let Err(err) = f.catch_up(app).await {
                    tracing::warn!(error = %err, "cluster: reading the rooms log failed");
                }
            }
            Some(BusEvent::Resync) => f.resync().await,
        }
    }
}
