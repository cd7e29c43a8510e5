package logrecord

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// ErrClosed is returned when logging to a closed Logger.
var ErrClosed = errors.New("logrecord: logger is closed")

// flushInterval bounds how long written records stay in the zstd encoder
// before the frame is closed and they become readable in the file.
const flushInterval = 500 * time.Millisecond

// maxPooledBuffer is the largest encoding buffer kept for reuse.
const maxPooledBuffer = 64 << 10

// item is one entry of the writer's queue: an encoded line for a segment
// writer, a flush request acknowledged on done, or the close request.
type item struct {
	buf   *[]byte
	sink  int
	done  chan error
	close bool
	// files, on a flush request from Sync, receives the open segment
	// files, to be fsynced once the flush is acknowledged.
	files *[]*os.File
}

// Logger writes log records to zstd segment files as configured by
// kumo.configure_local_logs. Log, Flush and Close are safe for concurrent
// use.
type Logger struct {
	log     zerolog.Logger
	nodeID  string
	metaSel *selector
	hdrSel  *selector
	// route maps a record type to its segment writer index, -1 = disabled.
	route [numTypes]int
	sinks []*segmentWriter
	tick  time.Duration

	queue   chan item
	stopped chan struct{} // closed when the writer goroutine has exited
	bufs    sync.Pool

	closeMu   sync.Mutex
	closeSent bool
	closeErr  error // set by the writer before stopped is closed

	syncs syncer // group commit of Sync
}

// New validates cfg, seals leftover segments in every log directory it
// names and starts the writer goroutine. nodeID fills the nodeid field of
// records that carry none.
//
// per_record entries are used as given (an entry with Enable false turns
// its type off, so decoders must default Enable to true); an entry for a
// type replaces the "Any" entry rather than merging with it. Template is
// accepted but not implemented: such records are written as JSON and a
// warning is logged. FilterEvent, MinFreeSpace and MinFreeInodes are not
// handled here.
func New(cfg config.LocalLogs, nodeID string, log zerolog.Logger) (*Logger, error) {
	if cfg.LogDir == "" {
		return nil, errors.New("logrecord: log_dir is required")
	}
	for name := range cfg.PerRecord {
		if name == AnyName {
			continue
		}
		if _, err := ParseType(name); err != nil {
			return nil, fmt.Errorf("logrecord: per_record: %w", err)
		}
	}
	backPressure := cfg.BackPressure
	if backPressure <= 0 {
		backPressure = config.DefaultLocalLogs().BackPressure
	}
	maxSize := cfg.MaxFileSize
	if maxSize <= 0 {
		maxSize = config.DefaultLocalLogs().MaxFileSize
	}
	l := &Logger{
		log:     log,
		nodeID:  nodeID,
		metaSel: newSelector(cfg.Meta, false),
		hdrSel:  newSelector(cfg.Headers, true),
		queue:   make(chan item, backPressure),
		stopped: make(chan struct{}),
	}
	l.bufs.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	type sinkKey struct{ dir, suffix string }
	sinkIndex := map[sinkKey]int{}
	var templated []string
	for t := Type(0); t < numTypes; t++ {
		pr, ok := cfg.PerRecord[t.String()]
		if !ok {
			pr, ok = cfg.PerRecord[AnyName]
		}
		if !ok {
			pr = config.PerRecord{Enable: true}
		}
		if !pr.Enable {
			l.route[t] = -1
			continue
		}
		if pr.Template != "" {
			templated = append(templated, t.String())
		}
		dir := pr.LogDir
		if dir == "" {
			dir = cfg.LogDir
		}
		key := sinkKey{dir, pr.Suffix}
		idx, ok := sinkIndex[key]
		if !ok {
			idx = len(l.sinks)
			sinkIndex[key] = idx
			l.sinks = append(l.sinks, &segmentWriter{
				dir: dir, suffix: pr.Suffix, header: pr.SegmentHeader,
				maxSize: maxSize, maxAge: cfg.MaxSegmentDuration,
				level: encoderLevel(cfg.CompressionLevel),
			})
		}
		l.route[t] = idx
	}
	dirs := map[string]bool{}
	for _, s := range l.sinks {
		if dirs[s.dir] {
			continue
		}
		dirs[s.dir] = true
		if err := sealLeftovers(s.dir); err != nil {
			return nil, err
		}
	}
	if len(templated) > 0 {
		sort.Strings(templated)
		log.Warn().Strs("types", templated).Msg("configure_local_logs: per_record template is not implemented; writing JSON records")
	}
	l.syncs.init(l)
	l.tick = flushInterval
	if d := cfg.MaxSegmentDuration; d > 0 && d/4 < l.tick {
		l.tick = max(d/4, 5*time.Millisecond)
	}
	go l.run()
	return l, nil
}

// Log records rec, blocking while back_pressure records are already
// queued. When msg is non-nil the configured meta and header names are
// selected from it and fields rec leaves at their zero value are taken
// from it: id and sender (when ID is ""), recipient (when Recipient is
// nil), queue, size, created, reception_protocol (from meta), and for
// Reception records the tls_* fields (from meta). Everything is read
// before Log returns, so the caller may reuse rec and msg afterwards.
// Records logged after Close are dropped.
func (l *Logger) Log(rec *Record, msg *message.Message) {
	_ = l.LogContext(context.Background(), rec, msg)
}

