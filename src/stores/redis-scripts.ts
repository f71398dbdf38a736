/**
 * The Lua scripts a Redis store runs. Each is one atomic step on one key, timed by the Redis
 * server's own clock (`TIME`, allowed before writes since Redis 5's effect replication), so hosts
 * with skewed clocks still agree on one schedule. One key per limit, so a script never spans hash
 * slots: the key carries a hash tag (`{…}`) and works unchanged on Redis Cluster.
 *
 * Replies are arrays of integers (Redis truncates Lua numbers), except a token bucket's tag.
 *
 * The scripts are typed `string`: inferred, their type would be their whole text as a literal,
 * 15 kB of Lua copied into the published declarations.
 */

/**
 * How long a limit's state outlives its last use, ms: long enough that a key which is missing
 * while some process used the limit within this time was lost (FLUSHALL, a restart without
 * persistence), not expired. One small key per limit, so keeping it costs nothing worth saving.
 */
export const STATE_KEEP_MS = 600_000;

/**
 * Token bucket lease: GCRA, as `TokenBucket` does in shared memory, with the theoretical arrival
 * time TAT stored in microseconds since the Unix epoch, and the batch RESERVED rather than
 * granted-or-refused.
 *
 * KEYS[1] the TAT. ARGV: interval T (µs, may be fractional), burst b, want (≤ b), min, ahead (the
 * look-ahead A, µs: `lookaheadUs` of store.ts), seen (the TAT this process last saw, µs; −1 for
 * none), doubt (1: the connection was re-established or the limit was down since this process
 * last asked), reserve (µs added to an empty bucket when the state was lost or is in doubt),
 * credit (λ, µs: the wake-up credit, `gcraCreditUs` of gcra.ts).
 *
 * GCRA admits k tokens at time t iff max(TAT, t) + k·T − t ≤ b·T. Instead of answering "not yet",
 * the script books the batch at once, TAT ← max(TAT, now) + k·T, and answers when the booking
 * becomes admissible: notBefore = TAT − b·T − now (0 if it is admissible now). The caller uses the
 * tokens no earlier than that, so every token is used no earlier than GCRA would have admitted it,
 * and the bound burst + rate × L holds on the booked admission times exactly as on granted ones.
 * Booking, rather than polling until enough is free, means processes that contend for one limit
 * each get their batch in one round trip, in the order they asked, instead of all waking at the
 * same moment and all but one coming back empty.
 *
 * Requests come from waiting calls, late by their timer and a round trip, so they get a waiter's
 * wake-up credit (gcra.ts): the booking starts from max(TAT, now − λ) rather than max(TAT, now),
 * and when that counts the grant from before now the answer says from when, notBefore =
 * max(TAT, now − λ) − now, negative (remote-limit.ts holds the tokens from then). Every call of a
 * Redis-held limit waits for a fetch, so unlike in shared memory the first calls after an idle
 * spell get the credit too: up to burst + rate × λ at once, which the bound allows. A missing key
 * (a first use, an expiry) starts at now, without credit.
 *
 * Booking stops A ahead: k is cut so that TAT ≤ now + b·T + A, i.e. notBefore ≤ A; below `min`
 * nothing is booked and the answer says when `min` will fit. So every token granted before a
 * failure at time f is admissible by f + A, and a state that is found lost restarts at
 * TAT = now + b·T + A: empty, and behind every booking made before the loss, so no token is
 * admitted twice (README, "When Redis loses the state"). Lost means missing although this
 * process saw the key within STATE_KEEP_MS (an idle limit's key lives that long after its bucket
 * is full again, so its absence is then no expiry), or older than what this process saw (a
 * failover to a replica that lacked the last writes). A doubt (this process's
 * connection was re-established, or the limit was down) restarts the bucket empty at least
 * (TAT ≥ now + b·T), so a stale state cannot hand out a burst it had already given. `reserve` is
 * added to either (local-share's processes not yet back).
 *
 * The credit and a restart: the credited start max(TAT, now − λ) is raised to the restart's floor
 * (≥ now + b·T) afterwards, so a request that finds the state lost or in doubt gets no credit, and
 * as the credit never moves TAT back, no later request counts a grant from before the restart
 * either. Combined bound: each grant is counted at max(TAT, now − λ), at or after the TAT it found,
 * so gcra.ts's proof gives ≤ burst + rate × (L + λ) on those instants in any interval of length L
 * (in starts: burst + rate × (L + d), d the hold, which includes the credit used); after a loss
 * found at `now`, every token booked before it was admissible by now + A, and the first one booked
 * after it is admissible no earlier than now + A + T: no token is admitted twice.
 *
 * TAT is a double near 1.8·10¹⁵ µs, where a double resolves 0.25 µs; notBefore is rounded up and
 * one µs added, so rounding can only delay, never advance; a negative notBefore is rounded down,
 * so the hold it makes the caller count can only be longer.
 *
 * Reply: {granted, notBeforeUs, retryAfterUs, tag, lost}: tag is the new TAT (a give-back must
 * match it); lost is 1 when the script found the state lost (not for a mere doubt).
 */
