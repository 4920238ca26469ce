package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bulk jobs: an operator's requeue, cancel or resend of many records, by a
// selection of ids or by a filter ("all N matching"). A job is a bulk_jobs
// row; the bulk_job task (tasks/bulkjob.go) runs it chunk by chunk with
// RunBulkChunk. Each chunk takes the next records past the job's cursor,
// changes them with the same statement semantics as RequeueRecord and
// CancelRecord (a record being sent gets requested_state, applied when its
// claim ends; one with a request waiting is skipped), and moves the cursor
// and the counts in the same transaction: a task killed midway resumes
// where the last commit left it and counts nothing twice.

// BulkAction is what a bulk job does to each record.
type BulkAction string

// Bulk actions.
const (
	// BulkRequeue makes records due again, as RequeueRecord, except those
	// delivered (Success, Empty), which are skipped: "requeue all" over a
	// filter must not send a repeater's history again.
	BulkRequeue BulkAction = "requeue"
	// BulkCancel cancels ready records, as CancelRecord.
	BulkCancel BulkAction = "cancel"
	// BulkResend requeues every record it meets, delivered ones included:
	// they are sent again.
	BulkResend BulkAction = "resend"
)

// Bulk job states.
const (
	BulkQueued  = "queued"
	BulkRunning = "running"
	BulkDone    = "done"
	BulkFailed  = "failed"
)

// Limits of bulk jobs.
const (
	// MaxBulkIDs is the most records a job by ids may name.
	MaxBulkIDs = 10_000
	// DefaultBulkChunk is how many records one RunBulkChunk changes.
	DefaultBulkChunk = 500
	// BulkEstimateCap bounds the count a job's total is estimated with when
	// the WAL stats cannot give it.
	BulkEstimateCap = 100_000
)