// LogContext is Log that gives up when ctx is done while waiting for room
// in the queue. It returns ctx's error, or ErrClosed after Close.
func (l *Logger) LogContext(ctx context.Context, rec *Record, msg *message.Message) error {
	if rec.Type >= numTypes {
		return fmt.Errorf("logrecord: invalid record type %d", rec.Type)
	}
	sink := l.route[rec.Type]
	if sink < 0 {
		return nil
	}
	bp := l.buf()
	if bp == nil {
		return ErrClosed
	}
	e := recordEncoder{msg: msg, metaSel: l.metaSel, hdrSel: l.hdrSel, nodeID: l.nodeID}
	b := e.append((*bp)[:0], rec)
	*bp = append(b, '\n')
	return l.send(ctx, bp, sink)
}

// LogLine queues one pre-encoded JSON object (without its newline) for
// the segments of log_dir, for logs of other record kinds that share this
// writer (the accounting log of kumo.aaa.configure_acct_log). It blocks
// like LogContext.
func (l *Logger) LogLine(ctx context.Context, line []byte) error {
	if len(l.sinks) == 0 {
		return nil
	}
	bp := l.buf()
	if bp == nil {
		return ErrClosed
	}
	b := append((*bp)[:0], line...)
	*bp = append(b, '\n')
	return l.send(ctx, bp, 0)
}

// buf returns an encoding buffer from the pool, or nil once the writer
// has stopped.
func (l *Logger) buf() *[]byte {
	select {
	case <-l.stopped:
		return nil
	default:
	}
	return l.bufs.Get().(*[]byte)
}

// send queues the encoded line in bp for segment writer sink, waiting
// for room while ctx allows.
func (l *Logger) send(ctx context.Context, bp *[]byte, sink int) error {
	select {
	case l.queue <- item{buf: bp, sink: sink}:
		return nil
	case <-l.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// control sends a flush request and waits for its answer.
func (l *Logger) control(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case l.queue <- item{done: done}:
	case <-l.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-l.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every record logged before the call is written and
// readable in its segment file (the zstd frame is ended, the segment stays
// open).
func (l *Logger) Flush(ctx context.Context) error {
	return l.control(ctx)
}

// Close writes every queued record, seals all open segments and stops the
// writer. It returns the first error met while sealing, or ctx's error if
// ctx ends first (the close request, once queued, still completes). Later
// calls wait for the same outcome.
func (l *Logger) Close(ctx context.Context) error {
	l.closeMu.Lock()
	if !l.closeSent {
		select {
		case l.queue <- item{close: true}:
			l.closeSent = true
		case <-l.stopped:
		case <-ctx.Done():
			l.closeMu.Unlock()
			return ctx.Err()
		}
	}
	l.closeMu.Unlock()
	select {
	case <-l.stopped:
		return l.closeErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the writer goroutine.
func (l *Logger) run() {
	defer close(l.stopped)
	ticker := time.NewTicker(l.tick)
	defer ticker.Stop()
	var lastErr time.Time
	report := func(err error) {
		if err == nil {
			return
		}
		// at most one error line per second: a full disk must not flood
		if now := time.Now(); now.Sub(lastErr) >= time.Second {
			lastErr = now
			l.log.Error().Err(err).Msg("local log writer")
		}
	}
	for {
		select {
		case it := <-l.queue:
			if it.buf != nil {
				report(l.sinks[it.sink].write(*it.buf, time.Now()))
				l.putBuf(it.buf)
				continue
			}
			if !it.close {
				var first error
				for _, s := range l.sinks {
					if err := s.flush(time.Now()); err != nil && first == nil {
						first = err
					}
				}
				report(first)
				if it.files != nil {
					for _, s := range l.sinks {
						if s.f != nil {
							*it.files = append(*it.files, s.f)
						}
					}
				}
				it.done <- first
				continue
			}
			l.closeErr = l.shutdown(report)
			return
		case <-ticker.C:
			now := time.Now()
			for _, s := range l.sinks {
				report(s.tick(now))
			}
		}
	}
}

// shutdown writes what is still queued and seals every segment.
func (l *Logger) shutdown(report func(error)) error {
	for {
		select {
		case it := <-l.queue:
			if it.buf != nil {
				report(l.sinks[it.sink].write(*it.buf, time.Now()))
				l.putBuf(it.buf)
			} else if it.done != nil {
				// a flush or close racing with this close
				it.done <- nil
			}
			continue
		default:
		}
		break
	}
	var first error
	for _, s := range l.sinks {
		if err := s.seal(); err != nil && first == nil {
			first = err
		}
	}
	report(first)
	return first
}

func (l *Logger) putBuf(bp *[]byte) {
	if cap(*bp) > maxPooledBuffer {
		return
	}
	*bp = (*bp)[:0]
	l.bufs.Put(bp)
}
