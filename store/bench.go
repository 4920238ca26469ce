package store

// Bulk loads and read-outs for `repeaterd bench` (cmd/repeaterd/internal/bench).
// Nothing here runs in production; it lives in store because store is the
// only package that speaks SQL.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

var benchDatabaseName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// BenchDatabaseURL returns serverURL with its database replaced by name.
func BenchDatabaseURL(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", Errorf(EINVALID, "bad DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// BenchRecreateDatabase drops database name (and any replication slot left in
// it) on the server of serverURL, creates it empty and migrates it. It
// connects through the server's "postgres" database and returns the new
// database's URL.
func BenchRecreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	if err := BenchDropDatabase(ctx, serverURL, name); err != nil {
		return "", err
	}
	admin, err := benchAdmin(ctx, serverURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", fmt.Errorf("store: create database %s: %w", name, err)
	}
	dbURL, err := BenchDatabaseURL(serverURL, name)
	if err != nil {
		return "", err
	}
	if err := Migrate(ctx, dbURL); err != nil {
		return "", fmt.Errorf("store: migrate %s: %w", name, err)
	}
	return dbURL, nil
}

// BenchDropDatabase drops database name and the inactive replication slots
// that would pin it; a missing database is not an error.
func BenchDropDatabase(ctx context.Context, serverURL, name string) error {
	if !benchDatabaseName.MatchString(name) {
		return Errorf(EINVALID, "bad bench database name %q", name)
	}
	admin, err := benchAdmin(ctx, serverURL)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	// A slot pins its database; a walsender still streaming it (a consumer
	// being stopped) is ended first.
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE database = $1 AND active`, name); err != nil {
		return fmt.Errorf("store: end walsenders of %s: %w", name, err)
	}
	for i := 0; ; i++ {
		_, err := admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name)
		if err != nil {
			return fmt.Errorf("store: drop slots of %s: %w", name, err)
		}
		var left int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).
			Scan(&left); err != nil || left == 0 || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("store: drop database %s: %w", name, err)
	}
	return nil
}

func benchAdmin(ctx context.Context, serverURL string) (*pgx.Conn, error) {
	adminURL, err := BenchDatabaseURL(serverURL, "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("store: connect to the server's postgres database: %w", err)
	}
	return conn, nil
}

// BenchServerVersion returns the server's version string.
func (s *Store) BenchServerVersion(ctx context.Context) (string, error) {
	var v string
	return v, s.pool.QueryRow(ctx, `SHOW server_version`).Scan(&v)
}

// BenchHistoryParams shapes a history for the readiness benchmark.
type BenchHistoryParams struct {
	Domains   int
	Repeaters int
	Records   int
	// ReadyFraction of records are ready (3/4 Pending, 1/4 Fail); the rest
	// are completed (mostly Success, some Cancelled and PayloadRejected).
	ReadyFraction float64
	// Chunk is how many records one INSERT writes. Defaults to 1,000,000.
	Chunk int
	// Progress, when set, is told after each chunk.
	Progress func(loaded int)
}

// BenchSeedHistory loads repeaters and records as a long-running system
// would hold them, then ANALYZEs. Of the repeaters, 80 % are not backed off,
// 10 % were backed off until a minute ago (due) and 10 % are backed off for
// another hour; 1 % are paused. Ready records are due (next_check an hour
// ago), except half of the Fail ones, whose legacy retry is an hour away.
// Foreign-key triggers are skipped while loading (session_replication_role
// = replica) when the role may do so; the rows satisfy the keys by
// construction.
func (s *Store) BenchSeedHistory(ctx context.Context, p BenchHistoryParams) error {
	if p.Chunk <= 0 {
		p.Chunk = 1_000_000
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `INSERT INTO repeaters (domain, name, url, next_attempt_at, backoff_count, is_paused)
		SELECT 'dom' || (i % $1), 'r' || i, 'http://127.0.0.1:9/',
			CASE i % 10 WHEN 1 THEN now() - interval '1 minute' WHEN 2 THEN now() + interval '1 hour' END,
			CASE WHEN i % 10 IN (1, 2) THEN 1 ELSE 0 END,
			i % 100 = 50
		FROM generate_series(1, $2) i`, p.Domains, p.Repeaters); err != nil {
		return fmt.Errorf("store: seed repeaters: %w", err)
	}
	var payload int64
	if err := conn.QueryRow(ctx, `INSERT INTO payloads (domain, body) VALUES ('dom0', '{"seed":true}') RETURNING id`).
		Scan(&payload); err != nil {
		return err
	}
	_, noTriggersErr := conn.Exec(ctx, `SET session_replication_role = replica`)
	defer func() {
		if noTriggersErr == nil {
			_, _ = conn.Exec(context.WithoutCancel(ctx), `RESET session_replication_role`)
		}
	}()
	for from := 1; from <= p.Records; from += p.Chunk {
		to := min(from+p.Chunk-1, p.Records)
		_, err := conn.Exec(ctx, `WITH r AS (
				SELECT id, domain, (row_number() OVER (ORDER BY id) - 1) AS n FROM repeaters
			), g AS (
				SELECT i, random() AS x FROM generate_series($1::bigint, $2::bigint) i
			)
			INSERT INTO repeat_records (domain, repeater_id, payload_id, state, registered_at, next_check, attempt_count)
			SELECT r.domain, r.id, $3,
				CASE WHEN g.x < $5 * 0.75 THEN 1 WHEN g.x < $5 THEN 2
				     WHEN g.x < $5 + 0.01 THEN 8 WHEN g.x < $5 + 0.02 THEN 32 ELSE 4 END,
				now() - interval '30 days' + g.i * (interval '30 days' / $6),
				CASE WHEN g.x >= $5 * 0.875 AND g.x < $5 THEN now() + interval '1 hour' ELSE now() - interval '1 hour' END,
				CASE WHEN g.x < $5 * 0.75 THEN 0 ELSE 1 END
			FROM g JOIN r ON r.n = (g.i * 7919) % $4`,
			from, to, payload, p.Repeaters, p.ReadyFraction, p.Records)
		if err != nil {
			return fmt.Errorf("store: seed records %d-%d: %w", from, to, err)
		}
		if p.Progress != nil {
			p.Progress(to)
		}
	}
	if _, err := conn.Exec(ctx, `ANALYZE`); err != nil {
		return err
	}
	return nil
}

// BenchOrJoinReadinessSQL is the readiness query the dispatcher replaced: one
// join with an OR on next_attempt_at, as it was written but without its
// DISTINCT, so it returns one row per ready record. It does not test the
// domain flag nor next_check.
const BenchOrJoinReadinessSQL = `SELECT r.id, r.domain, r.max_workers, r.rate_limit_per_s, r.rate_burst, r.backoff_count
FROM repeaters r
JOIN repeat_records rr ON rr.repeater_id = r.id AND rr.state IN (1, 2)
WHERE NOT r.is_deleted AND NOT r.is_paused
  AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())`

// BenchQuery runs sql as the engine runs its queries (pgx's prepared
// statement cache: from a connection's sixth execution Postgres may switch
// to a generic plan), reads every row and returns how many there were.
func (s *Store) BenchQuery(ctx context.Context, sql string, args ...any) (int, error) {
	return s.benchQuery(ctx, sql, args...)
}

// BenchQueryCustomPlan is BenchQuery on an unnamed statement, which Postgres
// plans for the actual parameters on every execution.
func (s *Store) BenchQueryCustomPlan(ctx context.Context, sql string, args ...any) (int, error) {
	return s.benchQuery(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
}

func (s *Store) benchQuery(ctx context.Context, sql string, args ...any) (int, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// BenchPlanNode is one node of an EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) plan.
type BenchPlanNode struct {
	NodeType    string          `json:"Node Type"`
	Relation    string          `json:"Relation Name"`
	Index       string          `json:"Index Name"`
	Subplan     string          `json:"Subplan Name"`
	ActualRows  float64         `json:"Actual Rows"`
	ActualLoops float64         `json:"Actual Loops"`
	HeapFetches float64         `json:"Heap Fetches"`
	RowsRemoved float64         `json:"Rows Removed by Filter"`
	SharedHit   int64           `json:"Shared Hit Blocks"`
	SharedRead  int64           `json:"Shared Read Blocks"`
	Plans       []BenchPlanNode `json:"Plans"`
}

// BenchPlan is an analyzed plan with its timings.
type BenchPlan struct {
	Plan          BenchPlanNode `json:"Plan"`
	PlanningTime  float64       `json:"Planning Time"`
	ExecutionTime float64       `json:"Execution Time"`
}

// BenchExplain runs EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) on sql and
// returns the plan, and the same plan as text.
func (s *Store) BenchExplain(ctx context.Context, sql string, args ...any) (*BenchPlan, string, error) {
	var raw []byte
	if err := s.pool.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql, args...).Scan(&raw); err != nil {
		return nil, "", err
	}
	var plans []BenchPlan
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		return nil, "", fmt.Errorf("store: parse plan: %v", err)
	}
	rows, err := s.pool.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+sql, args...)
	if err != nil {
		return nil, "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, "", err
	}
	return &plans[0], strings.Join(lines, "\n"), nil
}

// BenchExplainGeneric is BenchExplain of the generic plan of sql as a
// prepared statement: the plan a cached statement may run with whatever
// parameters. It returns the plan and its text.
func (s *Store) BenchExplainGeneric(ctx context.Context, sql string, args ...any) (*BenchPlan, string, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, "", err
	}
	defer conn.Release()
	// EXECUTE takes its arguments as SQL expressions, not bind parameters.
	params := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			params[i] = "'" + v.UTC().Format("2006-01-02 15:04:05.999999") + "+00'::timestamptz"
		case bool, int, int64:
			params[i] = fmt.Sprint(v)
		default:
			return nil, "", Errorf(EINVALID, "bench: cannot pass a %T to EXECUTE", a)
		}
	}
	if _, err := conn.Exec(ctx, `PREPARE bench_generic AS `+sql); err != nil {
		return nil, "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `DEALLOCATE bench_generic`)
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		return nil, "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `RESET plan_cache_mode`)
	exec := `EXECUTE bench_generic(` + strings.Join(params, ", ") + `)`
	var raw []byte
	if err := conn.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+exec).Scan(&raw); err != nil {
		return nil, "", err
	}
	var plans []BenchPlan
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		return nil, "", fmt.Errorf("store: parse plan: %v", err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+exec)
	if err != nil {
		return nil, "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, "", err
	}
	return &plans[0], strings.Join(lines, "\n"), nil
}

// BenchCountReady returns how many ready records and distinct repeaters
// holding them there are.
func (s *Store) BenchCountReady(ctx context.Context) (records, repeaters int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT repeater_id) FROM repeat_records WHERE state IN (1, 2)`).
		Scan(&records, &repeaters)
	return records, repeaters, err
}

