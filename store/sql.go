package store

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQL fragments for record states, so a query says what it means and the
// partial indexes' predicate (state IN (1, 2)) is spelled one way. They are
// constants so each query stays a constant string the planner can match
// against the indexes.
const (
	// sqlReady matches records still to be sent (Pending or Fail).
	sqlReady = `state IN (1, 2)`
	// sqlTerminal matches records that are done, one way or another.
	sqlTerminal = `state NOT IN (1, 2)`
	// sqlStateCancelled is StateCancelled as a literal.
	sqlStateCancelled = `8`
	// sqlStateFail is StateFail as a literal.
	sqlStateFail = `2`
)

// NotifyChannel is the Postgres channel told when records become ready.
const NotifyChannel = "repeaterd_records"

// execer is a pool, a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// NotifyRecords wakes the dispatcher: records became ready. Inside a
// transaction the notification is delivered only if it commits.
func NotifyRecords(ctx context.Context, q execer) error {
	_, err := q.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
	return err
}
