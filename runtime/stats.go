package runtime

// PoolStats reports the Lua states alive (pooled plus busy) and those
// waiting in the pool for reuse: KumoMTA's lua_count and lua_spare_count.
func (r *Runtime) PoolStats() (alive, spare int) {
	return len(r.slots), len(r.pool)
}
