//! The routing table: which connections each user has, and message fan-out.
//!
//! One mutex guards the whole table *and* the acceptance of a message (its `sent_time`, UID
//! and per-device `seq`s), and delivery is a non-blocking push into each connection's ordered
//! outbox while that lock is held. That single critical section is what makes every device see
//! messages in exactly the order the server accepted them, with increasing `sent_time`.

use std::collections::HashMap;
use std::sync::Mutex;

use rtc_core::proto::conversation_type;
use rtc_core::proto::server_frame::Body;
use rtc_core::proto::{Delivered, ErrorFrame, SendMessage, SyncDone};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, MonotonicMs};
use crate::uid::UidGen;

/// IMLib `BIZ_ERROR_INVALID_PARAMETER`.
pub const CODE_INVALID_PARAMETER: i32 = 33003;

/// Frames waiting to be written to one connection. Bounded: a client that stops reading is
/// disconnected (it can resume) rather than growing the server's memory.
pub const OUTBOX_CAPACITY: usize = 1024;

pub type ConnId = u64;

/// One item of a connection's outbox.
#[derive(Debug)]
pub enum Outgoing {
    /// Stamped with `server_time` and written when it reaches the front.
    Frame(Body),
    /// Written, then the connection is closed.
    Fatal(ErrorFrame),
}

/// Why a `SendMessage` was refused; nothing was delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
}

impl RouteError {
    /// IMLib code for `SendResult.code`.
    pub fn imlib_code(&self) -> i32 {
        match self {
            RouteError::InvalidParameter(_) => CODE_INVALID_PARAMETER,
        }
    }
}

/// The authenticated identity of the sending connection (never taken from the client's frame).
#[derive(Debug, Clone)]
pub struct Origin {
    pub conn_id: ConnId,
    pub user_id: String,
    pub device_id: String,
}

/// What the server assigned to an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sent_time: i64,
    pub message_uid: String,
    /// Number of connections the message was pushed to.
    pub delivered_to: usize,
}

struct Conn {
    id: ConnId,
    device_id: String,
    tx: mpsc::Sender<Outgoing>,
    cancel: CancellationToken,
}

/// Per (user, device) state that outlives a connection, so a reconnecting device keeps
/// counting `seq` upwards.
#[derive(Debug, Default)]
struct DeviceState {
    last_seq: u64,
    acked: u64,
}

#[derive(Default)]
struct Table {
    next_conn_id: ConnId,
    users: HashMap<String, Vec<Conn>>,
    devices: HashMap<(String, String), DeviceState>,
    clock: MonotonicMs,
    uids: Option<UidGen>,
}

#[derive(Default)]
pub struct Hub {
    table: Mutex<Table>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing under this lock can leave the table inconsistent midway, so a poisoned lock
        // (a panic elsewhere) is still safe to use; refusing would take the whole server down.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an authenticated connection and queues its initial sync (`SyncDone`; offline
    /// delivery would go here) before any live message can reach it.
    pub fn register(
        &self,
        user_id: &str,
        device_id: &str,
        resume_from: u64,
        tx: mpsc::Sender<Outgoing>,
        cancel: CancellationToken,
    ) -> ConnId {
        let mut t = self.lock();
        t.next_conn_id += 1;
        let id = t.next_conn_id;
        let dev = t
            .devices
            .entry((user_id.to_owned(), device_id.to_owned()))
            .or_default();
        // A device that saw seq N (perhaps from before a restart) must only see larger ones.
        dev.last_seq = dev.last_seq.max(resume_from);
        if tx
            .try_send(Outgoing::Frame(Body::SyncDone(SyncDone {})))
            .is_err()
        {
            cancel.cancel();
        }
        t.users.entry(user_id.to_owned()).or_default().push(Conn {
            id,
            device_id: device_id.to_owned(),
            tx,
            cancel,
        });
        id
    }

    /// Removes a closed connection from the routing table.
    pub fn unregister(&self, user_id: &str, conn_id: ConnId) {
        let mut t = self.lock();
        if let Some(conns) = t.users.get_mut(user_id) {
            conns.retain(|c| c.id != conn_id);
            if conns.is_empty() {
                t.users.remove(user_id);
            }
        }
    }

