//! The server's shell around the delivery core: one [`delivery::AppCore`] per app behind a
//! mutex, and the [`Shell`] that turns the core's effects into pushes into connections'
//! [`Outbox`]es, SQLite writes and metrics.
//!
//! One critical section per input (a message routed, an ack, a connection registered, a
//! policy change) is what makes every device see messages in exactly the order the core
//! accepted them and a policy change take effect between two messages: the core pushes into
//! each outbox (a non-blocking queue) while the lock is held. The rules themselves — ordering,
//! resume, exactly once, storage, policy, rooms — are in `crates/delivery`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rtc_core::proto::{AuthResult, ErrorFrame, JoinedDevice};

pub use crate::outbox::{tick_liveness_clock, Outbox, OUTBOX_CAPACITY};
pub use delivery::{
    encode_body, Accepted, AuthRefusal, ConnId, Departure, Limits, Origin, Outgoing, PushError,
    Registered, RouteError, RouteOptions, SendRef,
};

use delivery::{AppCore, Count, PolicyRows, Shell, StoreOffline};
pub use delivery::{StoredMessage, SyncData};

use crate::clock;
use crate::metrics::Metrics;
use crate::store::Store;

pub type AppId = usize;

/// Who sent a message another node sequenced, as far as this node can tell.
#[derive(Debug, Clone, Copy)]
pub enum SequencedFrom<'a> {
    /// The sending connection, when it is on this node (live from the bus).
    Conn(Option<ConnId>),
    /// The sending device, named by a copy read back from the mailbox.
    Device(Option<&'a str>),
}

/// Delivery limits from the config.
pub fn limits_from_config(c: &crate::Config) -> Limits {
    Limits {
        offline_ttl_ms: i64::try_from(c.offline_ttl.as_millis()).unwrap_or(i64::MAX),
        offline_max_per_user: c.offline_max_per_user,
        window_ttl: c.resume_window,
        window_max: c.resume_window_messages,
        max_connections_per_app: c.max_connections_per_app,
        left_grace: c.left_grace,
        lost_grace: c.lost_grace,
        max_connections_per_user: c.max_connections_per_user,
        max_connections_per_device: c.max_connections_per_device,
        user_rate_per_sec: c.user_rate_per_sec,
        user_rate_burst: c.user_rate_burst,
        offline_quota_per_sender: c.offline_quota_per_sender,
        offline_quota_window: c.offline_quota_window,
        offline_max_bytes: c.offline_max_bytes,
        store_queue_max: c.store_queue_max,
    }
}

/// The core's effects, for one app: outboxes, the SQLite store, metrics.
struct ServerShell<'a> {
    key: &'a Arc<str>,
    store: &'a Store,
    metrics: &'a Metrics,
    /// Device cursors are written to SQLite (not in cluster mode: [`Hub::cursors_in_redis`]).
    sqlite_cursors: bool,
}

