package chaostest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinels is a group of Redis Sentinels watching one master.
type Sentinels struct {
	// Master is the monitored master's name.
	Master string
	t      testing.TB
	procs  []*Redis
}

// SentinelTimings are how quickly the Sentinels act. A drill wants them
// short; production's defaults are 30 s and 3 min.
type SentinelTimings struct {
	// DownAfter is how long the master must be silent to be deemed down.
	DownAfter time.Duration
	// FailoverTimeout bounds a failover, and twice it separates two
	// failovers of the same master.
	FailoverTimeout time.Duration
}

// StartSentinels starts n Sentinels on free loopback ports, monitoring
// master under name with quorum votes needed to deem it down.
func StartSentinels(t testing.TB, name string, master *Redis, n, quorum int, tm SentinelTimings) *Sentinels {
	t.Helper()
	s := &Sentinels{Master: name, t: t}
	for range n {
		dir := t.TempDir()
		conf, log := filepath.Join(dir, "sentinel.conf"), filepath.Join(dir, "sentinel.log")
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
			"sentinel down-after-milliseconds %[1]s %[4]d\nsentinel failover-timeout %[1]s %[5]d\n"+
			"sentinel parallel-syncs %[1]s 1\n",
			name, master.Port, quorum, tm.DownAfter.Milliseconds(), tm.FailoverTimeout.Milliseconds())
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s.procs = append(s.procs, startOnFreePort(t, []string{conf, "--sentinel", "--bind", "127.0.0.1",
			"--dir", dir, "--daemonize", "no", "--logfile", log}, log))
	}
	return s
}

// Addrs are the Sentinels' host:port addresses.
func (s *Sentinels) Addrs() []string {
	out := make([]string, len(s.procs))
	for i, p := range s.procs {
		out[i] = p.Addr()
	}
	return out
}

// URL is the REDIS_URL that reaches the master through the Sentinels.
func (s *Sentinels) URL(db int) string {
	return fmt.Sprintf("redis+sentinel://%s/%s?db=%d", strings.Join(s.Addrs(), ","), s.Master, db)
}

func (s *Sentinels) client(i int) *redis.SentinelClient {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.procs[i].Addr(), DialTimeout: time.Second, MaxRetries: -1})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitReady waits until every Sentinel knows the master as up, replicas
// replicas linked to it, and every other Sentinel: before that a failover
// could not be agreed on.
func (s *Sentinels) WaitReady(replicas int, timeout time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for i := range s.procs {
		c := s.client(i)
		for {
			ok, state := s.ready(ctx, c, replicas)
			if ok {
				break
			}
			last = state
			select {
			case <-ctx.Done():
				s.t.Fatalf("sentinel %s not ready after %s: %s", s.procs[i].Addr(), timeout, last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (s *Sentinels) ready(ctx context.Context, c *redis.SentinelClient, replicas int) (bool, string) {
	m, err := c.Master(ctx, s.Master).Result()
	if err != nil {
		return false, err.Error()
	}
	state := fmt.Sprintf("flags %s, %s replicas, %s other sentinels", m["flags"], m["num-slaves"], m["num-other-sentinels"])
	if m["flags"] != "master" || m["num-slaves"] != fmt.Sprint(replicas) || m["num-other-sentinels"] != fmt.Sprint(len(s.procs)-1) {
		return false, state
	}
	reps, err := c.Replicas(ctx, s.Master).Result()
	if err != nil {
		return false, err.Error()
	}
	for _, r := range reps {
		if r["flags"] != "slave" || r["master-link-status"] != "ok" {
			return false, fmt.Sprintf("replica %s:%s flags %s link %s", r["ip"], r["port"], r["flags"], r["master-link-status"])
		}
	}
	return true, state
}

// MasterAddr is the master's host:port as the first Sentinel tells it.
func (s *Sentinels) MasterAddr(ctx context.Context) (string, error) {
	hp, err := s.client(0).GetMasterAddrByName(ctx, s.Master).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// WatchSwitch subscribes to the first Sentinel's +switch-master events
// and returns a channel that receives the new master's host:port at each
// switch, from the moment WatchSwitch returns until the test ends.
func (s *Sentinels) WatchSwitch() <-chan string {
	s.t.Helper()
	ctx := context.Background()
	sub := s.client(0).Subscribe(ctx, "+switch-master")
	if _, err := sub.Receive(ctx); err != nil { // the subscription is confirmed
		s.t.Fatalf("subscribe to +switch-master: %v", err)
	}
	s.t.Cleanup(func() { _ = sub.Close() })
	out := make(chan string, 8)
	go func() {
		for m := range sub.Channel() {
			// "<name> <old ip> <old port> <new ip> <new port>"
			if f := strings.Fields(m.Payload); len(f) == 5 && f[0] == s.Master {
				out <- net.JoinHostPort(f[3], f[4])
			}
		}
	}()
	return out
}

// LogTails are the Sentinels' log ends, for a failure message.
func (s *Sentinels) LogTails() string {
	var b strings.Builder
	for _, p := range s.procs {
		fmt.Fprintf(&b, "--- sentinel %s\n%s\n", p.Addr(), p.LogTail())
	}
	return b.String()
}
