package config

import "strconv"

// DecodeAcctLog decodes a kumo.aaa.configure_acct_log table: the log file
// parameters of configure_local_logs without meta, headers, per_record
// and filter_event, plus the four log_authn/log_authz switches.
func DecodeAcctLog(v any) (*AcctLog, error) {
	a := DefaultAcctLog()
	l := &a.Logs
	o := NewObject(v, v, "struct AcctLogParams", "log_dir", "max_file_size", "max_segment_duration", "compression_level", "back_pressure", "min_free_space", "min_free_inodes",
		"log_authz_allow", "log_authz_deny", "log_authn_ok", "log_authn_fail")
	o.Str("log_dir", &l.LogDir)
	o.Int64("max_file_size", &l.MaxFileSize)
	o.Duration("max_segment_duration", &l.MaxSegmentDuration)
	o.Int("compression_level", &l.CompressionLevel)
	o.Int("back_pressure", &l.BackPressure)
	o.freeSpace("min_free_space", &l.MinFreeSpace)
	o.freeSpace("min_free_inodes", &l.MinFreeInodes)
	o.Bool("log_authz_allow", &a.LogAuthzAllow)
	o.Bool("log_authz_deny", &a.LogAuthzDeny)
	o.Bool("log_authn_ok", &a.LogAuthnOK)
	o.Bool("log_authn_fail", &a.LogAuthnFail)
	if o.err == nil && l.LogDir == "" {
		o.Fail("missing field `log_dir`")
	}
	if o.err == nil && l.CompressionLevel > 21 {
		o.Fail("invalid value: integer `" + strconv.Itoa(l.CompressionLevel) + "`, expected a compression level between 0 and 21")
	}
	if o.err != nil {
		return nil, o.err
	}
	return &a, nil
}
