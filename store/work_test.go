package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// workDB is a store with n repeaters (domain "acme") and one payload.
func workDB(t *testing.T, n int) (*store.Store, []int64, int64) {
	t.Helper()
	s := storetest.NewStore(t)
	rows, err := s.Pool().Query(ctx, `INSERT INTO repeaters (domain, name, url)
		SELECT 'acme', 'r' || i, 'http://127.0.0.1:1/' FROM generate_series(1, $1) i RETURNING id`, n)
	ids, err := collect(rows, err)
	if err != nil {
		t.Fatal(err)
	}
	var payload int64
	if err := s.Pool().QueryRow(ctx, `INSERT INTO payloads (domain, body) VALUES ('acme', '{}') RETURNING id`).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	return s, ids, payload
}

func collect(rows pgx.Rows, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertRecords inserts, in one statement, perRepeater records in state for
// each of ids.
func insertRecords(t *testing.T, db execer, payload int64, ids []int64, perRepeater, state int) {
	t.Helper()
	if _, err := db.Exec(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id, state, next_check)
		SELECT 'acme', r, $2, $4, now() - interval '1 minute'
		FROM unnest($1::bigint[]) r, generate_series(1, $3)`, ids, payload, perRepeater, state); err != nil {
		t.Fatal(err)
	}
}

func workSet(t *testing.T, s *store.Store) []int64 {
	t.Helper()
	ids, err := collect(s.Pool().Query(ctx, `SELECT repeater_id FROM repeater_work ORDER BY 1`))
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func readySet(t *testing.T, s *store.Store) []int64 {
	t.Helper()
	groups, err := s.ReadyRepeaters(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, g := range groups {
		for _, r := range g.Repeaters {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// repeatersLookedAt runs the readiness query under EXPLAIN ANALYZE and
// returns how many repeaters rows its scans of repeaters read (returned or
// removed by a filter), over all loops: the repeaters a pass looks at.
func repeatersLookedAt(t *testing.T, s *store.Store) int {
	t.Helper()
	sql, args := s.ReadyRepeatersSQL(time.Now())
	var out []byte
	if err := s.Pool().QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+sql, args...).Scan(&out); err != nil {
		t.Fatal(err)
	}
	type node struct {
		Relation string  `json:"Relation Name"`
		Rows     float64 `json:"Actual Rows"`
		Removed  float64 `json:"Rows Removed by Filter"`
		Loops    float64 `json:"Actual Loops"`
		Plans    []node  `json:"Plans"`
	}
	var plans []struct{ Plan node }
	if err := json.Unmarshal(out, &plans); err != nil {
		t.Fatal(err)
	}
	read := 0.0
	var walk func(n node)
	walk = func(n node) {
		if n.Relation == "repeaters" {
			read += (n.Rows + n.Removed) * n.Loops
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(plans[0].Plan)
	return int(read)
}

// The readiness pass probes the repeaters with work, not every repeater:
// 2,000 repeaters with history, 3 with a backlog of ready records (as the
// issue's 1 % with 2,000 each): 3 repeaters looked at, not 2,000.
func TestReadinessProbesOnlyRepeatersWithWork(t *testing.T) {
	s, ids, payload := workDB(t, 2000)
	insertRecords(t, s.Pool(), payload, ids, 3, 4) // completed history everywhere
	busy := []int64{ids[5], ids[500], ids[1999]}
	insertRecords(t, s.Pool(), payload, busy, 2000, 1)
	if _, err := s.Pool().Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	if got := workSet(t, s); !slices.Equal(got, busy) {
		t.Fatalf("work set %v, want %v", got, busy)
	}
	if got := readySet(t, s); !slices.Equal(got, busy) {
		t.Fatalf("ready %v, want %v", got, busy)
	}
	if n := repeatersLookedAt(t, s); n > len(busy) {
		t.Fatalf("the readiness query looked at %d repeaters; %d have ready records", n, len(busy))
	}

	// Once a repeater's work ends it leaves the set; a requeue brings it back.
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET state = 4 WHERE repeater_id = $1`, busy[0]); err != nil {
		t.Fatal(err)
	}
	pruned, err := s.PruneIdleRepeaters(ctx, 0)
	if err != nil || !slices.Equal(pruned, busy[:1]) {
		t.Fatalf("pruned %v (%v), want %v", pruned, err, busy[:1])
	}
	if got := workSet(t, s); !slices.Equal(got, busy[1:]) {
		t.Fatalf("work set after prune %v, want %v", got, busy[1:])
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET state = 1
		WHERE id = (SELECT min(id) FROM repeat_records WHERE repeater_id = $1)`, busy[0]); err != nil {
		t.Fatal(err)
	}
	if got := readySet(t, s); !slices.Equal(got, busy) {
		t.Fatalf("ready after requeue %v, want %v", got, busy)
	}
}

// Migration 00120 puts every existing repeater in the set; pruning, bounded
// per call, takes the idle ones out.
func TestPruneIsBoundedPerCall(t *testing.T) {
	s, ids, _ := workDB(t, 30)
	if _, err := s.Pool().Exec(ctx, `INSERT INTO repeater_work SELECT id FROM repeaters ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	pruned, err := s.PruneIdleRepeaters(ctx, 20)
	if err != nil || !slices.Equal(pruned, ids[:20]) {
		t.Fatalf("first prune %v, %v", pruned, err)
	}
	pruned, err = s.PruneIdleRepeaters(ctx, 20)
	if err != nil || !slices.Equal(pruned, ids[20:]) {
		t.Fatalf("second prune %v, %v", pruned, err)
	}
	if pruned, err := s.PruneIdleRepeaters(ctx, 20); err != nil || len(pruned) != 0 {
		t.Fatalf("third prune %v, %v", pruned, err)
	}
}

// A record inserted but not committed while a prune runs: the prune skips
// its repeater (the writer holds it), and the record is ready once committed.
func TestPruneSkipsRepeaterWithUncommittedRecord(t *testing.T) {
	s, ids, payload := workDB(t, 2)
	x := ids[0]
	insertRecords(t, s.Pool(), payload, []int64{x}, 1, 1)
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET state = 4`); err != nil {
		t.Fatal(err)
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	insertRecords(t, tx, payload, []int64{x}, 1, 1)
	if pruned, err := s.PruneIdleRepeaters(ctx, 0); err != nil || len(pruned) != 0 {
		t.Fatalf("pruned %v (%v) while a record of it was being written", pruned, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readySet(t, s); !slices.Equal(got, []int64{x}) {
		t.Fatalf("ready %v, want [%d]", got, x)
	}
}

// A record committed after the pruner chose its candidates but before it
// locked them: the second look sees it.
func TestPruneLooksAgainAfterLocking(t *testing.T) {
	s, ids, payload := workDB(t, 1)
	x := ids[0]
	if _, err := s.Pool().Exec(ctx, `INSERT INTO repeater_work SELECT id FROM repeaters ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	defer store.SetPruneHook(func(stage string) {
		if stage == "candidates" {
			insertRecords(t, s.Pool(), payload, []int64{x}, 1, 1)
		}
	})()
	if pruned, err := s.PruneIdleRepeaters(ctx, 0); err != nil || len(pruned) != 0 {
		t.Fatalf("pruned %v (%v): a record committed before the lock was missed", pruned, err)
	}
	if got := readySet(t, s); !slices.Equal(got, []int64{x}) {
		t.Fatalf("ready %v, want [%d]", got, x)
	}
}

// A record inserted while the pruner holds its lock: the writer waits for
// the prune to commit, then puts the repeater back in the set itself.
func TestRecordInsertedDuringPruneSetsTheFlagAgain(t *testing.T) {
	s, ids, payload := workDB(t, 1)
	x := ids[0]
	if _, err := s.Pool().Exec(ctx, `INSERT INTO repeater_work SELECT id FROM repeaters ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	inserted := make(chan error, 1)
	defer store.SetPruneHook(func(stage string) {
		if stage != "locked" {
			return
		}
		go func() {
			_, err := s.Pool().Exec(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id) VALUES ('acme', $1, $2)`, x, payload)
			inserted <- err
		}()
		waitForLockWait(t, s)
	})()
	pruned, err := s.PruneIdleRepeaters(ctx, 0)
	if err != nil || !slices.Equal(pruned, []int64{x}) {
		t.Fatalf("pruned %v (%v), want [%d]: the insert should have waited", pruned, err, x)
	}
	if err := <-inserted; err != nil {
		t.Fatal(err)
	}
	if got := workSet(t, s); !slices.Equal(got, []int64{x}) {
		t.Fatalf("work set %v, want [%d]", got, x)
	}
	if got := readySet(t, s); !slices.Equal(got, []int64{x}) {
		t.Fatalf("ready %v, want [%d]", got, x)
	}
}

