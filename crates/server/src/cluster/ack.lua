#!lua
-- ack: devices' cumulative acks, each followed by trimming its user's mailbox to what some known
-- device has not acked yet. One call carries every device a node acked since its last call (of
-- one app: the keys share its tag), so a busy node costs Redis one script per round trip, not
-- one per delivery. Caller: cluster/mailbox.rs (`Mailboxes::ack_many`).
--
-- Per device i = 1..n: KEYS[3i-2] the user's device cursors (hash device -> seq)
--   KEYS[3i-1] the user's mailbox stream   KEYS[3i] the user's seq key
--   ARGV[2i] device   ARGV[2i+1] acked seq
-- ARGV[1] state TTL (ms)
--
-- Returns {cursor_1, lowest_1, trimmed_1, ..., cursor_n, lowest_n, trimmed_n}: each device's
-- cursor, the lowest cursor of its user's devices, and the entries its ack trimmed.

-- '%d' (C long, 64 bits where Redis runs) rather than '%.0f': exact for these integers
-- (< 2^53), and glibc formats '%.0f' with multi-precision arithmetic (7-9 % of Redis's profile
-- while it ran route scripts).
local function int(n) return string.format('%d', n) end

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS / 3 do
  local cursors, mbox, seq_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local device = ARGV[2 * i]
  -- Nobody can have seen more than was issued: at most the user's last seq or the clock (us).
  local issued = tonumber(redis.call('GET', seq_key) or '0')
  local seq = math.min(tonumber(ARGV[2 * i + 1]), math.max(issued, now_us))

  -- Acks are cumulative: a cursor never goes back. One HGETALL reads this device's cursor
  -- and every known device's (the lowest one bounds the trim).
  local all = redis.call('HGETALL', cursors)
  local cursor, lowest = 0, nil
  for j = 1, #all, 2 do
    local v = tonumber(all[j + 1])
    if all[j] == device then
      cursor = v
    elseif lowest == nil or v < lowest then
      lowest = v
    end
  end
  if seq > cursor then
    cursor = seq
    redis.call('HSET', cursors, device, int(cursor))
  end
  redis.call('PEXPIRE', cursors, ARGV[1])
  lowest = math.min(lowest or cursor, cursor)

  -- An entry goes once every known device acked it (exact trim: entries with seq <= lowest).
  -- An emptied stream still holds its last node's bytes (XTRIM only flags entries inside a
  -- node as deleted): up to 4 KB per user. Dropped instead while the seq key holds the last
  -- seq (the stream's last id is only the route script's fallback without it); with
  -- everything issued acked (a user whose devices keep up) without trimming it first.
  local trimmed
  if issued > 0 and lowest >= issued then
    trimmed = redis.call('XLEN', mbox)
    if trimmed > 0 then
      redis.call('DEL', mbox)
    end
  else
    trimmed = redis.call('XTRIM', mbox, 'MINID', int(lowest + 1))
    if trimmed > 0 and issued > 0 and redis.call('XLEN', mbox) == 0 then
      redis.call('DEL', mbox)
    end
  end
  out[#out + 1] = cursor
  out[#out + 1] = lowest
  out[#out + 1] = trimmed
end
return out