export const LEASE_TOKEN_BUCKET: string = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local min = tonumber(ARGV[4])
local ahead = tonumber(ARGV[5])
local seen = tonumber(ARGV[6])
local cur = tonumber(redis.call('GET', KEYS[1]))
local lost = 0
if cur == nil then
  if seen > now - ${STATE_KEEP_MS * 1000} then lost = 1 end
elseif cur < seen then
  lost = 1
end
local tat = cur or now
if tat < seen then tat = seen end
local since = now - tonumber(ARGV[9])
if tat < since then tat = since end
if lost == 1 or ARGV[7] == '1' then
  local empty = now + burst * interval + tonumber(ARGV[8])
  if lost == 1 then empty = empty + ahead end
  if tat < empty then tat = empty end
end
local grant = math.min(want, math.floor((now + burst * interval + ahead - tat) / interval))
if grant < min then
  local tag = string.format('%.3f', tat)
  if tat ~= cur then redis.call('SET', KEYS[1], tag, 'PX', math.ceil((tat - now) / 1000) + ${STATE_KEEP_MS}) end
  return {0, 0, math.ceil(tat + min * interval - burst * interval - ahead - now) + 1, tag, lost}
end
local base = tat
tat = tat + grant * interval
local tag = string.format('%.3f', tat)
redis.call('SET', KEYS[1], tag, 'PX', math.ceil((tat - now) / 1000) + ${STATE_KEEP_MS})
local wait = tat - burst * interval - now
if wait > 0 then return {grant, math.ceil(wait) + 1, 0, tag, lost} end
if base < now then return {grant, math.floor(base - now), 0, tag, lost} end
return {grant, 0, 0, tag, lost}
`;

/**
 * Token bucket give-back: returns n unused tokens by moving TAT back n·T, but only while TAT is
 * still what the grant left (`tag`). Moving it back after someone else's grant could let the
 * schedule run ahead of what was really used: TAT is a maximum over suffixes of the grant
 * sequence, and taking tokens out of the middle lowers it by less than n·T. The key is kept (a
 * TAT in the past is a full bucket), so that its absence keeps meaning a lost or idle state.
 *
 * KEYS[1] the TAT. ARGV: interval T, n, tag. Reply: 1 if given back, 0 if not.
 */
export const GIVE_BACK_TOKEN_BUCKET: string = `
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[3] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(cur) - tonumber(ARGV[2]) * tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.max(0, math.ceil((tat - now) / 1000)) + ${STATE_KEEP_MS})
return 1
`;

/**
 * Fixed window lease. Windows are aligned to the Redis clock: window w = floor(now / period).
 * One hash per limit holds {w, c}; a call in a newer window starts the count afresh, as the
 * shared-memory fixed window does with its one word.
 *
 * KEYS[1] the hash. ARGV: period (ms), maxCalls, want, min, seenW, seenC (the window and count
 * this process's last grant left; −1 and 0 for none).
 * Reply: {granted, retryAfterUs, validUs, w, lost, c}: c is the window's count after the grant;
 * granted tokens are valid until the window ends
 * (validUs from now); when fewer than `min` fit (now, or after this grant), retry when the next
 * window opens. A hash missing although this process saw it within STATE_KEEP_MS, or behind what
 * this process saw, was lost (lost = 1): the current window's count is unknown, so it is taken as
 * spent and nothing more is granted until the next window; no window can then start more than
 * maxCalls.
 */
export const LEASE_FIXED_WINDOW: string = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local seenW = tonumber(ARGV[5])
local w = math.floor(now / period)
local cur = redis.call('HMGET', KEYS[1], 'w', 'c')
local cw = tonumber(cur[1])
local c = 0
local lost = 0
if cw == nil then
  if seenW >= 0 and (w - seenW) * period < ${STATE_KEEP_MS} then lost = 1 end
elseif cw < seenW or (cw == seenW and tonumber(cur[2]) < tonumber(ARGV[6])) then
  lost = 1
end
if cw == w then c = tonumber(cur[2]) end
local rest = math.floor(((w + 1) * period - now) * 1000)
if lost == 1 then
  redis.call('HSET', KEYS[1], 'w', w, 'c', max)
  redis.call('PEXPIRE', KEYS[1], math.ceil(period) + ${STATE_KEEP_MS})
  return {0, rest + 1, 0, w, 1, max}
end
local grant = math.min(tonumber(ARGV[3]), max - c)
local min = tonumber(ARGV[4])
if grant < min then return {0, rest + 1, 0, w, 0, c} end
redis.call('HSET', KEYS[1], 'w', w, 'c', c + grant)
redis.call('PEXPIRE', KEYS[1], math.ceil(period) + ${STATE_KEEP_MS})
local retry = 0
if max - c - grant < min then retry = rest + 1 end
return {grant, retry, rest, w, 0, c + grant}
`;

