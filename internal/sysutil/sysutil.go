//go:build unix

// Package sysutil holds small operating-system helpers shared by kumogo's
// commands.
package sysutil

import "syscall"

// RaiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit, so that
// tens of thousands of connections fit, and returns the new soft limit.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return uint64(rl.Cur), nil
}
