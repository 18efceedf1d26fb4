//! Which call each device is in, for `RCCallClient.getJoinedUserInfo` (CallLib asked its RTC
//! media server; rcall has none).
//!
//! The server follows the call messages it routes:
//! - A device joins call `c` when it sends `RC:VCInvite` for `c` (CallLib's caller joins its RTC
//!   room right after inviting) or `RC:VCAccept` for `c`. The invite's `inviteUserIds` are
//!   remembered as still ringing.
//! - A device leaves with its `RC:VCHangup` for `c`. A hangup from a ringing user (a rejection)
//!   only takes that user off the ringing list.
//! - A call with at most one participant left, counting the ringing users, is over: CallLib ends
//!   a session when nobody else remains. Its last device leaves too, although that device sends
//!   nothing.
//! - A device is in one call at a time, as an RTC client is in one room: joining another takes
//!   it out of the first. This also covers crossing calls merged into one.
//! - A device whose connections all closed is forgotten after [`GRACE`] unless it reconnects: a
//!   reload or a network change keeps a P2P call going.
//!
//! Where this differs from an RTC room: users whose ringing timed out are not seen (the callee
//! sends nothing then), so a call with an unanswered invitee ends only when someone hangs up.
//!
//! Bounded: a user has at most [`MAX_DEVICES`] entries and a call at most [`MAX_RINGING`]
//! ringing users, all created by the users' own messages; a call exists only while a device is
//! in it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc_core::proto::{call_content::Body, object_name, CallContent, JoinedDevice};

/// How long a disconnected device stays listed.
pub const GRACE: Duration = Duration::from_secs(60);
/// Entries per user (one per device); the oldest goes first.
pub const MAX_DEVICES: usize = 16;
/// Ringing users remembered per call.
pub const MAX_RINGING: usize = 64;

/// What a routed message means for membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The sender's device joins `call_id`; `invited` start ringing.
    Join {
        call_id: String,
        invited: Vec<String>,
    },
    /// The sender's device leaves `call_id` (or the sender rejects it).
    Leave { call_id: String },
}

/// Decodes only the three message types that change membership.
pub fn change_of(message_type: &str, content: &[u8]) -> Option<Change> {
    if ![
        object_name::INVITE,
        object_name::ACCEPT,
        object_name::HANGUP,
    ]
    .contains(&message_type)
    {
        return None;
    }
    let content = CallContent::from_bytes(content).ok()?;
    let call_id = content.call_id;
    if call_id.is_empty() {
        return None;
    }
    Some(match (message_type, content.body) {
        (object_name::HANGUP, _) => Change::Leave { call_id },
        (object_name::INVITE, Some(Body::Invite(i))) => Change::Join {
            call_id,
            invited: i.invite_user_ids,
        },
        _ => Change::Join {
            call_id,
            invited: Vec::new(),
        },
    })
}

struct Membership {
    device: Arc<str>,
    call_id: String,
    join_time: i64,
    /// When the device's last connection closed.
    gone_since: Option<Instant>,
}

#[derive(Default)]
struct Call {
    /// (user, device) in the call.
    members: Vec<(Arc<str>, Arc<str>)>,
    /// Invited users who have not answered.
    ringing: Vec<String>,
}

/// One app's call membership.
#[derive(Default)]
pub struct Rooms {
    users: HashMap<Arc<str>, Vec<Membership>>,
    calls: HashMap<String, Call>,
}

impl Rooms {
    /// Applies a message `device` of `user` sent (see [`change_of`]).
    pub fn apply(&mut self, user: &Arc<str>, device: &Arc<str>, change: Change, now_ms: i64) {
        match change {
            Change::Join { call_id, invited } => self.join(user, device, call_id, invited, now_ms),
            Change::Leave { call_id } => self.leave(user, device, &call_id),
        }
    }