/**
 * Fixed window give-back: n unused tokens return to window w's count, if w is still current (a
 * token of a past window is worthless, and one of the current window may be used by anyone).
 *
 * KEYS[1] the hash. ARGV: w, n. Reply: 1 if given back, 0 if not.
 */
export const GIVE_BACK_FIXED_WINDOW: string = `
local cur = redis.call('HMGET', KEYS[1], 'w', 'c')
if tonumber(cur[1]) ~= tonumber(ARGV[1]) then return 0 end
local c = tonumber(cur[2]) - tonumber(ARGV[2])
if c < 0 then c = 0 end
redis.call('HSET', KEYS[1], 'c', c)
return 1
`;

/**
 * Concurrency limit: one sync of a holder (one thread's view of the limit, see
 * remote-concurrency.ts). At most `max` permits are held over all holders; a holder that stops
 * renewing its lease (a dead process) loses its permits when the lease runs out; holders that wait
 * queue in FIFO order and are handed permits by whichever sync frees them, with a PUBLISH telling
 * them so (no polling).
 *
 * KEYS[1] hash H: n (permits held over all holders), t (queue tickets), epochs, and per holder h
 * e:h (its epoch), g:h (permits granted in that epoch, cumulative), r:h (released, cumulative),
 * m:h and w:h (while it waits: the permits its first waiting call needs, and all it wants).
 * KEYS[2] zset of leases: holder → expiry (ms, Redis clock). KEYS[3] zset queue: holder → ticket.
 * ARGV: holder, max, leaseMs, epoch (the holder's, as it knows it; 0 for none), knownGranted (its
 * g as it knows it), released (its r), need (what its first waiting call needs; 0 when none
 * waits), want (need plus what the calls behind it need), channel.
 *
 * A waiting holder is granted, when it is first in the queue and its `need` fits, as much of its
 * `want` as fits, and goes to the back of the queue for the rest (one permit at a time: its first
 * call is served). So holders take turns, a holder with many waiting calls gets several permits
 * per notice, and no holder ever holds part of what its first call needs.
 *
 * Counts are cumulative, so a sync that timed out after Redis ran it is harmless to repeat: a
 * release counts once (r only grows), and grants the holder did not hear of are in the next
 * reply's g (and its need is reduced by them). A holder Redis does not know under its epoch
 * (first use, idle and forgotten, its lease ran out, or the state was lost) starts a new epoch
 * holding what it says it holds (knownGranted − released); so after a loss the permits in use come
 * back into the count at each holder's next sync.
 *
 * Reply: {epoch, g, n, queued (0/1), wakeInMs (until the next lease runs out; −1 for none), fresh}.
 * Notice (PUBLISH): "holder epoch g left" (left: what it still waits for in the queue).
 */
