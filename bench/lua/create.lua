-- POST a new document.
local prefix = os.getenv("M_BENCH_PREFIX")
local token = os.getenv("M_BENCH_TOKEN") or ""
local n = 0
request = function()
  n = n + 1
  local headers = { ["Content-Type"] = "application/json" }
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  local body = string.format('{"customer_name":"Bench %d","email":"b%d@example.com","territory":"North","credit_limit":"250.75"}', n, n)
  return wrk.format("POST", prefix, headers, body)
end
