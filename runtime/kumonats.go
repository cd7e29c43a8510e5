package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
)

// natsClient is a kumo.nats.connect object (KumoMTA's kumo.nats pages):
// publish sends to a subject; with await_ack it waits for the JetStream
// acknowledgement.
type natsClient struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (c *natsClient) Close() error {
	c.nc.Close()
	return nil
}

// natsFields are the keys of kumo.nats.connect's table.
var natsFields = []string{
	"servers", "auth", "name", "no_echo", "max_reconnects", "connection_timeout", "tls_required",
	"tls_first", "certificate", "client_cert", "client_key", "ping_interval", "sender_capacity",
	"inbox_prefix", "request_timeout", "retry_on_initial_connect", "ignore_discovered_servers",
	"retain_servers_order",
}

// natsOptions decodes kumo.nats.connect's table into the servers and the
// options of the NATS Go client.
func natsOptions(v any) ([]string, []nats.Option, error) {
	o := config.NewObject(v, v, "struct NatsConfig", natsFields...)
	var (
		servers                                        []string
		name, cert, clientCert, clientKey, inbox       string
		noEcho, tlsRequired, tlsFirst, retry, noRandom bool
		ignoreDiscovered                               bool
		maxReconnects, senderCapacity                  int
		connTimeout, pingInterval, requestTimeout      time.Duration
	)
	o.StrList("servers", &servers)
	o.Str("name", &name)
	o.Bool("no_echo", &noEcho)
	o.Int("max_reconnects", &maxReconnects)
	o.Duration("connection_timeout", &connTimeout)
	o.Bool("tls_required", &tlsRequired)
	o.Bool("tls_first", &tlsFirst)
	o.Str("certificate", &cert)
	o.Str("client_cert", &clientCert)
	o.Str("client_key", &clientKey)
	o.Duration("ping_interval", &pingInterval)
	o.Int("sender_capacity", &senderCapacity)
	o.Str("inbox_prefix", &inbox)
	o.Duration("request_timeout", &requestTimeout)
	o.Bool("retry_on_initial_connect", &retry)
	o.Bool("ignore_discovered_servers", &ignoreDiscovered)
	o.Bool("retain_servers_order", &noRandom)
	var auth map[string]any
	o.Map("auth", &auth)
	if o.Err() == nil && len(servers) == 0 {
		o.Fail("missing field `servers`")
	}
	opts := []nats.Option{nats.Timeout(5 * time.Second)}
	if o.Err() == nil && auth != nil {
		a := config.NewObject(auth, v, "struct NatsAuth", "username", "password", "token")
		var user, pass, token config.KeySource
		a.KeySource("username", &user)
		a.KeySource("password", &pass)
		a.KeySource("token", &token)
		o.Merge(a)
		if o.Err() == nil {
			switch {
			case !token.IsZero():
				t, err := token.Read()
				if err != nil {
					return nil, nil, fmt.Errorf("auth.token: %w", err)
				}
				opts = append(opts, nats.Token(string(t)))
			case !user.IsZero() && !pass.IsZero():
				u, err := user.Read()
				if err != nil {
					return nil, nil, fmt.Errorf("auth.username: %w", err)
				}
				p, err := pass.Read()
				if err != nil {
					return nil, nil, fmt.Errorf("auth.password: %w", err)
				}
				opts = append(opts, nats.UserInfo(string(u), string(p)))
			default:
				o.Fail("auth needs both username and password, or a token")
			}
		}
	}
	if o.Err() != nil {
		return nil, nil, o.Err()
	}
	if name != "" {
		opts = append(opts, nats.Name(name))
	}
	if noEcho {
		opts = append(opts, nats.NoEcho())
	}
	if maxReconnects > 0 {
		opts = append(opts, nats.MaxReconnects(maxReconnects))
	} else {
		opts = append(opts, nats.MaxReconnects(-1)) // KumoMTA: 0 is no limit
	}
	if connTimeout > 0 {
		opts = append(opts, nats.Timeout(connTimeout))
	}
	if tlsRequired {
		opts = append(opts, nats.Secure())
	}
	if tlsFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	if cert != "" {
		opts = append(opts, nats.RootCAs(cert))
	}
	if clientCert != "" || clientKey != "" {
		if clientCert == "" || clientKey == "" {
			return nil, nil, fmt.Errorf("client_cert and client_key must be given together")
		}
		opts = append(opts, nats.ClientCert(clientCert, clientKey))
	}
	if pingInterval > 0 {
		opts = append(opts, nats.PingInterval(pingInterval))
	}
	if senderCapacity > 0 {
		opts = append(opts, nats.ReconnectBufSize(senderCapacity*1024))
	}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	if retry {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if ignoreDiscovered {
		opts = append(opts, nats.IgnoreDiscoveredServers())
	}
	if noRandom {
		opts = append(opts, nats.DontRandomize())
	}
	for i, s := range servers {
		if !hasScheme(s) {
			servers[i] = "nats://" + s
		}
	}
	_ = requestTimeout // JetStream acknowledgements use the call's context
	return servers, opts, nil
}

func hasScheme(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == ':' {
			return s[i+1] == '/' && s[i+2] == '/'
		}
	}
	return false
}

