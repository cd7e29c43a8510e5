//go:build !linux

package spool

import (
	"errors"
	"os"
)

// haveSyncfs reports whether syncfs(2) is available for the group commit;
// without it each synchronous Put fsyncs its own file and directories.
const haveSyncfs = false

func syncfs(*os.File) error { return errors.ErrUnsupported }
