//! Cluster mode's call → Janus room table, in Redis (docs/sfu.md, "Cluster mode"): any node
//! can seat or unseat a device of any call; the room is created once (an atomic claim) and
//! destroyed once (an atomic take).
//!
//! Per app `A` and call `C` (escaped like every key, `cluster::keys`):
//!
//! | name | type | what |
//! |---|---|---|
//! | `rcall:{A}:sfu:C` | hash | `janus` (URL of the Janus that has the room), `room` (its id), `epoch` (1, +1 at each re-creation: what devices get as `generation`), `state` (`ready`, or `creating <node> <ms>` while a node creates it), and one field per seat `s\0<user>\0<device>` → `<feed> <token> <node>` (Janus participant id, allow-list token, the node holding the device's handles) |
//! | `rcall:{A}:sfucalls` | set | the calls with a row (a node's periodic pass destroys the rooms of calls over that no node followed) |
//! | `rcall:{A}:sfuwants:C` | hash | per node holding seats of the call, the simulcast layer its subscribers take of each feed: `<node>` → `<feed>:<layer> …` (Janus feed ids; docs/sfu.md "Paused layers"), so a publisher's node pauses only what no node takes; deleted with the row |

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::cluster::{keys, Bus, ClusterError, LuaScript};

/// Key kind of a call's room row.
pub const KIND_SFU: &str = "sfu";
/// Key kind of a call's per-node layer wishes.
pub const KIND_SFU_WANTS: &str = "sfuwants";
/// Key kind of the set of calls with a row.
pub const KIND_SFU_CALLS: &str = "sfucalls";
/// A `creating` claim older than this (its node died mid-creation) may be taken over.
pub const STALE_CLAIM_MS: u64 = 15_000;

/// One seat of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatRow {
    pub user: String,
    pub device: String,
    pub feed: String,
    pub token: String,
    pub node: String,
}

/// A call's row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub janus: String,
    pub room: String,
    pub epoch: u64,
    /// The room exists on Janus (not being created).
    pub ready: bool,
    pub seats: Vec<SeatRow>,
}

/// Claims the creation of a call's room: a missing row (`ARGV[4]` = 0) is created with epoch
/// 1; a ready row whose epoch is still `ARGV[4]` (the caller found the room gone from Janus)
/// gets the next epoch; a `creating` claim older than `ARGV[5]` ms is taken over with the next
/// epoch. `ARGV[1]` is the Janus the claimer creates the room on (recorded: a room moved off
/// a dead Janus). Returns the claimed epoch, or 0 (someone else's claim, or the row is gone).
static CLAIM: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_claim",
        r#"#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = 'creating ' .. ARGV[3] .. ' ' .. now
local seen = tonumber(ARGV[4])
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  if seen ~= 0 then return 0 end
  redis.call('HSET', KEYS[1], 'janus', ARGV[1], 'room', ARGV[2], 'epoch', 1, 'state', mine)
  redis.call('SADD', KEYS[2], ARGV[6])
  return 1
end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
if st == 'ready' then
  if seen == epoch then
    redis.call('HSET', KEYS[1], 'janus', ARGV[1], 'epoch', epoch + 1, 'state', mine)
    return epoch + 1
  end
  return 0
end
local since = tonumber(string.match(st, ' (%d+)$'))
if since and now - since > tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'janus', ARGV[1], 'epoch', epoch + 1, 'state', mine)
  return epoch + 1
end
return 0
"#,
    )
});

/// Writes a lost row back (Redis restarted empty while the room stayed on Janus): if the row is
/// missing, `janus` `ARGV[1]`, `room` `ARGV[2]`, `epoch` `ARGV[3]`, ready, and the seats (field,
/// value pairs from `ARGV[5]`); `ARGV[4]` joins the calls set. Returns 1 if written, 0 if a
/// row exists (another node wrote it back first, or claimed a new room).
static ADOPT: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_adopt",
        r#"#!lua
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'janus', ARGV[1], 'room', ARGV[2], 'epoch', ARGV[3], 'state', 'ready')
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SADD', KEYS[2], ARGV[4])
return 1
"#,
    )
});

/// Marks the room created at epoch `ARGV[1]` ready (nothing if the row moved on or is gone).
static READY: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_ready",
        r#"#!lua
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'ready')
  return 1
end
return 0
"#,
    )
});

/// Writes a seat `ARGV[1]` → `ARGV[2]` if the row exists and the seat's current value is
/// `ARGV[3]` (`""`: no seat yet). Returns 1 if written.
static SEAT: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_seat",
        r#"#!lua
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#,
    )
});

