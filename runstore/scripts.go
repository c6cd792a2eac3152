package runstore

import (
	"github.com/redis/go-redis/v9"
)

// The Lua scripts below are each one atomic step of the run protocol. Times
// come from Redis (TIME), not from the workers, so machines with skewed
// clocks agree on rate limits and leases.

// scriptTransition moves the run from one status to another.
// KEYS: run. ARGV: from, to, extra field (or empty), its value, ttl (ms).
var scriptTransition = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// scriptBeginItem: KEYS: done set, checkpoint, run. ARGV: item key, ttl (ms),
// now. Returns {1} when the item is recorded, else {0, stop reason,
// checkpoint fields} after counting the attempt.
var scriptBeginItem = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {1} end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSETNX', KEYS[2], 'started_at', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {0, redis.call('HGET', KEYS[3], 'stop') or '', redis.call('HGETALL', KEYS[2])}
`)

// scriptDiscard: KEYS: checkpoint. ARGV: pending field, id, wasted in, wasted
// out, ttl (ms).
var scriptDiscard = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], '')
local d = redis.call('HGET', KEYS[1], 'discarded')
if d and d ~= '' then d = d .. ',' .. ARGV[2] else d = ARGV[2] end
redis.call('HSET', KEYS[1], 'discarded', d)
redis.call('HINCRBY', KEYS[1], 'wasted_in', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'wasted_out', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// scriptReserveBudget: KEYS: budget hash, checkpoint. ARGV: estimate, budget,
// ttl (ms). Returns {granted, used}.
var scriptReserveBudget = redis.NewScript(`
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if redis.call('HEXISTS', KEYS[2], 'reserved') == 1 then return {1, used} end
local est = tonumber(ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'exhausted') == 1 or used + est > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'exhausted', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {0, used}
end
redis.call('HINCRBY', KEYS[1], 'used', est)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'reserved', est)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, used + est}
`)

// scriptRecord writes an item record exactly once. The done set decides who
// records; the step hash's done field counts it (O(1), where SCARD is O(n) on
// the embedded miniredis).
// KEYS: done set, records, step, run, budget, checkpoint.
// ARGV: key, index, record, state, input tokens, output tokens, budget delta,
// ttl (ms). Returns {new, done, total (-1 when unplanned)}.
var scriptRecord = redis.NewScript(`
local new = redis.call('SADD', KEYS[1], ARGV[1])
if new == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  redis.call('HINCRBY', KEYS[3], 'done', 1)
  redis.call('HINCRBY', KEYS[3], 'input_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[3], 'output_tokens', ARGV[6])
  if tonumber(ARGV[7]) ~= 0 then
    redis.call('HINCRBY', KEYS[5], 'used', ARGV[7])
    redis.call('PEXPIRE', KEYS[5], ARGV[8])
  end
  -- A succeeded item's checkpoint is done with; another's is kept for a
  -- retry of the run (Reopen), which resumes what the item had started.
  if ARGV[4] == 'succeeded' then redis.call('DEL', KEYS[6]) end
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
end
local total = redis.call('HGET', KEYS[3], 'total')
if total then total = tonumber(total) else total = -1 end
return {new, tonumber(redis.call('HGET', KEYS[3], 'done') or '0'), total}
`)

// scriptPause extends the fleet-wide pause to ARGV[1] ms from now and
// keeps, as its value, what the API asked for: "<status> <asked ms> <granted
// ms> <until ms since the epoch>". KEYS: pause. ARGV: wait (ms), status,
// asked (ms). Returns 1 when no pause was in effect (a new pause started),
// 2 when a pause was extended by more than a second, else 0.
var scriptPause = redis.NewScript(`
local left = redis.call('PTTL', KEYS[1])
local d = tonumber(ARGV[1])
if left >= d then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. string.format('%d', now + d), 'PX', ARGV[1])
if left <= 0 then return 1 end
if d - left > 1000 then return 2 end
return 0
`)

// adaptRate is the Lua body shared by the adaptive scripts: it sets `rate`
// (requests per second) from the adaptive hash `akey` at time `now` (µs).
// The rate grows back after a cut as TCP CUBIC's window does: from
// beta·wmax (wmax: the rate cut), fast at first, flat around wmax, which
// it reaches `recover` seconds after the cut, then faster and faster
// beyond it, probing for more: rate = wmax·(1 + (1-beta)·(t/recover - 1)³).
// Never below minrate.
const adaptRate = `
local wmax = tonumber(redis.call('HGET', akey, 'wmax') or '0')
local at = tonumber(redis.call('HGET', akey, 'at') or '0')
local x = (now - at) / 1000000 / recover - 1
local rate = wmax * (1 + (1 - beta) * x * x * x)
if rate < minrate then rate = minrate end
`

// scriptAdaptCut lowers the adaptive request rate after an answer that
// asked the fleet to slow down (multiplicative decrease), at most once per
// window: the other 429s of the same overload count once. Engaging for the
// first time, it starts from the fleet's measured request rate in the last
// second. KEYS: adaptive hash, sent counts (hash of second → requests).
// ARGV: beta, recover (s), min rate, window (µs), quiet (ms), requests the
// caller sent that it has not counted yet.
// Returns {cut (0/1), rate after (milli requests per second), engaged before
// (0/1)}.
var scriptAdaptCut = redis.NewScript(`
local akey = KEYS[1]
local beta, recover, minrate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local engaged = redis.call('EXISTS', akey)
local base
if engaged == 1 then
` + adaptRate + `
  if now - at < tonumber(ARGV[4]) then return {0, math.floor(rate * 1000), 1} end
  base = rate
