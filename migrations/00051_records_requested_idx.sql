-- +goose NO TRANSACTION
-- +goose Up
-- The few records with an operator request waiting: claims settle the
-- expired ones first, without scanning a repeater's whole backlog.
CREATE INDEX CONCURRENTLY IF NOT EXISTS repeat_records_requested_idx ON repeat_records (repeater_id)
    WHERE requested_state IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS repeat_records_requested_idx;
