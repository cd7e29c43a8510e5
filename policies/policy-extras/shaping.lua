-- policy-extras.shaping: the get_egress_path_config handler driven by
-- traffic shaping files (KumoMTA's user guide, "Traffic Shaping"), merged
-- by kumo.shaping.load: "default", provider blocks, site (mx_rollup) and
-- domain blocks, per-source blocks, replace_base.
--
--   kumo.on('get_egress_path_config', shaping:setup { '/path/shaping.toml' })
--
-- or, in the style of KumoMTA's example policy:
--
--   local shaper = shaping:setup_with_automation { extra_files = {...}, publish = {...}, subscribe = {...} }
--   kumo.on('get_egress_path_config', shaper.get_egress_path_config)
--
-- The default file '/opt/kumomta/share/policy-extras/shaping.toml' comes
-- first unless no_default_files = true; when it is not installed, kumogo's
-- bundled copy is used. With publish/subscribe URLs of a TSA daemon
-- (`kumogo tsa`), setup_publish() (call it in init) publishes delivery
-- outcomes to it and applies the suspensions it serves, and its
-- configuration overrides are loaded as one more shaping file
-- (policy-extras.shaping_tsa).
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local kg = require 'policy-extras.kumogo'
local tsa = require 'policy-extras.shaping_tsa'
local warmup = require 'policy-extras.shaping_warmup'

local mod = {}
local HELPER = 'policy-extras.shaping'
local DEFAULT_FILE = '/opt/kumomta/share/policy-extras/shaping.toml'

local OPTIONS = {
  extra_files = true,
  no_default_files = true,
  publish = true,
  subscribe = true,
  cache_ttl = true,
  pre_filter = true,
  skip_log_record_types = true,
  additional_skip_log_record_types = true,
  back_pressure = true,
  load_validation_options = true,
  validation_options = true,
  retry_shaping_data_fetch_on_populate_timeout = true,
  shaping_data_populate_timeout = true,
  allow_stale_shaping_data = true,
  warmup_files = true,
}

local function ttl_seconds(v)
  if v == nil then
    return 60
  end
  if type(v) == 'number' then
    return v
  end
  if kumo.time and kumo.time.parse_duration then
    return kumo.time.parse_duration(v).seconds
  end
  local n, unit = tostring(v):match '^%s*(%d+)%s*(%a*)%s*$'
  local mult = { [''] = 1, s = 1, sec = 1, secs = 1, second = 1, seconds = 1, m = 60, min = 60, mins = 60, minute = 60, minutes = 60, h = 3600, hour = 3600, hours = 3600 }
  if not n or not mult[unit] then
    error(string.format('%s: cache_ttl %q is not a duration', HELPER, tostring(v)), 0)
  end
  return tonumber(n) * mult[unit]
end

local function load_shaping(file_names, options)
  local data = kumo.shaping.load(file_names, options)
  for _, err in ipairs(data:get_errors()) do
    kumo.log_error(HELPER .. ': ' .. err)
  end
  for _, warn in ipairs(data:get_warnings()) do
    kumo.log_warn(HELPER .. ': ' .. warn)
  end
  return data
end

-- now is the clock of the warm-up schedules (unix seconds); tests replace
-- it.
function mod.now()
  return os.time()
end

function mod:setup(extra_files)
  if type(extra_files) == 'string' then
    extra_files = { extra_files }
  end
  return self:setup_with_automation({ extra_files = extra_files }).get_egress_path_config
end

function mod:setup_with_automation(options)
  if mod.CONFIGURED then
    error(HELPER .. ': already configured', 2)
  end
  kg.check_keys(options, OPTIONS, HELPER .. ':setup_with_automation')
  local file_names = {}
  if not options.no_default_files then
    file_names[#file_names + 1] = DEFAULT_FILE
  end
  for _, f in ipairs(options.extra_files or {}) do
    file_names[#file_names + 1] = f
  end
  for _, f in ipairs(tsa.config_files(options)) do
    file_names[#file_names + 1] = f
  end
  local setup_publish = tsa.register(options)

  -- The shaping object is shared by the Lua states: kumo.shaping.load
  -- resolves the MX of every rolled-up domain.
  local get_data = kg.cached(HELPER, file_names, function()
    return load_shaping(file_names, options.load_validation_options)
  end, ttl_seconds(options.cache_ttl))

  local warmup_plans = nil
  if options.warmup_files then
    warmup_plans = warmup.parse(options.warmup_files)
  end

  local function get_egress_path_config(domain, egress_source, site_name, skip_make)
    local params = get_data():get_egress_path_config(domain, egress_source, site_name)
    if warmup_plans then
      warmup.apply(warmup_plans, params, egress_source, mod.now())
    end
    if params.refresh_strategy == nil then
      params.refresh_strategy = 'Epoch'
    end
    if skip_make then
      return params
    end
    return kumo.make_egress_path(params)
  end

  mod.CONFIGURED = {
    _file_names = file_names,
    _options = options,
    load_shaping_data = get_data,
    get_egress_path_config = get_egress_path_config,
    setup_publish = setup_publish,
    warmup_plans = warmup_plans,
  }
  return mod.CONFIGURED
end

kumo.on('validate_config', function()
  if not mod.CONFIGURED then
    return
  end
  local ok, result = pcall(
    kumo.shaping.load,
    mod.CONFIGURED._file_names,
    mod.CONFIGURED._options.validation_options
      or {
        aliased_site = 'Warn',
        dns_fail = 'Warn',
        local_load = 'Error',
        null_mx = 'Warn',
        provider_overlap = 'Warn',
        remote_load = 'Ignore',
        skip_remote = true,
      }
  )
  if not ok then
    kg.report(HELPER, result)
    return
  end
  for _, err in ipairs(result:get_errors()) do
    kg.report(HELPER, err)
  end
  for _, warn in ipairs(result:get_warnings()) do
    kumo.log_warn(HELPER .. ': ' .. warn)
  end
  local sources = package.loaded['policy-extras.sources']
  if sources and sources.CONFIGURED then
    local sok, sdata = pcall(sources.CONFIGURED.get_data)
    if sok then
      local refs = result:get_referenced_sources()
      for _, source in ipairs(utils.table_keys(refs)) do
        if not sdata.sources[source] then
          kg.report(
            HELPER,
            string.format(
              "source '%s' is not defined in the sources data; used by %s",
              source,
              table.concat(refs[source], ', ')
            )
          )
        end
      end
    end
  end
end)

return mod
