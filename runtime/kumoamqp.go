package runtime

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/amqpclient"
	"github.com/kumogo/kumogo/internal/config"
)

// amqpClient is a kumo.amqp.build_client object (KumoMTA's build_client
// page, deprecated there in favour of basic_publish): one connection and
// one channel without publisher confirms, so a confirmation's status is
// "NotRequested" as the page's example asserts.
type amqpClient struct {
	conn   *amqp.Connection
	ch     *amqp.Channel
	closed bool
}

func (c *amqpClient) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.conn.Close()
}

// amqpConfirm is what client:publish returns; wait reports the outcome.
type amqpConfirm struct {
	err error
}

// amqpPublishFields are basic_publish's keys besides `connection`.
var amqpPublishFields = []string{
	"routing_key", "payload", "exchange", "connection", "app_id", "cluster_id", "content_encoding",
	"content_type", "correlation_id", "delivery_mode", "expiration", "headers", "message_id",
	"message_type", "priority", "reply_to", "timestamp", "user_id", "mandatory", "immediate",
}

// decodeAMQPPublish decodes basic_publish's table.
func decodeAMQPPublish(v any) (amqpclient.Conn, amqpclient.Message, error) {
	var (
		c        amqpclient.Conn
		m        amqpclient.Message
		conn     map[string]any
		headers  map[string]any
		mode, pr int
		payload  string
	)
	o := config.NewObject(v, v, "struct PublishParams", amqpPublishFields...)
	o.Str("routing_key", &m.RoutingKey)
	o.Str("payload", &payload)
	o.Str("exchange", &m.Exchange)
	o.Map("connection", &conn)
	o.Str("app_id", &m.AppId)
	// cluster-id was removed from AMQP 0-9-1's basic properties and
	// amqp091-go has no field for it: accepted, not sent
	var clusterID string
	o.Str("cluster_id", &clusterID)
	o.Str("content_encoding", &m.ContentEncoding)
	o.Str("content_type", &m.ContentType)
	o.Str("correlation_id", &m.CorrelationId)
	o.UintN("delivery_mode", &mode, 255, "u8")
	o.Str("expiration", &m.Expiration)
	o.Map("headers", &headers)
	o.Str("message_id", &m.MessageId)
	o.Str("message_type", &m.Type)
	o.UintN("priority", &pr, 255, "u8")
	o.Str("reply_to", &m.ReplyTo)
	o.Str("user_id", &m.UserId)
	o.Bool("mandatory", &m.Mandatory)
	o.Bool("immediate", &m.Immediate)
	if ts, ok := o.Get("timestamp"); ok {
		switch x := ts.(type) {
		case int64:
			m.Timestamp = time.Unix(x, 0)
		case float64:
			m.Timestamp = time.UnixMilli(int64(x * 1000))
		case string:
			t, err := time.Parse(time.RFC3339, x)
			if err != nil {
				o.Fail("timestamp: " + err.Error())
			}
			m.Timestamp = t
		default:
			o.Fail("timestamp: expected seconds since the epoch or an RFC 3339 string")
		}
	}
	if o.Err() == nil && m.RoutingKey == "" {
		if _, ok := o.Get("routing_key"); !ok {
			o.Fail("missing field `routing_key`")
		}
	}
	if o.Err() == nil {
		if _, ok := o.Get("payload"); !ok {
			o.Fail("missing field `payload`")
		}
	}
	if o.Err() == nil && conn == nil {
		o.Fail("missing field `connection`")
	}
	if o.Err() == nil {
		co := config.NewObject(conn, v, "struct ConnectionParams", "host", "port", "username", "password",
			"vhost", "connection_name", "heartbeat", "enable_tls", "root_ca_cert", "client_cert",
			"client_private_key", "pool_size", "connect_timeout", "recycle_timeout", "wait_timeout", "publish_timeout")
		co.Str("host", &c.Host)
		co.UintN("port", &c.Port, 65535, "u16")
		co.Str("username", &c.Username)
		co.Str("password", &c.Password)
		co.Str("vhost", &c.VHost)
		co.Str("connection_name", &c.ConnectionName)
		co.UintN("heartbeat", &c.Heartbeat, 65535, "u16")
		co.Bool("enable_tls", &c.EnableTLS)
		co.Str("root_ca_cert", &c.RootCACert)
		co.Str("client_cert", &c.ClientCert)
		co.Str("client_private_key", &c.ClientPrivateKey)
		co.Int("pool_size", &c.PoolSize)
		co.Duration("connect_timeout", &c.ConnectTimeout)
		co.Duration("recycle_timeout", &c.RecycleTimeout)
		co.Duration("wait_timeout", &c.WaitTimeout)
		co.Duration("publish_timeout", &c.PublishTimeout)
		if co.Err() == nil && c.Host == "" {
			co.Fail("missing field `host`")
		}
		o.Merge(co)
	}
	if o.Err() != nil {
		return c, m, o.Err()
	}
	m.Body = []byte(payload)
	m.DeliveryMode = uint8(mode)
	m.Priority = uint8(pr)
	if headers != nil {
		t, err := amqpTable(headers)
		if err != nil {
			return c, m, fmt.Errorf("headers: %w", err)
		}
		m.Headers = t
	}
	return c, m, nil
}

