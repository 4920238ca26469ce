-- +goose Up
-- repeaters: remote endpoints, each owned by one domain (tenant).
CREATE TABLE repeaters (
    id                bigserial PRIMARY KEY,
    domain            text        NOT NULL CHECK (domain <> ''),
    name              text        NOT NULL DEFAULT '',
    url               text        NOT NULL,
    request_method    text        NOT NULL DEFAULT 'POST' CHECK (request_method IN ('POST', 'PUT', 'PATCH')),
    headers           jsonb       NOT NULL DEFAULT '{}',
    signing_secret    text        NOT NULL DEFAULT '',
    max_workers       integer     NOT NULL DEFAULT 0 CHECK (max_workers >= 0),     -- 0 = default (7), capped by MAX_REPEATER_WORKERS
    rate_limit_per_s  double precision NOT NULL DEFAULT 0 CHECK (rate_limit_per_s >= 0), -- 0 = unlimited
    rate_burst        integer     NOT NULL DEFAULT 0 CHECK (rate_burst >= 0),
    backoff_codes     integer[]   NOT NULL DEFAULT '{}',                           -- extra retryable status codes
    max_attempts      integer     NOT NULL DEFAULT 6 CHECK (max_attempts > 0),
    timeout_ms        integer     NOT NULL DEFAULT 30000 CHECK (timeout_ms > 0),
    is_paused         boolean     NOT NULL DEFAULT false,
    is_deleted        boolean     NOT NULL DEFAULT false,
    next_attempt_at   timestamptz,                                                 -- NULL = not backed off
    last_attempt_at   timestamptz,
    backoff_count     integer     NOT NULL DEFAULT 0,  -- consecutive failed batches; drives the doubling
    effective_workers integer     NOT NULL DEFAULT 0,  -- AIMD concurrency; 0 = start at max_workers
    pending_batch     text,                            -- token of a recorded batch whose update_repeater has not applied
    pending_summary   jsonb,                           -- that batch's outcome summary
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, domain)                                -- target of the record's (repeater, domain) foreign key
);

-- payloads: one body may feed many records (fan-out to a domain's repeaters).
CREATE TABLE payloads (
    id           bigserial PRIMARY KEY,
    domain       text        NOT NULL CHECK (domain <> ''),
    content_type text        NOT NULL DEFAULT 'application/json',
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- repeat_records: one payload to deliver to one repeater.
-- state codes: 1 Pending, 2 Fail (will be retried), 4 Success, 8 Cancelled,
--              16 Empty (nothing to send, counts as done), 32 PayloadRejected.
-- Ready means state IN (1, 2).
CREATE TABLE repeat_records (
    id                 bigserial PRIMARY KEY,
    domain             text        NOT NULL,
    repeater_id        bigint      NOT NULL,
    payload_id         bigint      NOT NULL REFERENCES payloads (id),
    state              smallint    NOT NULL DEFAULT 1
        CONSTRAINT repeat_records_state_check CHECK (state IN (1, 2, 4, 8, 16, 32)),
    registered_at      timestamptz NOT NULL DEFAULT now(),
    next_check         timestamptz NOT NULL DEFAULT now(), -- not before: a retry's due time, or a claim's expiry (both paths)
    attempt_count      integer     NOT NULL DEFAULT 0,
    max_possible_tries integer     NOT NULL DEFAULT 6,
    idempotency_key    text,
    FOREIGN KEY (repeater_id, domain) REFERENCES repeaters (id, domain)
);
COMMENT ON COLUMN repeat_records.state IS
    '1 Pending, 2 Fail (retried), 4 Success, 8 Cancelled, 16 Empty, 32 PayloadRejected; ready = 1 or 2';

CREATE TABLE repeat_record_attempts (
    id          bigserial PRIMARY KEY,
    record_id   bigint      NOT NULL REFERENCES repeat_records (id) ON DELETE CASCADE,
    state       smallint    NOT NULL CHECK (state IN (2, 4, 8, 16, 32)),
    status_code integer     NOT NULL DEFAULT 0,   -- 0 = no HTTP response
    message     text        NOT NULL DEFAULT '' CHECK (octet_length(message) <= 1024),
    duration_ms integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- domain_flags: per-domain feature toggles. A domain without a row follows the
-- configured default (REPEATERD_PROCESS_REPEATERS_DEFAULT).
CREATE TABLE domain_flags (
    domain     text        NOT NULL,
    flag       text        NOT NULL CHECK (flag IN ('process_repeaters')),
    enabled    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, flag)
);

-- Small table: plain (transactional) partial indexes are fine here.
CREATE INDEX repeaters_active_idx ON repeaters (id) WHERE NOT is_deleted;
CREATE INDEX repeaters_next_attempt_idx ON repeaters (next_attempt_at) WHERE NOT is_deleted AND NOT is_paused;
CREATE INDEX repeaters_domain_idx ON repeaters (domain) WHERE NOT is_deleted;

-- +goose Down
DROP TABLE domain_flags;
DROP TABLE repeat_record_attempts;
DROP TABLE repeat_records;
DROP TABLE payloads;
DROP TABLE repeaters;
