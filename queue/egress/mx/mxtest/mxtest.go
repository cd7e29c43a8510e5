// Package mxtest starts internal/dnszone's fake DNS server for a test:
// 127.0.0.1, UDP and TCP on one port, answering from records given in
// zone-file syntax, so that tests never depend on the machine's resolver
// or send a query off the machine.
package mxtest

import (
	"testing"

	"github.com/kumogo/kumogo/internal/dnszone"
)

// Server is a running fake DNS server (records can be added and removed,
// faults set and queries counted while it runs).
type Server = dnszone.Server

// Start serves records ("example.com. 300 IN MX 10 mx1.example.com.")
// until the test ends. A name with no records (and no children) is
// NXDOMAIN; a name with records of other types only gives an empty
// NOERROR answer. Both carry a SOA with a 60 s minimum in the authority
// section, as a recursive resolver's negative answers do.
func Start(tb testing.TB, records ...string) *Server {
	tb.Helper()
	z := dnszone.New()
	z.NegativeTTL = 60
	for _, r := range records {
		if err := z.Add(r); err != nil {
			tb.Fatal(err)
		}
	}
	s, err := dnszone.Serve(z)
	if err != nil {
		tb.Fatalf("mxtest: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
