/**
 * The Lua scripts of the Redis queue. Each runs atomically inside Redis, so a script is the transaction:
 * no other client sees half of it, and with `appendfsync always` its effects reach the AOF (and its disk)
 * before the reply leaves the server.
 *
 * Every script works on ONE event and receives all its keys in KEYS, every one carrying the event's hash
 * tag `{T}` (T: the event id, see keys.ts). So each script touches one slot, and the same scripts run on
 * one server and on Redis Cluster. Per event, under prefix P:
 *
 *   P:{T}:q          stream of the event's queued purchases (fields `s` seq, `p` the purchase as JSON), with
 *                    the consumer group `onsale`; deleted when it empties, created again by the next enqueue
 *   P:{T}:lease      string: the worker holding the event (expires by itself: SET PX)
 *   P:{T}:head       hash { id, n }: the event's head entry and how many times it was delivered
 *   P:{T}:p          hash purchaseId → purchase JSON, for find(), from enqueue until ack (dead letters too)
 *   P:{T}:n          counter: enqueue scripts run on the event (orders a process's writes, execution-order.ts)
 *   P:{T}:idem:<j>   string "<purchaseId> <requestHash>", j = JSON [eventId, canonical buyerId, key]; 48 h
 *   P:{T}:dead       stream of the event's dead letters (fields i purchaseId, p purchase, r reason, t deadAt)
 *   P:{T}:deadidx    hash purchaseId → its id in P:{T}:dead
 *
 * What spans events lives in keys of their own, which no script touches; queue.ts updates them in a
 * second step, in an order that is safe to repeat and never hides work (see RedisQueue):
 *
 *   P:ready          sorted set: events that may have queued purchases, scored by the seq of their head
 *   P:where          hash purchaseId → eventId, for find()
 *   P:dead:events    set: events that may have dead letters
 *
 * Scripts take ARGV[1] = the consumer group name.
 */

/**
 * Shared Lua helpers, prepended to every script.
 * - `ensure_group(stream)`: creates the stream and its consumer group at id 0 if the stream does not exist.
 * - `head_seq(stream)`: the seq of the stream's oldest entry, or -1 when it is empty.
 * - `settle(stream, head)`: after entries left the stream, its head's seq; or, when the stream is empty,
 *   forgets it (stream and head counter, so nothing grows without end) and returns -1.
 * - `bulk(args, list, from, to)`: redis.call(args…, list[from..to]…) in chunks of 1000 values, since Lua's
 *   unpack takes at most about 8000 (a batch may hold 10,000 purchases); returns the sum of the replies.
 *   One call per chunk rather than per entry: 100 acks of 500 purchases took 1.6-2.6 s with per-entry XACK,
 *   XDEL and HDEL, 0.6-1.1 s in bulk (paired runs on a busy 2-core machine, Redis with appendfsync always).
 */
const HELPERS = `
local GROUP = ARGV[1]
local function ensure_group(stream)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
  end
end
local function head_seq(stream)
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if head then return tonumber(head[2][2]) end
  return -1
end
local function settle(stream, headKey)
  local seq = head_seq(stream)
  if seq < 0 then redis.call('DEL', stream, headKey) end
  return seq
end
local function bulk(args, list, from, to)
  local total = 0
  for i = from, to, 1000 do
    local call = { unpack(args) }
    for j = i, math.min(i + 999, to) do call[#call + 1] = list[j] end
    total = total + redis.call(unpack(call))
  end
  return total
end
`;

/**
 * ENQUEUE: records the purchases of one event from a group-commit batch, resolving Idempotency-Keys in the
 * same atomic step, so two requests with one key (in this batch or in concurrent ones) make one purchase.
 * KEYS: stream, purchases hash, run counter, then the idempotency keys used.
 * ARGV[2] = seconds an idempotency key is kept; then 5 per purchase, in the batch's order:
 *   purchaseId, purchase JSON, seq, index in KEYS of its idempotency key (0 for none), request hash
 * Returns { stamp, results, head }: stamp is the run counter after the script (it orders this event's
 * scripts as Redis ran them), results one string per purchase ('a' accepted, 'd<purchaseId>' a duplicate
 * of that purchase, 'c' conflict), head the seq of the event's oldest queued purchase (-1: none).
 */
