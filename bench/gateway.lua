-- wrk script for the gateway bench: the same metered GET for every request, with the project's key.
-- No request id is sent: nginx makes a new $request_id per request, so each call is charged once.
-- Configuration from the environment: BENCH_KEY, BENCH_PATH.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local key = os.getenv("BENCH_KEY")
  req = wrk.format("GET", os.getenv("BENCH_PATH") or "/v1/bench", {["Authorization"] = "Bearer " .. key})
  ok = 0
  errors = {}
  samples = {}
end

function request()
  return req
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    errors[status] = (errors[status] or 0) + 1
    if not samples[status] then
      samples[status] = string.sub(body or "", 1, 300)
    end
  end
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local total_ok = 0
  local errs, bodies = {}, {}
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    for status, count in pairs(thread:get("errors")) do
      errs[status] = (errs[status] or 0) + count
    end
    for status, body in pairs(thread:get("samples")) do
      bodies[status] = body
    end
  end
  local parts = {}
  for status, count in pairs(errs) do
    table.insert(parts, '"' .. status .. '":' .. count)
  end
  local sample_parts = {}
  for status, body in pairs(bodies) do
    table.insert(sample_parts, '"' .. status .. '":' .. quote(body))
  end
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"ok":%d,"errors":{%s},"samples":{%s},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%d}\n',
    summary.duration, summary.requests, total_ok, table.concat(parts, ","), table.concat(sample_parts, ","),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
