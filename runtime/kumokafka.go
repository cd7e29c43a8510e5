package runtime

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
)

// kafkaProducer is a kumo.kafka.build_producer object (KumoMTA's
// kumo.kafka page), served by the franz-go client.
type kafkaProducer struct{ cl *kgo.Client }

func (p *kafkaProducer) Close() error {
	p.cl.Close()
	return nil
}

// kafkaOptions maps the librdkafka-style properties that kumogo honours;
// others are an error naming them.
func kafkaOptions(props map[string]any) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	var unknown []string
	seeds := ""
	for k, v := range props {
		s := fmt.Sprint(v)
		switch k {
		case "bootstrap.servers", "metadata.broker.list":
			seeds = s
		case "client.id":
			opts = append(opts, kgo.ClientID(s))
		case "message.timeout.ms", "delivery.timeout.ms":
			ms, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number of milliseconds", k, s)
			}
			opts = append(opts, kgo.RecordDeliveryTimeout(time.Duration(ms)*time.Millisecond))
		case "linger.ms", "queue.buffering.max.ms":
			ms, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number of milliseconds", k, s)
			}
			opts = append(opts, kgo.ProducerLinger(time.Duration(ms)*time.Millisecond))
		case "acks", "request.required.acks":
			switch s {
			case "all", "-1":
				opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
			case "1":
				opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
			case "0":
				opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
			default:
				return nil, fmt.Errorf("%s: %q is not all, -1, 0 or 1", k, s)
			}
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unsupported properties %s (kumogo honours bootstrap.servers, client.id, message.timeout.ms, linger.ms and acks)", strings.Join(unknown, ", "))
	}
	if seeds == "" {
		return nil, fmt.Errorf("missing property `bootstrap.servers`")
	}
	return append(opts, kgo.SeedBrokers(strings.Split(seeds, ",")...)), nil
}

// kafkaRecord decodes one send table.
func kafkaRecord(v any) (*kgo.Record, time.Duration, error) {
	o := config.NewObject(v, v, "struct KafkaRecord", "topic", "payload", "key", "headers", "timeout")
	var topic, payload, key string
	var headers map[string]any
	timeout := time.Minute
	o.Str("topic", &topic)
	o.Str("payload", &payload)
	o.Str("key", &key)
	o.Map("headers", &headers)
	o.Duration("timeout", &timeout)
	if o.Err() == nil && topic == "" {
		o.Fail("missing field `topic`")
	}
	if o.Err() != nil {
		return nil, 0, o.Err()
	}
	r := &kgo.Record{Topic: topic, Value: []byte(payload)}
	if key != "" {
		r.Key = []byte(key)
	}
	for k, hv := range headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(fmt.Sprint(hv))})
	}
	return r, timeout, nil
}

// openKafka builds kumo.kafka.
func (st *state) openKafka() *lua.LTable {
	L := st.L
	mt := L.NewTypeMetatable("kumo.kafka.Producer")
	check := func(L *lua.LState) *kafkaProducer {
		return checkSelf[*kafkaProducer](L, "Kafka producer expected (use producer:method())")
	}
	methods := L.NewTable()
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"send": func(L *lua.LState) int {
			p := check(L)
			v, err := st.toGo(L.CheckTable(2))
			if err != nil {
				L.RaiseError("kumo.kafka: send: %s", err.Error())
			}
			r, timeout, err := kafkaRecord(v)
			if err != nil {
				L.RaiseError("kumo.kafka: send: %s", err.Error())
			}
			ctx, cancel := context.WithTimeout(st.callCtx(), timeout)
			defer cancel()
			if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				L.RaiseError("kumo.kafka: send to %s: %s", r.Topic, err.Error())
			}
			L.Push(lua.LNumber(r.Partition))
			L.Push(lua.LNumber(r.Offset))
			return 2
		},
		"send_batch": func(L *lua.LState) int {
			p := check(L)
			v, err := st.toGo(L.CheckTable(2))
			if err != nil {
				L.RaiseError("kumo.kafka: send_batch: %s", err.Error())
			}
			items, _ := v.([]any)
			recs := make([]*kgo.Record, len(items))
			timeout := time.Duration(0)
			for i, it := range items {
				r, t, err := kafkaRecord(it)
				if err != nil {
					L.RaiseError("kumo.kafka: send_batch: item %d: %s", i+1, err.Error())
				}
				recs[i], timeout = r, max(timeout, t)
			}
			ctx, cancel := context.WithTimeout(st.callCtx(), max(timeout, time.Second))
			defer cancel()
			res := p.cl.ProduceSync(ctx, recs...)
			failed, errs := L.NewTable(), L.NewTable()
			for i, pr := range res {
				if pr.Err != nil {
					failed.Append(lua.LNumber(i + 1))
					errs.Append(lua.LString(pr.Err.Error()))
				}
			}
			L.Push(failed)
			L.Push(errs)
			return 2
		},
		"close": func(L *lua.LState) int {
			p := check(L)
			st.rt.disown(p)
			p.cl.Close()
			return 0
		},
	})
	mt.RawSetString("__index", methods)

	t := L.NewTable()
	t.RawSetString("build_producer", L.NewFunction(func(L *lua.LState) int {
		v, err := st.toGo(L.CheckTable(1))
		if err != nil {
			L.RaiseError("kumo.kafka.build_producer: %s", err.Error())
		}
		props, _ := v.(map[string]any)
		opts, err := kafkaOptions(props)
		if err != nil {
			L.RaiseError("kumo.kafka.build_producer: %s", err.Error())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			L.RaiseError("kumo.kafka.build_producer: %s", err.Error())
		}
		p := &kafkaProducer{cl: cl}
		st.rt.own(p)
		L.Push(&lua.LUserData{Value: p, Metatable: mt})
		return 1
	}))
	return t
}
