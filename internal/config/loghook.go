package config

// LogHook is the decoded kumo.configure_log_hook (and
// kumo.configure_log_disposition_hook) parameter table: KumoMTA's
// configure_log_hook page takes back_pressure, meta, headers and
// per_record from configure_local_logs, plus name and deferred_spool.
type LogHook struct {
	Name          string
	BackPressure  int
	Meta          []string
	Headers       []string
	PerRecord     map[string]PerRecord
	DeferredSpool bool
}

// DefaultLogHook returns KumoMTA's defaults (Name is required and empty).
func DefaultLogHook() LogHook {
	return LogHook{BackPressure: DefaultLocalLogs().BackPressure}
}
