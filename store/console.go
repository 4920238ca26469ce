package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// The reads behind the console's repeater, record and domain pages. Each
// is bounded by an index and a page size, never by the table: counts come
// from the WAL stats when a consumer keeps them, else from counts that stop
// at a cap, so a view costs the same with ten million records as with ten.

// Console page limits.
const (
	// MaxPageRows is the most rows one page of repeaters or records holds.
	MaxPageRows = 200
	// BoundedCountCap is where a live count (no WAL stats) stops.
	BoundedCountCap = 1000
	// MaxPayloadView is the most bytes of a payload the console reads.
	MaxPayloadView = 64 << 10
)

// Count is a record count, exact or at least N (a bounded count that
// stopped at its cap).
type Count struct {
	N     int64
	Exact bool
}

// RepeaterRow is one repeater of the console's list: its settings and
// state, its backlog and its last failure (its last hour of attempts is the
// console's to add, from AttemptsPerRepeaterMinute).
type RepeaterRow struct {
	Repeater
	Pending, Fail Count
	// LastHour counts the last hour's attempts by state (filled by the caller).
	LastHour map[State]int64
	// LastError is the latest failed attempt at the repeater's oldest ready
	// record (what holds it up), nil when there is none.
	LastError *Attempt
}

// ListRepeaterRowsParams bounds ListRepeaterRows.
type ListRepeaterRowsParams struct {
	Domain  string // "" = every domain
	AfterID int64  // keyset cursor
	Limit   int    // at most MaxPageRows; defaults to 100
}

// ListRepeaterRows returns a page of repeaters, deleted ones included, in
// id order, with their backlog and last error.
func (s *Store) ListRepeaterRows(ctx context.Context, p ListRepeaterRowsParams) ([]RepeaterRow, error) {
	if p.Limit <= 0 || p.Limit > MaxPageRows {
		p.Limit = 100
	}
	reps, err := s.ListRepeaters(ctx, ListRepeatersParams{Domain: p.Domain, IncludeDeleted: true, AfterID: p.AfterID, Limit: p.Limit})
	if err != nil || len(reps) == 0 {
		return nil, err
	}
	ids := make([]int64, len(reps))
	rows := make([]RepeaterRow, len(reps))
	byID := make(map[int64]*RepeaterRow, len(reps))
	for i := range reps {
		ids[i] = reps[i].ID
		rows[i] = RepeaterRow{Repeater: reps[i], LastHour: map[State]int64{}}
		byID[reps[i].ID] = &rows[i]
	}
	counts, err := s.RepeaterCounts(ctx, ids, []State{StatePending, StateFail})
	if err != nil {
		return nil, err
	}
	for id, c := range counts {
		byID[id].Pending, byID[id].Fail = c[StatePending], c[StateFail]
	}
	return rows, s.lastErrors(ctx, ids, byID)
}

// RepeaterCounts counts the records of each repeater in each of states:
// exact from the WAL stats when a consumer keeps them current, else
// bounded at BoundedCountCap per repeater and state over the (repeater,
// state) index.
func (s *Store) RepeaterCounts(ctx context.Context, ids []int64, states []State) (map[int64]map[State]Count, error) {
	feed, err := s.GetStatsFeed(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]map[State]Count, len(ids))
	for _, id := range ids {
		out[id] = make(map[State]Count, len(states))
		for _, st := range states {
			out[id][st] = Count{Exact: true}
		}
	}
	var rows pgx.Rows
	if feed.Current() {
		rows, err = s.pool.Query(ctx, `SELECT repeater_id, state, count FROM repeat_record_stats
			WHERE repeater_id = ANY($1) AND state = ANY($2)`, ids, states)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT r.id, s.state, c.n
			FROM unnest($1::bigint[]) r(id) CROSS JOIN unnest($2::smallint[]) s(state)
			CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
				SELECT 1 FROM repeat_records rr WHERE rr.repeater_id = r.id AND rr.state = s.state LIMIT $3
			) x) c`, ids, states, BoundedCountCap)
	}
	if err != nil {
		return nil, err
	}
	var id, n int64
	var st State
	_, err = pgx.ForEachRow(rows, []any{&id, &st, &n}, func() error {
		if m := out[id]; m != nil {
			m[st] = Count{N: max(n, 0), Exact: feed.Current() || n < BoundedCountCap}
		}
		return nil
	})
	return out, err
}

// RepeaterMinuteCount is how many attempts at a repeater's records ended
// in a state in one minute.
type RepeaterMinuteCount struct {
	Minute     time.Time
	RepeaterID int64
	State      State
	Count      int64
}

// AttemptsPerRepeaterMinute counts the attempts made in [since, until) by
// minute, repeater and state: the attempts' time index, then each
// attempt's record. The console caches settled minutes, so it asks only
// for the last few.
func (s *Store) AttemptsPerRepeaterMinute(ctx context.Context, since, until time.Time) ([]RepeaterMinuteCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT date_trunc('minute', a.created_at), rr.repeater_id, a.state, count(*)
		FROM repeat_record_attempts a JOIN repeat_records rr ON rr.id = a.record_id
		WHERE a.created_at >= $1 AND a.created_at < $2
		GROUP BY 1, 2, 3`, since, until)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RepeaterMinuteCount, error) {
		var c RepeaterMinuteCount
		return c, row.Scan(&c.Minute, &c.RepeaterID, &c.State, &c.Count)
	})
}

