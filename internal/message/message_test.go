package message

import (
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in       string
		user     string
		domain   string
		str      string
		wantFail bool
	}{
		{in: "user@example.com", user: "user", domain: "example.com", str: "user@example.com"},
		{in: "<user@example.com>", user: "user", domain: "example.com", str: "user@example.com"},
		{in: "  <User.Name+tag@Example.COM>  ", user: "User.Name+tag", domain: "Example.COM", str: "User.Name+tag@Example.COM"},
		{in: `"info@"@example.com`, user: "info@", domain: "example.com", str: "info@@example.com"},
		{in: `"a\"b"@example.com`, user: `a"b`, domain: "example.com"},
		{in: "user@[10.0.0.1]", user: "user", domain: "[10.0.0.1]"},
		{in: "user@[IPv6:::1]", user: "user", domain: "[IPv6:::1]"},
		{in: "üser@exämple.com", user: "üser", domain: "exämple.com"},
		{in: "", str: ""},
		{in: "<>", str: ""},
		{in: "user", wantFail: true},
		{in: "@example.com", wantFail: true},
		{in: "user@", wantFail: true},
		{in: "user@example.com:25", wantFail: true},
		{in: "us er@example.com", wantFail: true},
		{in: ".user@example.com", wantFail: true},
		{in: "us..er@example.com", wantFail: true},
		{in: "a@b@example.com", wantFail: true},
		{in: `"unterminated@example.com`, wantFail: true},
		{in: `"q"example.com`, wantFail: true},
		{in: "user@-bad.com", wantFail: true},
		{in: "user@exa mple.com", wantFail: true},
		{in: "user@[]", wantFail: true},
		{in: "user@ex\xffample.com", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAddress(tt.in)
			if tt.wantFail {
				if err == nil {
					t.Fatalf("ParseAddress(%q) = %+v, want error", tt.in, a)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tt.in, err)
			}
			if a.User != tt.user || a.Domain != tt.domain {
				t.Fatalf("got %+v", a)
			}
			if tt.str != "" || tt.user == "" {
				if s := a.String(); s != tt.str {
					t.Errorf("String() = %q, want %q", s, tt.str)
				}
			}
			if a.IsNull() != (tt.user == "" && tt.domain == "") {
				t.Errorf("IsNull() = %v", a.IsNull())
			}
		})
	}
}

