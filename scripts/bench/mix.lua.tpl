-- wrk script for the adsrv bench suite: cycles through a traffic-weighted request mix of
-- (country, lang) pairs present in the catalog (one start offset per thread), and prints one
-- JSON line with the results. The path list is filled in by scripts/bench/main.ts.
local paths = { __PATHS__ }
local reqs = {}
local i = 0
local counter = 0

function setup(thread)
  thread:set("offset", counter * 97)
  counter = counter + 1
end

function init(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
  i = (tonumber(offset) or 0) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
