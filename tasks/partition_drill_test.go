package tasks_test

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks/internal/chaostest"
)

// partitionFor is how long the cut-off worker stays cut off: five lock
// TTLs, well inside the 30 s its recording of a batch waits for Postgres.
const partitionFor = 10 * time.Second

// TestDrillNetworkPartition runs the engine across "hosts": a dispatcher
// and three workers, each in a network namespace of its own on a private
// subnet, reaching Postgres and Redis through proxies on the host's side
// of the subnet and delivering to a receiver there. Mid-batch (while the
// receiver holds one of its deliveries), one worker's link is taken down:
// it can reach nothing, and its answers are lost. The others take its
// repeaters over once the lock and claims lapse; the link comes back after
// partitionFor. Nothing is lost, no record is sent twice at once, and
// duplicates are only ever the same webhook-id again. What the cut-off
// worker writes late, once healed, is measured and logged: fencing those
// writes is the guarantees issue's.
func TestDrillNetworkPartition(t *testing.T) {
	if !chaos() {
		t.Skip("the network partition drill runs in `make chaos` (REPEATERD_CHAOS=1)")
	}
	nw := chaostest.NewNet(t)
	h := newHarness(t)
	pg := chaostest.NewProxy(t, nw.HostIP+":0", chaostest.TargetOf(h.cfg.DatabaseURL))
	rd := chaostest.NewProxy(t, nw.HostIP+":0", chaostest.TargetOf(h.cfg.RedisURL))
	remote := h.cfg
	remote.DatabaseURL, remote.RedisURL = pg.URL(h.cfg.DatabaseURL), rd.URL(h.cfg.RedisURL)

	src := &bySource{from: map[string][]arrival{}, trigger: make(chan struct{}), hold: make(chan struct{})}
	rc, err := repeatertest.New(repeatertest.Config{Respond: src.respond})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := repeatertest.Listen(nw.HostIP+":0", rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close(ctx) })
	var reps []*store.Repeater
	for _, d := range []string{"a", "b", "c"} {
		reps = append(reps, h.repeater(d, sk.URL("/"+d), func(r *store.Repeater) { r.TimeoutMS = 3000 }))
	}
	h.spawnWith(remote, "dispatcher", nw.Namespace().Exec()...)
	var workers []*chaostest.Namespace
	var procs []*process
	for range 3 {
		ns := nw.Namespace()
		workers = append(workers, ns)
		procs = append(procs, h.spawnWith(remote, "worker", ns.Exec()...))
	}
	victim, victimProc := workers[0], procs[0]

	load := startLoad(h, reps...)
	deliveringAfter(h, 0, len(reps), 5*time.Second)
	src.arm(victim.IP)
	awaitEvent(t, src.trigger, "a delivery from the worker to cut off", 30*time.Second)
	victim.Cut()
	cutAt := time.Now()
	close(src.hold) // the held delivery is answered now: the answer is lost
	before := lastID(h)
	deliveringAfter(h, before, len(reps), 0)        // the others carry on
	time.Sleep(time.Until(cutAt.Add(partitionFor))) // the partition is a window of time, not an event
	attemptsAtHeal := h.countSQL(`SELECT coalesce(max(id), 0) FROM repeat_record_attempts`)
	victim.Heal()
	healAt := time.Now()
	h.waitFor("the healed worker delivering again", 60*time.Second, func() bool { return src.sentAfter(victim.IP, healAt) > 0 })
	deliveringAfter(h, lastID(h), len(reps), 10*time.Second)
	registered := load.finish()
	assertNothingLost(h, sk, registered, registered/4)

	s := sk.Stats()
	if s.Overlaps != 0 {
		t.Fatalf("%d deliveries overlapped another of the same webhook-id: a record was sent twice at once", s.Overlaps)
	}
	if s.NoID != 0 || s.Unique != registered {
		t.Fatalf("%d deliveries without a webhook-id, %d ids for %d records", s.NoID, s.Unique, registered)
	}
	resent, takenOver := src.takeover(victim.IP, cutAt)
	late := h.countSQL(`SELECT count(*) FROM repeat_record_attempts WHERE id > $1 AND created_at < $2`,
		attemptsAtHeal, healAt.Add(-time.Second))
	lateFail := h.countSQL(`SELECT count(*) FROM repeat_record_attempts WHERE id > $1 AND created_at < $2 AND state = 2`,
		attemptsAtHeal, healAt.Add(-time.Second))
	lateFailed := victimProc.linesAfter(cutAt, "failed=")
	lateFailed = slices.DeleteFunc(lateFailed, func(l string) bool { return strings.Contains(l, "failed=0") })
	// The endpoint never fails: a backoff applied after the cut, by whichever
	// worker ran the update, comes from the cut-off worker's late summary.
	var backoffs []string
	for _, p := range procs {
		backoffs = append(backoffs, slices.DeleteFunc(p.linesAfter(cutAt, "batch applied"), func(l string) bool {
			return strings.Contains(l, "backoff_count=0")
		})...)
	}
	t.Logf("cut a worker off for %s mid-batch; %d of the records it had just sent (answers lost, outcomes unrecorded) "+
		"were sent again by the others from %s after the cut (lock TTL %s)",
		partitionFor, resent, takenOver.Round(time.Millisecond), h.cfg.LockTTL)
	t.Logf("late writes of the cut-off worker after the heal: %d batches with failures recorded, %d attempt rows kept "+
		"(%d failures; the rest found their records no longer ready), %d late summaries backed a repeater off; "+
		"%d duplicates in all, %d of them sent by it after the heal",
		len(lateFailed), late, lateFail, len(backoffs), s.Duplicates, src.repeatsAfter(victim.IP, healAt))
	for _, l := range append(append(lateFailed, backoffs...), victimProc.linesAfter(cutAt, "level=WARN")...) {
		t.Logf("cut-off worker: %s", l)
	}
}

