-- +goose Up
-- invariants_refreshed: the one row saying when invariant_violations was last
-- refreshed, so a stale view is itself alertable.
CREATE TABLE invariants_refreshed (
    one          boolean     PRIMARY KEY DEFAULT true CHECK (one),
    refreshed_at timestamptz NOT NULL
);

-- invariant_violations: one row per (check, domain, repeater) that breaks a
-- consistency invariant, with how many records break it. Metrics, the API and
-- `repeaterd invariants show` read only this view; computing it reads whole
-- tables, so it is refreshed on a schedule (refresh_invariant_violations),
-- never at scrape time. Every check is per (domain, repeater); a future check
-- that is not puts '' and 0 there, never NULL, so the unique index below
-- (which REFRESH ... CONCURRENTLY needs) covers every row.
--
-- Checks, one UNION ALL branch each:
--   stats_drift               |repeat_record_stats - actual count| summed over
--                             the repeater's states. Only once a WAL consumer
--                             has fed the aggregate (stats_progress has its
--                             row), and only for repeaters untouched for 5
--                             minutes: the aggregate trails the records by the
--                             consumer's lag (~100 ms), so a busy repeater
--                             always differs for an instant. A row of 0 and no
--                             row are the same.
--   ready_on_deleted_repeater ready records of a deleted repeater (deleting
--                             cancels them in the same transaction).
--   starved_ready_records     ready records registered over 24 h ago and due
--                             for over an hour, on a repeater that is neither
--                             deleted, paused nor backed off (for over an
--                             hour): nothing is taking them.
--   success_without_attempt   Success records with no Success attempt.
--   fail_past_max_attempts    ready records with attempt_count >=
--                             max_possible_tries (they should be Cancelled).
--   domain_mismatch           records whose domain differs from their
--                             repeater's (or whose repeater is missing).
--
-- repeat_records is read once: every check but success_without_attempt works
-- from per-(domain, repeater, state) cells.
CREATE MATERIALIZED VIEW invariant_violations AS
WITH cells AS MATERIALIZED (
    SELECT domain, repeater_id, state,
           count(*) AS n,
           count(*) FILTER (WHERE state IN (1, 2) AND attempt_count >= max_possible_tries) AS past_max,
           count(*) FILTER (WHERE state IN (1, 2) AND registered_at < now() - interval '24 hours'
                                                 AND next_check < now() - interval '1 hour') AS starved,
           -- next_check moves on every claim, attempt and requeue: with
           -- registered_at, the last time a record of the cell changed.
           max(greatest(registered_at, next_check)) AS touched_at
    FROM repeat_records
    GROUP BY domain, repeater_id, state
),
unsettled AS (
    SELECT repeater_id FROM cells WHERE touched_at > now() - interval '5 minutes'
    UNION
    SELECT id FROM repeaters WHERE updated_at > now() - interval '5 minutes'
),
drift AS (
    SELECT coalesce(c.domain, s.domain) AS domain,
           coalesce(c.repeater_id, s.repeater_id) AS repeater_id,
           coalesce(c.n, 0) AS actual,
           coalesce(s.count, 0) AS counted
    FROM cells c
    FULL OUTER JOIN repeat_record_stats s
        ON s.domain = c.domain AND s.repeater_id = c.repeater_id AND s.state = c.state
)
SELECT 'stats_drift'::text AS check_name, d.domain, d.repeater_id,
       sum(abs(d.actual - d.counted))::bigint AS violations
FROM drift d
WHERE d.actual <> d.counted
  AND EXISTS (SELECT 1 FROM stats_progress)
  AND NOT EXISTS (SELECT 1 FROM unsettled u WHERE u.repeater_id = d.repeater_id)
GROUP BY d.domain, d.repeater_id

UNION ALL
SELECT 'ready_on_deleted_repeater', c.domain, c.repeater_id, sum(c.n)::bigint
FROM cells c
JOIN repeaters r ON r.id = c.repeater_id
WHERE c.state IN (1, 2) AND r.is_deleted
GROUP BY c.domain, c.repeater_id

UNION ALL
SELECT 'starved_ready_records', c.domain, c.repeater_id, sum(c.starved)::bigint
FROM cells c
JOIN repeaters r ON r.id = c.repeater_id
WHERE c.starved > 0 AND NOT r.is_deleted AND NOT r.is_paused
  AND (r.next_attempt_at IS NULL OR r.next_attempt_at < now() - interval '1 hour')
GROUP BY c.domain, c.repeater_id

UNION ALL
SELECT 'success_without_attempt', rr.domain, rr.repeater_id, count(*)
FROM repeat_records rr
WHERE rr.state = 4
  AND NOT EXISTS (SELECT 1 FROM repeat_record_attempts a WHERE a.record_id = rr.id AND a.state = 4)
GROUP BY rr.domain, rr.repeater_id

UNION ALL
SELECT 'fail_past_max_attempts', c.domain, c.repeater_id, sum(c.past_max)::bigint
FROM cells c
WHERE c.past_max > 0
GROUP BY c.domain, c.repeater_id

UNION ALL
SELECT 'domain_mismatch', c.domain, c.repeater_id, sum(c.n)::bigint
FROM cells c
LEFT JOIN repeaters r ON r.id = c.repeater_id
WHERE r.domain IS DISTINCT FROM c.domain
GROUP BY c.domain, c.repeater_id;

-- Plain (no expression, no WHERE): REFRESH ... CONCURRENTLY requires it.
CREATE UNIQUE INDEX invariant_violations_key ON invariant_violations (check_name, domain, repeater_id);

INSERT INTO invariants_refreshed (refreshed_at) VALUES (now());

-- refresh_invariant_violations refreshes the view without blocking its
-- readers and records when. The one entry point for `repeaterd invariants
-- refresh`, the periodic task and pg_cron. Concurrent calls queue on the
-- view's lock; the recorded time never moves back.
-- +goose StatementBegin
CREATE FUNCTION refresh_invariant_violations() RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY invariant_violations;
    INSERT INTO invariants_refreshed AS r (refreshed_at) VALUES (now())
        ON CONFLICT (one) DO UPDATE SET refreshed_at = greatest(r.refreshed_at, EXCLUDED.refreshed_at);
    RETURN now();
END
$$;
-- +goose StatementEnd

-- +goose Down
-- A pg_cron job calling the function would fail every run once it is gone.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE $q$SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'repeaterd-invariants'$q$;
    END IF;
END
$$;
-- +goose StatementEnd
DROP FUNCTION IF EXISTS refresh_invariant_violations();
DROP MATERIALIZED VIEW IF EXISTS invariant_violations;
DROP TABLE IF EXISTS invariants_refreshed;