// The range of dates a filter may name: anything outside is a mistake (a
// year 0001 or 9999), refused rather than run.
var (
	minFilterTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxFilterTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// BulkFilter selects records of repeaters that are not deleted. Zero fields
// match anything; at least a repeater or a domain is required.
type BulkFilter struct {
	RepeaterID int64  `json:"repeater_id,omitempty"`
	Domain     string `json:"domain,omitempty"`
	// States are the states to match; none = every state.
	States []State `json:"states,omitempty"`
	// Key matches a record whose payload id (digits) or idempotency key it is.
	Key           string     `json:"key,omitempty"`
	CreatedAfter  *time.Time `json:"created_after,omitempty"`  // registered at or after
	CreatedBefore *time.Time `json:"created_before,omitempty"` // registered before
}

// Validate refuses a filter that cannot mean what its caller wants.
func (f *BulkFilter) Validate() error {
	if f.RepeaterID < 0 {
		return Errorf(EINVALID, "repeater_id must be a positive integer")
	}
	if f.RepeaterID == 0 && f.Domain == "" {
		return Errorf(EINVALID, "a filter needs a repeater_id or a domain")
	}
	if f.Domain != "" {
		if err := ValidateDomain(f.Domain); err != nil {
			return err
		}
	}
	if err := ValidateText("payload_id", f.Key, 255); err != nil {
		return err
	}
	for _, s := range f.States {
		if s.String() == "unknown" {
			return Errorf(EINVALID, "unknown state %d", s)
		}
	}
	for _, t := range []*time.Time{f.CreatedAfter, f.CreatedBefore} {
		if t != nil && (t.Before(minFilterTime) || !t.Before(maxFilterTime)) {
			return Errorf(EINVALID, "dates must be from %s to %s", minFilterTime.Format("2006-01-02"), maxFilterTime.Format("2006-01-02"))
		}
	}
	if f.CreatedAfter != nil && f.CreatedBefore != nil && !f.CreatedAfter.Before(*f.CreatedBefore) {
		return Errorf(EINVALID, "created_after must be before created_before")
	}
	return nil
}

// states returns the states the filter matches, every state when none is given.
func (f *BulkFilter) states() []State {
	if len(f.States) == 0 {
		return AllStates
	}
	return f.States
}

// keyArgs returns the payload id and the idempotency key the filter's Key
// stands for (0 and "" when there is no Key).
func (f *BulkFilter) keyArgs() (payloadID int64, key *string) {
	if f.Key == "" {
		return 0, nil
	}
	if id, err := strconv.ParseInt(f.Key, 10, 64); err == nil && id > 0 {
		payloadID = id
	}
	return payloadID, &f.Key
}

// BulkJob is a bulk_jobs row. Total is an estimate (the WAL stats, or a
// bounded count) until the job is done, then the records it processed;
// Processed counts the records it has looked at, Changed those it changed
// (or left a request on, for a record being sent); the rest were skipped.
type BulkJob struct {
	ID         int64
	Action     BulkAction
	State      string
	Domain     string // the scope it was made in; "" = every domain
	Filter     BulkFilter
	IDs        []int64
	Total      int64
	Processed  int64
	Changed    int64
	Error      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
	cursorRep  int64
	cursorRec  int64
}

// Skipped is how many records the job looked at and left alone.
func (j *BulkJob) Skipped() int64 { return j.Processed - j.Changed }

// Finished reports whether the job is done or failed.
func (j *BulkJob) Finished() bool { return j.State == BulkDone || j.State == BulkFailed }

// CreateBulkJobParams describes a job: IDs or a Filter, not both.
type CreateBulkJobParams struct {
	Action BulkAction
	// Scope is the domain the caller may touch, "" for every domain: a
	// record of another domain is as unknown as one that does not exist.
	Scope  string
	Filter *BulkFilter
	IDs    []int64
}

// CreateBulkJob validates p and stores a queued job with its estimated
// total. A job by ids must name records that exist in scope (ENOTFOUND
// otherwise), at most MaxBulkIDs of them. Nothing is changed until the job
// runs.
func (s *Store) CreateBulkJob(ctx context.Context, p CreateBulkJobParams) (*BulkJob, error) {
	switch p.Action {
	case BulkRequeue, BulkCancel, BulkResend:
	default:
		return nil, Errorf(EINVALID, "unknown bulk action %q (requeue, cancel or resend)", p.Action)
	}
	if (p.Filter == nil) == (len(p.IDs) == 0) {
		return nil, Errorf(EINVALID, "give either a filter or a non-empty list of ids")
	}
	job := &BulkJob{Action: p.Action, Domain: p.Scope}
	var err error
	if p.Filter != nil {
		job.Filter = *p.Filter
		if job.Filter.Domain == "" {
			job.Filter.Domain = p.Scope
		}
		if p.Scope != "" && job.Filter.Domain != p.Scope {
			return nil, Errorf(ENOTFOUND, "domain %q not found", job.Filter.Domain)
		}
		if err := job.Filter.Validate(); err != nil {
			return nil, err
		}
		if err := s.filterRepeaterInScope(ctx, &job.Filter); err != nil {
			return nil, err
		}
		job.Total, _, err = s.CountMatching(ctx, job.Filter, BulkEstimateCap)
	} else {
		job.IDs, err = s.checkBulkIDs(ctx, p.IDs, p.Scope)
		job.Total = int64(len(job.IDs))
	}
	if err != nil {
		return nil, err
	}
	filter, err := json.Marshal(job.Filter)
	if err != nil {
		return nil, err
	}
	err = s.pool.QueryRow(ctx, `INSERT INTO bulk_jobs (action, domain, filter, ids, total)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+bulkJobColumns,
		job.Action, job.Domain, filter, job.IDs, job.Total).Scan(job.scanTargets()...)
	return job, err
}

// filterRepeaterInScope checks that the filter's repeater exists, is not
// deleted and belongs to the filter's domain when one is given.
func (s *Store) filterRepeaterInScope(ctx context.Context, f *BulkFilter) error {
	if f.RepeaterID == 0 {
		return nil
	}
	var domain string
	err := s.pool.QueryRow(ctx, `SELECT domain FROM repeaters WHERE id = $1 AND NOT is_deleted`, f.RepeaterID).Scan(&domain)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && f.Domain != "" && domain != f.Domain {
		return Errorf(ENOTFOUND, "repeater %d not found", f.RepeaterID)
	}
	return err
}

// checkBulkIDs returns ids sorted and unique, if every one names a record
// in scope.
func (s *Store) checkBulkIDs(ctx context.Context, ids []int64, scope string) ([]int64, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > MaxBulkIDs {
		return nil, Errorf(EINVALID, "at most %d ids at once; use a filter for more", MaxBulkIDs)
	}
	if ids[0] < 1 {
		return nil, Errorf(EINVALID, "ids must be positive integers")
	}
	rows, err := s.pool.Query(ctx, `SELECT i FROM unnest($1::bigint[]) i
		WHERE NOT EXISTS (SELECT 1 FROM repeat_records rr WHERE rr.id = i AND ($2 = '' OR rr.domain = $2))
		ORDER BY i LIMIT 5`, ids, scope)
	if err != nil {
		return nil, err
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, Errorf(ENOTFOUND, "records not found: %v", missing)
	}
	return ids, nil
}

// CountMatching counts the records f matches, up to limit: exact from the
// WAL stats when they are current and f filters on no key or date, else a
// count bounded by limit over the (repeater, state) index. exact is false
// when the count stopped at limit.
func (s *Store) CountMatching(ctx context.Context, f BulkFilter, limit int64) (n int64, exact bool, err error) {
	if f.Key == "" && f.CreatedAfter == nil && f.CreatedBefore == nil {
		if feed, err := s.GetStatsFeed(ctx); err != nil {
			return 0, false, err
		} else if feed.Current() {
			err = s.pool.QueryRow(ctx, `SELECT coalesce(sum(st.count), 0)::bigint
				FROM repeat_record_stats st JOIN repeaters r ON r.id = st.repeater_id AND NOT r.is_deleted
				WHERE ($1 = 0 OR st.repeater_id = $1) AND ($2 = '' OR st.domain = $2) AND st.state = ANY($3)`,
				f.RepeaterID, f.Domain, f.states()).Scan(&n)
			return n, true, err
		}
	}
	payloadID, key := f.keyArgs()
	err = s.pool.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT 1 FROM repeaters r
			CROSS JOIN unnest($3::smallint[]) s(state)
			CROSS JOIN LATERAL (
				SELECT 1 FROM repeat_records rr
				WHERE rr.repeater_id = r.id AND rr.state = s.state
				  AND `+sqlBulkRecordFilter+`
				LIMIT $8
			) x
			WHERE NOT r.is_deleted AND ($1 = 0 OR r.id = $1) AND ($2 = '' OR r.domain = $2)
			LIMIT $8
		) c`, f.RepeaterID, f.Domain, f.states(), f.CreatedAfter, f.CreatedBefore, payloadID, key, limit).Scan(&n)
	return n, n < limit, err
}

// sqlBulkRecordFilter is a filter's conditions on one record rr beyond its
// repeater and state: $4 created after, $5 created before, $6 payload id,
// $7 idempotency key (NULL when the filter has no key).
const sqlBulkRecordFilter = `($4::timestamptz IS NULL OR rr.registered_at >= $4)
	AND ($5::timestamptz IS NULL OR rr.registered_at < $5)
	AND ($7::text IS NULL OR rr.payload_id = $6 OR rr.idempotency_key = $7)`

const bulkJobColumns = `id, action, state, domain, filter, ids, total, processed, changed, error,
	created_at, updated_at, finished_at, cursor_repeater, cursor_record`

func (j *BulkJob) scanTargets() []any {
	return []any{&j.ID, &j.Action, &j.State, &j.Domain, &j.Filter, &j.IDs, &j.Total, &j.Processed, &j.Changed,
		&j.Error, &j.CreatedAt, &j.UpdatedAt, &j.FinishedAt, &j.cursorRep, &j.cursorRec}
}

// GetBulkJob returns a job; one outside scope ("" = every domain) is
// ENOTFOUND, as one that does not exist.
func (s *Store) GetBulkJob(ctx context.Context, id int64, scope string) (*BulkJob, error) {
	var j BulkJob
	err := s.pool.QueryRow(ctx, `SELECT `+bulkJobColumns+` FROM bulk_jobs WHERE id = $1 AND ($2 = '' OR domain = $2)`,
		id, scope).Scan(j.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "job %d not found", id)
	}
	return &j, err
}

