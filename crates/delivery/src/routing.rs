//! Routing one message: checks, acceptance (`sent_time`, UID, per-user `seq`), fan-out to every
//! live connection of every recipient and of the sender's other devices, stored copies for who
//! is away, and the sender's own `SendResult` — all in one step of the core.

use std::sync::Arc;
use std::time::Duration;

use rtc_core::proto::{conversation_type, error_code, Delivered, ErrorFrame, PushConfig};

use crate::app::{AppCore, Users};
use crate::codes::RouteError;
use crate::frame::{encode_delivered_ref, encode_send_accepted, DeliveredRef, Outgoing};
use crate::incoming::SendRef;
use crate::mailbox::{Entry, UserState};
use crate::rooms;
use crate::shell::{Count, PushError, SenderSeq, Shell, StoreOffline};
use crate::{ConnId, Now, Origin};

/// What the core assigned to an accepted message.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub sent_time: i64,
    pub message_uid: String,
    /// Number of connections the message was pushed to.
    pub delivered_to: usize,
    /// Store ticket that must commit before the message is confirmed (0 = nothing stored).
    pub ticket: u64,
    /// A resend of a `client_seq` already accepted: nothing was routed, `sent_time` is the
    /// server's clock now and `message_uid` is empty (the original ones are not kept).
    pub duplicate: bool,
    /// The sender's `SendResult` was queued to its connection, behind nothing this message
    /// caused (false when no reply was asked for).
    pub replied: bool,
    /// For the offline push webhook, when asked for and someone was offline.
    pub push: Option<PushInfo>,
}

/// An accepted call message some recipients of which have no online device.
#[derive(Debug, Clone, PartialEq)]
pub struct PushInfo {
    /// As the sender addressed it (`target_id` is the peer or the group).
    pub message: Delivered,
    pub push: PushConfig,
    /// Recipients with no online device.
    pub offline: Vec<String>,
}

/// What [`AppCore::admit`] decided.
#[derive(Debug)]
pub enum Admission<'m> {
    /// A resend of what was accepted before: answered (its `SendResult` queued when asked for),
    /// nothing to route.
    Duplicate(Box<Accepted>),
    Route(Admitted<'m>),
}

/// A message that passed every check, to be sequenced and fanned out.
#[derive(Debug)]
pub struct Admitted<'m> {
    /// The users it goes to, the sender's own user excluded (its other devices get a copy of
    /// their own), after group membership and blacklists.
    pub recipients: Vec<&'m str>,
    /// Has an `(instance, client_seq)` to record as accepted.
    pub tracked: bool,
    /// Report offline recipients for the push webhook.
    pub want_push: bool,
    /// Queue a `SendResult` with this request id.
    pub reply_to: Option<u32>,
    /// Recipients with no online device here (when `want_push`).
    pub offline: Vec<String>,
    /// Replicated rooms ([`AppCore::replicate_rooms`]): the call message's event, for the
    /// route script to publish in its order.
    pub rooms_event: Option<Box<rooms::MessageEvent>>,
}

/// How the sender wants to hear back.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteOptions {
    /// Queue a `SendResult` with this request id to the sender's connection (unless the
    /// message asked for no receipt).
    pub reply_to: Option<u32>,
    /// Highest store ticket the sender's connection was confirmed at so far: the reply waits
    /// for it too.
    pub conn_ticket: u64,
    /// Report offline recipients of call invites and hangups ([`Accepted::push`]).
    pub want_push: bool,
    /// Cluster mode: every copy goes to the shared mailboxes (bounded there by count and age),
    /// none to this node's store, and a recipient with no connection here may be connected to
    /// another node: the local storage bounds and the per-sender offline quota do not apply.
    pub shared_mailboxes: bool,
}

