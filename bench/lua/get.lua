-- GET one document by id, chosen at random from the seeded ids.
local ids = {}
for line in io.lines(os.getenv("M_BENCH_IDS")) do ids[#ids + 1] = line end
local prefix = os.getenv("M_BENCH_PREFIX")
local token = os.getenv("M_BENCH_TOKEN") or ""
request = function()
  local headers = {}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", prefix .. "/" .. ids[math.random(#ids)], headers)
end