// FailBulkJob ends a job that cannot go on, saying why.
func (s *Store) FailBulkJob(ctx context.Context, id int64, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE bulk_jobs SET state = 'failed', error = $2, updated_at = now(), finished_at = now()
		WHERE id = $1 AND state IN ('queued', 'running')`, id, Truncate(reason, 1024, "…"))
	return err
}

// RunBulkChunk runs the next chunk of at most limit records of job id
// (DefaultBulkChunk when limit <= 0) and returns the job as that chunk
// left it; the job is finished when nothing is left. The job's row is
// locked for the chunk, so two runs of one job take turns.
func (s *Store) RunBulkChunk(ctx context.Context, id int64, limit int) (*BulkJob, error) {
	if limit <= 0 {
		limit = DefaultBulkChunk
	}
	var job BulkJob
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT `+bulkJobColumns+` FROM bulk_jobs WHERE id = $1 FOR UPDATE`, id).
			Scan(job.scanTargets()...)
		if errors.Is(err, pgx.ErrNoRows) {
			return Errorf(ENOTFOUND, "job %d not found", id)
		}
		if err != nil || job.Finished() {
			return err
		}
		var picked []int64
		if job.IDs != nil {
			picked, err = pickBulkIDs(ctx, tx, &job, limit)
		} else {
			picked, err = pickBulkFiltered(ctx, tx, &job, limit)
		}
		if err != nil {
			return err
		}
		changed, err := applyBulk(ctx, tx, &job, picked)
		if err != nil {
			return err
		}
		return saveBulkProgress(ctx, tx, &job, int64(len(picked)), changed)
	})
	return &job, err
}

