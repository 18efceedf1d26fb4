#!lua
-- route: accept one message and put it in every recipient's mailbox, in one atomic step
-- (scripts run one at a time, so any two recipients see any two messages in the same order).
-- Caller and argument builder: cluster/mailbox.rs (`Mailboxes::route`). The `#!lua` line makes
-- Redis (>= 7) refuse the whole script up front when out of memory, instead of failing it
-- half-way through its writes.
--
-- KEYS[1]   the app's last sent_time (ms)
-- KEYS[2]   the sending instance's highest accepted client_seq, '<client_seq> <uid> <flags>':
--   that message's uid and its copies' offline flags ('0'/'1' each), for its resend
-- KEYS[2i+1], KEYS[2i+2]   copy i's user seq key and mailbox stream (i = 1..n)
-- ARGV[1] client_seq (0 = untracked)   ARGV[2] seq floor (us)   ARGV[3] mailbox max length
-- ARGV[4] mailbox max age (us)   ARGV[5] mailbox TTL (ms)   ARGV[6] state TTL (ms)
-- ARGV[7] sender's user channel   ARGV[8] reply marker ('' = no reply)   ARGV[9] message uid
-- ARGV[10] number of bodies B; body j = ARGV[9+2j] (Delivered fields 2-9), ARGV[10+2j] (11-13)
-- then 4 per copy i, from c = 10+2B+4(i-1): channel, body number, skip token, excluded device
-- KEYS[2n+2+i]   (optional, all n or none) copy i's presence hash: a recipient's copy (empty
--   skip token) whose user is on no node (the hash is empty) goes out with offline = true
-- KEYS[#KEYS-2], KEYS[#KEYS-1]   the app's rooms log: its last event number, its stream
--   (cluster/rooms.rs)
-- KEYS[#KEYS]   the sender's device cursors (hash device -> seq): the sender's own copy that
--   excludes the sending device is stored only when the user has another known device (it is
--   for them; a device joining later gets only offline copies), else only published
-- ARGV[#ARGV-2] the call message's rooms event ('' = not a call message)   ARGV[#ARGV-1] the
--   app's rooms channel   ARGV[#ARGV] rooms log max length
--
-- Publishes: each copy 'D <seq> <skip>\n<Delivered>' on its user's channel; the sender's own
-- copy (last) carries the reply marker: 'D <seq> <skip> <sent_time> <request_id> <uid>\n…'
-- (<skip> is the sending connection, which the reply is for); without an own copy, or for a
-- duplicate, the marker goes alone: 'R <sent_time> <marker> <uid>'.
--
-- Returns {1, now_ms, upto, uid, flags} for a duplicate (uid and flags: those of message upto,
-- as stored in KEYS[2]), else {0, sent_time, seq_1, ..., seq_n, offline_1, ..., offline_n}
-- (offline_i = 1 when copy i went out flagged offline).

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
-- Integers travel as decimal strings; Lua numbers are doubles, exact below 2^53.
-- '%d' (C long, 64 bits where Redis runs) rather than '%.0f': exact for these integers
-- (< 2^53), and glibc formats '%.0f' with multi-precision arithmetic (7-9 % of Redis's profile
-- while it ran route scripts).
local function int(n) return string.format('%d', n) end

-- 1. Exactly once: a client_seq this instance already got accepted is confirmed again (the
-- reply still goes through the sender's channel, behind what the original caused), not routed.
local client_seq = tonumber(ARGV[1])
if client_seq > 0 then
  local stored = redis.call('GET', KEYS[2]) or '0'
  local upto, uid, flags = string.match(stored, '^(%d+) ?(%S*) ?(%d*)$')
  upto = tonumber(upto or '0')
  if client_seq <= upto then
    if ARGV[8] ~= '' then
      redis.call('PUBLISH', ARGV[7], 'R ' .. int(now_ms) .. ' ' .. ARGV[8] .. ' ')
    end
    -- The resend of a route whose reply was lost: who the original flagged offline (their
    -- push is still to be made).
    return {1, now_ms, upto, uid or '', flags or ''}
  end
end

-- 2. sent_time: Redis's clock, never backwards within the app.
local last_sent = tonumber(redis.call('GET', KEYS[1]) or '0')
local sent = math.max(now_ms, last_sent)
-- (Each number formatted once: string.format is a libc sprintf, a sizeable part of Redis's
-- instructions per script.)
local sent_s = int(sent)
if sent > last_sent then
  redis.call('SET', KEYS[1], sent_s)
end

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
-- The Delivered is field 1 (seq) .. fields 2-9 .. field 10 (sent_time) .. fields 11-13: the
-- bytes prost itself would write.
local sent_field = string.char(0x50) .. varint(sent)

local floor, max_len = tonumber(ARGV[2]), ARGV[3]
-- The age trim runs when a stored copy's seq is its user's first in a period of max age / 64
-- (~2.6 h for a week), not at every copy: entries outlive the max age by about that much more
-- (beside what `~` keeps), and a busy mailbox costs Redis one XTRIM per period, not one per
-- message.
local age_period = math.max(math.floor(tonumber(ARGV[4]) / 64), 1)
local bodies = tonumber(ARGV[10])
local n = (#ARGV - 13 - 2 * bodies) / 4
local presence = #KEYS == 5 + 3 * n
local rooms_counter, rooms_log = KEYS[#KEYS - 2], KEYS[#KEYS - 1]
-- Whether some known device of the sender is not `device` (the sending one).
local function sibling_known(device)
  local known = redis.call('HKEYS', KEYS[#KEYS])
  for j = 1, #known do
    if known[j] ~= device then return true end
  end
  return false
end
local rooms_event, rooms_channel, rooms_max = ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
-- Field 11 (offline = true) opens the tail of fields 11-13, as prost writes it.
local OFFLINE = string.char(0x58, 0x01)
-- 3. A call message: its event goes to the app's rooms log, numbered in script order, and to
-- every node's replica of the rooms: '<n> <sent_time>\n<event>'. Without the counter (a new
-- or restarted Redis) numbering starts over at the clock, above what was issued before.
-- Published before the copies (the rooms and user channels are not ordered with each other
-- anyway): a recipient's node then tends to know the call before the recipient answers it.
if rooms_event ~= '' then
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
  redis.call('XADD', rooms_log, 'MAXLEN', '~', rooms_max, int(e) .. '-0', 't', sent_s, 'e', rooms_event)
  redis.call('PUBLISH', rooms_channel, int(e) .. ' ' .. sent_s .. '\n' .. rooms_event)
end

local result = {0, sent}
local flags = {}
local replied = false
for i = 1, n do
  local seq_key, mbox = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local c = 10 + 2 * bodies + 4 * (i - 1)
  local body = tonumber(ARGV[c + 2])
  local tail = ARGV[10 + 2 * body]
  if presence and ARGV[c + 3] == '' and string.sub(tail, 1, 2) ~= OFFLINE
    and redis.call('EXISTS', KEYS[2 + 2 * n + i]) == 0 then
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
  redis.call('SET', seq_key, seq_s, 'PX', ARGV[6])

  -- 5. Into the mailbox (entry id = seq; bounded by count and age), then live to the user's
  -- nodes: 'D <seq> <skip>\n<Delivered>'.
  local delivered = string.char(0x08) .. varint(seq) .. ARGV[9 + 2 * body] .. sent_field .. tail
  local exclude = ARGV[c + 4]
  if exclude == '' or sibling_known(exclude) then
    if exclude == '' then
      redis.call('XADD', mbox, 'MAXLEN', '~', max_len, seq_s .. '-0', 'd', delivered)
    else
      redis.call('XADD', mbox, 'MAXLEN', '~', max_len, seq_s .. '-0', 'd', delivered, 'x', exclude)
    end
    if math.floor(seq / age_period) ~= math.floor(last / age_period) then
      redis.call('XTRIM', mbox, 'MINID', '~', int(math.max(now_us - tonumber(ARGV[4]), 0)))
    end
    redis.call('PEXPIRE', mbox, ARGV[5])
  end
  -- The sender's own copy (the last one, on the sender's channel, skipping the sending
  -- connection) carries the reply marker in its header: 'D <seq> <skip> <sent_time>
  -- <request_id> <uid>' is the copy, then the reply to <skip>. One publish, not two.
  local head = 'D ' .. seq_s .. ' ' .. ARGV[c + 3]
  if i == n and ARGV[8] ~= '' and ARGV[c + 1] == ARGV[7] and ARGV[c + 3] ~= ''
    and string.sub(ARGV[8], 1, #ARGV[c + 3] + 1) == ARGV[c + 3] .. ' ' then
    head = head .. ' ' .. sent_s .. ' ' .. string.sub(ARGV[8], #ARGV[c + 3] + 2) .. ' ' .. ARGV[9]
    replied = true
  end
  redis.call('PUBLISH', ARGV[c + 1], head .. '\n' .. delivered)
  result[#result + 1] = seq
end
for i = 1, n do
  result[#result + 1] = flags[i]
end

-- 6. Record the client_seq, then the sender's reply marker: 'R <sent_time> <marker> <uid>',
-- after every copy on the sender's channel.
if client_seq > 0 then
  redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[9] .. ' ' .. table.concat(flags), 'PX', ARGV[6])
end
if ARGV[8] ~= '' and not replied then
  redis.call('PUBLISH', ARGV[7], 'R ' .. sent_s .. ' ' .. ARGV[8] .. ' ' .. ARGV[9])
end
return result
