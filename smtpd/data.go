package smtpd

// Message bodies: the buffers they are read into, their share of the
// listener's memory budget, and Data, which go-smtp calls for DATA and for
// the last BDAT chunk.

import (
	"errors"
	"io"
	"sync"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/message"
)

// Body buffers come from two pools: every message starts in a small buffer
// and moves to a large one only when it outgrows it, so that thousands of
// sessions sending small messages do not each pin a large buffer. Each
// buffer keeps message.Headroom spare bytes in front for trace headers.
const (
	smallBuf = 16*1024 + message.Headroom
	largeBuf = 128*1024 + message.Headroom
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, 0, smallBuf); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, 0, largeBuf); return &b }}
)

func getBuf() *[]byte {
	bp := smallPool.Get().(*[]byte)
	*bp = (*bp)[:message.Headroom]
	return bp
}

// growBuf moves the contents of *bp into a large pooled buffer (or grows
// it by appending once it is large already).
func growBuf(bp *[]byte) {
	if cap(*bp) < largeBuf {
		lp := largePool.Get().(*[]byte)
		small := *bp
		*bp = append((*lp)[:0], small...)
		*lp = small[:0] // lp's box now carries the small buffer back
		smallPool.Put(lp)
		return
	}
	*bp = append(*bp, 0)[:len(*bp)]
}

func putBuf(bp *[]byte) {
	switch c := cap(*bp); {
	case c > 4<<20:
		// do not pin huge buffers
	case c >= largeBuf:
		largePool.Put(bp)
	case c >= smallBuf:
		smallPool.Put(bp)
	}
}

// bodyBuf is a message body being received: a pooled buffer with
// message.Headroom spare bytes in front, and its share of the listener's
// memory budget (budget.go). A body that outgrows max_message_size, or for
// which the budget has no room, is read on and dropped, and remembered as
// such so that its reply says why.
type bodyBuf struct {
	bp     *[]byte
	res    bodyReservation
	tooBig bool
	noMem  bool
	// lines checks the lines of a BDAT body as fill reads them
	// (linecheck.go); it is off for DATA, whose scanner checks them
	lines lineCheck
}

