// Package maildir delivers messages into maildirs (KumoMTA's
// make_queue_config protocol page, "maildir_path"): the path is a
// template expanded per recipient (meta, queue, campaign, tenant, domain,
// routing_domain, local_part, domain_part, email, sender_local_part,
// sender_domain_part, sender_email), its cur, new and tmp directories are
// created with dir_mode, and each copy is written to tmp with file_mode,
// synced, and renamed into new, so that a reader never sees a partial
// message.
package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/jinja"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue"
)

// Default modes when the queue config names none.
const (
	DefaultDirMode  = 0o755
	DefaultFileMode = 0o600
)

// Route is a maildir destination: the compiled path template and modes.
type Route struct {
	path     string
	tpl      *jinja.Template // nil when path has no template syntax
	dirMode  os.FileMode
	fileMode os.FileMode
}

// NewRoute compiles the maildir_path template of a queue config.
func NewRoute(p *config.QueueProtocol) (*Route, error) {
	r := &Route{path: p.MaildirPath, dirMode: DefaultDirMode, fileMode: DefaultFileMode}
	if p.DirMode != nil {
		r.dirMode = os.FileMode(*p.DirMode) & os.ModePerm
	}
	if p.FileMode != nil {
		r.fileMode = os.FileMode(*p.FileMode) & os.ModePerm
	}
	if jinja.HasSyntax(p.MaildirPath) {
		tpl, err := jinja.Compile(p.MaildirPath)
		if err != nil {
			return nil, fmt.Errorf("maildir_path %q: %w", p.MaildirPath, err)
		}
		r.tpl = tpl
	}
	return r, nil
}

// Site names the ready queue ("maildir:<path>", as KumoMTA names it).
func (r *Route) Site() string { return "maildir:" + r.path }

// Conn writes messages into maildirs; it is always usable.
type Conn struct {
	route    *Route
	hostname string
	seq      *atomic.Uint64
}

var seq atomic.Uint64 // unique file names within the process

// New returns a connection for route; hostname goes into file names.
func New(route *Route, hostname string) *Conn {
	return &Conn{route: route, hostname: strings.NewReplacer("/", "\\057", ":", "\\072").Replace(hostname), seq: &seq}
}

// dirFor expands the path template for one recipient.
func (r *Route) dirFor(msg *message.Message, rcpt message.Address) (string, error) {
	if r.tpl == nil {
		return r.path, nil
	}
	q := msg.QueueName()
	p := message.ParseQueueName(q)
	opt := func(ok bool, v string) any {
		if !ok {
			return nil
		}
		return v
	}
	sender := msg.Sender()
	vars := map[string]any{
		"meta":               msg.MetaMap(),
		"queue":              q,
		"campaign":           opt(p.HasCampaign, p.Campaign),
		"tenant":             opt(p.HasTenant, p.Tenant),
		"domain":             p.Domain,
		"routing_domain":     opt(p.HasRoutingDomain, p.RoutingDomain),
		"local_part":         rcpt.User,
		"domain_part":        rcpt.Domain,
		"email":              rcpt.String(),
		"sender_local_part":  sender.User,
		"sender_domain_part": sender.Domain,
		"sender_email":       sender.String(),
	}
	out, err := r.tpl.Render(vars)
	if err != nil {
		return "", fmt.Errorf("expanding maildir_path %q: %w", r.path, err)
	}
	return out, nil
}

// Send writes one copy per recipient: 200 "<rcpt>: wrote to maildir with
// id=<name>" for each written copy, 400 with the cause for the others
// (KumoMTA retries only those).
func (c *Conn) Send(ctx context.Context, msg *message.Message) ([]queue.RcptResponse, error) {
	rcpts := msg.Recipients()
	out := make([]queue.RcptResponse, len(rcpts))
	for i, rcpt := range rcpts {
		out[i].Recipient = rcpt
		id, err := c.deliver(msg, rcpt)
		if err != nil {
			out[i].Response = smtpreply.Response{Code: 400, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 3, Detail: 0},
				Content: fmt.Sprintf("%s: failed to write to maildir: %v", rcpt, err)}
			continue
		}
		out[i].Response = smtpreply.Response{Code: 200, Content: fmt.Sprintf("%s: wrote to maildir with id=%s", rcpt, id)}
	}
	return out, ctx.Err()
}

// deliver writes msg for rcpt and returns the file's unique name.
func (c *Conn) deliver(msg *message.Message, rcpt message.Address) (string, error) {
	dir, err := c.route.dirFor(msg, rcpt)
	if err != nil {
		return "", err
	}
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		if err := mkdir(filepath.Join(dir, sub), c.route.dirMode); err != nil {
			return "", err
		}
	}
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), c.seq.Add(1), c.hostname)
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, c.route.fileMode)
	if err != nil {
		return "", err
	}
	_, err = f.Write(msg.Data())
	if err == nil {
		// the umask may have narrowed the mode: file_mode is what was asked
		err = f.Chmod(c.route.fileMode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	if d, err := os.Open(filepath.Join(dir, "new")); err == nil {
		_ = d.Sync() // make the rename durable
		d.Close()
	}
	return name, nil
}

// mkdir creates dir (and its parents) when missing and gives a directory
// it created the mode asked for, whatever the umask.
func mkdir(dir string, mode os.FileMode) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// Usable is always true: a write failure concerns one recipient.
func (c *Conn) Usable() bool { return true }

// Info describes the delivery for records.
func (c *Conn) Info() queue.ConnInfo {
	return queue.ConnInfo{PeerName: "localhost", DeliveryProtocol: "Maildir"}
}

// Close does nothing: there is no connection to end.
func (c *Conn) Close() {}