// BenchLoadReady registers perRepeater records for each repeater, interleaved
// across repeaters in id order (as records from many tenants arrive), in one
// transaction, then notifies the dispatcher. Each repeater's records share
// one payload of about bodyBytes bytes. It returns the number of records.
func (s *Store) BenchLoadReady(ctx context.Context, repeaterIDs []int64, perRepeater, bodyBytes int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `WITH r AS (
				SELECT id, domain, max_attempts FROM repeaters WHERE id = ANY($1)
			), p AS (
				INSERT INTO payloads (domain, content_type, body)
				SELECT r.domain, 'application/json',
					convert_to('{"bench":true,"repeater":' || r.id || ',"pad":"' || repeat('x', $3) || '"}', 'UTF8')
				FROM r ORDER BY r.id
				RETURNING id, domain, convert_from(body, 'UTF8')::jsonb->>'repeater' AS repeater
			), ins AS (
				INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries)
				SELECT r.domain, r.id, p.id, r.max_attempts
				FROM generate_series(1, $2) g
				CROSS JOIN r
				JOIN p ON p.repeater::bigint = r.id
				ORDER BY g, r.id
				RETURNING 1
			)
			SELECT count(*) FROM ins`, repeaterIDs, perRepeater, max(bodyBytes-40, 0)).Scan(&n)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
		return err
	})
	return n, err
}