else
  local sec = tonumber(t[1])
  local prev = tonumber(redis.call('HGET', KEYS[2], tostring(sec - 1)) or '0')
  local cur = tonumber(redis.call('HGET', KEYS[2], tostring(sec)) or '0') + tonumber(ARGV[6])
  base = math.max(prev, cur * 1000000 / math.max(tonumber(t[2]), 100000), 1)
end
if base < minrate / beta then base = minrate / beta end
local tat = tonumber(redis.call('HGET', akey, 'tat') or '0')
if tat < now then tat = now end
redis.call('HSET', akey, 'wmax', string.format('%.6f', base), 'at', string.format('%d', now), 'tat', string.format('%d', tat))
redis.call('HINCRBY', akey, 'cuts', 1)
redis.call('PEXPIRE', akey, ARGV[5])
return {1, math.floor(base * beta * 1000), engaged}
`)

// scriptAdaptGate grants an API request a send time: nothing while the
// fleet is paused, nor while the adaptive rate (engaged after the server's
// 429s) has a queue beyond the horizon (its rate may be cut meanwhile);
// otherwise the first time that is both the pipeline's next
// requests_per_minute slot (GCRA, burst 1: one request per interval,
// evenly spaced) and, when engaged, the adaptive rate's next slot, both
// reserved. Reserving (rather than granting a slot only once it has come)
// keeps waiting callers from all asking again each time a slot frees, and
// loses no slot while they wake up; a caller that gives up wastes its
// slot. KEYS: pause, pipeline request limiter, adaptive hash. ARGV:
// pipeline interval (µs, 0: none), beta, recover (s), min rate, horizon
// (µs). Returns {wait µs, granted, engaged, paused}: granted 1 means send
// after wait; granted 0 means ask again after wait, which is the pause
// left when paused is 1.
var scriptAdaptGate = redis.NewScript(`
local p = redis.call('PTTL', KEYS[1])
if p > 0 then return {p * 1000, 0, 1, 1} end
local akey = KEYS[3]
local beta, recover, minrate = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local g = now
if interval > 0 then
  local ptat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if ptat > g then g = ptat end
end
local engaged = redis.call('EXISTS', akey)
if engaged == 1 then
` + adaptRate + `
  local tat = tonumber(redis.call('HGET', akey, 'tat') or '0')
  if tat < now then tat = now end
  if tat - now > tonumber(ARGV[5]) then return {tat - now - tonumber(ARGV[5]), 0, 1, 0} end
  if tat > g then g = tat end
  redis.call('HSET', akey, 'tat', string.format('%d', g + 1000000 / rate))
