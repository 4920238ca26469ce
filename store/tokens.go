package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Domain API tokens: each lets its bearer see and change one domain's
// repeaters, records, events, flags and stats through the API. The token is
// returned once, by CreateAPIToken; the table keeps only its SHA-256 (a
// token is 256 random bits, so a fast hash is as good as a slow one) and a
// short hint to tell tokens apart.

// APITokenPrefix starts every domain token, so one found in a log or a
// repository is recognisable.
const APITokenPrefix = "rpd_"

// tokenHintLen is how much of a token its hint keeps: the prefix and 6
// characters, 36 bits of 256.
const tokenHintLen = len(APITokenPrefix) + 6

// maxPresentedToken bounds what APITokenByValue hashes.
const maxPresentedToken = 256

// APIToken is one domain token as stored: never the token itself.
type APIToken struct {
	ID         int64      `json:"id"`
	Domain     string     `json:"domain"`
	Name       string     `json:"name"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

const tokenColumns = `id, domain, name, hint, created_at, last_used_at, revoked_at`

func (t *APIToken) scanTargets() []any {
	return []any{&t.ID, &t.Domain, &t.Name, &t.Hint, &t.CreatedAt, &t.LastUsedAt, &t.RevokedAt}
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// CreateAPIToken makes a token for domain, named name (a label for people),
// and returns it with its row. The token is not stored: this is the only
// time it can be shown.
func (s *Store) CreateAPIToken(ctx context.Context, domain, name string) (token string, t *APIToken, err error) {
	if err := ValidateDomain(domain); err != nil {
		return "", nil, err
	}
	if err := ValidateText("name", name, MaxNameLen); err != nil {
		return "", nil, err
	}
	token = APITokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(randomBytes(32)))
	t = &APIToken{}
	err = s.pool.QueryRow(ctx, `INSERT INTO api_tokens (domain, name, token_hash, hint) VALUES ($1, $2, $3, $4)
		RETURNING `+tokenColumns, domain, name, hashToken(token), token[:tokenHintLen]).Scan(t.scanTargets()...)
	if err != nil {
		return "", nil, err
	}
	return token, t, nil
}

// ListAPITokensParams filters ListAPITokens.
type ListAPITokensParams struct {
	Domain         string // "" = every domain
	IncludeRevoked bool
}

// ListAPITokens returns tokens in id order.
func (s *Store) ListAPITokens(ctx context.Context, p ListAPITokensParams) ([]APIToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens
		WHERE ($1 = '' OR domain = $1) AND ($2 OR revoked_at IS NULL) ORDER BY id`, p.Domain, p.IncludeRevoked)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIToken, error) {
		var t APIToken
		return t, row.Scan(t.scanTargets()...)
	})
}

// RevokeAPIToken revokes a token at once; revoking a revoked one changes
// nothing. It returns the token's row.
func (s *Store) RevokeAPIToken(ctx context.Context, id int64) (*APIToken, error) {
	var t APIToken
	err := s.pool.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
		RETURNING `+tokenColumns, id).Scan(t.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "API token %d not found", id)
	}
	return &t, err
}

// APITokenByValue returns the valid (unrevoked) token whose value is token,
// ENOTFOUND for any other, and notes its use (at most once a minute, so
// authentication is not a write per request).
func (s *Store) APITokenByValue(ctx context.Context, token string) (*APIToken, error) {
	if !strings.HasPrefix(token, APITokenPrefix) || len(token) > maxPresentedToken {
		return nil, Errorf(ENOTFOUND, "no such API token")
	}
	var t APIToken
	err := s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL`,
		hashToken(token)).Scan(t.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "no such API token")
	}
	if err != nil {
		return nil, err
	}
	if t.LastUsedAt == nil || time.Since(*t.LastUsedAt) > time.Minute {
		if _, err := s.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = now() WHERE id = $1`, t.ID); err != nil {
			return nil, err
		}
	}
	return &t, nil
}
