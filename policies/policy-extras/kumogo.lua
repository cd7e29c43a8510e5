-- policy-extras.kumogo: what kumogo's policy-extras helpers share: reading
-- their data files (TOML, JSON or YAML, or inline tables), strict key
-- checks whose errors name the file, the section and the key, and a
-- cache of their data shared by all Lua states, rebuilt when a file
-- changes or after a time to live (KumoMTA's helpers memoize their data
-- for the same times).
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local shared = require 'kumogo.extras_data'

local mod = {}

-- Reads each entry of files: a file name, or an inline table. Returns a
-- list of { name = ..., data = table }.
function mod.read_files(files, helper)
  if type(files) ~= 'table' then
    error(
      string.format(
        '%s: setup expects a list of data file names, got %s',
        helper,
        type(files)
      ),
      3
    )
  end
  local out = {}
  for i, f in ipairs(files) do
    if type(f) == 'string' then
      local data = utils.load_json_or_toml_file(f)
      if type(data) ~= 'table' then
        error(string.format('%s: %s: expected a table at the top level', helper, f))
      end
      out[#out + 1] = { name = f, data = data }
    elseif type(f) == 'table' then
      out[#out + 1] = { name = string.format('(inline table %d)', i), data = f }
    else
      error(
        string.format(
          '%s: data file %d must be a file name or a table, got %s',
          helper,
          i,
          type(f)
        )
      )
    end
  end
  return out
end

local function sorted_names(set)
  local names = {}
  for k in pairs(set) do
    names[#names + 1] = k
  end
  table.sort(names)
  return table.concat(names, ', ')
end

mod.sorted_names = sorted_names

-- The TOML section name of a key path: [tenant.'my tenant'].
function mod.section(path)
  if not path or #path == 0 then
    return nil
  end
  local parts = {}
  for i, k in ipairs(path) do
    k = tostring(k)
    if k:find '^[%w_-]+$' then
      parts[i] = k
    else
      parts[i] = "'" .. k .. "'"
    end
  end
  return '[' .. table.concat(parts, '.') .. ']'
end

-- "FILE:LINE" for the key path (plus key) in a TOML data file, "FILE"
-- when the line is not known.
local function where(file, path, key)
  local full = {}
  for i, k in ipairs(path or {}) do
    full[i] = tostring(k)
  end
  if key ~= nil then
    full[#full + 1] = tostring(key)
  end
  local line = #full > 0 and shared.key_line(file, (table.unpack or unpack)(full))
  if line then
    return file .. ':' .. line
  end
  return file
end

-- Raises "FILE:LINE: message in [section]" for the key at path (key may
-- be nil for the section itself).
function mod.fail(file, path, key, fmt, ...)
  local section = mod.section(path)
  error(
    string.format('%s: ' .. fmt, where(file, path, key), ...) .. (section and (' in ' .. section) or ''),
    0
  )
end

-- Checks that every key of tbl is in allowed (a set). Unknown keys are
-- errors, as in KumoMTA's helpers.
function mod.check_keys(tbl, allowed, file, path)
  for k in pairs(tbl) do
    if not allowed[k] then
      mod.fail(file, path, k, "unknown key '%s' (expected one of: %s)", tostring(k), sorted_names(allowed))
    end
  end
end

-- Checks the type of tbl[key] when present: 'string', 'boolean',
-- 'number', 'table' or 'string_list'.
function mod.check_type(tbl, key, want, file, path)
  local v = tbl[key]
  if v == nil then
    return
  end
  local ok
  if want == 'string_list' then
    ok = type(v) == 'table'
    if ok then
      for _, s in pairs(v) do
        if type(s) ~= 'string' then
          ok = false
        end
      end
    end
  else
    ok = type(v) == want
  end
  if not ok then
    mod.fail(
      file,
      path,
      key,
      "key '%s' must be a %s, not a %s",
      key,
      want == 'string_list' and 'list of strings' or want,
      type(v)
    )
  end
end

-- The first key of tbl (in sorted order) that make (a kumo.make_*
-- constructor) rejects on its own, with base added to each probe; nil
-- when each key passes alone.
function mod.bad_key(make, tbl, base)
  for _, k in ipairs(utils.table_keys(tbl)) do
    local probe = utils.merge_into(base or {}, {})
    probe[k] = tbl[k]
    if not pcall(make, probe) then
      return k
    end
  end
  return nil
end

-- Appends keys to a path (a new list).
function mod.path(path, ...)
  local out = {}
  for i, k in ipairs(path or {}) do
    out[i] = k
  end
  for _, k in ipairs { ... } do
    out[#out + 1] = k
  end
  return out
end

-- Returns get(), the data built by load() from files, and the cell
-- behind it (for kumogo.extras_data's per-message fast paths). The data is
-- built once per process and shared by the Lua states
-- (kumogo.extras_data); it is rebuilt when one of the files changes or
-- after ttl seconds. A state asks for it again at most every 10 seconds
-- (every 16th call looks at the clock), so per message get() costs a
-- counter.
function mod.cached(helper, files, load, ttl)
  local key = helper
  local paths = {}
  for i, f in ipairs(files) do
    if type(f) == 'string' then
      paths[#paths + 1] = f
      key = key .. '\0' .. f
    else
      key = key .. '\0(inline ' .. i .. ')'
    end
  end
  return shared.cell(key, paths, ttl, load)
end

-- Reports a validation problem for kumogo --validate.
function mod.report(helper, problem)
  kumo.log_error(string.format('%s: %s', helper, problem))
  kumo.validation_failed()
end

return mod