// fill reads r to its end into the body. It returns the read error, nil at
// the end of r.
func (b *bodyBuf) fill(r io.Reader, budget *bodyBudget, max int64, firstWait time.Duration) error {
	if b.bp == nil && !b.tooBig && !b.noMem {
		b.res.b = budget
		if !b.res.ensure(firstReserve, firstWait) {
			b.noMem = true
		} else {
			b.bp = getBuf()
		}
	}
	if b.bp == nil {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	buf := *b.bp
	defer func() {
		if b.bp != nil {
			*b.bp = buf
		}
	}()
	for {
		if len(buf) == cap(buf) {
			next := int64(largeBuf)
			if cap(buf) >= largeBuf {
				next = 2 * int64(cap(buf))
			}
			if max > 0 && next > max+largeBuf {
				next = max + largeBuf
			}
			if !b.res.ensure(next, growWait) {
				b.noMem = true
				b.drop(buf)
				_, err := io.Copy(io.Discard, r)
				return err
			}
			*b.bp = buf
			growBuf(b.bp)
			buf = *b.bp
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		if b.lines.on {
			b.lines.feed(buf[len(buf) : len(buf)+n])
		}
		buf = buf[:len(buf)+n]
		if max > 0 && int64(len(buf)-message.Headroom) > max {
			b.tooBig = true
			b.drop(buf)
			_, err := io.Copy(io.Discard, r)
			return err
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// drop gives the buffer back early (the body will not be kept).
func (b *bodyBuf) drop(buf []byte) {
	*b.bp = buf
	putBuf(b.bp)
	b.bp = nil
}

// release gives back the buffer (unless it was handed on) and the budget.
func (b *bodyBuf) release() {
	if b.bp != nil {
		putBuf(b.bp)
		b.bp = nil
	}
	if b.res.b != nil {
		b.res.done()
	}
	b.tooBig, b.noMem = false, false
	b.lines = lineCheck{}
}

// errAnswered ends a Data whose reply has been sent already (a stalled body
// gets its 421 from the reader) or will never be (a reset by RSET or a
// closed connection): the seam drops go-smtp's reply to it.
var errAnswered = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.NoEnhancedCode, Message: "4.3.2 session ended"}

// Data receives the body of a DATA command and hands the message on
// (receive.go). For a BDAT transaction, which the session finished itself
// before it gave go-smtp an empty last chunk (body.go), it returns that
// outcome.
func (ss *session) Data(r io.Reader) error {
	if ss.cmd != "DATA" {
		// go-smtp runs this on a goroutine it started after the
		// connection's goroutine set bdatEnd, and that goroutine waits
		// for it: no race
		err := ss.bdatEnd
		ss.bdatEnd = nil
		return err
	}
	// go-smtp calls Data for DATA once its 354 is written, and only then:
	// the 354 is ours from here, and the body is read through the one
	// scanner (body.go), never through go-smtp's reader.
	ss.startData()
	body := ss.t.takeBody()
	defer body.release()
	if err := body.fill(dataBody{ss}, ss.s.budget, ss.cfg.MaxMessageSize, ss.cfg.ClientTimeout); err != nil {
		// The reader has answered the client (a stall), or the
		// connection closed: nothing of the session is touched here.
		return errAnswered
	}
	return ss.endBody(&body, ss.scan.tooLong, ss.scan.badEnding)
}

// endBDAT finishes a BDAT transaction whose last chunk has been read into
// the transaction's body (readChunk), as Data finishes a DATA one.
func (ss *session) endBDAT() error {
	body := ss.t.takeBody()
	defer body.release()
	// a BDAT body is held to the same rules as a DATA body, so that what
	// is spooled does not depend on how it was sent; readChunk checked
	// its lines as they arrived
	tooLong, badEnding := body.lines.finish()
	return ss.endBody(&body, tooLong, badEnding)
}

// endBody checks a body read to its end (its size, its memory, its lines)
// and hands the message on; it decides the reply and returns nil or the
// refusal.
func (ss *session) endBody(body *bodyBuf, tooLong, badEnding bool) error {
	cfg := ss.cfg
	switch {
	case body.noMem:
		ss.s.log.Warn().Str("peer", ss.peer.String()).Msg("the memory budget of bodies being received is spent; message refused with 451")
		return ss.refuse(rep(451, "4.3.1 "+ss.host()+" too many messages being received. Try later"))
	case body.tooBig:
		return ss.refuse(replyTooBig)
	}
	bp := body.bp
	buf := *bp
	if tooLong {
		return ss.refuse(replyLineTooLong)
	}
	if badEnding {
		switch cfg.InvalidLineEndings {
		case "Allow":
		case "Fix":
			fixed := message.CanonicalLineEndings(buf[message.Headroom:])
			*bp = append(buf[:message.Headroom], fixed...)
		default:
			return ss.refuse(rep(552, "5.6.0 message data must use CRLF for line endings"))
		}
	}
	plan, err := ss.planReports()
	if err != nil {
		putBuf(bp)
		body.bp = nil
		return ss.refusePolicy(err)
	}
	ss.t.reports = plan
	body.bp = nil // receive owns it from here
	ctx, cancel := ss.ctx()
	partial, err := ss.s.receive(ctx, &ss.t, &ss.client, bp)
	cancel()
	if err != nil {
		var e *smtp.SMTPError
		if errors.As(err, &e) {
			return ss.refuse(e)
		}
		return ss.refusePolicy(err)
	}
	prefix := "OK ids="
	if partial {
		prefix = "PARTIAL ids="
	}
	t := &ss.t
	t.dataReply = append(append(t.dataReply[:0], prefix...), t.idsBuf...)
	ss.decide(decision{code: 250, textB: t.dataReply})
	return nil
}
