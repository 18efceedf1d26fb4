//! Cluster mode's link to Redis (issue 15): what lets several `rcall-server` nodes share
//! routing. Shared so far: each app's policy and the Server API nonces ([`shared`]),
//! messages between users on different nodes ([`mailbox`], [`routing`]), presence with
//! node liveness ([`presence`]), and call rooms ([`rooms`]: a replica on every node fed by
//! the app's rooms log).
//!
//! - [`RedisUrl`]: where Redis is (`--redis` / `RCALL_REDIS` / `redis = "…"`), TCP or a unix
//!   socket, checked at startup.
//! - [`Bus`]: one node's handle. It has a random [`NodeId`], publishes on pub/sub channels
//!   ([`Bus::publish`]), runs Lua scripts by EVALSHA, loading them on `NOSCRIPT`
//!   ([`LuaScript`], [`Bus::run`]), and allocates per-user sequence numbers atomically across
//!   nodes ([`Bus::next_seq`]). Commands go over one multiplexed connection that reconnects by
//!   itself; a command caught by a lost connection fails with an error (nothing is retried
//!   behind the caller's back except where a retry is harmless, as in `next_seq`).
//! - [`Subscriber`]: a dedicated pub/sub connection delivering [`BusEvent`]s to an mpsc
//!   channel. Pub/sub is at-most-once: whenever delivery may have had a gap (Redis restarted,
//!   the connection dropped, the consumer fell behind), the subscriber reconnects, subscribes
//!   to every channel again, and only then emits [`BusEvent::Resync`]: the node must then
//!   resync every local device from Redis's state, and will miss nothing published after it.
//! - [`keys`]: key and channel names, with the app as a hash tag (`rcall:{app}:…`) so a Redis
//!   Cluster can shard by app later.
//! - [`shared`]: policy (token expiries, blocks, blacklists, groups) and Server API nonces in
//!   Redis. Per app: hashes `rcall:{app}:policy:expiry` and `…:policy:blocks` (user → ms), sets
//!   `…:policy:blacklisters` + `…:policy:blacklist:<user>` and `…:policy:groups` +
//!   `…:policy:group:<group>`, the string `…:policy:marker` (Redis holds the policy), strings
//!   `rcall:{app}:nonce:<nonce>` with a TTL; changes are published as JSON on
//!   `rcall:{app}:ch:policy` in the same atomic step as the write. Details in [`shared`].
//!
//! The client crate is `redis` (redis-rs, maintained under the Redis organisation): tokio
//! support, unix sockets, an auto-reconnecting `ConnectionManager`, split pub/sub
//! connections, and `Script` (EVALSHA with reload on `NOSCRIPT`). Needs Redis ≥ 6 (the command
//! connection speaks RESP3; Debian 12 ships 7.0). The [`mailbox`] scripts need Redis ≥ 7
//! (their `#!lua` line makes Redis refuse a script up front when out of memory rather than
//! stop it half-way through its writes).
//!
//! ## Key layout
//!
//! Per app `A` (hash tag `{A}`; user `U`, device `D` and instance `I` escaped, see [`keys`]):
//!
//! | name | type | what | expires |
//! |---|---|---|---|
//! | `rcall:{A}:seq:U` | string | `U`'s last issued seq | state TTL after last use |
//! | `rcall:{A}:mbox:U` | stream | `U`'s mailbox: id `<seq>-0`, `d` = encoded `Delivered`, `x` = the sending device on the sender's own copy | trimmed by count, age, and the lowest device cursor; whole key after max age idle |
//! | `rcall:{A}:cursor:U` | hash | `D` → highest seq `D` acked; the fields are `U`'s known devices | state TTL after last ack |
//! | `rcall:{A}:upto:U:D:I` | string | highest `client_seq` accepted from that instance | state TTL after last send |
//! | `rcall:{A}:sent` | string | the app's last `sent_time` (ms) | never |
//! | `rcall:{A}:presence:U` | hash | node id → that node's connections of `U` (fields only while > 0: an empty hash means `U` is on no node) | fields removed by their node, or by whoever takes the node out when it dies |
//! | `rcall:{A}:node-users:N` | set | the users node `N` has presence fields for (what to remove when `N` dies) | deleted with the dead node's fields |
//! | `rcall:{nodes}:live` | sorted set | live node id → its deadline (Redis's clock, ms): now + 5 beat periods at each beat ([`presence`]) | a node past its deadline is taken out by exactly one live node |
//! | `rcall:{nodes}:unclean` | sorted set | node taken out → until when its cleaner has the cleanup (then any node's beat hands it out again) | removed once the node's presence is gone |
//! | `rcall:{A}:ch:u:U` (channel) | pub/sub | `U`'s copies `D <seq> <skip>\n<Delivered>` and reply markers `R <sent_time> <node>.<conn> <request_id> <uid>`, or both in one: `D <seq> <skip> <sent_time> <request_id> <uid>\n<Delivered>` (the sender's own copy, then the reply to `<skip>`) | — |
//! | `rcall:{A}:rooms:n` | string | the app's last rooms event number | never |
//! | `rcall:{A}:rooms:log` | stream | the app's rooms events: id `<n>-0`, `t` = Redis's clock (ms), `e` = encoded `RoomsEvent` | trimmed to ~10,000 entries |
//! | `rcall:{A}:rooms:snap` | string | `<n>\n<encoded RoomsSnapshot>`: a replica as of event `n` | never |
//! | `rcall:{A}:ch:rooms` (channel) | pub/sub | the rooms events as `<n> <t>\n<event>` | — |
//! | `rcall:{A}:sfu:C` | hash | SFU mode: call `C`'s Janus room — `janus`, `room`, `epoch`, `state`, a seat per member device ([`crate::sfu::table`]) | taken (deleted) by the node that destroys the room |
//! | `rcall:{A}:sfucalls` | set | SFU mode: the calls with a room row | member removed with the row |
//! | `rcall:{A}:sfuwants:C` | hash | SFU mode: per node, the simulcast layer its subscribers take of each feed (`sfu::table`) | deleted with the row |
//! | `rcall:{A}:ch:<name>` (channel) | pub/sub | app-wide channels | — |
//! | `rcall:node:<id>` (channel) | pub/sub | addressed to one node | — |