impl Shell for ServerShell<'_> {
    type Conn = Arc<Outbox>;

    fn push(&mut self, conn: &Arc<Outbox>, item: Outgoing, bounded: bool) -> Result<(), PushError> {
        conn.push(item, bounded)
    }
    fn push_reply(&mut self, conn: &Arc<Outbox>, item: Outgoing) -> Result<(), PushError> {
        conn.push_own(item, true)
    }
    fn abort(&mut self, conn: &Arc<Outbox>, err: ErrorFrame) {
        conn.abort_with(err);
    }
    fn close(&mut self, conn: &Arc<Outbox>) {
        conn.close();
    }
    fn kill(&mut self, conn: &Arc<Outbox>) {
        conn.kill();
    }
    fn committed(&self) -> u64 {
        self.store.committed()
    }
    fn pending(&self) -> u64 {
        self.store.pending()
    }
    fn offline_bytes(&self) -> u64 {
        u64::try_from(self.store.offline_bytes()).unwrap_or(0)
    }
    fn store_offline(&mut self, m: StoreOffline) -> u64 {
        self.store.store_offline(self.key.clone(), m)
    }
    fn keep_for_device(&mut self, device: Arc<str>, m: StoreOffline) {
        self.store.keep_for_device(self.key.clone(), device, m);
    }
    fn keep_stored_for_device(&mut self, user: Arc<str>, device: Arc<str>, acked: u64) {
        self.store
            .keep_stored_for_device(self.key.clone(), user, device, acked);
    }
    fn delete_offline_upto(&mut self, user: Arc<str>, device: Arc<str>, upto: u64) {
        self.store
            .delete_offline_upto(self.key.clone(), user, device, upto);
    }
    fn save_cursor(&mut self, user: Arc<str>, device: Arc<str>, acked: u64, now_ms: i64) {
        if self.sqlite_cursors {
            self.store
                .save_cursor(self.key.clone(), user, device, acked, now_ms);
        }
    }
    fn save_client_seqs(
        &mut self,
        user: Arc<str>,
        device: Arc<str>,
        seqs: Vec<(u64, u64)>,
        now_ms: i64,
    ) {
        self.store
            .save_client_seqs(self.key.clone(), user, device, seqs, now_ms);
    }
    fn log_departure(
        &mut self,
        version: u64,
        t_ms: i64,
        event: delivery::rooms::RoomsEvent,
    ) -> u64 {
        use prost::Message as _;
        self.store
            .log_rooms_departure(self.key.clone(), version, t_ms, event.encode_to_vec())
    }
    fn count(&mut self, what: Count) {
        let m = self.metrics;
        match what {
            Count::ConnectionAccepted => Metrics::inc(&m.connections_accepted),
            Count::MessageRouted => Metrics::inc(&m.messages_routed),
            Count::OfflineStored => Metrics::inc(&m.offline_stored),
            Count::Replayed(n) => {
                m.offline_replayed.fetch_add(n, Ordering::Relaxed);
            }
            Count::Error(code) => m.error(code),
        }
    }
}

/// What [`Hub::admit`] decided (cluster mode).
#[derive(Debug)]
pub enum Admitted {
    /// A resend already accepted: answered, nothing to route.
    Duplicate(Box<Accepted>),
    /// To route through the shared route script.
    Route {
        /// Users other than the sender, after groups and blacklists.
        recipients: Vec<String>,
        /// The `SendResult`'s request id (none when no receipt was asked for).
        reply_to: Option<u32>,
        /// A call message to push to the recipients that turn out to be on no node
        /// ([`Hub::push_offline`]).
        push: bool,
        /// A call message's encoded rooms event, for the route script (`cluster::rooms`).
        rooms_event: Option<Vec<u8>>,
    },
}

/// One app's share of the hub.
pub struct AppShard {
    pub key: Arc<str>,
    secret: String,
    core: Mutex<AppCore<Arc<Outbox>>>,
}

impl AppShard {
    pub fn secret(&self) -> &str {
        &self.secret
    }
    pub fn connections(&self) -> usize {
        self.lock().connections()
    }
    fn lock(&self) -> MutexGuard<'_, AppCore<Arc<Outbox>>> {
        // Nothing in the core can leave it inconsistent midway, so a poisoned lock (a panic
        // elsewhere) is still safe to use; refusing would take the whole server down.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Hub {
    apps: Vec<AppShard>,
    by_key: HashMap<String, AppId>,
    store: Store,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    /// Offline pushes to the apps' webhooks (none configured: unset).
    pusher: std::sync::OnceLock<Arc<crate::push::Pusher>>,
    /// SFU mode: GROUP call ids whose membership may have changed ([`crate::sfu::follow`]).
    sfu_calls: std::sync::OnceLock<tokio::sync::mpsc::Sender<(AppId, String)>>,
    /// Per app, the rooms' change count last saved ([`Hub::save_changed_rooms`]); its lock
    /// keeps two saves in order.
    rooms_saved: Mutex<Vec<u64>>,
    /// False in cluster mode: see [`Hub::cursors_in_redis`].
    sqlite_cursors: std::sync::atomic::AtomicBool,
}

