//! [`AppCore`]: one app's delivery state and every input it takes, except routing a message
//! ([`crate::routing`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{error_code, AuthResult, ErrorFrame, JoinedDevice, Kicked, SendResult, SyncDone};

use crate::codes::AuthRefusal;
use crate::frame::{deliver_body_from_payload, delivered_payload, encode_body, Outgoing};
use crate::mailbox::{ConnSlot, DeviceCursor, UserState, MAX_DEVICES_IN_MEMORY};
use crate::policy::Policy;
use crate::rooms::Rooms;
use crate::shell::{Count, PolicyRows, Shell, StoreOffline, SyncData};
use crate::uid::UidGen;
use crate::{ConnId, Departure, MonotonicMs, Now, Origin};

/// Delivery limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub offline_ttl_ms: i64,
    pub offline_max_per_user: usize,
    pub window_ttl: Duration,
    pub window_max: usize,
    pub max_connections_per_app: usize,
    /// Graces of a call member whose connections closed cleanly / were lost (see [`crate::rooms`]).
    pub left_grace: Duration,
    pub lost_grace: Duration,
    /// Authenticated connections per user (all devices) and per device.
    pub max_connections_per_user: usize,
    pub max_connections_per_device: usize,
    /// Per-user send rate (messages/s) and burst, shared by the user's connections.
    pub user_rate_per_sec: u32,
    pub user_rate_burst: u32,
    /// Messages one sender may get stored for other users per window.
    pub offline_quota_per_sender: u32,
    pub offline_quota_window: Duration,
    /// Payload bytes of all stored messages.
    pub offline_max_bytes: u64,
    /// Store writes waiting at most.
    pub store_queue_max: usize,
}

/// A registered (still syncing) connection.
#[derive(Debug, Clone)]
pub struct Registered {
    pub conn_id: ConnId,
    pub user_id: Arc<str>,
    pub device_id: Arc<str>,
    /// Replay everything above this.
    pub cursor: u64,
    /// The client's `resume_from` as it sent it: `cursor` is capped at this node's clock, which
    /// in cluster mode is not the clock that issued the seqs (the replay from the shared
    /// mailbox caps it at what Redis issued instead).
    pub resume_from: u64,
    /// The server had never seen this device (in memory); a new device gets only stored
    /// messages, not what the user's other devices received live before it existed.
    pub new_device: bool,
}

/// A message another node sequenced, for [`AppCore::deliver_sequenced`].
#[derive(Debug, Clone)]
pub struct Sequenced<'a> {
    pub user_id: &'a str,
    pub seq: u64,
    /// The complete encoded `Delivered`, `seq` included.
    pub payload: &'a [u8],
    /// The sending connection, when it is on this node (it does not get its own message).
    pub skip: Option<ConnId>,
    /// The sending device (a copy in its user's own log is not for it).
    pub exclude_device: Option<Arc<str>>,
}

/// The hasher of the maps keyed by user id, looked up several times per routed message:
/// foldhash is several times cheaper than SipHash on short keys, and its per-process random
/// seed keeps crafted user ids from colliding on purpose.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// Every user with state in memory.
pub(crate) type Users<C> = HashMap<Arc<str>, UserState<C>, FastHash>;

/// One app's delivery core. `C` is the shell's connection handle ([`Shell::Conn`]).
pub struct AppCore<C> {
    pub(crate) users: Users<C>,
    pub(crate) policy: Policy,
    pub(crate) clock: MonotonicMs,
    pub(crate) uids: UidGen,
    /// Highest seq issued (the shell persists it as the next start's floor).
    pub(crate) max_issued: u64,
    /// No seq below this (the previous run's highest, plus one).
    pub(crate) floor: u64,
    /// Which call each device is in (`getJoinedUserInfo`).
    pub(crate) rooms: Rooms,
    /// Per sender: (window start, messages stored for other users in it).
    pub(crate) offline_quota: HashMap<Arc<str>, (Duration, u32), FastHash>,
    pub(crate) limits: Limits,
    conns: usize,
    /// Shutting down: no new connections, and calls are not ended for devices that go.
    closing: bool,
    /// Cluster mode: `rooms` is a replica that only [`Self::apply_rooms_event`] changes (see
    /// [`Self::replicate_rooms`]).
    pub(crate) replicated_rooms: bool,
}

