//! The client's half of the envelope protocol's "exactly once" contract (see
//! [`crate::proto::envelope`]), sans-IO: it numbers what the client sends, keeps every message
//! until the server confirms it, queues while disconnected, resends in order after a reconnect,
//! and drops deliveries it has already processed.
//!
//! Why here and not in the browser shell: the same logic runs in the SDK and in the simulator
//! ([`crate::sim`]), so the property test checks "no signal lost, none duplicated" across
//! connection drops and server restarts on a virtual clock.
//!
//! Confirmation: the server handles one connection's frames in order and answers only once what
//! they caused is durable, so a `SendResult` for a message confirms it *and every message sent
//! before it*; `Pong.accepted_upto` and `AuthResult.accepted_upto` confirm by number.

use std::collections::VecDeque;

use crate::proto::{client_frame, ClientFrame, Delivered, SendMessage};

/// Messages kept unconfirmed at most. A client cut off for long enough that this fills has
/// ended its calls long before ([`crate::engine::SELF_CUTOFF_MS`]); refusing then beats
/// growing without bound.
pub const MAX_UNCONFIRMED: usize = 1000;
/// Sender instances whose last processed `client_seq` is remembered. An instance is one page
/// load of one participant; a client meets a few per call.
const MAX_SENDERS: usize = 256;

/// The message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct QueueFull;

impl QueueFull {
    /// What went wrong, built without `core::fmt` (the SDK logs it; see [`crate::text`]).
    pub fn message(&self) -> String {
        [&crate::text::int(MAX_UNCONFIRMED as i64), " messages are already waiting for the server; the message was not sent"].concat()
    }
}

#[derive(Debug, Clone)]
struct Unconfirmed {
    client_seq: u64,
    msg: SendMessage,
}

/// See the module docs. One per logged-in client, kept across reconnects.
#[derive(Debug, Clone)]
pub struct ClientLink {
    instance: u64,
    next_seq: u64,
    unconfirmed: VecDeque<Unconfirmed>,
    connected: bool,
    /// (sender instance, highest `client_seq` processed), most recently used last. A `Vec`:
    /// at most 256 entries, and `VecDeque::remove` ships its `wrap_copy` in the SDK (0.6 KB).
    seen: Vec<(u64, u64)>,
}

impl ClientLink {
    /// `instance` must be random per SDK instance (page load): it tells this client's stream
    /// apart from other tabs of the same browser, which share the device id.
    pub fn new(instance: u64) -> Self {
        Self { instance: instance.max(1), next_seq: 1, unconfirmed: VecDeque::new(), connected: false, seen: Vec::new() }
    }

    /// The value for `Authenticate.instance`.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Messages sent and not yet confirmed (queued while disconnected, or in flight).
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.len()
    }

    /// Numbers `msg` and keeps it until it is confirmed. Returns the frame to write now when
    /// connected; while disconnected the message waits for [`Self::connected`].
    pub fn send(&mut self, mut msg: SendMessage) -> Result<Option<ClientFrame>, QueueFull> {
        if self.unconfirmed.len() >= MAX_UNCONFIRMED {
            return Err(QueueFull);
        }
        msg.client_seq = self.next_seq;
        self.next_seq += 1;
        let frame = self.connected.then(|| frame(&msg));
        self.unconfirmed.push_back(Unconfirmed { client_seq: msg.client_seq, msg });
        Ok(frame)
    }

    /// The connection is authenticated: forgets what the server already has (`accepted_upto`
    /// from `AuthResult`) and returns every other unconfirmed message, in order, to write now.
    ///
    /// Except: a message the server has whose `SendResult` never came (lost with the old
    /// connection) is sent again, since someone waits for that result (a `call()` would never
    /// settle); the server answers the repeat without delivering it again.
    pub fn connected(&mut self, accepted_upto: u64) -> Vec<ClientFrame> {
        self.connected = true;
        self.unconfirmed.retain(|u| u.client_seq > accepted_upto || !u.msg.no_receipt);
        self.unconfirmed.iter().map(|u| frame(&u.msg)).collect()
    }

    /// The connection is gone: what is sent from now on waits.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// The server answered `request_id` (accepted or refused): it and everything sent before it
    /// are confirmed. Unknown ids (already confirmed) change nothing.
    pub fn on_send_result(&mut self, request_id: u32) {
        // The queue is in `client_seq` order. (Not `drain(..=i)`: VecDeque's drain costs the
        // wasm SDK ~1.5 KB for this and `reset`.)
        if let Some(seq) = self.unconfirmed.iter().find(|u| u.msg.request_id == request_id).map(|u| u.client_seq) {
            self.confirm_upto(seq);
        }
    }

    /// `Pong.accepted_upto`.
    pub fn on_pong(&mut self, accepted_upto: u64) {
        self.confirm_upto(accepted_upto);
    }

    fn confirm_upto(&mut self, client_seq: u64) {
        while self.unconfirmed.front().is_some_and(|u| u.client_seq <= client_seq) {
            self.unconfirmed.pop_front();
        }
    }

    /// Whether a delivered message is new; false for a repeat of one already processed (a
    /// resend the server could not recognise, e.g. across its restart). Each sender instance's
    /// messages arrive in the order it sent them, so one high-water mark per instance suffices.
    pub fn accept_delivery(&mut self, d: &Delivered) -> bool {
        if d.sender_instance == 0 || d.client_seq == 0 {
            return true;
        }
        let pos = self.seen.iter().position(|(i, _)| *i == d.sender_instance);
        let last = pos.map_or(0, |p| self.seen[p].1);
        if d.client_seq <= last {
            return false;
        }
        if let Some(p) = pos {
            self.seen.remove(p);
        } else if self.seen.len() >= MAX_SENDERS {
            self.seen.remove(0);
        }
        self.seen.push((d.sender_instance, d.client_seq));
        true
    }

    /// `disconnect()`: forgets every unconfirmed message; returns the `request_id`s of those
    /// that expected a `SendResult`, to fail them.
    pub fn reset(&mut self) -> Vec<u32> {
        self.connected = false;
        let failed = self.unconfirmed.iter().filter(|u| !u.msg.no_receipt).map(|u| u.msg.request_id).collect();
        self.unconfirmed.clear();
        failed
    }
}

