-- policy-extras.shaping_warmup: daily warm-up schedules for new egress
-- sources, used by policy-extras.shaping's setup_with_automation
-- { warmup_files = {...} } (a kumogo addition: KumoMTA documents
-- source_selection_rate for warm-up but has no schedule).
--
-- A warm-up file (TOML, JSON or YAML, or an inline table) has one block
-- per egress source:
--
--   ["ip-3"]
--   start = "2026-12-01"   # day 1 of the plan, a UTC date
--   max_message_rate = ["500/day", "1000/day", "2500/day", "5000/day"]
--
-- Every other key is an egress path option whose list gives its value on
-- day 1, 2, 3, ... of the plan, in every egress path of that source
-- (each destination site: a per-site daily rate, as warm-up plans are
-- usually written per provider). Before the start the day 1 value holds,
-- so a source is never used unthrottled before its plan begins; after
-- the last listed day the option is left to the shaping data. The day
-- changes at 00:00 UTC and reaches the egress paths when they are
-- evaluated again (their refresh_interval, a minute by default).
local kg = require 'policy-extras.kumogo'

local mod = {}
local HELPER = 'policy-extras.shaping'

-- days_from_civil counts days since 1970-01-01 for a proleptic Gregorian
-- date (Howard Hinnant's algorithm), independent of the local time zone.
local function days_from_civil(y, m, d)
  local fl = math.floor
  if m <= 2 then
    y = y - 1
  end
  local era = fl((y >= 0 and y or y - 399) / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = fl((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + fl(yoe / 4) - fl(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- parse reads the warm-up files into source name → { start_day,
-- options = { name → list } }.
function mod.parse(files)
  local plans = {}
  for _, f in ipairs(kg.read_files(files, HELPER .. ' warmup_files')) do
    for source, block in pairs(f.data) do
      local where = string.format('%s: %s: %s', HELPER, f.name, source)
      if type(block) ~= 'table' then
        error(where .. ': expected a table', 0)
      end
      local y, m, d = tostring(block.start or ''):match '^(%d%d%d%d)-(%d%d)-(%d%d)$'
      if not y then
        error(where .. ': start: expected a date like "2026-12-01", got ' .. tostring(block.start), 0)
      end
      local plan = { start_day = days_from_civil(tonumber(y), tonumber(m), tonumber(d)), options = {} }
      for k, v in pairs(block) do
        if k ~= 'start' then
          if type(v) ~= 'table' or #v == 0 then
            error(string.format('%s: %s: expected a list of daily values', where, k), 0)
          end
          plan.options[k] = v
        end
      end
      plans[source] = plan
    end
  end
  return plans
end

-- day returns the plan day (1 = the start date) at unix time now.
function mod.day(plan, now)
  return math.floor(now / 86400) - plan.start_day + 1
end

-- apply sets the options of source's plan in force at unix time now in
-- params (the egress path parameters from the shaping data).
function mod.apply(plans, params, source, now)
  local plan = plans[source]
  if not plan then
    return params
  end
  local day = math.max(mod.day(plan, now), 1)
  for k, list in pairs(plan.options) do
    if day <= #list then
      params[k] = list[day]
    end
  end
  return params
end

return mod
