//! Who is in which call, learned from the call messages the server routes: for
//! `RCCallClient.getJoinedUserInfo` (CallLib asked its RTC media server; rcall has none), to
//! keep strangers out of calls, and to end the participation of devices that are gone.
//!
//! Membership:
//! - A device joins call `c` when it sends `RC:VCInvite` for `c` (CallLib's caller joins its RTC
//!   room right after inviting) or `RC:VCAccept` for `c`. Invitees (`inviteUserIds` of
//!   `RC:VCInvite` and `RC:VCModifyMem`) are remembered as still ringing, per user.
//! - A device leaves with its `RC:VCHangup` for `c`. A hangup from a ringing user (a rejection)
//!   only takes that user off the ringing list.
//! - A call with no member device, or with at most one participant left counting the ringing
//!   users, is over: CallLib ends a session when nobody else remains. Its last device leaves
//!   too, although that device sends nothing.
//! - A device is in one call at a time, as an RTC client is in one room: joining another takes
//!   it out of the first. This also covers crossing calls merged into one.
//! - Rooms live in memory only. A call message other than `RC:VCInvite`, `RC:VCRinging` and
//!   `RC:VCHangup` for a call id the server does not know and did not see end (e.g. a call
//!   that went on through a server restart) makes its sender's device a member and the
//!   message's recipients participants; in such a learned call each participant device that
//!   sends anything but a ringing becomes a member too. So the rules below hold for calls that
//!   survived a restart once they send anything (a device that only rings is not a member).
//!
//! Access (issue 11): for a call the server knows, only its participants may send its call
//! messages — a user with a member device or a ringing user (checked per user: a user's devices
//! share one identity for the engine); `RC:VCInvite` and `RC:VCModifyMem` only from a member
//! device or the call's inviter (any participant in a learned call). Anything else is refused
//! with `NOT_IN_CALL`. An unknown call id is allowed (and learned, above): the server cannot
//! tell a new call from one it forgot. Messages are judged by their `CallContent` body, which is
//! what the engine acts on; a body that is not of the message's type is refused.
//!
//! Gone participants (issue 10): when the last connection of a member device closes, the device
//! gets a grace ([`LEFT_GRACE`] after a clean close, [`LOST_GRACE`] otherwise). A device that
//! was lost keeps its call by connecting again within the grace; one that closed cleanly (its
//! page went away, or reloaded and has no call any more) only by sending a message of that call.
//! Otherwise the server sends `RC:VCHangup` for the call on its behalf (see [`Ended`]) when the
//! grace is over, and it leaves the call.
//!
//! `getJoinedUserInfo` answers with call ids and device ids only to the user itself and to
//! participants of the same call; anyone else gets one entry per device in a call with empty
//! `call_id` and `device_id` (and the real `join_time`), enough to tell "in a call" from "not".
//!
//! Where this differs from an RTC room: users whose ringing timed out are not seen (the callee
//! sends nothing then), so a call with an unanswered invitee ends only when someone hangs up.
//!
//! Bounded: user ids are validated ([`valid_user_id`]), a user has at most [`MAX_DEVICES`]
//! member devices and a call at most [`MAX_RINGING`] ringing users, all created by the users'
//! own messages; a call exists only while a device is in it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use rtc_core::proto::{conversation_type, object_name, JoinedDevice, UserProfile};
use rtc_core::types::end_reason;

use crate::Departure;

/// Grace after a clean close (tab closed, reload, `disconnect()`): the SDK's own hangup on
/// `pagehide` normally comes first; this is the fallback, short enough that the others hear
/// of it within 2 s, long enough for a page that reconnects at once and goes on with its call
/// to keep it.
pub const LEFT_GRACE: Duration = Duration::from_secs(1);
/// Grace after a lost connection: a device that merely reconnects (network change, the
/// server's dead-peer detection racing the client's reconnect) keeps its call; a crashed
/// renderer is still reported within 10 s, a dead network within the ping deadline + 5 s.
pub const LOST_GRACE: Duration = Duration::from_secs(5);
/// Member devices per user; the oldest join goes first.
pub const MAX_DEVICES: usize = 16;
/// Ringing users remembered per call; an invite that would exceed it is refused.
pub const MAX_RINGING: usize = 64;
/// Longest user id in a target, recipient or invitee list: the same limit as
/// `/user/getToken.json`, so every user who can connect can be called.
pub const MAX_USER_ID_CHARS: usize = 64;
/// Ended calls remembered per app, so late messages crossing a hangup (ICE candidates, an
/// answer racing the server's hangup) are not taken for a call that survived a restart.
pub const MAX_ENDED: usize = 4096;
/// Largest sender profile remembered per member for the hangups the server sends for it.
const MAX_PROFILE_BYTES: usize = 512;

/// A user id the server routes to: 1 to [`MAX_USER_ID_CHARS`] characters, no control
/// characters (NUL included).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_USER_ID_CHARS && !id.chars().any(char::is_control)
}

/// What kind of call message, as far as membership is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invite,
    ModifyMem,
    Accept,
    Ringing,
    Hangup,
    /// Media, mute, media type changes.
    Other,
}

/// A call message, decoded outside the hub's lock.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMsg {
    pub kind: Kind,
    pub call_id: String,
    /// Invitees of an invite or member modification.
    pub invited: Vec<String>,
    pub profile: Option<UserProfile>,
}

/// A `CallContent` decoded only as far as membership needs: invitees, but no SDP.
#[derive(Clone, PartialEq, prost::Message)]
struct Head {
    #[prost(string, tag = "3")]
    call_id: String,
    #[prost(message, optional, tag = "4")]
    user: Option<UserProfile>,
    #[prost(oneof = "HeadBody", tags = "10, 11, 12, 13, 14, 15, 16, 17")]
    body: Option<HeadBody>,
}

