package message

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// gregorianOffset is the number of 100ns intervals between the UUID epoch
// (1582-10-15) and the Unix epoch.
const gregorianOffset = 0x01B21DD213814000

// IDGenerator produces version 1 UUIDs rendered as 32 lowercase hex digits,
// the form KumoMTA uses for spool ids. Time stamps are strictly increasing
// per generator so ids never collide within one process.
type IDGenerator struct {
	mu       sync.Mutex
	last     uint64
	clockSeq uint16
	node     [6]byte
}

// NewIDGenerator returns a generator with a random node id and clock sequence.
func NewIDGenerator() *IDGenerator {
	g := &IDGenerator{}
	var b [8]byte
	_, _ = rand.Read(b[:])
	copy(g.node[:], b[:6])
	g.node[0] |= 0x01 // multicast bit: a random, not a hardware, node id
	g.clockSeq = binary.BigEndian.Uint16(b[6:]) & 0x3fff
	return g
}

// New returns a fresh id and the creation time encoded in it.
func (g *IDGenerator) New() (string, time.Time) {
	id, created := g.next()
	return string(id[:]), created
}

// next returns a fresh id as hex digits and its creation time.
func (g *IDGenerator) next() ([32]byte, time.Time) {
	now := time.Now()
	ts := uint64(now.UnixNano()/100) + gregorianOffset
	g.mu.Lock()
	if ts <= g.last {
		ts = g.last + 1
	}
	g.last = ts
	g.mu.Unlock()
	var u [16]byte
	binary.BigEndian.PutUint32(u[0:], uint32(ts))
	binary.BigEndian.PutUint16(u[4:], uint16(ts>>32))
	binary.BigEndian.PutUint16(u[6:], uint16(ts>>48)&0x0fff|0x1000)
	binary.BigEndian.PutUint16(u[8:], g.clockSeq|0x8000)
	copy(u[10:], g.node[:])
	var out [32]byte
	hex.Encode(out[:], u[:])
	return out, timeFromTS(ts)
}

func timeFromTS(ts uint64) time.Time {
	n := int64(ts-gregorianOffset) * 100
	return time.Unix(0, n).UTC()
}

// ErrBadID is returned by IDTime for strings that are not v1 UUID spool ids.
var ErrBadID = errors.New("message: not a version 1 uuid spool id")

// IDTime recovers the creation time from a spool id (32 hex digits, or the
// dashed 36 character form).
func IDTime(id string) (time.Time, error) {
	clean := make([]byte, 0, 32)
	for i := 0; i < len(id); i++ {
		if id[i] != '-' {
			clean = append(clean, id[i])
		}
	}
	if len(clean) != 32 {
		return time.Time{}, ErrBadID
	}
	var u [16]byte
	if _, err := hex.Decode(u[:], clean); err != nil {
		return time.Time{}, ErrBadID
	}
	if u[6]>>4 != 1 {
		return time.Time{}, ErrBadID
	}
	lo := uint64(binary.BigEndian.Uint32(u[0:]))
	mid := uint64(binary.BigEndian.Uint16(u[4:]))
	hi := uint64(binary.BigEndian.Uint16(u[6:]) & 0x0fff)
	return timeFromTS(hi<<48 | mid<<32 | lo), nil
}

// NewString returns a fresh id without its time stamp (for session ids).
func (g *IDGenerator) NewString() string {
	id, _ := g.New()
	return id
}
