-- policy-extras.sources: get_egress_source and get_egress_pool handlers
-- driven by data files, in the format of KumoMTA's user guide
-- ("Configuring Sending IPs"):
--
--   [source."ip-1"]            # any kumo.make_egress_source option
--   source_address = "10.0.0.1"
--   ehlo_domain = "mta1.example.com"
--
--   [pool."pool-1"."ip-1"]     # pool-1 uses ip-1 with weight 1
--   [pool."pool-2"."ip-2"]
--   weight = 2
--
-- Later files overlay earlier ones. Usage:
--
--   sources:setup { '/path/sources.toml' }
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local kg = require 'policy-extras.kumogo'

local mod = {}
local HELPER = 'policy-extras.sources'

local function load_data(files)
  local data = { sources = {}, pools = {} }
  for _, f in ipairs(kg.read_files(files, HELPER)) do
    kg.check_keys(f.data, { source = true, pool = true }, f.name)
    for name, params in pairs(f.data.source or {}) do
      local path = { 'source', name }
      if type(params) ~= 'table' then
        kg.fail(f.name, path, nil, 'expected a table of options, got a %s', type(params))
      end
      local merged = utils.merge_into(params, data.sources[name] or {})
      merged.name = name
      local ok, err = pcall(kumo.make_egress_source, merged)
      if not ok then
        kg.fail(f.name, path, kg.bad_key(kumo.make_egress_source, params, { name = name }), '%s', tostring(err))
      end
      data.sources[name] = merged
    end
    for pool, members in pairs(f.data.pool or {}) do
      if type(members) ~= 'table' then
        kg.fail(f.name, { 'pool' }, pool, 'expected a table of sources, got a %s', type(members))
      end
      local p = data.pools[pool] or { name = pool, weights = {} }
      for source, entry in pairs(members) do
        local path = { 'pool', pool, source }
        if type(entry) ~= 'table' then
          kg.fail(f.name, path, nil, 'expected a table, got a %s', type(entry))
        end
        kg.check_keys(entry, { weight = true }, f.name, path)
        kg.check_type(entry, 'weight', 'number', f.name, path)
        p.weights[source] = entry.weight or p.weights[source] or 1
      end
      data.pools[pool] = p
    end
  end
  -- Pool entries in a stable order: by source name.
  for _, p in pairs(data.pools) do
    local entries = {}
    for _, source in ipairs(utils.table_keys(p.weights)) do
      entries[#entries + 1] = { name = source, weight = p.weights[source] }
    end
    p.entries = entries
    p.weights = nil
  end
  return data
end

-- Registers get_egress_source and get_egress_pool for data_files (a list
-- of file names or inline tables).
function mod:setup(data_files)
  if mod.CONFIGURED then
    error(HELPER .. ': already configured', 2)
  end
  local get_data = kg.cached(HELPER, data_files, function()
    return load_data(data_files)
  end, 300)
  mod.CONFIGURED = {
    data_files = data_files,
    get_data = get_data,
  }

  kumo.on('get_egress_source', function(name)
    local params = get_data().sources[name]
    if not params then
      error(string.format("%s: source '%s' is not defined in the sources data", HELPER, name))
    end
    return kumo.make_egress_source(params)
  end)

  kumo.on('get_egress_pool', function(name)
    local pool = get_data().pools[name]
    if not pool then
      error(string.format("%s: pool '%s' is not defined in the sources data", HELPER, name))
    end
    return kumo.make_egress_pool { name = pool.name, entries = pool.entries }
  end)
end

kumo.on('validate_config', function()
  if not mod.CONFIGURED then
    return
  end
  local ok, data = pcall(load_data, mod.CONFIGURED.data_files)
  if not ok then
    kg.report(HELPER, data)
    return
  end
  for _, pool in ipairs(utils.table_keys(data.pools)) do
    local p = data.pools[pool]
    for _, entry in ipairs(p.entries) do
      if not data.sources[entry.name] then
        kg.report(HELPER, string.format("pool '%s' uses source '%s', which is not defined", pool, entry.name))
      end
    end
    local okp, err = pcall(kumo.make_egress_pool, { name = p.name, entries = p.entries })
    if not okp then
      kg.report(HELPER, string.format("pool '%s': %s", pool, tostring(err)))
    end
  end
end)

return mod
