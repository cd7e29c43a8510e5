package runtime

import (
	"strings"
	"testing"
	"time"
)

// TestDecodeRedisParams: configure_redis_throttles takes redis.open's
// parameters (KumoMTA's redis.open page) and rejects others by name.
func TestDecodeRedisParams(t *testing.T) {
	c, err := decodeRedisParams(map[string]any{
		"node": []any{"redis://a:1/", "redis://b:2/"}, "pool_size": int64(4), "read_from_replicas": true,
		"username": "u", "password": "p", "connect_timeout": "2s", "wait_timeout": int64(3),
		"response_timeout": 0.5, "recycle_timeout": "1s", "cluster": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) != 2 || c.PoolSize != 4 || !c.ReadFromReplicas || !c.Cluster || c.Username != "u" || c.Password != "p" ||
		c.ConnectTimeout != 2*time.Second || c.WaitTimeout != 3*time.Second || c.ResponseTimeout != 500*time.Millisecond {
		t.Fatalf("decoded %+v", c)
	}
	for in, want := range map[string]map[string]any{
		"unknown field `nodes`":   {"nodes": "redis://x/"},
		"missing field `node`":    {"pool_size": int64(1)},
		"pool_size: invalid type": {"node": "redis://x/", "pool_size": "many"},
		"node: invalid type":      {"node": int64(3)},
	} {
		if _, err := decodeRedisParams(want); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("%v: error %v, want %q", want, err, in)
		}
	}
}

// TestConfigureRedisThrottlesValidating: under --validate the parameters
// are checked but no connection is made.
func TestConfigureRedisThrottlesValidating(t *testing.T) {
	r := newRuntime(t, `
kumo.on('init', function()
  kumo.configure_redis_throttles { node = 'redis://127.0.0.1:1/' }
end)
`, func(o *Options) { o.Validating = true })
	defer r.Close()
	if r.limits.Shared() {
		t.Fatal("validation configured Redis")
	}
	// not validating: configured (Redis on port 1 does not answer, so the
	// limits stay local until it does)
	r2 := newRuntime(t, `
kumo.on('init', function()
  kumo.configure_redis_throttles { node = 'redis://127.0.0.1:1/' }
end)
`)
	defer r2.Close()
	if !r2.limits.Shared() {
		t.Fatal("configure_redis_throttles did not configure Redis")
	}
	r2.limits.Close()
}
