package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// The stats scenario's moving parts: the consumer as a child process that
// can be killed, and the writer of the load whose lag it measures.

// statsConsumerProc is the consumer as a child process that can be killed.
type statsConsumerProc struct {
	e    *env
	slot string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs limitedBuffer // every start's stderr, the last MiB
}

func (p *statsConsumerProc) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs.max = 1 << 20
	cmd := exec.Command(p.e.opt.Binary, "bench-stats-consumer", "--slot", p.slot)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+p.e.dbURL)
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	return nil
}

// retries counts the sessions the consumer logged as ended and retried.
func (p *statsConsumerProc) retries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Count(p.logs.String(), "replication session ended")
}

func (p *statsConsumerProc) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.done
	p.cmd = nil
	return nil
}

func (p *statsConsumerProc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	stopChild(p.cmd.Process, p.done, 15*time.Second)
	p.cmd = nil
}

// churn writes the stats load and measures each transaction's lag.
type churn struct {
	st         *store.Store
	ids        []int64
	perTx      int
	tick       time.Duration
	syncCommit bool
	last       []int64 // inserted by the previous transaction, completed by the next
	lastLSN    string  // the last transaction's position (see benchdb.Churn)
}

type lagResult struct {
	lags   []time.Duration
	missed int // transactions not seen applied within 10 s of the end
}

// run writes one transaction per tick for d; it returns the lag of each
// transaction and the changes/s achieved.
func (c *churn) run(ctx context.Context, d time.Duration) (lagResult, float64, error) {
	type pending struct {
		lsn uint64
		at  time.Time
	}
	var (
		mu      sync.Mutex
		queue   []pending
		res     lagResult
		stopped = make(chan struct{})
		polled  = make(chan struct{})
	)
	go func() { // the applied-LSN poller
		defer close(polled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var drainBy time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-stopped:
				if drainBy.IsZero() {
					drainBy = time.Now().Add(10 * time.Second)
				}
			case <-t.C:
			}
			applied, err := benchdb.AppliedLSN(ctx, c.st.Pool())
			now := time.Now()
			if err == nil && applied != "" {
				if a, err := ParseLSN(applied); err == nil {
					mu.Lock()
					for len(queue) > 0 && queue[0].lsn <= a {
						res.lags = append(res.lags, now.Sub(queue[0].at))
						queue = queue[1:]
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			left := len(queue)
			mu.Unlock()
			if !drainBy.IsZero() && (left == 0 || now.After(drainBy)) {
				mu.Lock()
				res.missed = len(queue)
				mu.Unlock()
				return
			}
		}
	}()
	began := time.Now()
	t := time.NewTicker(c.tick)
	changes := 0
	var err error
	for time.Since(began) < d && ctx.Err() == nil {
		var lsn string
		if lsn, c.last, err = benchdb.Churn(ctx, c.st.Pool(), benchdb.ChurnParams{RepeaterIDs: c.ids, Inserts: c.perTx / 2,
			Complete: c.last, SyncCommit: c.syncCommit}); err != nil {
			break
		}
		at := time.Now()
		changes += c.perTx
		c.lastLSN = lsn
		if v, perr := ParseLSN(lsn); perr == nil {
			mu.Lock()
			queue = append(queue, pending{lsn: v, at: at})
			mu.Unlock()
		}
		<-t.C
	}
	t.Stop()
	elapsed := time.Since(began)
	close(stopped)
	<-polled
	mu.Lock()
	defer mu.Unlock()
	return res, float64(changes) / elapsed.Seconds(), err
}

// ParseLSN parses a Postgres LSN ("16/B374D848") into a number.
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return h<<32 | l, nil
}
