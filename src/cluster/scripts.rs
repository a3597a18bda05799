//! The Lua scripts the fleet runs in Redis: each reads and updates its keys atomically in
//! one round trip, with Redis's own clock (`TIME`), so that instances whose clocks differ
//! agree on windows. Field names of a user's lockout hash: `fbad`/`flast` for the
//! familiar location, `ubad`/`ulast` for unknown ones (counts, and the last failure in
//! milliseconds since the epoch); the familiar addresses are a sorted set scored by the
//! time of their last success.

use redis::Script;

/// Redis's clock in milliseconds, as a Lua number.
const NOW: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS: lockout hash, familiar set, spray set, spray flag, attempts in flight from the
/// familiar location, from unknown ones (sorted sets of attempt ids scored by the time
/// they are given up on). ARGV: ip, user id, lockout enabled (0/1), unknown threshold,
/// familiar threshold, window ms, spray enabled (0/1), spray distinct users, spray
/// window ms, reserve (0/1: the attempt would be forwarded in enforce mode), spray block
/// (0/1), attempt id, hold ms.
/// Returns {familiar, locked, success changes state, spray flagged now, spray flagged,
/// busy, reserved}: an attempt is reserved (counted in flight) unless the count plus the
/// attempts in flight reached the threshold (busy).
const CHECK: &str = r"
local ip, name = ARGV[1], ARGV[2]
local lockout_on = ARGV[3] == '1'
local t_unknown, t_familiar, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local spray_on, limit, spray_window = ARGV[7] == '1', tonumber(ARGV[8]), tonumber(ARGV[9])

local flagged_now, flagged = 0, 0
if spray_on then
  local n = redis.call('SCARD', KEYS[3])
  if n <= limit then
    redis.call('SADD', KEYS[3], name)
    if redis.call('PTTL', KEYS[3]) < 0 then
      redis.call('PEXPIRE', KEYS[3], spray_window)
    end
    n = redis.call('SCARD', KEYS[3])
  end
  if n > limit then
    local left = redis.call('PTTL', KEYS[3])
    if left <= 0 then left = spray_window end
    if redis.call('SET', KEYS[4], '1', 'NX', 'PX', left) then flagged_now = 1 end
    flagged = 1
  elseif redis.call('EXISTS', KEYS[4]) == 1 then
    flagged = 1
  end
end

local familiar = 0
if redis.call('ZSCORE', KEYS[2], ip) then familiar = 1 end
local p = (familiar == 1) and 'f' or 'u'
local threshold = (familiar == 1) and t_familiar or t_unknown
local bad = tonumber(redis.call('HGET', KEYS[1], p .. 'bad') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], p .. 'last') or '0')
local fresh = (now - last) < window
local locked = 0
if lockout_on and fresh and bad >= threshold then locked = 1 end
local changes = 0
if familiar == 0 or (fresh and bad > 0) then changes = 1 end
-- A familiar address whose last success is a day old is refreshed by the next one.
if familiar == 1 then
  local seen = tonumber(redis.call('ZSCORE', KEYS[2], ip))
  if now - seen > 86400000 then changes = 1 end
end

local busy, reserved = 0, 0
local blocked_by_spray = flagged == 1 and ARGV[11] == '1'
if lockout_on and ARGV[10] == '1' and locked == 0 and not blocked_by_spray then
  local pending = (familiar == 1) and KEYS[5] or KEYS[6]
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
  local counted = 0
  if fresh then counted = bad end
  if counted + redis.call('ZCARD', pending) >= threshold then
    busy = 1
  else
    local hold = tonumber(ARGV[13])
    redis.call('ZADD', pending, now + hold, ARGV[12])
    redis.call('PEXPIRE', pending, hold)
    reserved = 1
  end
end
return {familiar, locked, changes, flagged_now, flagged, busy, reserved}
";

