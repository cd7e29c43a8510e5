package mx

import "testing"

// FuzzParseDomainLiteral: a literal either fails or gives a valid address
// and a port in range.
func FuzzParseDomainLiteral(f *testing.F) {
	for _, s := range []string{"[1.2.3.4]", "[IPv6:::1]", "[::1]", "[1.2.3.4:25]", "[1.2.3.4]:2525", "[::1]:25", "[1.2.3.4:25]:26", "[", "[]", "[IPv6:]", "[1.2.3.4]:99999", "[1.2.3.4]:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, port, err := ParseDomainLiteral(s)
		if err != nil {
			return
		}
		if !addr.IsValid() || port < 0 || port > 65535 {
			t.Fatalf("%q: %v port %d", s, addr, port)
		}
	})
}
