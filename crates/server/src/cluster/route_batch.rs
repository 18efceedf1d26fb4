//! The route script's calls (`route.lua`): one `EVALSHA` carries a batch of messages of one
//! app (issue 15, session 15). A script call has a fixed cost in Redis beside its messages'
//! own commands — parsing the command, the Lua entry with its `KEYS`/`ARGV` tables, the
//! clock, the app's `sent_time` read and write, the reply, the connection's read and write —
//! about a seventh of a routed message's Redis instructions when every message had its own
//! call (BENCHMARKS.md, "Session 14: Redis's cost per routed message"). A node's connections
//! route one message each at a time; [`super::routing::Routing::route`] puts the messages
//! queued while its previous call ran into the next one.
//!
//! Inside the script the messages run in batch order, exactly as that many calls one after
//! another would (per-user order, exactly once by `client_seq`, the reply marker behind the
//! sender's copies); a message whose commands fail (a key of the wrong type) fails alone: the
//! others are routed and answered (`pcall` per message).

use std::sync::LazyLock;

use prost::Message as _;
use redis::Value;
use rtc_core::proto::Delivered;

use super::mailbox::{cursor_key, mailbox_key, upto_key, user_channel, Mailboxes};
use super::mailbox::{sent_time_key, RouteRequest, Routed};
use super::{keys, ClusterError, LuaScript, MAX_SEQ};

static ROUTE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new("route", include_str!("route.lua")));

/// A message ready for the route script: its keys and arguments (owned: it waits in a node's
/// queue, [`super::routing::Routing::route`]) and what reading its reply needs.
pub struct PreparedRoute {
    /// The app's key (a batch holds messages of one app: its keys share the app's tag).
    pub(super) app: String,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    client_seq: u64,
    message_uid: String,
    recipients: Vec<String>,
    own_copy: bool,
}