export const ENQUEUE = `${HELPERS}
local stream, purchases, counter = KEYS[1], KEYS[2], KEYS[3]
local ttl = ARGV[2]
local results, found = {}, {}
local ready = false
for i = 3, #ARGV, 5 do
  local purchaseId, payload, seq, idem, hash = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local result = 'a'
  if idem > 0 then
    local key = KEYS[idem]
    local seen = redis.call('GET', key)
    if seen then
      local space = string.find(seen, ' ', 1, true)
      if string.sub(seen, space + 1) == hash then
        result = 'd' .. string.sub(seen, 1, space - 1)
      else
        result = 'c'
      end
    else
      redis.call('SET', key, purchaseId .. ' ' .. hash, 'EX', ttl)
    end
  end
  if result == 'a' then
    if not ready then
      ensure_group(stream)
      ready = true
    end
    redis.call('XADD', stream, '*', 's', seq, 'p', payload)
    found[#found + 1] = purchaseId
    found[#found + 1] = payload
  end
  results[#results + 1] = result
end
if #found > 0 then bulk({ 'HSET', purchases }, found, 1, #found) end
local stamp = redis.call('INCR', counter)
return { stamp, results, head_seq(stream) }
`;

/**
 * CLAIM: leases the event unless another worker holds it, and hands out its oldest entries in order: first
 * those already delivered and not acked (by any consumer: XAUTOCLAIM with min-idle 0, since holding the
 * lease means their previous owner lost it), then new ones (XREADGROUP).
 *
 * Deliveries are counted per head in P:{T}:head, not read from the stream's own delivery counter: that
 * counter grows for every entry of a redelivered batch, so after a poison head is isolated and removed, the
 * purchases behind it would inherit its failures and be dead-lettered in turn. Counting the head only
 * (1 on first delivery, +1 per redelivery, 1 again for a new head) is what the worker's isolation needs.
 *
 * KEYS: stream, lease, head. ARGV[2] = worker id (also the consumer name), ARGV[3] = max entries,
 * ARGV[4] = lease in ms.
 * Returns 0 when another worker holds the event, 1 when it has nothing queued, else
 * { deliveries, entryId, json, entryId, json… }: flat rather than XREADGROUP's nested entries, which cost the
 * worker about 20% more CPU to decode (measured draining 50,000 in batches of 500: 12 against 9.5 µs of
 * client CPU per purchase claimed and acked).
 */
export const CLAIM = `${HELPERS}
local stream, lease, headKey = KEYS[1], KEYS[2], KEYS[3]
local worker, max, leaseMs = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local owner = redis.call('GET', lease)
if owner and owner ~= worker then return 0 end
if redis.call('EXISTS', stream) == 0 then return 1 end
local entries = redis.call('XAUTOCLAIM', stream, GROUP, worker, 0, '0-0', 'COUNT', max)[2]
if #entries < max then
  local fresh = redis.call('XREADGROUP', 'GROUP', GROUP, worker, 'COUNT', max - #entries, 'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do entries[#entries + 1] = entry end
  end
end
if #entries == 0 then
  settle(stream, headKey)
  return 1
end
redis.call('SET', lease, worker, 'PX', leaseMs)
local head = redis.call('HMGET', headKey, 'id', 'n')
local deliveries = 1
if head[1] == entries[1][1] then deliveries = tonumber(head[2]) + 1 end
redis.call('HSET', headKey, 'id', entries[1][1], 'n', deliveries)
local reply = { deliveries }
for _, entry in ipairs(entries) do
  reply[#reply + 1] = entry[1]
  reply[#reply + 1] = entry[2][4]
end
return reply
`;

/**
 * ACK: removes entries whose effect is committed to storage (XACK, then XDEL so that memory stays bounded),
 * with their find() records. Entries already gone (a late ack of a batch that was redelivered and acked
 * again) are harmless.
 * KEYS: stream, purchases hash, head. ARGV[2] = n; then n entry ids, then their n purchaseIds.
 * Returns the seq of the event's new head, -1 when its queue is empty (and forgotten).
 */
