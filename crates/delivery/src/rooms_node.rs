//! One node's side of the replicated call rooms (cluster mode, docs/cluster.md "Step 3, rooms"),
//! sans-IO: which events a node adds to the app's rooms log and what it does with the events it
//! applies. The server (`crates/server/src/cluster/rooms.rs`) wraps these decisions in its Redis
//! calls; the simulator (`crates/sim`) runs them over [`crate::cluster_model::ClusterModel`]'s
//! rooms log. One copy of the rules, so the two cannot drift.
//!
//! - [`announces`] is **the** rule for which pages publish `Here` / `Gone`: only pages of devices
//!   the rooms care about (a call member or a grace running, [`AppCore::rooms_involve`]); at
//!   100,000 connections every replica held every device. [`presence_event`] builds the event
//!   (per page, SDK instance: a page's `Here` on one node takes its dead sockets elsewhere out).
//! - [`RoomsNode::hold`] / [`RoomsNode::release`] count a node's connections per page and apply
//!   [`announces`]; [`RoomsNode::announce_device`] (before a call message is routed) and
//!   [`RoomsNode::announce_involved`] (after an applied event, [`AfterApply::involves`]) announce
//!   the pages that became involved.
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

/// Whether a page's presence change goes out: a page is announced (`Here`) only once its device
/// is involved (`involved`: [`AppCore::rooms_involve`], asked only when needed) — at its first
/// connection, just before its device's first call message is routed, or when an applied event
/// involves it — and an announced page, or one whose device is involved at its last connection
/// (its grace starts), publishes its `Gone`.
pub fn announces(announced: bool, involved: impl FnOnce() -> bool) -> bool {
    announced || involved()
}

/// Whether page `instance` of `device` of `user`, connected on node `me` but not announced, is
/// announced late (after an applied event, or a resync): if `core`'s replica involves its
/// device and holds no connection of the same page on another node. A page talks over one
/// connection at a time: one held elsewhere is the live one, announced at its connect or its
/// call message, and this node's is a dead socket it has not noticed (cluster seed 591 after
/// the merge: announced late, it took the page's live node out of presence, and the page's
/// clean close there was hung up 20 s after the loss, as lost). Once the page's holder
/// elsewhere is gone, its `Gone` involves the device here again.
pub fn late_here<C: Clone>(core: &AppCore<C>, me: &str, user: &str, device: &str, instance: u64) -> bool {
    core.rooms_involve(user, device) && !core.rooms_page_held_elsewhere(user, device, instance, me)
}

/// The rooms event for page `instance` of `device` of `user` whose presence on node `me`
/// changed (whether it goes out: [`announces`]).
pub fn presence_event(me: &str, user: &str, device: &str, instance: u64, change: Presence) -> RoomsEvent {
    let d = |lost: bool| DeviceEvent { user: user.to_owned(), device: device.to_owned(), node: me.to_owned(), lost, instance };
    let ev = match change {
        Presence::Here => rooms_event::Event::Here(d(false)),
        Presence::Gone(how) => rooms_event::Event::Gone(d(how == Departure::Lost)),
    };
    RoomsEvent { event: Some(ev) }
}

/// `GraceOver` for a grace node `me` runs that is over on its clock.
pub fn grace_over(me: &str, user: &str, device: &str, how: Departure) -> RoomsEvent {
    let d =
        DeviceEvent { user: user.to_owned(), device: device.to_owned(), node: me.to_owned(), lost: how == Departure::Lost, instance: 0 };
    RoomsEvent { event: Some(rooms_event::Event::GraceOver(d)) }
}

/// Node `me` took out node `dead` (its heartbeat expired): `me` runs what it leaves behind.
pub fn node_lost(me: &str, dead: &str) -> RoomsEvent {
    RoomsEvent { event: Some(rooms_event::Event::NodeLost(NodeLostEvent { node: dead.to_owned(), runner: me.to_owned() })) }
}

/// Node `me` leaves gracefully: its graces go to `runner` (a live node, when it knows one: with
/// only involved devices announced, no other node may hold one), else to the lowest node still
/// holding a device.
pub fn leaving(me: &str, runner: Option<&str>) -> RoomsEvent {
    RoomsEvent {
        event: Some(rooms_event::Event::NodeLost(NodeLostEvent { node: me.to_owned(), runner: runner.unwrap_or_default().to_owned() })),
    }
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
    /// Devices the event may have involved: those connected here and not announced yet are
    /// announced if the replica now involves them ([`announces`]).
    pub involves: Involves,
    /// A page's `Here` from another node, (user, device, instance): this node's connection of
    /// that page, if any, is a dead socket it has not noticed (a page talks over one connection
    /// at a time), never to be announced late ([`RoomsNode::supersede`]).
    pub moved: Option<(String, String, u64)>,
}