pub mod admission;
pub mod keys;
pub mod mailbox;
pub mod presence;
pub mod rooms;
pub mod route_batch;
pub mod routing;
mod script;
pub mod shared;
mod subscriber;
mod url;

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ProtocolVersion, RedisError};

pub use script::{LuaScript, ScriptCall};
pub use subscriber::{BusEvent, Subscriber};
pub use url::{redact, RedisUrl};

/// How long connecting to Redis may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may wait for its answer by default: a stuck Redis yields errors, not
/// hangs. A node's own is [`crate::Config::redis_response_timeout`] ([`Bus::response_timeout`]).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A user's sequence key expires this long after its last use. Safe because a new one starts
/// at Redis's clock (µs), which is past any sequence issued a day earlier: a user's sequence
/// runs ahead of the clock only while it gets more than one message per microsecond.
pub const SEQ_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest `floor_us` [`Bus::next_seq`] accepts: Lua numbers are doubles, exact up to 2^53
/// (year 2255 in microseconds).
pub const MAX_SEQ: u64 = 1 << 53;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {source}{hint}")]
    Connect {
        url: String,
        #[source]
        source: RedisError,
        hint: &'static str,
    },
    #[error("Redis at {url}: {op} failed: {source}{hint}")]
    Command {
        url: String,
        op: String,
        #[source]
        source: RedisError,
        hint: &'static str,
    },
    #[error("{0}")]
    OutOfRange(String),
    #[error("the cluster subscriber has stopped (its event receiver was dropped)")]
    SubscriberStopped,
    /// One message of a batched route script failed inside it (its commands did; the batch's
    /// other messages were routed): `cluster/route_batch.rs`.
    #[error("Redis refused a script's command: {0}")]
    Script(String),
    /// A failed call shared by every message of a batch (`cluster/route_batch.rs`): each
    /// message's caller gets it, timeout or lost connection as it was.
    #[error("{0}")]
    Shared(std::sync::Arc<ClusterError>),
}

impl ClusterError {
    fn connect(url: &RedisUrl, source: RedisError) -> Self {
        let hint = if source.kind() == redis::ErrorKind::AuthenticationFailed {
            " (check the user and password in the Redis URL)"
        } else if source.is_timeout() {
            " (no answer in time: is the address right and Redis healthy?)"
        } else {
            " (is redis-server running and listening there? scripts/setup.sh installs it; \
             the address comes from --redis / RCALL_REDIS / redis = \"…\")"
        };
        ClusterError::Connect {
            url: url.to_string(),
            source,
            hint,
        }
    }

    pub(crate) fn command(url: &RedisUrl, op: impl Into<String>, source: RedisError) -> Self {
        let hint = if source.is_timeout() {
            " (Redis did not answer in time)"
        } else if source.is_unrecoverable_error() || source.is_io_error() {
            " (connection lost; it is re-established in the background, retry)"
        } else {
            ""
        };
        ClusterError::Command {
            url: url.to_string(),
            op: op.into(),
            source,
            hint,
        }
    }

    /// Redis did not answer in time: it may still run the command (a backlog, or a stall).
    pub fn is_timeout(&self) -> bool {
        match self {
            ClusterError::Shared(e) => e.is_timeout(),
            ClusterError::Command { source, .. } | ClusterError::Connect { source, .. } => {
                source.is_timeout()
            }
            _ => false,
        }
    }

