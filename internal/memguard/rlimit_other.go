//go:build !unix

package memguard

// rlimit: no RLIMIT_AS/RLIMIT_DATA here.
func rlimit() (int64, Source, bool) { return 0, "", false }
