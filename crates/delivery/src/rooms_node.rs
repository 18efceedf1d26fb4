//! One node's side of the replicated call rooms (cluster mode, docs/cluster.md "Step 3, rooms"),
//! sans-IO: which events a node adds to the app's rooms log and what it does with the events it
//! applies. The server (`crates/server/src/cluster/rooms.rs`) wraps these decisions in its Redis
//! calls; the simulator (`crates/sim`) runs them over [`crate::cluster_model::ClusterModel`]'s
//! rooms log. One copy of the rules, so the two cannot drift.
//!
//! - [`presence_event`] is **the** rule for a device's `Here` / `Gone` (today: every device, on
//!   the first / last connection of each of its pages, SDK instances, on the node).
//! - [`RoomsNode::hold`] / [`RoomsNode::release`] count a node's connections per page.
//! - [`RoomsNode::position`] says whether a numbered event is applied now, was applied, or
//!   shows a gap (read the log); [`after_apply`] what applying it asks of this node.
//! - [`announcements`], [`grace_over`], [`node_lost`], [`leaving`] build the other events.

use std::collections::HashMap;
use std::sync::Arc;

use crate::rooms::{rooms_event, DeviceEvent, Ended, NodeLostEvent, RoomsEvent};
use crate::{AppCore, ConnId, Departure, Now};

/// A device's presence changed on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Its first connection on the node.
    Here,
    /// Its last connection on the node closed this way.
    Gone(Departure),
}

/// The rooms event (if any) for page `instance` of `device` of `user` whose presence on node
/// `me` changed: the one place that decides which devices the replicas follow (every device
/// today).
pub fn presence_event(me: &str, user: &str, device: &str, instance: u64, change: Presence) -> Option<RoomsEvent> {
    let d = |lost: bool| DeviceEvent { user: user.to_owned(), device: device.to_owned(), node: me.to_owned(), lost, instance };
    let ev = match change {
        Presence::Here => rooms_event::Event::Here(d(false)),
        Presence::Gone(how) => rooms_event::Event::Gone(d(how == Departure::Lost)),
    };
    Some(RoomsEvent { event: Some(ev) })
}

/// `GraceOver` for a grace node `me` runs that is over on its clock.
pub fn grace_over(me: &str, user: &str, device: &str, how: Departure) -> RoomsEvent {
    let d = DeviceEvent { user: user.to_owned(), device: device.to_owned(), node: me.to_owned(), lost: how == Departure::Lost, instance: 0 };
    RoomsEvent { event: Some(rooms_event::Event::GraceOver(d)) }
}

/// Node `me` took out node `dead` (its heartbeat expired): `me` runs what it leaves behind.
pub fn node_lost(me: &str, dead: &str) -> RoomsEvent {
    RoomsEvent { event: Some(rooms_event::Event::NodeLost(NodeLostEvent { node: dead.to_owned(), runner: me.to_owned() })) }
}

/// Node `me` leaves gracefully: its graces go to the lowest node still holding a device.
pub fn leaving(me: &str) -> RoomsEvent {
    RoomsEvent { event: Some(rooms_event::Event::NodeLost(NodeLostEvent { node: me.to_owned(), runner: String::new() })) }
}

/// What applying an event asks of node `me`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AfterApply {
    /// A grace this node ran ended a participation: route the hangup on the device's behalf
    /// (once: only the node named in the `GraceOver`).
    pub hang_up: Option<Ended>,
    /// This node was reported dead while it runs (frozen past its deadline): announce its
    /// devices again before their lost graces run out ([`announcements`]).
    pub announce: bool,
}

/// See [`AfterApply`]; `ended` is what [`AppCore::apply_rooms_event`] returned for `ev`.
pub fn after_apply(me: &str, ev: &RoomsEvent, ended: Option<Ended>) -> AfterApply {
    match &ev.event {
        Some(rooms_event::Event::GraceOver(d)) if d.node == me => AfterApply { hang_up: ended, announce: false },
        Some(rooms_event::Event::NodeLost(n)) if n.node == me => AfterApply { hang_up: None, announce: true },
        _ => AfterApply::default(),
    }
}

/// A page: (user, device, SDK instance).
pub type Page = (Arc<str>, Arc<str>, u64);

/// After a resync (or a report of its own death): makes what the replica says node `me` holds
/// true. `held`: the pages with a connection here; `known`: what the replica thinks `me` holds
/// ([`AppCore::rooms_held_by`]). Pages gone meanwhile leave (`Gone`, lost), pages here are
/// announced again (`Here`).
pub fn announcements(me: &str, held: &[Page], known: &[Page]) -> Vec<RoomsEvent> {
    let gone = known.iter().filter(|k| !held.contains(k)).filter_map(|(u, d, i)| presence_event(me, u, d, *i, Presence::Gone(Departure::Lost)));
    let here = held.iter().filter_map(|(u, d, i)| presence_event(me, u, d, *i, Presence::Here));
    gone.chain(here).collect()
}

/// Where a numbered event stands for a replica that applied up to some number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Applied already (read from the log before its publication arrived).
    Done,
    /// The next one: apply it.
    Next,
    /// Numbers were skipped: read the log above the last applied one first.
    Gap,
}

