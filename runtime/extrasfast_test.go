package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQueueAndDKIMHelperCases drives the queue helper's apply and the DKIM
// helper's signer (their per-message paths are Go, extrasfast.go) through
// the cases the production-shaped policy test does not reach: the
// scheduling header, campaign header removal, require_authz, a campaign
// set as meta before apply, additional signatures, a message without a
// From header, and many states sharing the data.
func TestQueueAndDKIMHelperCases(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.pem"), rsaKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "queues.toml"), `
scheduling_header = "X-Schedule"
tenant_header = "X-Tenant"
campaign_header = "X-Campaign"
remove_campaign_header = true

[tenant.'open']
[tenant.'locked']
require_authz = ['bob']

[queue.'route.example'.'open']
routing_domain = 'tenant-route.example'
[queue.'route.example'.'open'.'promo']
routing_domain = 'promo-route.example'
`)
	writeFile(t, filepath.Join(dir, "dkim.toml"), `
[base]
selector = "s1"
headers = ["From", "Subject"]
additional_signatures = ["esp"]

[domain."signed.example"]
filename = "`+dir+`/k.pem"

[signature."esp"]
domain = "esp.example"
filename = "`+dir+`/k.pem"
policy = "OnlyIfMissingDomainBlock"
`)
	policy := strings.ReplaceAll(`
local kumo = require 'kumo'
local queue_helper = require('policy-extras.queue'):setup { '$DIR/queues.toml' }
local dkim_signer = require('policy-extras.dkim_sign'):setup { '$DIR/dkim.toml' }
kumo.on('smtp_server_message_received', function(msg, conn)
  local pre = conn:get_meta 'pre_campaign'
  if pre then
    msg:set_meta('campaign', pre)
  end
  queue_helper:apply(msg)
  dkim_signer(msg)
end)
`, "$DIR", dir)
	r := newRuntime(t, policy, withExtras(&fakeDNS{}))
	r.maxUse.Store(3) // new states (sharing the data) every few messages
	ctx := context.Background()

	type want struct {
		err                         string
		tenant, campaign, routing   any
		sigDomains                  []string
		hasCampaignHdr, hasSchedHdr bool
		due                         bool
	}
	for i, tc := range []struct {
		name, data, rcpt string
		authz, pre       string
		want             want
	}{
		{name: "open tenant, campaign header removed, tenant route",
			data: "From: a@signed.example\r\nX-Tenant: open\r\nX-Campaign: spring\r\n\r\nx\r\n", rcpt: "u@route.example",
			want: want{tenant: "open", campaign: "spring", routing: "tenant-route.example", sigDomains: []string{"signed.example"}}},
		{name: "campaign route",
			data: "From: a@other.example\r\nX-Tenant: open\r\nX-Campaign: promo\r\n\r\nx\r\n", rcpt: "u@route.example",
			want: want{tenant: "open", campaign: "promo", routing: "promo-route.example", sigDomains: []string{"esp.example"}}},
		{name: "campaign from meta",
			data: "From: a@other.example\r\nX-Tenant: open\r\n\r\nx\r\n", rcpt: "u@route.example", pre: "promo",
			want: want{tenant: "open", campaign: "promo", routing: "promo-route.example", sigDomains: []string{"esp.example"}}},
		{name: "no tenant: no default, no route",
			data: "From: a@other.example\r\n\r\nx\r\n", rcpt: "u@route.example",
			want: want{sigDomains: []string{"esp.example"}}},
		{name: "scheduling header imported and removed",
			data: "From: a@other.example\r\nX-Tenant: open\r\nX-Schedule: {\"first_attempt\": \"2099-01-01T00:00:00Z\"}\r\n\r\nx\r\n", rcpt: "u@x.example",
			want: want{tenant: "open", sigDomains: []string{"esp.example"}, due: true}},
		{name: "locked tenant with bob",
			data: "From: a@other.example\r\nX-Tenant: locked\r\n\r\nx\r\n", rcpt: "u@x.example", authz: "bob",
			want: want{tenant: "locked", sigDomains: []string{"esp.example"}}},
		{name: "locked tenant with eve",
			data: "From: a@other.example\r\nX-Tenant: locked\r\n\r\nx\r\n", rcpt: "u@x.example", authz: "eve",
			want: want{err: "authz_id 'eve' is not authorized to send as tenant 'locked'"}},
		{name: "no From header",
			data: "Subject: x\r\n\r\nx\r\n", rcpt: "u@x.example",
			want: want{err: "5.6.0 DKIM signing requires a From header"}},
	} {
		for round := 0; round < 2; round++ { // the second round hits the caches
			m := testMessage(t, tc.data, tc.rcpt)
			cm := newTestConn()
			if tc.authz != "" {
				m.SetMeta("authz_id", tc.authz)
			}
			if tc.pre != "" {
				cm.Set("pre_campaign", tc.pre)
			}
			err := r.MessageReceived(ctx, m, cm)
			if tc.want.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want.err) {
					t.Errorf("%d %s: err %v, want %q", i, tc.name, err, tc.want.err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%d %s: %v", i, tc.name, err)
			}
			for k, w := range map[string]any{"tenant": tc.want.tenant, "campaign": tc.want.campaign, "routing_domain": tc.want.routing} {
				if v, _ := m.Meta(k); v != w {
					t.Errorf("%d %s: %s = %v, want %v", i, tc.name, k, v, w)
				}
			}
			data := string(m.Data())
			if strings.Contains(data, "X-Campaign:") || strings.Contains(data, "X-Schedule:") {
				t.Errorf("%d %s: campaign/schedule header kept: %q", i, tc.name, data)
			}
			if got := strings.Count(data, "DKIM-Signature:"); got != len(tc.want.sigDomains) {
				t.Errorf("%d %s: %d signatures, want %v", i, tc.name, got, tc.want.sigDomains)
			}
			for _, d := range tc.want.sigDomains {
				if !strings.Contains(data, "d="+d+";") {
					t.Errorf("%d %s: no signature by %s: %q", i, tc.name, d, data)
				}
			}
			if due := m.Due(); tc.want.due != due.After(time.Now().Add(24*time.Hour)) {
				t.Errorf("%d %s: due %v", i, tc.name, due)
			}
		}
	}
}
