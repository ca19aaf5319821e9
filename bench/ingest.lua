-- wrk script for usage ingestion: POST /api/v1/usage/events with batches of BENCH_BATCH new events
-- (unique ids, a minute old, spread over the BENCH_SLUGS projects). Counts the events the answers
-- report as accepted ("accepted": N at the top of the body).

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
  batch = tonumber(os.getenv("BENCH_BATCH") or "1000")
  slugs = {}
  for slug in string.gmatch(os.getenv("BENCH_SLUGS") or "", "[^,]+") do
    table.insert(slugs, slug)
  end
  n = 0
  accepted, duplicate, rejected, batches = 0, 0, 0, 0
  errors, samples = {}, {}
end

function request()
  n = n + 1
  local stamp = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 60)
  local parts = {}
  for i = 1, batch do
    parts[i] = '{"id":"' .. run .. "-" .. tid .. "-" .. n .. "-" .. i .. '","project":"' ..
      slugs[(n * batch + i) % #slugs + 1] .. '","resource_type":"vm","quantity":"0.25","timestamp":"' .. stamp .. '"}'
  end
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/api/v1/usage/events", headers, '{"events":[' .. table.concat(parts, ",") .. "]}")
end

function response(status, headers, body)
  if status == 200 or status == 201 or status == 207 then
    batches = batches + 1
    accepted = accepted + tonumber(string.match(body, '"accepted"%s*:%s*(%d+)') or "0")
    duplicate = duplicate + tonumber(string.match(body, '"duplicate"%s*:%s*(%d+)') or "0")
    rejected = rejected + tonumber(string.match(body, '"rejected"%s*:%s*(%d+)') or "0")
    if rejected > 0 and not samples[status] then
      samples[status] = string.sub(body, 1, 300)
    end
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
  local total = {accepted = 0, duplicate = 0, rejected = 0, batches = 0}
  local errs, bodies = {}, {}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(total) do
      total[name] = total[name] + thread:get(name)
    end
    for status, count in pairs(thread:get("errors")) do
      errs[status] = (errs[status] or 0) + count
    end
    for status, body in pairs(thread:get("samples")) do
      bodies[status] = body
    end
  end
  local parts, sample_parts = {}, {}
  for status, count in pairs(errs) do
    table.insert(parts, '"' .. status .. '":' .. count)
  end
  for status, body in pairs(bodies) do
    table.insert(sample_parts, '"' .. status .. '":' .. quote(body))
  end
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"accepted":%d,"duplicate":%d,"rejected":%d,"batches":%d,' ..
    '"errors":{%s},"samples":{%s},"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.duration, summary.requests, total.accepted, total.duplicate, total.rejected, total.batches,
    table.concat(parts, ","), table.concat(sample_parts, ","),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