impl<C: Clone> AppCore<C> {
    /// A core with no users. `seq_floor` is the highest seq a previous run issued; `uid_salt`
    /// random bits that tell this process's message UIDs apart from another's.
    pub fn new(limits: Limits, seq_floor: u64, now: Now, uid_salt: u32) -> Self {
        Self {
            users: Users::default(),
            policy: Policy::default(),
            clock: MonotonicMs::default(),
            uids: UidGen::new(now.wall_ms(), uid_salt),
            max_issued: 0,
            floor: seq_floor.saturating_add(1),
            rooms: Rooms::new(limits.left_grace, limits.lost_grace),
            offline_quota: HashMap::default(),
            limits,
            conns: 0,
            closing: false,
            replicated_rooms: false,
        }
    }

    /// Loads the persisted policy (at startup).
    pub fn load_policy(&mut self, rows: PolicyRows) {
        self.policy = Policy::from_rows(rows);
    }

    /// Authenticated connections now.
    pub fn connections(&self) -> usize {
        self.conns
    }

    // ---- connections -------------------------------------------------------------------

    /// Adds an authenticated connection in the *syncing* state and queues `auth_ok` as its
    /// first frame, or refuses it. `token_iat` is when its token was issued. `stored` is the
    /// persisted `(accepted client_seq, read ticket)` of `(device, instance)`: `auth_ok` gets
    /// the larger of it and what memory knows as `accepted_upto`, held until durable.
    #[allow(clippy::too_many_arguments)]
    pub fn register<S: Shell<Conn = C>>(
        &mut self,
        sh: &mut S,
        now: Now,
        conn_id: ConnId,
        conn: C,
        user_id: &str,
        device_id: &str,
        token_iat: i64,
        resume_from: u64,
        mut auth_ok: AuthResult,
        instance: u64,
        stored: (u64, u64),
    ) -> Result<Registered, AuthRefusal> {
        if self.closing {
            return Err(AuthRefusal::ShuttingDown);
        }
        if self.policy.blocked(user_id, now.wall_ms()) {
            return Err(AuthRefusal::Blocked);
        }
        if self.policy.token_expired(user_id, token_iat) {
            return Err(AuthRefusal::TokenExpired);
        }
        // A page (SDK instance) talks over one connection at a time: its earlier ones are dead
        // sockets nobody noticed yet (a silent network loss). They go now, so they neither get
        // frames nor count against the caps nor keep the device present: a clean close of the
        // new one is final.
        if let (true, Some(st)) = (instance != 0, self.users.get_mut(user_id)) {
            let before = st.conns.len();
            st.conns.retain(|c| {
                let stale = &*c.device == device_id && c.instance == instance;
                if stale {
                    sh.kill(&c.conn);
                }
                !stale
            });
            self.conns -= before - st.conns.len();
        }
        if let Some(st) = self.users.get(user_id) {
            if st.conns.len() >= self.limits.max_connections_per_user {
                return Err(AuthRefusal::TooManyUserConnections);
            }
            if st.conns.iter().filter(|c| &*c.device == device_id).count() >= self.limits.max_connections_per_device {
                return Err(AuthRefusal::TooManyDeviceConnections);
            }
        }
        if self.conns >= self.limits.max_connections_per_app {
            return Err(AuthRefusal::TooManyConnections);
        }
        self.conns += 1;
        if !self.users.contains_key(user_id) {
            let id: Arc<str> = Arc::from(user_id);
            self.users.insert(id.clone(), UserState::new(id));
        }
        if !self.replicated_rooms {
            self.rooms.connected(user_id, device_id);
        }
        let st = self.users.get_mut(user_id).expect("just inserted");
        // A client cannot claim to have seen more than the server ever issued.
        let ceiling = st.last_seq.max(self.floor).max(now.wall_us);
        let new_device = !st.devices.iter().any(|d| &*d.id == device_id);
        let last_seq = st.last_seq;
        let dev = st.device_mut(device_id);
        if new_device {
            dev.since = last_seq;
        }
        let cursor = resume_from.min(ceiling).max(dev.acked);
        let device = dev.id.clone();
        let mut ticket = 0;
        if instance != 0 {
            let (upto, t) = dev.instance(instance).map_or((0, 0), |r| (r.upto, r.ticket));
            // A record only when there is something to remember (idle connections stay small).
            if stored.0 > upto {
                let rec = dev.instance_mut(instance);
                rec.upto = stored.0;
                rec.ticket = rec.ticket.max(stored.1);
            }
            auth_ok.accepted_upto = upto.max(stored.0);
            ticket = t.max(stored.1);
        }
        let auth_ok = encode_body(&Body::AuthResult(auth_ok));
        let _ = sh.push(&conn, Outgoing::confirming(auth_ok, ticket, sh.committed()), false);
        if st.conns.capacity() == 0 {
            st.conns.reserve_exact(1);
        }
        st.conns.push(ConnSlot {
            id: conn_id,
            token_iat,
            device: device.clone(),
            instance,
            conn,
            live: false,
            synced: false,
            replayed_upto: 0,
        });
        sh.count(Count::ConnectionAccepted);
        Ok(Registered { conn_id, user_id: st.id.clone(), device_id: device, cursor, resume_from, new_device })
    }