export const SYNC_PERMITS: string = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local H, Z, Q = KEYS[1], KEYS[2], KEYS[3]
local h = ARGV[1]
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local n = tonumber(redis.call('HGET', H, 'n')) or 0
local function forget(d)
  local v = redis.call('HMGET', H, 'g:' .. d, 'r:' .. d)
  n = n - ((tonumber(v[1]) or 0) - (tonumber(v[2]) or 0))
  redis.call('HDEL', H, 'e:' .. d, 'g:' .. d, 'r:' .. d, 'm:' .. d, 'w:' .. d)
  redis.call('ZREM', Z, d)
  redis.call('ZREM', Q, d)
end
for _, d in ipairs(redis.call('ZRANGEBYSCORE', Z, '-inf', now)) do forget(d) end
local e = tonumber(redis.call('HGET', H, 'e:' .. h))
local fresh = 0
local g
local unseen = 0
if e == nil or e ~= tonumber(ARGV[4]) then
  if e ~= nil then forget(h) end
  e = redis.call('HINCRBY', H, 'epochs', 1)
  g = tonumber(ARGV[5]) - tonumber(ARGV[6])
  redis.call('HSET', H, 'e:' .. h, e, 'g:' .. h, g, 'r:' .. h, 0)
  n = n + g
  fresh = 1
else
  g = tonumber(redis.call('HGET', H, 'g:' .. h))
  unseen = g - tonumber(ARGV[5])
  local r = tonumber(redis.call('HGET', H, 'r:' .. h))
  local released = tonumber(ARGV[6])
  if released > r then
    n = n - (released - r)
    redis.call('HSET', H, 'r:' .. h, released)
  end
end
local want = tonumber(ARGV[8]) - unseen
local queued = redis.call('ZSCORE', Q, h)
if tonumber(ARGV[7]) > 0 and want > 0 then
  if not queued then redis.call('ZADD', Q, redis.call('HINCRBY', H, 't', 1), h) end
  redis.call('HSET', H, 'm:' .. h, math.max(1, tonumber(ARGV[7]) - unseen), 'w:' .. h, want)
elseif queued then
  redis.call('ZREM', Q, h)
  redis.call('HDEL', H, 'm:' .. h, 'w:' .. h)
end
while n < max do
  local front = redis.call('ZRANGE', Q, 0, 0)[1]
  if front == nil then break end
  local v = redis.call('HMGET', H, 'm:' .. front, 'w:' .. front)
  if n + tonumber(v[1]) > max then break end
  local k = math.min(tonumber(v[2]), max - n)
  n = n + k
  local fg = redis.call('HINCRBY', H, 'g:' .. front, k)
  local left = tonumber(v[2]) - k
  if left > 0 then
    redis.call('ZADD', Q, redis.call('HINCRBY', H, 't', 1), front)
    redis.call('HSET', H, 'm:' .. front, 1, 'w:' .. front, left)
  else
    redis.call('ZREM', Q, front)
    redis.call('HDEL', H, 'm:' .. front, 'w:' .. front)
  end
  if front == h then
    g = fg
  else
    redis.call('PUBLISH', ARGV[9], front .. ' ' .. redis.call('HGET', H, 'e:' .. front) .. ' ' .. fg .. ' ' .. left)
  end
end
queued = redis.call('ZSCORE', Q, h) and 1 or 0
if g - tonumber(redis.call('HGET', H, 'r:' .. h)) > 0 or queued == 1 then
  redis.call('ZADD', Z, now + lease, h)
else
  -- Holds nothing and waits for nothing: forgotten, so idle holders leave no trace.
  forget(h)
end
redis.call('HSET', H, 'n', n)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], 2 * lease + ${STATE_KEEP_MS}) end
local next = redis.call('ZRANGE', Z, 0, 0, 'WITHSCORES')[2]
local wake = -1
if next ~= nil then wake = math.max(0, tonumber(next) - now) end
return {e, g, n, queued, wake, fresh}
`;