/// Removes seat `ARGV[1]` if its value is still `ARGV[2]`.
static UNSEAT: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_unseat",
        r#"#!lua
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#,
    )
});

/// Deletes the row and returns it (empty: someone else took it): the taker destroys the room.
static TAKE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_take",
        r#"#!lua
local r = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[1])
return r
"#,
    )
});

/// Writes a node's layer wishes (`ARGV[1]` → `ARGV[2]`) only while the call's row exists (a
/// call taken meanwhile gets no wishes back).
static WANTS: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        "sfu_wants",
        r#"#!lua
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"#,
    )
});

/// A node's layer wishes, `(Janus feed, layer)`, as stored: `<feed>:<layer> …`.
pub fn wants_value(wants: &[(String, u32)]) -> String {
    let v: Vec<String> = wants.iter().map(|(f, l)| format!("{f}:{l}")).collect();
    v.join(" ")
}

/// [`wants_value`] back (malformed entries skipped).
pub fn parse_wants(v: &str) -> HashMap<String, u32> {
    v.split_whitespace()
        .filter_map(|e| {
            let (f, l) = e.rsplit_once(':')?;
            Some((f.to_owned(), l.parse().ok()?))
        })
        .collect()
}

fn seat_field(user: &str, device: &str) -> String {
    format!("s\0{user}\0{device}")
}

fn seat_value(s: &SeatRow) -> String {
    format!("{} {} {}", s.feed, s.token, s.node)
}

