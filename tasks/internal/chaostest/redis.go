// Package chaostest starts what the reliability drills break: private
// redis-server processes (a master and its replicas, Sentinels, a cluster)
// on loopback ports, TCP proxies that can be cut, and network namespaces
// joined to the host by veth pairs on a private subnet. Everything it starts
// it stops, and everything it creates it removes, when the test ends; the
// processes also die with the test binary (Pdeathsig).
package chaostest

import (
	"context"
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

	"github.com/redis/go-redis/v9"
)

// RedisServer returns redis-server's path, or skips the test saying what
// to install. The same binary runs Sentinels (`redis-server CONF
// --sentinel`), so the Debian package redis-sentinel is not needed.
func RedisServer(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: `apt-get install redis-server` (scripts/services.sh does it when root)")
	}
	return p
}

// Redis is one private redis-server process on a loopback port.
type Redis struct {
	Port int
	t    testing.TB
	argv []string // a config file first if any, then settings; not the port

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// StartRedis starts a redis-server without persistence on a free loopback
// port, with extra settings (`--replicaof 127.0.0.1 PORT`, ...), and waits
// until it answers PING.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	dir := t.TempDir()
	argv := append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}, extra...)
	return startOnFreePort(t, argv, filepath.Join(dir, "redis.log"))
}

// startOnFreePort starts argv on a port that was free a moment ago,
// retrying on another should someone take it first.
func startOnFreePort(t testing.TB, argv []string, log string) *Redis {
	t.Helper()
	bin := RedisServer(t)
	var err error
	for range 3 {
		r := &Redis{Port: FreePort(t), t: t, argv: argv, log: log}
		if err = r.start(bin); err == nil {
			t.Cleanup(r.Kill)
			return r
		}
	}
	t.Fatalf("redis-server did not start: %v", err)
	return nil
}

func (r *Redis) start(bin string) error {
	cmd := exec.Command(bin, append(append([]string(nil), r.argv...), "--port", strconv.Itoa(r.Port))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("exited: %s", r.LogTail())
		case <-time.After(20 * time.Millisecond):
		}
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
	}
	r.Kill()
	return fmt.Errorf("no answer on %s: %s", r.Addr(), r.LogTail())
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// Client returns a client on this one server, closed when the test ends.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill ends the server with SIGKILL, as a crash does: nothing is flushed
// and no replica is told. A second Kill is harmless.
func (r *Redis) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts the server again on the same port with the same settings
// (a Sentinel's config file keeps what it learnt), after Kill.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Kill()
	if err := r.start(RedisServer(r.t)); err != nil {
		r.t.Fatalf("redis-server on %d did not restart: %v", r.Port, err)
	}
}

// LogTail is the end of the server's log, for a failure message.
func (r *Redis) LogTail() string {
	b, _ := os.ReadFile(r.log)
	s := string(b)
	return s[max(0, len(s)-2000):]
}

// FreePort returns a loopback TCP port nobody listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
