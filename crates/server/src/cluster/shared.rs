//! What cluster nodes share through Redis so far: each app's **policy** (token expiries,
//! blocks, blacklists, groups), the **Server API nonces** and the users' **profiles** (the name
//! and portrait getToken and `user/refresh` registered, which a login on any node hands to the
//! client in its `AuthResult`). Routing is not shared yet.
//!
//! A policy change made through any node's Server API is written to Redis and published on the
//! app's policy channel ([`policy_channel`]) in one `MULTI`/`EXEC` (or one Lua script), so the
//! order of publications is the order of the writes even when two nodes change the same thing
//! at once. Every node applies what it receives to its hub, in that order; the node that made
//! the change applies it at once as well, so its own answers already reflect it (the published
//! copy applied later changes nothing: every change overwrites what it touches).
//!
//! A node loads an app's policy from Redis at startup and again after every
//! [`super::BusEvent::Resync`] (messages may have been missed). Both loads happen after the
//! policy channels are subscribed, and the messages that arrive meanwhile are applied after
//! the load; since each change overwrites the entries it touches, the result is Redis's state
//! even though the load reads the keys one after another rather than in one snapshot.
//!
//! If Redis comes back empty (restarted without persistence), the app's marker key is gone:
//! the first nodes to resync write their in-memory policy back (merging with what was written
//! meanwhile, newer values winning) before setting the marker again; then they load. A node
//! *starting* while the marker is missing sets it with nothing to write, so run Redis with
//! persistence (`appendonly yes`) in production: the policy lives there.
//!
//! # Key layout (per app, under the app's hash tag, see [`super::keys`])
//! | key | type | content |
//! |---|---|---|
//! | `rcall:{app}:policy:expiry` | hash | user → tokens issued before this (ms) are expired |
//! | `rcall:{app}:policy:blocks` | hash | user → blocked until (ms); past values are ignored |
//! | `rcall:{app}:policy:blacklisters` | set | users with a non-empty blacklist |
//! | `rcall:{app}:policy:blacklist:<user>` | set | the users `<user>` blacklisted |
//! | `rcall:{app}:policy:groups` | set | group ids (a group exists until dismissed) |
//! | `rcall:{app}:policy:group:<group>` | set | the group's members |
//! | `rcall:{app}:policy:marker` | string | present while Redis holds the app's policy |
//! | `rcall:{app}:nonce:<nonce>` | string | a used Server API nonce, expiring with its window |
//! | `rcall:{app}:profile:<user>` | hash | `name`, `portrait`: what the Server API registered (read in a login's join, [`super::mailbox::Mailboxes::open_device`]) |
//!
//! Channel `rcall:{app}:ch:policy` carries each change as JSON ([`PolicyChange`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use delivery::PolicyRows;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::Receiver;

use super::subscriber::next_event;
use super::{keys, Bus, BusEvent, ClusterError, LuaScript, Subscriber};
use crate::hub::{AppId, Hub};

/// Key kind of an app's policy keys.
pub const KIND_POLICY: &str = "policy";
/// Key kind of an app's used Server API nonces.
pub const KIND_NONCE: &str = "nonce";
/// Events the policy subscriber may queue while a load runs; past that it resyncs.
pub const EVENT_CAPACITY: usize = 4096;
/// Longest a nonce is kept (Redis refuses expiries past its clock's range).
const MAX_NONCE_KEEP_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

pub fn expiry_key(app: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["expiry"])
}
pub fn blocks_key(app: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["blocks"])
}
pub fn blacklisters_key(app: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["blacklisters"])
}
pub fn blacklist_key(app: &str, owner: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["blacklist", owner])
}
pub fn groups_key(app: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["groups"])
}
pub fn group_key(app: &str, group: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["group", group])
}
pub fn marker_key(app: &str) -> String {
    keys::app_key(app, KIND_POLICY, &["marker"])
}
pub fn nonce_key(app: &str, nonce: &str) -> String {
    keys::app_key(app, KIND_NONCE, &[nonce])
}
/// Key kind of the users' profiles.
pub const KIND_PROFILE: &str = "profile";
pub fn profile_key(app: &str, user: &str) -> String {
    keys::app_key(app, KIND_PROFILE, &[user])
}
/// The channel an app's policy changes are published on.
pub fn policy_channel(app: &str) -> String {
    keys::app_channel(app, "policy")
}