var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestIDGenerator(t *testing.T) {
	g := NewIDGenerator()
	before := time.Now().Add(-time.Millisecond)
	seen := map[string]bool{}
	var prev time.Time
	for range 10000 {
		id, created := g.New()
		if !idRE.MatchString(id) {
			t.Fatalf("id %q", id)
		}
		if id[12] != '1' {
			t.Fatalf("id %q is not version 1", id)
		}
		if v := id[16]; v != '8' && v != '9' && v != 'a' && v != 'b' {
			t.Fatalf("id %q has wrong variant", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		if !created.After(prev) {
			t.Fatalf("created times not increasing: %v then %v", prev, created)
		}
		prev = created
		back, err := IDTime(id)
		if err != nil || !back.Equal(created) {
			t.Fatalf("IDTime(%s) = %v, %v; want %v", id, back, err, created)
		}
	}
	if prev.Before(before) || prev.After(time.Now().Add(time.Second)) {
		t.Errorf("created %v is not now", prev)
	}
}

func TestIDGeneratorConcurrent(t *testing.T) {
	g := NewIDGenerator()
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, 0, 1000)
			for range 1000 {
				id, _ := g.New()
				ids = append(ids, id)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("duplicate %s", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}

func TestIDTime(t *testing.T) {
	// a v1 uuid with a known time stamp (RFC 9562 test vector:
	// C232AB00-9414-11EC-B3C8-9F6BDECED846 is 2022-02-22 19:22:22 UTC)
	want := time.Date(2022, 2, 22, 19, 22, 22, 0, time.UTC)
	for _, id := range []string{"c232ab00941411ecb3c89f6bdeced846", "C232AB00-9414-11EC-B3C8-9F6BDECED846"} {
		got, err := IDTime(id)
		if err != nil || !got.Equal(want) {
			t.Errorf("IDTime(%s) = %v, %v", id, got, err)
		}
	}
	for _, bad := range []string{"", "xyz", "c232ab00941441ecb3c89f6bdeced846", "c232ab00941411ecb3c89f6bdeced8", "g232ab00941411ecb3c89f6bdeced846"} {
		if _, err := IDTime(bad); err == nil {
			t.Errorf("IDTime(%q) accepted", bad)
		}
	}
}

func TestQueueName(t *testing.T) {
	tests := []struct {
		meta map[string]any
		want string
	}{
		{map[string]any{"campaign": "c", "tenant": "t"}, "c:t@example.org"},
		{map[string]any{"campaign": "c", "tenant": "t", "routing_domain": "r.com"}, "c:t@example.org!r.com"},
		{map[string]any{"tenant": "t"}, "t@example.org"},
		{map[string]any{"tenant": "t", "routing_domain": "r.com"}, "t@example.org!r.com"},
		{map[string]any{"campaign": "c"}, "c:@example.org"},
		{map[string]any{"campaign": "c", "routing_domain": "r.com"}, "c:@example.org!r.com"},
		{nil, "example.org"},
		{map[string]any{"routing_domain": "r.com"}, "example.org!r.com"},
		{map[string]any{"queue": "my.sink.server", "tenant": "t"}, "my.sink.server"},
		{map[string]any{"queue": nil, "tenant": nil, "campaign": 3.0}, "example.org"},
	}
	for _, tt := range tests {
		m := New(NewIDGenerator(), Address{}, []Address{{User: "u", Domain: "Example.ORG"}, {User: "v", Domain: "other.com"}}, nil)
		for k, v := range tt.meta {
			m.SetMeta(k, v)
		}
		if got := m.QueueName(); got != tt.want {
			t.Errorf("meta %v: QueueName() = %q, want %q", tt.meta, got, tt.want)
		}
	}
	if got := New(NewIDGenerator(), Address{}, nil, nil).QueueName(); got != "" {
		t.Errorf("no recipients: %q", got)
	}
}

func TestParseQueueName(t *testing.T) {
	tests := []struct {
		name string
		want QueueNameParts
	}{
		{"c:t@d.com", QueueNameParts{Campaign: "c", Tenant: "t", Domain: "d.com", HasCampaign: true, HasTenant: true}},
		{"c:t@d.com!r.com", QueueNameParts{Campaign: "c", Tenant: "t", Domain: "d.com", RoutingDomain: "r.com", HasCampaign: true, HasTenant: true, HasRoutingDomain: true}},
		{"t@d.com", QueueNameParts{Tenant: "t", Domain: "d.com", HasTenant: true}},
		{"c:@d.com", QueueNameParts{Campaign: "c", Domain: "d.com", HasCampaign: true, HasTenant: true}}, // KumoMTA docs "Queues": "campaign:" means tenant "",
		{"d.com", QueueNameParts{Domain: "d.com"}},
		{"d.com!r.com:2025", QueueNameParts{Domain: "d.com", RoutingDomain: "r.com:2025", HasRoutingDomain: true}},
		{"foo.com:2025", QueueNameParts{Domain: "foo.com:2025"}},
	}
	for _, tt := range tests {
		got := ParseQueueName(tt.name)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseQueueName(%q) = %+v, want %+v", tt.name, got, tt.want)
		}
		if back := FormatQueueName(got.Campaign, got.HasCampaign, got.Tenant, got.HasTenant, got.Domain, got.RoutingDomain, got.HasRoutingDomain); back != tt.name {
			t.Errorf("FormatQueueName round trip of %q = %q", tt.name, back)
		}
	}
}

func TestMessageBasics(t *testing.T) {
	g := NewIDGenerator()
	s := Address{User: "s", Domain: "example.com"}
	r := []Address{{User: "r", Domain: "example.org"}}
	m := New(g, s, r, []byte("A: 1\r\n\r\nbody"))
	if !idRE.MatchString(m.ID()) || m.Created().IsZero() {
		t.Fatalf("id %q created %v", m.ID(), m.Created())
	}
	if m.Sender() != s || !reflect.DeepEqual(m.Recipients(), r) || m.Size() != 12 {
		t.Fatal("envelope")
	}
	if _, ok := m.Meta("x"); ok || m.MetaMap() != nil {
		t.Fatal("meta should start empty")
	}
	m.SetMeta("x", nil)
	if v, ok := m.Meta("x"); !ok || v != nil {
		t.Fatal("null meta is set")
	}
	if _, ok := m.MetaString("x"); ok {
		t.Fatal("null is not a string")
	}
	cm := NewConnMeta()
	cm.Set("received_from", "10.0.0.1:1234")
	cm.Set("hostname", "mx")
	cm.Set("gone", "x")
	cm.Set("gone", nil)
	if _, ok := cm.Get("gone"); ok {
		t.Fatal("ConnMeta.Set(nil) must delete")
	}
	if !reflect.DeepEqual(cm.Keys(), []string{"hostname", "received_from"}) || cm.GetString("hostname") != "mx" {
		t.Fatalf("conn meta keys %v", cm.Keys())
	}
	n := 0
	cm.Range(func(string, any) { n++ })
	if n != 2 {
		t.Fatal("Range")
	}
	m.CopyConnMeta(cm)
	if v, _ := m.MetaString("received_from"); v != "10.0.0.1:1234" {
		t.Fatal("CopyConnMeta")
	}

	restored, err := Restore(m.ID(), s, r, map[string]any{"a": 1}, []byte("x"))
	if err != nil || !restored.Created().Equal(m.Created()) {
		t.Fatalf("Restore: %v", err)
	}
	if _, err := Restore("bad", s, r, nil, nil); err == nil {
		t.Fatal("Restore accepted a bad id")
	}
}

func TestPrependRawHeadroom(t *testing.T) {
	body := "A: 1\r\n\r\nbody"
	buf := make([]byte, 16+len(body))
	copy(buf[16:], body)
	m := NewWithHeadroom(NewIDGenerator(), Address{}, nil, buf, 16)
	m.PrependHeader("B", "2") // 6 bytes: fits in the headroom
	if got := string(m.Data()); got != "B: 2\r\n"+body {
		t.Fatalf("got %q", got)
	}
	if &m.Buffer()[0] != &buf[0] {
		t.Fatal("headroom not used")
	}
	m.PrependHeader("Received", "from somewhere far away") // does not fit any more
	if got := string(m.Data()); got != "Received: from somewhere far away\r\nB: 2\r\n"+body {
		t.Fatalf("got %q", got)
	}
	if m.Size() != len(m.Data()) {
		t.Fatal("Size")
	}
	m.SetData([]byte("x"))
	if string(m.Data()) != "x" || len(m.Buffer()) != 1 {
		t.Fatal("SetData")
	}
}

func TestAddressAppendTo(t *testing.T) {
	for _, a := range []Address{{}, {User: "u"}, {User: "u", Domain: "d.example"}, {User: "info@", Domain: "[10.0.0.1]"}} {
		if got := string(a.AppendTo([]byte("OK "))); got != "OK "+a.String() {
			t.Errorf("%+v: %q", a, got)
		}
	}
}

// A released message comes back from Acquire with nothing of its earlier
// use: no meta, no scheduling state, its own recipients and a new id.
func TestAcquireReleaseNoLeak(t *testing.T) {
	gen := NewIDGenerator()
	rcpts := []Address{{User: "a", Domain: "x.example"}}
	seen := map[string]bool{}
	var heldIDs []string
	for i := 0; i < 200; i++ {
		m := Acquire(gen, Address{User: "s", Domain: "y.example"}, rcpts, []byte("0123Subject: x\r\n\r\n"), 4)
		if len(m.MetaMap()) != 0 || m.Attempts() != 0 || !m.Due().IsZero() || m.Scheduling() != nil {
			t.Fatalf("use %d: state left over: meta %v attempts %d", i, m.MetaMap(), m.Attempts())
		}
		if string(m.Data()) != "Subject: x\r\n\r\n" || m.Sender().User != "s" || len(m.Recipients()) != 1 || m.Recipients()[0] != rcpts[0] {
			t.Fatalf("use %d: envelope %+v %+v data %q", i, m.Sender(), m.Recipients(), m.Data())
		}
		var idb []byte
		idb = m.AppendID(idb)
		if len(idb) != 32 || seen[string(idb)] {
			t.Fatalf("use %d: id %q", i, idb)
		}
		seen[string(idb)] = true
		if i%2 == 0 {
			id := m.ID()
			if id != string(idb) {
				t.Fatalf("ID %q, AppendID %q", id, idb)
			}
			heldIDs = append(heldIDs, id)
		}
		if created, err := IDTime(string(idb)); err != nil || !created.Equal(m.Created()) {
			t.Fatalf("created %v %v", created, err)
		}
		m.SetMeta("use", i)
		m.SetMeta("queue", "null")
		m.SetAttempts(3)
		m.SetRecipients(append(m.Recipients(), Address{User: "extra", Domain: "z.example"}))
		m.Recipients()[0].User = "changed" // the caller's slice is not touched
		m.Release()
	}
	if rcpts[0].User != "a" {
		t.Fatal("Acquire kept the caller's recipient slice")
	}
	for i, id := range heldIDs {
		if len(id) != 32 || !seen[id] {
			t.Fatalf("id %d changed after Release: %q", i, id)
		}
	}
	// a zero Message has no id
	var z Message
	if z.ID() != "" {
		t.Fatal("zero message has an id")
	}
}
