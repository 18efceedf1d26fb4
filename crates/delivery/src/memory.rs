//! A store kept in memory with the same semantics as the server's SQLite store (stored
//! messages with TTL and per-user cap, rows waiting for given devices' acks, device cursors,
//! accepted `client_seq`s), for the simulator and the core's own tests. Writes commit at once.
//!
//! It outlives an [`crate::AppCore`]: the simulator restarts "the server" by building a new core
//! over the same `MemoryStore`, as the real server restarts over its database file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rtc_core::proto::ErrorFrame;

use crate::frame::Outgoing;
use crate::shell::{PushError, Shell, StoreOffline, StoredMessage, SyncData};

struct Row {
    exclude_device: Option<Arc<str>>,
    expires_at: i64,
    payload: bytes::Bytes,
}

#[derive(Default)]
pub struct MemoryStore {
    ticket: u64,
    /// (user, seq) → stored message.
    offline: BTreeMap<(Arc<str>, u64), Row>,
    /// (user, seq, device): the row waits for that device's ack.
    pending: BTreeSet<(Arc<str>, u64, Arc<str>)>,
    /// (user, device) → acked cursor.
    cursors: BTreeMap<(Arc<str>, Arc<str>), u64>,
    /// (user, device, instance) → highest accepted `client_seq`.
    client_seqs: BTreeMap<(Arc<str>, Arc<str>, u64), u64>,
    /// The call departures logged ([`Shell::log_departure`]) as (wall time, event), for a test
    /// to replay over saved rooms as the server does at start; nothing trims it.
    departures: Vec<(i64, crate::rooms::RoomsEvent)>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_ticket(&mut self) -> u64 {
        self.ticket += 1;
        self.ticket
    }

    /// Every write so far is durable.
    pub fn committed(&self) -> u64 {
        self.ticket
    }

    pub fn offline_bytes(&self) -> u64 {
        self.offline.values().map(|r| r.payload.len() as u64).sum()
    }

    /// The call departures logged so far, oldest first.
    pub fn rooms_departures(&self) -> &[(i64, crate::rooms::RoomsEvent)] {
        &self.departures
    }

    fn log_departure(&mut self, t_ms: i64, event: crate::rooms::RoomsEvent) -> u64 {
        self.departures.push((t_ms, event));
        self.next_ticket()
    }

    /// Messages stored now (all users).
    pub fn offline_len(&self) -> usize {
        self.offline.len()
    }

    fn insert(&mut self, m: &StoreOffline, replace: bool) {
        let key = (m.user.clone(), m.seq);
        if !replace && self.offline.contains_key(&key) {
            return;
        }
        self.offline.insert(key, Row { exclude_device: m.exclude_device.clone(), expires_at: m.expires_at, payload: m.payload.clone() });
        // Trimmed to the newest `max_per_user`.
        let seqs: Vec<u64> = self.offline.range((m.user.clone(), 0)..=(m.user.clone(), u64::MAX)).map(|((_, s), _)| *s).collect();
        if seqs.len() > m.max_per_user {
            for s in &seqs[..seqs.len() - m.max_per_user] {
                self.offline.remove(&(m.user.clone(), *s));
            }
        }
    }

    pub fn store_offline(&mut self, m: StoreOffline) -> u64 {
        self.insert(&m, true);
        // It waits for every device the user has but the sender's.
        let devices: Vec<Arc<str>> =
            self.cursors.keys().filter(|(u, d)| *u == m.user && Some(d) != m.exclude_device.as_ref()).map(|(_, d)| d.clone()).collect();
        for d in devices {
            self.pending.insert((m.user.clone(), m.seq, d));
        }
        if let Some(s) = &m.sender {
            let v = self.client_seqs.entry((s.user.clone(), s.device.clone(), s.instance)).or_default();
            *v = (*v).max(s.client_seq);
        }
        self.next_ticket()
    }

    pub fn keep_for_device(&mut self, device: Arc<str>, m: StoreOffline) {
        self.insert(&m, false);
        self.pending.insert((m.user.clone(), m.seq, device));
        self.next_ticket();
    }

    pub fn keep_stored_for_device(&mut self, user: Arc<str>, device: Arc<str>, acked: u64) {
        let rows: Vec<u64> = self
            .offline
            .range((user.clone(), acked.saturating_add(1))..=(user.clone(), u64::MAX))
            .filter(|(_, r)| r.exclude_device.as_deref() != Some(&*device))
            .map(|((_, s), _)| *s)
            .collect();
        for s in rows {
            self.pending.insert((user.clone(), s, device.clone()));
        }
        self.next_ticket();
    }

