package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Listen holds one connection LISTENing on channel and calls fn for each
// notification until ctx ends or the connection fails.
func (s *Store) Listen(ctx context.Context, channel string, fn func(*pgconn.Notification)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "UNLISTEN *")
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n)
	}
}
