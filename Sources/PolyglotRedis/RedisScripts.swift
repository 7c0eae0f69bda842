// The Lua scripts of the Redis engine. Each runs atomically on the server (EVALSHA, with EVAL on NOSCRIPT), so a
// check and the write that depends on it cannot interleave with another client's.
//
// Cache entries are strings: `V<version>\n<bytes>` for a value, `T<version>` for an invalidation (a tombstone).
// A lookup is then one plain GET; the scripts read only the first bytes (GETRANGE) to learn the version.

enum RedisScripts {
    /// Stores a cache value unless the key holds a newer version (value or tombstone); releases the single-flight
    /// lock when the caller still holds it.
    /// KEYS: entry, lock. ARGV: version, payload, ttl ms, lock token ("" for none). Returns 1 when stored, 0 when refused.
    static let fill = """
        local stored = 1
        local head = redis.call('GETRANGE', KEYS[1], 0, 24)
        if head ~= '' then
          local v = tonumber(string.match(head, '^[VT](%-?%d+)'))
          if v and v > tonumber(ARGV[1]) then stored = 0 end
        end
        if stored == 1 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
        if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
        return stored
        """

    /// Replaces a cache entry by a tombstone of `version`, unless it holds a newer version already.
    /// KEYS: entry. ARGV: version, tombstone lifetime ms. Returns 1 when the tombstone was written.
    static let invalidate = """
        local head = redis.call('GETRANGE', KEYS[1], 0, 24)
        if head ~= '' then
          local v = tonumber(string.match(head, '^[VT](%-?%d+)'))
          if v and v > tonumber(ARGV[1]) then return 0 end
        end
        redis.call('SET', KEYS[1], 'T' .. ARGV[1], 'PX', ARGV[2])
        return 1
        """

    /// After a miss: the value if it arrived meanwhile, else the single-flight lock for the caller when nobody holds it.
    /// KEYS: entry, lock, fencing counter. ARGV: lock ttl ms.
    /// Returns {1, value} (cached now), {2, token} (another loader holds the lock), {3, token} (the caller holds it now).
    static let claim = """
        local cur = redis.call('GET', KEYS[1])
        if cur and string.byte(cur, 1) == 86 then return {1, cur} end
        local holder = redis.call('GET', KEYS[2])
        if holder then return {2, holder} end
        local token = redis.call('INCR', KEYS[3])
        redis.call('SET', KEYS[2], token, 'PX', ARGV[1])
        return {3, tostring(token)}
        """

    /// Releases the single-flight lock if the caller still holds it (a load that found nothing or failed).
    /// KEYS: lock. ARGV: token. Returns 1 when released.
    static let release = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """

    /// INCRBY that keeps the key's TTL and sets `ttl` on a key it creates.
    /// KEYS: key. ARGV: delta, ttl ms or "". Returns {1, value} or {0, server error text}.
    static let increment = """
        local exists = redis.call('EXISTS', KEYS[1])
        local ok, n = pcall(redis.call, 'INCRBY', KEYS[1], ARGV[1])
        if not ok then
          if type(n) == 'table' then return {0, n.err} end
          return {0, tostring(n)}
        end
        if exists == 0 and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return {1, n}
        """

    /// Sets `new` (keeping the TTL) only while the key still holds `old`: the slow path of increment for values
    /// Redis does not parse as integers but the counter rule accepts (`+5`, `007`).
    /// KEYS: key. ARGV: old, new. Returns 1 when set.
    static let compareAndSet = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
          return 1
        end
        return 0
        """

    /// MGET that tells a missing key from a key of another Redis type (MGET answers nil for both), so `getMany`
    /// fails on such a key as `get` and `scan` do. KEYS: the keys. Returns MGET's reply.
    static let getMany = """
        local values = redis.call('MGET', unpack(KEYS))
        for i = 1, #KEYS do
          if not values[i] then
            local t = redis.call('TYPE', KEYS[i])['ok']
            if t ~= 'none' then
              return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value: ' .. KEYS[i] .. ' is a ' .. t)
            end
          end
        end
        return values
        """

    /// The values and absolute expiries (ms since 1970, -1 for none) of existing keys.
    /// KEYS: the keys. Returns a flat array {key, value, expiry, ...} of the keys that still exist.
    static let fetch = """
        local out = {}
        for _, k in ipairs(KEYS) do
          local v = redis.call('GET', k)
          if v then
            out[#out + 1] = k
            out[#out + 1] = v
            out[#out + 1] = redis.call('PEXPIRETIME', k)
          end
        end
        return out
        """

    /// Reads a session hash and slides its TTL. KEYS: session. ARGV: ttl ms. Returns the flat field/value array, or nil.
    static let sessionGet = """
        local v = redis.call('HGETALL', KEYS[1])
        if #v == 0 then return false end
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        return v
        """

    /// Writes session fields and slides its TTL. KEYS: session. ARGV: ttl ms, mode (create | update | upsert),
    /// then field/value pairs. Returns 1 when written, 0 when `update` found no session, -1 when `create` found one.
    static let sessionWrite = """
        local exists = redis.call('EXISTS', KEYS[1])
        if ARGV[2] == 'update' and exists == 0 then return 0 end
        if ARGV[2] == 'create' and exists == 1 then return -1 end
        if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        return 1
        """

    /// Removes session fields and slides the TTL. KEYS: session. ARGV: ttl ms, then fields. Returns the number removed,
    /// or -1 when there is no session.
    static let sessionRemove = """
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        local n = redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        return n
        """

    /// Generic cell rate algorithm (GCRA): one key holds the theoretical arrival time in µs of the server clock.
    /// KEYS: state. ARGV: emission interval µs (period / limit), burst, cost.
    /// Returns {allowed 0|1, remaining, retry after µs, reset after µs}.
    static let gcra = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local interval = tonumber(ARGV[1])
        local tolerance = interval * tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tat < now then tat = now end
        local newTat = tat + interval * cost
        local allowAt = newTat - tolerance
        if allowAt > now then
          return {0, math.floor((tolerance - (tat - now)) / interval), allowAt - now, tat - now}
        end
        redis.call('SET', KEYS[1], string.format('%.0f', newTat), 'PX', math.ceil((newTat - now) / 1000))
        return {1, math.floor((tolerance - (newTat - now)) / interval), 0, newTat - now}
        """

    /// A member's neighbourhood in a sorted set. KEYS: set. ARGV: member, radius, `desc` or `asc`.
    /// Returns {first rank (0-based), {member, score, ...}}, or nil when the member is absent.
    static let around = """
        local desc = ARGV[3] == 'desc'
        local r
        if desc then r = redis.call('ZREVRANK', KEYS[1], ARGV[1]) else r = redis.call('ZRANK', KEYS[1], ARGV[1]) end
        if not r then return false end
        local n = tonumber(ARGV[2])
        local first = r - n
        if first < 0 then first = 0 end
        local items
        if desc then items = redis.call('ZREVRANGE', KEYS[1], first, r + n, 'WITHSCORES')
        else items = redis.call('ZRANGE', KEYS[1], first, r + n, 'WITHSCORES') end
        return {first, items}
        """
}
