#!lua
-- route: accept a batch of messages (one or more, of one app), each put in every recipient's
-- mailbox, in one atomic step (scripts run one at a time, so any two recipients see any two
-- messages in the same order; the messages of a batch are routed in batch order, as that many
-- calls one after the other would be). Caller and argument builder: cluster/route_batch.rs
-- (`Mailboxes::route_many`; a node batches what its connections queued while its previous call
-- ran: cluster/routing.rs, `Routing::route`). The `#!lua` line makes Redis (>= 7) refuse the
-- whole script up front when out of memory, instead of failing it half-way through its writes.
--
-- Shared by the batch:
-- KEYS[1]   the app's last sent_time (ms)
-- KEYS[2], KEYS[3]   the app's rooms log: its last event number, its stream (cluster/rooms.rs)
-- ARGV[1] mailbox max length   ARGV[2] mailbox max age (us)   ARGV[3] mailbox TTL (ms)
-- ARGV[4] state TTL (ms)   ARGV[5] the app's rooms channel   ARGV[6] rooms log max length
--
-- Then per message, its keys from k and its arguments from a (k = 4 and a = 7 for the first):
-- KEYS[k]   the sending instance's highest accepted client_seq, '<client_seq> <uid> <flags>':
--   that message's uid and its copies' offline flags ('0'/'1' each), for its resend
-- KEYS[k+1]   the sender's device cursors (hash device -> seq): the sender's own copy that
--   excludes the sending device is stored only when the user has another known device (it is
--   for them; a device joining later gets only offline copies), else only published
-- KEYS[k+2i], KEYS[k+2i+1]   copy i's user seq key and mailbox stream (i = 1..n)
-- KEYS[k+2n+1+i]   (with presence) copy i's presence hash: a recipient's copy (empty skip
--   token) whose user is on no node (the hash is empty) goes out with offline = true
-- ARGV[a] n copies   ARGV[a+1] B bodies   ARGV[a+2] presence ('1' or '0')
-- ARGV[a+3] client_seq (0 = untracked)   ARGV[a+4] seq floor (us)
-- ARGV[a+5] sender's user channel   ARGV[a+6] reply marker ('' = no reply)   ARGV[a+7] uid
-- ARGV[a+8] the call message's rooms event ('' = not a call message)
-- body j = 1..B: ARGV[a+7+2j] (Delivered fields 2-9), ARGV[a+8+2j] (fields 11-13)
-- then 4 per copy i, from c = a+9+2B+4(i-1): channel, body number, skip token, excluded device
-- The next message's keys start at k + 2 + 2n (+ n with presence), its arguments at
-- a + 9 + 2B + 4n.
--
-- Publishes: each copy 'D <seq> <skip>\n<Delivered>' on its user's channel; the sender's own
-- copy (last) carries the reply marker: 'D <seq> <skip> <sent_time> <request_id> <uid>\n…'
-- (<skip> is the sending connection, which the reply is for); without an own copy, or for a
-- duplicate, the marker goes alone: 'R <sent_time> <marker> <uid>'.
--
-- Returns one reply per message, in batch order: {1, now_ms, upto, uid, flags} for a
-- duplicate (uid and flags: those of message upto, as stored in its KEYS[k]),
-- {0, sent_time, seq_1, ..., seq_n, offline_1, ..., offline_n} for a routed one
-- (offline_i = 1 when copy i went out flagged offline), or {2, error} for a message whose
-- commands failed (e.g. a key of the wrong type): that message alone failed (its writes
-- before the error stay, as a one-message script's would), the others went on. (A batch of
-- one fails as a script: the call's error.)

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
-- Integers travel as decimal strings; Lua numbers are doubles, exact below 2^53.
-- '%d' (C long, 64 bits where Redis runs) rather than '%.0f': exact for these integers
-- (< 2^53), and glibc formats '%.0f' with multi-precision arithmetic (7-9 % of Redis's profile
-- while it ran route scripts).
local function int(n) return string.format('%d', n) end

-- Protobuf varint (n < 2^53), made with one string.char call: no one-byte string per byte
-- (Lua allocates and interns each).
local function varint(n)
  local b, k = {}, 0
  while n >= 128 do
    k = k + 1
    b[k] = n % 128 + 128
    n = math.floor(n / 128)
  end
  b[k + 1] = n
  return string.char(unpack(b))
end

local max_len, max_age, mbox_ttl, state_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local rooms_counter, rooms_log = KEYS[2], KEYS[3]
local rooms_channel, rooms_max = ARGV[5], ARGV[6]
-- The age trim runs when a stored copy's seq is its user's first in a period of max age / 64
-- (~2.6 h for a week), not at every copy: entries outlive the max age by about that much more
-- (beside what `~` keeps), and a busy mailbox costs Redis one XTRIM per period, not one per
-- message.
local age_period = math.max(math.floor(max_age / 64), 1)
-- Field 11 (offline = true) opens the tail of fields 11-13, as prost writes it.
local OFFLINE = string.char(0x58, 0x01)

-- sent_time: Redis's clock, never backwards within the app; read and written once per batch,
-- at its first routed message (a batch of duplicates leaves it alone).
local sent, sent_s, sent_field
local function sent_time()
  if sent == nil then
    local last_sent = tonumber(redis.call('GET', KEYS[1]) or '0')
    sent = math.max(now_ms, last_sent)
    -- (Each number formatted once: string.format is a libc sprintf, a sizeable part of
    -- Redis's instructions per script.)
    sent_s = int(sent)
    if sent > last_sent then
      redis.call('SET', KEYS[1], sent_s)
    end
    -- The Delivered is field 1 (seq) .. fields 2-9 .. field 10 (sent_time) .. fields 11-13:
    -- the bytes prost itself would write.
    sent_field = string.char(0x50) .. varint(sent)
  end
end

-- A call message's event goes to the app's rooms log, numbered in script order, and to every
-- node's replica of the rooms: '<n> <sent_time>\n<event>'. Without the counter (a new or
-- restarted Redis) numbering starts over at the clock, above what was issued before.
local function rooms_append(event)
  local last = redis.call('GET', rooms_counter)
  local e
  if last then
    e = tonumber(last) + 1
  else
    e = now_us
    if redis.call('EXISTS', rooms_log) == 1 then
      local info = redis.call('XINFO', 'STREAM', rooms_log)
      for j = 1, #info, 2 do
        if info[j] == 'last-generated-id' then
          e = math.max(e, tonumber(string.match(info[j + 1], '^(%d+)')) + 1)
        end
      end
    end
  end
  redis.call('SET', rooms_counter, int(e))
  redis.call('XADD', rooms_log, 'MAXLEN', '~', rooms_max, int(e) .. '-0', 't', sent_s, 'e', event)
  redis.call('PUBLISH', rooms_channel, int(e) .. ' ' .. sent_s .. '\n' .. event)
end

-- Whether some known device of the sender (its cursors hash) is not `device` (the sending one).
local function sibling_known(cursors, device)
  local known = redis.call('HKEYS', cursors)
  for j = 1, #known do
    if known[j] ~= device then return true end
  end
  return false
end

-- One message: its keys from k, its arguments from a, n copies and B bodies.
local function route(k, a, n, bodies, presence)
  local upto_key, cursors = KEYS[k], KEYS[k + 1]
  local client_seq = tonumber(ARGV[a + 3])
  local floor = tonumber(ARGV[a + 4])
  local channel, marker, uid = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local rooms_event = ARGV[a + 8]

  -- 1. Exactly once: a client_seq this instance already got accepted is confirmed again (the
  -- reply still goes through the sender's channel, behind what the original caused), not
  -- routed.
  if client_seq > 0 then
    local stored = redis.call('GET', upto_key) or '0'
    local upto, suid, flags = string.match(stored, '^(%d+) ?(%S*) ?(%d*)$')
    upto = tonumber(upto or '0')
    if client_seq <= upto then
      if marker ~= '' then
        redis.call('PUBLISH', channel, 'R ' .. int(now_ms) .. ' ' .. marker .. ' ')
      end
      -- The resend of a route whose reply was lost: who the original flagged offline (their
      -- push is still to be made).
      return {1, now_ms, upto, suid or '', flags or ''}
    end
  end

  -- 2. sent_time.
  sent_time()

  -- 3. A call message's rooms event. Published before the copies (the rooms and user
  -- channels are not ordered with each other anyway): a recipient's node then tends to know
  -- the call before the recipient answers it.
  if rooms_event ~= '' then
    rooms_append(rooms_event)
  end

  local result = {0, sent}
  local flags = {}
  local replied = false
  for i = 1, n do
    local seq_key, mbox = KEYS[k + 2 * i], KEYS[k + 2 * i + 1]
    local c = a + 9 + 2 * bodies + 4 * (i - 1)
    local body = tonumber(ARGV[c + 1])
    local tail = ARGV[a + 8 + 2 * body]
    if presence and ARGV[c + 2] == '' and string.sub(tail, 1, 2) ~= OFFLINE
      and redis.call('EXISTS', KEYS[k + 2 * n + 1 + i]) == 0 then
      tail = OFFLINE .. tail
    end
    flags[i] = (string.sub(tail, 1, 2) == OFFLINE) and 1 or 0

    -- 4. seq = max(last + 1, now, floor). Without the seq key (expired, evicted) the stream's
    -- own top id is the last one: XADD refuses ids at or below it.
    local last = redis.call('GET', seq_key)
    if last then
      last = tonumber(last)
    else
      last = 0
      if redis.call('EXISTS', mbox) == 1 then
        local info = redis.call('XINFO', 'STREAM', mbox)
        for j = 1, #info, 2 do
          if info[j] == 'last-generated-id' then
            last = tonumber(string.match(info[j + 1], '^(%d+)'))
          end
        end
      end
    end
    local seq = math.max(last + 1, now_us, floor)
    local seq_s = int(seq)
    redis.call('SET', seq_key, seq_s, 'PX', state_ttl)

    -- 5. Into the mailbox (entry id = seq; bounded by count and age), then live to the
    -- user's nodes: 'D <seq> <skip>\n<Delivered>'.
    local delivered = string.char(0x08) .. varint(seq) .. ARGV[a + 7 + 2 * body] .. sent_field .. tail
    local exclude = ARGV[c + 3]
    if exclude == '' or sibling_known(cursors, exclude) then
      if exclude == '' then
        redis.call('XADD', mbox, 'MAXLEN', '~', max_len, seq_s .. '-0', 'd', delivered)
      else
        redis.call('XADD', mbox, 'MAXLEN', '~', max_len, seq_s .. '-0', 'd', delivered, 'x', exclude)
      end
      if math.floor(seq / age_period) ~= math.floor(last / age_period) then
        redis.call('XTRIM', mbox, 'MINID', '~', int(math.max(now_us - max_age, 0)))
      end
      redis.call('PEXPIRE', mbox, mbox_ttl)
    end
    -- The sender's own copy (the last one, on the sender's channel, skipping the sending
    -- connection) carries the reply marker in its header: 'D <seq> <skip> <sent_time>
    -- <request_id> <uid>' is the copy, then the reply to <skip>. One publish, not two.
    local skip = ARGV[c + 2]
    local head = 'D ' .. seq_s .. ' ' .. skip
    if i == n and marker ~= '' and ARGV[c] == channel and skip ~= ''
      and string.sub(marker, 1, #skip + 1) == skip .. ' ' then
      head = head .. ' ' .. sent_s .. ' ' .. string.sub(marker, #skip + 2) .. ' ' .. uid
      replied = true
    end
    redis.call('PUBLISH', ARGV[c], head .. '\n' .. delivered)
    result[#result + 1] = seq
  end
  for i = 1, n do
    result[#result + 1] = flags[i]
  end

  -- 6. Record the client_seq, then the sender's reply marker: 'R <sent_time> <marker> <uid>',
  -- after every copy on the sender's channel.
  if client_seq > 0 then
    redis.call('SET', upto_key, ARGV[a + 3] .. ' ' .. uid .. ' ' .. table.concat(flags), 'PX', state_ttl)
  end
  if marker ~= '' and not replied then
    redis.call('PUBLISH', channel, 'R ' .. sent_s .. ' ' .. marker .. ' ' .. uid)
  end
  return result
end

local out = {}
local k, a = 4, 7
while a <= #ARGV do
  local n, bodies = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local presence = ARGV[a + 2] == '1'
  local next_a = a + 9 + 2 * bodies + 4 * n
  -- A failing command fails its message only: the error is that message's reply. (A batch of
  -- one needs no pcall: the script's error is that message's.)
  local ok, r
  if a == 7 and next_a > #ARGV then
    ok, r = true, route(k, a, n, bodies, presence)
  else
    ok, r = pcall(route, k, a, n, bodies, presence)
  end
  if not ok then
    if type(r) == 'table' then r = r.err or 'error' end
    r = {2, tostring(r)}
  end
  out[#out + 1] = r
  k = k + 2 + 2 * n + (presence and n or 0)
  a = next_a
end
return out