type arrival struct {
	id string
	at time.Time
}

// bySource notes which namespace sent each delivery (its source address),
// and holds the first delivery from an armed source until released.
type bySource struct {
	mu      sync.Mutex
	from    map[string][]arrival
	armed   string
	trigger chan struct{} // closed when the armed source's delivery arrives
	hold    chan struct{} // that delivery is answered once this is closed
}

func (s *bySource) arm(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = ip
}

func (s *bySource) respond(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.mu.Lock()
	s.from[host] = append(s.from[host], arrival{r.Header.Get(repeaters.HeaderWebhookID), time.Now()})
	held := s.armed != "" && host == s.armed
	if held {
		s.armed = ""
		close(s.trigger)
	}
	s.mu.Unlock()
	if held {
		<-s.hold
	}
	select { // a few milliseconds per delivery keep batches in flight
	case <-time.After(10 * time.Millisecond):
	case <-r.Context().Done():
	}
}

// sentAfter counts deliveries from ip after at.
func (s *bySource) sentAfter(ip string, at time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.from[ip] {
		if a.at.After(at) {
			n++
		}
	}
	return n
}

// takeover counts the ids ip delivered in the 2 s before the cut that
// others sent again after it, and how long after the cut the first of
// those re-sends came.
func (s *bySource) takeover(ip string, cut time.Time) (resent int, after time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mine := map[string]bool{}
	for _, a := range s.from[ip] {
		if !a.at.After(cut) && a.at.After(cut.Add(-2*time.Second)) {
			mine[a.id] = true
		}
	}
	var first time.Time
	again := map[string]bool{}
	for src, as := range s.from {
		for _, a := range as {
			if src != ip && mine[a.id] && a.at.After(cut) {
				again[a.id] = true
				if first.IsZero() || a.at.Before(first) {
					first = a.at
				}
			}
		}
	}
	if first.IsZero() {
		return 0, 0
	}
	return len(again), first.Sub(cut)
}

// repeatsAfter counts deliveries from ip after at of ids someone had
// delivered before: the cut-off worker's late sends.
func (s *bySource) repeatsAfter(ip string, at time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.from[ip] {
		if !a.at.After(at) {
			continue
		}
	seen:
		for _, as := range s.from {
			for _, b := range as {
				if b.id == a.id && b.at.Before(a.at) {
					n++
					break seen
				}
			}
		}
	}
	return n
}