    /// Queues the replay (stored ∪ retained messages above the cursor, in seq order) and
    /// `SyncDone`, and makes the connection live. Returns how many messages were replayed.
    ///
    /// With `page_end` (a page of a longer replay, whose stored messages end at that seq) only
    /// the messages up to `page_end` are queued, and the connection stays syncing: the caller
    /// writes them, then calls again for the next page with the cursor at `page_end`.
    pub fn finish_sync<S: Shell<Conn = C>>(
        &mut self,
        sh: &mut S,
        now: Now,
        reg: &Registered,
        data: SyncData,
        page_end: Option<u64>,
    ) -> usize {
        let Some(st) = self.users.get_mut(&*reg.user_id) else {
            return 0;
        };
        if !st.conns.iter().any(|c| c.id == reg.conn_id) {
            return 0;
        }
        for d in &data.devices {
            if st.devices.len() < MAX_DEVICES_IN_MEMORY && !st.devices.iter().any(|x| *x.id == **d) {
                st.devices.push(DeviceCursor::new(Arc::from(d.as_str())));
            }
        }
        let user = st.id.clone();
        let dev = st.device_mut(&reg.device_id);
        // For a new device: the user's last seq when it registered. What came after (while its
        // sync read the store) is its traffic, not history.
        let registered_at = dev.since;
        dev.acked = dev.acked.max(data.acked);
        let cursor = reg.cursor.max(dev.acked);
        // Remember the device (so the user's other devices store copies for it while it is
        // away) and keep its cursor fresh.
        sh.save_cursor(user, dev.id.clone(), dev.acked, now.wall_ms());
        let device: &str = &reg.device_id;

        let mut items: Vec<(u64, bytes::Bytes)> = Vec::new();
        let mut stored_upto = 0;
        for m in &data.messages {
            st.offline_upto = st.offline_upto.max(m.seq);
            if m.seq > cursor && m.exclude_device != device {
                stored_upto = m.seq;
                items.push((m.seq, deliver_body_from_payload(&m.payload)));
            }
        }
        if let Some(d) = st.devices.iter_mut().find(|d| &*d.id == device) {
            d.stored_upto = d.stored_upto.max(stored_upto);
        }
        st.prune_window(&self.limits, now.mono);
        let new_device = reg.new_device && !data.devices.iter().any(|d| d == device);
        if !new_device {
            // Known in the store: it gets the window too.
            if let Some(d) = st.devices.iter_mut().find(|d| &*d.id == device) {
                d.since = 0;
            }
        }
        for e in &st.window {
            if e.seq > cursor && e.exclude_device.as_deref() != Some(device) && (e.offline || !new_device || e.seq > registered_at) {
                items.push((e.seq, e.body.clone()));
            }
        }
        if let Some(end) = page_end {
            items.retain(|(seq, _)| *seq <= end);
        }
        items.sort_by_key(|(seq, _)| *seq);
        items.dedup_by_key(|(seq, _)| *seq);
        let n = items.len();
        let slot = st.conns.iter_mut().find(|c| c.id == reg.conn_id).expect("checked above");
        for (_, body) in items {
            let _ = sh.push(&slot.conn, Outgoing::frame(body), false);
        }
        sh.count(Count::Replayed(n as u64));
        if page_end.is_some() {
            return n;
        }
        let _ = sh.push(&slot.conn, Outgoing::frame(encode_body(&Body::SyncDone(SyncDone {}))), false);
        slot.live = true;
        slot.synced = true;
        n
    }