impl<C: Clone> AppCore<C> {
    /// Every check a message passes before it is sequenced — ids, recipients, exactly once
    /// (a resend is answered here), the user's rate, blacklists and groups, storage bounds, call
    /// rooms — with their effects (rate and quota spent, rooms updated). [`Self::route`]
    /// sequences what it admits here; in cluster mode the shared route script does
    /// (docs/cluster.md).
    pub fn admit<'m, S: Shell<Conn = C>>(
        &mut self,
        sh: &mut S,
        now: Now,
        from: &Origin,
        msg: &SendRef<'m>,
        opts: RouteOptions,
    ) -> Result<Admission<'m>, RouteError> {
        if msg.target_id.is_empty() {
            return Err(RouteError::InvalidParameter("empty target id"));
        }
        let bad_id = match msg.conversation_type {
            conversation_type::PRIVATE => !rooms::valid_user_id(msg.target_id),
            _ => !msg.directional_user_ids.iter().all(|u| rooms::valid_user_id(u)),
        };
        if bad_id {
            return Err(RouteError::InvalidParameter("invalid user id"));
        }
        if msg.message_type.is_empty() {
            return Err(RouteError::InvalidParameter("empty message type"));
        }
        let mut recipients: Vec<&str> = match msg.conversation_type {
            conversation_type::PRIVATE => vec![msg.target_id],
            conversation_type::GROUP => msg.directional_user_ids.iter().copied().filter(|u| !u.is_empty()).collect(),
            _ => return Err(RouteError::InvalidParameter("unsupported conversation type")),
        };
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(RouteError::InvalidParameter("no recipients"));
        }
        // The sender's own devices are served below, with the original target id.
        recipients.retain(|u| *u != &*from.user_id);
        let call_msg = rooms::parse(msg.message_type, msg.content).map_err(RouteError::InvalidParameter)?;
        // Offline push: only for push-carrying invites, member invites and hangups.
        let want_push = opts.want_push
            && msg.push.is_some()
            && call_msg.as_ref().is_some_and(|m| matches!(m.kind, rooms::Kind::Invite | rooms::Kind::ModifyMem | rooms::Kind::Hangup));
        let reply_to = opts.reply_to.filter(|_| !msg.no_receipt);

        // Exactly once: a resend of what this instance already got accepted is confirmed again,
        // not routed again (before any policy check: it was accepted when it came first).
        let tracked = from.instance != 0 && msg.client_seq != 0;
        if tracked {
            if let Some(rec) = self
                .users
                .get(&*from.user_id)
                .and_then(|st| st.devices.iter().find(|d| d.id == from.device_id))
                .and_then(|d| d.instance(from.instance))
                .filter(|rec| msg.client_seq <= rec.upto)
            {
                let mut acc = Accepted {
                    sent_time: now.wall_ms(),
                    message_uid: String::new(),
                    delivered_to: 0,
                    ticket: rec.ticket,
                    duplicate: true,
                    replied: false,
                    push: None,
                };
                if let Some(request_id) = reply_to {
                    acc.replied = self.reply(sh, from, request_id, &acc, opts.conn_ticket);
                }
                return Ok(Admission::Duplicate(Box::new(acc)));
            }
        }
        // One bucket per user, whatever the number of its connections.
        if let Some(st) = self.users.get_mut(&*from.user_id) {
            let l = &self.limits;
            if !st.take_send(l.user_rate_per_sec, l.user_rate_burst, now.mono) {
                return Err(RouteError::TooFast);
            }
        }
        match msg.conversation_type {
            conversation_type::PRIVATE => {
                if recipients.first().is_some_and(|r| self.policy.blacklisted(r, &from.user_id)) {
                    return Err(RouteError::RejectedByBlacklist);
                }
            }
            _ => {
                let members = self.policy.groups.get(msg.target_id).ok_or(RouteError::NotInGroup)?;
                if !members.contains(&*from.user_id) {
                    return Err(RouteError::NotInGroup);
                }
                let policy = &self.policy;
                recipients.retain(|r| members.contains(*r) && !policy.blacklisted(r, &from.user_id));
            }
        }

        // Offline storage is bounded: per sender (copies for others), in bytes overall, and by
        // the write queue. Checked before anything is accepted; messages that need no stored
        // copy are never refused here.
        let online = |users: &Users<C>, r: &str| users.get(r).is_some_and(|st| st.conns.iter().any(|c| c.live));
        let for_others = recipients.iter().filter(|r| !online(&self.users, r)).count();
        let for_self = self
            .users
            .get(&*from.user_id)
            .is_some_and(|st| st.copy_needed(from.conn_id, &from.device_id) && st.needs_copy_stored_for_other_devices(&from.device_id));
        let copies = if opts.shared_mailboxes { 0 } else { for_others + usize::from(for_self) };
        if copies > 0 {
            let l = &self.limits;
            if sh.pending() >= l.store_queue_max as u64 {
                return Err(RouteError::StoreBusy);
            }
            let size = (msg.content.len() + msg.message_type.len() + 128) as u64;
            if sh.offline_bytes().saturating_add(size.saturating_mul(copies as u64)) > l.offline_max_bytes {
                return Err(RouteError::OfflineFull);
            }
            if for_others > 0 {
                let q = self.offline_quota.entry(from.user_id.clone()).or_insert((now.mono, 0));
                if now.mono.saturating_sub(q.0) >= l.offline_quota_window {
                    *q = (now.mono, 0);
                }
                let n = u32::try_from(for_others).unwrap_or(u32::MAX);
                if q.1.saturating_add(n) > l.offline_quota_per_sender {
                    return Err(RouteError::OfflineQuota);
                }
                q.1 += n;
            }
        }
        let mut rooms_event = None;
        if let Some(call_msg) = &call_msg {
            let route = rooms::route_of(msg.conversation_type, msg.target_id, msg.channel_id);
            let checked = if self.replicated_rooms {
                // The replica changes when the message's event comes back from the script.
                rooms_event = Some(Box::new(rooms::MessageEvent::new(&from.user_id, &from.device_id, call_msg, &route, &recipients)));
                self.rooms.check(&from.user_id, &from.device_id, call_msg)
            } else {
                self.rooms.admit(&from.user_id, &from.device_id, call_msg, &route, &recipients, now.wall_ms())
            };
            checked.map_err(|r| match r {
                rooms::Refusal::NotInCall => RouteError::NotInCall,
                rooms::Refusal::TooManyInvitees => RouteError::InvalidParameter("too many invitees"),
            })?;
        }
        // Recipients with no online device, as for stored copies.
        let offline: Vec<String> =
            if want_push { recipients.iter().filter(|r| !online(&self.users, r)).map(|r| (*r).to_owned()).collect() } else { Vec::new() };
        Ok(Admission::Route(Admitted { recipients, tracked, want_push, reply_to, offline, rooms_event }))
    }

    /// Accepts a message and pushes a `Delivered` to every live connection of every recipient
    /// and to the sender's other connections; stores it for recipients with none; queues the
    /// sender's `SendResult` (see [`RouteOptions`]).
    pub fn route<S: Shell<Conn = C>>(
        &mut self,
        sh: &mut S,
        now: Now,
        from: &Origin,
        msg: &SendRef<'_>,
        opts: RouteOptions,
    ) -> Result<Accepted, RouteError> {
        let departures = self.rooms.departures();
        let Admitted { recipients, tracked, want_push, reply_to, offline, .. } = match self.admit(sh, now, from, msg, opts)? {
            Admission::Duplicate(acc) => return Ok(*acc),
            Admission::Route(a) => a,
        };
        // A hangup (or a join elsewhere) took a device out of a call: the message is logged
        // durably before the sender's confirmation, so a crash cannot bring back a call its
        // sender saw end (unconfirmed, the hangup is resent after the restart and ends it
        // again). A log row, not the whole rooms: at 2,000 calls a snapshot costs ms.
        let rooms_ticket = if self.rooms.departures() != departures { self.log_departure(sh, now, from, msg, &recipients) } else { 0 };
        let now_ms = now.wall_ms();
        let sent_time = self.clock.next(now_ms);
        let message_uid = self.uids.next_uid();

        // Borrowed from the message and the sender: nothing is copied before encoding.
        let mut template = DeliveredRef {
            seq: 0,
            message_uid: &message_uid,
            sender_user_id: &from.user_id,
            sender_device_id: &from.device_id,
            conversation_type: msg.conversation_type,
            // What each recipient sees as the conversation's target.
            target_id: match msg.conversation_type {
                conversation_type::PRIVATE => &from.user_id,
                _ => msg.target_id,
            },
            channel_id: msg.channel_id,
            message_type: msg.message_type,
            content: msg.content,
            sent_time,
            offline: false,
            sender_instance: from.instance,
            client_seq: msg.client_seq,
        };
        let mut ctx = Fanout {
            now,
            sent_time,
            delivered_to: 0,
            ticket: rooms_ticket,
            record: tracked.then_some((from.instance, msg.client_seq)),
            sender_seq: tracked.then(|| SenderSeq {
                user: from.user_id.clone(),
                device: from.device_id.clone(),
                instance: from.instance,
                client_seq: msg.client_seq,
            }),
        };
        for user in &recipients {
            ctx.deliver(self, sh, user, &mut template, None);
        }
        template.target_id = msg.target_id;
        ctx.deliver(self, sh, &from.user_id, &mut template, Some((from.conn_id, &from.device_id)));
        sh.count(Count::MessageRouted);
        let push_message = (want_push && msg.push.is_some() && !offline.is_empty()).then(|| template.to_owned());
        let mut acc = Accepted {
            sent_time,
            message_uid,
            delivered_to: ctx.delivered_to,
            ticket: ctx.ticket,
            duplicate: false,
            replied: false,
            push: None,
        };
        if let Some(request_id) = reply_to {
            acc.replied = self.reply(sh, from, request_id, &acc, opts.conn_ticket);
        }
        if let (Some(message), Some(push)) = (push_message, msg.push) {
            let push = push.clone();
            acc.push = Some(PushInfo { message, push, offline });
        }
        Ok(acc)
    }

    /// Has the shell log the call message that just took a member out of a call
    /// ([`Shell::log_departure`]); returns the write's ticket.
    fn log_departure<S: Shell<Conn = C>>(&self, sh: &mut S, now: Now, from: &Origin, msg: &SendRef<'_>, recipients: &[&str]) -> u64 {
        let Ok(Some(call)) = rooms::parse(msg.message_type, msg.content) else {
            return 0; // not a call message: it moved nothing
        };
        let route = rooms::route_of(msg.conversation_type, msg.target_id, msg.channel_id);
        let event = rooms::MessageEvent::new(&from.user_id, &from.device_id, &call, &route, recipients);
        let event = rooms::RoomsEvent { event: Some(rooms::rooms_event::Event::Message(event)) };
        sh.log_departure(self.rooms.changes(), now.wall_ms(), event)
    }

    /// Queues the sender's `SendResult` now, before anything this message caused can be routed
    /// back to it. False when the sender's connection is not registered.
    fn reply<S: Shell<Conn = C>>(&self, sh: &mut S, from: &Origin, request_id: u32, acc: &Accepted, conn_ticket: u64) -> bool {
        let Some(slot) = self.users.get(&*from.user_id).and_then(|st| st.conns.iter().find(|c| c.id == from.conn_id)) else {
            return false;
        };
        let body = encode_send_accepted(request_id, acc.sent_time, &acc.message_uid);
        let item = Outgoing::confirming(body, conn_ticket.max(acc.ticket), sh.committed());
        match sh.push_reply(&slot.conn, item) {
            Ok(()) | Err(PushError::Closed) => {}
            Err(PushError::Full) => {
                sh.count(Count::Error(error_code::SLOW_CONSUMER));
                sh.abort(
                    &slot.conn,
                    ErrorFrame { code: error_code::SLOW_CONSUMER, message: "too many unread frames; reconnect and resume".into() },
                );
            }
        }
        true
    }

    /// Routes the server-made hangup of a gone device like a message that device sent, but to
    /// every device of its user, itself included (it learns on reconnect that its
    /// participation ended).
    pub(crate) fn hang_up_for<S: Shell<Conn = C>>(&mut self, sh: &mut S, now: Now, e: rooms::Ended) {
        let content = e.content();
        let sent_time = self.clock.next(now.wall_ms());
        let template = Delivered {
            seq: 0,
            message_uid: self.uids.next_uid(),
            sender_user_id: e.user.to_string(),
            sender_device_id: e.device.to_string(),
            conversation_type: e.route.conversation_type,
            target_id: match e.route.conversation_type {
                conversation_type::PRIVATE => e.user.to_string(),
                _ => e.route.target_id.clone(),
            },
            channel_id: e.route.channel_id,
            message_type: rtc_core::proto::object_name::HANGUP.to_owned(),
            content,
            sent_time,
            offline: false,
            sender_instance: 0,
            client_seq: 0,
        };
        // Nobody waits for this message's confirmation, and it has no sender stream.
        let mut ctx = Fanout { now, sent_time, delivered_to: 0, ticket: 0, record: None, sender_seq: None };
        let mut t = DeliveredRef::of(&template);
        for user in &e.recipients {
            ctx.deliver(self, sh, user, &mut t, None);
        }
        t.target_id = &e.route.target_id;
        ctx.deliver(self, sh, &e.user, &mut t, None);
        sh.count(Count::MessageRouted);
    }
}

