package queue

import "time"

// EpochPolicy is the optional part of Policy that reports the
// configuration epoch (runtime.Runtime implements it): egress paths with
// refresh_strategy "Epoch" are evaluated again when it changes.
type EpochPolicy interface {
	Epoch() uint64
}

// policyEpoch is the policy's configuration epoch, 0 when it has none.
func (m *Manager) policyEpoch() uint64 {
	if p, ok := m.o.Policy.(EpochPolicy); ok {
		return p.Epoch()
	}
	return 0
}

// current reports whether the ready queue's egress path may be used
// without asking the policy again (KumoMTA's refresh_strategy page):
// "Epoch" holds until the configuration epoch changes, "Ttl" for
// refresh_interval. An Epoch path is also evaluated again after
// refresh_interval, so that data files outside the config monitor's
// globs (whose change bumps no epoch) still take effect; traffic shaping
// automation bumps the epoch when its overrides change, which applies
// them at once.
func (rq *readyQueue) current(epoch uint64) bool {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if rq.path.RefreshStrategy == "Epoch" && rq.epoch != epoch {
		return false
	}
	ttl := rq.path.RefreshInterval
	if ttl <= 0 {
		ttl = time.Minute
	}
	return time.Since(rq.loaded) < ttl
}