/// One policy change, as published (JSON, tagged by `op`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PolicyChange {
    ExpireTokens {
        users: Vec<String>,
        before_ms: i64,
    },
    Block {
        users: Vec<String>,
        until_ms: i64,
    },
    Unblock {
        users: Vec<String>,
    },
    Blacklist {
        owner: String,
        others: Vec<String>,
        add: bool,
    },
    GroupJoin {
        group: String,
        users: Vec<String>,
    },
    GroupQuit {
        group: String,
        users: Vec<String>,
    },
    GroupDismiss {
        group: String,
    },
}

impl PolicyChange {
    /// Applies the change to `app`'s core (blocks and token expiries also disconnect the
    /// affected local connections).
    pub fn apply(&self, hub: &Hub, app: AppId) {
        match self {
            PolicyChange::ExpireTokens { users, before_ms } => {
                hub.expire_tokens(app, users, *before_ms)
            }
            PolicyChange::Block { users, until_ms } => hub.block(app, users, *until_ms),
            PolicyChange::Unblock { users } => hub.unblock(app, users),
            PolicyChange::Blacklist { owner, others, add } => {
                hub.blacklist(app, owner, others, *add)
            }
            PolicyChange::GroupJoin { group, users } => hub.group_join(app, group, users),
            PolicyChange::GroupQuit { group, users } => hub.group_quit(app, group, users),
            PolicyChange::GroupDismiss { group } => hub.group_dismiss(app, group),
        }
    }
}

/// Removes users from a blacklist, drops the owner from the index once the list is empty, and
/// publishes the change, atomically (a plain `MULTI` cannot make the index update depend on
/// the count).
/// KEYS[1] = owner's set, KEYS[2] = owners index; ARGV = owner, channel, payload, users….
static BLACKLIST_REMOVE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "blacklist_remove",
        r#"
for i = 4, #ARGV do
  redis.call('SREM', KEYS[1], ARGV[i])
end
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 0
"#,
    )
});

/// An app's policy hashes and index sets: expiries, blocks, blacklist owners, group ids.
type Heads = (
    HashMap<String, i64>,
    HashMap<String, i64>,
    Vec<String>,
    Vec<String>,
);

/// A node's access to the state nodes share (see the module docs).
#[derive(Debug, Clone)]
pub struct Shared {
    bus: Bus,
}

