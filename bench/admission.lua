-- wrk script for the admission bench: reserve then commit, two HTTP calls per pair, as a caller
-- makes them (Bearer key, a new Idempotency-Key per call). Each wrk thread keeps a queue of the
-- reservation ids its 201 answers carried; request() sends a commit when one is queued, else a reserve.
-- Configuration from the environment: BENCH_KEY, BENCH_SLUGS (comma-separated), BENCH_AMOUNT, BENCH_RUN.

local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function init(args)
  key = os.getenv("BENCH_KEY")
  run = os.getenv("BENCH_RUN") or "run"
  amount = os.getenv("BENCH_AMOUNT") or "0.01"
  slugs = {}
  for slug in string.gmatch(os.getenv("BENCH_SLUGS") or "", "[^,]+") do
    table.insert(slugs, slug)
  end
  queue, head, tail = {}, 1, 0
  n = 0
  reserves, commits, no_id = 0, 0, 0
  errors = {}
  samples = {}
end

function request()
  n = n + 1
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. n,
  }
  if head <= tail then
    local id = queue[head]
    queue[head] = nil
    head = head + 1
    return wrk.format("POST", "/api/v1/reservations/" .. id .. "/commit", headers, "{}")
  end
  local slug = slugs[(n * 7 + tid) % #slugs + 1]
  local body = '{"project":"' .. slug .. '","resource_type":"vm","quantity":"1","amount":"' .. amount .. '"}'
  return wrk.format("POST", "/api/v1/reservations", headers, body)
end

function response(status, headers, body)
  if status == 201 then
    local id = string.match(body, '"id"%s*:%s*"?([%w%-_]+)"?')
    if id then
      reserves = reserves + 1
      tail = tail + 1
      queue[tail] = id
    else
      no_id = no_id + 1
    end
  elseif status == 200 then
    commits = commits + 1
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
  local total = {reserves = 0, commits = 0, no_id = 0}
  local errs, bodies = {}, {}
  for _, thread in ipairs(threads) do
    total.reserves = total.reserves + thread:get("reserves")
    total.commits = total.commits + thread:get("commits")
    total.no_id = total.no_id + thread:get("no_id")
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
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"reserves":%d,"commits":%d,"no_id":%d,' ..
    '"errors":{%s},"samples":{%s},"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%d}\n',
    summary.duration, summary.requests, total.reserves, total.commits, total.no_id,
    table.concat(parts, ","), table.concat(sample_parts, ","),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