/// `call_content::Body` with the bodies membership does not read left undecoded.
#[derive(Clone, PartialEq, prost::Oneof)]
enum HeadBody {
    #[prost(message, tag = "10")]
    Invite(rtc_core::proto::Invite),
    #[prost(message, tag = "11")]
    Ringing(Skipped),
    #[prost(message, tag = "12")]
    Accept(Skipped),
    #[prost(message, tag = "13")]
    Hangup(Skipped),
    #[prost(message, tag = "14")]
    ModifyMem(rtc_core::proto::ModifyMem),
    #[prost(message, tag = "15")]
    ModifyMedia(Skipped),
    #[prost(message, tag = "16")]
    Media(Skipped),
    #[prost(message, tag = "17")]
    Mute(Skipped),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Skipped {}

/// `Ok(None)` for anything the call engine ignores (not a call message type, no body, no call
/// id), routed as before. `Err` for a body that is not what the message type says (the engine
/// acts on the body, so the server must judge the same thing) and for invitees with a bad user
/// id or too many of them.
pub fn parse(message_type: &str, content: &[u8]) -> Result<Option<CallMsg>, &'static str> {
    if !object_name::ALL.contains(&message_type) {
        return Ok(None);
    }
    let Ok(head) = Head::decode(content) else {
        return Ok(None);
    };
    let Some(body) = head.body else {
        return Ok(None);
    };
    if head.call_id.is_empty() {
        return Ok(None);
    }
    let (kind, name, invited) = match body {
        // Observers are invited too (they may answer).
        HeadBody::Invite(i) => (
            Kind::Invite,
            object_name::INVITE,
            [i.invite_user_ids, i.observer_user_ids].concat(),
        ),
        HeadBody::ModifyMem(m) => (
            Kind::ModifyMem,
            object_name::MODIFY_MEM,
            [m.invite_user_ids, m.observer_user_ids].concat(),
        ),
        HeadBody::Accept(_) => (Kind::Accept, object_name::ACCEPT, Vec::new()),
        HeadBody::Ringing(_) => (Kind::Ringing, object_name::RINGING, Vec::new()),
        HeadBody::Hangup(_) => (Kind::Hangup, object_name::HANGUP, Vec::new()),
        HeadBody::ModifyMedia(_) => (Kind::Other, object_name::MODIFY_MEDIA, Vec::new()),
        HeadBody::Media(_) => (Kind::Other, object_name::MEDIA, Vec::new()),
        HeadBody::Mute(_) => (Kind::Other, object_name::MUTE, Vec::new()),
    };
    if name != message_type {
        return Err("the message type does not match its content");
    }
    if invited.len() > MAX_RINGING {
        return Err("too many invitees");
    }
    if !invited.iter().all(|u| valid_user_id(u)) {
        return Err("invalid invitee id");
    }
    let profile = head.user.filter(|p| p.encoded_len() <= MAX_PROFILE_BYTES);
    Ok(Some(CallMsg {
        kind,
        call_id: head.call_id,
        invited,
        profile,
    }))
}

/// The rooms as they outlive a graceful restart (the server stores them at shutdown and loads
/// them at start), so a member that never comes back is still hung up for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RoomsSnapshot {
    #[prost(message, repeated, tag = "1")]
    pub calls: Vec<CallSnapshot>,
    /// Recently ended call ids, oldest first.
    #[prost(string, repeated, tag = "2")]
    pub ended: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CallSnapshot {
    #[prost(string, tag = "1")]
    pub call_id: String,
    #[prost(message, repeated, tag = "2")]
    pub members: Vec<MemberSnapshot>,
    #[prost(string, repeated, tag = "3")]
    pub ringing: Vec<String>,
    /// Empty when not known.
    #[prost(string, tag = "4")]
    pub inviter: String,
    #[prost(bool, tag = "5")]
    pub answered: bool,
    #[prost(bool, tag = "6")]
    pub learned: bool,
    #[prost(string, repeated, tag = "7")]
    pub left: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberSnapshot {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub device: String,
    #[prost(int32, tag = "3")]
    pub conversation_type: i32,
    #[prost(string, tag = "4")]
    pub target_id: String,
    #[prost(string, tag = "5")]
    pub channel_id: String,
    #[prost(bool, tag = "6")]
    pub inviter: bool,
    #[prost(message, optional, tag = "7")]
    pub profile: Option<UserProfile>,
    #[prost(int64, tag = "8")]
    pub join_time: i64,
}

/// How a member's messages are addressed, to address the hangup sent on its behalf alike.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    pub conversation_type: i32,
    /// As the member sent it: the other user (PRIVATE) or the group id (GROUP).
    pub target_id: String,
    pub channel_id: String,
}

/// Why a call message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sender is not a participant of that (known) call.
    NotInCall,
    /// The call would have more than [`MAX_RINGING`] ringing users.
    TooManyInvitees,
}

/// A gone device's participation ended: the hub sends `RC:VCHangup { reason }` for `call_id`
/// as if `device` of `user` had sent it, addressed like its own messages (`route`), to every
/// other participant (`recipients`) and to every device of `user`, the gone one included.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub user: Arc<str>,
    pub device: Arc<str>,
    pub call_id: String,
    /// 7 NETWORK_ERROR when lost; 1 CANCEL when the inviter left before anyone answered;
    /// 3 HANGUP otherwise.
    pub reason: i32,
    pub route: Route,
    pub profile: Option<UserProfile>,
    pub recipients: Vec<String>,
}