/// The row from `HGETALL`'s field/value pairs (`None`: no row).
pub fn parse_row(pairs: Vec<(String, String)>) -> Option<Row> {
    if pairs.is_empty() {
        return None;
    }
    let mut row = Row::default();
    for (k, v) in pairs {
        match k.as_str() {
            "janus" => row.janus = v,
            "room" => row.room = v,
            "epoch" => row.epoch = v.parse().unwrap_or(0),
            "state" => row.ready = v == "ready",
            _ => {
                let mut parts = k.splitn(3, '\0');
                let (Some("s"), Some(user), Some(device)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let mut vals = v.splitn(3, ' ');
                let (Some(feed), Some(token), Some(node)) = (vals.next(), vals.next(), vals.next())
                else {
                    continue;
                };
                row.seats.push(SeatRow {
                    user: user.to_owned(),
                    device: device.to_owned(),
                    feed: feed.to_owned(),
                    token: token.to_owned(),
                    node: node.to_owned(),
                });
            }
        }
    }
    row.seats
        .sort_by(|a, b| (&a.user, &a.device).cmp(&(&b.user, &b.device)));
    Some(row)
}

/// The table's operations (one Redis round trip each).
pub struct RoomTable {
    bus: Bus,
}

impl RoomTable {
    pub fn new(bus: Bus) -> Self {
        RoomTable { bus }
    }

    pub fn node(&self) -> &str {
        self.bus.node_id().as_str()
    }

    fn key(app: &str, call: &str) -> String {
        keys::app_key(app, KIND_SFU, &[call])
    }

    fn wants_key(app: &str, call: &str) -> String {
        keys::app_key(app, KIND_SFU_WANTS, &[call])
    }

    fn calls_key(app: &str) -> String {
        keys::app_key(app, KIND_SFU_CALLS, &[])
    }

    fn err(&self, op: &str, e: redis::RedisError) -> ClusterError {
        ClusterError::command(self.bus.url(), op.to_owned(), e)
    }

    pub async fn read(&self, app: &str, call: &str) -> Result<Option<Row>, ClusterError> {
        let pairs: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(Self::key(app, call))
            .query_async(&mut self.bus.connection())
            .await
            .map_err(|e| self.err("HGETALL sfu row", e))?;
        Ok(parse_row(pairs))
    }

    /// Claims the room's (re-)creation (script `sfu_claim`): `seen` 0 creates a missing row;
    /// else the epoch whose room is gone. Returns the claimed epoch, or 0.
    pub async fn claim(
        &self,
        app: &str,
        call: &str,
        janus: &str,
        room: &str,
        seen: u64,
    ) -> Result<u64, ClusterError> {
        let call_ = CLAIM
            .call()
            .key(Self::key(app, call))
            .key(Self::calls_key(app))
            .arg(janus)
            .arg(room)
            .arg(self.node())
            .arg(seen)
            .arg(STALE_CLAIM_MS)
            .arg(call);
        self.bus.run(&call_).await
    }

    /// Writes a lost row back with `epoch` and `seats` (script `sfu_adopt`); false if a row
    /// exists.
    pub async fn adopt(
        &self,
        app: &str,
        call: &str,
        janus: &str,
        room: &str,
        epoch: u64,
        seats: &[SeatRow],
    ) -> Result<bool, ClusterError> {
        let mut c = ADOPT
            .call()
            .key(Self::key(app, call))
            .key(Self::calls_key(app))
            .arg(janus)
            .arg(room)
            .arg(epoch)
            .arg(call);
        for s in seats {
            c = c.arg(seat_field(&s.user, &s.device)).arg(seat_value(s));
        }
        Ok(self.bus.run::<i64>(&c).await? == 1)
    }

    pub async fn ready(&self, app: &str, call: &str, epoch: u64) -> Result<bool, ClusterError> {
        let c = READY.call().key(Self::key(app, call)).arg(epoch);
        Ok(self.bus.run::<i64>(&c).await? == 1)
    }

    /// Writes `seat` if the current one is `was` (None: no seat yet) and the row exists.
    pub async fn seat(
        &self,
        app: &str,
        call: &str,
        seat: &SeatRow,
        was: Option<&SeatRow>,
    ) -> Result<bool, ClusterError> {
        let c = SEAT
            .call()
            .key(Self::key(app, call))
            .arg(seat_field(&seat.user, &seat.device))
            .arg(seat_value(seat))
            .arg(was.map(seat_value).unwrap_or_default());
        Ok(self.bus.run::<i64>(&c).await? == 1)
    }

    pub async fn unseat(&self, app: &str, call: &str, seat: &SeatRow) -> Result<(), ClusterError> {
        let c = UNSEAT
            .call()
            .key(Self::key(app, call))
            .arg(seat_field(&seat.user, &seat.device))
            .arg(seat_value(seat));
        self.bus.run::<i64>(&c).await.map(|_| ())
    }

    /// Deletes the row, returning it if this call took it (then the caller destroys the room).
    pub async fn take(&self, app: &str, call: &str) -> Result<Option<Row>, ClusterError> {
        let c = TAKE
            .call()
            .key(Self::key(app, call))
            .key(Self::calls_key(app))
            .key(Self::wants_key(app, call))
            .arg(call);
        let pairs: Vec<(String, String)> = self.bus.run(&c).await?;
        Ok(parse_row(pairs))
    }

    /// Every node's layer wishes for a call's feeds: node → Janus feed → layer.
    pub async fn wants(
        &self,
        app: &str,
        call: &str,
    ) -> Result<HashMap<String, HashMap<String, u32>>, ClusterError> {
        let pairs: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(Self::wants_key(app, call))
            .query_async(&mut self.bus.connection())
            .await
            .map_err(|e| self.err("HGETALL sfu wants", e))?;
        Ok(pairs
            .into_iter()
            .map(|(node, v)| (node, parse_wants(&v)))
            .collect())
    }

    /// Shares this node's layer wishes ([`wants_value`]) while the call's row exists.
    pub async fn set_wants(&self, app: &str, call: &str, value: &str) -> Result<(), ClusterError> {
        let c = WANTS
            .call()
            .key(Self::key(app, call))
            .key(Self::wants_key(app, call))
            .arg(self.node())
            .arg(value);
        self.bus.run::<i64>(&c).await.map(|_| ())
    }

    /// The calls of `app` with a row.
    pub async fn calls(&self, app: &str) -> Result<Vec<String>, ClusterError> {
        redis::cmd("SMEMBERS")
            .arg(Self::calls_key(app))
            .query_async(&mut self.bus.connection())
            .await
            .map_err(|e| self.err("SMEMBERS sfucalls", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_wishes_parse_back() {
        let w = [("feed-1".to_owned(), 0), ("2".to_owned(), 2)];
        let v = wants_value(&w);
        assert_eq!(v, "feed-1:0 2:2");
        assert_eq!(parse_wants(&v), HashMap::from(w));
        assert_eq!(
            parse_wants("bad x:y 3:1"),
            HashMap::from([("3".to_owned(), 1)])
        );
        assert!(parse_wants("").is_empty());
    }

    #[test]
    fn a_row_parses_back() {
        let seat = SeatRow {
            user: "u:1".into(),
            device: "d 1".into(),
            feed: "f".into(),
            token: "t".into(),
            node: "n1".into(),
        };
        let pairs = vec![
            ("janus".into(), "http://j/janus".into()),
            ("room".into(), "rcall-x".into()),
            ("epoch".into(), "3".into()),
            ("state".into(), "ready".into()),
            (seat_field(&seat.user, &seat.device), seat_value(&seat)),
        ];
        let row = parse_row(pairs).unwrap();
        assert_eq!((row.epoch, row.ready, &*row.room), (3, true, "rcall-x"));
        assert_eq!(row.seats, [seat]);
        assert_eq!(parse_row(Vec::new()), None);
    }
}