    /// Removes a closed connection and persists its device's cursor. `departure` says how the
    /// connection ended, which decides how soon a device that is gone leaves its call.
    pub fn unregister<S: Shell<Conn = C>>(&mut self, sh: &mut S, now: Now, user_id: &str, conn_id: ConnId, departure: Departure) {
        let Some(st) = self.users.get_mut(user_id) else {
            return;
        };
        let Some(i) = st.conns.iter().position(|c| c.id == conn_id) else {
            return;
        };
        let slot = st.conns.swap_remove(i);
        self.conns -= 1;
        let device_gone = !st.conns.iter().any(|c| c.device == slot.device);
        if device_gone {
            if let Some(d) = st.devices.iter().find(|d| d.id == slot.device) {
                sh.save_cursor(st.id.clone(), d.id.clone(), d.acked, now.wall_ms());
            }
            keep_for_departed_device(sh, &self.limits, now, st, &slot.device);
        }
        st.prune_window(&self.limits, now.mono);
        if st.conns.is_empty() {
            st.release_empty_window();
        }
        // Everything else is in the store and reloaded on the next connect.
        if st.idle(now.wall_us) {
            self.users.remove(user_id);
        }
        // A shutdown does not end calls: they go on and are learned again after the restart.
        if device_gone && !self.closing && !self.replicated_rooms {
            let user: Arc<str> = Arc::from(user_id);
            self.rooms.disconnected(&user, &slot.device, departure, now.mono);
        }
    }

    /// The highest `client_seq` accepted from `origin`'s instance, and the store ticket it
    /// needs committed (for `Pong.accepted_upto`).
    pub fn accepted_upto(&self, origin: &Origin) -> (u64, u64) {
        if origin.instance == 0 {
            return (0, 0);
        }
        self.users
            .get(&*origin.user_id)
            .and_then(|st| st.devices.iter().find(|d| d.id == origin.device_id))
            .and_then(|d| d.instance(origin.instance))
            .map_or((0, 0), |i| (i.upto, i.ticket))
    }

    /// Cluster mode: the route script accepted `client_seq` from `origin`'s instance (or found
    /// it a duplicate). Recorded like a local route's, so `Pong.accepted_upto` confirms it and a
    /// resend is answered here without another trip to Redis. Durable already (in Redis): no
    /// store ticket.
    pub fn note_accepted(&mut self, origin: &Origin, client_seq: u64) {
        if origin.instance == 0 || client_seq == 0 {
            return;
        }
        if let Some(d) = self.users.get_mut(&*origin.user_id).and_then(|st| st.devices.iter_mut().find(|d| d.id == origin.device_id)) {
            let rec = d.instance_mut(origin.instance);
            rec.upto = rec.upto.max(client_seq);
        }
    }

    /// Records that a device processed everything up to `seq`, drops stored messages it covers
    /// that no other device still needs (see the crate docs), and what no device needs any more
    /// leaves memory.
    pub fn ack<S: Shell<Conn = C>>(&mut self, sh: &mut S, now: Now, origin: &Origin, seq: u64) {
        let Some(st) = self.users.get_mut(&*origin.user_id) else {
            return;
        };
        // Nobody can have seen more than the server issued. `last_seq` alone is 0 once the
        // user's state was dropped (window expired) and reloaded: clamped to it, the acks of
        // the stored messages replayed then were ignored, so they were replayed again and
        // never deleted. Same ceiling as `register`.
        let seq = seq.min(st.last_seq.max(self.floor).max(now.wall_us));
        if let Some(d) = st.devices.iter_mut().find(|d| d.id == origin.device_id) {
            d.acked = d.acked.max(seq);
        }
        // Another connected device that has not acked them yet may be on a dead connection:
        // they stay until it acks them or leaves (then they wait for it: `keep_stored_for_device`).
        let others_acked = st
            .conns
            .iter()
            .filter(|c| c.device != origin.device_id)
            .filter_map(|c| st.devices.iter().find(|d| d.id == c.device))
            .map(|d| d.acked.max(d.since))
            .min()
            .unwrap_or(u64::MAX);
        // Each device's acks delete what waits for it; a row goes once no device it was
        // stored for waits any more (the store keeps the marks).
        if let Some(d) = st.devices.iter_mut().find(|d| d.id == origin.device_id) {
            let upto = seq.min(d.stored_upto).min(others_acked);
            if d.stored_upto > d.deleted_upto && upto > d.deleted_upto {
                sh.delete_offline_upto(st.id.clone(), origin.device_id.clone(), upto);
                d.deleted_upto = upto;
                if upto >= d.stored_upto {
                    d.stored_upto = 0;
                    d.deleted_upto = 0;
                }
            }
        }
        st.prune_window(&self.limits, now.mono);
    }

