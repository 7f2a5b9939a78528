-- wrk script for the bench's waiting-room part: POSTs one join per request, each from a buyer never seen
-- before, and prints a JSON summary like purchase.lua's. Arguments after `--`: join path, buyer id prefix.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  path, prefix = args[1], args[2]
  sent = 0
  statuses = {}
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  sent = sent + 1
  return wrk.format("POST", path, headers, string.format('{"buyerId":"%s-%d-%d"}', prefix, tid, sent))
end

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
  io.write(string.format('WRK_RESULT {"durationUs":%d,"requests":%d,"p99Us":%d,"statuses":{%s}}\n',
    summary.duration, summary.requests, latency:percentile(99), table.concat(parts, ",")))
end
