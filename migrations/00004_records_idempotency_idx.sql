-- +goose NO TRANSACTION
-- +goose Up
-- An idempotency key is unique per repeater when given.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_idempotency_idx
    ON repeat_records (repeater_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_idempotency_idx;
