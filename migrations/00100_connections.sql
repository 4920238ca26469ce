-- +goose Up
-- connections: how a domain's repeaters authenticate to their endpoints,
-- shared by the repeaters that name them (store/connections.go). Secret
-- fields (password, token, api_key, client_secret) are sealed like a
-- repeater's signing secret (store/secrets.go).
CREATE TABLE connections (
    id              bigserial   PRIMARY KEY,
    domain          text        NOT NULL,
    name            text        NOT NULL DEFAULT '',
    auth_type       text        NOT NULL DEFAULT 'none'
        CHECK (auth_type IN ('none', 'basic', 'bearer', 'api_key', 'oauth2_client_credentials')),
    username        text        NOT NULL DEFAULT '',
    password        text        NOT NULL DEFAULT '',
    token           text        NOT NULL DEFAULT '',
    api_key_header  text        NOT NULL DEFAULT '',
    api_key         text        NOT NULL DEFAULT '',
    token_url       text        NOT NULL DEFAULT '',
    client_id       text        NOT NULL DEFAULT '',
    client_secret   text        NOT NULL DEFAULT '',
    scope           text        NOT NULL DEFAULT '',
    credentials_in  text        NOT NULL DEFAULT '' CHECK (credentials_in IN ('', 'header', 'body')), -- '' unless oauth2
    skip_tls_verify boolean     NOT NULL DEFAULT false,
    ca_pem          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, domain)
);
CREATE INDEX connections_domain_idx ON connections (domain, id);

-- A repeater names at most one connection of its own domain (the composite
-- key makes another domain's impossible); a used connection cannot be deleted.
ALTER TABLE repeaters
    ADD COLUMN connection_id bigint,
    ADD CONSTRAINT repeaters_connection_fk FOREIGN KEY (connection_id, domain)
        REFERENCES connections (id, domain) ON DELETE RESTRICT,
    -- Secret rotation: the secret before the current one, still signed with
    -- until previous_secret_until.
    ADD COLUMN previous_signing_secret text NOT NULL DEFAULT '',
    ADD COLUMN previous_secret_until timestamptz,
    -- Subscriptions: the event types the repeater receives ('{}' = all) and
    -- a filter on payload fields ('' = none); see store/filter.go.
    ADD COLUMN event_types text[] NOT NULL DEFAULT '{}',
    ADD COLUMN event_filter text NOT NULL DEFAULT '';
CREATE INDEX repeaters_connection_idx ON repeaters (connection_id) WHERE connection_id IS NOT NULL;

-- Events: a fan-out payload carries its type and, optionally, an
-- idempotency key unique per domain.
ALTER TABLE payloads
    ADD COLUMN event_type text,
    ADD COLUMN event_key text;
CREATE UNIQUE INDEX payloads_event_key_idx ON payloads (domain, event_key) WHERE event_key IS NOT NULL;

-- +goose Down
DROP INDEX payloads_event_key_idx;
ALTER TABLE payloads DROP COLUMN event_key, DROP COLUMN event_type;
DROP INDEX repeaters_connection_idx;
ALTER TABLE repeaters DROP COLUMN event_filter, DROP COLUMN event_types,
    DROP COLUMN previous_secret_until, DROP COLUMN previous_signing_secret,
    DROP CONSTRAINT repeaters_connection_fk, DROP COLUMN connection_id;
DROP TABLE connections;
