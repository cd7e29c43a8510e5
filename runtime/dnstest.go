package runtime

import (
	"io"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/dnszone"
)

// dnsConfigureTestResolver is kumo.dns.configure_test_resolver(ZONES):
// ZONES is a zone text or a list of them (master-file format). They are
// answered in process, on a loopback socket that the resolver is pointed
// at, so a policy's own tests are hermetic (KumoMTA's integration tests
// use it). Under --validate the zones are parsed only.
func (st *state) dnsConfigureTestResolver(L *lua.LState) int {
	var texts []string
	switch v := L.CheckAny(1).(type) {
	case lua.LString:
		texts = []string{string(v)}
	case *lua.LTable:
		for i := 1; i <= v.Len(); i++ {
			s, ok := v.RawGetInt(i).(lua.LString)
			if !ok {
				L.ArgError(1, "expected a list of zone texts")
			}
			texts = append(texts, string(s))
		}
	default:
		L.ArgError(1, "expected a zone text or a list of them")
	}
	zones, err := dnszone.Parse(texts)
	if err != nil {
		L.RaiseError("kumo.dns.configure_test_resolver: %s", err.Error())
	}
	if st.rt.opts.Validating {
		return 0
	}
	d := st.dns(L, "configure_test_resolver")
	srv, err := dnszone.Serve(zones)
	if err != nil {
		L.RaiseError("kumo.dns.configure_test_resolver: %s", err.Error())
	}
	st.rt.own(srv)
	if err := d.Configure([]string{srv.Addr}); err != nil {
		L.RaiseError("kumo.dns.configure_test_resolver: %s", err.Error())
	}
	return 0
}

// own closes c when the runtime closes.
func (r *Runtime) own(c io.Closer) {
	r.ownMu.Lock()
	r.owned = append(r.owned, c)
	r.ownMu.Unlock()
}

func (r *Runtime) closeOwned() {
	r.ownMu.Lock()
	owned := r.owned
	r.owned = nil
	r.ownMu.Unlock()
	for _, c := range owned {
		c.Close()
	}
}

// disown forgets c (closed by the policy before the runtime closes).
func (r *Runtime) disown(c io.Closer) {
	r.ownMu.Lock()
	defer r.ownMu.Unlock()
	for i, o := range r.owned {
		if o == c {
			r.owned = append(r.owned[:i], r.owned[i+1:]...)
			return
		}
	}
}
