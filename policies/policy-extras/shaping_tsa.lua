-- policy-extras.shaping_tsa: the node side of traffic shaping automation,
-- used by policy-extras.shaping's setup_with_automation (KumoMTA's user
-- guide, "Traffic Shaping Automation").
--
-- publish: a log hook per publish URL (named '<N>.tsa.kumomta'; its queue
-- delivers through a custom_lua constructor 'make.<hook name>') POSTs each
-- interesting log record to URL/publish_log_v1. Reception, Rejection,
-- Delayed, AdminRebind, DeferredInjectionRebind, XferIn and XferOut are
-- skipped by default, as in KumoMTA (skip_log_record_types,
-- additional_skip_log_record_types).
--
-- subscribe: a task per subscribe URL ('kumo.tsa.suspension.subscriber')
-- takes the suspensions and bounces that the daemon pushes over its
-- websocket (URL/subscribe_event_v1, as KumoMTA's nodes do) and applies
-- new or extended ones with kumo.api.admin (suspend_ready_q for Suspend,
-- suspend for SuspendTenant/SuspendCampaign, bounce for Bounce*); when
-- the websocket cannot be opened it polls URL/get_suspension_v1/
-- suspended.json and URL/get_bounce_v1/bounced.json every second. Configuration overrides
-- come from URL/get_config_v1/shaping.toml, which the shaping helper
-- loads as one more shaping file; a task ('kumo.tsa.config.monitor', as
-- in KumoMTA) fetches it every second and bumps the configuration epoch
-- when it changes, so that egress paths (refresh_strategy 'Epoch') are
-- evaluated again with the override, and again when it expires.
local kumo = require 'kumo'

local mod = {}

local POLL_SECONDS = 1

local UNINTERESTING = {
  AdminRebind = true,
  DeferredInjectionRebind = true,
  Delayed = true,
  Reception = true,
  Rejection = true,
  XferIn = true,
  XferOut = true,
}

local function strip_slash(url)
  return (url:gsub('/+$', ''))
end

-- skip_types builds the set of record types that are not published.
local function skip_types(options)
  local skip = {}
  if options.skip_log_record_types == nil then
    for k in pairs(UNINTERESTING) do
      skip[k] = true
    end
  else
    for _, k in ipairs(options.skip_log_record_types) do
      skip[k] = true
    end
  end
  for _, k in ipairs(options.additional_skip_log_record_types or {}) do
    skip[k] = true
  end
  return skip
end

-- config_files returns the override shaping files served by the
-- subscribe URLs.
function mod.config_files(options)
  local out = {}
  for _, url in ipairs(options.subscribe or {}) do
    out[#out + 1] = strip_slash(url) .. '/get_config_v1/shaping.toml'
  end
  return out
end

-- register installs the event handlers (at the policy's top level, so that
-- every Lua state has them) and returns the function to call from init.
function mod.register(options)
  local hooks = {}
  local skip = skip_types(options)
  for i, url in ipairs(options.publish or {}) do
    local hook = string.format('%d.tsa.kumomta', i)
    local endpoint = strip_slash(url) .. '/publish_log_v1'
    hooks[hook] = endpoint
    kumo.on('make.' .. hook, function()
      local client = kumo.http.build_client { timeout = '10s' }
      local conn = {}
      function conn:send(message)
        local response = client:post(endpoint):header('Content-Type', 'application/json'):body(message:get_data()):send()
        local disposition = string.format('%d %s', response:status_code(), response:status_reason())
        if response:status_is_success() then
          return disposition
        end
        kumo.reject(400, disposition .. ': ' .. response:text())
      end
      function conn:close()
        client:close()
      end
      return conn
    end)
  end

  if next(hooks) then
    kumo.on('should_enqueue_log_record', function(msg, hook_name)
      if not hooks[hook_name] then
        return nil
      end
      local rec = msg:get_meta 'log_record'
      if skip[rec.type] or hooks[rec.queue] then
        return false
      end
      msg:set_meta('queue', hook_name)
      return true
    end)
    kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
      if hooks[domain] then
        return kumo.make_queue_config {
          retry_interval = '5s',
          max_retry_interval = '1m',
          protocol = { custom_lua = { constructor = 'make.' .. domain } },
        }
      end
    end)
  end

  return function()
    for hook in pairs(hooks) do
      kumo.configure_log_hook { name = hook }
    end
    for _, url in ipairs(options.subscribe or {}) do
      kumo.spawn_task { event_name = 'kumo.tsa.suspension.subscriber', args = { url = strip_slash(url) } }
    end
    local config_urls = mod.config_files(options)
    if #config_urls > 0 then
      kumo.spawn_task { event_name = 'kumo.tsa.config.monitor', args = { urls = config_urls } }
    end
  end
end

-- The overrides served by tsa-daemon start with '# Number of entries: N'.
local function has_entries(text)
  return not text:find('# Number of entries: 0\n', 1, true)
end

kumo.on('kumo.tsa.config.monitor', function(args)
  local client = kumo.http.build_client { timeout = '5s' }
  local last = {}
  local failing = {}
  while true do
    for _, url in ipairs(args.urls) do
      local ok, response = pcall(function()
        return client:get(url):send()
      end)
      if ok and response:status_is_success() then
        failing[url] = nil
        local text = response:text()
        -- the first answer may hold overrides that the shaping data
        -- loaded before it does not: bump then too
        if (last[url] == nil and has_entries(text)) or (last[url] ~= nil and last[url] ~= text) then
          kumo.log_info('policy-extras.shaping: TSA configuration overrides changed at ' .. url .. '; bumping the config epoch')
          kumo.bump_config_epoch()
        end
        last[url] = text
      elseif not failing[url] then
        failing[url] = true
        local why = ok and string.format('%d %s', response:status_code(), response:status_reason()) or tostring(response)
        kumo.log_warn('policy-extras.shaping: TSA config ' .. url .. ': ' .. why)
      end
    end
    kumo.sleep(POLL_SECONDS)
  end
end)

local function get_json(client, url)
  local ok, response = pcall(function()
    return client:get(url):send()
  end)
  if not ok then
    return nil, tostring(response)
  end
  if not response:status_is_success() then
    return nil, string.format('%s: %d %s', url, response:status_code(), response:status_reason())
  end
  return kumo.json_parse(response:text())
end

local function apply(applied, key, expires, via, fn)
  if applied[key] == expires then
    return
  end
  local ok, err = pcall(fn)
  if ok then
    applied[key] = expires
    kumo.log_info(string.format('policy-extras.shaping: TSA %s until %s applied (via %s)', key, tostring(expires), via))
  else
    kumo.log_error('policy-extras.shaping: applying TSA ' .. key .. ': ' .. tostring(err))
  end
end

local function apply_ready_q(applied, q, via)
  apply(applied, 'ready:' .. q.rule_hash, q.expires, via, function()
    kumo.api.admin.suspend_ready_q.suspend {
      name = string.format('%s->%s@smtp_client', q.source, q.site_name),
      reason = 'TSA: ' .. q.reason,
      expires = q.expires,
    }
  end)
end

-- scheduled-queue actions (a suspension or a bounce) name the queue by
-- its domain, tenant and campaign
local function queue_action(kind, act)
  return function(applied, q, via)
    apply(applied, kind .. ':' .. q.rule_hash, q.expires, via, function()
      act {
        domain = q.domain,
        tenant = q.tenant,
        campaign = q.campaign,
        reason = 'TSA: ' .. q.reason,
        expires = q.expires,
      }
    end)
  end
end

local apply_sched_q = queue_action('sched', function(t) kumo.api.admin.suspend.suspend(t) end)
local apply_bounce = queue_action('bounce', function(t) kumo.api.admin.bounce.bounce(t) end)

-- poll_once fetches and applies the suspensions and bounces over HTTP;
-- it returns an error text when the daemon did not answer.
local function poll_once(client, url, applied)
  local s, err = get_json(client, url .. '/get_suspension_v1/suspended.json')
  local b, berr = nil, nil
  if s then
    b, berr = get_json(client, url .. '/get_bounce_v1/bounced.json')
  end
  if not s or not b then
    return tostring(err or berr)
  end
  for _, q in ipairs(s.ready_q or {}) do
    apply_ready_q(applied, q, 'polling')
  end
  for _, q in ipairs(s.sched_q or {}) do
    apply_sched_q(applied, q, 'polling')
  end
  for _, q in ipairs(b) do
    apply_bounce(applied, q, 'polling')
  end
end

-- stream applies the items pushed over a subscribe_event_v1 websocket
-- until it ends (an error is raised then).
local function stream(conn, applied)
  while true do
    -- KumoMTA collects for 3 s; one second keeps a pushed suspension
    -- within a second or so of the daemon
    for _, text in ipairs(conn:recv_batch '1s') do
      local item = kumo.json_parse(text)
      if item.ReadyQSuspension then
        apply_ready_q(applied, item.ReadyQSuspension, 'websocket')
      elseif item.SchedQSuspension then
        apply_sched_q(applied, item.SchedQSuspension, 'websocket')
      elseif item.SchedQBounce then
        apply_bounce(applied, item.SchedQBounce, 'websocket')
      else
        kumo.log_error('policy-extras.shaping: unsupported TSA subscription item ' .. text)
      end
    end
  end
end

-- The subscriber takes suspensions and bounces pushed over the daemon's
-- websocket (URL/subscribe_event_v1, as KumoMTA's nodes do). When that
-- cannot be opened (an older daemon answers 404, or the daemon is down)
-- it polls the HTTP endpoints every second instead, trying the websocket
-- again each time; when an open websocket ends it polls once (to catch
-- what was produced meanwhile) and reconnects.
kumo.on('kumo.tsa.suspension.subscriber', function(args)
  local client = kumo.http.build_client { timeout = '5s' }
  local ws_url = args.url:gsub('^http', 'ws') .. '/subscribe_event_v1'
  local applied = {}
  local mode = nil
  local function note(new_mode, detail)
    if mode ~= new_mode then
      local msg = string.format('policy-extras.shaping: TSA subscription %s: %s', args.url, new_mode)
      if detail then
        msg = msg .. ' (' .. detail .. ')'
      end
      if new_mode == 'failing' then
        kumo.log_warn(msg)
      else
        kumo.log_info(msg)
      end
      mode = new_mode
    end
  end
  while true do
    local ok, conn = pcall(kumo.http.connect_websocket, ws_url)
    if ok then
      note('websocket', nil)
      local _, err = pcall(stream, conn, applied)
      pcall(conn.close, conn)
      note('polling', 'websocket ended: ' .. tostring(err))
      poll_once(client, args.url, applied)
      kumo.sleep(POLL_SECONDS)
    else
      local err = poll_once(client, args.url, applied)
      if err then
        note('failing', err)
      else
        note('polling', tostring(conn))
      end
      kumo.sleep(POLL_SECONDS)
    end
  end
end)

return mod
