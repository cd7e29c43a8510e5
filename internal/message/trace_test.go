package message

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestReceivedValue(t *testing.T) {
	when := time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name, proto, tls, want string
	}{
		{"plain", "ESMTP", "",
			"from client.example.com (10.0.0.1)\r\n" +
				"  by mx.example.net (KumoMTA 10.0.0.2)\r\n" +
				"  with ESMTP id 0123456789abcdef0123456789abcdef for rcpt@example.org;\r\n" +
				"  Tue, 05 Mar 2024 07:08:09 +0000"},
		{"tls", "ESMTPS", "TLSv1.3:TLS_AES_128_GCM_SHA256",
			"from client.example.com (10.0.0.1)\r\n" +
				"  by mx.example.net (KumoMTA 10.0.0.2)\r\n" +
				"  with ESMTPS (TLSv1.3:TLS_AES_128_GCM_SHA256) id 0123456789abcdef0123456789abcdef for rcpt@example.org;\r\n" +
				"  Tue, 05 Mar 2024 07:08:09 +0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReceivedValue("client.example.com", "10.0.0.1", "mx.example.net", "10.0.0.2", tt.proto, tt.tls,
				"0123456789abcdef0123456789abcdef", "rcpt@example.org", when)
			if got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	// usable as a header: it parses back
	m := newTestMessage(t, "Subject: x\r\n\r\nbody")
	m.PrependHeader("Received", tests[0].want)
	if v, _ := m.FirstHeader("received"); !strings.HasPrefix(v, "from client.example.com (10.0.0.1)  by mx") {
		t.Fatalf("parsed back %q", v)
	}
}

func TestSupplementalValue(t *testing.T) {
	tests := []struct {
		name  string
		rcpts []string
		meta  map[string]any
		json  string
	}{
		{"golden", []string{"recip@example.com"}, nil, `{"_@_":"\\_/","recipient":"recip@example.com"}`},
		{"several", []string{"a@x.com", "b@x.com"}, nil, `{"_@_":"\\_/","recipient":["a@x.com","b@x.com"]}`},
		{"meta sorted", []string{"a@x.com"}, map[string]any{"z": 1, "campaign": "c<&>", "b": nil},
			`{"_@_":"\\_/","b":null,"campaign":"c<&>","recipient":"a@x.com","z":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SupplementalValue(tt.rcpts, tt.meta)
			lines := strings.Split(got, "\r\n\t")
			for i, l := range lines {
				if len(l) > 75 || (i < len(lines)-1 && len(l) != 75) {
					t.Errorf("line %d has %d chars", i, len(l))
				}
			}
			dec, err := base64.StdEncoding.DecodeString(strings.Join(lines, ""))
			if err != nil {
				t.Fatal(err)
			}
			if string(dec) != tt.json {
				t.Fatalf("json %s, want %s", dec, tt.json)
			}
		})
	}
	if got := SupplementalValue([]string{"recip@example.com"}, nil); got != "eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoicmVjaXBAZXhhbXBsZS5jb20ifQ==" {
		t.Fatalf("golden mismatch: %q", got)
	}
}

func TestAppendReceivedMatchesReceivedValue(t *testing.T) {
	when := time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC)
	gen := NewIDGenerator()
	for _, rcpts := range [][]Address{nil, {{User: "rcpt", Domain: "example.org"}, {User: "b", Domain: "c.example"}}} {
		for _, m := range []*Message{New(gen, Address{}, rcpts, nil), Acquire(gen, Address{}, rcpts, nil, 0)} {
			first := ""
			if len(rcpts) > 0 {
				first = rcpts[0].String()
			}
			want := "Received: " + ReceivedValue("c.example", "10.0.0.1", "mx.example", "10.0.0.2", "ESMTPS", "TLSv1.3:X", m.ID(), first, when) + "\r\n"
			if got := string(m.AppendReceived([]byte("junk"), "c.example", "10.0.0.1", "mx.example", "10.0.0.2", "ESMTPS", "TLSv1.3:X", when)); got != "junk"+want {
				t.Fatalf("got  %q\nwant %q", got, "junk"+want)
			}
		}
	}
}
