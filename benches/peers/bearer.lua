-- wrk: bearer tokens from $TOKENS, round-robin, on the paths in $PATHS (comma-separated).
local tokens, paths, i = {}, {}, 0
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
for p in string.gmatch(os.getenv("PATHS") or "/mapi/emsmdb/", "[^,]+") do paths[#paths + 1] = p end
local basic = os.getenv("BASIC_EVERY")
basic = basic and tonumber(basic) or 0
request = function()
  i = i + 1
  local path = paths[(i % #paths) + 1]
  if basic > 0 and i % basic == 0 then
    return wrk.format("GET", path, { ["Authorization"] = "Basic dXNlcjAxQGNvbnRvc28uY29tOlN1bW1lcjIwMjYh" })
  end
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