    pub fn delete_offline_upto(&mut self, user: Arc<str>, device: Arc<str>, upto: u64) {
        self.pending.retain(|(u, s, d)| !(*u == user && *d == device && *s <= upto));
        let pending = &self.pending;
        let waiting = |s: u64| pending.iter().any(|(u, ps, _)| *u == user && *ps == s);
        let gone: Vec<u64> = self
            .offline
            .range((user.clone(), 0)..=(user.clone(), upto))
            .filter(|((_, s), r)| r.exclude_device.as_deref() != Some(&*device) && !waiting(*s))
            .map(|((_, s), _)| *s)
            .collect();
        for s in gone {
            self.offline.remove(&(user.clone(), s));
        }
        self.next_ticket();
    }

    pub fn save_cursor(&mut self, user: Arc<str>, device: Arc<str>, acked: u64) {
        let c = self.cursors.entry((user, device)).or_default();
        *c = (*c).max(acked);
        self.next_ticket();
    }

    pub fn save_client_seqs(&mut self, user: Arc<str>, device: Arc<str>, seqs: Vec<(u64, u64)>) {
        for (instance, upto) in seqs {
            let v = self.client_seqs.entry((user.clone(), device.clone(), instance)).or_default();
            *v = (*v).max(upto);
        }
        self.next_ticket();
    }

    /// What a connecting device needs (as the SQLite store's `sync_data`).
    pub fn sync_data(&self, user: &str, device: &str, cursor: u64, now_ms: i64) -> SyncData {
        let mut out = SyncData::default();
        for ((u, d), acked) in &self.cursors {
            if &**u == user {
                if &**d == device {
                    out.acked = *acked;
                }
                out.devices.push(d.to_string());
            }
        }
        let from = cursor.max(out.acked);
        let user: Arc<str> = Arc::from(user);
        for ((_, seq), r) in self.offline.range((user.clone(), from.saturating_add(1))..=(user.clone(), u64::MAX)) {
            if r.expires_at > now_ms {
                out.messages.push(StoredMessage {
                    seq: *seq,
                    exclude_device: r.exclude_device.as_deref().unwrap_or("").to_owned(),
                    payload: r.payload.to_vec(),
                });
            }
        }
        out
    }

    /// The persisted highest accepted `client_seq` of an instance, and the ticket it needs.
    pub fn accepted_upto(&self, user: &str, device: &str, instance: u64) -> (u64, u64) {
        let v = self.client_seqs.get(&(Arc::from(user), Arc::from(device), instance)).copied().unwrap_or(0);
        (v, self.ticket)
    }
}

/// What the core did to a connection, as a [`MemoryShell`] collects it.
#[derive(Debug)]
pub enum Effect {
    Frame(Outgoing),
    /// Aborted, closed or killed by the core.
    Closed,
}

/// A [`Shell`] over a [`MemoryStore`] that collects the core's effects on connections in order,
/// for whoever drives the core to deliver (the simulator) or inspect (tests).
pub struct MemoryShell<'a, C> {
    pub store: &'a mut MemoryStore,
    pub effects: &'a mut Vec<(C, Effect)>,
}

impl<C: Clone> Shell for MemoryShell<'_, C> {
    type Conn = C;
    fn push(&mut self, conn: &C, item: Outgoing, _bounded: bool) -> Result<(), PushError> {
        self.effects.push((conn.clone(), Effect::Frame(item)));
        Ok(())
    }
    fn abort(&mut self, conn: &C, _err: ErrorFrame) {
        self.effects.push((conn.clone(), Effect::Closed));
    }
    fn close(&mut self, conn: &C) {
        self.effects.push((conn.clone(), Effect::Closed));
    }
    fn kill(&mut self, conn: &C) {
        self.effects.push((conn.clone(), Effect::Closed));
    }
    fn committed(&self) -> u64 {
        self.store.committed()
    }
    fn pending(&self) -> u64 {
        0
    }
    fn offline_bytes(&self) -> u64 {
        self.store.offline_bytes()
    }
    fn store_offline(&mut self, m: StoreOffline) -> u64 {
        self.store.store_offline(m)
    }
    fn keep_for_device(&mut self, device: Arc<str>, m: StoreOffline) {
        self.store.keep_for_device(device, m)
    }
    fn keep_stored_for_device(&mut self, user: Arc<str>, device: Arc<str>, acked: u64) {
        self.store.keep_stored_for_device(user, device, acked)
    }
    fn delete_offline_upto(&mut self, user: Arc<str>, device: Arc<str>, upto: u64) {
        self.store.delete_offline_upto(user, device, upto)
    }
    fn save_cursor(&mut self, user: Arc<str>, device: Arc<str>, acked: u64, _now_ms: i64) {
        self.store.save_cursor(user, device, acked)
    }
    fn save_client_seqs(&mut self, user: Arc<str>, device: Arc<str>, seqs: Vec<(u64, u64)>, _now_ms: i64) {
        self.store.save_client_seqs(user, device, seqs)
    }
    fn log_departure(&mut self, _version: u64, t_ms: i64, event: crate::rooms::RoomsEvent) -> u64 {
        self.store.log_departure(t_ms, event)
    }
}
