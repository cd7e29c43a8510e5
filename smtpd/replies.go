package smtpd

// Reply texts used in more than one place (KumoMTA's texts where KumoMTA
// has one). Those that name the host are functions of it.
const (
	textEhloFirst     = "5.5.1 EHLO or HELO must be issued first"
	textRcptFirst     = "5.5.0 RCPT TO must be issued first"
	textUnimplemented = "5.5.1 Command unimplemented"
)

func textShuttingDown(host string) string { return "4.3.2 " + host + " shutting down" }

func textIdleTooLong(host string) string { return "4.3.2 " + host + " idle too long" }

func textTechnicalDifficulties(host string) string {
	return "4.3.0 " + host + " technical difficulties"
}

func textTooManySessions(host string) string {
	return "4.3.2 " + host + " too many concurrent sessions. Try later"
}

// textLoadShedding answers new sessions while the process is over its
// memory limit (KumoMTA's load shedding).
func textLoadShedding(host string) string { return "4.3.2 " + host + " load shedding. Try later" }

// textDiskFull answers new sessions while the spool does not take writes.
func textDiskFull(host string) string { return "4.3.2 " + host + " disk is too full. Try later" }
