-- policy-extras.log_hooks: KumoMTA's helper for batched log hooks and
-- webhooks (new, new_json, new_disposition_hook). kumogo does not provide
-- log hooks yet (kumo.configure_log_hook and the custom Lua delivery
-- protocol they need), so the module loads and each function fails with
-- an error that says so, instead of a policy silently losing its webhooks.
local mod = {}

local function unavailable(name)
  return function()
    error(
      string.format(
        'policy-extras.log_hooks:%s: log hooks are not provided by kumogo yet (kumo.configure_log_hook is missing)',
        name
      ),
      2
    )
  end
end

mod.new = unavailable 'new'
mod.new_json = unavailable 'new_json'
mod.new_disposition_hook = unavailable 'new_disposition_hook'

return mod
