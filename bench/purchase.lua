-- wrk script for `npm run bench`: POSTs one purchase per request, each from a buyer never seen before (so the
-- per-buyer rate limit refuses none), and prints a JSON summary that bench/wrk.ts parses.
-- Arguments after `--`: purchase path, ticket type id, buyer id prefix (unique per run), and optionally a
-- pause in milliseconds before each request of a connection (to run below full load).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  path, ticketTypeId, prefix = args[1], args[2], args[3]
  sent = 0
  statuses = {}
  headers = { ["Content-Type"] = "application/json" }
  -- Defined only when asked for: wrk schedules every request on a timer once a script has delay().
  if args[4] then
    local pause = tonumber(args[4])
    function delay()
      return pause
    end
  end
end

function request()
  sent = sent + 1
  local body = string.format('{"buyerId":"%s-%d-%d","items":[{"ticketTypeId":"%s","quantity":1}]}',
    prefix, tid, sent, ticketTypeId)
  return wrk.format("POST", path, headers, body)
end

-- Defining response() makes wrk hand every status over; its own summary only counts those >= 400.
function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"durationUs":%d,"requests":%d,"p50Us":%d,"p99Us":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ","), e.connect, e.read, e.write, e.timeout))
end