impl Shared {
    pub fn new(bus: Bus) -> Self {
        Shared { bus }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    fn conn(&self) -> ConnectionManager {
        self.bus.connection()
    }

    fn err(&self, op: &str, e: redis::RedisError) -> ClusterError {
        ClusterError::command(self.bus.url(), op, e)
    }

    /// Records `nonce` as used by `app` for `keep_ms`; false if it already was (by any node).
    pub async fn claim_nonce(
        &self,
        app: &str,
        nonce: &str,
        keep_ms: i64,
    ) -> Result<bool, ClusterError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(nonce_key(app, nonce))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(keep_ms.clamp(1, MAX_NONCE_KEEP_MS))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("SET nonce", e))?;
        Ok(set.is_some())
    }

    /// Writes the profile fields given (a field left out keeps its value, as the SQLite upsert
    /// does): a node's SQLite is its own, and a login may land on any node.
    pub async fn save_profile(
        &self,
        app: &str,
        user: &str,
        name: Option<&str>,
        portrait_uri: Option<&str>,
    ) -> Result<(), ClusterError> {
        if name.is_none() && portrait_uri.is_none() {
            return Ok(());
        }
        let mut hset = redis::cmd("HSET");
        hset.arg(profile_key(app, user));
        for (field, value) in [("name", name), ("portrait", portrait_uri)] {
            if let Some(v) = value {
                hset.arg(field).arg(v);
            }
        }
        hset.query_async::<i64>(&mut self.conn())
            .await
            .map(|_| ())
            .map_err(|e| self.err("HSET profile", e))
    }

    /// Writes `change` to Redis and publishes it to every node (this one included), in one
    /// atomic step.
    pub async fn commit(&self, app: &str, change: &PolicyChange) -> Result<(), ClusterError> {
        let payload = serde_json::to_vec(change).expect("a policy change serialises");
        let channel = policy_channel(app);
        if let PolicyChange::Blacklist {
            owner,
            others,
            add: false,
        } = change
        {
            let mut call = BLACKLIST_REMOVE
                .call()
                .key(blacklist_key(app, owner))
                .key(blacklisters_key(app))
                .arg(owner)
                .arg(&channel)
                .arg(&payload);
            for o in others {
                call = call.arg(o);
            }
            return self.bus.run::<i64>(&call).await.map(|_| ());
        }
        let mut p = redis::pipe();
        p.atomic();
        let pairs = |users: &[String], v: i64| -> Vec<(String, i64)> {
            users.iter().map(|u| (u.clone(), v)).collect()
        };
        match change {
            PolicyChange::ExpireTokens { users, before_ms } => {
                p.hset_multiple(expiry_key(app), &pairs(users, *before_ms))
                    .ignore();
            }
            PolicyChange::Block { users, until_ms } => {
                p.hset_multiple(blocks_key(app), &pairs(users, *until_ms))
                    .ignore();
            }
            PolicyChange::Unblock { users } => {
                p.hdel(blocks_key(app), users).ignore();
            }
            PolicyChange::Blacklist { owner, others, .. } => {
                p.sadd(blacklist_key(app, owner), others).ignore();
                p.sadd(blacklisters_key(app), owner).ignore();
            }
            PolicyChange::GroupJoin { group, users } => {
                p.sadd(groups_key(app), group).ignore();
                p.sadd(group_key(app, group), users).ignore();
            }
            PolicyChange::GroupQuit { group, users } => {
                p.srem(group_key(app, group), users).ignore();
            }
            PolicyChange::GroupDismiss { group } => {
                p.srem(groups_key(app), group).ignore();
                p.del(group_key(app, group)).ignore();
            }
        }
        p.publish(&channel, &payload).ignore();
        p.query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| self.err("policy change", e))
    }

    /// `app`'s policy as Redis holds it (blocks already over left out).
    pub async fn load(&self, app: &str, now_ms: i64) -> Result<PolicyRows, ClusterError> {
        let mut conn = self.conn();
        let (token_expiry, blocks, owners, groups): Heads = redis::pipe()
            .hgetall(expiry_key(app))
            .hgetall(blocks_key(app))
            .smembers(blacklisters_key(app))
            .smembers(groups_key(app))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err("load policy", e))?;
        let mut rows = PolicyRows {
            token_expiry,
            blocks,
            ..PolicyRows::default()
        };
        rows.blocks.retain(|_, until| *until > now_ms);
        if !owners.is_empty() || !groups.is_empty() {
            let mut p = redis::pipe();
            for o in &owners {
                p.smembers(blacklist_key(app, o));
            }
            for g in &groups {
                p.smembers(group_key(app, g));
            }
            let sets: Vec<Vec<String>> = p
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err("load policy sets", e))?;
            let (black, members) = sets.split_at(owners.len());
            for (o, others) in owners.iter().zip(black) {
                rows.blacklists
                    .extend(others.iter().map(|x| (o.clone(), x.clone())));
            }
            for (g, users) in groups.iter().zip(members) {
                rows.members
                    .extend(users.iter().map(|u| (g.clone(), u.clone())));
            }
        }
        rows.groups = groups;
        Ok(rows)
    }

    /// At a node's startup: marks Redis as holding `app`'s policy (see the module docs).
    pub async fn mark(&self, app: &str) -> Result<(), ClusterError> {
        redis::cmd("SET")
            .arg(marker_key(app))
            .arg(1)
            .arg("NX")
            .query_async::<Option<String>>(&mut self.conn())
            .await
            .map_err(|e| self.err("SET policy marker", e))?;
        Ok(())
    }

    /// After a resync: if Redis lost `app`'s policy (no marker), writes `mine` (this node's
    /// copy) back, keeping what was written meanwhile, then sets the marker. True if it did.
    pub async fn restore_if_lost(&self, app: &str, mine: PolicyRows) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        let present: bool = redis::cmd("EXISTS")
            .arg(marker_key(app))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err("EXISTS policy marker", e))?;
        if present {
            return Ok(false);
        }
        let mut p = redis::pipe();
        for (u, v) in &mine.token_expiry {
            p.hset_nx(expiry_key(app), u, v).ignore();
        }
        for (u, v) in &mine.blocks {
            p.hset_nx(blocks_key(app), u, v).ignore();
        }
        for (o, x) in &mine.blacklists {
            p.sadd(blacklist_key(app, o), x).ignore();
            p.sadd(blacklisters_key(app), o).ignore();
        }
        for g in &mine.groups {
            p.sadd(groups_key(app), g).ignore();
        }
        for (g, u) in &mine.members {
            p.sadd(group_key(app, g), u).ignore();
        }
        p.set(marker_key(app), 1).ignore();
        p.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err("restore policy", e))?;
        Ok(true)
    }

    /// Loads `app`'s policy into the hub, replacing what it had, and disconnects local
    /// connections that the loaded blocks and token expiries refuse.
    pub async fn reload(&self, hub: &Hub, app: AppId, now_ms: i64) -> Result<(), ClusterError> {
        let key = hub.app(app).key.clone();
        let rows = self.load(&key, now_ms).await?;
        let blocks = rows.blocks.clone();
        let expiry = rows.token_expiry.clone();
        hub.load_policy(app, rows);
        for (u, until) in blocks {
            hub.block(app, &[u], until);
        }
        for (u, before) in expiry {
            hub.expire_tokens(app, &[u], before);
        }
        Ok(())
    }
}