struct Member {
    user: Arc<str>,
    device: Arc<str>,
    route: Route,
    /// Joined with its own invite.
    inviter: bool,
    profile: Option<UserProfile>,
}

#[derive(Default)]
struct Call {
    members: Vec<Member>,
    /// Invited users who have not answered (for a learned call: recipients not seen yet).
    ringing: Vec<String>,
    /// The user whose invite created the call.
    inviter: Option<Arc<str>>,
    /// Someone accepted (or the call was learned from its traffic).
    answered: bool,
    /// Learned from traffic: every participant device that sends is a member.
    learned: bool,
    /// Users who were in it or invited and left (at most [`MAX_RINGING`], the latest): their
    /// late hangups are delivered (an engine may hang up to each peer it still counts), while
    /// anything else from them is refused like a stranger's.
    left: Vec<String>,
}

impl Call {
    fn has_user(&self, user: &str) -> bool {
        self.members.iter().any(|m| *m.user == *user)
    }

    fn is_participant(&self, user: &str) -> bool {
        self.has_user(user) || self.ringing.iter().any(|u| u == user)
    }

    /// The users of `invited` not yet in the call, at most once each.
    fn newcomers<'a>(&self, user: &str, invited: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut new: Vec<String> = Vec::new();
        for u in invited {
            if u != user && !self.is_participant(u) && !new.iter().any(|n| n == u) {
                new.push(u.to_owned());
            }
        }
        new
    }
}

struct Seat {
    device: Arc<str>,
    call_id: String,
    join_time: i64,
}

struct Grace {
    user: Arc<str>,
    device: Arc<str>,
    /// On the core's monotonic clock ([`crate::Now::mono`]).
    deadline: Duration,
    departure: Departure,
}

/// One app's call membership.
pub struct Rooms {
    /// user → the calls its devices are members of.
    seats: HashMap<Arc<str>, Vec<Seat>>,
    calls: HashMap<String, Call>,
    /// Member devices with no connection left.
    graces: Vec<Grace>,
    /// Recently ended calls, oldest first (at most [`MAX_ENDED`]).
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
    left_grace: Duration,
    lost_grace: Duration,
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new(LEFT_GRACE, LOST_GRACE)
    }
}

impl Rooms {
    pub fn new(left_grace: Duration, lost_grace: Duration) -> Self {
        Self {
            seats: HashMap::new(),
            calls: HashMap::new(),
            graces: Vec::new(),
            ended: HashSet::new(),
            ended_order: VecDeque::new(),
            left_grace,
            lost_grace,
        }
    }

    /// Checks a call message `device` of `user` sends to `recipients` (the users it will reach,
    /// the sender's own excluded) and applies it; nothing changes when it is refused.
    pub fn admit(
        &mut self,
        user: &Arc<str>,
        device: &Arc<str>,
        msg: &CallMsg,
        route: &Route,
        recipients: &[&str],
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let joined = |m: &Member| m.user == *user && m.device == *device;
        let Some(call) = self.calls.get_mut(&msg.call_id) else {
            if self.ended.contains(&msg.call_id) {
                return Ok(()); // over: its late messages change nothing
            }
            return match msg.kind {
                Kind::Hangup | Kind::Ringing => Ok(()),
                Kind::Invite => {
                    self.join(user, device, msg, route, now_ms);
                    let call = self.calls.get_mut(&msg.call_id).expect("just joined");
                    call.inviter = Some(user.clone());
                    if let Some(m) = call.members.iter_mut().find(|m| joined(m)) {
                        m.inviter = true;
                    }
                    let new = call.newcomers(user, msg.invited.iter().map(String::as_str));
                    call.ringing.extend(new); // parse() bounded them
                    Ok(())
                }
                Kind::ModifyMem | Kind::Accept | Kind::Other => {
                    self.join(user, device, msg, route, now_ms);
                    let call = self.calls.get_mut(&msg.call_id).expect("just joined");
                    call.answered = true;
                    call.learned = true;
                    let all = recipients
                        .iter()
                        .copied()
                        .chain(msg.invited.iter().map(String::as_str));
                    let mut new = call.newcomers(user, all);
                    new.truncate(MAX_RINGING);
                    call.ringing = new;
                    Ok(())
                }
            };
        };
        let device_in = call.members.iter().any(joined);
        if device_in {
            self.cancel_grace(user, device, None); // it is still in its call
        }
        let call = self.calls.get_mut(&msg.call_id).expect("looked up above");
        match msg.kind {
            Kind::Invite | Kind::ModifyMem => {
                // (A learned call does not know its inviter: any participant may.)
                let learned_in = call.learned && call.is_participant(user);
                if !device_in && call.inviter.as_ref() != Some(user) && !learned_in {
                    return Err(Refusal::NotInCall);
                }
                let new = call.newcomers(user, msg.invited.iter().map(String::as_str));
                if call.ringing.len() + new.len() > MAX_RINGING {
                    return Err(Refusal::TooManyInvitees);
                }
                call.ringing.extend(new);
                if device_in {
                    self.update(user, device, msg, route);
                } else if learned_in {
                    call.ringing.retain(|u| **u != **user);
                    self.join(user, device, msg, route, now_ms);
                }
                Ok(())
            }
            Kind::Hangup if !call.is_participant(user) && call.left.iter().any(|u| **u == **user) => Ok(()),
            _ if !call.is_participant(user) => Err(Refusal::NotInCall),
            Kind::Accept => {
                call.ringing.retain(|u| **u != **user);
                call.answered = true;
                // A user is in a call on one device: of two devices answering at once the first
                // is in, and the other ends itself (101) without a word to the others.
                if !call.members.iter().any(|m| m.user == *user && m.device != *device) {
                    self.join(user, device, msg, route, now_ms);
                }
                Ok(())
            }
            Kind::Hangup => {
                if device_in {
                    self.take_out(user, device, &msg.call_id);
                } else {
                    call.ringing.retain(|u| **u != **user); // a rejection
                }
                if let Some(call) = self.calls.get_mut(&msg.call_id) {
                    if !call.is_participant(user) && !call.left.iter().any(|u| **u == **user) {
                        if call.left.len() >= MAX_RINGING {
                            call.left.remove(0);
                        }
                        call.left.push(user.to_string());
                    }
                }
                self.end_if_over(&msg.call_id);
                Ok(())
            }
            Kind::Other if !device_in && call.learned => {
                call.ringing.retain(|u| **u != **user);
                self.join(user, device, msg, route, now_ms);
                Ok(())
            }
            Kind::Ringing | Kind::Other => {
                if device_in {
                    self.update(user, device, msg, route);
                }
                Ok(())
            }
        }
    }

