-- +goose Up
-- invariant_violations, second version. What changed from 00020:
--   stats_drift   judged only when the WAL consumer has caught up (it applied
--                 everything committed up to a minute ago: stats_progress.
--                 applied_through) and no purge deletion is still on its way
--                 to the aggregate (purge_progress), and only for repeaters
--                 none of whose records changed state in the minute before
--                 applied_through (repeat_records.state_changed_at). 00020
--                 took a record's future next_check (a pending legacy retry,
--                 a claim) as "touched now", so one retry due in an hour hid
--                 any drift of its repeater for that hour.
--   domain_mismatch  dropped: the (repeater_id, domain) foreign key makes it
--                 impossible, so it could never fire.
--   new           attempt_count_mismatch, negative_stats_count,
--                 stale_pending_batch, pending_with_attempts.
--
-- Checks, one UNION ALL branch each (violations = records unless noted):
--   stats_drift               |repeat_record_stats - actual count| summed over
--                             the repeater's states (see above).
--   ready_on_deleted_repeater ready records of a deleted repeater.
--   starved_ready_records     ready records registered over 24 h ago and due
--                             for over an hour, on a repeater neither deleted,
--                             paused nor backed off (for over an hour).
--   success_without_attempt   Success records with no Success attempt.
--   fail_past_max_attempts    ready records with attempt_count >=
--                             max_possible_tries (they should be Cancelled).
--   attempt_count_mismatch    records whose attempt_count differs from their
--                             attempt rows (every attempt is recorded with
--                             the count in one statement).
--   negative_stats_count      repeat_record_stats counts below zero: the sum
--                             of how far below (a count can only be >= 0).
--   stale_pending_batch       repeaters whose recorded batch (pending_batch)
--                             has waited over 10 minutes for update_repeater:
--                             its lock has long lapsed and nobody applies it
--                             (violations = 1 per repeater).
--   pending_with_attempts     Pending records with attempts (an attempt makes
--                             a record Fail or terminal; requeue makes it Fail).
CREATE MATERIALIZED VIEW invariant_violations_v2 AS
WITH cells AS MATERIALIZED (
    SELECT domain, repeater_id, state,
           count(*) AS n,
           count(*) FILTER (WHERE state IN (1, 2) AND attempt_count >= max_possible_tries) AS past_max,
           count(*) FILTER (WHERE state IN (1, 2) AND registered_at < now() - interval '24 hours'
                                                 AND next_check < now() - interval '1 hour') AS starved,
           max(coalesce(state_changed_at, registered_at)) AS changed_at
    FROM repeat_records
    GROUP BY domain, repeater_id, state
),
-- The consumer's position, when drift can be judged at all: caught up to
-- within a minute, and past the last purge deletion.
judged AS (
    SELECT p.applied_through
    FROM stats_progress p
    WHERE p.applied_through > now() - interval '1 minute'
      AND p.applied_through > coalesce((SELECT last_deleted_at FROM purge_progress), '-infinity') + interval '5 seconds'
),
unsettled AS (
    SELECT c.repeater_id FROM cells c, judged j
    WHERE c.changed_at > j.applied_through - interval '1 minute'
),
drift AS (
    SELECT coalesce(c.domain, s.domain) AS domain,
           coalesce(c.repeater_id, s.repeater_id) AS repeater_id,
           coalesce(c.n, 0) AS actual,
           coalesce(s.count, 0) AS counted
    FROM cells c
    FULL OUTER JOIN repeat_record_stats s
        ON s.domain = c.domain AND s.repeater_id = c.repeater_id AND s.state = c.state
),
attempts AS MATERIALIZED (
    SELECT record_id, count(*) AS n, bool_or(state = 4) AS success
    FROM repeat_record_attempts
    GROUP BY record_id
),
per_record AS MATERIALIZED (
    SELECT rr.domain, rr.repeater_id,
           count(*) FILTER (WHERE rr.state = 4 AND NOT coalesce(a.success, false)) AS success_without_attempt,
           count(*) FILTER (WHERE rr.attempt_count <> coalesce(a.n, 0)) AS attempt_count_mismatch,
           count(*) FILTER (WHERE rr.state = 1 AND coalesce(a.n, 0) > 0) AS pending_with_attempts
    FROM repeat_records rr
    LEFT JOIN attempts a ON a.record_id = rr.id
    GROUP BY rr.domain, rr.repeater_id
)
SELECT 'stats_drift'::text AS check_name, d.domain, d.repeater_id,
       sum(abs(d.actual - d.counted))::bigint AS violations
FROM drift d
WHERE d.actual <> d.counted
  AND EXISTS (SELECT 1 FROM judged)
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
SELECT 'success_without_attempt', p.domain, p.repeater_id, p.success_without_attempt
FROM per_record p WHERE p.success_without_attempt > 0

UNION ALL
SELECT 'fail_past_max_attempts', c.domain, c.repeater_id, sum(c.past_max)::bigint
FROM cells c
WHERE c.past_max > 0
GROUP BY c.domain, c.repeater_id

UNION ALL
SELECT 'attempt_count_mismatch', p.domain, p.repeater_id, p.attempt_count_mismatch
FROM per_record p WHERE p.attempt_count_mismatch > 0

UNION ALL
SELECT 'negative_stats_count', s.domain, s.repeater_id, sum(-s.count)::bigint
FROM repeat_record_stats s
WHERE s.count < 0
GROUP BY s.domain, s.repeater_id

UNION ALL
SELECT 'stale_pending_batch', r.domain, r.id, 1
FROM repeaters r
WHERE r.pending_batch IS NOT NULL
  AND coalesce(r.last_attempt_at, r.updated_at) < now() - interval '10 minutes'

UNION ALL
SELECT 'pending_with_attempts', p.domain, p.repeater_id, p.pending_with_attempts
FROM per_record p WHERE p.pending_with_attempts > 0;

-- Swapped in under the old name in one transaction: readers never see it missing.
DROP MATERIALIZED VIEW invariant_violations;
ALTER MATERIALIZED VIEW invariant_violations_v2 RENAME TO invariant_violations;
-- Plain (no expression, no WHERE): REFRESH ... CONCURRENTLY requires it.
CREATE UNIQUE INDEX invariant_violations_key ON invariant_violations (check_name, domain, repeater_id);
UPDATE invariants_refreshed SET refreshed_at = now();

-- +goose Down
DROP MATERIALIZED VIEW invariant_violations;
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

CREATE UNIQUE INDEX invariant_violations_key ON invariant_violations (check_name, domain, repeater_id);
UPDATE invariants_refreshed SET refreshed_at = now();