/// Subscribes to every app's policy channel and loads every app's policy into the hub (a
/// node's startup in cluster mode); the returned subscriber and events go to [`follow`].
pub async fn start(
    shared: &Shared,
    hub: &Hub,
) -> Result<(Subscriber, Receiver<BusEvent>), ClusterError> {
    let (sub, rx) = shared.bus.subscriber(EVENT_CAPACITY).await?;
    let channels: Vec<String> = hub.apps().iter().map(|a| policy_channel(&a.key)).collect();
    let refs: Vec<&str> = channels.iter().map(String::as_str).collect();
    sub.subscribe(&refs).await?;
    for (i, a) in hub.apps().iter().enumerate() {
        shared.mark(&a.key).await?;
        shared.reload(hub, i, crate::clock::now_ms()).await?;
    }
    Ok((sub, rx))
}

/// Applies published changes to the hub until `stop`; after a resync, restores (if Redis lost
/// it) and reloads every app's policy, retrying while Redis is unreachable.
pub async fn follow(
    shared: Shared,
    state: Arc<crate::AppState>,
    sub: Subscriber,
    mut rx: Receiver<BusEvent>,
) {
    let _sub = sub;
    let hub = &state.hub;
    let by_channel: HashMap<String, AppId> = hub
        .apps()
        .iter()
        .enumerate()
        .map(|(i, a)| (policy_channel(&a.key), i))
        .collect();
    while let Some(ev) = next_event(&mut rx, &state.shutdown).await {
        match ev {
            BusEvent::Message { channel, payload } => {
                let Some(&app) = by_channel.get(&channel) else {
                    continue;
                };
                match serde_json::from_slice::<PolicyChange>(&payload) {
                    Ok(change) => change.apply(hub, app),
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "cluster: unreadable policy change ignored")
                    }
                }
            }
            BusEvent::Resync => {
                for app in 0..hub.apps().len() {
                    let mut pause = Duration::from_millis(20);
                    loop {
                        let key = hub.app(app).key.clone();
                        let r = async {
                            if shared.restore_if_lost(&key, hub.policy_rows(app)).await? {
                                tracing::warn!(app = &*key, "cluster: Redis had lost the policy; this node wrote its copy back");
                            }
                            shared.reload(hub, app, crate::clock::now_ms()).await
                        }
                        .await;
                        match r {
                            Ok(()) => break,
                            Err(e) => {
                                tracing::warn!(app = &*key, error = %e, "cluster: policy reload failed; retrying");
                            }
                        }
                        tokio::select! {
                            _ = state.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                }
                tracing::info!("cluster: policy reloaded after resync");
            }
        }
    }
}
