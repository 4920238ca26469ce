package walstats

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"repeaterd/store"
)

// Crash test: the consumer runs as a subprocess (this test binary re-run with
// the child variables set) and is killed with SIGKILL again and again while
// records are inserted, moved and purged. The child prints each OnApplied
// LSN, so the parent waits on the signal rather than polling the database.

const (
	childEnvURL   = "REPEATERD_STATS_CHILD_URL"
	childEnvSlot  = "REPEATERD_STATS_CHILD_SLOT"
	childEnvBatch = "REPEATERD_STATS_CHILD_BATCH"

	childAppliedLine = "walstats-child applied "
)

// TestConsumerChild is the crash test's consumer process; it does nothing
// in a normal run.
func TestConsumerChild(t *testing.T) {
	url := os.Getenv(childEnvURL)
	if url == "" {
		t.Skip("runs only as TestExactAcrossKills's subprocess")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	batch, _ := strconv.Atoi(os.Getenv(childEnvBatch))
	c, err := New(st, Config{DatabaseURL: url, SlotName: os.Getenv(childEnvSlot),
		BatchSize: batch, BatchWait: 20 * time.Millisecond, StandbyInterval: 50 * time.Millisecond,
		OnApplied: func(lsn pglogrepl.LSN) { fmt.Printf("%s%s\n", childAppliedLine, lsn) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	_ = c.Stop(context.Background())
}

type child struct {
	cmd     *exec.Cmd
	out     childOutput
	exited  chan struct{}
	applied *appliedSignal
}

// childOutput keeps the child's output and turns its applied lines into
// the signal.
type childOutput struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	applied *appliedSignal
}

func (o *childOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(p)
	o.partial = append(o.partial, p...)
	for {
		line, rest, ok := bytes.Cut(o.partial, []byte("\n"))
		if !ok {
			break
		}
		if v, ok := strings.CutPrefix(string(line), childAppliedLine); ok {
			if lsn, err := pglogrepl.ParseLSN(v); err == nil {
				o.applied.note(lsn)
			}
		}
		o.partial = rest
	}
	return len(p), nil
}

func (o *childOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}

func (e *env) startChild(t *testing.T, batch int) *child {
	t.Helper()
	c := &child{exited: make(chan struct{}), applied: newAppliedSignal()}
	c.out.applied = c.applied
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestConsumerChild$", "-test.count=1", "-test.v")
	c.cmd.Env = append(os.Environ(), childEnvURL+"="+e.url, childEnvSlot+"="+e.slot,
		childEnvBatch+"="+strconv.Itoa(batch))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	return c
}

// kill SIGKILLs the child and fails the test if it had already exited.
func (c *child) kill(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
		t.Fatalf("consumer process exited by itself:\n%s", c.out.String())
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	t.Logf("killed consumer process; its output:\n%s", c.out.String())
}

// waitApplied waits until the child reports the stats applied to lsn,
// failing on timeout or if the child exits.
func (c *child) waitApplied(t *testing.T, lsn pglogrepl.LSN) {
	t.Helper()
	if err := c.applied.waitOr(lsn, 60*time.Second, c.exited); err != nil {
		c.fail(t, err)
	}
}

// waitUntil polls cond until it holds, failing on timeout or if the child
// exits: for what the consumer gives no signal of (the slot appearing).
func (c *child) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-c.exited:
			c.fail(t, fmt.Errorf("exited while waiting for %s", what))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.fail(t, fmt.Errorf("timed out waiting for %s", what))
		}
	}
}

func (c *child) fail(t *testing.T, err error) {
	t.Helper()
	_ = c.cmd.Process.Kill()
	<-c.exited
	t.Fatalf("consumer process: %v:\n%s", err, c.out.String())
}

const (
	loadRandomIDs = `SELECT id FROM repeat_records
		WHERE id >= (SELECT min(id) + floor($1 * (max(id) - min(id)))::bigint FROM repeat_records)`
	loadMoveSQL = `UPDATE repeat_records SET state = (ARRAY[1, 2, 4, 8, 16, 32])[1 + floor(random() * 6)::int],
		attempt_count = attempt_count + 1 WHERE id IN (` + loadRandomIDs + ` ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`
	loadTouchSQL = `UPDATE repeat_records SET attempt_count = attempt_count + 1
		WHERE id IN (` + loadRandomIDs + ` ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`
	loadPurgeSQL = `DELETE FROM repeat_records WHERE id IN (` + loadRandomIDs + `
		AND state IN (4, 8, 16, 32) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`
)

// load changes records until ctx ends: inserts, state changes, updates
// that keep the state, purges, and mixed transactions, some rolled back.
// Rows are picked SKIP LOCKED so two loaders seldom wait on each other; an
// error (a rare deadlock, cancellation) only skips an op.
func (e *env) load(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, ops *atomic.Int64) {
	for ctx.Err() == nil {
		r := e.repeaters[rng.IntN(len(e.repeaters))]
		n := 1 + rng.IntN(10)
		var err error
		switch p := rng.IntN(100); {
		case p < 35:
			_, err = conn.Exec(ctx, insertSQL, r.domain, r.id, r.payload, 1, n)
		case p < 65:
			_, err = conn.Exec(ctx, loadMoveSQL, rng.Float64(), n)
		case p < 75:
			_, err = conn.Exec(ctx, loadTouchSQL, rng.Float64(), n)
		case p < 90:
			_, err = conn.Exec(ctx, loadPurgeSQL, rng.Float64(), n)
		default:
			err = loadMixedTx(ctx, conn, rng, r, n)
		}
		if err == nil {
			ops.Add(1)
		}
	}
}

func loadMixedTx(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, r envRepeater, n int) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{insertSQL, []any{r.domain, r.id, r.payload, 2, n}},
		{loadMoveSQL, []any{rng.Float64(), n}},
		{loadPurgeSQL, []any{rng.Float64(), n}},
		{insertSQL, []any{r.domain, r.id, r.payload, 4, n}},
	} {
		if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
			return err
		}
	}
	if rng.IntN(5) == 0 {
		return tx.Rollback(ctx) // must count nothing
	}
	return tx.Commit(ctx)
}

func TestExactAcrossKills(t *testing.T) {
	e := newEnv(t, 4)
	for _, r := range e.repeaters {
		e.insert(t, r, store.StatePending, 300)
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	var ops atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 {
		conn := e.conn(t)
		wg.Go(func() { e.load(ctx, conn, rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))), &ops) })
	}
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	const kills = 7
	batchSizes := []int{1, 20, 500, 5000}
	for i := range kills {
		before, _ := e.st.AppliedLSN(ctx, e.slot)
		c := e.startChild(t, batchSizes[i%len(batchSizes)])
		if i == 0 {
			// Right after the slot appears: likely mid-backfill.
			c.waitUntil(t, "the slot", func() bool {
				_, err := e.st.GetReplicationSlot(ctx, e.slot)
				return err == nil
			})
		} else {
			c.waitApplied(t, before+1) // it applied changes of its own
			// A random point in the stream; not a wait for anything.
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		c.kill(t)
	}
	stopLoad()
	wg.Wait()
	if ops.Load() < 100 {
		t.Fatalf("only %d load operations succeeded", ops.Load())
	}

	e.consumer(t, Config{})
	e.waitApplied(t, e.mark(t), 60*time.Second)
	t.Logf("%d SIGKILLs under %d load operations", kills, ops.Load())
	e.assertExact(t)
}
