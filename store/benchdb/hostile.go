package benchdb

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CountSuccessOf counts the delivered records among ids.
func CountSuccessOf(ctx context.Context, pool *pgxpool.Pool, ids []int64) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT count(*) FROM repeat_records WHERE id = ANY($1) AND state = 4`, ids).Scan(&n)
	return n, err
}
