-- policy-extras.policy_utils: small table and string helpers used by the
-- other policy-extras modules and by policies (KumoMTA's user guide uses
-- merge_into in its queue examples). Written for kumogo from the names and
-- behaviour KumoMTA documents; no code is shared with KumoMTA.
local kumo = require 'kumo'

local mod = {}

local function is_table_like(v)
  local t = type(v)
  return t == 'table' or t == 'userdata'
end

-- Deep equality of two values: tables are equal when they have the same
-- keys with equal values. Metatables are compared too unless ignore_mt.
function mod.equals(a, b, ignore_mt)
  if a == b then
    return true
  end
  if type(a) ~= 'table' or type(b) ~= 'table' then
    return false
  end
  if not ignore_mt and getmetatable(a) ~= getmetatable(b) then
    return false
  end
  for k, v in pairs(a) do
    if not mod.equals(v, b[k], ignore_mt) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local function describe(v)
  if type(v) == 'table' then
    return mod.dumps(v)
  end
  return tostring(v)
end

function mod.assert_eq(a, b, message)
  if not mod.equals(a, b) then
    error(
      string.format(
        '%sexpected %s == %s',
        message and (message .. ': ') or '',
        describe(a),
        describe(b)
      ),
      2
    )
  end
end

function mod.assert_ne(a, b, message)
  if mod.equals(a, b) then
    error(
      string.format(
        '%sexpected %s ~= %s',
        message and (message .. ': ') or '',
        describe(a),
        describe(b)
      ),
      2
    )
  end
end

-- Asserts that the string a matches the Lua pattern.
function mod.assert_matches(a, pattern, message)
  if type(a) ~= 'string' or not a:find(pattern) then
    error(
      string.format(
        '%sexpected %s to match %s',
        message and (message .. ': ') or '',
        describe(a),
        pattern
      ),
      2
    )
  end
end

-- Copies every key of src into dest (shallow).
function mod.merge_into(src, dest)
  if src == nil then
    return dest
  end
  for k, v in pairs(src) do
    dest[k] = v
  end
  return dest
end

-- Copies src into dest, merging nested tables key by key instead of
-- replacing them.
function mod.recursive_merge_into(src, dest)
  if src == nil then
    return dest
  end
  for k, v in pairs(src) do
    if type(v) == 'table' and type(dest[k]) == 'table' then
      mod.recursive_merge_into(v, dest[k])
    else
      dest[k] = v
    end
  end
  return dest
end

function mod.table_contains(tbl, v)
  if tbl == nil then
    return false
  end
  for _, item in pairs(tbl) do
    if item == v then
      return true
    end
  end
  return false
end

-- The keys of tbl, sorted when they are all strings or all numbers.
function mod.table_keys(tbl)
  local keys = {}
  local kind
  local sortable = true
  for k in pairs(tbl) do
    keys[#keys + 1] = k
    if kind == nil then
      kind = type(k)
    elseif kind ~= type(k) then
      sortable = false
    end
  end
  if sortable and (kind == 'string' or kind == 'number') then
    table.sort(keys)
  end
  return keys
end

function mod.table_is_empty(tbl)
  return next(tbl) == nil
end

-- Loads a data file: TOML when the name ends in .toml, YAML for .yaml and
-- .yml, JSON otherwise. Errors name the file (and the line of a syntax
-- error).
function mod.load_json_or_toml_file(filename)
  if mod.ends_with(filename, '.toml') then
    return kumo.serde.toml_load(filename)
  end
  if mod.ends_with(filename, '.yaml') or mod.ends_with(filename, '.yml') then
    return kumo.serde.yaml_load(filename)
  end
  return kumo.serde.json_load(filename)
end

function mod.starts_with(s, text)
  return s:sub(1, #text) == text
end

function mod.ends_with(s, text)
  return text == '' or s:sub(-#text) == text
end

-- Splits "ip:port" or "[ipv6]:port" into the address and the port (nil
-- when there is none).
function mod.split_ip_port(ip_port)
  local v6, port = ip_port:match '^%[([^%]]+)%]:?(%d*)$'
  if v6 then
    return v6, port ~= '' and port or nil
  end
  local ip, p = ip_port:match '^([^:]+):(%d+)$'
  if ip then
    return ip, p
  end
  return ip_port, nil
end

local function dump(value, indent, seen, out)
  if type(value) ~= 'table' then
    if type(value) == 'string' then
      out[#out + 1] = string.format('%q', value)
    else
      out[#out + 1] = tostring(value)
    end
    return
  end
  if seen[value] then
    out[#out + 1] = '<cycle>'
    return
  end
  seen[value] = true
  if next(value) == nil then
    out[#out + 1] = '{}'
    seen[value] = nil
    return
  end
  out[#out + 1] = '{\n'
  local pad = string.rep('  ', indent + 1)
  for _, k in ipairs(mod.table_keys(value)) do
    out[#out + 1] = pad
    if type(k) == 'string' and k:match '^[%a_][%w_]*$' then
      out[#out + 1] = k
    else
      out[#out + 1] = '['
      dump(k, indent + 1, seen, out)
      out[#out + 1] = ']'
    end
    out[#out + 1] = ' = '
    dump(value[k], indent + 1, seen, out)
    out[#out + 1] = ',\n'
  end
  out[#out + 1] = string.rep('  ', indent) .. '}'
  seen[value] = nil
end

-- A readable, stable rendering of a value (tables with sorted keys).
function mod.dumps(value)
  local out = {}
  dump(value, 0, {}, out)
  return table.concat(out)
end

mod.is_table_like = is_table_like

return mod