    /// Keeps the member's addressing and profile current.
    fn update(&mut self, user: &str, device: &str, msg: &CallMsg, route: &Route) {
        if let Some(m) = self.calls.get_mut(&msg.call_id).and_then(|c| {
            c.members
                .iter_mut()
                .find(|m| *m.user == *user && *m.device == *device)
        }) {
            if m.route != *route {
                m.route = route.clone();
            }
            if msg.profile.is_some() {
                m.profile = msg.profile.clone();
            }
        }
    }

    /// Makes the device a member of `msg.call_id` (creating the call), out of any other call.
    fn join(
        &mut self,
        user: &Arc<str>,
        device: &Arc<str>,
        msg: &CallMsg,
        route: &Route,
        now_ms: i64,
    ) {
        let call_id = &msg.call_id;
        let here = self
            .seats
            .get(user)
            .and_then(|l| l.iter().find(|s| s.device == *device))
            .map(|s| s.call_id.clone());
        match here {
            Some(c) if c == *call_id => return self.update(user, device, msg, route),
            Some(other) => {
                self.take_out(user, device, &other);
                self.end_if_over(&other);
            }
            None => {}
        }
        let list = self.seats.entry(user.clone()).or_default();
        if list.len() >= MAX_DEVICES {
            let oldest = (0..list.len())
                .min_by_key(|&i| list[i].join_time)
                .unwrap_or(0);
            let old = list[oldest].device.clone();
            let old_call = list[oldest].call_id.clone();
            self.take_out(user, &old, &old_call);
            self.end_if_over(&old_call);
        }
        self.seats.entry(user.clone()).or_default().push(Seat {
            device: device.clone(),
            call_id: call_id.clone(),
            join_time: now_ms,
        });
        self.calls
            .entry(call_id.clone())
            .or_default()
            .members
            .push(Member {
                user: user.clone(),
                device: device.clone(),
                route: route.clone(),
                inviter: false,
                profile: msg.profile.clone(),
            });
    }

    /// Removes the device's seat in `call_id` and its place in the call.
    fn take_out(&mut self, user: &str, device: &str, call_id: &str) {
        if let Some(list) = self.seats.get_mut(user) {
            list.retain(|s| !(&*s.device == device && s.call_id == call_id));
            if list.is_empty() {
                self.seats.remove(user);
            }
        }
        if let Some(call) = self.calls.get_mut(call_id) {
            call.members
                .retain(|m| !(&*m.user == user && &*m.device == device));
        }
    }

