-- policy-extras.listener_domains: the get_listener_domain handler driven by
-- data files, in the format of KumoMTA's user guide ("Configuring Inbound
-- and Relay Domains"):
--
--   ["example.com"]            # a domain, or "*.example.com", or "*"
--   relay_to = true            # any kumo.make_listener_domain option
--   relay_from = ['10.0.0.0/24']
--   relay_from_authz = ['user1'] # SMTP AUTH identities that may relay
--   log_oob = true
--   log_arf = true
--
--   [listener."127.0.0.1:25"."*.example.com"]  # for one listener only
--   log_oob = false
--
-- Lookup order: the listener's own entry for the domain, then the entry
-- for any listener, then the "*" entry. Later files overlay earlier ones
-- key by key. Usage:
--
--   kumo.on('get_listener_domain', listener_domains:setup { '/path/listener_domains.toml' })
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local kg = require 'policy-extras.kumogo'

local mod = {}
local HELPER = 'policy-extras.listener_domains'

local OPTIONS = {
  relay_to = true,
  relay_from = true,
  relay_from_authz = true,
  log_oob = true,
  log_arf = true,
  ttl = true,
}

-- Checks one domain's options strictly and by value.
local function check_options(params, file, path)
  if type(params) ~= 'table' then
    kg.fail(file, path, nil, 'expected a table of options, got a %s', type(params))
  end
  kg.check_keys(params, OPTIONS, file, path)
  kg.check_type(params, 'relay_from_authz', 'string_list', file, path)
  local probe = utils.merge_into(params, {})
  probe.relay_from_authz = nil
  local ok, err = pcall(kumo.make_listener_domain, probe)
  if not ok then
    kg.fail(file, path, kg.bad_key(kumo.make_listener_domain, probe), '%s', tostring(err))
  end
end

-- Builds { [listener] = { domains = {name = options}, map = domain_map } }.
local function load_data(files)
  local by_listener = {}
  local function add(listener, domain, params, file, path)
    check_options(params, file, path)
    local l = by_listener[listener]
    if not l then
      l = { domains = {} }
      by_listener[listener] = l
    end
    local d = l.domains[domain] or {}
    utils.merge_into(params, d)
    l.domains[domain] = d
  end
  for _, f in ipairs(kg.read_files(files, HELPER)) do
    for key, value in pairs(f.data) do
      if key == 'listener' then
        if type(value) ~= 'table' then
          kg.fail(f.name, nil, 'listener', "'listener' must be a table of listener addresses")
        end
        for listener, domains in pairs(value) do
          if type(domains) ~= 'table' then
            kg.fail(f.name, { 'listener' }, listener, "listener '%s' must be a table of domains", listener)
          end
          for domain, params in pairs(domains) do
            add(listener, domain, params, f.name, { 'listener', listener, domain })
          end
        end
      else
        add('*', key, value, f.name, { key })
      end
    end
  end
  -- The map resolves a name (with wildcards) to the key of its entry.
  for _, l in pairs(by_listener) do
    local names = {}
    for domain in pairs(l.domains) do
      names[domain] = domain
    end
    l.map = kumo.domain_map.new(names)
  end
  return by_listener
end

local function lookup(by_listener, listener, domain, conn_meta)
  local l = by_listener[listener]
  if not l then
    return nil
  end
  local key = l.map[domain]
  if not key then
    return nil
  end
  local params = utils.merge_into(l.domains[key], {})
  local authz = params.relay_from_authz
  params.relay_from_authz = nil
  if authz and conn_meta then
    local who = conn_meta:get_meta 'authz_id'
    if who and utils.table_contains(authz, who) then
      local peer = conn_meta:get_meta 'received_from'
      if peer then
        local ip = utils.split_ip_port(peer)
        params.relay_from = { ip }
      end
    end
  end
  return kumo.make_listener_domain(params)
end

-- Returns the get_listener_domain handler for data_files (a list of file
-- names or inline tables).
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
  return function(domain, listener, conn_meta)
    local data = get_data()
    return lookup(data, listener, domain, conn_meta)
      or lookup(data, '*', domain, conn_meta)
      or lookup(data, '*', '*', conn_meta)
  end
end

kumo.on('validate_config', function()
  if not mod.CONFIGURED then
    return
  end
  local ok, err = pcall(load_data, mod.CONFIGURED.data_files)
  if not ok then
    kg.report(HELPER, err)
  end
end)

return mod