    fn join(
        &mut self,
        user: &Arc<str>,
        device: &Arc<str>,
        call_id: String,
        invited: Vec<String>,
        now_ms: i64,
    ) {
        let here = self
            .users
            .get(user)
            .and_then(|l| l.iter().find(|m| m.device == *device))
            .map(|m| m.call_id.clone());
        match here {
            Some(c) if c == call_id => {}
            Some(other) => {
                self.take_out(user, device, &other);
                self.end_if_over(&other);
                self.add(user, device, &call_id, now_ms);
            }
            None => self.add(user, device, &call_id, now_ms),
        }
        let call = self.calls.entry(call_id).or_default();
        call.ringing.retain(|u| **u != **user);
        for u in invited {
            let known = u == **user
                || call.ringing.contains(&u)
                || call.members.iter().any(|(m, _)| **m == *u);
            if !known && call.ringing.len() < MAX_RINGING {
                call.ringing.push(u);
            }
        }
    }

    fn add(&mut self, user: &Arc<str>, device: &Arc<str>, call_id: &str, now_ms: i64) {
        let list = self.users.entry(user.clone()).or_default();
        if list.len() >= MAX_DEVICES {
            let oldest = (0..list.len())
                .min_by_key(|&i| list[i].join_time)
                .unwrap_or(0);
            let old = list.swap_remove(oldest);
            self.drop_member(user, &old.device, &old.call_id);
        }
        let list = self.users.entry(user.clone()).or_default();
        list.push(Membership {
            device: device.clone(),
            call_id: call_id.to_owned(),
            join_time: now_ms,
            gone_since: None,
        });
        self.calls
            .entry(call_id.to_owned())
            .or_default()
            .members
            .push((user.clone(), device.clone()));
    }

    fn leave(&mut self, user: &Arc<str>, device: &Arc<str>, call_id: &str) {
        let joined = self.users.get(user).is_some_and(|l| {
            l.iter()
                .any(|m| m.device == *device && m.call_id == call_id)
        });
        if joined {
            self.take_out(user, device, call_id);
        } else if let Some(call) = self.calls.get_mut(call_id) {
            call.ringing.retain(|u| **u != **user); // a rejection
        }
        self.end_if_over(call_id);
    }

    /// Removes the device's membership of `call_id` and its place in the call.
    fn take_out(&mut self, user: &str, device: &str, call_id: &str) {
        if let Some(list) = self.users.get_mut(user) {
            list.retain(|m| !(&*m.device == device && m.call_id == call_id));
            if list.is_empty() {
                self.users.remove(user);
            }
        }
        self.drop_member(user, device, call_id);
    }

    fn drop_member(&mut self, user: &str, device: &str, call_id: &str) {
        if let Some(call) = self.calls.get_mut(call_id) {
            call.members
                .retain(|(u, d)| !(&**u == user && &**d == device));
        }
    }

