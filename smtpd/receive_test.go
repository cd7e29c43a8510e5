package smtpd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// Messages to queue "null" go back to a pool after reception. Nothing of
// one transaction (meta, recipients, id, headers) may show up in a later
// one, and a message handed to the queue is never recycled.
func TestPooledMessagesDoNotLeak(t *testing.T) {
	type seen struct {
		id, txn, data string
		rcpts         []string
	}
	var got []seen
	txn := 0
	p := &fakePolicy{
		data: func(m *message.Message) error {
			txn++
			if _, ok := m.Meta("txn"); ok {
				t.Errorf("transaction %d starts with meta txn=%v", txn, m.MetaMap()["txn"])
			}
			if _, ok := m.Meta("odd"); ok {
				t.Errorf("transaction %d starts with meta odd", txn)
			}
			m.SetMeta("txn", fmt.Sprint(txn))
			if txn%2 == 1 {
				m.SetMeta("odd", true)
			}
			return nil
		},
		received: func(m *message.Message) error {
			n, _ := m.MetaString("txn")
			_, odd := m.Meta("odd")
			if odd != (txn%2 == 1) || n != fmt.Sprint(txn) {
				t.Errorf("transaction %d sees txn=%q odd=%v", txn, n, odd)
			}
			if v, _ := m.MetaString("received_from"); !strings.HasPrefix(v, "127.0.0.1:") {
				t.Errorf("conn meta missing: %v", m.MetaMap())
			}
			var rc []string
			for _, r := range m.Recipients() {
				rc = append(rc, r.String())
			}
			got = append(got, seen{m.ID(), n, string(m.Data()), rc})
			if m.Recipients()[0].User == "queued" {
				m.SetMeta("queue", "somewhere")
			} else {
				m.SetMeta("queue", "null")
			}
			m.SetMeta("extra-"+n, n)
			return nil
		},
	}
	recs := &recLogger{}
	enq := &fakeEnqueuer{recs: recs}
	ts := startServerWith(t, testConfig(), p, enq, recs)
	c := greet(t, ts.addr)
	for i := 1; i <= 30; i++ {
		c.Cmd(t, "MAIL FROM:<s@x.example>", "250")
		nr := 1 + i%3
		for r := 0; r < nr; r++ {
			user := fmt.Sprintf("r%d-%d", i, r)
			if i == 5 && r == 0 {
				user = "queued"
			}
			c.Cmd(t, "RCPT TO:<"+user+"@y.example>", "250")
		}
		c.Cmd(t, "DATA", "354")
		c.SendRaw(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n.\r\n", i, i))
		_, lines, err := c.ReadReply()
		if err != nil {
			t.Fatal(err)
		}
		ids := strings.Fields(strings.TrimPrefix(lines[0], "250 OK ids="))
		if !strings.HasPrefix(lines[0], "250 OK ids=") || len(ids) != nr {
			t.Fatalf("transaction %d: %q", i, lines)
		}
		for j, id := range ids {
			if g := got[len(got)-nr+j]; g.id != id {
				t.Fatalf("transaction %d: reply ids %q, event saw %q", i, ids, g.id)
			}
		}
	}
	ids := map[string]bool{}
	for _, g := range got {
		if ids[g.id] {
			t.Fatalf("id %s used twice", g.id)
		}
		ids[g.id] = true
		if len(g.rcpts) != 1 || !strings.HasPrefix(g.rcpts[0], "r"+g.txn+"-") && g.rcpts[0] != "queued@y.example" {
			t.Fatalf("transaction %s: recipients %q", g.txn, g.rcpts)
		}
		if strings.Count(g.data, "Received: ") != 1 || !strings.Contains(g.data, " id "+g.id+" for "+g.rcpts[0]+";") ||
			!strings.HasSuffix(g.data, "Subject: "+g.txn+"\r\n\r\nbody "+g.txn+"\r\n") {
			t.Fatalf("transaction %s: data %q", g.txn, g.data)
		}
	}
	for _, r := range recs.ByType(logrecord.Reception) {
		if !ids[r.ID] {
			t.Fatalf("Reception record for unknown id %s", r.ID)
		}
	}
	// the queued message kept everything after 25 more transactions
	if len(enq.msgs) != 1 {
		t.Fatalf("queued %d messages", len(enq.msgs))
	}
	q := enq.msgs[0]
	if q.QueueName() != "somewhere" || q.Recipients()[0].User != "queued" || len(q.Recipients()) != 1 ||
		q.MetaMap()["txn"] != "5" || q.MetaMap()["extra-5"] != "5" ||
		!strings.HasSuffix(string(q.Data()), "Subject: 5\r\n\r\nbody 5\r\n") || !ids[q.ID()] {
		t.Fatalf("queued message changed: id %s rcpts %v meta %v", q.ID(), q.Recipients(), q.MetaMap())
	}
	for k := range q.MetaMap() {
		if strings.HasPrefix(k, "extra-") && k != "extra-5" {
			t.Fatalf("queued message got meta %s of another transaction", k)
		}
	}
}

// A session whose transactions fail in the policy (messages released on
// the error path) keeps working and recycles nothing twice.
func TestPooledMessagesAfterPolicyErrors(t *testing.T) {
	n := 0
	p := &fakePolicy{received: func(m *message.Message) error {
		n++
		if _, ok := m.Meta("marker"); ok {
			t.Errorf("message %d: marker of an earlier message", n)
		}
		m.SetMeta("marker", n)
		if n%3 == 0 {
			return fmt.Errorf("policy failure %d", n)
		}
		m.SetMeta("queue", "null")
		return nil
	}}
	ts := startServer(t, testConfig(), p)
	for i := 0; i < 4; i++ {
		c := greet(t, ts.addr)
		for j := 0; j < 2; j++ {
			resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n")
			if strings.HasPrefix(resp, "421") {
				break
			}
			if !idsRe.MatchString(resp) {
				t.Fatal(resp)
			}
		}
		c.Close()
	}
}
