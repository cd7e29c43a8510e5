package runtime

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

// initWith runs an init that executes body and returns the host.
func initWith(t *testing.T, body string) (*fakeHost, error) {
	t.Helper()
	h := &fakeHost{}
	r, err := newRuntimeErr(t, "kumo.on('init', function()\n"+body+"\nend)\n", func(o *Options) { o.Host = h })
	if err != nil {
		return h, err
	}
	return h, r.Init(context.Background())
}

func TestESMTPListenerDefaults(t *testing.T) {
	h, err := initWith(t, `kumo.start_esmtp_listener{}`)
	if err != nil {
		t.Fatal(err)
	}
	want := config.DefaultESMTPListener("mx.test")
	if !reflect.DeepEqual(*h.esmtp[0], want) {
		t.Fatalf("got %+v\nwant %+v", *h.esmtp[0], want)
	}
}

func TestESMTPListenerAllOptions(t *testing.T) {
	h, err := initWith(t, `kumo.start_esmtp_listener{
  listen = '0:2026',
  max_connections = 100,
  hostname = 'mail.example.com',
  banner = 'hi there',
  relay_hosts = {'10.0.0.0/8', '192.168.1.1'},
  tls_certificate = '/etc/cert.pem',
  tls_private_key = { key_data = 'KEY' },
  tls_required_client_ca = { vault_mount = 'secret', vault_path = 'ca' },
  deferred_spool = false,
  deferred_queue = true,
  trace_headers = { received_header = false, header_name = 'X-Ref', include_meta_names = {'tenant'} },
  client_timeout = '2min',
  data_processing_timeout = 30.5,
  batch_handling = 'BatchByDomain',
  max_messages_per_connection = 5,
  max_recipients_per_message = 6,
  max_message_size = 1048576,
  data_buffer_size = 4096,
  invalid_line_endings = 'Fix',
  line_length_hard_limit = 2000,
  allow_xclient = true,
  require_proxy_protocol = false,
  meta = { x_a = 'b', n = 1 },
  peer = { ['10.0.0.0/8'] = { banner = 'peer' } },
  via = {},
  hostname = nil,
}`)
	if err != nil {
		t.Fatal(err)
	}
	l := h.esmtp[0]
	want := config.ESMTPListener{
		Listen:                   "0.0.0.0:2026",
		Hostname:                 "mx.test",
		Banner:                   "hi there",
		RelayHosts:               config.CIDRList{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")},
		MaxConnections:           100,
		MaxMessageSize:           1048576,
		MaxRecipientsPerMessage:  6,
		MaxMessagesPerConnection: 5,
		ClientTimeout:            2 * time.Minute,
		DataProcessingTimeout:    30500 * time.Millisecond,
		DataBufferSize:           4096,
		LineLengthHardLimit:      2000,
		InvalidLineEndings:       "Fix",
		BatchHandling:            "BatchByDomain",
		Meta:                     map[string]any{"x_a": "b", "n": int64(1)},
		TLSCertificate:           config.KeySource{Path: "/etc/cert.pem"},
		TLSPrivateKey:            config.KeySource{Data: []byte("KEY")},
		TLSRequiredClientCA:      config.KeySource{Vault: map[string]string{"vault_mount": "secret", "vault_path": "ca"}},
		DeferredQueue:            true,
		TraceHeaders:             config.TraceHeaders{ReceivedHeader: false, SupplementalHeader: true, HeaderName: "X-Ref", IncludeMetaNames: []string{"tenant"}},
		AllowXClient:             true,
		Peer:                     map[string]any{"10.0.0.0/8": map[string]any{"banner": "peer"}},
		Via:                      map[string]any{},
	}
	// the peer block resolves to a variant with its own banner
	v := l.Variants
	if v == nil || len(v.Peers) != 1 || v.Peers[0] != netip.MustParsePrefix("10.0.0.0/8") || len(v.Vias) != 0 {
		t.Fatalf("variants %+v", v)
	}
	if c := v.For(netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("127.0.0.1")); c.Banner != "peer" || c.Hostname != "mx.test" || c.MaxMessageSize != 1048576 {
		t.Fatalf("10.1.2.3: %+v", c)
	}
	if c := v.For(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("127.0.0.1")); c != l {
		t.Fatalf("a peer outside every block must get the listener itself, got %+v", c)
	}
	got := *l
	got.Variants = nil
	// hostname appears twice in the table literal; the later nil wins in Lua
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// TestESMTPListenerPeerVia: via applies after peer, the most specific
// block wins, and a bad block fails the listener at start.
func TestESMTPListenerPeerVia(t *testing.T) {
	h, err := initWith(t, `kumo.start_esmtp_listener {
  listen = '127.0.0.1:0', banner = 'base', max_message_size = 1000,
  peer = {
    ['10.0.0.0/8'] = { banner = 'ten', max_message_size = 2000 },
    ['10.1.0.0/16'] = { banner = 'ten-one', allow_xclient = true },
  },
  via = { ['127.0.0.1'] = { banner = 'via-lo', hostname = 'lo.example' } },
}`)
	if err != nil {
		t.Fatal(err)
	}
	v := h.esmtp[0].Variants
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		peer, local, banner, host string
		size                      int64
		xclient                   bool
	}{
		{"10.9.9.9", "192.0.2.1", "ten", "mx.test", 2000, false},
		{"10.1.2.3", "192.0.2.1", "ten-one", "mx.test", 1000, true},
		{"10.1.2.3", "127.0.0.1", "via-lo", "lo.example", 1000, true},
		{"192.0.2.9", "127.0.0.1", "via-lo", "lo.example", 1000, false},
		{"192.0.2.9", "192.0.2.1", "base", "mx.test", 1000, false},
	} {
		c := v.For(ip(tc.peer), ip(tc.local))
		if c.Banner != tc.banner || c.Hostname != tc.host || c.MaxMessageSize != tc.size || c.AllowXClient != tc.xclient {
			t.Errorf("%s via %s: banner %q host %q size %d xclient %v", tc.peer, tc.local, c.Banner, c.Hostname, c.MaxMessageSize, c.AllowXClient)
		}
	}
	for _, bad := range []string{
		`peer = { ['10.0.0.0/8'] = { listen = '0:25' } }`,
		`peer = { ['10.0.0.0/8'] = { max_connections = 5 } }`,
		`via = { ['not-an-ip'] = { banner = 'x' } }`,
		`peer = { ['10.0.0.0/8'] = { bannner = 'typo' } }`,
		`peer = { ['10.0.0.0/8'] = { max_message_size = 'big' } }`,
	} {
		if _, err := initWith(t, "kumo.start_esmtp_listener { listen = '127.0.0.1:0', "+bad+" }"); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestStrictDecodeErrors(t *testing.T) {
	cases := []struct {
		body, want, not string
	}{
		{`kumo.start_esmtp_listener{listen='127.0.0.1:25', foo=1}`, "deserialize error: unknown field `foo`, expected one of `listen`, `max_connections`", "invalid"},
		{`kumo.start_esmtp_listener{max_connections='many'}`, "deserialize error: invalid type: string \"many\", expected usize, while processing {\"max_connections\":\"many\"}", ""},
		{`kumo.start_esmtp_listener{max_connections=1.5}`, "invalid type: floating point `1.5`, expected usize", ""},
		{`kumo.start_esmtp_listener{banner=true}`, "invalid type: boolean `true`, expected a string", ""},
		{`kumo.start_esmtp_listener{relay_hosts='10.0.0.0/8'}`, "invalid type: string \"10.0.0.0/8\", expected a sequence", ""},
		{`kumo.start_esmtp_listener{relay_hosts={'192.168.1.1/24'}}`, "invalid value", ""},
		{`kumo.start_esmtp_listener{client_timeout='soon'}`, "invalid value: string \"soon\", expected a duration", ""},
		{`kumo.start_esmtp_listener{client_timeout={}}`, "invalid type: map, expected a duration", ""},
		{`kumo.start_esmtp_listener{batch_handling='Sometimes'}`, "unknown variant `Sometimes`, expected `BifurcateAlways` or `BatchByDomain`", ""},
		{`kumo.start_esmtp_listener{listen='nonsense'}`, "invalid value: string \"nonsense\"", ""},
		{`kumo.start_esmtp_listener{trace_headers={bogus=1}}`, "unknown field `bogus`, expected one of `received_header`", "invalid"},
		{`kumo.start_esmtp_listener{tls_certificate={key=1}}`, "untagged enum KeySource", ""},
		{`kumo.start_http_listener{use_tls='yes'}`, "invalid type: string \"yes\", expected a boolean", ""},
		{`kumo.define_spool{name='data'}`, "missing field `path`", ""},
		{`kumo.define_spool{name='data', path='/x', kind='Tape'}`, "unknown variant `Tape`", ""},
		{`kumo.configure_local_logs{}`, "missing field `log_dir`", ""},
		{`kumo.configure_local_logs{log_dir='/x', per_record={Reception={sufix='.r'}}}`, "unknown field `sufix`", "invalid"},
		{`kumo.make_listener_domain{relay_too=true}`, "unknown field `relay_too`, expected one of `relay_to`", "invalid"},
		{`kumo.make_listener_domain{log_oob='Maybe'}`, "unknown variant `Maybe`", ""},
	}
	for _, c := range cases {
		_, err := initWith(t, c.body)
		if err == nil {
			t.Errorf("%s: want error", c.body)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.body, msg, c.want)
		}
		if c.not != "" {
			first := strings.SplitN(msg, "\n", 2)[0]
			if strings.Contains(first, c.not) {
				t.Errorf("%s: error must not contain %q: %v", c.body, c.not, first)
			}
		}
	}
}

func TestHTTPSpoolLogsDecode(t *testing.T) {
	h, err := initWith(t, `
kumo.start_http_listener{listen='0:8000', trusted_hosts={'10.1.0.0/16'}, use_tls=true, request_body_limit=100, hostname='h'}
kumo.define_spool{name='data', path='/var/spool/data', kind='RocksDB', flush=true, rocks_params={x=1}, min_free_space='5%', min_free_inodes=1000}
kumo.define_spool{name='meta', path='/var/spool/meta'}
kumo.configure_local_logs{
  log_dir='/var/log/kumo', max_segment_duration='1 minute', max_file_size=10, compression_level=3,
  back_pressure=7, meta={'queue', 'x_*'}, headers={'Subject', 'X-*'}, filter_event='f',
  per_record={ Reception={suffix='.rx', enable=false}, Any={template='{{ id }}'} },
}
kumo.configure_accounting_db_path(':memory:')
local d = kumo.make_listener_domain{relay_to=true, relay_from={'10.0.0.0/8'}, log_oob=true, ttl='60s'}
assert(d.relay_to == true and d.log_oob == 'LogThenRelay' and d.log_arf == 'Ignore' and d.relay_from[1] == '10.0.0.0/8')
`)
	if err != nil {
		t.Fatal(err)
	}
	hl := h.http[0]
	if hl.Listen != "0.0.0.0:8000" || !hl.UseTLS || hl.RequestBodyLimit != 100 || hl.Hostname != "h" || len(hl.TrustedHosts) != 1 {
		t.Fatalf("http = %+v", hl)
	}
	s := h.spools[0]
	if s.Kind != "RocksDB" || !s.Flush || s.MinFreeSpace != "5%" || s.MinFreeInodes != "1000" || s.RocksParams["x"] != int64(1) {
		t.Fatalf("spool = %+v", s)
	}
	if m := h.spools[1]; m.Kind != "LocalDisk" || m.Flush || m.MinFreeSpace != "10%" {
		t.Fatalf("spool = %+v", m)
	}
	l := h.logs[0]
	if l.LogDir != "/var/log/kumo" || l.MaxSegmentDuration != time.Minute || l.MaxFileSize != 10 || l.CompressionLevel != 3 ||
		l.BackPressure != 7 || !reflect.DeepEqual(l.Meta, []string{"queue", "x_*"}) || !reflect.DeepEqual(l.Headers, []string{"Subject", "X-*"}) ||
		l.FilterEvent != "f" || l.MinFreeSpace != "10%" {
		t.Fatalf("logs = %+v", l)
	}
	if got := l.PerRecord["Reception"]; got.Suffix != ".rx" || got.Enable {
		t.Fatalf("per_record Reception = %+v", got)
	}
	if got := l.PerRecord["Any"]; got.Template != "{{ id }}" || !got.Enable {
		t.Fatalf("per_record Any = %+v", got)
	}
	if h.acctPath != ":memory:" {
		t.Fatalf("acct = %q", h.acctPath)
	}
}

func TestDurationForms(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10":           10 * time.Second,
		"2.5":          2500 * time.Millisecond,
		"'20 minutes'": 20 * time.Minute,
		"'5m'":         5 * time.Minute,
		"'1h 30m'":     90 * time.Minute,
		"'10s'":        10 * time.Second,
		"'7 days'":     7 * 24 * time.Hour,
		"'2min'":       2 * time.Minute,
	} {
		h, err := initWith(t, "kumo.start_esmtp_listener{client_timeout="+in+"}")
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := h.esmtp[0].ClientTimeout; got != want {
			t.Errorf("%s: got %v want %v", in, got, want)
		}
	}
}

func TestListenerDomainEvent(t *testing.T) {
	r := newRuntime(t, `
kumo.on('get_listener_domain', function(domain, listener, conn)
  if domain == 'relay.example' then
    return kumo.make_listener_domain{relay_to=true}
  elseif domain == 'table.example' then
    return {relay_from={'10.0.0.0/8'}}
  elseif domain == 'bad.example' then
    return 42
  end
end)`)
	ctx := context.Background()
	cm := newTestConn()
	d, err := r.ListenerDomain(ctx, "relay.example", "127.0.0.1:25", cm)
	if err != nil || d == nil || !d.RelayTo || d.LogOOB != "Ignore" {
		t.Fatalf("d=%+v err=%v", d, err)
	}
	d, err = r.ListenerDomain(ctx, "table.example", "127.0.0.1:25", cm)
	if err != nil || d == nil || len(d.RelayFrom) != 1 {
		t.Fatalf("d=%+v err=%v", d, err)
	}
	d, err = r.ListenerDomain(ctx, "other.example", "127.0.0.1:25", cm)
	if err != nil || d != nil {
		t.Fatalf("d=%+v err=%v", d, err)
	}
	if _, err = r.ListenerDomain(ctx, "bad.example", "127.0.0.1:25", cm); err == nil {
		t.Fatal("want error for a number result")
	}
}
