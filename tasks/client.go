package tasks

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"repeaterd/repeaters"
)

// Client enqueues tasks. It implements repeaters.Enqueuer.
type Client struct {
	asynq *asynq.Client
}

// NewClient returns a Client on rdb.
func NewClient(rdb redis.UniversalClient) *Client {
	return &Client{asynq: asynq.NewClientFromRedisClient(rdb)}
}

// EnqueueBatch enqueues process_repeater for b.
func (c *Client) EnqueueBatch(ctx context.Context, b repeaters.Batch) error {
	t, err := NewProcessRepeaterTask(b)
	if err != nil {
		return err
	}
	return c.enqueue(ctx, t)
}

// EnqueueUpdate enqueues update_repeater for a finished batch.
func (c *Client) EnqueueUpdate(ctx context.Context, p UpdateRepeaterPayload) error {
	t, err := NewUpdateRepeaterTask(p)
	if err != nil {
		return err
	}
	return c.enqueue(ctx, t)
}

// enqueue treats a task ID conflict as done: the same task is already queued.
func (c *Client) enqueue(ctx context.Context, t *asynq.Task) error {
	_, err := c.asynq.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}
