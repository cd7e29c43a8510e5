package runtime

import (
	"strings"
	"testing"
)

// TestConfigureAcctLogDecoding: configure_acct_log is strict (unknown
// keys, a missing log_dir and bad values are errors naming the problem),
// and the other kumo.aaa names still fail by name.
func TestConfigureAcctLogDecoding(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`kumo.aaa.configure_acct_log { log_dir = '/tmp/x', log_authn_ok = false, max_segment_duration = '5 minutes' }`, ""},
		{`kumo.aaa.configure_acct_log { log_dir = '/tmp/x', meta = { 'a' } }`, "unknown field `meta`"},
		{`kumo.aaa.configure_acct_log { log_authn_ok = true }`, "missing field `log_dir`"},
		{`kumo.aaa.configure_acct_log { log_dir = '/tmp/x', compression_level = 30 }`, "compression level"},
		{`kumo.aaa.configure_acct_log { log_dir = '/tmp/x', log_authz_deny = 'yes' }`, "log_authz_deny"},
		{`kumo.aaa.set_acl_cache_ttl('1m')`, "kumo.aaa.set_acl_cache_ttl is not provided by kumogo"},
	} {
		_, err := newRuntimeErr(t, c.src)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.src, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
}
