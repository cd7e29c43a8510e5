package runtime

import (
	"context"
	"strconv"

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
	a, err := decodeAcctLog(st.tableArg(L))
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

// decodeAcctLog decodes a configure_acct_log table: the log file
// parameters of configure_local_logs without meta, headers, per_record and
// filter_event, plus the four log_authn/log_authz switches.
func decodeAcctLog(v any) (*config.AcctLog, error) {
	a := config.DefaultAcctLog()
	l := &a.Logs
	o := newObj(v, v, "struct AcctLogParams", "log_dir", "max_file_size", "max_segment_duration", "compression_level", "back_pressure", "min_free_space", "min_free_inodes",
		"log_authz_allow", "log_authz_deny", "log_authn_ok", "log_authn_fail")
	o.str("log_dir", &l.LogDir)
	o.integer64("max_file_size", &l.MaxFileSize)
	o.dur("max_segment_duration", &l.MaxSegmentDuration)
	o.integer("compression_level", &l.CompressionLevel)
	o.integer("back_pressure", &l.BackPressure)
	o.freeSpace("min_free_space", &l.MinFreeSpace)
	o.freeSpace("min_free_inodes", &l.MinFreeInodes)
	o.boolean("log_authz_allow", &a.LogAuthzAllow)
	o.boolean("log_authz_deny", &a.LogAuthzDeny)
	o.boolean("log_authn_ok", &a.LogAuthnOK)
	o.boolean("log_authn_fail", &a.LogAuthnFail)
	if o.err == nil && l.LogDir == "" {
		o.fail("missing field `log_dir`")
	}
	if o.err == nil && l.CompressionLevel > 21 {
		o.fail("invalid value: integer `" + strconv.Itoa(l.CompressionLevel) + "`, expected a compression level between 0 and 21")
	}
	if o.err != nil {
		return nil, o.err
	}
	return &a, nil
}
