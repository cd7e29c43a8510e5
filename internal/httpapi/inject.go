package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// Injector is what POST /api/inject/v1 needs from the daemon. The queue
// methods follow the listener's order: Spool (queue resolution and the
// durable write), the Reception record, Insert; Unspool undoes a Spool
// whose Insert failed.
type Injector interface {
	// Generated runs http_message_generated(msg, auth_info); an error
	// fails that recipient.
	Generated(ctx context.Context, msg *message.Message, auth map[string]any) error
	Queuer
	// IDs makes message ids.
	IDs() *message.IDGenerator
}

// injectRequest is KumoMTA's InjectV1Request.
type injectRequest struct {
	EnvelopeSender     *string          `json:"envelope_sender"`
	Recipients         []injectRcpt     `json:"recipients"`
	Content            json.RawMessage  `json:"content"`
	Substitutions      map[string]any   `json:"substitutions"`
	TemplateDialect    string           `json:"template_dialect"`
	DeferredSpool      bool             `json:"deferred_spool"`
	DeferredGeneration bool             `json:"deferred_generation"`
	TraceHeaders       *injectTrace     `json:"trace_headers"`
	content            *injectStructure // when Content is an object
	raw                string           // when Content is a string
}

type injectRcpt struct {
	Email         string         `json:"email"`
	Name          string         `json:"name"`
	Substitutions map[string]any `json:"substitutions"`
	Metadata      map[string]any `json:"metadata"`
}

type injectStructure struct {
	Subject     string            `json:"subject"`
	TextBody    string            `json:"text_body"`
	HTMLBody    string            `json:"html_body"`
	AMPHTMLBody string            `json:"amp_html_body"`
	From        *mailbox          `json:"from"`
	ReplyTo     *mailbox          `json:"reply_to"`
	Headers     map[string]string `json:"headers"`
	Attachments []attachment      `json:"attachments"`
}

type attachment struct {
	Data        string `json:"data"`
	ContentType string `json:"content_type"`
	FileName    string `json:"file_name"`
	ContentID   string `json:"content_id"`
	Base64      bool   `json:"base64"`
}

// injectTrace are the trace_headers of a request; for HTTP the Received
// header is off by default.
type injectTrace struct {
	ReceivedHeader     *bool    `json:"received_header"`
	SupplementalHeader *bool    `json:"supplemental_header"`
	HeaderName         string   `json:"header_name"`
	IncludeMetaNames   []string `json:"include_meta_names"`
}

// InjectResponse is KumoMTA's response body.
type InjectResponse struct {
	SuccessCount     int      `json:"success_count"`
	FailCount        int      `json:"fail_count"`
	FailedRecipients []string `json:"failed_recipients"`
	Errors           []string `json:"errors"`
}

// decodeInject parses and checks a request: 400 for JSON that does not
// parse, 422 for a well-formed request that does not fit the schema.
func decodeInject(body []byte) (*injectRequest, int, error) {
	var req injectRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, http.StatusBadRequest, fmt.Errorf("failed to parse the request body as JSON: %v", err)
		}
		return nil, http.StatusUnprocessableEntity, fmt.Errorf("failed to deserialize the JSON body into the target type: %v", err)
	}
	switch {
	case req.EnvelopeSender == nil:
		return nil, http.StatusUnprocessableEntity, errors.New("failed to deserialize the JSON body into the target type: missing field `envelope_sender`")
	case req.Recipients == nil:
		return nil, http.StatusUnprocessableEntity, errors.New("failed to deserialize the JSON body into the target type: missing field `recipients`")
	case len(req.Content) == 0 || string(req.Content) == "null":
		return nil, http.StatusUnprocessableEntity, errors.New("failed to deserialize the JSON body into the target type: missing field `content`")
	}
	if req.Content[0] == '"' {
		if err := json.Unmarshal(req.Content, &req.raw); err != nil {
			return nil, http.StatusUnprocessableEntity, fmt.Errorf("content: %v", err)
		}
	} else {
		d := json.NewDecoder(bytes.NewReader(req.Content))
		d.DisallowUnknownFields()
		req.content = new(injectStructure)
		if err := d.Decode(req.content); err != nil {
			return nil, http.StatusUnprocessableEntity, fmt.Errorf("failed to deserialize the JSON body into the target type: content: %v", err)
		}
	}
	for i, r := range req.Recipients {
		if r.Email == "" {
			return nil, http.StatusUnprocessableEntity, fmt.Errorf("failed to deserialize the JSON body into the target type: recipients[%d]: missing field `email`", i)
		}
	}
	return &req, 0, nil
}