    /// A call with at most one participant left (members and ringing users) is over.
    fn end_if_over(&mut self, call_id: &str) {
        let over = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.members.len() + c.ringing.len() <= 1);
        if !over {
            return;
        }
        if let Some(call) = self.calls.remove(call_id) {
            for (user, device) in call.members {
                if let Some(list) = self.users.get_mut(&user) {
                    list.retain(|m| !(m.device == device && m.call_id == call_id));
                    if list.is_empty() {
                        self.users.remove(&user);
                    }
                }
            }
        }
    }

    /// The device's last connection closed (`connected` false), or it connected again.
    pub fn set_connected(&mut self, user: &str, device: &str, connected: bool, now: Instant) {
        let entry = self
            .users
            .get_mut(user)
            .and_then(|l| l.iter_mut().find(|m| &*m.device == device));
        if let Some(m) = entry {
            m.gone_since = if connected { None } else { Some(now) };
        }
    }

    /// The devices of `user` in a call, oldest join first.
    pub fn of(&mut self, user: &str, now: Instant) -> Vec<JoinedDevice> {
        self.expire(Some(user), now);
        let mut out: Vec<JoinedDevice> = self
            .users
            .get(user)
            .map(|l| {
                l.iter()
                    .map(|m| JoinedDevice {
                        device_id: m.device.to_string(),
                        call_id: m.call_id.clone(),
                        join_time: m.join_time,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|d| d.join_time);
        out
    }

    /// Forgets devices gone for longer than [`GRACE`] (the hub's periodic sweep).
    pub fn sweep(&mut self, now: Instant) {
        self.expire(None, now);
    }

    /// Expires the devices of `user` (all users if `None`) gone for longer than [`GRACE`].
    fn expire(&mut self, user: Option<&str>, now: Instant) {
        let mut expired: Vec<(Arc<str>, Arc<str>, String)> = Vec::new();
        for (u, list) in &self.users {
            if user.is_some_and(|want| **u != *want) {
                continue;
            }
            for m in list {
                if m.gone_since.is_some_and(|t| now.duration_since(t) >= GRACE) {
                    expired.push((u.clone(), m.device.clone(), m.call_id.clone()));
                }
            }
        }
        for (u, d, c) in expired {
            self.take_out(&u, &d, &c);
            self.end_if_over(&c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: &mut Rooms, user: &str) -> Vec<(String, String)> {
        r.of(user, Instant::now())
            .into_iter()
            .map(|d| (d.device_id, d.call_id))
            .collect()
    }

    fn pair(d: &str, c: &str) -> (String, String) {
        (d.to_string(), c.to_string())
    }

    fn join(c: &str, invited: &[&str]) -> Change {
        Change::Join {
            call_id: c.into(),
            invited: invited.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn leave(c: &str) -> Change {
        Change::Leave { call_id: c.into() }
    }

    fn ids_of(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|s| Arc::from(*s)).collect()
    }

    #[test]
    fn a_one_to_one_call_ends_for_both_with_either_hangup() {
        let [a, b, da, db] = ids_of(&["a", "b", "da", "db"]).try_into().unwrap();
        let mut r = Rooms::default();
        r.apply(&a, &da, join("c1", &["b"]), 1);
        assert_eq!(ids(&mut r, "a"), [pair("da", "c1")]);
        assert!(ids(&mut r, "b").is_empty(), "ringing is not joined");
        r.apply(&b, &db, join("c1", &[]), 2);
        assert_eq!(ids(&mut r, "b"), [pair("db", "c1")]);
        // A hangs up: B sends nothing, but the call is over for it too.
        r.apply(&a, &da, leave("c1"), 3);
        assert!(ids(&mut r, "a").is_empty() && ids(&mut r, "b").is_empty());
        assert!(r.calls.is_empty() && r.users.is_empty());
    }

    #[test]
    fn a_rejection_or_a_cancel_ends_the_callers_call() {
        let [a, b, da, db] = ids_of(&["a", "b", "da", "db"]).try_into().unwrap();
        let mut r = Rooms::default();
        r.apply(&a, &da, join("c1", &["b"]), 1);
        r.apply(&b, &db, leave("c1"), 2); // B rejects
        assert!(ids(&mut r, "a").is_empty());
        r.apply(&a, &da, join("c2", &["b"]), 3);
        r.apply(&a, &da, leave("c2"), 4); // A cancels
        assert!(r.calls.is_empty() && r.users.is_empty());
    }

    #[test]
    fn a_group_call_goes_on_while_two_remain_counting_ringing_users() {
        let [a, b, c, d, da, db, dc] = ids_of(&["a", "b", "c", "d", "da", "db", "dc"])
            .try_into()
            .unwrap();
        let mut r = Rooms::default();
        r.apply(&a, &da, join("g", &["b", "c"]), 1);
        r.apply(&b, &db, join("g", &[]), 2);
        r.apply(&a, &da, leave("g"), 3); // B and ringing C remain
        assert_eq!(ids(&mut r, "b"), [pair("db", "g")]);
        r.apply(&b, &db, join("g", &["d"]), 4); // B invites D: no change for B
        r.apply(&c, &dc, leave("g"), 5); // C rejects; B and ringing D remain
        assert_eq!(ids(&mut r, "b"), [pair("db", "g")]);
        r.apply(&d, &Arc::from("dd"), leave("g"), 6); // D rejects: B is alone
        assert!(ids(&mut r, "b").is_empty());
    }

    #[test]
    fn one_call_per_device_and_grace_after_disconnect() {
        let [a, b, da, da2, db] = ids_of(&["a", "b", "da", "da2", "db"]).try_into().unwrap();
        let mut r = Rooms::default();
        r.apply(&a, &da, join("c1", &["b"]), 1);
        r.apply(&a, &da2, join("c1", &[]), 2);
        r.apply(&b, &db, join("c1", &[]), 2);
        assert_eq!(ids(&mut r, "a"), [pair("da", "c1"), pair("da2", "c1")]);
        // da moves to c2; c1 still has da2 and db.
        r.apply(&a, &da, join("c2", &["x"]), 3);
        assert_eq!(ids(&mut r, "a"), [pair("da2", "c1"), pair("da", "c2")]);
        // A hangup for a call the device is not in does not take it out of its call.
        r.apply(&a, &da, leave("c1"), 4);
        assert_eq!(ids(&mut r, "a").len(), 2);
        // Disconnected: listed during the grace period, gone after it, unless back.
        let t0 = Instant::now();
        r.set_connected("b", "db", false, t0);
        assert_eq!(r.of("b", t0 + GRACE - Duration::from_secs(1)).len(), 1);
        r.set_connected("b", "db", true, t0);
        assert_eq!(r.of("b", t0 + GRACE * 2).len(), 1);
        r.set_connected("b", "db", false, t0);
        r.sweep(t0 + GRACE);
        assert!(r.of("b", t0).is_empty());
        // db left c1: da2 is alone there now, so c1 is over.
        assert_eq!(ids(&mut r, "a"), [pair("da", "c2")]);
    }

    #[test]
    fn entries_are_capped() {
        let u: Arc<str> = "u".into();
        let mut r = Rooms::default();
        for i in 0..(MAX_DEVICES as i64 + 5) {
            r.apply(&u, &Arc::from(format!("d{i}")), join("c", &[]), i);
        }
        let list = r.of("u", Instant::now());
        assert_eq!(list.len(), MAX_DEVICES);
        assert_eq!(list[0].device_id, "d5", "the oldest joins went first");
        assert_eq!(r.calls["c"].members.len(), MAX_DEVICES);
        let many: Vec<String> = (0..200).map(|i| format!("x{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        r.apply(&u, &Arc::from("d0"), join("big", &refs), 99);
        assert_eq!(r.calls["big"].ringing.len(), MAX_RINGING);
    }

    #[test]
    fn only_invite_accept_and_hangup_change_membership() {
        use rtc_core::proto::{Accept, Invite};
        let accept = CallContent {
            call_id: "c9".into(),
            body: Some(Body::Accept(Accept { media_type: 1 })),
            ..Default::default()
        }
        .to_bytes();
        let invite = CallContent {
            call_id: "c9".into(),
            body: Some(Body::Invite(Invite {
                invite_user_ids: vec!["b".into()],
                ..Default::default()
            })),
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(
            change_of(object_name::INVITE, &invite),
            Some(join("c9", &["b"]))
        );
        assert_eq!(
            change_of(object_name::ACCEPT, &accept),
            Some(join("c9", &[]))
        );
        assert_eq!(change_of(object_name::HANGUP, &accept), Some(leave("c9")));
        assert_eq!(change_of(object_name::RINGING, &accept), None);
        assert_eq!(change_of(object_name::ACCEPT, b"\xff\xff garbage"), None);
        assert_eq!(
            change_of(object_name::ACCEPT, &CallContent::default().to_bytes()),
            None
        );
    }
}
