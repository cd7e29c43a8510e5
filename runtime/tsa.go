package runtime

import (
	"context"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/shaping"
)

// TSAHost serves the `tsa` module of the traffic shaping automation
// daemon (KumoMTA's reference, module `tsa`): it exists only when
// Options.TSA is set, as `require 'tsa'` only works in KumoMTA's
// tsa-daemon process.
type TSAHost interface {
	ConfigureTSADBPath(ctx context.Context, path string) error
	StartTSAHTTPListener(ctx context.Context, l *config.HTTPListener) error
}

// openTSA builds the tsa module: configure_tsa_db_path and
// start_http_listener (which takes kumo.start_http_listener's parameters).
func (st *state) openTSA(h TSAHost) *lua.LTable {
	L := st.L
	t := L.NewTable()
	t.RawSetString("configure_tsa_db_path", L.NewFunction(func(L *lua.LState) int {
		path := L.CheckString(1)
		if st.rt.opts.Validating {
			return 0
		}
		if err := h.ConfigureTSADBPath(st.callCtx(), path); err != nil {
			L.RaiseError("tsa.configure_tsa_db_path: %s", err.Error())
		}
		return 0
	}))
	t.RawSetString("start_http_listener", L.NewFunction(func(L *lua.LState) int {
		l, err := config.DecodeHTTPListener(st.tableArg(L), st.rt.hostname)
		if err != nil {
			L.RaiseError("tsa.start_http_listener: %s", err.Error())
		}
		if st.rt.opts.Validating {
			return 0
		}
		if err := h.StartTSAHTTPListener(st.callCtx(), l); err != nil {
			L.RaiseError("tsa.start_http_listener: %s", err.Error())
		}
		return 0
	}))
	return t
}

// ShapingOf returns the shaping data of a kumo.shaping.load result as
// returned by Call (the tsa_load_shaping_data event).
func ShapingOf(v any) (*shaping.Shaping, bool) {
	o, ok := v.(*shapingObject)
	if !ok || o == nil {
		return nil, false
	}
	return o.s, true
}
