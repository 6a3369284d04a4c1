-- wrk script for bench/serve.sh: POST /v1/recommend for known users drawn at random, paced to a
-- target rate (exponential gaps per connection) or unpaced (rate 0); prints one "BENCH {json}" line.
-- Usage: wrk ... -s wrk_recommend.lua URL -- USERS_FILE RATE CONNECTIONS THREADS [K]
local users = {}
local mean_gap_ms = 0
local k = 10
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then users[#users + 1] = line end
  end
  local rate, conns, nthreads = tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  k = tonumber(args[5] or "10")
  if rate > 0 then
    -- each connection of this thread sends one request per mean gap: conns / rate seconds
    mean_gap_ms = conns / rate * 1000
  end
  math.randomseed(os.time() + (id or 0) * 7919 + math.floor(os.clock() * 1e6))
end

function request()
  local user = users[math.random(#users)]
  local body = string.format('{"user":"%s","k":%d}', user, k)
  return wrk.format("POST", "/v1/recommend", { ["Content-Type"] = "application/json" }, body)
end

function delay()
  if mean_gap_ms == 0 then return 0 end
  return -math.log(1 - math.random()) * mean_gap_ms
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_s":%.3f,"rate":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,' ..
    '"max_ms":%.3f,"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