// openNATS builds kumo.nats.
func (st *state) openNATS() *lua.LTable {
	L := st.L
	mt := L.NewTypeMetatable("kumo.nats.Client")
	check := func(L *lua.LState) *natsClient {
		return checkSelf[*natsClient](L, "NATS client expected (use client:method())")
	}
	methods := L.NewTable()
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"publish": func(L *lua.LState) int {
			c := check(L)
			v, err := st.toGo(L.CheckTable(2))
			if err != nil {
				L.RaiseError("kumo.nats: publish: %s", err.Error())
			}
			o := config.NewObject(v, v, "struct NatsPublish", "subject", "payload", "headers", "await_ack")
			var subject, payload string
			var await bool
			var headers map[string]any
			o.Str("subject", &subject)
			o.Str("payload", &payload)
			o.Map("headers", &headers)
			o.Bool("await_ack", &await)
			if o.Err() == nil && subject == "" {
				o.Fail("missing field `subject`")
			}
			if o.Err() != nil {
				L.RaiseError("kumo.nats: publish: %s", o.Err().Error())
			}
			msg := nats.NewMsg(subject)
			msg.Data = []byte(payload)
			for k, hv := range headers {
				msg.Header.Set(k, fmt.Sprint(hv))
			}
			ctx := st.callCtx()
			if await {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if _, err := c.js.PublishMsg(cctx, msg); err != nil {
					L.RaiseError("kumo.nats: publish to %s: %s", subject, err.Error())
				}
				return 0
			}
			// without await_ack the server has the message, not
			// necessarily the stream, when publish returns
			err = c.nc.PublishMsg(msg)
			if err == nil {
				fctx, cancel := flushCtx(ctx)
				err = c.nc.FlushWithContext(fctx)
				cancel()
			}
			if err != nil {
				L.RaiseError("kumo.nats: publish to %s: %s", subject, err.Error())
			}
			return 0
		},
		"close": func(L *lua.LState) int {
			c := check(L)
			st.rt.disown(c)
			if err := c.nc.Drain(); err != nil {
				c.nc.Close()
			}
			return 0
		},
	})
	mt.RawSetString("__index", methods)

	t := L.NewTable()
	t.RawSetString("connect", L.NewFunction(func(L *lua.LState) int {
		v, err := st.toGo(L.CheckTable(1))
		if err != nil {
			L.RaiseError("kumo.nats.connect: %s", err.Error())
		}
		servers, opts, err := natsOptions(v)
		if err != nil {
			L.RaiseError("kumo.nats.connect: %s", err.Error())
		}
		nc, err := nats.Connect(joinServers(servers), opts...)
		if err != nil {
			L.RaiseError("kumo.nats.connect: %s", err.Error())
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			L.RaiseError("kumo.nats.connect: %s", err.Error())
		}
		c := &natsClient{nc: nc, js: js}
		st.rt.own(c) // closed with the runtime at the latest
		L.Push(&lua.LUserData{Value: c, Metatable: mt})
		return 1
	}))
	return t
}

// flushCtx bounds a flush when the call has no deadline.
func flushCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 10*time.Second)
}

func joinServers(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