fn bad(msg: impl Into<String>) -> ClusterError {
    ClusterError::OutOfRange(msg.into())
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Mailboxes {
    /// Checks `req` and turns it into the script's keys and arguments (see the module docs of
    /// [`super::mailbox`]). A bad request is refused here, alone, before it joins a batch.
    pub fn prepare_route(&self, req: &RouteRequest<'_>) -> Result<PreparedRoute, ClusterError> {
        let from = &req.from;
        if from.user.is_empty() || from.device.is_empty() {
            return Err(bad("route: empty sender user or device"));
        }
        if req.floor_us >= MAX_SEQ {
            return Err(bad(format!(
                "route: floor {} is not below 2^53 (Lua numbers are doubles)",
                req.floor_us
            )));
        }
        if req.client_seq >= MAX_SEQ {
            return Err(bad("route: client_seq is not below 2^53"));
        }
        let mut users = std::collections::HashSet::new();
        for r in &req.recipients {
            if r.user.is_empty() || r.user == from.user || !users.insert(r.user.as_str()) {
                return Err(bad(format!(
                    "route: recipient {:?} is empty, the sender, or listed twice",
                    r.user
                )));
            }
        }
        let message_uid = self.next_uid();
        let app = req.app;
        let tracked = from.instance != 0 && req.client_seq != 0;
        let client_seq = if tracked { req.client_seq } else { 0 };

        // Distinct bodies (fields 2-9, 11-13): one per (target_id, offline) in use.
        let mut bodies: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut body_of = |target: &str, offline: bool| -> usize {
            let head = Delivered {
                seq: 0,
                message_uid: message_uid.clone(),
                sender_user_id: from.user.to_owned(),
                sender_device_id: from.device.to_owned(),
                conversation_type: req.message.conversation_type,
                target_id: target.to_owned(),
                channel_id: req.message.channel_id.clone(),
                message_type: req.message.message_type.clone(),
                content: req.message.content.clone(),
                ..Default::default()
            }
            .encode_to_vec();
            let tail = Delivered {
                offline,
                sender_instance: if tracked { from.instance } else { 0 },
                client_seq,
                ..Default::default()
            }
            .encode_to_vec();
            let body = (head, tail);
            match bodies.iter().position(|b| *b == body) {
                Some(i) => i + 1,
                None => {
                    bodies.push(body);
                    bodies.len()
                }
            }
        };
        // Per copy: (user, body number, skip token, excluded device).
        let mut copies: Vec<(&str, usize, String, &str)> = Vec::new();
        for r in &req.recipients {
            let b = body_of(&req.message.target_id, r.offline);
            copies.push((r.user.as_str(), b, String::new(), ""));
        }
        if let Some(own) = &req.own_copy {
            let b = body_of(&own.target_id, own.offline);
            let exclude = if own.all_devices { "" } else { from.device };
            copies.push((from.user, b, from.conn.token(), exclude));
        }

        let mut keys = Vec::with_capacity(2 + 3 * copies.len());
        keys.push(upto_key(app, from.user, from.device, from.instance));
        keys.push(cursor_key(app, from.user));
        for (user, ..) in &copies {
            keys.push(keys::user_seq(app, user));
            keys.push(mailbox_key(app, user));
        }
        if req.presence {
            for (user, ..) in &copies {
                keys.push(super::presence::presence_key(app, user));
            }
        }
        let marker = req
            .request_id
            .map(|id| format!("{} {id}", from.conn.token()))
            .unwrap_or_default();
        let num = |n: u64| n.to_string().into_bytes();
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(9 + 2 * bodies.len() + 4 * copies.len());
        args.push(num(copies.len() as u64));
        args.push(num(bodies.len() as u64));
        args.push(if req.presence { b"1" } else { b"0" }.to_vec());
        args.push(num(client_seq));
        args.push(num(req.floor_us));
        args.push(user_channel(app, from.user).into_bytes());
        args.push(marker.into_bytes());
        args.push(message_uid.clone().into_bytes());
        args.push(req.rooms_event.clone().unwrap_or_default());
        for (head, tail) in bodies {
            args.push(head);
            args.push(tail);
        }
        for (user, body, skip, exclude) in &copies {
            args.push(user_channel(app, user).into_bytes());
            args.push(num(*body as u64));
            args.push(skip.as_bytes().to_vec());
            args.push(exclude.as_bytes().to_vec());
        }
        Ok(PreparedRoute {
            app: app.to_owned(),
            keys,
            args,
            client_seq,
            message_uid,
            recipients: req.recipients.iter().map(|r| r.user.clone()).collect(),
            own_copy: req.own_copy.is_some(),
        })
    }

    /// Routes several messages of one app in one script call, in order, as that many
    /// [`Self::route`] calls one after another would (see the module docs); a result per
    /// message. A request refused before the script (a bad one) or whose commands failed in it
    /// is an `Err` of its own; the others are routed. A failed call (Redis unreachable, a
    /// timeout) is an `Err` for every message: whether the script ran is unknown, and a
    /// tracked message is safe to route again (a duplicate then).
    pub async fn route_many(&self, reqs: &[RouteRequest<'_>]) -> Vec<Result<Routed, ClusterError>> {
        let mut prepared: Vec<Result<PreparedRoute, ClusterError>> =
            reqs.iter().map(|r| self.prepare_route(r)).collect();
        let ready: Vec<&PreparedRoute> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut routed = match self.route_prepared(&ready).await {
            Ok(r) => r.into_iter().map(Some).collect::<Vec<_>>(),
            Err(e) => {
                let e = std::sync::Arc::new(e);
                ready
                    .iter()
                    .map(|_| Some(Err(ClusterError::Shared(e.clone()))))
                    .collect()
            }
        }
        .into_iter();
        prepared
            .iter_mut()
            .map(|p| match p {
                Ok(_) => routed
                    .next()
                    .flatten()
                    .unwrap_or_else(|| Err(bad("route: no reply"))),
                Err(e) => Err(std::mem::replace(e, bad(""))),
            })
            .collect()
    }

    /// Runs one script call for `batch` (messages of one app, at least one), in order: `Err`
    /// when the call failed as a whole, else a result per message.
    pub async fn route_prepared(
        &self,
        batch: &[&PreparedRoute],
    ) -> Result<Vec<Result<Routed, ClusterError>>, ClusterError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let app = first.app.as_str();
        if batch.iter().any(|p| p.app != app) {
            return Err(bad("route: a batch of several apps"));
        }
        let l = self.limits();
        let mut call = ROUTE
            .call()
            .key(sent_time_key(app))
            .key(super::rooms::counter_key(app))
            .key(super::rooms::log_key(app))
            .arg(l.max_len)
            .arg(
                u64::try_from(l.max_age.as_micros())
                    .unwrap_or(u64::MAX)
                    .min(MAX_SEQ),
            )
            .arg(ms(l.max_age))
            .arg(ms(l.state_ttl))
            .arg(super::rooms::channel(app))
            .arg(super::rooms::LOG_MAX_LEN);
        for p in batch {
            for k in &p.keys {
                call = call.key(k.as_str());
            }
            for a in &p.args {
                call = call.arg(a.as_slice());
            }
        }
        let out: Vec<Value> = self.bus().run(&call).await?;
        if out.len() != batch.len() {
            return Err(bad(format!(
                "route: {} replies for {} messages",
                out.len(),
                batch.len()
            )));
        }
        Ok(batch.iter().zip(out).map(|(p, v)| p.reply(v)).collect())
    }
}

impl PreparedRoute {
    /// Reads this message's part of the script's reply.
    fn reply(&self, v: Value) -> Result<Routed, ClusterError> {
        let Value::Array(out) = v else {
            return Err(bad(format!("route: reply {v:?} is not an array")));
        };
        let int = |i: usize| -> Result<i64, ClusterError> {
            out.get(i)
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .ok_or_else(|| bad(format!("route: short reply {out:?}")))
        };
        let text = |i: usize| -> Result<String, ClusterError> {
            out.get(i)
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .ok_or_else(|| bad(format!("route: short reply {out:?}")))
        };
        match int(0)? {
            0 => {}
            1 => {
                let upto = int(2)? as u64;
                let (message_uid, flags) = (text(3)?, text(4)?);
                let original = upto == self.client_seq;
                let offline = if original {
                    let flags = flags.as_bytes();
                    self.recipients
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| flags.get(*i) == Some(&b'1'))
                        .map(|(_, r)| r.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                return Ok(Routed::Duplicate {
                    sent_time: int(1)?,
                    upto,
                    message_uid: if original { message_uid } else { String::new() },
                    offline,
                });
            }
            _ => return Err(ClusterError::Script(format!("route: {}", text(1)?))),
        }
        let n = self.recipients.len();
        let copies = n + usize::from(self.own_copy);
        let mut seqs = Vec::with_capacity(n);
        for (i, r) in self.recipients.iter().enumerate() {
            seqs.push((r.clone(), int(2 + i)? as u64));
        }
        let own_seq = match self.own_copy {
            true => Some(int(2 + n)? as u64),
            false => None,
        };
        let mut offline = Vec::new();
        for (i, r) in self.recipients.iter().enumerate() {
            if int(2 + copies + i)? == 1 {
                offline.push(r.clone());
            }
        }
        Ok(Routed::Accepted {
            sent_time: int(1)?,
            message_uid: self.message_uid.clone(),
            seqs,
            own_seq,
            offline,
        })
    }
}