// templates are the compiled fields of a request.
type templates struct {
	raw, subject, text, html, amp *template
	headers                       map[string]*template
}

func compileAll(req *injectRequest) (*templates, error) {
	t := &templates{}
	var err error
	c := func(field, src string) *template {
		if err != nil || src == "" {
			return nil
		}
		var tp *template
		tp, err = compileTemplate(req.TemplateDialect, field, src)
		return tp
	}
	if req.content == nil {
		t.raw = c("content", req.raw)
		return t, err
	}
	s := req.content
	t.subject = c("content.subject", s.Subject)
	t.text = c("content.text_body", s.TextBody)
	t.html = c("content.html_body", s.HTMLBody)
	t.amp = c("content.amp_html_body", s.AMPHTMLBody)
	t.headers = map[string]*template{}
	for k, v := range s.Headers {
		t.headers[k] = c("content.headers."+k, v)
	}
	return t, err
}

// inject serves POST /api/inject/v1.
func (s *Server) inject(w http.ResponseWriter, r *http.Request) {
	inj := s.deps.Inject
	if inj == nil {
		textError(w, http.StatusServiceUnavailable, "waiting for spool startup")
		return
	}
	if s.deps.Health != nil {
		if ok, reason := s.deps.Health(); !ok {
			textError(w, http.StatusServiceUnavailable, reason)
			return
		}
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	id := identityOf(r)
	resp, code, err := Inject(r.Context(), inj, body, Origin{Hostname: s.cfg.Hostname, Identity: id, Local: localAddr(r)})
	if err != nil {
		textError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Origin describes where an injection comes from: the listener's host
// name, the caller and the local address it reached.
type Origin struct {
	Hostname string
	Identity Identity
	Local    string
}

// Inject runs one KumoMTA injection request (the JSON body of
// POST /api/inject/v1) through inj. On a request error it returns the HTTP
// status that describes it (400, 422). It serves the HTTP endpoint and
// kumo.api.inject.inject_v1 alike.
func Inject(ctx context.Context, inj Injector, body []byte, o Origin) (InjectResponse, int, error) {
	req, code, err := decodeInject(body)
	if err != nil {
		return InjectResponse{}, code, err
	}
	sender, err := message.ParseAddress(*req.EnvelopeSender)
	if err != nil && *req.EnvelopeSender != "" {
		return InjectResponse{}, http.StatusUnprocessableEntity, fmt.Errorf("envelope_sender %q: %v", *req.EnvelopeSender, err)
	}
	rcpts := make([]message.Address, len(req.Recipients))
	for i, rc := range req.Recipients {
		if rcpts[i], err = message.ParseAddress(rc.Email); err != nil {
			return InjectResponse{}, http.StatusUnprocessableEntity, fmt.Errorf("recipients[%d].email %q: %v", i, rc.Email, err)
		}
	}
	tpls, err := compileAll(req)
	if err != nil {
		return InjectResponse{}, http.StatusUnprocessableEntity, err
	}
	g := &generation{hostname: o.Hostname, inj: inj, req: req, tpls: tpls, sender: sender, rcpts: rcpts, id: o.Identity, local: o.Local}
	if req.DeferredGeneration {
		// KumoMTA answers at once and generates the messages later;
		// kumogo generates them in the background, after the answer
		// (they are not spooled before that).
		go g.run(context.WithoutCancel(ctx))
		return InjectResponse{FailedRecipients: []string{}, Errors: []string{}}, http.StatusOK, nil
	}
	return g.run(ctx), http.StatusOK, nil
}

func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return ""
}

// generation turns one request into messages and queues them.
type generation struct {
	hostname string
	inj      Injector
	req      *injectRequest
	tpls     *templates
	sender   message.Address
	rcpts    []message.Address
	id       Identity
	local    string
}

// run builds every recipient's message first, so that a rendering failure
// queues nothing for that recipient, then hands each to the policy and
// the queue.
func (g *generation) run(ctx context.Context) InjectResponse {
	resp := InjectResponse{FailedRecipients: []string{}, Errors: []string{}}
	fail := func(email string, err error) {
		resp.FailCount++
		resp.FailedRecipients = append(resp.FailedRecipients, email)
		resp.Errors = append(resp.Errors, email+": "+err.Error())
	}
	auth := g.authInfo()
	for i := range g.req.Recipients {
		msg, err := g.build(i)
		if err != nil {
			fail(g.req.Recipients[i].Email, err)
			continue
		}
		if err := g.inj.Generated(ctx, msg, auth); err != nil {
			fail(g.req.Recipients[i].Email, err)
			continue
		}
		if err := g.queue(ctx, msg); err != nil {
			fail(g.req.Recipients[i].Email, err)
			continue
		}
		resp.SuccessCount++
	}
	return resp
}

func (g *generation) authInfo() map[string]any {
	groups := []any{}
	if g.id.Trusted {
		groups = append(groups, "kumomta:http-listener-trusted-ip")
	}
	idents := []any{}
	if g.id.User != "" {
		idents = append(idents, map[string]any{"HttpBasicAuth": g.id.User})
	}
	if g.id.PeerIP.IsValid() {
		idents = append(idents, map[string]any{"PeerIp": g.id.PeerIP.String()})
	}
	return map[string]any{"peer_address": g.id.PeerIP.String(), "groups": groups, "identities": idents}
}

// build renders recipient i's message.
func (g *generation) build(i int) (*message.Message, error) {
	rc := g.req.Recipients[i]
	to := mailbox{Email: rc.Email, Name: rc.Name}
	vars := make(map[string]any, len(g.req.Substitutions)+len(rc.Substitutions)+3)
	for k, v := range g.req.Substitutions {
		vars[k] = v
	}
	for k, v := range rc.Substitutions {
		vars[k] = v
	}
	vars["email"] = rc.Email
	vars["name"] = rc.Name
	vars["to_header"] = to.format()
	var data []byte
	var text string // raw content, appended as it is
	if g.req.content == nil {
		out, err := g.tpls.raw.render(vars)
		if err != nil {
			return nil, err
		}
		text = crlf(out)
	} else {
		c := &builtContent{from: g.req.content.From, replyTo: g.req.content.ReplyTo, attachments: g.req.content.Attachments, headers: map[string]string{}}
		var err error
		r := func(t *template) string {
			if err != nil {
				return ""
			}
			var out string
			out, err = t.render(vars)
			return out
		}
		c.subject, c.text, c.html, c.amp = r(g.tpls.subject), r(g.tpls.text), r(g.tpls.html), r(g.tpls.amp)
		for k, t := range g.tpls.headers {
			c.headers[k] = r(t)
		}
		if err != nil {
			return nil, err
		}
		if data, err = compose(c, to, g.hostname, time.Now()); err != nil {
			return nil, err
		}
	}
	buf := make([]byte, message.Headroom, message.Headroom+len(text)+len(data))
	buf = append(buf, text...)
	buf = append(buf, data...)
	msg := message.NewWithHeadroom(g.inj.IDs(), g.sender, []message.Address{g.rcpts[i]}, buf, message.Headroom)
	msg.SetMeta("reception_protocol", "HTTP")
	msg.SetMeta("received_from", g.id.PeerIP.String())
	msg.SetMeta("received_via", g.local)
	msg.SetMeta("hostname", g.hostname)
	for k, v := range rc.Metadata {
		msg.SetMeta(k, v)
	}
	g.traceHeaders(msg)
	return msg, nil
}

// traceHeaders adds the Received header (off by default for HTTP) and the
// supplemental X-KumoRef header (on by default).
func (g *generation) traceHeaders(msg *message.Message) {
	recv, supp, name := false, true, "X-KumoRef"
	var include []string
	if t := g.req.TraceHeaders; t != nil {
		if t.ReceivedHeader != nil {
			recv = *t.ReceivedHeader
		}
		if t.SupplementalHeader != nil {
			supp = *t.SupplementalHeader
		}
		if t.HeaderName != "" {
			name = t.HeaderName
		}
		include = t.IncludeMetaNames
	}
	if recv {
		localIP := g.local
		if h, _, err := net.SplitHostPort(localIP); err == nil {
			localIP = h
		}
		msg.PrependRaw(msg.AppendReceived(nil, g.id.PeerIP.String(), g.id.PeerIP.String(), g.hostname, localIP, "HTTP", "", time.Now().UTC()))
	}
	if supp {
		rc := msg.Recipients()
		list := make([]string, len(rc))
		for i, r := range rc {
			list[i] = r.String()
		}
		var extra map[string]any
		for _, n := range include {
			if v, ok := msg.Meta(n); ok {
				if extra == nil {
					extra = map[string]any{}
				}
				extra[n] = v
			}
		}
		msg.PrependHeader(name, message.SupplementalValue(list, extra))
	}
}

// queue spools, logs and inserts one message (QueueMessage).
func (g *generation) queue(ctx context.Context, msg *message.Message) error {
	return QueueMessage(ctx, g.inj, msg, Reception{Protocol: "HTTP", Peer: &logrecord.PeerAddress{Addr: g.id.PeerIP.String()},
		Deferred: g.req.DeferredSpool, BounceOnFailure: true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // queue names hold "->", shown as KumoMTA shows them
	enc.Encode(v)
}