    /// Records that a device processed everything up to `seq`.
    pub fn ack(&self, user_id: &str, device_id: &str, seq: u64) {
        let mut t = self.lock();
        if let Some(d) = t
            .devices
            .get_mut(&(user_id.to_owned(), device_id.to_owned()))
        {
            d.acked = d.acked.max(seq.min(d.last_seq));
        }
    }

    /// Number of live connections of `user_id` (for tests and metrics).
    pub fn connection_count(&self, user_id: &str) -> usize {
        self.lock().users.get(user_id).map_or(0, Vec::len)
    }

    /// Accepts a message and pushes a `Delivered` to every connection of every recipient and to
    /// the sender's other connections.
    pub fn route(&self, from: &Origin, msg: SendMessage) -> Result<Accepted, RouteError> {
        if msg.target_id.is_empty() {
            return Err(RouteError::InvalidParameter("empty target id"));
        }
        if msg.message_type.is_empty() {
            return Err(RouteError::InvalidParameter("empty message type"));
        }
        let mut recipients: Vec<&str> = match msg.conversation_type {
            conversation_type::PRIVATE => vec![msg.target_id.as_str()],
            conversation_type::GROUP => msg
                .directional_user_ids
                .iter()
                .map(String::as_str)
                .filter(|u| !u.is_empty())
                .collect(),
            _ => {
                return Err(RouteError::InvalidParameter(
                    "unsupported conversation type",
                ))
            }
        };
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(RouteError::InvalidParameter("no recipients"));
        }
        // The sender's own devices are served below, with the original target id.
        recipients.retain(|u| *u != from.user_id);

        let mut t = self.lock();
        let sent_time = t.clock.next(now_ms());
        let message_uid = t
            .uids
            .get_or_insert_with(|| UidGen::new(sent_time))
            .next_uid();

        let delivered = |target_id: &str| Delivered {
            seq: 0,
            message_uid: message_uid.clone(),
            sender_user_id: from.user_id.clone(),
            sender_device_id: from.device_id.clone(),
            conversation_type: msg.conversation_type,
            target_id: target_id.to_owned(),
            channel_id: msg.channel_id.clone(),
            message_type: msg.message_type.clone(),
            content: msg.content.clone(),
            sent_time,
            offline: false,
        };
        // What each recipient sees as the conversation's target.
        let recipient_target = match msg.conversation_type {
            conversation_type::PRIVATE => from.user_id.as_str(),
            _ => msg.target_id.as_str(),
        };

        let mut delivered_to = 0;
        let Table { users, devices, .. } = &mut *t;
        let mut fan_out = |user_id: &str, template: &Delivered, skip: Option<ConnId>| {
            let Some(conns) = users.get(user_id) else {
                return;
            };
            // seq is per device: connections sharing a device id (two tabs) share one counter.
            let mut seqs: Vec<(&str, u64)> = Vec::new();
            for conn in conns.iter().filter(|c| Some(c.id) != skip) {
                let seq = match seqs.iter().find(|(d, _)| *d == conn.device_id) {
                    Some((_, s)) => *s,
                    None => {
                        let dev = devices
                            .entry((user_id.to_owned(), conn.device_id.clone()))
                            .or_default();
                        dev.last_seq += 1;
                        seqs.push((conn.device_id.as_str(), dev.last_seq));
                        dev.last_seq
                    }
                };
                let frame = Delivered {
                    seq,
                    ..template.clone()
                };
                match conn.tx.try_send(Outgoing::Frame(Body::Deliver(frame))) {
                    Ok(()) => delivered_to += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            user_id,
                            conn_id = conn.id,
                            "outbox full, disconnecting slow client"
                        );
                        conn.cancel.cancel();
                    }
                    // Already closing; it is about to unregister.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        };

        let to_recipients = delivered(recipient_target);
        for user in &recipients {
            fan_out(user, &to_recipients, None);
        }
        let to_self = delivered(&msg.target_id);
        fan_out(&from.user_id, &to_self, Some(from.conn_id));

        Ok(Accepted {
            sent_time,
            message_uid,
            delivered_to,
        })
    }
}
