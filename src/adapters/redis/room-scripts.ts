/**
 * The Lua scripts of the Redis waiting room. Each runs atomically inside Redis and only applies what the
 * adapter decided with the domain module (src/domain/waiting-room.ts): the scripts number, record and
 * check, they never choose. A step that decided from a line which moved meanwhile is refused (the line's
 * `version`) and decided again.
 *
 * Every key of one event's line carries the event's hash tag `{T}` (as the queue's keys), so each script
 * touches one slot and the same scripts run on one server and on Redis Cluster. Per event, under prefix P:
 *
 *   P:room:{T}:line     hash: the line's counters and limits (Line), `opened` 0/1, `soldOut` 0/1,
 *                       `progress` (JSON), `version` (bumped by every step, opening and change of limits)
 *   P:room:{T}:buyers   hash canonical buyer id → placeId: one place per buyer
 *   P:room:{T}:places   hash placeId → JSON { b: buyerId, c: canonical buyer id, j: joinedAt }
 *   P:room:{T}:pre      list: the pre-queue's placeIds in arrival order (deleted by the opening lottery)
 *   P:room:{T}:number   hash placeId → line number
 *   P:room:{T}:at       hash line number → placeId
 *   P:room:{T}:read     hash placeId → when it was last read (ms)
 *   P:room:{T}:eta      hash placeId → the estimate told at join (s)
 *   P:room:{T}:outcome  hash placeId → JSON ["admitted", admittedAt, admissionExpiresAt] or ["expired"]
 *   P:room:{T}:active   set: admitted places still holding a slot
 *   P:room:{T}:bought   hash placeId → the ids of purchases accepted with its admission, space-separated
 *
 * What spans events is in two keys no script touches, written before the work they point to:
 *
 *   P:room:where        hash placeId → eventId (a place is read by its id alone)
 *   P:room:lines        set: every event with a line (for the ticker)
 */

/**
 * Takes places. KEYS: line, buyers, places, number, at, pre, read. ARGV: the `opened` the adapter decided
 * from ('0': places join the pre-queue, '1': they take line numbers), the count of line field values, the
 * fields and values the line is made with if it does not exist yet, then per request: placeId, canonical
 * buyer id, place JSON, joined at (ms). Returns nil when `opened` is not what the adapter read (decide
 * again), else per request 'n<line number>', 'p' (pre-queue) or 'e<placeId>' (the buyer's place).
 */
export const ROOM_JOIN = `
local opened = ARGV[1]
local fields = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + fields))
end
if redis.call('HGET', KEYS[1], 'opened') ~= opened then return false end
local replies = {}
for i = 3 + fields, #ARGV, 4 do
  local id, buyer = ARGV[i], ARGV[i + 1]
  local existing = redis.call('HGET', KEYS[2], buyer)
  if existing then
    replies[#replies + 1] = 'e' .. existing
  else
    redis.call('HSET', KEYS[2], buyer, id)
    redis.call('HSET', KEYS[3], id, ARGV[i + 2])
    redis.call('HSET', KEYS[7], id, ARGV[i + 3])
    if opened == '1' then
      local n = redis.call('HINCRBY', KEYS[1], 'tail', 1)
      redis.call('HSET', KEYS[4], id, n)
      redis.call('HSET', KEYS[5], n, id)
      replies[#replies + 1] = 'n' .. n
    else
      redis.call('HINCRBY', KEYS[1], 'prequeued', 1)
      redis.call('RPUSH', KEYS[6], id)
      replies[#replies + 1] = 'p'
    end
  end
end
return replies
`;

/**
 * The opening lottery's result. KEYS: line, pre, number, at. ARGV: the progress after opening (JSON), then
 * the whole pre-queue in the order the adapter shuffled it. Returns 1 when the line is open (now or
 * already), 0 when the pre-queue grew since the adapter read it (shuffle again).
 */
export const ROOM_OPEN = `
if redis.call('HGET', KEYS[1], 'opened') == '1' then return 1 end
local count = #ARGV - 1
if redis.call('LLEN', KEYS[2]) ~= count then return 0 end
for n = 1, count do
  redis.call('HSET', KEYS[3], ARGV[n + 1], n)
  redis.call('HSET', KEYS[4], n, ARGV[n + 1])
end
redis.call('HSET', KEYS[1], 'opened', '1', 'tail', count, 'progress', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('DEL', KEYS[2])
return 1
`;

/**
 * The places at line numbers ARGV[1]..ARGV[2], in order, as flat [id, last read, place JSON, eta or ''].
 * KEYS: at, read, places, eta.
 */
export const ROOM_FRONT = `
local out = {}
for n = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local id = redis.call('HGET', KEYS[1], n)
  if not id then break end
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or '{}'
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or ''
end
return out
`;

/**
 * One step of the line, as the adapter decided it from the line at `version`. KEYS: line, active, outcome.
 * ARGV: version, the admitted outcome JSON, counts of released, admitted and expired places and of line
 * field values, then those lists in that order. Returns 0 (nothing written) when the line moved since.
 */
export const ROOM_STEP = `
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
local released, admitted, expired, fields = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local i = 7
for j = i, i + released - 1 do redis.call('SREM', KEYS[2], ARGV[j]) end
i = i + released
for j = i, i + admitted - 1 do
  redis.call('SADD', KEYS[2], ARGV[j])
  redis.call('HSET', KEYS[3], ARGV[j], ARGV[2])
end
i = i + admitted
for j = i, i + expired - 1 do redis.call('HSET', KEYS[3], ARGV[j], '["expired"]') end
i = i + expired
redis.call('HSET', KEYS[1], unpack(ARGV, i, i + fields - 1))
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
`;

/** One place: [place JSON, line number, outcome JSON, purchases, eta], '' for each one missing. */
export const ROOM_PLACE = `
local id = ARGV[1]
local out = {}
for k = 1, 5 do out[k] = redis.call('HGET', KEYS[k], id) or '' end
return out
`;

/** Records reads: ARGV pairs placeId, ms; only later ones, and only of places that exist. KEYS: read. */
export const ROOM_READS = `
for i = 1, #ARGV, 2 do
  local last = redis.call('HGET', KEYS[1], ARGV[i])
  if last and tonumber(last) < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0
`;

/** Adds purchase ARGV[2] to place ARGV[1]'s, once. KEYS: bought. */
export const ROOM_PURCHASE = `
local known = redis.call('HGET', KEYS[1], ARGV[1])
if not known then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
elseif not string.find(' ' .. known .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then
  redis.call('HSET', KEYS[1], ARGV[1], known .. ' ' .. ARGV[2])
end
return 0
`;

/** The active admissions as flat [placeId, outcome JSON, purchases or '']. KEYS: active, outcome, bought. */
export const ROOM_ACTIVE = `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or '[]'
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
end
return out
`;

/** Sets fields of an existing line (ARGV pairs) and returns it (HGETALL); nil when there is none. */
export const ROOM_LIMITS = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
redis.call('HINCRBY', KEYS[1], 'version', 1)
return redis.call('HGETALL', KEYS[1])
`;