/// See [`AfterApply::involves`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Involves {
    #[default]
    Nothing,
    /// (user, device): a call message's sender, or a device gone from another node (its
    /// sibling here may now run into its grace).
    Device(String, String),
    /// Every device (a node was lost: graces moved).
    All,
}

/// See [`AfterApply`]; `ended` is what [`AppCore::apply_rooms_event`] returned for `ev`.
pub fn after_apply(me: &str, ev: &RoomsEvent, ended: Option<Ended>) -> AfterApply {
    let involves = match &ev.event {
        Some(rooms_event::Event::Message(m)) => Involves::Device(m.user.clone(), m.device.clone()),
        Some(rooms_event::Event::Gone(d)) if d.node != me => Involves::Device(d.user.clone(), d.device.clone()),
        Some(rooms_event::Event::NodeLost(_)) => Involves::All,
        _ => Involves::Nothing,
    };
    let moved = match &ev.event {
        Some(rooms_event::Event::Here(d)) if d.node != me => Some((d.user.clone(), d.device.clone(), d.instance)),
        _ => None,
    };
    match &ev.event {
        Some(rooms_event::Event::GraceOver(d)) if d.node == me => AfterApply { hang_up: ended, announce: false, involves, moved },
        Some(rooms_event::Event::NodeLost(n)) if n.node == me => AfterApply { hang_up: None, announce: true, involves, moved },
        _ => AfterApply { involves, moved, ..AfterApply::default() },
    }
}

/// A page: (user, device, SDK instance).
pub type Page = (Arc<str>, Arc<str>, u64);