    /// A message another node sequenced (cluster mode, docs/cluster.md): `payload` is the
    /// complete encoded `Delivered` with its `seq`, as the shared mailbox holds it. It goes to
    /// this node's live connections of `user_id` (but `skip`, the sending connection), and into
    /// the user's window so a connection syncing now gets it after its replay — the same seam as
    /// a message sequenced here. Nothing is stored: the mailbox is the store. Users with no
    /// connection here are not this node's business.
    pub fn deliver_sequenced<S: Shell<Conn = C>>(&mut self, sh: &mut S, now: Now, m: Sequenced<'_>) -> usize {
        let Sequenced { user_id, seq, payload, skip, exclude_device } = m;
        let Some(st) = self.users.get_mut(user_id) else {
            return 0;
        };
        if st.conns.is_empty() || seq <= st.last_seq {
            return 0; // (a repeat after a resync: already here)
        }
        st.last_seq = st.last_seq.max(seq);
        self.max_issued = self.max_issued.max(seq);
        let body = deliver_body_from_payload(payload);
        let n = st.push_live(sh, seq, &body, now.mono, skip);
        st.window.push_back(crate::mailbox::Entry { seq, offline: false, stored: true, exclude_device, accepted: now.mono, body });
        st.prune_window(&self.limits, now.mono);
        n
    }

    /// Cluster mode: connection `conn_id` of `user_id` has the seqs up to `seq` already
    /// (replayed from the shared mailbox, or acked by its device), so [`Self::deliver_sequenced`]
    /// does not give it a live copy of them that reaches this node after the replay. Only that
    /// connection: the user's other connections here may still be waiting for those copies
    /// (the replay read the mailbox ahead of the node's channel).
    pub fn note_sequenced(&mut self, user_id: &str, conn_id: ConnId, seq: u64) {
        if let Some(slot) = self.users.get_mut(user_id).and_then(|st| st.conns.iter_mut().find(|c| c.id == conn_id)) {
            slot.replayed_upto = slot.replayed_upto.max(seq);
        }
    }

    /// The highest seq of `user_id` this core has seen, while it has connections here (cluster
    /// mode: where a resync re-reads the mailbox from).
    pub fn last_seq(&self, user_id: &str) -> Option<u64> {
        self.users.get(user_id).filter(|st| !st.conns.is_empty()).map(|st| st.last_seq)
    }

    /// The device of connection `conn_id` of `user_id`, if it is here.
    pub fn conn_device(&self, user_id: &str, conn_id: ConnId) -> Option<Arc<str>> {
        self.users.get(user_id)?.conns.iter().find(|c| c.id == conn_id).map(|c| c.device.clone())
    }

    /// A connection of `device` of `user_id`, if one is here.
    pub fn device_conn(&self, user_id: &str, device: &str) -> Option<ConnId> {
        self.users.get(user_id)?.conns.iter().find(|c| &*c.device == device).map(|c| c.id)
    }

    /// Cluster mode: queues the `SendResult` of a message the shared route script accepted to
    /// the sending connection (its reply marker came back on the user's channel, behind every
    /// copy of the message for the user's devices). False when the connection is gone.
    pub fn reply_to_conn<S: Shell<Conn = C>>(&self, sh: &mut S, user_id: &str, conn_id: ConnId, result: SendResult) -> bool {
        let Some(slot) = self.users.get(user_id).and_then(|st| st.conns.iter().find(|c| c.id == conn_id)) else {
            return false;
        };
        // From the node's channel task, not the connection's: `push` wakes its writer.
        match sh.push(&slot.conn, Outgoing::frame(encode_body(&Body::SendResult(result))), true) {
            Ok(()) | Err(crate::shell::PushError::Closed) => {}
            Err(crate::shell::PushError::Full) => {
                sh.count(Count::Error(error_code::SLOW_CONSUMER));
                sh.abort(
                    &slot.conn,
                    ErrorFrame { code: error_code::SLOW_CONSUMER, message: "too many unread frames; reconnect and resume".into() },
                );
            }
        }
        true
    }

