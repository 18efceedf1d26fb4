//! One user's delivery state: its connections, its devices' ack cursors and accepted
//! `client_seq`s, and its *window* of recent messages (see the crate docs for the model).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use rtc_core::proto::{error_code, ErrorFrame};

use crate::app::Limits;
use crate::frame::Outgoing;
use crate::shell::{Count, PushError, Shell};
use crate::ConnId;

/// Devices remembered per user in memory (the rest live in the store).
pub const MAX_DEVICES_IN_MEMORY: usize = 32;
/// SDK instances (page loads) per device whose accepted `client_seq` is kept in memory: a
/// device rarely has more than a few tabs or reloads in flight; older ones are in the store if
/// they sent anything that was stored, or when their device disconnected.
pub const MAX_INSTANCES_PER_DEVICE: usize = 4;

pub(crate) struct ConnSlot<C> {
    pub id: ConnId,
    /// When the token it authenticated with was issued (`/user/token/expire.json`).
    pub token_iat: i64,
    pub device: Arc<str>,
    /// `Authenticate.instance` (0 = untracked).
    pub instance: u64,
    pub conn: C,
    /// Gets live traffic (false while syncing and once aborted).
    pub live: bool,
    /// Its replay has been queued.
    pub synced: bool,
    /// Cluster mode: its replay from the shared mailbox went up to this seq, so a live copy up
    /// to here that reaches the node later is not for it (for this connection only: another
    /// connection of the user may still be waiting for that copy).
    pub replayed_upto: u64,
}

pub(crate) struct DeviceCursor {
    pub id: Arc<str>,
    pub acked: u64,
    /// A device new to the server gets nothing routed before this seq (see `new_device`).
    pub since: u64,
    /// Highest accepted `client_seq` per SDK instance, most recently used last.
    pub instances: Vec<InstanceSeq>,
    /// Highest stored seq that may wait for this device's ack (0 = none): its acks delete
    /// stored rows up to here.
    pub stored_upto: u64,
    /// Up to where this device's acks already deleted.
    pub deleted_upto: u64,
}

/// What the server accepted from one SDK instance of a device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InstanceSeq {
    pub instance: u64,
    pub upto: u64,
    /// Store ticket covering the stored messages up to `upto`.
    pub ticket: u64,
}

impl DeviceCursor {
    pub fn new(id: Arc<str>) -> Self {
        Self { id, acked: 0, since: 0, instances: Vec::new(), stored_upto: 0, deleted_upto: 0 }
    }

    pub fn instance(&self, instance: u64) -> Option<&InstanceSeq> {
        self.instances.iter().find(|i| i.instance == instance)
    }

    /// The record of `instance` (created at 0), now the most recently used.
    pub fn instance_mut(&mut self, instance: u64) -> &mut InstanceSeq {
        let last = self.instances.len().wrapping_sub(1);
        let rec = match self.instances.iter().position(|i| i.instance == instance) {
            Some(i) if i == last => return &mut self.instances[i],
            Some(i) => self.instances.remove(i),
            None => {
                if self.instances.len() >= MAX_INSTANCES_PER_DEVICE {
                    self.instances.remove(0);
                }
                if self.instances.capacity() == 0 {
                    // Most devices run one instance at a time.
                    self.instances.reserve_exact(1);
                }
                InstanceSeq { instance, upto: 0, ticket: 0 }
            }
        };
        self.instances.push(rec);
        self.instances.last_mut().expect("just pushed")
    }

    /// Everything up to here was either acked by this device or never for it.
    fn done_upto(&self) -> u64 {
        self.acked.max(self.since)
    }
}

pub(crate) struct Entry {
    pub seq: u64,
    /// Also stored (no live device when accepted).
    pub offline: bool,
    /// Stored later, for a device that left without acking it.
    pub stored: bool,
    /// The sending device, for a copy in the sender's own log.
    pub exclude_device: Option<Arc<str>>,
    pub accepted: Duration,
    pub body: Bytes,
}

pub(crate) struct UserState<C> {
    pub id: Arc<str>,
    pub last_seq: u64,
    pub conns: Vec<ConnSlot<C>>,
    pub window: VecDeque<Entry>,
    pub devices: Vec<DeviceCursor>,
    /// Highest seq stored offline for this user (0 = none known).
    pub offline_upto: u64,
    /// The user's send bucket, shared by its connections: (tokens, last refill).
    pub send_tokens: f64,
    pub send_refill: Duration,
}

impl<C> UserState<C> {
    pub fn new(id: Arc<str>) -> Self {
        Self {
            id,
            last_seq: 0,
            conns: Vec::new(),
            window: VecDeque::new(),
            devices: Vec::new(),
            offline_upto: 0,
            send_tokens: f64::MAX,
            send_refill: Duration::ZERO,
        }
    }

