package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rabbitmqServer is Debian's server script run directly (the one in
// /usr/sbin insists on switching to the rabbitmq user).
const rabbitmqServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// RabbitMQ is a rabbitmq-server (Debian's package, installed by
// scripts/install-test-deps.sh) for one test: its own node name, data,
// log and config directories, AMQP on a free 127.0.0.1 port, and its own
// epmd on another loopback port (started here, in the foreground, so that
// nothing outlives the test). Stopped when the test ends.
type RabbitMQ struct {
	Addr string // host:port of the AMQP listener
	dir  string
	tb   testing.TB

	mu     sync.Mutex
	srv    *exec.Cmd
	epmd   *exec.Cmd
	exited chan struct{} // closed when srv has exited
}

// StartRabbitMQ starts a broker for tb and waits until it accepts AMQP
// connections (several seconds: the Erlang node boots first).
func StartRabbitMQ(tb testing.TB) *RabbitMQ {
	tb.Helper()
	if _, err := os.Stat(rabbitmqServer); err != nil {
		tb.Fatal("rabbitmq-server is not installed: run scripts/install-test-deps.sh")
	}
	epmdBin, err := exec.LookPath("epmd")
	if err != nil {
		// Debian's erlang-base keeps it beside the emulator
		if m, _ := filepath.Glob("/usr/lib/erlang/erts-*/bin/epmd"); len(m) > 0 {
			epmdBin = m[0]
		} else {
			tb.Fatal("epmd (erlang-base) not found")
		}
	}
	dir, err := os.MkdirTemp("", "kumogo-rabbitmq-")
	if err != nil {
		tb.Fatal(err)
	}
	// the Erlang node's paths must be short and free of odd characters
	tb.Cleanup(func() { os.RemoveAll(dir) })
	ports := freePorts(tb, 3)
	r := &RabbitMQ{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), dir: dir, tb: tb}
	tb.Cleanup(r.Stop)

	conf := fmt.Sprintf("listeners.tcp.default = %s\nloopback_users.guest = true\nlog.console = true\nlog.console.level = warning\nlog.file = false\n", r.Addr)
	for name, body := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[].\n", "rabbitmq-env.conf": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	epmdPort := strconv.Itoa(ports[2])
	r.epmd = exec.Command(epmdBin, "-port", epmdPort, "-address", "127.0.0.1")
	if err := r.epmd.Start(); err != nil {
		tb.Fatal(err)
	}
	waitTCP(tb, "127.0.0.1:"+epmdPort, 10*time.Second)

	node := fmt.Sprintf("kumogo%d@localhost", ports[0])
	cmd := exec.Command(rabbitmqServer)
	cmd.Env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(ports[0]),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[1]),
		"ERL_EPMD_PORT="+epmdPort,
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PLUGINS_EXPAND_DIR="+filepath.Join(dir, "plugins-expand"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
	)
	out, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the node and its helpers, killable as a group
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.srv, r.exited = cmd, exited
	r.mu.Unlock()
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "server.out"))
			tb.Fatalf("rabbitmq-server exited before listening:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "server.out"))
			tb.Fatalf("rabbitmq-server did not listen on %s within 90 s:\n%s", r.Addr, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r
}

// URL is the broker's amqp:// URL (user guest, allowed from loopback).
func (r *RabbitMQ) URL() string { return "amqp://guest:guest@" + r.Addr + "/" }

// Port is the AMQP port.
func (r *RabbitMQ) Port() int {
	_, p, _ := net.SplitHostPort(r.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Stop stops the broker (SIGTERM to the server script, which stops the
// node; SIGKILL to the node's process group after 20 s) and its epmd.
// Safe to call twice.
func (r *RabbitMQ) Stop() {
	r.mu.Lock()
	srv, epmd := r.srv, r.epmd
	r.srv, r.epmd = nil, nil
	r.mu.Unlock()
	if srv != nil {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
			<-r.exited
		}
	}
	if epmd != nil {
		epmd.Process.Kill()
		epmd.Wait()
	}
}

// freePorts returns n distinct free loopback ports.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func waitTCP(tb testing.TB, addr string, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not listen within %v", addr, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