// BenchStateCounts counts the records of the given repeaters (all when
// repeaterIDs is nil) by state.
func (s *Store) BenchStateCounts(ctx context.Context, repeaterIDs []int64) (map[State]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT state, count(*) FROM repeat_records
		WHERE $1::bigint[] IS NULL OR repeater_id = ANY($1) GROUP BY state`, repeaterIDs)
	if err != nil {
		return nil, err
	}
	out := map[State]int64{}
	var st State
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error { out[st] = n; return nil })
	return out, err
}

// BenchCountDone counts records of the given repeaters (all when nil) that
// are no longer ready.
func (s *Store) BenchCountDone(ctx context.Context, repeaterIDs []int64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM repeat_records
		WHERE ($1::bigint[] IS NULL OR repeater_id = ANY($1)) AND state NOT IN (1, 2)`, repeaterIDs).Scan(&n)
	return n, err
}

// BenchCountSuccess counts Success records of the given repeaters (all when nil).
func (s *Store) BenchCountSuccess(ctx context.Context, repeaterIDs []int64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM repeat_records
		WHERE ($1::bigint[] IS NULL OR repeater_id = ANY($1)) AND state = 4`, repeaterIDs).Scan(&n)
	return n, err
}

// BenchRepeaterAttempts returns how many attempts were made on a repeater's
// records, how many of its records were attempted, and its backoff state.
func (s *Store) BenchRepeaterAttempts(ctx context.Context, repeaterID int64) (attempts, records int64, backoffCount int, nextAttemptAt *time.Time, err error) {
	err = s.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM repeat_record_attempts a JOIN repeat_records r ON r.id = a.record_id WHERE r.repeater_id = $1),
			(SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND attempt_count > 0),
			backoff_count, next_attempt_at
		FROM repeaters WHERE id = $1`, repeaterID).Scan(&attempts, &records, &backoffCount, &nextAttemptAt)
	return attempts, records, backoffCount, nextAttemptAt, err
}