// amqpTable converts a decoded Lua table into an AMQP field table.
func amqpTable(m map[string]any) (amqp.Table, error) {
	t := make(amqp.Table, len(m))
	for k, v := range m {
		fv, err := amqpField(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		t[k] = fv
	}
	return t, t.Validate()
}

func amqpField(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		return amqpTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			f, err := amqpField(e)
			if err != nil {
				return nil, err
			}
			out[i] = f
		}
		return out, nil
	case string, bool, int64, float64, nil:
		return x, nil
	}
	return nil, fmt.Errorf("a %T cannot be an AMQP field value", v)
}

// openAMQP builds kumo.amqp.
func (st *state) openAMQP() *lua.LTable {
	L := st.L
	clientMT := L.NewTypeMetatable("kumo.amqp.Client")
	confirmMT := L.NewTypeMetatable("kumo.amqp.Confirm")
	check := func(L *lua.LState) *amqpClient {
		return checkSelf[*amqpClient](L, "AMQP client expected (use client:method())")
	}
	clientMethods := L.NewTable()
	L.SetFuncs(clientMethods, map[string]lua.LGFunction{
		"publish": func(L *lua.LState) int {
			c := check(L)
			v, err := st.toGo(L.CheckTable(2))
			if err != nil {
				L.RaiseError("kumo.amqp: publish: %s", err.Error())
			}
			var m amqpclient.Message
			var payload string
			o := config.NewObject(v, v, "struct PublishParams", "routing_key", "payload", "exchange")
			o.Str("routing_key", &m.RoutingKey)
			o.Str("payload", &payload)
			o.Str("exchange", &m.Exchange)
			if _, ok := o.Get("routing_key"); !ok && o.Err() == nil {
				o.Fail("missing field `routing_key`")
			}
			if _, ok := o.Get("payload"); !ok && o.Err() == nil {
				o.Fail("missing field `payload`")
			}
			if o.Err() != nil {
				L.RaiseError("kumo.amqp: publish: %s", o.Err().Error())
			}
			if c.closed {
				L.RaiseError("kumo.amqp: publish: the client is closed")
			}
			ctx, cancel := context.WithTimeout(st.callCtx(), 30*time.Second)
			defer cancel()
			err = c.ch.PublishWithContext(ctx, m.Exchange, m.RoutingKey, false, false, amqp.Publishing{Body: []byte(payload)})
			L.Push(&lua.LUserData{Value: &amqpConfirm{err: err}, Metatable: confirmMT})
			return 1
		},
		"close": func(L *lua.LState) int {
			c := check(L)
			if c.closed {
				L.RaiseError("kumo.amqp: close: the client is already closed")
			}
			st.rt.disown(c)
			if err := c.Close(); err != nil {
				L.RaiseError("kumo.amqp: close: %s", err.Error())
			}
			return 0
		},
	})
	clientMT.RawSetString("__index", clientMethods)
	confirmMethods := L.NewTable()
	L.SetFuncs(confirmMethods, map[string]lua.LGFunction{
		"wait": func(L *lua.LState) int {
			cf := checkSelf[*amqpConfirm](L, "AMQP confirmation expected (use confirm:wait())")
			if cf.err != nil {
				L.RaiseError("kumo.amqp: publish: %s", cf.err.Error())
			}
			t := L.NewTable()
			t.RawSetString("status", lua.LString("NotRequested"))
			L.Push(t)
			return 1
		},
	})
	confirmMT.RawSetString("__index", confirmMethods)

	t := L.NewTable()
	t.RawSetString("build_client", L.NewFunction(func(L *lua.LState) int {
		uri := L.CheckString(1)
		u, err := amqp.ParseURI(uri)
		if err != nil {
			L.RaiseError("kumo.amqp.build_client: %s", err.Error())
		}
		ctx, cancel := context.WithTimeout(st.callCtx(), 30*time.Second)
		defer cancel()
		conn, err := amqpclient.Dial(ctx, amqpclient.Conn{
			Host: u.Host, Port: u.Port, Username: u.Username, Password: u.Password, VHost: u.Vhost,
			EnableTLS: u.Scheme == "amqps", RootCACert: u.CACertFile, ClientCert: u.CertFile, ClientPrivateKey: u.KeyFile,
		})
		if err != nil {
			L.RaiseError("kumo.amqp.build_client: %s", err.Error())
		}
		ch, err := conn.Channel()
		if err != nil {
			conn.Close()
			L.RaiseError("kumo.amqp.build_client: opening a channel: %s", err.Error())
		}
		c := &amqpClient{conn: conn, ch: ch}
		st.rt.own(c) // closed with the runtime at the latest
		L.Push(&lua.LUserData{Value: c, Metatable: clientMT})
		return 1
	}))
	t.RawSetString("basic_publish", L.NewFunction(func(L *lua.LState) int {
		v, err := st.toGo(L.CheckTable(1))
		if err != nil {
			L.RaiseError("kumo.amqp.basic_publish: %s", err.Error())
		}
		c, m, err := decodeAMQPPublish(v)
		if err != nil {
			L.RaiseError("kumo.amqp.basic_publish: %s", err.Error())
		}
		st.rt.amqpOnce.Do(func() { st.rt.own(&st.rt.amqpPools) })
		if err := st.rt.amqpPools.Get(c).Publish(st.callCtx(), m); err != nil {
			L.RaiseError("kumo.amqp.basic_publish: %s", err.Error())
		}
		return 0
	}))
	return t
}
