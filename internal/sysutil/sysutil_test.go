//go:build unix

package sysutil

import (
	"syscall"
	"testing"
)

func TestRaiseFileLimit(t *testing.T) {
	n, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if uint64(rl.Cur) != n || rl.Cur != rl.Max {
		t.Fatalf("soft limit %d, hard %d, returned %d", rl.Cur, rl.Max, n)
	}
}
