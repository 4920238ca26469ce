-- +goose Up
-- api_tokens: per-domain API tokens (store/tokens.go). The token itself is
-- shown once, at creation; only its SHA-256 is kept, so a read of this table
-- yields nothing that authenticates. The admin token is configuration
-- (REPEATERD_API_TOKEN), never a row.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    domain       text        NOT NULL CHECK (domain <> ''),
    name         text        NOT NULL DEFAULT '',
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    hint         text        NOT NULL,   -- the token's first characters, to tell tokens apart in a list
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,            -- refreshed at most once a minute
    revoked_at   timestamptz             -- NULL = valid
);
CREATE INDEX api_tokens_domain_idx ON api_tokens (domain, id);

-- +goose Down
DROP TABLE api_tokens;
