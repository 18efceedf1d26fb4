//! Call rooms on several nodes (issue 15, docs/cluster.md "Step 3, rooms"): the simulator's
//! nodes run the replicated rooms as the server's do, and must decide as one node would. The
//! cluster property test's findings, written out as plain sequences of operations.

mod common;

use rcall_sim::{DeviceId, Sim, CLEAN_GRACE_MS, CLIENT_DEAD_AFTER_MS, HEARTBEAT_MS, LOST_GRACE_MS};
use rtc_core::types::{end_reason, MediaType, SessionState};

/// Alice (device 0) calls bob (device 1) and he answers; with `nodes` > 1 alice is on node 0
/// and bob on node 1.
fn connected(nodes: usize) -> (Sim, DeviceId, DeviceId, String) {
    let mut sim = Sim::new();
    if nodes > 1 {
        sim.cluster(nodes);
    }
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let call_id = common::answer(&mut sim, a, b, MediaType::Audio);
    (sim, a, b, call_id)
}

/// Seed 591: bob's socket dies silently; his page notices first and comes back on another node
/// (`CLIENT_DEAD_AFTER_MS` < the server's 15 s), then closes its tab cleanly. One node drops a
/// page's dead socket when the page connects again, so the clean close ends his call 1 s later
/// (HANGUP). The replicas kept counting the dead socket's node as holding bob until that node
/// noticed it, and hung him up 20 s after the loss as lost (NETWORK_ERROR).
#[test]
fn a_page_back_on_another_node_then_closed_is_hung_up_as_on_one_node() {
    back_then_closed(0);
}

/// Seed 53792: the same, back on the same node. That node's core drops the page's dead socket
/// at once, but the simulator let the node keep counting it for the rooms until its pings ran
/// out (the server's connection task ends with the kill, and releases it).
#[test]
fn a_page_back_on_the_same_node_then_closed_is_hung_up_as_on_one_node() {
    back_then_closed(1);
}

/// Bob (on node 1 of 2) loses his socket silently, comes back on node `to`, closes his tab:
/// everything as on one node.
fn back_then_closed(to: usize) {
    let mut verdicts = Vec::new();
    for nodes in [1, 2] {
        let (mut sim, a, b, call_id) = connected(nodes);
        if nodes > 1 {
            assert_eq!(sim.node_of(b), Some(1));
            sim.connect_to(b, to);
        }
        let lost_at = sim.now();
        assert!(sim.silent_loss(b, 2_000));
        sim.run_for(CLIENT_DEAD_AFTER_MS + sim.reconnect_delay + 200);
        assert!(sim.is_connected(b), "{nodes} node(s): bob is back");
        if nodes > 1 {
            assert_eq!(sim.node_of(b), Some(to), "before node 1 noticed the dead socket");
        }
        let closed_at = sim.now();
        assert!(sim.close_tab(b));
        sim.run_for(30_000);
        assert_eq!(
            sim.verdicts,
            [(closed_at + CLEAN_GRACE_MS, b, call_id.clone(), end_reason::HANGUP)],
            "{nodes} node(s), lost at {lost_at}"
        );
        assert!(sim.engine(a).session(&call_id).is_none_or(|v| v.state == SessionState::End), "{nodes} node(s): alice's call ended");
        assert!(sim.checks().iter().all(|c| c.ok), "{nodes} node(s): {:?}", sim.checks());
        verdicts.push(sim.timeline(a));
    }
    assert_eq!(verdicts[0], verdicts[1], "alice sees the same on one node and on two");
}

/// A node dies while a member's connection on it is gone for good: the node that takes it out
/// (its beats 3 periods late) runs the member's lost grace, and hangs up for it.
#[test]
fn a_killed_nodes_member_that_never_comes_back_is_hung_up_for_by_the_node_that_took_it_out() {
    let (mut sim, a, b, call_id) = connected(2);
    // Bob's network goes for good; node 1 dies before noticing his dead socket.
    assert!(sim.silent_loss(b, 1_000_000));
    sim.run_for(1_000);
    let killed_at = sim.now();
    sim.kill_node(1);
    sim.run_for(4 * HEARTBEAT_MS + LOST_GRACE_MS + 1_000);
    let [(at, dev, ref call, reason)] = sim.verdicts[..] else { panic!("one verdict: {:?}", sim.verdicts) };
    assert_eq!((dev, call, reason), (b, &call_id, end_reason::NETWORK_ERROR));
    assert!(at >= killed_at + 2 * HEARTBEAT_MS + LOST_GRACE_MS, "taken out after 3 missed beats, then its grace: {at}");
    assert!(sim.engine(a).session(&call_id).is_none_or(|v| v.state == SessionState::End), "alice's call ended");
    assert!(sim.server_participants(&call_id).is_empty());
}