    /// The command may have failed only because the connection was lost.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ClusterError::Shared(e) => e.is_connection_lost(),
            ClusterError::Command { source, .. } | ClusterError::Connect { source, .. } => {
                source.is_unrecoverable_error() || source.is_io_error()
            }
            _ => false,
        }
    }
}

/// The `stream-node-max-bytes` Redis should run with (`redis.conf`, or `CONFIG SET`): every
/// user with unacked messages has a mailbox stream ([`mailbox`]), and Redis (≥ 7) preallocates
/// `min(stream-node-max-bytes, 4096)` bytes for a stream's first node, so at the default
/// 4096 a mailbox holding one or two messages took 4.7 KB. Under a backlog (a node's kill at
/// 100,000 connections) tens of thousands of mailboxes are non-empty at once: most of Redis's
/// peak (BENCHMARKS.md, session 10). At 1024 such a mailbox takes 1.7 KB; a long one (an
/// offline user's 50 messages) ~25 % more than at 4096.
pub const STREAM_NODE_MAX_BYTES: u64 = 1024;

/// The warning for a Redis whose `stream-node-max-bytes` is `value`, if that wastes memory on
/// mailboxes (0 means unlimited: the 4096-byte preallocation).
pub fn stream_node_advice(value: u64) -> Option<String> {
    (value == 0 || value > STREAM_NODE_MAX_BYTES).then(|| {
        format!(
            "Redis's stream-node-max-bytes is {value}: each user's mailbox stream with unacked \
             messages then takes ~4.7 KB; set it to {STREAM_NODE_MAX_BYTES} (~1.7 KB; \
             docs/cluster.md, \"Memory\")"
        )
    })
}

/// A node's random identity in the cluster (16 hex digits): messages addressed to one node
/// go to its [`keys::node_channel`], and state a node owns is marked with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// A fresh id (64 random bits: two nodes never pick the same one in practice).
    pub fn random() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        NodeId(b.iter().map(|x| format!("{x:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `max(last + 1, now_us, floor)` for one user, stored in Redis: the rule of the in-memory
/// `UserState::next_seq` in `hub.rs`, made atomic across nodes. `now_us` is Redis's clock, so
/// nodes whose clocks disagree still hand out one increasing sequence per user.
/// KEYS[1] = the user's seq key; ARGV[1] = floor (µs); ARGV[2] = key TTL (ms).
static NEXT_SEQ: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "next_seq",
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local seq = math.max(last + 1, now, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.0f', seq), 'PX', ARGV[2])
return seq
"#,
    )
});

/// Which of a node's command connections a command goes on. Redis serves its connections in
/// turn, a bounded slice of each one's queued commands per turn, so a command on a connection of
/// its own waits for one turn, not behind the thousands of route and ack scripts queued on the
/// main connection when Redis is slow (after a node's kill, 5 s). Only small, latency-bound
/// work goes on the other lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Routing, acks, policy, rooms, presence writes, cleanups: everything else.
    Main,
    /// Logins: the join + first replay page (with the `accepted_upto` read)
    /// ([`mailbox::Mailboxes::open_device`]), so a resuming client's login does not queue
    /// behind the traffic its own node's resends add.
    Login,
    /// The node heartbeats ([`presence`]): a live node is not taken for dead because its beat
    /// waited behind a backlog.
    Beat,
}

/// One node's connection to the cluster's Redis.
#[derive(Clone)]
pub struct Bus {
    node: NodeId,
    url: RedisUrl,
    conn: ConnectionManager,
    /// [`Lane::Login`].
    login: ConnectionManager,
    /// [`Lane::Beat`].
    beat: ConnectionManager,
    /// How long a command (or a subscriber's ping) waits for its answer.
    response_timeout: Duration,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("node", &self.node)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects (as a new node with a random id); fails with [`ClusterError::Connect`] if Redis
    /// does not answer within [`CONNECT_TIMEOUT`] (a few quick retries included).
    pub async fn connect(url: &RedisUrl) -> Result<Self, ClusterError> {
        Self::connect_with(url, RESPONSE_TIMEOUT).await
    }