fn frame(msg: &SendMessage) -> ClientFrame {
    ClientFrame::new(client_frame::Body::Send(msg.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(request_id: u32, no_receipt: bool) -> SendMessage {
        SendMessage { request_id, target_id: "bob".into(), message_type: "RC:VCHangup".into(), no_receipt, ..Default::default() }
    }

    fn seqs(frames: &[ClientFrame]) -> Vec<u64> {
        frames
            .iter()
            .map(|f| match &f.body {
                Some(client_frame::Body::Send(m)) => m.client_seq,
                _ => panic!("not a send"),
            })
            .collect()
    }

    #[test]
    fn queues_while_disconnected_and_resends_in_order_what_the_server_lacks() {
        let mut l = ClientLink::new(7);
        assert!(l.send(msg(1, false)).unwrap().is_none(), "not connected yet: queued");
        assert_eq!(seqs(&l.connected(0)), vec![1]);
        let f = l.send(msg(2, true)).unwrap().expect("connected: written at once");
        assert_eq!(seqs(&[f]), vec![2]);
        l.send(msg(3, false)).unwrap();
        l.disconnected();
        assert!(l.send(msg(4, true)).unwrap().is_none());
        assert_eq!(l.unconfirmed(), 4);
        // The server had accepted 1 and 2 before the drop: 3 and 4 go again, in order, and 1
        // too: its SendResult, which someone waits for, never came.
        assert_eq!(seqs(&l.connected(2)), vec![1, 3, 4]);
        // A SendResult for 3 confirms it (and 1); a Pong confirms 4 by number.
        l.on_send_result(3);
        assert_eq!(l.unconfirmed(), 1);
        l.on_pong(4);
        assert_eq!(l.unconfirmed(), 0);
        // A server that lost its memory (restart): everything unconfirmed goes again.
        l.disconnected();
        l.send(msg(5, false)).unwrap();
        assert_eq!(seqs(&l.connected(0)), vec![5]);
    }

    #[test]
    fn a_send_result_confirms_everything_before_it() {
        let mut l = ClientLink::new(7);
        l.connected(0);
        for id in 1..=5 {
            l.send(msg(id, id != 4)).unwrap();
        }
        l.on_send_result(4);
        assert_eq!(l.unconfirmed(), 1);
        l.on_send_result(4); // repeated: nothing more
        assert_eq!(l.unconfirmed(), 1);
        assert_eq!(l.reset(), Vec::<u32>::new(), "5 is fire-and-forget: nobody waits for it");
    }

    #[test]
    fn reset_fails_what_waits_for_a_result() {
        let mut l = ClientLink::new(7);
        l.send(msg(1, false)).unwrap();
        l.send(msg(2, true)).unwrap();
        l.send(msg(3, false)).unwrap();
        assert_eq!(l.reset(), vec![1, 3]);
        assert_eq!(l.unconfirmed(), 0);
        assert!(!l.is_connected());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut l = ClientLink::new(7);
        for id in 0..MAX_UNCONFIRMED as u32 {
            l.send(msg(id, true)).unwrap();
        }
        assert_eq!(l.send(msg(0, true)), Err(QueueFull));
        l.on_pong(1);
        assert!(l.send(msg(0, true)).is_ok(), "room again once confirmed");
    }

    #[test]
    fn repeats_of_processed_deliveries_are_dropped_per_sender_instance() {
        let mut l = ClientLink::new(7);
        let d = |instance, client_seq| Delivered { sender_instance: instance, client_seq, ..Default::default() };
        assert!(l.accept_delivery(&d(10, 1)));
        assert!(l.accept_delivery(&d(10, 2)));
        assert!(!l.accept_delivery(&d(10, 2)), "a resend");
        assert!(!l.accept_delivery(&d(10, 1)));
        assert!(l.accept_delivery(&d(11, 1)), "another tab/page of the sender counts on its own");
        assert!(l.accept_delivery(&d(10, 3)));
        assert!(l.accept_delivery(&d(0, 0)), "untracked (server-made) messages always pass");
        assert!(l.accept_delivery(&d(0, 0)));
        // Bounded memory: the oldest sender is forgotten first.
        for i in 100..100 + MAX_SENDERS as u64 {
            assert!(l.accept_delivery(&d(i, 1)));
        }
        assert_eq!(l.seen.len(), MAX_SENDERS);
        assert!(l.accept_delivery(&d(10, 3)), "forgotten: accepted again (bounded, documented)");
    }
}