/// After a resync (or a report of its own death): makes what the replica says node `me` holds
/// true. `held`: the pages with a connection here, and whether each was announced; `known`:
/// what the replica thinks `me` holds ([`AppCore::rooms_held_by`]); `involved`: see
/// [`late_here`], for pages not announced yet. Pages gone meanwhile leave (`Gone`, lost); pages
/// here that were announced, or are to be announced late now, are announced again (`Here`).
/// Returns the events and the pages announced (to mark as such).
///
/// A page the replica holds on another node (`elsewhere`) is never announced again, even if it
/// was announced here: it reconnected there, and this node's connection is a dead socket it has
/// not noticed yet. (e2e `cluster.test.mjs` "a frozen node": the frozen node, told it was taken
/// for dead, re-announced the page whose live connection had moved on, took the page's new node
/// out of presence, and the old socket's close became a lost grace: the peer got a hangup.)
pub fn announcements(
    me: &str,
    held: &[(Page, bool)],
    known: &[Page],
    late: impl Fn(&Page) -> bool,
    elsewhere: impl Fn(&Page) -> bool,
) -> (Vec<RoomsEvent>, Vec<Page>) {
    let gone = known
        .iter()
        .filter(|k| !held.iter().any(|(h, _)| h == *k))
        .map(|(u, d, i)| presence_event(me, u, d, *i, Presence::Gone(Departure::Lost)));
    let here: Vec<Page> = held.iter().filter(|(p, a)| !elsewhere(p) && announces(*a, || late(p))).map(|(p, _)| p.clone()).collect();
    let events = gone.chain(here.iter().map(|(u, d, i)| presence_event(me, u, d, *i, Presence::Here))).collect();
    (events, here)
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
    /// Per page: its connections here, and whether its `Here` went out.
    pages: HashMap<Page, (usize, bool)>,
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
    /// the log, if any (the page's first connection, if `core`'s replica involves its device:
    /// [`announces`]).
    pub fn hold<C: Clone>(&mut self, core: &AppCore<C>, conn: ConnId, user: &str, device: &str, instance: u64) -> Option<RoomsEvent> {
        let key: Page = (Arc::from(user), Arc::from(device), instance);
        if self.conns.insert(conn, key.clone()).is_some() {
            return None;
        }
        let (n, announced) = self.pages.entry(key).or_insert((0, false));
        *n += 1;
        if *n == 1 && announces(*announced, || core.rooms_involve(user, device)) {
            *announced = true;
            Some(presence_event(&self.name, user, device, instance, Presence::Here))
        } else {
            None
        }
    }

    /// Connection `conn` ended (idempotent); the event to add to the log, if any (the page's
    /// last connection, if it was announced or its device is involved now: [`announces`]).
    pub fn release<C: Clone>(&mut self, core: &AppCore<C>, conn: ConnId, how: Departure) -> Option<RoomsEvent> {
        let key = self.conns.remove(&conn)?;
        let (n, announced) = self.pages.get_mut(&key)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        let announced = *announced;
        self.pages.remove(&key);
        announces(announced, || core.rooms_involve(&key.0, &key.1))
            .then(|| presence_event(&self.name, &key.0, &key.1, key.2, Presence::Gone(how)))
    }

    /// `Here` for each page of `device` of `user` connected here and not announced yet: before
    /// a call message of the device is routed (it may make the device a member).
    pub fn announce_device(&mut self, user: &str, device: &str) -> Vec<RoomsEvent> {
        let pages: Vec<Page> = self
            .pages
            .iter()
            .filter(|((u, d, _), (n, a))| **u == *user && **d == *device && *n > 0 && !*a)
            .map(|(p, _)| p.clone())
            .collect();
        self.announce(pages)
    }

    /// After an applied event: `Here` for the pages connected here, not announced yet, of the
    /// device(s) `involves` names, that are announced late ([`late_here`]).
    pub fn announce_involved<C: Clone>(&mut self, core: &AppCore<C>, involves: &Involves) -> Vec<RoomsEvent> {
        let named = |(u, d, _): &Page| match involves {
            Involves::Nothing => false,
            Involves::Device(user, device) => **u == **user && **d == **device,
            Involves::All => true,
        };
        let pages: Vec<Page> = self
            .pages
            .iter()
            .filter(|(p, (n, a))| *n > 0 && !*a && named(p))
            .map(|(p, _)| p.clone())
            .filter(|(u, d, i)| late_here(core, &self.name, u, d, *i))
            .collect();
        self.announce(pages)
    }

    /// `Here` for `pages` (connected here, not announced yet), in page order; marks them
    /// announced.
    fn announce(&mut self, mut pages: Vec<Page>) -> Vec<RoomsEvent> {
        pages.sort();
        for p in &pages {
            if let Some(h) = self.pages.get_mut(p) {
                h.1 = true;
            }
        }
        pages.iter().map(|(u, d, i)| presence_event(&self.name, u, d, *i, Presence::Here)).collect()
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
        let after = after_apply(&self.name, ev, ended);
        if let Some((u, d, i)) = &after.moved {
            self.supersede(u, d, *i);
        }
        after
    }

    /// Page `instance` of `device` of `user` connected on another node ([`AfterApply::moved`]):
    /// its connection here, if any, counts as announced (its `Here` went out elsewhere, newer),
    /// so it is never announced late; its `Gone` changes nothing in the replicas (its holder
    /// here is out of presence already). (The narrow case of a move here applied after this
    /// node's newer connection of the page is not told apart; that connection was announced at
    /// its connect or is at its call message.)
    pub fn supersede(&mut self, user: &str, device: &str, instance: u64) {
        if let Some(h) = self.pages.get_mut(&(Arc::from(user), Arc::from(device), instance)) {
            h.1 = true;
        }
    }

    /// `GraceOver` for each grace this node runs that is over now.
    pub fn graces_due<C: Clone>(&self, core: &mut AppCore<C>, now: Now) -> Vec<RoomsEvent> {
        core.rooms_graces_due(now, &self.name).into_iter().map(|(u, d, how)| grace_over(&self.name, &u, &d, how)).collect()
    }

    /// See [`announcements`]; the pages announced are marked so.
    pub fn announcements<C: Clone>(&mut self, core: &AppCore<C>) -> Vec<RoomsEvent> {
        let mut held: Vec<(Page, bool)> = self.pages.iter().map(|(p, (_, a))| (p.clone(), *a)).collect();
        held.sort();
        let (events, here) = announcements(
            &self.name,
            &held,
            &core.rooms_held_by(&self.name),
            |(u, d, i)| late_here(core, &self.name, u, d, *i),
            |(u, d, i)| core.rooms_page_held_elsewhere(u, d, *i, &self.name),
        );
        for p in &here {
            if let Some(h) = self.pages.get_mut(p) {
                h.1 = true;
            }
        }
        events
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

    fn core() -> AppCore<u8> {
        use std::time::Duration;
        let limits = crate::Limits {
            offline_ttl_ms: 1,
            offline_max_per_user: 1,
            window_ttl: Duration::from_secs(1),
            window_max: 1,
            max_connections_per_app: 10,
            left_grace: Duration::from_secs(1),
            lost_grace: Duration::from_secs(1),
            max_connections_per_user: 10,
            max_connections_per_device: 10,
            user_rate_per_sec: 1,
            user_rate_burst: 1,
            offline_quota_per_sender: 1,
            offline_quota_window: Duration::from_secs(1),
            offline_max_bytes: 1,
            store_queue_max: 1,
        };
        let mut core = AppCore::new(limits, 0, Now::default(), 1);
        core.replicate_rooms();
        core
    }

    #[test]
    fn a_page_is_here_once_announced_and_gone_with_its_last_connection() {
        let core = core();
        let mut n = RoomsNode::new("n1");
        assert_eq!(n.hold(&core, 1, "u", "d", 7), None, "a device in no call is not announced");
        assert_eq!(n.hold(&core, 2, "u", "d", 7), None, "a second connection of the page");
        assert_eq!(n.hold(&core, 2, "u", "d", 7), None, "held twice");
        assert!(n.announce_involved(&core, &Involves::Device("u".into(), "d".into())).is_empty(), "not involved");
        let here: Vec<_> = n.announce_device("u", "d").into_iter().map(|e| kind(&Some(e))).collect();
        assert_eq!(here, [Some(("here", "d".into(), false))], "before its call message");
        assert!(n.announce_device("u", "d").is_empty(), "once");
        assert_eq!(n.release(&core, 1, Departure::Left), None);
        assert_eq!(kind(&n.release(&core, 2, Departure::Lost)), Some(("gone", "d".into(), true)), "announced: its Gone goes out");
        assert_eq!(n.release(&core, 2, Departure::Lost), None, "idempotent");
        assert!(n.held().is_empty());
        // A page never announced leaves without a word.
        assert_eq!(n.hold(&core, 3, "u", "e", 1), None);
        assert_eq!(n.release(&core, 3, Departure::Left), None);
    }

    #[test]
    fn positions_and_what_an_apply_asks() {
        let mut n = RoomsNode::new("n1");
        assert_eq!(n.position(500), Position::Next, "an empty replica starts anywhere");
        n.applied = 500;
        assert_eq!((n.position(500), n.position(501), n.position(503)), (Position::Done, Position::Next, Position::Gap));
        assert_eq!(
            after_apply("n1", &node_lost("n2", "n1"), None),
            AfterApply { hang_up: None, announce: true, involves: Involves::All, moved: None }
        );
        assert_eq!(after_apply("n2", &node_lost("n2", "n1"), None), AfterApply { involves: Involves::All, ..AfterApply::default() });
        let held = [((Arc::from("u"), Arc::from("a"), 1), true)];
        let known = [(Arc::from("u"), Arc::from("b"), 2)];
        let (evs, here) = announcements("n1", &held, &known, |_| false, |_| false);
        let evs: Vec<_> = evs.into_iter().map(|e| kind(&Some(e))).collect();
        assert_eq!(evs, [Some(("gone", "b".into(), true)), Some(("here", "a".into(), false))]);
        assert_eq!(here, [held[0].0.clone()]);
    }

    #[test]
    fn only_announced_or_involved_pages_are_announced_again() {
        let held = [
            ((Arc::from("u"), Arc::from("a"), 1), false),
            ((Arc::from("u"), Arc::from("b"), 1), false),
            ((Arc::from("u"), Arc::from("c"), 1), true),
        ];
        let (evs, here) = announcements("n1", &held, &[], |(_, d, _)| &**d == "b", |_| false);
        let evs: Vec<_> = evs.into_iter().map(|e| kind(&Some(e))).collect();
        assert_eq!(evs, [Some(("here", "b".into(), false)), Some(("here", "c".into(), false))]);
        assert_eq!(here.len(), 2);
        // A page that reconnected to another node is not announced again from here, announced
        // before or not: this node's connection of it is a dead socket (a frozen node told it
        // was taken for dead).
        let (evs, here) = announcements("n1", &held, &[], |(_, d, _)| &**d == "b", |(_, d, _)| &**d != "a");
        assert!(evs.is_empty() && here.is_empty(), "{evs:?}");
        assert!(announces(true, || unreachable!("not asked once announced")));
        assert!(!announces(false, || false));
    }
}
