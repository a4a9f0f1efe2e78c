-- GET the newest 20 documents (no count, like the baseline).
local path = os.getenv("M_BENCH_LIST_PATH")
local token = os.getenv("M_BENCH_TOKEN") or ""
request = function()
  local headers = {}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", path, headers)
end
