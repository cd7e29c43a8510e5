package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tsaTenantNodePolicy is tsaNodePolicy with the tenant and campaign taken
// from the recipient's local part (TENANT.CAMPAIGN.anything), so that the
// queue is campaign:tenant@tsa.test.
func tsaTenantNodePolicy(t *testing.T, dir, tsaURL, shapingFile, sink string) string {
	t.Helper()
	p := filepath.Join(dir, "node.lua")
	src := `local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
local shaper = shaping:setup_with_automation {
  publish = { '` + tsaURL + `' },
  subscribe = { '` + tsaURL + `' },
  no_default_files = true,
  extra_files = { '` + shapingFile + `' },
}
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta' }
  kumo.configure_local_logs { log_dir = '` + dir + `/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'node.test', relay_hosts = { '127.0.0.1' } }
  shaper.setup_publish()
end)
kumo.on('get_egress_path_config', shaper.get_egress_path_config)
kumo.on('smtp_server_message_received', function(msg)
  local tenant, campaign = msg:recipient().user:match '^(%w+)%.(%w+)%.'
  msg:set_meta('tenant', tenant)
  msg:set_meta('campaign', campaign)
end)
kumo.on('get_queue_config', function(domain, tenant, campaign)
  if domain == 'tsa.test' then
    return kumo.make_queue_config { protocol = { smtp = { mx_list = { '` + sink + `' } } }, retry_interval = '2s', max_retry_interval = '2s' }
  end
end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTSATenantCampaignSuspensionTwoNodes: the sink's "421 4.7.28 ...
// rate limited" to a message of tenant t1, campaign c1 on one node makes
// the TSA daemon's SuspendTenant (or SuspendCampaign) rule suspend that
// tenant (campaign) for 15 s. Both nodes take the scheduled-queue
// suspension from the daemon: mail of the suspended tenant (campaign)
// sent to either node waits until the suspension expires and is then
// delivered, while the control mail (another tenant; the same tenant's
// other campaign) goes at once on both.
func TestTSATenantCampaignSuspensionTwoNodes(t *testing.T) {
	for _, tc := range []struct {
		action, control string
	}{
		{"SuspendTenant", "t2.c1"},
		{"SuspendCampaign", "t1.c2"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			dir := t.TempDir()
			shapingFile := filepath.Join(dir, "shaping.toml")
			shapingSrc := strings.ReplaceAll(strings.ReplaceAll(tsaShaping, "%DURATION%", "15s"), `"Suspend"`, `"`+tc.action+`"`)
			if err := os.WriteFile(shapingFile, []byte(shapingSrc), 0o644); err != nil {
				t.Fatal(err)
			}
			tsaP := startTSA(t, writeTSAPolicy(t, dir, shapingFile))
			sink := startConcSink(t, 1, 0)
			var nodes []*daemonProc
			for _, name := range []string{"node1", "node2"} {
				d := filepath.Join(dir, name)
				os.MkdirAll(d, 0o755)
				nodes = append(nodes, startDaemon(t, nil, "--policy", tsaTenantNodePolicy(t, d, tsaP.url, shapingFile, sink.addr)))
			}
			sendMessages(t, nodes[0].addr, 1, func(int) string { return "t1.c1.first@tsa.test" }, func(int) string { return "first" })
			var s tsaSuspensions
			waitUntil(t, 15*time.Second, "a suspension at the TSA daemon", func() bool {
				s = tsaP.suspensions(t)
				return len(s.SchedQ) > 0
			}, func() string { return tail(nodes[0].log(), 30) + "\ntsa:\n" + tsaP.log() })
			susp := s.SchedQ[0]
			wantCampaign := tc.action == "SuspendCampaign"
			if len(s.SchedQ) != 1 || len(s.ReadyQ) != 0 || susp.Tenant != "t1" || susp.Domain != "tsa.test" ||
				(susp.Campaign != nil) != wantCampaign || (wantCampaign && *susp.Campaign != "c1") || !strings.Contains(susp.Reason, "421 4.7.28") {
				t.Fatalf("suspensions %+v", s)
			}
			// both nodes poll every second
			for _, n := range nodes {
				waitUntil(t, 5*time.Second, "the node to apply the suspension", func() bool {
					return strings.Contains(n.log(), "scheduled queue suspension added")
				}, func() string { return tail(n.log(), 30) })
			}
			if time.Until(susp.Expires) < 6*time.Second {
				t.Fatalf("too little of the suspension is left to observe it: %+v", susp)
			}
			for i, n := range nodes {
				sendMessages(t, n.addr, 3, func(j int) string { return fmt.Sprintf("t1.c1.held%d-%d@tsa.test", i, j) }, func(int) string { return "held" })
				sendMessages(t, n.addr, 3, func(j int) string { return fmt.Sprintf("%s.free%d-%d@tsa.test", tc.control, i, j) }, func(int) string { return "free" })
			}
			count := func(prefix string, before time.Time) int {
				n := 0
				for _, r := range sink.received() {
					if strings.HasPrefix(r.rcpt, prefix) && (before.IsZero() || r.at.Before(before)) {
						n++
					}
				}
				return n
			}
			waitUntil(t, time.Until(susp.Expires)-time.Second, "the control mail of both nodes", func() bool {
				return count(tc.control+".free", time.Time{}) == 6
			}, func() string { return tail(nodes[1].log(), 30) })
			for time.Now().Before(susp.Expires.Add(-500 * time.Millisecond)) {
				if n := count("t1.c1.", time.Time{}); n > 0 {
					t.Fatalf("%d message(s) of the suspended %s delivered before its end %v: %+v", n, tc.action, susp.Expires, sink.received())
				}
				time.Sleep(100 * time.Millisecond)
			}
			// after expiry: the six held and the first message's retry
			waitUntil(t, 15*time.Second, "the held mail after the suspension", func() bool {
				return count("t1.c1.", time.Time{}) == 7
			}, func() string { return tail(nodes[0].log(), 30) + "\nnode2:\n" + tail(nodes[1].log(), 30) })
			if n := count("t1.c1.", susp.Expires.Add(-time.Second)); n != 0 {
				t.Fatalf("%d held message(s) delivered before the suspension ended", n)
			}
		})
	}
}