/// Per-message state while fanning out.
struct Fanout {
    now: Now,
    sent_time: i64,
    delivered_to: usize,
    /// Highest store ticket this message caused.
    ticket: u64,
    /// `(instance, client_seq)` to record as accepted when serving the sender.
    record: Option<(u64, u64)>,
    /// Recorded with the first stored copy, in the same transaction.
    sender_seq: Option<SenderSeq>,
}

impl Fanout {
    /// Gives `user_id` the next seq, pushes the message to its live connections (except
    /// `sender`'s connection), keeps it in the window, and stores it if nobody who should get
    /// it later is connected.
    fn deliver<C: Clone, S: Shell<Conn = C>>(
        &mut self,
        core: &mut AppCore<C>,
        sh: &mut S,
        user_id: &str,
        template: &mut DeliveredRef<'_>,
        sender: Option<(ConnId, &Arc<str>)>,
    ) {
        let st = match core.users.get_mut(user_id) {
            Some(st) => st,
            None => {
                let id: Arc<str> = Arc::from(user_id);
                core.users.entry(id.clone()).or_insert_with(|| UserState::new(id))
            }
        };
        let limits = &core.limits;
        let seq = st.next_seq(core.floor, self.now.wall_us);
        core.max_issued = core.max_issued.max(seq);
        if let (Some((_, device)), Some((instance, client_seq))) = (sender, self.record) {
            // Exactly once: the sender's state is at hand here (no second lookup). Served last,
            // so the recipients' store tickets are known; its own copy's follows below.
            if let Some(d) = st.devices.iter_mut().find(|d| d.id == *device) {
                let rec = d.instance_mut(instance);
                rec.upto = rec.upto.max(client_seq);
                rec.ticket = rec.ticket.max(self.ticket);
            }
        }
        if let Some((conn, device)) = sender {
            if !st.copy_needed(conn, device) {
                // Nobody but the sending connection could ever see this copy.
                return;
            }
        }
        let store = match sender {
            Some((_, device)) => st.needs_copy_stored_for_other_devices(device),
            None => !st.conns.iter().any(|c| c.live),
        };
        template.seq = seq;
        template.offline = store;
        let (body, payload_at) = encode_delivered_ref(template);
        let skip = sender.map(|(id, _)| id);
        let accepted: Duration = self.now.mono;
        self.delivered_to += st.push_live(sh, seq, &body, accepted, skip);
        if store {
            let ticket = sh.store_offline(StoreOffline {
                user: st.id.clone(),
                seq,
                exclude_device: sender.map(|(_, d)| d.clone()),
                sent_time: self.sent_time,
                expires_at: self.now.wall_ms().saturating_add(limits.offline_ttl_ms),
                payload: body.slice(payload_at..),
                max_per_user: limits.offline_max_per_user,
                sender: self.sender_seq.take(),
            });
            self.ticket = self.ticket.max(ticket);
            if let (Some((_, device)), Some((instance, _))) = (sender, self.record) {
                let rec =
                    st.devices.iter_mut().find(|d| d.id == *device).and_then(|d| d.instances.iter_mut().find(|i| i.instance == instance));
                if let Some(rec) = rec {
                    rec.ticket = rec.ticket.max(ticket);
                }
            }
            st.stored(seq, sender.map(|(_, d)| d));
            sh.count(Count::OfflineStored);
        }
        st.window.push_back(Entry { seq, offline: store, stored: false, exclude_device: sender.map(|(_, d)| d.clone()), accepted, body });
        st.prune_window(limits, accepted);
    }
}