// lastErrors adds each repeater's last failed attempt at its oldest ready
// record: two index probes per repeater, as ListRepeatersInBackoff does.
func (s *Store) lastErrors(ctx context.Context, ids []int64, byID map[int64]*RepeaterRow) error {
	rows, err := s.pool.Query(ctx, `SELECT r.id, a.id, a.record_id, a.state, a.status_code, a.message, a.duration_ms, a.created_at
		FROM unnest($1::bigint[]) r(id)
		CROSS JOIN LATERAL (
			SELECT a.* FROM repeat_record_attempts a
			WHERE a.record_id = (SELECT rr.id FROM repeat_records rr
				WHERE rr.repeater_id = r.id AND rr.`+sqlReady+`
				ORDER BY rr.registered_at, rr.id LIMIT 1)
			ORDER BY a.id DESC LIMIT 1
		) a
		WHERE a.state <> 4`, ids)
	if err != nil {
		return err
	}
	var id int64
	var a Attempt
	_, err = pgx.ForEachRow(rows, []any{&id, &a.ID, &a.RecordID, &a.State, &a.StatusCode, &a.Message, &a.DurationMS, &a.CreatedAt},
		func() error {
			at := a
			byID[id].LastError = &at
			return nil
		})
	return err
}

// RecordPageParams selects a page of one repeater's records, newest first.
type RecordPageParams struct {
	RepeaterID int64
	// States are the states shown; none = every state.
	States []State
	// Key, when given, is a payload id or an idempotency key.
	Key           string
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
	// BeforeID is the keyset cursor: records with smaller ids. 0 = the first page.
	BeforeID int64
	// Limit is at most MaxPageRows; defaults to 50.
	Limit int
}

// ListRecordPage returns a page of p.RepeaterID's records, newest first:
// one (repeater, state) index range per state, merged, so the page reads
// about Limit rows per state whatever the history.
func (s *Store) ListRecordPage(ctx context.Context, p RecordPageParams) ([]RepeatRecord, error) {
	if p.Limit <= 0 || p.Limit > MaxPageRows {
		p.Limit = 50
	}
	f := BulkFilter{RepeaterID: p.RepeaterID, States: p.States, Key: p.Key, CreatedAfter: p.CreatedAfter, CreatedBefore: p.CreatedBefore}
	payloadID, key := f.keyArgs()
	before := p.BeforeID
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT `+prefixed("x.", recordColumns)+` FROM unnest($3::smallint[]) s(state)
		CROSS JOIN LATERAL (
			SELECT rr.* FROM repeat_records rr
			WHERE rr.repeater_id = $1 AND rr.state = s.state AND rr.id < $2 AND `+sqlBulkRecordFilter+`
			ORDER BY rr.id DESC LIMIT $8
		) x
		ORDER BY x.id DESC LIMIT $8`, p.RepeaterID, before, f.states(), p.CreatedAfter, p.CreatedBefore, payloadID, key, p.Limit)
	if err != nil {
		return nil, err
	}
	return scanRecords(rows)
}

// GetPayload returns a payload with at most max bytes of its body (all of
// it when max <= 0) and its full size.
func (s *Store) GetPayload(ctx context.Context, id int64, max int) (p *Payload, size int, err error) {
	p = &Payload{}
	if max <= 0 {
		max = 1<<31 - 1
	}
	err = s.pool.QueryRow(ctx, `SELECT id, domain, content_type, substring(body FROM 1 FOR $2), octet_length(body), created_at
		FROM payloads WHERE id = $1`, id, max).Scan(&p.ID, &p.Domain, &p.ContentType, &p.Body, &size, &p.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, Errorf(ENOTFOUND, "payload %d not found", id)
	}
	return p, size, err
}

// DomainSummary is one domain as the console's and the API's domain lists
// show it.
type DomainSummary struct {
	Domain    string
	Repeaters int64 // not deleted
	Flags     map[string]bool
	// Counts are the domain's records by state: the WAL stats, or (Live)
	// counted from every record when no consumer keeps them, as
	// RecordCounts does.
	Counts map[State]int64
	Live   bool
}

// DomainSummaries returns every domain that owns a repeater or has a flag
// set ("" scope), or only scope, in name order.
func (s *Store) DomainSummaries(ctx context.Context, scope string) ([]DomainSummary, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.domain, count(r.id) FILTER (WHERE NOT r.is_deleted)
		FROM (SELECT domain FROM repeaters UNION SELECT domain FROM domain_flags) d
		LEFT JOIN repeaters r ON r.domain = d.domain
		WHERE $1 = '' OR d.domain = $1
		GROUP BY 1 ORDER BY 1`, scope)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DomainSummary, error) {
		d := DomainSummary{Flags: map[string]bool{}, Counts: map[State]int64{}}
		return d, row.Scan(&d.Domain, &d.Repeaters)
	})
	if err != nil || len(out) == 0 {
		return out, err
	}
	byDomain := make(map[string]*DomainSummary, len(out))
	for i := range out {
		byDomain[out[i].Domain] = &out[i]
		for _, f := range KnownFlags {
			out[i].Flags[f] = s.ProcessRepeatersDefault()
		}
	}
	flags, err := s.ListDomainFlags(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range flags {
		if d := byDomain[f.Domain]; d != nil {
			d.Flags[f.Flag] = f.Enabled
		}
	}
	feed, err := s.GetStatsFeed(ctx)
	if err != nil {
		return nil, err
	}
	live := !feed.Current()
	q := `SELECT domain, state, sum(count)::bigint FROM repeat_record_stats WHERE $1 = '' OR domain = $1 GROUP BY 1, 2`
	if live { // no consumer keeps the aggregate: count every record, as RecordCounts does
		q = `SELECT domain, state, count(*) FROM repeat_records WHERE $1 = '' OR domain = $1 GROUP BY 1, 2`
	}
	rows, err = s.pool.Query(ctx, q, scope)
	if err != nil {
		return nil, err
	}
	var domain string
	var state State
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&domain, &state, &n}, func() error {
		if d := byDomain[domain]; d != nil {
			d.Counts[state] += n
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Live = live
	}
	return out, nil
}
