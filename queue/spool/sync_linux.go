//go:build linux

package spool

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncfs reports whether syncfs(2) is available for the group commit.
const haveSyncfs = true

// syncfs flushes every dirty page and inode of the file system holding f to
// stable storage, reporting any write-back error since the last call.
func syncfs(f *os.File) error {
	return unix.Syncfs(int(f.Fd()))
}
