//go:build linux

package spool

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// listFD returns the entries of the open directory fd other than "." and
// "..".
func (w *walker) listFD(fd int) ([]dirent, error) {
	if w.dents == nil {
		w.dents = make([]byte, 32<<10)
	}
	var out []dirent
	for {
		n, err := unix.Getdents(fd, w.dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		if out, err = parseDirents(w.dents[:n], out); err != nil {
			return nil, err
		}
	}
}

// parseDirents appends the entries of a getdents64 buffer (struct
// linux_dirent64: inode, offset, record length, type, NUL-terminated name).
func parseDirents(b []byte, out []dirent) ([]dirent, error) {
	const hdr = 19 // 8 + 8 + 2 + 1
	for len(b) > 0 {
		if len(b) < hdr {
			return out, errors.New("short directory entry")
		}
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < hdr || reclen > len(b) {
			return out, errors.New("bad directory entry length")
		}
		typ := b[18]
		name := b[hdr:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		b = b[reclen:]
		if s := string(name); s != "." && s != ".." {
			out = append(out, dirent{name: s, typ: direntTypeOf(typ)})
		}
	}
	return out, nil
}

func direntTypeOf(t uint8) direntType {
	switch t {
	case unix.DT_DIR:
		return typDir
	case unix.DT_REG:
		return typReg
	case unix.DT_UNKNOWN:
		return typUnknown
	}
	return typOther
}
