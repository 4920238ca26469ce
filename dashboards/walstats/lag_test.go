package walstats

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"repeaterd/store"
)

// Lag and throughput.

func TestLagUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	r := measureLag(t, 2000, 5*time.Second)
	t.Logf("stats lag at %.0f changes/s (%d transactions): commit→applied p50 %s, p99 %s, max %s; lag_bytes max %d",
		r.rate, r.txs, r.p50, r.p99, r.max, r.maxLagBytes)
}

func BenchmarkLag(b *testing.B) {
	for range b.N {
		r := measureLag(b, 2000, 10*time.Second)
		b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(r.rate, "changes/s")
	}
}

type lagFigures struct {
	rate          float64
	txs           int
	p50, p99, max time.Duration
	maxLagBytes   int64
}

// measureLag writes `rate` changes/s (every 10 ms a transaction inserting
// half and moving half) for d, and collects each transaction's delay from
// commit to applied.
func measureLag(tb testing.TB, rate int, d time.Duration) lagFigures {
	e := newEnv(tb, 2)
	var mu sync.Mutex
	var delays []time.Duration
	c := e.newConsumer(tb, Config{StandbyInterval: DefaultStandbyInterval})
	c.observeDelay = func(d time.Duration) { mu.Lock(); delays = append(delays, d); mu.Unlock() }
	if err := c.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Stop(context.Background()) })
	e.waitApplied(tb, e.mark(tb), 30*time.Second)
	mu.Lock()
	delays = nil
	mu.Unlock()

	conn := e.conn(tb)
	// scripts/services.sh runs Postgres with synchronous_commit = off, where
	// the WAL writer flushes commits (and so wakes the walsender) only every
	// wal_writer_delay (200 ms); production commits flush at once.
	execOn(tb, conn, `SET synchronous_commit = on`)
	ctx := context.Background()
	perTx := rate / 100 / 2
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var res lagFigures
	began := time.Now()
	for i := 0; time.Since(began) < d; i++ {
		<-tick.C
		r := e.repeaters[i%len(e.repeaters)]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insertSQL, r.domain, r.id, r.payload, 1, perTx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE repeat_records SET state = 4 WHERE id IN
				(SELECT id FROM repeat_records WHERE state = 1 ORDER BY id LIMIT $1)`, perTx)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		res.txs++
		if i%10 == 0 {
			if lag, err := e.st.StatsLagBytes(ctx, e.slot); err == nil {
				res.maxLagBytes = max(res.maxLagBytes, lag)
			}
		}
	}
	res.rate = float64(res.txs*perTx*2) / time.Since(began).Seconds()
	e.waitApplied(tb, e.mark(tb), 30*time.Second)
	e.assertExact(tb)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(delays)
	if len(delays) < res.txs {
		tb.Fatalf("observed %d transactions, wrote %d", len(delays), res.txs)
	}
	res.p50, res.p99, res.max = delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1]
	return res
}

func TestApplyThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	for _, perTx := range []int{10, 1000} {
		rate := measureApply(t, 20_000, perTx)
		t.Logf("stats apply: 20000 updates in transactions of %d: %.0f changes/s", perTx, rate)
	}
}

func BenchmarkApply(b *testing.B) {
	for _, perTx := range []int{10, 1000} {
		b.Run(fmt.Sprintf("updates=100k/tx=%d", perTx), func(b *testing.B) {
			for range b.N {
				b.ReportMetric(measureApply(b, 100_000, perTx), "changes/s")
			}
		})
	}
}

// measureApply writes n record updates, perTx to a transaction, while the
// consumer is stopped, then times its catching up: the apply throughput,
// server-side decoding included.
func measureApply(tb testing.TB, n, perTx int) float64 {
	e := newEnv(tb, 2)
	ctx := context.Background()
	for i, r := range e.repeaters {
		e.insert(tb, r, store.StatePending, n/len(e.repeaters)+i)
	}
	first := e.newConsumer(tb, Config{})
	if err := first.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	e.waitApplied(tb, e.mark(tb), 60*time.Second)
	_ = first.Stop(context.Background())

	conn := e.conn(tb)
	execOn(tb, conn, `SET synchronous_commit = off`)
	var lo int64
	if err := conn.QueryRow(ctx, `SELECT min(id) FROM repeat_records`).Scan(&lo); err != nil {
		tb.Fatal(err)
	}
	for from := lo; from < lo+int64(n); from += int64(perTx) {
		execOn(tb, conn, `UPDATE repeat_records SET state = 4 WHERE id >= $1 AND id < $2`, from, from+int64(perTx))
	}
	target := e.mark(tb)

	c := e.newConsumer(tb, Config{})
	began := time.Now()
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	defer c.Stop(context.Background())
	e.waitApplied(tb, target, 5*time.Minute)
	rate := metricValue(tb, c.metrics.appliedChanges) / time.Since(began).Seconds()
	e.assertExact(tb)
	return rate
}