    /// Connections of `user_id` now.
    pub fn connection_count(&self, user_id: &str) -> usize {
        self.users.get(user_id).map_or(0, |u| u.conns.len())
    }

    /// Messages held in memory for resumes, over all users (tests and metrics).
    pub fn window_len(&self) -> usize {
        self.users.values().map(|u| u.window.len()).sum()
    }

    /// Users held in memory (tests and metrics).
    pub fn users_in_memory(&self) -> usize {
        self.users.len()
    }

    // ---- calls ---------------------------------------------------------------------------

    /// The devices of `user_id` that are in a call, as `asker` may see them (see
    /// [`crate::rooms`]).
    pub fn joined_user_info(&self, asker: &str, user_id: &str) -> Vec<JoinedDevice> {
        self.rooms.of(asker, user_id)
    }

    /// (calls, member devices, ringing users) the rooms hold (tests).
    pub fn rooms_size(&self) -> (usize, usize, usize) {
        self.rooms.size()
    }

    /// Whether [`Self::end_gone_participants`] has anything to check.
    pub fn has_graces(&self) -> bool {
        self.rooms.has_graces()
    }

    /// See [`crate::rooms::Rooms::changes`]: when it moved, [`Self::rooms_snapshot`] is to be
    /// saved again.
    pub fn rooms_changes(&self) -> u64 {
        self.rooms.changes()
    }

    /// The rooms to keep over a restart (see [`crate::rooms::RoomsSnapshot`]).
    pub fn rooms_snapshot(&self) -> crate::rooms::RoomsSnapshot {
        self.rooms.snapshot()
    }

    /// Loads the rooms kept over a restart (at startup, before any connection).
    pub fn restore_rooms(&mut self, snap: crate::rooms::RoomsSnapshot, now: Now) {
        self.rooms.restore(snap, now.mono);
    }

