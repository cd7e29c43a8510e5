-- policy-extras.log_hooks: kumogo's own helper for log hooks, written from
-- the interface of KumoMTA's user guide ("Publishing Log Events Via
-- Webhooks") and its log_hooks examples: new, new_json and
-- new_disposition_hook. Call them at the top level of the policy, before
-- any get_queue_config handler that answers for every domain.
--
-- new { name, constructor, batch_size?, min_batch_size?,
--       max_batch_latency?, log_parameters?, queue_config? }
--   configures kumo.configure_log_hook (log_parameters plus the name),
--   queues every record in the queue named after the hook, and delivers
--   that queue with the custom_lua protocol, the constructor being
--   registered as the event 'make.<name>.log_hook'.
-- new_json { name, url, log_parameters?, queue_config?, batch_size?,
--            min_batch_size?, max_batch_latency?, headers?, timeout? }
--   is new with a constructor that POSTs each record as JSON to url (a
--   batch as a JSON array). A response other than 2xx, or a failed
--   connection, leaves the records queued for a retry (until max_age), so
--   a receiver that is down loses nothing.
-- new_disposition_hook { name, hook, log_parameters? }
--   configures kumo.configure_log_disposition_hook and registers hook as
--   its log_disposition_<name> event.
local kumo = require 'kumo'

local mod = {}

local known = {
  new = {
    name = true, constructor = true, batch_size = true, min_batch_size = true,
    max_batch_latency = true, log_parameters = true, queue_config = true,
  },
  new_json = {
    name = true, url = true, log_parameters = true, queue_config = true,
    batch_size = true, min_batch_size = true, max_batch_latency = true,
    headers = true, timeout = true,
  },
  new_disposition_hook = { name = true, hook = true, log_parameters = true },
}

local function check(fname, options)
  if type(options) ~= 'table' then
    error(string.format('policy-extras.log_hooks:%s expects a table of options', fname), 3)
  end
  local names = {}
  for k in pairs(known[fname]) do
    names[#names + 1] = k
  end
  table.sort(names)
  for k in pairs(options) do
    if not known[fname][k] then
      error(
        string.format(
          'policy-extras.log_hooks:%s: unknown option %q (expected one of %s)',
          fname,
          tostring(k),
          table.concat(names, ', ')
        ),
        3
      )
    end
  end
  if type(options.name) ~= 'string' or options.name == '' then
    error(string.format('policy-extras.log_hooks:%s: option name (a string) is required', fname), 3)
  end
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do
    out[k] = v
  end
  return out
end

function mod:new(options)
  check('new', options)
  if type(options.constructor) ~= 'function' then
    error('policy-extras.log_hooks:new: option constructor (a function) is required', 2)
  end
  local name = options.name
  local constructor = 'make.' .. name .. '.log_hook'

  local hook_params = copy(options.log_parameters)
  hook_params.name = name
  kumo.on('pre_init', function()
    kumo.configure_log_hook(hook_params)
  end)

  kumo.on('should_enqueue_log_record', function(msg, hook_name)
    if hook_name ~= name then
      return nil -- another hook's record: let its handler decide
    end
    msg:set_meta('queue', name)
    return true
  end)

  local queue_config = copy(options.queue_config)
  if queue_config.retry_interval == nil then
    queue_config.retry_interval = '1m'
  end
  if queue_config.max_retry_interval == nil then
    queue_config.max_retry_interval = '20m'
  end
  queue_config.protocol = {
    custom_lua = {
      constructor = constructor,
      batch_size = options.batch_size,
      min_batch_size = options.min_batch_size,
      max_batch_latency = options.max_batch_latency,
    },
  }
  kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    if domain == name then
      return kumo.make_queue_config(queue_config)
    end
  end)

  kumo.on(constructor, options.constructor)
end

function mod:new_json(options)
  check('new_json', options)
  if type(options.url) ~= 'string' or options.url == '' then
    error('policy-extras.log_hooks:new_json: option url (a string) is required', 2)
  end
  local url = options.url
  local headers = copy(options.headers)
  headers['Content-Type'] = 'application/json'
  local timeout = options.timeout or '60s'

  local function post(client, body)
    local response = client:post(url):headers(headers):body(body):send()
    local disposition = string.format(
      '%d %s: %s',
      response:status_code(),
      response:status_reason() or '',
      response:text()
    )
    if response:status_is_success() then
      return disposition
    end
    -- keep the records queued: they are retried until max_age
    kumo.reject(400, disposition)
  end

  mod.new(self, {
    name = options.name,
    log_parameters = options.log_parameters,
    queue_config = options.queue_config,
    batch_size = options.batch_size,
    min_batch_size = options.min_batch_size,
    max_batch_latency = options.max_batch_latency,
    constructor = function(domain, tenant, campaign)
      local client = kumo.http.build_client { timeout = timeout }
      local connection = {}
      function connection:send(message)
        return post(client, message:get_data())
      end
      function connection:send_batch(messages)
        local records = {}
        for i, message in ipairs(messages) do
          records[i] = message:get_data()
        end
        return post(client, '[' .. table.concat(records, ',') .. ']')
      end
      function connection:close()
        client:close()
      end
      return connection
    end,
  })
end

function mod:new_disposition_hook(options)
  check('new_disposition_hook', options)
  if type(options.hook) ~= 'function' then
    error('policy-extras.log_hooks:new_disposition_hook: option hook (a function) is required', 2)
  end
  local params = copy(options.log_parameters)
  params.name = options.name
  kumo.on('log_disposition_' .. options.name, options.hook)
  kumo.on('pre_init', function()
    kumo.configure_log_disposition_hook(params)
  end)
end

return mod