// pickBulkIDs takes the job's next ids past its cursor; none left ends it.
func pickBulkIDs(ctx context.Context, tx pgx.Tx, job *BulkJob, limit int) ([]int64, error) {
	i, _ := slices.BinarySearch(job.IDs, job.cursorRec+1)
	picked := job.IDs[i:min(len(job.IDs), i+limit)]
	if len(picked) == 0 {
		job.State = BulkDone
		return nil, nil
	}
	job.cursorRec = picked[len(picked)-1]
	return picked, nil
}

// pickBulkFiltered takes the next records the job's filter matches: those
// past its cursor of the repeater at the cursor, or of the next matching
// repeater once that one has none left. No repeater left ends the job.
func pickBulkFiltered(ctx context.Context, tx pgx.Tx, job *BulkJob, limit int) ([]int64, error) {
	f := &job.Filter
	var rep int64
	err := tx.QueryRow(ctx, `SELECT id FROM repeaters
		WHERE id >= $1 AND NOT is_deleted AND ($2 = 0 OR id = $2) AND ($3 = '' OR domain = $3)
		ORDER BY id LIMIT 1`, max(job.cursorRep, 1), f.RepeaterID, f.Domain).Scan(&rep)
	if errors.Is(err, pgx.ErrNoRows) {
		job.State = BulkDone
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rep != job.cursorRep {
		job.cursorRep, job.cursorRec = rep, 0
	}
	payloadID, key := f.keyArgs()
	// One index range per state, merged: the smallest ids past the cursor.
	rows, err := tx.Query(ctx, `SELECT x.id FROM unnest($3::smallint[]) s(state)
		CROSS JOIN LATERAL (
			SELECT rr.id FROM repeat_records rr
			WHERE rr.repeater_id = $1 AND rr.state = s.state AND rr.id > $2 AND `+sqlBulkRecordFilter+`
			ORDER BY rr.id LIMIT $8
		) x
		ORDER BY x.id LIMIT $8`, rep, job.cursorRec, f.states(), f.CreatedAfter, f.CreatedBefore, payloadID, key, limit)
	if err != nil {
		return nil, err
	}
	picked, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(picked) < limit {
		job.cursorRep, job.cursorRec = rep+1, 0 // this repeater is done
	} else {
		job.cursorRec = picked[len(picked)-1]
	}
	return picked, nil
}

// applyBulk changes the picked records that still match (their state is
// read again under the update's row lock), in one statement with the
// single-record actions' semantics, and returns how many it changed.
func applyBulk(ctx context.Context, tx pgx.Tx, job *BulkJob, picked []int64) (int64, error) {
	if len(picked) == 0 {
		return 0, nil
	}
	states := job.Filter.states()
	var sql string
	switch job.Action {
	case BulkCancel:
		sql = sqlBulkCancel
	case BulkRequeue:
		sql = sqlBulkRequeue
		states = slices.DeleteFunc(slices.Clone(states), func(s State) bool { return s == StateSuccess || s == StateEmpty })
	default:
		sql = sqlBulkRequeue
	}
	tag, err := tx.Exec(ctx, sql, picked, states, job.Domain)
	if err != nil {
		return 0, err
	}
	if n := tag.RowsAffected(); n > 0 && job.Action != BulkCancel {
		return n, NotifyRecords(ctx, tx)
	}
	return tag.RowsAffected(), nil
}

// sqlBulkRequeue is RequeueRecord over the records $1 still in states $2
// and in domain $3 ("" = any).
const sqlBulkRequeue = `UPDATE repeat_records rr SET
		requested_state = CASE WHEN ` + sqlLiveClaim + ` THEN 1 END,
		state = CASE WHEN rr.` + sqlReady + ` THEN rr.state ELSE ` + sqlStateFail + ` END,
		max_possible_tries = CASE WHEN rr.` + sqlReady + ` THEN rr.max_possible_tries
			ELSE rr.attempt_count + rep.max_attempts END,
		next_check = CASE WHEN ` + sqlLiveClaim + ` THEN rr.next_check ELSE now() END,
		claim_owner = CASE WHEN ` + sqlLiveClaim + ` THEN rr.claim_owner END
	FROM repeaters rep
	WHERE rr.id = ANY($1) AND rr.state = ANY($2) AND ($3 = '' OR rr.domain = $3)
	  AND rep.id = rr.repeater_id AND NOT rep.is_deleted
	  AND NOT (` + sqlLiveClaim + ` AND rr.requested_state IS NOT NULL)`

// sqlBulkCancel is CancelRecord over the records $1 still in states $2 and
// in domain $3 ("" = any).
const sqlBulkCancel = `UPDATE repeat_records rr SET
		requested_state = CASE WHEN ` + sqlLiveClaim + ` THEN ` + sqlStateCancelled + ` END,
		state = CASE WHEN ` + sqlLiveClaim + ` THEN rr.state ELSE ` + sqlStateCancelled + ` END,
		claim_owner = CASE WHEN ` + sqlLiveClaim + ` THEN rr.claim_owner END
	WHERE rr.id = ANY($1) AND rr.state = ANY($2) AND ($3 = '' OR rr.domain = $3) AND rr.` + sqlReady + `
	  AND NOT (` + sqlLiveClaim + ` AND rr.requested_state IS NOT NULL)`

// saveBulkProgress writes the chunk's cursor and counts; a finished job's
// total becomes what it processed.
func saveBulkProgress(ctx context.Context, tx pgx.Tx, job *BulkJob, picked, changed int64) error {
	if job.State != BulkDone {
		job.State = BulkRunning
	}
	return tx.QueryRow(ctx, `UPDATE bulk_jobs SET state = $2,
			processed = processed + $3, changed = changed + $4,
			cursor_repeater = $5, cursor_record = $6,
			total = CASE WHEN $2 = 'done' THEN processed + $3 ELSE greatest(total, processed + $3) END,
			finished_at = CASE WHEN $2 = 'done' THEN now() END, updated_at = now()
		WHERE id = $1 RETURNING `+bulkJobColumns,
		job.ID, job.State, picked, changed, job.cursorRep, job.cursorRec).Scan(job.scanTargets()...)
}
