package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseCIDRListStrict(t *testing.T) {
	l, err := ParseCIDRList([]string{"192.168.1.0/24", "10.0.0.1", "::1", "[::2]", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"192.168.1.77": true, "192.168.2.1": false, "10.0.0.1": true, "10.0.0.2": false,
		"::1": true, "::2": true, "2001:db8::5": true, "::ffff:10.0.0.1": true,
	} {
		if got := l.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s: got %v want %v", ip, got, want)
		}
	}
	if _, err := ParseCIDRList([]string{"192.168.1.1/24"}); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Fatalf("host bits must be rejected: %v", err)
	}
	if _, err := ParseCIDRList([]string{"not-an-ip"}); err == nil {
		t.Fatal("garbage must be rejected")
	}
}

func TestDefaults(t *testing.T) {
	c := DefaultESMTPListener("h.example")
	if c.Listen != "127.0.0.1:2025" || c.Banner != "KumoMTA" || c.MaxConnections != 32768 ||
		c.MaxMessageSize != 20*1024*1024 || c.MaxRecipientsPerMessage != 1024 || c.MaxMessagesPerConnection != 10000 ||
		c.LineLengthHardLimit != 998 || c.InvalidLineEndings != "Deny" || c.BatchHandling != "BifurcateAlways" ||
		!c.TraceHeaders.ReceivedHeader || c.TraceHeaders.HeaderName != "X-KumoRef" ||
		!c.RelayHosts.Contains(netip.MustParseAddr("127.0.0.1")) || c.RelayHosts.Contains(netip.MustParseAddr("10.1.1.1")) {
		t.Fatalf("listener defaults: %+v", c)
	}
	if l := DefaultLocalLogs(); l.MaxFileSize != 1_000_000_000 || l.BackPressure != 128000 {
		t.Fatalf("log defaults: %+v", l)
	}
}