export const ACK = `${HELPERS}
local stream, purchases, headKey = KEYS[1], KEYS[2], KEYS[3]
local n = tonumber(ARGV[2])
bulk({ 'XACK', stream, GROUP }, ARGV, 3, 2 + n)
bulk({ 'XDEL', stream }, ARGV, 3, 2 + n)
-- Also for entries that were gone: the ack says storage has the purchase, which find() no longer needs.
bulk({ 'HDEL', purchases }, ARGV, 3 + n, 2 + 2 * n)
return settle(stream, headKey)
`;

/**
 * RELEASE: gives the event's lease up, if this worker still holds it. The entries stay pending; the next
 * claimer takes them over with XAUTOCLAIM.
 * KEYS: lease. ARGV[2] = worker id. Returns 1 if released, 0 if the lease was someone else's or gone.
 */
export const RELEASE = `${HELPERS}
if redis.call('GET', KEYS[1]) == ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * DEAD_LETTER: moves entries from the event's stream to its dead-letter stream with the reason. Their find()
 * records stay: a dead letter is still a queued purchase for its buyer until an operator replays it.
 * KEYS: stream, dead stream, dead index, head. ARGV[2] = reason, ARGV[3] = deadAt (ISO time); then pairs:
 * entry id, purchaseId. Returns { moved, head } (head as ACK's).
 */
export const DEAD_LETTER = `${HELPERS}
local stream, dead, deadIndex, headKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local reason, deadAt = ARGV[2], ARGV[3]
local moved = 0
for i = 4, #ARGV, 2 do
  local id, purchaseId = ARGV[i], ARGV[i + 1]
  local entry = redis.call('XRANGE', stream, id, id)[1]
  if entry then
    local deadId = redis.call('XADD', dead, '*', 'i', purchaseId, 'p', entry[2][4], 'r', reason, 't', deadAt)
    redis.call('HSET', deadIndex, purchaseId, deadId)
    redis.call('XACK', stream, GROUP, id)
    redis.call('XDEL', stream, id)
    moved = moved + 1
  end
end
return { moved, settle(stream, headKey) }
`;

/**
 * REPLAY: puts dead letters of the event back at the tail of its stream, oldest dead first, with new seqs
 * (given by the caller, see nextSeqs in queue.ts).
 * KEYS: stream, dead stream, dead index. ARGV[2] = first seq, ARGV[3] = at most this many; ARGV[4..] =
 * purchaseIds to replay, none meaning all. Returns { replayed, head, dead letters left }.
 */
export const REPLAY = `${HELPERS}
local stream, dead, deadIndex = KEYS[1], KEYS[2], KEYS[3]
local seq, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local entries = {}
if #ARGV == 3 then
  entries = redis.call('XRANGE', dead, '-', '+', 'COUNT', limit)
else
  local seen = {}
  for i = 4, #ARGV do
    local deadId = redis.call('HGET', deadIndex, ARGV[i])
    if deadId and not seen[deadId] then
      seen[deadId] = true
      local entry = redis.call('XRANGE', dead, deadId, deadId)[1]
      if entry then entries[#entries + 1] = entry end
    end
  end
  local function parts(id)
    local ms, n = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(n)
  end
  table.sort(entries, function(a, b)
    local ams, an = parts(a[1])
    local bms, bn = parts(b[1])
    return ams < bms or (ams == bms and an < bn)
  end)
end
local count = 0
for _, entry in ipairs(entries) do
  if count >= limit then break end
  local f = {}
  for j = 1, #entry[2], 2 do f[entry[2][j]] = entry[2][j + 1] end
  ensure_group(stream)
  redis.call('XADD', stream, '*', 's', seq + count, 'p', f.p)
  redis.call('HDEL', deadIndex, f.i)
  redis.call('XDEL', dead, entry[1])
  count = count + 1
end
local left = redis.call('XLEN', dead)
if left == 0 then redis.call('DEL', dead, deadIndex) end
return { count, head_seq(stream), left }
`;

/**
 * STATE: the event's queued purchases and dead letters, read together (a replay between two separate reads
 * could show both as 0 while one is in flight from one to the other), and its head.
 * KEYS: stream, dead stream. Returns { queued, deadLetters, head seq (-1: none), head purchase JSON or nil }.
 */
export const STATE = `${HELPERS}
local queued = redis.call('XLEN', KEYS[1])
local deadLetters = redis.call('XLEN', KEYS[2])
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if head then return { queued, deadLetters, tonumber(head[2][2]), head[2][4] } end
return { queued, deadLetters, -1, false }
`;