end
if interval > 0 then
  redis.call('SET', KEYS[2], string.format('%d', g + interval), 'PX', math.floor((g + interval - now) / 1000) + 1000)
end
return {g - now, 1, engaged, 0}
`)

// scriptPaceTick is a worker's periodic look at the shared pacing state: it
// adds the requests the worker sent since its last tick to the current
// second's count and returns {pause left (ms), adaptive limiter left (ms),
// adaptive rate (milli requests per second, 0 when not engaged)}. KEYS:
// pause, adaptive hash, sent counts. ARGV: requests sent, beta, recover
// (s), min rate.
var scriptPaceTick = redis.NewScript(`
local t = redis.call('TIME')
local n = tonumber(ARGV[1])
if n > 0 then
  redis.call('HINCRBY', KEYS[3], t[1], n)
  redis.call('HDEL', KEYS[3], tostring(tonumber(t[1]) - 3))
  redis.call('PEXPIRE', KEYS[3], 5000)
end
local akey = KEYS[2]
local left = redis.call('PTTL', akey)
local r = 0
if left > 0 then
  local beta, recover, minrate = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
` + adaptRate + `
  r = math.floor(rate * 1000)
end
return {math.max(redis.call('PTTL', KEYS[1]), 0), math.max(left, 0), r}
`)

// scriptUncountAttempt takes back the attempt an item's delivery counted,
// when the API only asked it to wait. KEYS: checkpoint.
var scriptUncountAttempt = redis.NewScript(`
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
end
return 1
`)

// scriptTokens: KEYS: token limiter. ARGV: interval (µs per token), burst
// (tokens), n, settle (1: correct a reservation by n, no wait). Returns the
// wait in µs.
var scriptTokens = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
local newtat = tat + interval * tonumber(ARGV[3])
if newtat < now then newtat = now end
redis.call('SET', KEYS[1], string.format('%d', newtat), 'PX', math.floor((newtat - now) / 1000) + 1000)
if ARGV[4] == '1' then return 0 end
local wait = newtat - interval * tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
return math.floor(wait)
`)

// takeSlot is the Lua body shared by scriptAcquireSlot and
// scriptBeginItemSlot: it takes a slot of the in-flight zset `zkey` for
// `holder` (a retaken slot is renewed) unless `limit` slots are held, and
// sets `slot` to 1 when it did. Expired leases are dropped first.
const takeSlot = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
if redis.call('ZSCORE', zkey, holder) or redis.call('ZCARD', zkey) < limit then
  redis.call('ZADD', zkey, now + ttl, holder)
  redis.call('PEXPIRE', zkey, ttl * 10)
  slot = 1
end
`

// scriptAcquireSlot: KEYS: in-flight zset (member: holder, score: lease end
// in ms). ARGV: limit, holder, ttl (ms). Returns 1 when the slot is held.
var scriptAcquireSlot = redis.NewScript(`
local zkey, limit, holder, ttl = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local slot = 0
` + takeSlot + `
return slot
`)

// scriptBeginItemSlot is scriptBeginItem that also takes an in-flight slot
// for the attempt, unless the item is recorded or the run is stopping.
// KEYS: done set, checkpoint, run, in-flight zset. ARGV: item key, ttl (ms),
// now, slot limit, holder prefix (the attempt number is appended after a
// '#'), slot ttl (ms). Returns {1} when the item is recorded, else {0, stop
// reason, checkpoint fields, slot taken (0/1)}.
var scriptBeginItemSlot = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {1} end
local attempts = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSETNX', KEYS[2], 'started_at', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local stop = redis.call('HGET', KEYS[3], 'stop') or ''
local slot = 0
if stop == '' then
  local zkey, limit, holder, ttl = KEYS[4], tonumber(ARGV[4]), ARGV[5] .. '#' .. attempts, tonumber(ARGV[6])
` + takeSlot + `
end
return {0, stop, redis.call('HGETALL', KEYS[2]), slot}
`)

// scriptRenewSlot: KEYS: in-flight zset. ARGV: holder, ttl (ms).
var scriptRenewSlot = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return 1
`)
