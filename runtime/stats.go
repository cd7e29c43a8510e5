package runtime

// PoolStats reports the Lua states alive (pooled plus busy) and those
// waiting in the pool for reuse: KumoMTA's lua_count and lua_spare_count.
func (r *Runtime) PoolStats() (alive, spare int) {
	return len(r.slots), len(r.pool)
}

// LoadCount is how many times the policy has been loaded into a new Lua
// state: KumoMTA's lua_load_count.
func (r *Runtime) LoadCount() int64 { return r.loads.Load() }