/// One node's rooms state outside the core: its connections per device and how far its replica
/// applied the log. (The server keeps the same under its locks in `cluster::rooms::RoomsSync`.)
#[derive(Debug, Clone)]
pub struct RoomsNode {
    name: String,
    conns: HashMap<ConnId, Page>,
    pages: HashMap<Page, usize>,
    applied: u64,
}

impl RoomsNode {
    /// Node `name` (a node id: a restarted process is a new node).
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), conns: HashMap::new(), pages: HashMap::new(), applied: 0 }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection `conn` of page `instance` of `device` of `user` is here; the event to add to
    /// the log, if any.
    pub fn hold(&mut self, conn: ConnId, user: &str, device: &str, instance: u64) -> Option<RoomsEvent> {
        let key: Page = (Arc::from(user), Arc::from(device), instance);
        if self.conns.insert(conn, key.clone()).is_some() {
            return None;
        }
        let n = self.pages.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 {
            presence_event(&self.name, user, device, instance, Presence::Here)
        } else {
            None
        }
    }

    /// Connection `conn` ended (idempotent); the event to add to the log, if any.
    pub fn release(&mut self, conn: ConnId, how: Departure) -> Option<RoomsEvent> {
        let key = self.conns.remove(&conn)?;
        let n = self.pages.get_mut(&key)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.pages.remove(&key);
        presence_event(&self.name, &key.0, &key.1, key.2, Presence::Gone(how))
    }

    /// The pages with a connection here, sorted.
    pub fn held(&self) -> Vec<Page> {
        let mut out: Vec<_> = self.pages.keys().cloned().collect();
        out.sort();
        out
    }

    /// The last event number the replica applied (0: none).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Where event `n` stands.
    pub fn position(&self, n: u64) -> Position {
        if self.applied == 0 || n == self.applied + 1 {
            // (A replica that applied nothing takes the log from wherever it starts.)
            Position::Next
        } else if n <= self.applied {
            Position::Done
        } else {
            Position::Gap
        }
    }

    /// Applies event `n` of the log to `core`'s replica.
    pub fn apply<C: Clone>(&mut self, core: &mut AppCore<C>, n: u64, ev: &RoomsEvent, t_ms: i64, now: Now) -> AfterApply {
        self.applied = self.applied.max(n);
        let ended = core.apply_rooms_event(ev, t_ms, now);
        after_apply(&self.name, ev, ended)
    }

    /// `GraceOver` for each grace this node runs that is over now.
    pub fn graces_due<C: Clone>(&self, core: &mut AppCore<C>, now: Now) -> Vec<RoomsEvent> {
        core.rooms_graces_due(now, &self.name).into_iter().map(|(u, d, how)| grace_over(&self.name, &u, &d, how)).collect()
    }

    /// See [`announcements`].
    pub fn announcements<C: Clone>(&self, core: &AppCore<C>) -> Vec<RoomsEvent> {
        announcements(&self.name, &self.held(), &core.rooms_held_by(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ev: &Option<RoomsEvent>) -> Option<(&'static str, String, bool)> {
        ev.as_ref().and_then(|e| match e.event.as_ref()? {
            rooms_event::Event::Here(d) => Some(("here", d.device.clone(), d.lost)),
            rooms_event::Event::Gone(d) => Some(("gone", d.device.clone(), d.lost)),
            _ => None,
        })
    }

    #[test]
    fn a_device_is_here_with_its_first_connection_and_gone_with_its_last() {
        let mut n = RoomsNode::new("n1");
        assert_eq!(kind(&n.hold(1, "u", "d", 7)), Some(("here", "d".into(), false)));
        assert_eq!(n.hold(2, "u", "d", 7), None, "a second connection of the page");
        assert_eq!(n.hold(2, "u", "d", 7), None, "held twice");
        assert_eq!(n.release(1, Departure::Left), None);
        assert_eq!(kind(&n.release(2, Departure::Lost)), Some(("gone", "d".into(), true)));
        assert_eq!(n.release(2, Departure::Lost), None, "idempotent");
        assert!(n.held().is_empty());
    }

    #[test]
    fn positions_and_what_an_apply_asks() {
        let mut n = RoomsNode::new("n1");
        assert_eq!(n.position(500), Position::Next, "an empty replica starts anywhere");
        n.applied = 500;
        assert_eq!((n.position(500), n.position(501), n.position(503)), (Position::Done, Position::Next, Position::Gap));
        assert_eq!(after_apply("n1", &node_lost("n2", "n1"), None), AfterApply { hang_up: None, announce: true });
        assert_eq!(after_apply("n2", &node_lost("n2", "n1"), None), AfterApply::default());
        let held = [(Arc::from("u"), Arc::from("a"), 1)];
        let known = [(Arc::from("u"), Arc::from("b"), 2)];
        let evs: Vec<_> = announcements("n1", &held, &known).into_iter().map(|e| kind(&Some(e))).collect();
        assert_eq!(evs, [Some(("gone", "b".into(), true)), Some(("here", "a".into(), false))]);
    }
}
