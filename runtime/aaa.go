package runtime

import (
	"context"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
)

// openAAA builds kumo.aaa (a lazy module, lazy.go) with the function
// kumogo provides: configure_acct_log (KumoMTA's kumo.aaa.configure_acct_log
// page). The module's other KumoMTA names fail by name.
func (st *state) openAAA() *lua.LTable {
	t := st.L.NewTable()
	t.RawSetString("configure_acct_log", st.L.NewFunction(st.kumoConfigureAcctLog))
	return t
}

func (st *state) kumoConfigureAcctLog(L *lua.LState) int {
	a, err := config.DecodeAcctLog(st.tableArg(L))
	if err != nil {
		L.RaiseError("configure_acct_log: %s", err.Error())
	}
	if h, ok := st.host().(AcctLogHost); ok && h != nil {
		if err := h.ConfigureAcctLog(st.callCtx(), a); err != nil {
			L.RaiseError("configure_acct_log: %s", err.Error())
		}
	}
	return 0
}

// AcctLogHost is implemented by hosts that keep the accounting log of
// kumo.aaa.configure_acct_log.
type AcctLogHost interface {
	ConfigureAcctLog(ctx context.Context, a *config.AcctLog) error
}
