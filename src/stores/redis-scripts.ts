/**
 * The Lua scripts a Redis store runs. Each is one atomic step on one key, timed by the Redis
 * server's own clock (`TIME`, allowed before writes since Redis 5's effect replication), so hosts
 * with skewed clocks still agree on one schedule. One key per limit, so a script never spans hash
 * slots: the key carries a hash tag (`{…}`) and works unchanged on Redis Cluster.
 *
 * Replies are arrays of integers (Redis truncates Lua numbers), except a token bucket's tag.
 */

/**
 * Token bucket lease: GCRA, as `TokenBucket` does in shared memory, with the theoretical arrival
 * time TAT stored in microseconds since the Unix epoch, and the batch RESERVED rather than
 * granted-or-refused.
 *
 * KEYS[1] the TAT. ARGV: interval T (µs, may be fractional), burst b, want (≤ b).
 *
 * GCRA admits k tokens at time t iff max(TAT, t) + k·T − t ≤ b·T. Instead of answering "not yet",
 * the script books the batch at once, TAT ← max(TAT, now) + want·T, and answers when the booking
 * becomes admissible: notBefore = TAT − b·T − now (0 if it is admissible now). The caller uses the
 * tokens no earlier than that, so every token is used no earlier than GCRA would have admitted it,
 * and the bound burst + rate × L holds on the booked admission times exactly as on granted ones.
 * Booking, rather than polling until enough is free, means processes that contend for one limit
 * each get their batch in one round trip, in the order they asked, instead of all waking at the
 * same moment and all but one coming back empty.
 *
 * TAT is a double near 1.8·10¹⁵ µs, where a double resolves 0.25 µs; notBefore is rounded up and
 * one µs added, so rounding can only delay, never advance. A missing key is a full bucket, so the
 * key expires once TAT is in the past: idle limits vanish without losing anything.
 *
 * Reply: {granted, notBeforeUs, tag} where tag is the new TAT (a give-back must match it).
 */
export const LEASE_TOKEN_BUCKET = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + want * interval
local tag = string.format('%.3f', tat)
redis.call('SET', KEYS[1], tag, 'PX', math.ceil((tat - now) / 1000) + 1000)
local wait = tat - burst * interval - now
if wait <= 0 then return {want, 0, tag} end
return {want, math.ceil(wait) + 1, tag}
`;

/**
 * Token bucket give-back: returns n unused tokens by moving TAT back n·T, but only while TAT is
 * still what the grant left (`tag`). Moving it back after someone else's grant could let the
 * schedule run ahead of what was really used: TAT is a maximum over suffixes of the grant
 * sequence, and taking tokens out of the middle lowers it by less than n·T.
 *
 * KEYS[1] the TAT. ARGV: interval T, n, tag. Reply: 1 if given back, 0 if not.
 */
export const GIVE_BACK_TOKEN_BUCKET = `
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[3] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(cur) - tonumber(ARGV[2]) * tonumber(ARGV[1])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
return 1
`;

/**
 * Fixed window lease. Windows are aligned to the Redis clock: window w = floor(now / period).
 * One hash per limit holds {w, c}; a call in a newer window starts the count afresh, as the
 * shared-memory fixed window does with its one word.
 *
 * KEYS[1] the hash. ARGV: period (ms), maxCalls, want, min.
 * Reply: {granted, retryAfterUs, validUs, w}: granted tokens are valid until the window ends
 * (validUs from now); when fewer than `min` fit (now, or after this grant), retry when the next
 * window opens.
 */
export const LEASE_FIXED_WINDOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local w = math.floor(now / period)
local cur = redis.call('HMGET', KEYS[1], 'w', 'c')
local c = 0
if tonumber(cur[1]) == w then c = tonumber(cur[2]) end
local rest = math.floor(((w + 1) * period - now) * 1000)
local grant = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) - c)
local min = tonumber(ARGV[4])
if grant < min then return {0, rest + 1, 0, w} end
redis.call('HSET', KEYS[1], 'w', w, 'c', c + grant)
redis.call('PEXPIRE', KEYS[1], math.ceil(period) + 1000)
local retry = 0
if tonumber(ARGV[2]) - c - grant < min then retry = rest + 1 end
return {grant, retry, rest, w}
`;

/**
 * Fixed window give-back: n unused tokens return to window w's count, if w is still current (a
 * token of a past window is worthless, and one of the current window may be used by anyone).
 *
 * KEYS[1] the hash. ARGV: w, n. Reply: 1 if given back, 0 if not.
 */
export const GIVE_BACK_FIXED_WINDOW = `
local cur = redis.call('HMGET', KEYS[1], 'w', 'c')
if tonumber(cur[1]) ~= tonumber(ARGV[1]) then return 0 end
local c = tonumber(cur[2]) - tonumber(ARGV[2])
if c < 0 then c = 0 end
redis.call('HSET', KEYS[1], 'c', c)
return 1
`;