    /// When [`Self::end_gone_participants`] next has something to do (the shell's timer).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.rooms.next_deadline()
    }

    /// The calls with a GROUP member (the SFU's calls at start).
    pub fn group_calls(&self) -> Vec<String> {
        self.rooms.group_calls()
    }

    /// The member devices of `call_id` as (user, device) (tests, the simulator).
    pub fn call_members(&self, call_id: &str) -> Vec<(Arc<str>, Arc<str>)> {
        self.rooms.members(call_id)
    }

    /// Ends the calls of devices whose grace is over: logs each departure (as a routed
    /// hangup's, [`Shell::log_departure`]) and sends each one's `RC:VCHangup` (the shell's
    /// timer). Returns who was hung up for: (user, device, call id, reason).
    pub fn end_gone_participants<S: Shell<Conn = C>>(&mut self, sh: &mut S, now: Now) -> Vec<(Arc<str>, Arc<str>, String, i32)> {
        let mut out = Vec::new();
        if !self.rooms.has_graces() || self.replicated_rooms {
            return out;
        }
        let ends = self.rooms.due(now.mono);
        let version = self.rooms.changes();
        for end in ends {
            sh.log_departure(version, now.wall_ms(), end.event());
            let Some(ended) = end.hang_up else { continue };
            tracing::info!(
                user_id = &*ended.user,
                device_id = &*ended.device,
                reason = ended.reason,
                "participant gone; hanging up for it"
            );
            out.push((ended.user.clone(), ended.device.clone(), ended.call_id.clone(), ended.reason));
            self.hang_up_for(sh, now, ended);
        }
        out
    }

    // ---- cluster mode: the rooms are a replica (docs/cluster.md "Rooms") ----------------

    /// From now on the rooms change only through [`Self::apply_rooms_event`]: connections and
    /// admitted messages no longer touch them (their events, published by the shared scripts,
    /// do, on every node in the same order), `admit` only checks against them, and
    /// [`Self::end_gone_participants`] leaves the graces to [`Self::rooms_graces_due`].
    pub fn replicate_rooms(&mut self) {
        self.replicated_rooms = true;
    }

    /// Whether the rooms are a replica.
    pub fn rooms_replicated(&self) -> bool {
        self.replicated_rooms
    }

    /// Applies one event of the app's rooms log (see [`crate::rooms::Rooms::apply`]); returns
    /// the hangup to send when it ended a grace.
    pub fn apply_rooms_event(&mut self, ev: &crate::rooms::RoomsEvent, t_ms: i64, now: Now) -> Option<crate::rooms::Ended> {
        self.rooms.apply(ev, t_ms, now.mono)
    }

    /// The graces node `me` runs that are over (see [`crate::rooms::Rooms::due_owned`]).
    pub fn rooms_graces_due(&mut self, now: Now, me: &str) -> Vec<(Arc<str>, Arc<str>, Departure)> {
        self.rooms.due_owned(now.mono, me)
    }

    /// When the next grace node `me` runs is over (the shell's timer for
    /// [`Self::rooms_graces_due`]).
    pub fn rooms_next_deadline_of(&self, me: &str) -> Option<Duration> {
        self.rooms.next_owned_deadline(me)
    }

    /// Replaces the replica with `snap` (after a gap in the rooms log).
    pub fn load_rooms_replica(&mut self, snap: crate::rooms::RoomsSnapshot, now: Now) {
        self.rooms.load_replica(snap, now.mono);
    }

    /// The pages node `node` holds, as the replica knows: (user, device, instance), sorted (a
    /// node reconciles them with its own after a gap).
    pub fn rooms_held_by(&self, node: &str) -> Vec<(Arc<str>, Arc<str>, u64)> {
        self.rooms.held_by(node)
    }

    /// Whether the rooms care where `device` of `user` is connected (see
    /// [`crate::rooms::Rooms::involves`]).
    pub fn rooms_involve(&self, user: &str, device: &str) -> bool {
        self.rooms.involves(user, device)
    }

    /// See [`crate::rooms::Rooms::page_held_elsewhere`].
    pub fn rooms_page_held_elsewhere(&self, user: &str, device: &str, instance: u64, me: &str) -> bool {
        self.rooms.page_held_elsewhere(user, device, instance, me)
    }

    /// The nodes holding a connection of `device` of `user`, as the replica knows (tests).
    pub fn rooms_holders(&self, user: &str, device: &str) -> Vec<Arc<str>> {
        self.rooms.holders(user, device)
    }

    // ---- operator actions ---------------------------------------------------------------

    /// Sends `Kicked { call_id }` to every connection of `user_id`; returns how many.
    pub fn kick<S: Shell<Conn = C>>(&mut self, sh: &mut S, user_id: &str, call_id: &str) -> usize {
        let body = encode_body(&Body::Kicked(Kicked { call_id: call_id.to_owned() }));
        let Some(st) = self.users.get(user_id) else {
            return 0;
        };
        st.conns.iter().filter(|c| sh.push(&c.conn, Outgoing::frame(body.clone()), false).is_ok()).count()
    }

    /// Blocks `users` until `until_ms` and disconnects their connections with 31009.
    pub fn block<S: Shell<Conn = C>>(&mut self, sh: &mut S, users: &[String], until_ms: i64) {
        for u in users {
            self.policy.blocks.insert(u.clone(), until_ms);
            if let Some(st) = self.users.get_mut(u.as_str()) {
                for c in &mut st.conns {
                    c.live = false;
                    sh.abort(&c.conn, ErrorFrame { code: error_code::USER_BLOCKED, message: "the user has been blocked".into() });
                }
            }
        }
    }

    pub fn unblock(&mut self, users: &[String]) {
        for u in users {
            self.policy.blocks.remove(u);
        }
    }

    /// Tokens of `users` issued before `before_ms` stop working: new connections with them
    /// are refused (31020) and live connections that authenticated with one are closed after
    /// an `ErrorFrame` 31020.
    pub fn expire_tokens<S: Shell<Conn = C>>(&mut self, sh: &mut S, users: &[String], before_ms: i64) {
        for u in users {
            self.policy.token_expiry.insert(u.clone(), before_ms);
            if let Some(st) = self.users.get_mut(u.as_str()) {
                for c in st.conns.iter_mut().filter(|c| c.token_iat < before_ms) {
                    c.live = false;
                    sh.abort(
                        &c.conn,
                        ErrorFrame { code: error_code::TOKEN_EXPIRED, message: "the token of this connection was expired".into() },
                    );
                }
            }
        }
    }

    /// The enforcement policy (blacklists, groups, blocks), to read or change (changes that
    /// disconnect someone go through [`Self::block`] and [`Self::expire_tokens`]).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    // ---- housekeeping --------------------------------------------------------------------

    /// Prunes message windows, forgets idle users and expired blocks; returns the highest seq
    /// issued so far (for the shell to persist as the floor).
    pub fn sweep(&mut self, now: Now) -> u64 {
        let limits = &self.limits;
        self.users.retain(|_, st| {
            st.prune_window(limits, now.mono);
            st.release_empty_window();
            !st.idle(now.wall_us)
        });
        let now_ms = now.wall_ms();
        self.policy.blocks.retain(|_, until| *until > now_ms);
        let window = self.limits.offline_quota_window;
        self.offline_quota.retain(|_, (start, _)| now.mono.saturating_sub(*start) < window);
        self.max_issued.max(self.floor.saturating_sub(1))
    }

    /// Graceful shutdown: refuses new connections, takes every connection out of routing (so
    /// messages for its user are stored from now on) and tells it to flush and close. What the
    /// window holds for a known device that is away (routed while another device of its user
    /// was live) is stored for it now: the window does not survive the process. (Connected
    /// devices' unacked messages are stored as their connections unregister.)
    pub fn close_all<S: Shell<Conn = C>>(&mut self, sh: &mut S, now: Now) {
        self.closing = true;
        for st in self.users.values_mut() {
            for c in &mut st.conns {
                c.live = false;
                sh.close(&c.conn);
            }
            let away: Vec<Arc<str>> =
                st.devices.iter().filter(|d| !st.conns.iter().any(|c| c.device == d.id)).map(|d| d.id.clone()).collect();
            for device in away {
                keep_for_departed_device(sh, &self.limits, now, st, &device);
            }
        }
    }

    /// Shutdown timeout: every connection drops what is queued and closes now.
    pub fn abort_all<S: Shell<Conn = C>>(&mut self, sh: &mut S) {
        for st in self.users.values() {
            for c in &st.conns {
                sh.kill(&c.conn);
            }
        }
    }
}