/// KEYS: lockout hash, familiar set, the attempt's in-flight set. ARGV: ip, unknown
/// threshold, familiar threshold, window ms, attempt id. Counts the failure and takes
/// the attempt out of flight. Returns {familiar, count, engaged now}.
const BAD_PASSWORD: &str = r"
local ip = ARGV[1]
redis.call('ZREM', KEYS[3], ARGV[5])
local t_unknown, t_familiar, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local familiar = 0
if redis.call('ZSCORE', KEYS[2], ip) then familiar = 1 end
local p = (familiar == 1) and 'f' or 'u'
local threshold = (familiar == 1) and t_familiar or t_unknown
local last = tonumber(redis.call('HGET', KEYS[1], p .. 'last') or '0')
if (now - last) >= window then redis.call('HSET', KEYS[1], p .. 'bad', 0) end
local bad = redis.call('HINCRBY', KEYS[1], p .. 'bad', 1)
redis.call('HSET', KEYS[1], p .. 'last', now)
redis.call('PEXPIRE', KEYS[1], window)
local engaged = 0
if bad == threshold then engaged = 1 end
return {familiar, bad, engaged}
";

/// KEYS: lockout hash, familiar set, the attempt's in-flight set. ARGV: ip, familiar
/// ttl ms, attempt id, whether the state changes (0/1). Takes the attempt out of flight;
/// when the state changes, clears the location's count and makes the address familiar,
/// keeping the last 20.
const GOOD_PASSWORD: &str = r"
local ip = ARGV[1]
redis.call('ZREM', KEYS[3], ARGV[3])
if ARGV[4] ~= '1' then return 1 end
local p = 'u'
if redis.call('ZSCORE', KEYS[2], ip) then p = 'f' end
redis.call('HDEL', KEYS[1], p .. 'bad', p .. 'last')
redis.call('ZADD', KEYS[2], now, ip)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -21)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
";

/// KEYS: lockout hash, familiar set. ARGV: window ms. Returns, as strings, {familiar
/// count, familiar last, unknown count, unknown last, familiar ip…}; counts whose window
/// has passed read 0.
const ACTIVITY: &str = r"
local window = tonumber(ARGV[1])
local out = {}
for _, p in ipairs({'f', 'u'}) do
  local bad = tonumber(redis.call('HGET', KEYS[1], p .. 'bad') or '0')
  local last = tonumber(redis.call('HGET', KEYS[1], p .. 'last') or '0')
  if (now - last) >= window then bad = 0; last = 0 end
  table.insert(out, tostring(bad))
  table.insert(out, tostring(last))
end
for _, ip in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do table.insert(out, ip) end
return out
";

/// KEYS: policy log, its digest. ARGV: expected version, expected digest, script,
/// channel. Appends and publishes when the log is at the expected version *and* digest
/// (a log of the same length with other entries, after Redis lost data, is another
/// history); the digest chains SHA-1(previous digest .. script) in hex, "" for the empty
/// log. Returns {1, new version} or {0, version}.
const APPEND: &str = r"
local version = redis.call('LLEN', KEYS[1])
local digest = redis.call('GET', KEYS[2]) or ''
if version == 0 then digest = '' end
if version ~= tonumber(ARGV[1]) or digest ~= ARGV[2] then return {0, version} end
version = redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], redis.sha1hex(digest .. ARGV[3]))
redis.call('PUBLISH', ARGV[4], tostring(version))
return {1, version}
";

/// KEYS: policy log, its digest. Returns {version, digest} read together.
const LOG_STATE: &str = r"
local version = redis.call('LLEN', KEYS[1])
local digest = redis.call('GET', KEYS[2]) or ''
if version == 0 then digest = '' end
return {tostring(version), digest}
";

/// The scripts, with their SHA-1 computed once (EVALSHA, loaded on first use).
pub(super) struct Scripts {
    pub check: Script,
    pub bad_password: Script,
    pub good_password: Script,
    pub activity: Script,
    pub append: Script,
    pub log_state: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let timed = |body: &str| Script::new(&format!("{NOW}{body}"));
        Scripts {
            check: timed(CHECK),
            bad_password: timed(BAD_PASSWORD),
            good_password: timed(GOOD_PASSWORD),
            activity: timed(ACTIVITY),
            append: Script::new(APPEND),
            log_state: Script::new(LOG_STATE),
        }
    }
}
