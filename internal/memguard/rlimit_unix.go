//go:build unix

package memguard

import "golang.org/x/sys/unix"

// rlimit returns RLIMIT_AS, else RLIMIT_DATA, when one is set.
func rlimit() (int64, Source, bool) {
	for _, r := range []struct {
		res int
		src Source
	}{{unix.RLIMIT_AS, SourceRlimitAS}, {unix.RLIMIT_DATA, SourceRlimitDS}} {
		var rl unix.Rlimit
		if err := unix.Getrlimit(r.res, &rl); err == nil && rl.Cur != unix.RLIM_INFINITY && rl.Cur < 1<<62 {
			return int64(rl.Cur), r.src, true
		}
	}
	return 0, "", false
}