// BenchRecordTimes returns, for each record id, when it was registered and
// when its first attempt began (zero if none yet).
func (s *Store) BenchRecordTimes(ctx context.Context, ids []int64) (registered, firstAttempt map[int64]time.Time, err error) {
	rows, err := s.pool.Query(ctx, `SELECT r.id, r.registered_at,
			(SELECT min(a.created_at) FROM repeat_record_attempts a WHERE a.record_id = r.id)
		FROM repeat_records r WHERE r.id = ANY($1)`, ids)
	if err != nil {
		return nil, nil, err
	}
	registered, firstAttempt = map[int64]time.Time{}, map[int64]time.Time{}
	var id int64
	var reg time.Time
	var first *time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &reg, &first}, func() error {
		registered[id] = reg
		if first != nil {
			firstAttempt[id] = *first
		}
		return nil
	})
	return registered, firstAttempt, err
}

// BenchChurnParams is one transaction of the stats benchmark's load.
type BenchChurnParams struct {
	RepeaterIDs []int64 // new records are spread over these
	Inserts     int
	// Complete moves these records to Success (even ids) or Fail (odd).
	Complete []int64
	// SyncCommit sets synchronous_commit = on for the transaction, whatever
	// the server's setting.
	SyncCommit bool
}

// BenchChurn runs one transaction of the stats load. It returns the ids it
// inserted and the WAL insert position read just before the commit: the
// transaction's end LSN is past it, every earlier transaction's before it.
func (s *Store) BenchChurn(ctx context.Context, p BenchChurnParams) (lsn string, inserted []int64, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if p.SyncCommit {
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
				return err
			}
		}
		if p.Inserts > 0 {
			rows, err := tx.Query(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id)
				SELECT r.domain, r.id, (SELECT min(id) FROM payloads) FROM generate_series(1, $2) g
				JOIN repeaters r ON r.id = ($1::bigint[])[1 + (g + (random() * 1000)::int) % cardinality($1::bigint[])]
				RETURNING id`, p.RepeaterIDs, p.Inserts)
			if err != nil {
				return err
			}
			if inserted, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return err
			}
		}
		if len(p.Complete) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE repeat_records SET state = CASE WHEN id % 2 = 0 THEN 4 ELSE 2 END,
					attempt_count = attempt_count + 1
				WHERE id = ANY($1) AND state IN (1, 2)`, p.Complete); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn)
	})
	return lsn, inserted, err
}

// BenchAppliedLSN returns the stats' applied LSN as text, "" when no slot
// feeds them yet.
func (s *Store) BenchAppliedLSN(ctx context.Context) (string, error) {
	var lsn string
	err := s.pool.QueryRow(ctx, `SELECT applied_lsn::text FROM stats_progress`).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return lsn, err
}

// BenchLSNReached reports whether the stats have applied WAL up to lsn.
func (s *Store) BenchLSNReached(ctx context.Context, lsn string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT COALESCE((SELECT applied_lsn >= $1::pg_lsn FROM stats_progress), false)`, lsn).
		Scan(&ok)
	return ok, err
}

// BenchRepeaterIDs returns up to limit active repeater ids in id order.
func (s *Store) BenchRepeaterIDs(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM repeaters WHERE NOT is_deleted ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// BenchCommitSettings returns the server's synchronous_commit and
// wal_writer_delay.
func (s *Store) BenchCommitSettings(ctx context.Context) (syncCommit, walWriterDelay string, err error) {
	err = s.pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('wal_writer_delay')`).
		Scan(&syncCommit, &walWriterDelay)
	return syncCommit, walWriterDelay, err
}

// BenchVacuum runs VACUUM (ANALYZE) on repeat_records, as autovacuum would
// in time: it sets the visibility map that index-only scans rely on.
func (s *Store) BenchVacuum(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `VACUUM (ANALYZE) repeat_records`)
	return err
}
