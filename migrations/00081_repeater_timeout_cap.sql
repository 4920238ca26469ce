-- +goose Up
-- timeout_ms now has a maximum (store.Options.MaxTimeout, 120 s by default,
-- `repeaterd run --max-timeout`): a hung endpoint holds a worker slot for its
-- timeout. Repeaters saved before the cap get the default maximum.
UPDATE repeaters SET timeout_ms = 120000 WHERE timeout_ms > 120000;

-- +goose Down
SELECT 1; -- the earlier timeouts are not kept
