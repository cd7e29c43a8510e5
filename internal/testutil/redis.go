package testutil

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisServer is a redis-server (Debian's package, installed by
// scripts/install-test-deps.sh) on a free 127.0.0.1 port with its own
// temporary directory and no persistence, stopped when the test ends.
type RedisServer struct {
	loopbackDaemon
	dir string
	tb  testing.TB
}

// StartRedis starts a redis-server for tb.
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("redis-server is not installed: run scripts/install-test-deps.sh")
	}
	r := &RedisServer{loopbackDaemon: loopbackDaemon{Addr: freeLoopbackAddr(tb)}, dir: tb.TempDir(), tb: tb}
	tb.Cleanup(r.Stop)
	r.Start()
	return r
}

// URL is the server's redis:// URL.
func (r *RedisServer) URL() string { return "redis://" + r.Addr + "/" }

// Start (re)starts the server on its address and waits until it answers
// PING.
func (r *RedisServer) Start() {
	r.tb.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	r.start(r.tb, r.ping, "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning")
}

func (r *RedisServer) ping() bool {
	return strings.HasPrefix(r.Do("PING"), "+PONG")
}

// Do sends one command in RESP and returns the first line of the reply
// ("" when the server cannot be reached). Integer replies read ":N".
func (r *RedisServer) Do(args ...string) string {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return ""
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimRight(line, "\r\n")
}

// Int runs a command whose reply is an integer; -1 on any other reply.
func (r *RedisServer) Int(args ...string) int {
	s := r.Do(args...)
	if !strings.HasPrefix(s, ":") {
		return -1
	}
	n, err := strconv.Atoi(s[1:])
	if err != nil {
		return -1
	}
	return n
}

// Calls is how many times the server ran cmd (lower case, e.g. "evalsha")
// since it started or since CONFIG RESETSTAT, from INFO commandstats; -1
// when the server cannot be asked.
func (r *RedisServer) Calls(cmd string) int {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return -1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")); err != nil {
		return -1
	}
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return -1
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return -1
	}
	prefix := "cmdstat_" + cmd + ":calls="
	for _, line := range strings.Split(string(body), "\r\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			v, _, _ := strings.Cut(rest, ",")
			calls, err := strconv.Atoi(v)
			if err != nil {
				return -1
			}
			return calls
		}
	}
	return 0
}
