-- +goose NO TRANSACTION
-- +goose Up
-- The dashboard's delivery-rate chart counts the last hour's attempts per
-- minute and state (store.DeliveriesPerMinute): a range on created_at.
-- state is included so the count is an index-only scan; attempts are
-- append-only, so the visibility map stays set and the heap is not read.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_record_attempts_created_idx
    ON repeat_record_attempts (created_at) INCLUDE (state);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_record_attempts_created_idx;
