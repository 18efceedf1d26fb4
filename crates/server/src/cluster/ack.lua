#!lua
-- ack: a device's cumulative ack, then trim the user's mailbox to what some known device has
-- not acked yet. Caller: cluster/mailbox.rs (`Mailboxes::ack`).
--
-- KEYS[1] the user's device cursors (hash device -> seq)   KEYS[2] the user's mailbox stream
-- KEYS[3] the user's seq key
-- ARGV[1] device   ARGV[2] acked seq   ARGV[3] state TTL (ms)
--
-- Returns {the device's cursor, the lowest cursor, entries trimmed}.

local function int(n) return string.format('%.0f', n) end

-- Nobody can have seen more than was issued: at most the user's last seq or the clock (us).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local issued = tonumber(redis.call('GET', KEYS[3]) or '0')
local seq = math.min(tonumber(ARGV[2]), math.max(issued, now_us))

-- Acks are cumulative: a cursor never goes back.
local cursor = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if seq > cursor then
  cursor = seq
  redis.call('HSET', KEYS[1], ARGV[1], int(cursor))
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])

-- An entry goes once every known device acked it (exact trim: entries with seq <= lowest).
local lowest = cursor
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  lowest = math.min(lowest, tonumber(v))
end
local trimmed = redis.call('XTRIM', KEYS[2], 'MINID', int(lowest + 1))
-- An emptied stream still holds its last node's bytes (XTRIM only flags entries inside a
-- node as deleted): up to 4 KB per user. Dropped instead while the seq key holds the last seq
-- (the stream's last id is only the route script's fallback without it).
if trimmed > 0 and redis.call('XLEN', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[2])
end
return {cursor, lowest, trimmed}