    /// Takes one send from the user's bucket (`rate`/s, `burst`); false when it is empty.
    pub fn take_send(&mut self, rate: u32, burst: u32, now: Duration) -> bool {
        let dt = now.saturating_sub(self.send_refill).as_secs_f64();
        self.send_refill = self.send_refill.max(now);
        self.send_tokens = (self.send_tokens + dt * f64::from(rate)).min(f64::from(burst));
        if self.send_tokens >= 1.0 {
            self.send_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn next_seq(&mut self, floor: u64, now_us: u64) -> u64 {
        self.last_seq = self.last_seq.saturating_add(1).max(now_us).max(floor);
        self.last_seq
    }

    pub fn device_mut(&mut self, device: &str) -> &mut DeviceCursor {
        if let Some(i) = self.devices.iter().position(|d| &*d.id == device) {
            return &mut self.devices[i];
        }
        if self.devices.len() >= MAX_DEVICES_IN_MEMORY {
            // Forget a disconnected device (its cursor is in the store).
            let conns = &self.conns;
            if let Some(i) = self.devices.iter().position(|d| !conns.iter().any(|c| c.device == d.id)) {
                self.devices.swap_remove(i);
            }
        }
        if self.devices.capacity() == 0 {
            self.devices.reserve_exact(1);
        }
        self.devices.push(DeviceCursor::new(Arc::from(device)));
        self.devices.last_mut().expect("just pushed")
    }

    /// Pushes an encoded `Deliver` body (of message `seq`) to every live connection but `skip`
    /// and those whose replay had it; a connection whose queue is full is disconnected (it
    /// resumes from its last ack). Returns how many got it.
    pub fn push_live<S: Shell<Conn = C>>(&mut self, sh: &mut S, seq: u64, body: &Bytes, accepted: Duration, skip: Option<ConnId>) -> usize {
        let mut n = 0;
        for c in self.conns.iter_mut() {
            if !c.live || Some(c.id) == skip || seq <= c.replayed_upto {
                continue;
            }
            match sh.push(&c.conn, Outgoing::Frame { body: body.clone(), accepted: Some(accepted) }, true) {
                Ok(()) => n += 1,
                Err(PushError::Full) => {
                    tracing::warn!(conn_id = c.id, "outbox full, disconnecting slow client");
                    sh.count(Count::Error(error_code::SLOW_CONSUMER));
                    c.live = false;
                    sh.abort(
                        &c.conn,
                        ErrorFrame { code: error_code::SLOW_CONSUMER, message: "too many unread frames; reconnect and resume".into() },
                    );
                }
                // Already closing; it is about to unregister.
                Err(PushError::Closed) => {}
            }
        }
        n
    }

    /// A message with `seq` was stored: every known device but `except` (the sender's) may
    /// have to ack it before it goes (the store marks it as waiting for each of them).
    pub fn stored(&mut self, seq: u64, except: Option<&Arc<str>>) {
        self.offline_upto = self.offline_upto.max(seq);
        for d in self.devices.iter_mut().filter(|d| Some(&d.id) != except) {
            d.stored_upto = d.stored_upto.max(seq);
        }
    }

    /// No other device of the user is live, but the user has other known devices: the copy of
    /// a message sent from `device` must be stored for them, like a message for an offline user.
    pub fn needs_copy_stored_for_other_devices(&self, device: &str) -> bool {
        !self.conns.iter().any(|c| c.live && &*c.device != device) && self.devices.iter().any(|d| &*d.id != device)
    }

    /// Whether the copy of a message sent from connection `conn` (device `device`) has any
    /// use: another live connection gets it now, or another device of the user could get it
    /// later (stored or replayed from the window). The in-memory device list holds every device
    /// the user ever connected with (loaded from the store at connect, added at register) unless
    /// it is at its cap, where devices may live only in the store. A device id never seen before
    /// gets only stored messages, and a copy is stored only for another known device, so with no
    /// other device known the copy can only reach the sending device, which never gets it.
    pub fn copy_needed(&self, conn: ConnId, device: &str) -> bool {
        self.devices.len() >= MAX_DEVICES_IN_MEMORY
            || self.devices.iter().any(|d| &*d.id != device)
            || self.conns.iter().any(|c| c.live && c.id != conn)
    }

    /// Drops window messages nobody can need any more: those every device of the user has
    /// acked (or that were never for it), and, past the window's count or age, those that no
    /// connected device still waits for.
    ///
    /// The first rule is what keeps an active user small: before it, every user's last
    /// `window_max` messages stayed in memory after all its devices had acked them.
    pub fn prune_window(&mut self, limits: &Limits, now: Duration) {
        // A syncing connection will replay from the window what its store read could not see
        // yet (stored after the read was queued): keep everything until it is live.
        if self.conns.iter().any(|c| !c.synced) {
            return;
        }
        while let Some(front) = self.window.front() {
            let over = self.window.len() > limits.window_max || now.saturating_sub(front.accepted) > limits.window_ttl;
            let keep = if self.acked_everywhere(front) {
                false
            } else if over {
                // A connected device that has not acked it may be on a dead connection: keep
                // it (up to twice the limit) until `unregister` stores it for that device.
                self.window.len() <= limits.window_max.saturating_mul(2) && self.unacked_by_a_connected_device(front)
            } else {
                true
            };
            if keep {
                break;
            }
            self.window.pop_front();
        }
    }

    /// Frees the buffer of an empty window. Not done by [`Self::prune_window`]: an active
    /// user's window empties at nearly every ack and refills at its next message, and freeing
    /// it there cost a free and a malloc per routed message. The periodic sweep and the last
    /// connection's departure call this instead.
    pub fn release_empty_window(&mut self) {
        if self.window.is_empty() && self.window.capacity() > 0 {
            self.window = VecDeque::new();
        }
    }

    /// Every device of the user that could be given `e` has acked it. Only decidable while
    /// every device is in memory; with the in-memory list at its cap, some are only in the
    /// store, and the window's limits decide.
    fn acked_everywhere(&self, e: &Entry) -> bool {
        self.devices.len() < MAX_DEVICES_IN_MEMORY
            && self.devices.iter().all(|d| e.exclude_device.as_ref() == Some(&d.id) || e.seq <= d.done_upto())
    }

    /// Whether a device with a connection has not acked `e` yet (and `e` is not stored).
    fn unacked_by_a_connected_device(&self, e: &Entry) -> bool {
        !e.offline
            && !e.stored
            && self.conns.iter().any(|c| {
                e.exclude_device.as_ref() != Some(&c.device)
                    && e.seq > self.devices.iter().find(|d| d.id == c.device).map_or(0, DeviceCursor::done_upto)
            })
    }

    /// Nothing left to keep in memory: no connection, no window, and no seq issued ahead of
    /// the clock (which a reload could not reproduce).
    pub fn idle(&self, now_us: u64) -> bool {
        self.conns.is_empty() && self.window.is_empty() && self.last_seq <= now_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_remembers_its_most_recent_instances() {
        let mut d = DeviceCursor::new("d".into());
        for i in 1..=5u64 {
            d.instance_mut(i).upto = i * 10;
        }
        assert!(d.instance(1).is_none(), "the least recently used is forgotten");
        assert_eq!(d.instance(5).map(|r| r.upto), Some(50));
        d.instance_mut(2); // used again: now the most recent
        d.instance_mut(6);
        assert!(d.instance(3).is_none());
        assert_eq!(d.instance(2).map(|r| r.upto), Some(20));
        assert_eq!(d.instances.len(), MAX_INSTANCES_PER_DEVICE);
    }

    #[test]
    fn pruning_keeps_the_window_buffer_and_release_frees_it() {
        let limits = Limits {
            offline_ttl_ms: 0,
            offline_max_per_user: 0,
            window_ttl: Duration::from_secs(60),
            window_max: 128,
            max_connections_per_app: 0,
            left_grace: Duration::ZERO,
            lost_grace: Duration::ZERO,
            max_connections_per_user: 0,
            max_connections_per_device: 0,
            user_rate_per_sec: 0,
            user_rate_burst: 0,
            offline_quota_per_sender: 0,
            offline_quota_window: Duration::ZERO,
            offline_max_bytes: 0,
            store_queue_max: 0,
        };
        let mut st: UserState<()> = UserState::new("u".into());
        st.device_mut("d").acked = 5;
        let entry = |seq| Entry { seq, offline: false, stored: false, exclude_device: None, accepted: Duration::ZERO, body: Bytes::new() };
        st.window.push_back(entry(4));
        st.window.push_back(entry(5));
        st.prune_window(&limits, Duration::from_secs(1));
        assert!(st.window.is_empty(), "acked by every device");
        assert!(st.window.capacity() > 0, "kept for the next message");
        st.release_empty_window();
        assert_eq!(st.window.capacity(), 0);
        // Not released while it holds something.
        st.window.push_back(entry(6));
        st.release_empty_window();
        assert_eq!(st.window.len(), 1);
    }
}