// Writers insert, complete and requeue records on a few repeaters, alone or
// in transactions held open a random while, as a pruner runs beside them.
// At every moment a committed ready record's repeater is in the work set;
// once all is quiet, one prune leaves exactly the repeaters with work.
func TestWorkSetInvariantUnderRandomInterleavings(t *testing.T) {
	if testing.Short() {
		t.Skip("randomized concurrency")
	}
	s, ids, payload := workDB(t, 6)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const writers, opsPerWriter = 4, 150
	stop := make(chan struct{})
	var bg sync.WaitGroup
	var violations []string
	var mu sync.Mutex
	fail := func(msg string) {
		mu.Lock()
		violations = append(violations, msg)
		mu.Unlock()
	}
	bg.Add(2)
	go func() { // the pruner
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.PruneIdleRepeaters(ctx, 0); err != nil {
				fail("prune: " + err.Error())
				return
			}
		}
	}()
	go func() { // the checker: one snapshot per look
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			missing, err := collect(s.Pool().Query(ctx, `SELECT DISTINCT rr.repeater_id FROM repeat_records rr
				WHERE rr.state IN (1, 2) AND NOT EXISTS (SELECT 1 FROM repeater_work w WHERE w.repeater_id = rr.repeater_id)`))
			if err != nil {
				fail("check: " + err.Error())
				return
			}
			if len(missing) > 0 {
				fail("ready records on repeaters out of the work set: " + fmtIDs(missing))
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range opsPerWriter {
				if err := randomWrite(s.Pool(), rng, ids, payload); err != nil {
					fail("write: " + err.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	if len(violations) > 0 {
		t.Fatalf("%d violations (seed %d), first: %s", len(violations), seed, violations[0])
	}
	if _, err := s.PruneIdleRepeaters(ctx, 0); err != nil {
		t.Fatal(err)
	}
	want, err := collect(s.Pool().Query(ctx, `SELECT DISTINCT repeater_id FROM repeat_records WHERE state IN (1, 2) ORDER BY 1`))
	if err != nil {
		t.Fatal(err)
	}
	if got := workSet(t, s); !slices.Equal(got, want) {
		t.Fatalf("work set %v once quiet, repeaters with ready records %v (seed %d)", got, want, seed)
	}
	if got := readySet(t, s); !slices.Equal(got, want) {
		t.Fatalf("ready %v, want %v (seed %d)", got, want, seed)
	}
}

// randomWrite makes one random change, sometimes several in a transaction
// held open for a random few milliseconds.
func randomWrite(pool *pgxpool.Pool, rng *rand.Rand, ids []int64, payload int64) error {
	pick := func() []int64 {
		n := 1 + rng.IntN(3)
		out := make([]int64, n)
		for i := range out {
			out[i] = ids[rng.IntN(len(ids))]
		}
		return out
	}
	step := func(tx pgx.Tx) error {
		var err error
		switch rng.IntN(3) {
		case 0: // register, one statement over several repeaters
			_, err = tx.Exec(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id)
				SELECT 'acme', r, $2 FROM unnest($1::bigint[]) r`, pick(), payload)
		case 1: // complete everything ready of one repeater
			_, err = tx.Exec(ctx, `UPDATE repeat_records SET state = 4 WHERE repeater_id = $1 AND state IN (1, 2)`, pick()[0])
		default: // requeue one completed record
			_, err = tx.Exec(ctx, `UPDATE repeat_records SET state = 2 WHERE id = (
				SELECT id FROM repeat_records WHERE repeater_id = $1 AND state = 4 LIMIT 1)`, pick()[0])
		}
		return err
	}
	steps, hold := 1+rng.IntN(3), rng.IntN(4)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for range steps {
			if err := step(tx); err != nil {
				return err
			}
			if hold > 0 { // widen the window for the pruner to land in
				if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, float64(hold)/1000); err != nil {
					return err
				}
			}
		}
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
		return nil // a deadlock between two writers' UPDATEs rolls one back: not the set's concern
	}
	return err
}

func fmtIDs(ids []int64) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// Registrations racing on an idle repeater (each holding FOR SHARE on it)
// all succeed and leave it in the set: adding to the set takes no lock that
// conflicts with theirs.
func TestConcurrentRegistrationsOnAnIdleRepeater(t *testing.T) {
	s, ids, _ := workDB(t, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.RegisterRecord(ctx, store.RegisterParams{RepeaterID: ids[0], Body: []byte(`{}`)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := workSet(t, s); !slices.Equal(got, ids) {
		t.Fatalf("work set %v, want %v", got, ids)
	}
}

// The domain flag, read once per query: explicit rows win over the default
// either way, and a domain without a row follows the default.
func TestReadinessFollowsDomainFlagsAndDefault(t *testing.T) {
	for _, legacyByDefault := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy by default %v", legacyByDefault), func(t *testing.T) {
			s, err := store.OpenWith(ctx, storetest.NewDB(t), store.Options{LegacyByDefault: legacyByDefault})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			on, off, unset := newRepeater(t, s, "on"), newRepeater(t, s, "off"), newRepeater(t, s, "unset")
			for _, r := range []*store.Repeater{on, off, unset} {
				register(t, s, r.ID)
			}
			if err := s.SetDomainFlag(ctx, "on", store.FlagProcessRepeaters, true); err != nil {
				t.Fatal(err)
			}
			if err := s.SetDomainFlag(ctx, "off", store.FlagProcessRepeaters, false); err != nil {
				t.Fatal(err)
			}
			want := []int64{on.ID}
			if !legacyByDefault {
				want = append(want, unset.ID)
			}
			if got := readySet(t, s); !slices.Equal(got, want) {
				t.Fatalf("ready %v, want %v", got, want)
			}
		})
	}
}