    /// [`Self::connect`], each command waiting at most `response_timeout` for its answer
    /// (shorter in tests, so what waits on a timeout does not take 5 s).
    pub async fn connect_with(
        url: &RedisUrl,
        response_timeout: Duration,
    ) -> Result<Self, ClusterError> {
        // RESP3: the connection notices a server going away by itself and reconnects at once,
        // instead of on the next command.
        let info = url.connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| ClusterError::connect(url, e))?;
        let manager = || async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(response_timeout))
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(500))
                .set_number_of_retries(3);
            match tokio::time::timeout(
                CONNECT_TIMEOUT * 2,
                client.get_connection_manager_with_config(config),
            )
            .await
            {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(ClusterError::connect(url, e)),
                Err(_) => {
                    let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
                    Err(ClusterError::connect(url, e))
                }
            }
        };
        let (conn, login, beat) = tokio::try_join!(manager(), manager(), manager())?;
        let bus = Bus {
            node: NodeId::random(),
            url: url.clone(),
            conn,
            login,
            beat,
            response_timeout,
        };
        bus.check_stream_node_size().await;
        Ok(bus)
    }

    /// Warns when Redis preallocates more per stream node than [`STREAM_NODE_MAX_BYTES`] (see
    /// there). Best effort: a Redis that refuses `CONFIG GET` (managed services may) is not
    /// checked.
    async fn check_stream_node_size(&self) {
        let reply: Result<std::collections::HashMap<String, String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("stream-node-max-bytes")
            .query_async(&mut self.conn.clone())
            .await;
        let value = reply
            .ok()
            .and_then(|m| m.get("stream-node-max-bytes")?.parse().ok());
        if let Some(advice) = value.and_then(stream_node_advice) {
            tracing::warn!(redis = %self.url, "{advice}");
        }
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node
    }

    /// How long a command waits for its answer ([`Self::connect_with`]).
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// The shared command connection, for modules built on the bus (cheap to clone).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The command connection of `lane` (cheap to clone).
    pub fn lane(&self, lane: Lane) -> ConnectionManager {
        match lane {
            Lane::Main => self.conn.clone(),
            Lane::Login => self.login.clone(),
            Lane::Beat => self.beat.clone(),
        }
    }

    /// Publishes `payload` on `channel`; returns how many subscribers Redis handed it to.
    /// Not retried on a lost connection (the message might then arrive twice).
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize, ClusterError> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| ClusterError::command(&self.url, format!("PUBLISH {channel}"), e))
    }

    /// `PING` on the connection of `lane`. Its reply means Redis ran every command sent before
    /// it on that connection (one connection's commands run in order): a caller whose command
    /// timed out learns, without sending it again behind itself, that its outcome is settled.
    pub async fn ping(&self, lane: Lane) -> Result<(), ClusterError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.lane(lane))
            .await
            .map_err(|e| ClusterError::command(&self.url, "PING", e))
    }

    /// Runs a Lua script (EVALSHA; on `NOSCRIPT` — Redis restarted or flushed its script
    /// cache — the script is loaded and run again).
    pub async fn run<T: FromRedisValue>(&self, call: &ScriptCall<'_>) -> Result<T, ClusterError> {
        self.run_in(Lane::Main, call).await
    }

    /// [`Self::run`] on the connection of `lane`.
    pub async fn run_in<T: FromRedisValue>(
        &self,
        lane: Lane,
        call: &ScriptCall<'_>,
    ) -> Result<T, ClusterError> {
        call.invocation()
            .invoke_async(&mut self.lane(lane))
            .await
            .map_err(|e| ClusterError::command(&self.url, format!("script {}", call.name()), e))
    }

    /// A new subscriber on its own connection; events go to the returned receiver, which holds
    /// at most `capacity` of them (past that the subscriber resyncs rather than buffering
    /// without bound: see [`Subscriber`]).
    pub async fn subscriber(
        &self,
        capacity: usize,
    ) -> Result<(Subscriber, tokio::sync::mpsc::Receiver<BusEvent>), ClusterError> {
        Subscriber::start(self.url.clone(), capacity, self.response_timeout).await
    }

    /// The next sequence number for `user` of `app`, strictly above every one issued before by
    /// any node (while Redis keeps the key; after a Redis restart, Redis's clock and `floor_us`
    /// keep it increasing), at least Redis's clock in µs, and at least `floor_us`. Retried once
    /// if the connection was lost: a retry can only skip a number, never repeat one.
    pub async fn next_seq(
        &self,
        app: &str,
        user: &str,
        floor_us: u64,
    ) -> Result<u64, ClusterError> {
        if floor_us >= MAX_SEQ {
            return Err(ClusterError::OutOfRange(format!(
                "next_seq: floor {floor_us} is not below 2^53 (Lua numbers are doubles)"
            )));
        }
        let key = keys::user_seq(app, user);
        let ttl_ms = SEQ_KEY_TTL.as_millis() as u64;
        let call = NEXT_SEQ.call().key(&key).arg(floor_us).arg(ttl_ms);
        match self.run(&call).await {
            Err(e) if e.is_connection_lost() => self.run(&call).await,
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stream_node_size_above_the_recommended_one_is_warned_about() {
        assert_eq!(stream_node_advice(STREAM_NODE_MAX_BYTES), None);
        assert_eq!(stream_node_advice(512), None);
        assert!(stream_node_advice(4096).unwrap().contains("set it to 1024"));
        assert!(
            stream_node_advice(0).is_some(),
            "0 = unlimited, so the 4096-byte preallocation"
        );
    }
}