impl Hub {
    /// A hub for `apps` (`(key, secret)`, the primary app first).
    pub fn new(
        apps: Vec<(String, String)>,
        limits: Limits,
        store: Store,
        metrics: Arc<Metrics>,
        seq_floor: u64,
    ) -> Self {
        let now = clock::now();
        let by_key = apps
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let n_apps = apps.len();
        let apps = apps
            .into_iter()
            .map(|(key, secret)| {
                let mut salt = [0u8; 4];
                // A failing OS RNG only weakens cross-process uniqueness of message UIDs; their
                // counter still holds.
                let _ = getrandom::fill(&mut salt);
                AppShard {
                    key: Arc::from(key.as_str()),
                    secret,
                    core: Mutex::new(AppCore::new(
                        limits.clone(),
                        seq_floor,
                        now,
                        u32::from_le_bytes(salt),
                    )),
                }
            })
            .collect();
        Self {
            apps,
            by_key,
            store,
            metrics,
            next_conn: AtomicU64::new(0),
            pusher: std::sync::OnceLock::new(),
            sfu_calls: std::sync::OnceLock::new(),
            rooms_saved: Mutex::new(vec![0; n_apps]),
            sqlite_cursors: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Cluster mode (at startup): device cursors live in Redis (`cluster::mailbox`), where every
    /// login and replay reads them; SQLite's copy is never read then, so it is not written
    /// either. (It was a database write per login and per departing device: a login storm's
    /// survivors spent ~10 % of their login CPU on the database thread for it, session 17.)
    pub fn cursors_in_redis(&self) {
        self.sqlite_cursors.store(false, Ordering::Relaxed);
    }

    /// SFU mode: after each routed GROUP call message, its call id goes to `tx` (once, at
    /// startup). Full channel: dropped, the SFU task's periodic pass catches up.
    pub fn set_sfu_notify(&self, tx: tokio::sync::mpsc::Sender<(AppId, String)>) {
        let _ = self.sfu_calls.set(tx);
    }

    /// SFU mode: the membership of this call may have changed (cluster mode: from the rooms
    /// replica, whose events do not pass [`Hub::route`]). Dropped when the queue is full.
    pub fn notify_sfu(&self, app: AppId, call_id: &str) {
        if let Some(tx) = self.sfu_calls.get() {
            let _ = tx.try_send((app, call_id.to_owned()));
        }
    }

    /// SFU mode, cluster: a device connected here; its calls are synced (its seat may have to
    /// move here from the node it left).
    pub fn notify_sfu_device(&self, app: AppId, user: &str, device: &str) {
        if self.sfu_calls.get().is_none() {
            return;
        }
        let calls = self.apps[app].lock().joined_user_info(user, user);
        for c in calls.iter().filter(|c| c.device_id == device) {
            self.notify_sfu(app, &c.call_id);
        }
    }

    /// The member devices `(user, device)` of a call ([`AppCore::call_members`]).
    pub fn call_members(&self, app: AppId, call_id: &str) -> Vec<(Arc<str>, Arc<str>)> {
        self.apps[app].lock().call_members(call_id)
    }

    /// Hands offline pushes of accepted messages to `pusher` (once, at startup).
    pub fn set_pusher(&self, pusher: Arc<crate::push::Pusher>) {
        let _ = self.pusher.set(pusher);
    }

    pub fn app_by_key(&self, key: &str) -> Option<AppId> {
        self.by_key.get(key).copied()
    }

    pub fn app(&self, app: AppId) -> &AppShard {
        &self.apps[app]
    }

    pub fn apps(&self) -> &[AppShard] {
        &self.apps
    }

    /// Runs `f` on `app`'s core with its shell, under the app's lock.
    fn with<R>(
        &self,
        app: AppId,
        f: impl FnOnce(&mut AppCore<Arc<Outbox>>, &mut ServerShell<'_>) -> R,
    ) -> R {
        let shard = &self.apps[app];
        let mut core = shard.lock();
        let mut sh = ServerShell {
            key: &shard.key,
            store: &self.store,
            metrics: &self.metrics,
            sqlite_cursors: self.sqlite_cursors.load(Ordering::Relaxed),
        };
        f(&mut core, &mut sh)
    }

    /// Loads the persisted policy of `app` (at startup; in cluster mode also after a resync).
    pub fn load_policy(&self, app: AppId, rows: PolicyRows) {
        self.apps[app].lock().load_policy(rows);
    }

    /// The whole policy of `app` as rows (cluster mode writes it back to a Redis that lost it).
    pub fn policy_rows(&self, app: AppId) -> PolicyRows {
        let core = self.apps[app].lock();
        let p = core.policy();
        let pairs = |m: &HashMap<String, std::collections::HashSet<String>>| -> Vec<_> {
            m.iter()
                .flat_map(|(k, s)| s.iter().map(move |v| (k.clone(), v.clone())))
                .collect()
        };
        PolicyRows {
            token_expiry: p.token_expiry.clone(),
            blocks: p.blocks.clone(),
            blacklists: pairs(&p.blacklists),
            groups: p.groups.keys().cloned().collect(),
            members: pairs(&p.groups),
        }
    }

    // ---- connections -------------------------------------------------------------------

    /// See [`AppCore::register`].
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        app: AppId,
        user_id: &str,
        device_id: &str,
        token_iat: i64,
        resume_from: u64,
        outbox: Arc<Outbox>,
        auth_ok: AuthResult,
        instance: u64,
        stored: (u64, u64),
    ) -> Result<Registered, AuthRefusal> {
        self.with(app, |core, sh| {
            let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
            core.register(
                sh,
                clock::now(),
                conn_id,
                outbox,
                user_id,
                device_id,
                token_iat,
                resume_from,
                auth_ok,
                instance,
                stored,
            )
        })
    }

    /// See [`AppCore::finish_sync`].
    pub fn finish_sync(
        &self,
        app: AppId,
        reg: &Registered,
        data: SyncData,
        page_end: Option<u64>,
    ) -> usize {
        self.with(app, |core, sh| {
            core.finish_sync(sh, clock::now(), reg, data, page_end)
        })
    }

    /// See [`AppCore::unregister`].
    pub fn unregister(&self, app: AppId, user_id: &str, conn_id: ConnId, departure: Departure) {
        self.with(app, |core, sh| {
            core.unregister(sh, clock::now(), user_id, conn_id, departure)
        })
    }

    /// See [`AppCore::accepted_upto`].
    pub fn accepted_upto(&self, origin: &Origin) -> (u64, u64) {
        self.apps[origin.app].lock().accepted_upto(origin)
    }

    /// See [`AppCore::note_accepted`].
    pub fn note_accepted(&self, origin: &Origin, client_seq: u64) {
        self.apps[origin.app]
            .lock()
            .note_accepted(origin, client_seq)
    }

    /// Cluster mode: what the login's join read, applied before the connection's first frame
    /// is read or written. `accepted`, what the route script accepted from `origin`'s instance
    /// (read in the join, after registration, not in a round trip of its own before it: one
    /// fewer per login in a reconnect storm), is recorded like [`Self::note_accepted`], so a
    /// resend of it is answered here as a duplicate. It and `profile` (what the Server API
    /// registered, on whichever node: a node's SQLite is its own) go into the `AuthResult`
    /// registration queued first in `outbox` (nothing of a connection is written before its
    /// join returned).
    pub fn join_result(
        &self,
        origin: &Origin,
        outbox: &Outbox,
        accepted: u64,
        profile: Option<rtc_core::proto::UserProfile>,
    ) {
        use prost::Message as _;
        use rtc_core::proto::{server_frame::Body, ServerFrame};
        let upto = if origin.instance == 0 || accepted == 0 {
            0
        } else {
            let mut core = self.apps[origin.app].lock();
            core.note_accepted(origin, accepted);
            core.accepted_upto(origin).0
        };
        if upto == 0 && profile.is_none() {
            return;
        }
        outbox.update_first(|first| {
            let (Outgoing::Frame { body, .. } | Outgoing::Durable { body, .. }) = first else {
                return;
            };
            if let Ok(ServerFrame {
                body: Some(Body::AuthResult(mut auth)),
                ..
            }) = ServerFrame::decode(&body[..])
            {
                auth.accepted_upto = auth.accepted_upto.max(upto);
                if profile.is_some() {
                    auth.profile = profile;
                }
                *body = encode_body(&Body::AuthResult(auth));
            }
        });
    }

    /// See [`AppCore::ack`].
    pub fn ack(&self, origin: &Origin, seq: u64) {
        self.with(origin.app, |core, sh| {
            core.ack(sh, clock::now(), origin, seq)
        })
    }

    /// Number of connections of `user_id` in the primary app (for tests).
    pub fn connection_count(&self, user_id: &str) -> usize {
        self.connection_count_in(0, user_id)
    }

    pub fn connection_count_in(&self, app: AppId, user_id: &str) -> usize {
        self.apps[app].lock().connection_count(user_id)
    }

    /// Messages held in memory for resumes, over every app (metrics, tests).
    pub fn window_len(&self) -> usize {
        self.apps.iter().map(|a| a.lock().window_len()).sum()
    }

    // ---- routing -----------------------------------------------------------------------

    /// Routes a message (see [`AppCore::route`]) and hands offline pushes to the webhook.
    pub fn route(
        &self,
        from: &Origin,
        msg: &SendRef<'_>,
        mut opts: RouteOptions,
    ) -> Result<Accepted, RouteError> {
        let pusher = self.pusher.get().filter(|p| p.wants(from.app));
        opts.want_push = pusher.is_some();
        let sfu_call = self
            .sfu_calls
            .get()
            .and_then(|tx| Some((tx, group_call_id(msg)?)));
        let mut acc = self.with(from.app, |core, sh| {
            core.route(sh, clock::now(), from, msg, opts)
        })?;
        if let Some((tx, call_id)) = sfu_call {
            let _ = tx.try_send((from.app, call_id));
        }
        if let Some(p) = acc.push.take() {
            self.push_offline(from.app, &from.user_id, &p.message, &p.push, &p.offline);
        }
        Ok(acc)
    }

    /// Hands a call message for `offline` recipients to the app's push webhook, if any.
    /// `m` is the message as its sender addressed it (`target_id` the peer or the group).
    pub fn push_offline(
        &self,
        app: AppId,
        from_user_id: &str,
        m: &rtc_core::proto::Delivered,
        push: &rtc_core::proto::PushConfig,
        offline: &[String],
    ) {
        let Some(pusher) = self.pusher.get().filter(|p| p.wants(app)) else {
            return;
        };
        if offline.is_empty() {
            return;
        }
        pusher.enqueue(
            app,
            crate::push::PushedMessage {
                message_type: &m.message_type,
                message_uid: &m.message_uid,
                from_user_id,
                conversation_type: m.conversation_type,
                target_id: &m.target_id,
                channel_id: &m.channel_id,
                content: &m.content,
                push,
                offline,
                sent_time: m.sent_time,
            },
        );
    }

    // ---- cluster mode (docs/cluster.md): the route script sequences, the core delivers ----

    /// Every check before sequencing ([`AppCore::admit`]); a duplicate is answered here.
    pub fn admit(
        &self,
        from: &Origin,
        msg: &SendRef<'_>,
        mut opts: RouteOptions,
    ) -> Result<Admitted, RouteError> {
        opts.want_push = self.pusher.get().is_some_and(|p| p.wants(from.app));
        self.with(from.app, |core, sh| {
            Ok(match core.admit(sh, clock::now(), from, msg, opts)? {
                delivery::Admission::Duplicate(acc) => Admitted::Duplicate(acc),
                delivery::Admission::Route(a) => Admitted::Route {
                    recipients: a.recipients.iter().map(|u| (*u).to_owned()).collect(),
                    reply_to: a.reply_to,
                    push: a.want_push,
                    rooms_event: a
                        .rooms_event
                        .map(|m| crate::cluster::rooms::encode_message(*m)),
                },
            })
        })
    }

    /// A copy the route script sequenced for `user_id` (see [`AppCore::deliver_sequenced`]).
    /// The sender is known by its connection ([`SequencedFrom::Conn`], live from the bus:
    /// skipped when it is here, its device excluded from the copy) or, for a copy read back
    /// from the mailbox, by its device ([`SequencedFrom::Device`]: every local connection but
    /// that device's).
    pub fn deliver_sequenced(
        &self,
        app: AppId,
        user_id: &str,
        seq: u64,
        payload: &[u8],
        from: SequencedFrom<'_>,
    ) -> usize {
        self.with(app, |core, sh| {
            let (skip, exclude_device) = match from {
                SequencedFrom::Conn(c) => (c, c.and_then(|c| core.conn_device(user_id, c))),
                SequencedFrom::Device(d) => (
                    d.and_then(|d| core.device_conn(user_id, d)),
                    d.map(Arc::from),
                ),
            };
            core.deliver_sequenced(
                sh,
                clock::now(),
                delivery::Sequenced {
                    user_id,
                    seq,
                    payload,
                    skip,
                    exclude_device,
                },
            )
        })
    }

    /// See [`AppCore::reply_to_conn`].
    pub fn reply_to_conn(
        &self,
        app: AppId,
        user_id: &str,
        conn_id: ConnId,
        result: rtc_core::proto::SendResult,
    ) -> bool {
        self.with(app, |core, sh| {
            core.reply_to_conn(sh, user_id, conn_id, result)
        })
    }

    /// [`Self::finish_sync`] with a replay read from the shared mailbox, in the same critical
    /// section as recording that the connection has everything up to `seen` (a live copy of a
    /// replayed message that arrives later is then not given to it; the user's other
    /// connections here still get it).
    pub fn finish_sync_sequenced(
        &self,
        app: AppId,
        reg: &Registered,
        data: SyncData,
        seen: u64,
    ) -> usize {
        self.with(app, |core, sh| {
            let n = core.finish_sync(sh, clock::now(), reg, data, None);
            core.note_sequenced(&reg.user_id, reg.conn_id, seen);
            n
        })
    }

    /// `app`'s core, locked (cluster mode's rooms replica, `cluster::rooms`).
    pub(crate) fn core(&self, app: AppId) -> MutexGuard<'_, AppCore<Arc<Outbox>>> {
        self.apps[app].lock()
    }

    /// See [`AppCore::last_seq`].
    pub fn last_seq(&self, app: AppId, user_id: &str) -> Option<u64> {
        self.apps[app].lock().last_seq(user_id)
    }

    /// See [`AppCore::joined_user_info`].
    pub fn joined_user_info(&self, app: AppId, asker: &str, user_id: &str) -> Vec<JoinedDevice> {
        self.apps[app].lock().joined_user_info(asker, user_id)
    }

    /// Whether `app`'s rooms care where `device` of `user` is connected (a call member or a
    /// grace running: `cluster::rooms` announces only those).
    pub fn rooms_involve(&self, app: AppId, user: &str, device: &str) -> bool {
        self.apps[app].lock().rooms_involve(user, device)
    }

    /// The nodes holding `device` of `user`, as `app`'s rooms replica knows (tests).
    pub fn core_rooms_holders(&self, app: AppId, user: &str, device: &str) -> Vec<String> {
        let core = self.apps[app].lock();
        let holders = core.rooms_holders(user, device);
        holders.iter().map(|n| n.to_string()).collect()
    }

    /// (calls, member devices, ringing users) the rooms of `app` hold (tests).
    pub fn rooms_size(&self, app: AppId) -> (usize, usize, usize) {
        self.apps[app].lock().rooms_size()
    }

    /// Ends the calls of devices whose grace is over (the server's timer, every
    /// [`crate::GRACE_TICK`]).
    pub fn end_gone_participants(&self) {
        let now = clock::now();
        for app in 0..self.apps.len() {
            self.with(app, |core, sh| {
                core.end_gone_participants(sh, now);
            });
        }
    }

    // ---- operator actions ---------------------------------------------------------------

    /// Sends `Kicked { call_id }` to every connection of `user_id`; returns how many.
    pub fn kick(&self, app: AppId, user_id: &str, call_id: &str) -> usize {
        self.with(app, |core, sh| core.kick(sh, user_id, call_id))
    }

    /// Blocks `users` until `until_ms` and disconnects their connections with 31009.
    pub fn block(&self, app: AppId, users: &[String], until_ms: i64) {
        self.with(app, |core, sh| core.block(sh, users, until_ms))
    }

    pub fn unblock(&self, app: AppId, users: &[String]) {
        self.apps[app].lock().unblock(users)
    }

    /// `(user, blocked until ms)` of currently blocked users.
    pub fn blocked_users(&self, app: AppId) -> Vec<(String, i64)> {
        self.apps[app]
            .lock()
            .policy()
            .blocked_users(clock::now_ms())
    }

    /// See [`AppCore::expire_tokens`].
    pub fn expire_tokens(&self, app: AppId, users: &[String], before_ms: i64) {
        self.with(app, |core, sh| core.expire_tokens(sh, users, before_ms))
    }

    pub fn blacklist(&self, app: AppId, owner: &str, others: &[String], add: bool) {
        self.apps[app]
            .lock()
            .policy_mut()
            .blacklist(owner, others, add)
    }

    pub fn blacklist_of(&self, app: AppId, owner: &str) -> Vec<String> {
        self.apps[app].lock().policy().blacklist_of(owner)
    }

    pub fn group_join(&self, app: AppId, group: &str, users: &[String]) {
        self.apps[app].lock().policy_mut().group_join(group, users)
    }

    pub fn group_quit(&self, app: AppId, group: &str, users: &[String]) {
        self.apps[app].lock().policy_mut().group_quit(group, users)
    }

    pub fn group_dismiss(&self, app: AppId, group: &str) {
        self.apps[app].lock().policy_mut().groups.remove(group);
    }

    /// Members of `group`, or `None` if it does not exist.
    pub fn group_members(&self, app: AppId, group: &str) -> Option<Vec<String>> {
        self.apps[app].lock().policy().group_members(group)
    }

    // ---- housekeeping --------------------------------------------------------------------

    /// Single node: saves the call rooms of every app whose rooms changed since their last save
    /// (their change count moved, [`delivery::rooms::Rooms::changes`]), so a crashed server
    /// restores its calls like a gracefully stopped one. Called every
    /// [`crate::ROOMS_SAVE_INTERVAL`] and at shutdown: the message path only counts changes,
    /// and an unchanged app costs a lock and a compare here. The snapshot is taken under the
    /// app's lock, encoded after it and written by the store's thread. Returns how many apps
    /// were saved.
    pub fn save_changed_rooms(&self) -> usize {
        use prost::Message as _;
        let mut saved = self.rooms_saved.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (a, last) in self.apps.iter().zip(saved.iter_mut()) {
            let (changes, snap) = {
                let core = a.lock();
                let changes = core.rooms_changes();
                if changes == *last {
                    continue;
                }
                *last = changes;
                (changes, core.rooms_snapshot())
            };
            self.store
                .save_rooms(a.key.clone(), changes, snap.encode_to_vec());
            n += 1;
        }
        n
    }

    /// Every app's calls with a GROUP member, as (app, call id): the SFU's calls at start.
    pub fn group_calls(&self) -> Vec<(AppId, String)> {
        (0..self.apps.len())
            .flat_map(|a| {
                self.apps[a]
                    .lock()
                    .group_calls()
                    .into_iter()
                    .map(move |c| (a, c))
            })
            .collect()
    }

    /// Each app's call rooms, encoded.
    pub fn rooms_snapshots(&self) -> Vec<(Arc<str>, Vec<u8>)> {
        use prost::Message as _;
        self.apps
            .iter()
            .map(|a| (a.key.clone(), a.lock().rooms_snapshot().encode_to_vec()))
            .collect()
    }

    /// Restores `app`'s rooms saved by the last run and replays the departures logged after
    /// that save (`delivery::Shell::log_departure`); the result is written back at once, the
    /// log emptied. Members that do not reconnect within the lost-connection grace are hung
    /// up for.
    pub fn restore_rooms(&self, app: AppId, saved: crate::store::SavedRooms) {
        use prost::Message as _;
        let snap = match delivery::rooms::RoomsSnapshot::decode(&saved.snapshot[..]) {
            Ok(snap) => snap,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable call rooms from the last run");
                return;
            }
        };
        let now = clock::now();
        let shard = &self.apps[app];
        let mut core = shard.lock();
        core.restore_rooms(snap, now);
        for (t_ms, data) in &saved.departures {
            match delivery::rooms::RoomsEvent::decode(&data[..]) {
                Ok(ev) => {
                    core.apply_rooms_event(&ev, *t_ms, now);
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an unreadable call departure"),
            }
        }
        let version = core.rooms_changes();
        let data = core.rooms_snapshot().encode_to_vec();
        drop(core);
        self.store.reset_rooms(shard.key.clone(), version, data);
    }

    /// Prunes message windows, forgets idle users and expired blocks; returns the highest seq
    /// issued so far (to persist as the floor).
    pub fn sweep(&self) -> u64 {
        let now = clock::now();
        self.apps
            .iter()
            .map(|a| a.lock().sweep(now))
            .max()
            .unwrap_or(0)
    }

    /// Graceful shutdown: refuses new connections, takes every connection out of routing (so
    /// messages for its user are stored from now on) and tells it to flush and close.
    pub fn close_all(&self) {
        for app in 0..self.apps.len() {
            self.with(app, |core, sh| core.close_all(sh, clock::now()));
        }
    }

    /// Shutdown timeout: every connection drops what is queued and closes now.
    pub fn abort_all(&self) {
        for app in 0..self.apps.len() {
            self.with(app, |core, sh| core.abort_all(sh));
        }
    }
}

/// The call id of a GROUP call message (SFU mode moves only group calls' media).
fn group_call_id(msg: &SendRef<'_>) -> Option<String> {
    if msg.conversation_type != rtc_core::proto::conversation_type::GROUP {
        return None;
    }
    let call = delivery::rooms::parse(msg.message_type, msg.content).ok()??;
    Some(call.call_id)
}
