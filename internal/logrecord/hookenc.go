package logrecord

import "github.com/kumogo/kumogo/internal/message"

// Encoder renders records as a Logger writes them (meta and header names
// selected from the message, gaps filled from it), for consumers other
// than segment files: the log hooks of kumo.configure_log_hook.
type Encoder struct {
	metaSel *selector
	hdrSel  *selector
	nodeID  string
}

// NewEncoder selects meta and headers as configure_local_logs' meta and
// headers options do; nodeID fills the nodeid of records that carry none.
func NewEncoder(meta, headers []string, nodeID string) *Encoder {
	return &Encoder{metaSel: newSelector(meta, false), hdrSel: newSelector(headers, true), nodeID: nodeID}
}

// Append appends the JSON object of rec (no newline) to b; msg may be nil.
func (e *Encoder) Append(b []byte, rec *Record, msg *message.Message) []byte {
	enc := recordEncoder{msg: msg, metaSel: e.metaSel, hdrSel: e.hdrSel, nodeID: e.nodeID}
	return enc.append(b, rec)
}