/// A device's last connection went: persists its instances' accepted `client_seq`s, and
/// stores every message in the window it has not acked (and that is not stored yet), so it
/// gets them when it resumes after the window's TTL. Each such row waits for the ack of every
/// device it was kept for (or its TTL): an ack from another device of the user does not
/// delete it.
fn keep_for_departed_device<C, S: Shell<Conn = C>>(sh: &mut S, limits: &Limits, now: Now, st: &mut UserState<C>, device: &Arc<str>) {
    let Some(d) = st.devices.iter().find(|d| d.id == *device) else {
        return;
    };
    let now_ms = now.wall_ms();
    if !d.instances.is_empty() {
        let seqs = d.instances.iter().map(|i| (i.instance, i.upto)).collect();
        sh.save_client_seqs(st.id.clone(), device.clone(), seqs, now_ms);
    }
    // Only what was routed to it (a new device never got the window from before it came).
    let acked = d.acked.max(d.since);
    let expires_at = now_ms.saturating_add(limits.offline_ttl_ms);
    for e in st.window.iter_mut() {
        if e.seq <= acked || e.offline || e.exclude_device.as_ref() == Some(device) {
            continue;
        }
        // Also when already kept for another device: the row must wait for this one too
        // (and is written again if that device's ack deleted it).
        let payload = delivered_payload(&e.body);
        let sent_time = <rtc_core::proto::Delivered as prost::Message>::decode(&payload[..]).map_or(now_ms, |m| m.sent_time);
        sh.keep_for_device(
            device.clone(),
            StoreOffline {
                user: st.id.clone(),
                seq: e.seq,
                exclude_device: e.exclude_device.clone(),
                sent_time,
                expires_at,
                payload,
                max_per_user: limits.offline_max_per_user,
                sender: None,
            },
        );
        if !e.stored {
            sh.count(Count::OfflineStored);
        }
        e.stored = true;
        st.offline_upto = st.offline_upto.max(e.seq);
    }
    // Rows stored before (for an offline user) that it was replayed and did not ack.
    sh.keep_stored_for_device(st.id.clone(), device.clone(), acked);
    let upto = st.offline_upto;
    if let Some(d) = st.devices.iter_mut().find(|d| d.id == *device) {
        d.stored_upto = d.stored_upto.max(upto);
    }
}