/// A node's subscribers drop for a while ([`Sim::bus_gap`]): the reply marker of its own
/// client's message and the deliveries published meanwhile are lost to it; at the resync it
/// answers the result it holds and reads the mailboxes, so the call goes on as if nothing had
/// happened, only later.
#[test]
fn a_subscriber_gap_delays_but_loses_nothing() {
    let mut sim = Sim::new();
    sim.cluster(2);
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    assert_eq!((sim.node_of(a), sim.node_of(b)), (Some(0), Some(1)));
    sim.bus_gap(1, 1_000);
    let call = sim.call(b, "alice", MediaType::Audio);
    sim.run_for(500);
    assert_eq!(sim.result(b, call), None, "the SendResult waits for the resync");
    let call_id = sim.incoming(a).expect("alice rings: her node heard it");
    sim.accept(a, &call_id);
    sim.run_for(300);
    assert!(!sim.timeline(b).iter().any(|l| l == "Accept(alice)"), "not yet: bob's node is deaf");
    sim.run_for(1_000);
    assert_eq!(sim.result(b, call).map(|r| r.1), Some(Some(call_id.clone())));
    assert!(sim.timeline(b).iter().any(|l| l == "Accept(alice)"), "{:?}", sim.timeline(b));
    sim.run_for(5_000);
    for dev in [a, b] {
        assert_eq!(sim.engine(dev).session(&call_id).map(|v| v.state), Some(SessionState::Keeping), "device {dev}");
    }
    let r = sim.delivery_report();
    assert!(r.duplicates.is_empty() && r.missing.is_empty() && r.unsent.is_empty(), "{r:?}");
}

/// Seed 32795: ann has a device on each node; cy calls her (and bo) in a group. While node 1's
/// subscribers are away, her device on node 0 rejects and the one on node 1 accepts at once.
/// The resync answered node 1's pending `SendResult` (the Accept confirmed) before reading the
/// mailboxes, so that device took the Accept as done before its sibling's earlier reject and
/// stayed in the call, alone: cy had seen ann leave. Answered where its marker was (behind the
/// user's copies up to the sender's own), the sibling's reject comes first, as on one node.
#[test]
fn a_resync_answers_a_send_in_its_place_behind_what_came_before_it() {
    let mut outcomes = Vec::new();
    for gap in [0, 2_000] {
        let mut sim = Sim::new();
        sim.cluster(2);
        let ann0 = sim.add_device("ann");
        let bo = sim.add_device("bo");
        let cy = sim.add_device("cy");
        let ann1 = sim.add_device("ann");
        sim.connect_to(ann0, 0);
        sim.connect_to(ann1, 1);
        for d in [ann0, ann1] {
            assert!(sim.drop_connection(d, 10));
        }
        sim.run_for(1_000);
        assert_eq!((sim.node_of(ann0), sim.node_of(ann1)), (Some(0), Some(1)));
        sim.call_in_group(cy, "g", &["ann", "bo"], MediaType::AudioVideo);
        sim.run_for(200);
        let call = sim.incoming(ann0).expect("ann rings");
        if gap > 0 {
            sim.bus_gap(1, gap);
        }
        sim.hangup(ann0, &call);
        sim.run_for(1);
        sim.accept(ann1, &call);
        sim.run_for(120_000);
        let live = |d: DeviceId| sim.engine(d).session(&call).is_some_and(|v| v.state != SessionState::End);
        assert_eq!(live(ann1), live(cy), "gap {gap}: ann's device and cy agree ({:?} / {:?})", sim.timeline(ann1), sim.timeline(cy));
        outcomes.push((live(ann1), sim.timeline(cy)));
        let _ = bo;
    }
    assert_eq!(outcomes[0], outcomes[1], "the gap changes only when, not what");
}

/// Only devices the rooms care about are announced, as on the server (one rule,
/// `delivery::rooms_node::announces`): a device in no call is in no replica's presence; the
/// caller's pages are announced just before its invite is routed, the callee's once the
/// applied invite involves it, and the call goes on as on one node.
#[test]
fn only_devices_in_calls_are_announced_to_the_rooms() {
    let mut sim = Sim::new();
    sim.cluster(2);
    let a = sim.add_device("alice");
    let b = sim.add_device("bob");
    let c = sim.add_device("carol");
    sim.run_for(1_000);
    for n in 0..2 {
        for d in [a, b, c] {
            assert!(sim.rooms_holders(n, d).is_empty(), "node {n}: dev{d} is in no call");
        }
    }
    let call_id = sim.dial(a, "bob", MediaType::Audio);
    sim.accept(b, &call_id);
    sim.run_for(1_000);
    assert_eq!(sim.engine(b).session(&call_id).map(|v| v.state), Some(SessionState::Keeping));
    for n in 0..2 {
        assert_eq!(sim.rooms_holders(n, a).len(), 1, "node {n}: the caller is announced");
        assert_eq!(sim.rooms_holders(n, b).len(), 1, "node {n}: the callee is announced");
        assert!(sim.rooms_holders(n, c).is_empty(), "node {n}: carol is still in no call");
    }
    assert!(sim.checks().iter().all(|c| c.ok), "{:?}", sim.checks());
}