    /// A call with no member, or with at most one participant (members and ringing users), is
    /// over.
    fn end_if_over(&mut self, call_id: &str) {
        let over = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.members.is_empty() || c.members.len() + c.ringing.len() <= 1);
        if !over {
            return;
        }
        if let Some(call) = self.calls.remove(call_id) {
            if self.ended.insert(call_id.to_owned()) {
                self.ended_order.push_back(call_id.to_owned());
                if self.ended_order.len() > MAX_ENDED {
                    if let Some(old) = self.ended_order.pop_front() {
                        self.ended.remove(&old);
                    }
                }
            }
            for m in call.members {
                if let Some(list) = self.seats.get_mut(&m.user) {
                    list.retain(|s| !(s.device == m.device && s.call_id == call_id));
                    if list.is_empty() {
                        self.seats.remove(&m.user);
                    }
                }
            }
        }
    }

    fn call_of(&self, user: &str, device: &str) -> Option<&str> {
        self.seats
            .get(user)?
            .iter()
            .find(|s| &*s.device == device)
            .map(|s| s.call_id.as_str())
    }

    /// The device's last connection closed: a member starts its grace.
    pub fn disconnected(
        &mut self,
        user: &Arc<str>,
        device: &Arc<str>,
        how: Departure,
        now: Duration,
    ) {
        self.cancel_grace(user, device, None);
        if self.call_of(user, device).is_none() {
            return;
        }
        let grace = match how {
            Departure::Left => self.left_grace,
            Departure::Lost => self.lost_grace,
        };
        self.graces.push(Grace {
            user: user.clone(),
            device: device.clone(),
            deadline: now + grace,
            departure: how,
        });
    }

    /// The device connected (again). After a lost connection it keeps its call. After a clean
    /// close it is a new page (a reload) that has no call, unless it shows otherwise by sending
    /// a message of its call within the grace ([`Self::admit`]).
    pub fn connected(&mut self, user: &str, device: &str) {
        self.cancel_grace(user, device, Some(Departure::Lost));
    }

    /// Ends the grace of the device (only one after `how`, if given).
    fn cancel_grace(&mut self, user: &str, device: &str, how: Option<Departure>) {
        if !self.graces.is_empty() {
            self.graces.retain(|g| {
                !(&*g.user == user && &*g.device == device && how.is_none_or(|h| h == g.departure))
            });
        }
    }

    /// Whether any grace is running (the hub's timer skips the rest when not).
    pub fn has_graces(&self) -> bool {
        !self.graces.is_empty()
    }

    /// Ends the participation of every device whose grace is over; the hub sends the hangups.
    pub fn due(&mut self, now: Duration) -> Vec<Ended> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.graces.len() {
            if self.graces[i].deadline > now {
                i += 1;
                continue;
            }
            let g = self.graces.swap_remove(i);
            if let Some(e) = self.end_participation(&g) {
                out.push(e);
            }
        }
        out
    }

    fn end_participation(&mut self, g: &Grace) -> Option<Ended> {
        let call_id = self.call_of(&g.user, &g.device)?.to_owned();
        let call = self.calls.get(&call_id)?;
        let m = call
            .members
            .iter()
            .find(|m| m.user == g.user && m.device == g.device)?;
        // Another device of the user is still in the call: a hangup from the user would end
        // the call for it too (the engine tracks users), so this device leaves quietly.
        let quietly = call
            .members
            .iter()
            .any(|o| o.user == g.user && o.device != g.device);
        let ended = (!quietly).then(|| {
            let reason = match g.departure {
                Departure::Lost => end_reason::NETWORK_ERROR,
                Departure::Left if m.inviter && !call.answered => end_reason::CANCEL,
                Departure::Left => end_reason::HANGUP,
            };
            let mut recipients: Vec<String> = call
                .members
                .iter()
                .filter(|o| o.user != g.user)
                .map(|o| o.user.to_string())
                .chain(call.ringing.iter().cloned())
                .collect();
            recipients.sort_unstable();
            recipients.dedup();
            Ended {
                user: g.user.clone(),
                device: g.device.clone(),
                call_id: call_id.clone(),
                reason,
                route: m.route.clone(),
                profile: m.profile.clone(),
                recipients,
            }
        });
        self.take_out(&g.user, &g.device, &call_id);
        self.end_if_over(&call_id);
        ended
    }

    /// The devices of `user` in a call, oldest join first, as `asker` may see them.
    pub fn of(&self, asker: &str, user: &str) -> Vec<JoinedDevice> {
        let mut out: Vec<JoinedDevice> = self
            .seats
            .get(user)
            .map(|l| {
                l.iter()
                    .map(|s| {
                        let open = asker == user
                            || self
                                .calls
                                .get(&s.call_id)
                                .is_some_and(|c| c.is_participant(asker));
                        JoinedDevice {
                            device_id: if open {
                                s.device.to_string()
                            } else {
                                String::new()
                            },
                            call_id: if open {
                                s.call_id.clone()
                            } else {
                                String::new()
                            },
                            join_time: s.join_time,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|d| d.join_time);
        out
    }

    /// (calls, member devices, ringing users) held, for tests and limits (ended calls are
    /// remembered apart, at most [`MAX_ENDED`]).
    /// Everything but the graces, to outlive a restart (see [`RoomsSnapshot`]).
    pub fn snapshot(&self) -> RoomsSnapshot {
        let join_time = |user: &Arc<str>, device: &Arc<str>| {
            self.seats.get(user).and_then(|l| l.iter().find(|s| s.device == *device)).map_or(0, |s| s.join_time)
        };
        let mut calls: Vec<CallSnapshot> = self
            .calls
            .iter()
            .map(|(id, c)| CallSnapshot {
                call_id: id.clone(),
                members: c
                    .members
                    .iter()
                    .map(|m| MemberSnapshot {
                        user: m.user.to_string(),
                        device: m.device.to_string(),
                        conversation_type: m.route.conversation_type,
                        target_id: m.route.target_id.clone(),
                        channel_id: m.route.channel_id.clone(),
                        inviter: m.inviter,
                        profile: m.profile.clone(),
                        join_time: join_time(&m.user, &m.device),
                    })
                    .collect(),
                ringing: c.ringing.clone(),
                inviter: c.inviter.as_deref().unwrap_or("").to_owned(),
                answered: c.answered,
                learned: c.learned,
                left: c.left.clone(),
            })
            .collect();
        calls.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        RoomsSnapshot { calls, ended: self.ended_order.iter().cloned().collect() }
    }

    /// The rooms of a [`Self::snapshot`] taken before a restart. Every member device starts a
    /// lost-connection grace now: one that reconnects keeps its call ([`Self::connected`]),
    /// one that does not come back is hung up for, as if its connection had been lost now.
    pub fn restore(&mut self, snap: RoomsSnapshot, now: Duration) {
        for c in snap.calls {
            let mut call = Call {
                ringing: c.ringing,
                inviter: (!c.inviter.is_empty()).then(|| Arc::from(c.inviter.as_str())),
                answered: c.answered,
                learned: c.learned,
                left: c.left,
                ..Call::default()
            };
            for m in c.members {
                let (user, device): (Arc<str>, Arc<str>) = (Arc::from(m.user.as_str()), Arc::from(m.device.as_str()));
                self.seats.entry(user.clone()).or_default().push(Seat { device: device.clone(), call_id: c.call_id.clone(), join_time: m.join_time });
                self.graces.push(Grace { user: user.clone(), device: device.clone(), deadline: now + self.lost_grace, departure: Departure::Lost });
                call.members.push(Member {
                    user,
                    device,
                    route: Route { conversation_type: m.conversation_type, target_id: m.target_id, channel_id: m.channel_id },
                    inviter: m.inviter,
                    profile: m.profile,
                });
            }
            self.calls.insert(c.call_id, call);
        }
        for id in snap.ended {
            if self.ended.insert(id.clone()) {
                self.ended_order.push_back(id);
            }
        }
    }

    /// The member devices of `call_id`, as (user, device).
    pub fn members(&self, call_id: &str) -> Vec<(Arc<str>, Arc<str>)> {
        self.calls.get(call_id).map(|c| c.members.iter().map(|m| (m.user.clone(), m.device.clone())).collect()).unwrap_or_default()
    }

    /// When the next grace runs out ([`Self::due`] has something then).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.graces.iter().map(|g| g.deadline).min()
    }

    pub fn size(&self) -> (usize, usize, usize) {
        let members = self.calls.values().map(|c| c.members.len()).sum();
        let ringing = self.calls.values().map(|c| c.ringing.len()).sum();
        (self.calls.len(), members, ringing)
    }
}

/// How a message with this envelope is addressed (for [`Rooms::admit`]).
pub fn route_of(conversation_type: i32, target_id: &str, channel_id: &str) -> Route {
    debug_assert!(
        conversation_type == conversation_type::PRIVATE
            || conversation_type == conversation_type::GROUP
    );
    Route {
        conversation_type,
        target_id: target_id.to_owned(),
        channel_id: channel_id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn msg(kind: Kind, c: &str, invited: &[&str]) -> CallMsg {
        CallMsg {
            kind,
            call_id: c.into(),
            invited: invited.iter().map(|s| s.to_string()).collect(),
            profile: None,
        }
    }

    fn private(to: &str) -> Route {
        route_of(conversation_type::PRIVATE, to, "")
    }

    /// Sends `kind` for call `c` from `user`/`device` to `to`.
    fn send(
        r: &mut Rooms,
        user: &str,
        device: &str,
        kind: Kind,
        c: &str,
        to: &[&str],
        t: i64,
    ) -> Result<(), Refusal> {
        let invited: Vec<&str> = if kind == Kind::Invite {
            to.to_vec()
        } else {
            Vec::new()
        };
        r.admit(
            &a(user),
            &a(device),
            &msg(kind, c, &invited),
            &private(to.first().copied().unwrap_or("")),
            to,
            t,
        )
    }

    fn ids(r: &Rooms, user: &str) -> Vec<(String, String)> {
        r.of(user, user)
            .into_iter()
            .map(|d| (d.device_id, d.call_id))
            .collect()
    }

    fn pair(d: &str, c: &str) -> (String, String) {
        (d.to_string(), c.to_string())
    }

    #[test]
    fn a_one_to_one_call_ends_for_both_with_either_hangup() {
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b"], 1).unwrap();
        assert_eq!(ids(&r, "a"), [pair("da", "c1")]);
        assert!(ids(&r, "b").is_empty(), "ringing is not joined");
        send(&mut r, "b", "db", Kind::Ringing, "c1", &["a"], 2).unwrap();
        send(&mut r, "b", "db", Kind::Accept, "c1", &["a"], 2).unwrap();
        assert_eq!(ids(&r, "b"), [pair("db", "c1")]);
        send(&mut r, "a", "da", Kind::Hangup, "c1", &["b"], 3).unwrap();
        assert!(ids(&r, "a").is_empty() && ids(&r, "b").is_empty());
        assert_eq!(r.size(), (0, 0, 0));
    }

    #[test]
    fn strangers_are_refused_and_change_nothing() {
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b"], 1).unwrap();
        for kind in [
            Kind::Accept,
            Kind::Hangup,
            Kind::Other,
            Kind::Ringing,
            Kind::Invite,
            Kind::ModifyMem,
        ] {
            assert_eq!(
                send(&mut r, "x", "dx", kind, "c1", &["a"], 2),
                Err(Refusal::NotInCall),
                "{kind:?}"
            );
        }
        // An invitee may not invite more people before it joined.
        assert_eq!(
            send(&mut r, "b", "db", Kind::Invite, "c1", &["x"], 2),
            Err(Refusal::NotInCall)
        );
        assert_eq!(r.size(), (1, 1, 1));
        // The ringing user may ring and answer.
        send(&mut r, "b", "db", Kind::Ringing, "c1", &["a"], 3).unwrap();
        send(&mut r, "b", "db", Kind::Accept, "c1", &["a"], 3).unwrap();
        assert_eq!(r.size(), (1, 2, 0));
    }

    #[test]
    fn of_two_devices_answering_at_once_the_first_is_in() {
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b"], 1).unwrap();
        send(&mut r, "b", "b1", Kind::Accept, "c1", &["a"], 2).unwrap();
        send(&mut r, "b", "b2", Kind::Accept, "c1", &["a"], 2).unwrap();
        assert_eq!(r.members("c1").iter().map(|(u, d)| format!("{u}/{d}")).collect::<Vec<_>>(), vec!["a/da", "b/b1"]);
        // So when b1 is gone it is hung up for (not left quietly because b2 seemed in).
        let b: Arc<str> = Arc::from("b");
        r.disconnected(&b, &Arc::from("b1"), Departure::Lost, Duration::ZERO);
        let ended = r.due(Duration::from_secs(60));
        assert_eq!(ended.len(), 1);
        assert_eq!((&*ended[0].user, &*ended[0].device), ("b", "b1"));
    }

    #[test]
    fn a_member_that_left_may_still_hang_up_but_nothing_else() {
        // (Found by the simulator on the real core: an engine that reconnects hangs up again to
        // a peer it still counted, after its first hangup took it out of the call.)
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b", "c"], 1).unwrap();
        send(&mut r, "b", "db", Kind::Accept, "c1", &["a", "c"], 2).unwrap();
        send(&mut r, "c", "dc", Kind::Accept, "c1", &["a", "b"], 3).unwrap();
        send(&mut r, "c", "dc", Kind::Hangup, "c1", &["a"], 4).unwrap();
        assert_eq!(send(&mut r, "c", "dc", Kind::Hangup, "c1", &["b"], 5), Ok(()));
        for kind in [Kind::Accept, Kind::Other, Kind::Ringing, Kind::Invite, Kind::ModifyMem] {
            assert_eq!(send(&mut r, "c", "dc", kind, "c1", &["a"], 6), Err(Refusal::NotInCall), "{kind:?}");
        }
        // Strangers still may not.
        assert_eq!(send(&mut r, "x", "dx", Kind::Hangup, "c1", &["a"], 6), Err(Refusal::NotInCall));
        assert_eq!(r.size(), (1, 2, 0));
    }

    #[test]
    fn a_rejection_or_a_cancel_ends_the_callers_call() {
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b"], 1).unwrap();
        send(&mut r, "b", "db", Kind::Hangup, "c1", &["a"], 2).unwrap(); // B rejects
        assert!(ids(&r, "a").is_empty());
        send(&mut r, "a", "da", Kind::Invite, "c2", &["b"], 3).unwrap();
        send(&mut r, "a", "da", Kind::Hangup, "c2", &["b"], 4).unwrap(); // A cancels
        assert_eq!(r.size(), (0, 0, 0));
    }

    #[test]
    fn a_device_moving_on_leaves_no_call_without_members() {
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b", "c"], 1).unwrap();
        send(&mut r, "a", "da", Kind::Invite, "c2", &["b", "c"], 2).unwrap();
        assert_eq!(r.size(), (1, 1, 2));
    }

    #[test]
    fn gone_devices_end_their_participation_after_the_grace() {
        let mut r = Rooms::new(Duration::from_secs(1), Duration::from_secs(5));
        send(&mut r, "a", "da", Kind::Invite, "g", &["b", "c"], 1).unwrap();
        send(&mut r, "b", "db", Kind::Accept, "g", &["a"], 2).unwrap();
        send(&mut r, "c", "dc", Kind::Accept, "g", &["a"], 3).unwrap();
        let t0 = Duration::ZERO;
        // Lost and back within the grace: nothing.
        r.disconnected(&a("b"), &a("db"), Departure::Lost, t0);
        assert!(r.due(t0 + Duration::from_secs(4)).is_empty());
        r.connected("b", "db");
        assert!(r.due(t0 + Duration::from_secs(60)).is_empty());
        // Lost for good: a hangup 7 to the others; the call goes on.
        r.disconnected(&a("b"), &a("db"), Departure::Lost, t0);
        let e = r.due(t0 + Duration::from_secs(5));
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].reason, &e[0].recipients[..]),
            (7, &["a".to_string(), "c".to_string()][..])
        );
        assert_eq!(
            (&*e[0].device, &e[0].call_id[..], &e[0].route.target_id[..]),
            ("db", "g", "a")
        );
        assert!(ids(&r, "b").is_empty());
        assert_eq!(ids(&r, "a"), [pair("da", "g")]);
        // Left: 3, and now the call is over.
        r.disconnected(&a("c"), &a("dc"), Departure::Left, t0);
        let e = r.due(t0 + Duration::from_secs(1));
        assert_eq!(
            (e[0].reason, &e[0].recipients[..]),
            (3, &["a".to_string()][..])
        );
        assert_eq!(r.size(), (0, 0, 0));
        // The inviter leaving before any answer cancels.
        send(&mut r, "a", "da", Kind::Invite, "c2", &["b"], 4).unwrap();
        r.disconnected(&a("a"), &a("da"), Departure::Left, t0);
        let e = r.due(t0 + Duration::from_secs(1));
        assert_eq!(
            (e[0].reason, &e[0].recipients[..]),
            (1, &["b".to_string()][..])
        );
        assert_eq!(r.size(), (0, 0, 0));
        // A clean close is a page that went away: reconnecting alone does not keep the call
        // (a reload has none), a message of the call does (the page is still in it).
        send(&mut r, "a", "da", Kind::Invite, "c3", &["b"], 5).unwrap();
        send(&mut r, "b", "db", Kind::Accept, "c3", &["a"], 5).unwrap();
        r.disconnected(&a("b"), &a("db"), Departure::Left, t0);
        r.connected("b", "db");
        assert_eq!(r.due(t0 + Duration::from_secs(1))[0].reason, 3);
        send(&mut r, "a", "da", Kind::Invite, "c4", &["b"], 6).unwrap();
        send(&mut r, "b", "db", Kind::Accept, "c4", &["a"], 6).unwrap();
        r.disconnected(&a("b"), &a("db"), Departure::Left, t0);
        r.connected("b", "db");
        send(&mut r, "b", "db", Kind::Other, "c4", &["a"], 7).unwrap();
        assert!(r.due(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(r.size(), (1, 2, 0));
        // Devices in no call get no grace.
        r.disconnected(&a("z"), &a("dz"), Departure::Lost, t0);
        assert!(!r.has_graces());
    }

    #[test]
    fn calls_are_learned_from_their_traffic() {
        let mut r = Rooms::default();
        // A restart forgot c9; b's media message re-creates it with a ringing.
        send(&mut r, "b", "db", Kind::Other, "c9", &["a"], 1).unwrap();
        assert_eq!(r.size(), (1, 1, 1));
        send(&mut r, "a", "da", Kind::Other, "c9", &["b"], 2).unwrap();
        // a was a recipient, so a participant: its traffic makes its device a member.
        assert_eq!(r.size(), (1, 2, 0));
        // A stranger is refused now that the call is known.
        assert_eq!(
            send(&mut r, "x", "dx", Kind::Accept, "c9", &["a"], 3),
            Err(Refusal::NotInCall)
        );
        // In a learned call any participant may invite (its inviter is not known), and joins.
        send(&mut r, "c", "dc", Kind::Other, "c12", &["a"], 3).unwrap();
        send(&mut r, "a", "da2", Kind::Invite, "c12", &["d"], 3).unwrap();
        assert_eq!(ids(&r, "a"), [pair("da", "c9"), pair("da2", "c12")]);
        assert_eq!(r.size(), (2, 4, 1));
        // Late messages of a call that ended teach nothing either.
        send(&mut r, "e", "de", Kind::Invite, "c13", &["f"], 3).unwrap();
        send(&mut r, "e", "de", Kind::Hangup, "c13", &["f"], 3).unwrap();
        send(&mut r, "f", "df", Kind::Accept, "c13", &["e"], 3).unwrap();
        send(&mut r, "f", "df", Kind::Other, "c13", &["e"], 3).unwrap();
        // Ringing and hangups of unknown calls teach nothing.
        send(&mut r, "b", "db", Kind::Ringing, "c10", &["a"], 3).unwrap();
        send(&mut r, "b", "db", Kind::Hangup, "c11", &["a"], 3).unwrap();
        assert_eq!(r.size(), (2, 4, 1));
    }

    #[test]
    fn who_may_see_what() {
        let mut r = Rooms::default();
        send(&mut r, "a", "da", Kind::Invite, "c1", &["b"], 5).unwrap();
        assert_eq!(r.of("a", "a")[0].call_id, "c1");
        assert_eq!(
            r.of("b", "a")[0].device_id,
            "da",
            "a participant (ringing) sees it"
        );
        let hidden = &r.of("x", "a")[0];
        assert_eq!(
            (&hidden.call_id[..], &hidden.device_id[..], hidden.join_time),
            ("", "", 5)
        );
    }

    #[test]
    fn entries_are_capped() {
        let mut r = Rooms::default();
        for i in 0..(MAX_DEVICES as i64 + 5) {
            send(
                &mut r,
                "u",
                &format!("d{i}"),
                Kind::Invite,
                &format!("c{i}"),
                &["v"],
                i,
            )
            .unwrap();
        }
        let list = r.of("u", "u");
        assert_eq!(list.len(), MAX_DEVICES);
        assert_eq!(list[0].device_id, "d5", "the oldest joins went first");
        assert_eq!(r.size().0, MAX_DEVICES);
        let many: Vec<String> = (0..MAX_RINGING).map(|i| format!("x{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        send(&mut r, "u", "d0", Kind::Invite, "big", &refs, 99).unwrap();
        assert_eq!(
            send(&mut r, "u", "d0", Kind::Invite, "big", &["one-more"], 99),
            Err(Refusal::TooManyInvitees)
        );
    }

    #[test]
    fn parse_reads_only_call_messages() {
        use rtc_core::proto::{call_content::Body, Accept, CallContent, Invite, MediaSignal};
        let accept = CallContent {
            call_id: "c9".into(),
            body: Some(Body::Accept(Accept { media_type: 1 })),
            ..Default::default()
        }
        .to_bytes();
        let invite = |ids: Vec<String>| {
            CallContent {
                call_id: "c9".into(),
                body: Some(Body::Invite(Invite {
                    invite_user_ids: ids,
                    ..Default::default()
                })),
                ..Default::default()
            }
            .to_bytes()
        };
        assert_eq!(
            parse(object_name::INVITE, &invite(vec!["b".into()])),
            Ok(Some(msg(Kind::Invite, "c9", &["b"])))
        );
        assert_eq!(
            parse(object_name::ACCEPT, &accept),
            Ok(Some(msg(Kind::Accept, "c9", &[])))
        );
        let media = CallContent {
            call_id: "c9".into(),
            body: Some(Body::Media(MediaSignal {
                to_user_id: "b".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(
            parse(object_name::MEDIA, &media).unwrap().unwrap().kind,
            Kind::Other
        );
        // The engine acts on the body: a type that says otherwise is refused.
        assert!(parse(object_name::MEDIA, &accept).is_err());
        assert!(parse(object_name::MUTE, &invite(vec!["b".into()])).is_err());
        assert_eq!(parse("RC:TxtMsg", &accept), Ok(None));
        assert_eq!(parse(object_name::ACCEPT, b"\xff\xff garbage"), Ok(None));
        assert_eq!(
            parse(object_name::ACCEPT, &CallContent::default().to_bytes()),
            Ok(None)
        );
        assert!(parse(object_name::INVITE, &invite(vec!["x".repeat(65)])).is_err());
        assert!(parse(object_name::INVITE, &invite(vec!["a\0b".into()])).is_err());
        assert!(parse(object_name::INVITE, &invite(vec![String::new()])).is_err());
        assert!(parse(object_name::INVITE, &invite(vec!["ü".repeat(64)])).is_ok());
    }
}
