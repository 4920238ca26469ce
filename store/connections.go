package store

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// Connections: how a domain's repeaters authenticate to their endpoints,
// kept apart from the repeaters so one set of credentials serves many (and
// is rotated in one place). A repeater names at most one connection of its
// own domain (connection_id); the sender applies it to every request
// (repeaters/auth.go). The secret fields are sealed at rest like a
// repeater's signing secret (secrets.go) and never rendered.

// Auth types of a connection.
const (
	AuthNone                    = "none"
	AuthBasic                   = "basic"
	AuthBearer                  = "bearer"
	AuthAPIKey                  = "api_key"
	AuthOAuth2ClientCredentials = "oauth2_client_credentials"
)

// AuthTypes lists the auth types a connection may have.
var AuthTypes = []string{AuthNone, AuthBasic, AuthBearer, AuthAPIKey, AuthOAuth2ClientCredentials}

// Where an OAuth2 client sends its credentials to the token endpoint:
// HTTP Basic (client_secret_basic) or the form body (client_secret_post).
const (
	CredentialsInHeader = "header"
	CredentialsInBody   = "body"
)

// Connection limits.
const (
	maxConnectionField = 4096
	maxCAPEM           = 64 << 10
)

// Connection is a domain's authentication settings for its endpoints.
// Password, Token, APIKey and ClientSecret are write-only.
type Connection struct {
	ID            int64     `gorm:"primaryKey" json:"id"`
	Domain        string    `json:"domain"`
	Name          string    `json:"name"`
	AuthType      string    `gorm:"column:auth_type" json:"auth_type"`
	Username      string    `gorm:"column:username" json:"username,omitempty"`
	Password      string    `gorm:"column:password" json:"-"`
	Token         string    `gorm:"column:token" json:"-"`
	APIKeyHeader  string    `gorm:"column:api_key_header" json:"api_key_header,omitempty"`
	APIKey        string    `gorm:"column:api_key" json:"-"`
	TokenURL      string    `gorm:"column:token_url" json:"token_url,omitempty"`
	ClientID      string    `gorm:"column:client_id" json:"client_id,omitempty"`
	ClientSecret  string    `gorm:"column:client_secret" json:"-"`
	Scope         string    `gorm:"column:scope" json:"scope,omitempty"`
	CredentialsIn string    `gorm:"column:credentials_in" json:"credentials_in,omitempty"`
	SkipTLSVerify bool      `gorm:"column:skip_tls_verify" json:"skip_tls_verify"`
	CAPEM         string    `gorm:"column:ca_pem" json:"ca_pem,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Version tells settings apart: the sender keys its token cache and TLS
// transports by id and version, so a changed connection starts afresh.
func (c *Connection) Version() int64 { return c.UpdatedAt.UnixNano() }

// Secrets lists the connection's secret values that are set.
func (c *Connection) Secrets() []string {
	var out []string
	for _, v := range []string{c.Password, c.Token, c.APIKey, c.ClientSecret} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// authField is one auth setting: its API name, its value, whether it is a
// secret, and the auth type it belongs to.
type authField struct {
	name     string
	value    *string
	secret   bool
	authType string
	required bool
}

func (c *Connection) authFields() []authField {
	return []authField{
		{"username", &c.Username, false, AuthBasic, true},
		{"password", &c.Password, true, AuthBasic, true},
		{"token", &c.Token, true, AuthBearer, true},
		{"api_key_header", &c.APIKeyHeader, false, AuthAPIKey, true},
		{"api_key", &c.APIKey, true, AuthAPIKey, true},
		{"token_url", &c.TokenURL, false, AuthOAuth2ClientCredentials, true},
		{"client_id", &c.ClientID, false, AuthOAuth2ClientCredentials, true},
		{"client_secret", &c.ClientSecret, true, AuthOAuth2ClientCredentials, true},
		{"scope", &c.Scope, false, AuthOAuth2ClientCredentials, false},
	}
}

// ResetAuth clears every auth field (for a change of auth type, whose new
// fields are then given whole).
func (c *Connection) ResetAuth() {
	for _, f := range c.authFields() {
		*f.value = ""
	}
	c.CredentialsIn = ""
}

func (c *Connection) withDefaults() {
	if c.AuthType == "" {
		c.AuthType = AuthNone
	}
	if c.AuthType == AuthOAuth2ClientCredentials && c.CredentialsIn == "" {
		c.CredentialsIn = CredentialsInHeader
	}
}

// Validate is the one home of a connection's field rules: a known auth
// type, every field that type needs and none of another type's, text the
// database can hold, a header name net/http can send and a CA that parses.
// The token URL's target (SSRF, https) is the repeaters package's to judge
// (repeaters.ValidateTokenURL), as for a repeater's URL.
func (c *Connection) Validate() error {
	if err := ValidateDomain(c.Domain); err != nil {
		return err
	}
	if err := ValidateText("name", c.Name, MaxNameLen); err != nil {
		return err
	}
	if !validAuthType(c.AuthType) {
		return Errorf(EINVALID, "auth_type %q is unknown (auth types: %s)", c.AuthType, strings.Join(AuthTypes, ", "))
	}
	for _, f := range c.authFields() {
		if err := c.validateAuthField(f); err != nil {
			return err
		}
	}
	if c.AuthType == AuthAPIKey && !isHeaderToken(c.APIKeyHeader) {
		return Errorf(EINVALID, "api_key_header %q is not a valid HTTP header name", c.APIKeyHeader)
	}
	if err := c.validateCredentialsIn(); err != nil {
		return err
	}
	return validateCAPEM(c.CAPEM)
}

func validAuthType(t string) bool {
	for _, a := range AuthTypes {
		if a == t {
			return true
		}
	}
	return false
}

func (c *Connection) validateAuthField(f authField) error {
	v := *f.value
	switch {
	case f.authType != c.AuthType && v != "":
		return Errorf(EINVALID, "%s is a setting of auth_type %s, not %s", f.name, f.authType, c.AuthType)
	case f.authType == c.AuthType && f.required && v == "":
		return Errorf(EINVALID, "auth_type %s needs %s", c.AuthType, f.name)
	case f.secret && strings.HasPrefix(v, SealedPrefix):
		return Errorf(EINVALID, "%s %v", f.name, errSealedPlaintext)
	case strings.ContainsFunc(v, isControlInValue):
		return Errorf(EINVALID, "%s must not contain control characters", f.name)
	}
	return ValidateText(f.name, v, maxConnectionField)
}

func (c *Connection) validateCredentialsIn() error {
	switch {
	case c.AuthType != AuthOAuth2ClientCredentials && c.CredentialsIn != "":
		return Errorf(EINVALID, "credentials_in is a setting of auth_type %s", AuthOAuth2ClientCredentials)
	case c.AuthType == AuthOAuth2ClientCredentials && c.CredentialsIn != CredentialsInHeader && c.CredentialsIn != CredentialsInBody:
		return Errorf(EINVALID, "credentials_in must be %q or %q", CredentialsInHeader, CredentialsInBody)
	}
	return nil
}

// validateCAPEM accepts "" or PEM text holding only certificates, at least one.
func validateCAPEM(text string) error {
	if text == "" {
		return nil
	}
	if len(text) > maxCAPEM {
		return Errorf(EINVALID, "ca_pem is over %d KiB", maxCAPEM>>10)
	}
	rest, n := []byte(text), 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return Errorf(EINVALID, "ca_pem holds a %s block; only CERTIFICATE blocks are allowed", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return Errorf(EINVALID, "ca_pem certificate %d does not parse: %v", n+1, err)
		}
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return Errorf(EINVALID, "ca_pem must be PEM certificates (-----BEGIN CERTIFICATE-----)")
	}
	return nil
}

// connectionAAD binds a sealed connection field to its field and domain.
func connectionAAD(domain, field string) string { return secretAAD(domain, "connection:"+field) }

// sealedConnection returns the row to write for c: c with its secrets sealed.
func (s *Store) sealedConnection(c *Connection) *Connection {
	row := *c
	for _, f := range row.authFields() {
		if f.secret {
			*f.value = s.opts.Secrets.seal(connectionAAD(c.Domain, f.name), *f.value)
		}
	}
	return &row
}

// openConnection replaces c's stored secrets with their plaintext and
// reports whether any was not sealed with the current key.
func (s *Store) openConnection(c *Connection) (stale bool, err error) {
	current := s.opts.Secrets.CurrentKeyID()
	for _, f := range c.authFields() {
		if !f.secret || *f.value == "" {
			continue
		}
		pt, keyID, oerr := s.opts.Secrets.open(connectionAAD(c.Domain, f.name), *f.value)
		if oerr != nil {
			return stale, fmt.Errorf("connection %d: %w", c.ID, oerr)
		}
		*f.value, stale = pt, stale || keyID != current
	}
	return stale, nil
}

// CreateConnection validates c and inserts it with its secrets sealed,
// filling its ID and timestamps.
func (s *Store) CreateConnection(ctx context.Context, c *Connection) error {
	c.withDefaults()
	if err := c.Validate(); err != nil {
		return err
	}
	row := s.sealedConnection(c)
	if err := s.gorm.WithContext(ctx).Create(row).Error; err != nil {
		return err
	}
	c.ID, c.CreatedAt, c.UpdatedAt = row.ID, row.CreatedAt, row.UpdatedAt
	return nil
}

// GetConnection returns a connection with its secrets opened.
func (s *Store) GetConnection(ctx context.Context, id int64) (*Connection, error) {
	var c Connection
	err := s.gorm.WithContext(ctx).First(&c, id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, Errorf(ENOTFOUND, "connection %d not found", id)
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.openConnection(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

// ListConnectionsParams filters ListConnections.
type ListConnectionsParams struct {
	Domain  string // "" = every domain
	AfterID int64  // cursor
	Limit   int    // defaults to 100
}

// ListConnections returns connections in id order, secrets opened.
func (s *Store) ListConnections(ctx context.Context, p ListConnectionsParams) ([]Connection, error) {
	q := s.gorm.WithContext(ctx).Where("id > ?", p.AfterID).Order("id")
	if p.Domain != "" {
		q = q.Where("domain = ?", p.Domain)
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var out []Connection
	if err := q.Limit(p.Limit).Find(&out).Error; err != nil {
		return nil, err
	}
	for i := range out {
		if _, err := s.openConnection(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdateConnection validates c and saves every setting; the sender sees
// the new version on its next request (a cached OAuth2 token of the old
// version is not used again).
func (s *Store) UpdateConnection(ctx context.Context, c *Connection) error {
	c.withDefaults()
	if err := c.Validate(); err != nil {
		return err
	}
	row := s.sealedConnection(c)
	row.UpdatedAt = time.Now()
	res := s.gorm.WithContext(ctx).Model(row).
		Select("Name", "AuthType", "Username", "Password", "Token", "APIKeyHeader", "APIKey", "TokenURL",
			"ClientID", "ClientSecret", "Scope", "CredentialsIn", "SkipTLSVerify", "CAPEM", "UpdatedAt").
		Updates(row)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != 1 {
		return Errorf(ENOTFOUND, "connection %d not found", c.ID)
	}
	c.UpdatedAt = row.UpdatedAt
	return nil
}

// DeleteConnection deletes a connection no active repeater uses (ECONFLICT
// naming them otherwise); deleted repeaters that named it let it go.
func (s *Store) DeleteConnection(ctx context.Context, id int64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM connections WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		used, err := usedBy(ctx, tx, []int64{id})
		if err != nil {
			return err
		}
		if ids := used[id]; len(ids) > 0 {
			return Errorf(ECONFLICT, "connection %d is used by repeaters %s; point them elsewhere first", id, joinIDs(ids))
		}
		if _, err := tx.Exec(ctx, `UPDATE repeaters SET connection_id = NULL WHERE connection_id = $1 AND is_deleted`, id); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM connections WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			return Errorf(ENOTFOUND, "connection %d not found", id)
		}
		return err
	})
}

// ConnectionsUsedBy maps each of ids to the active repeaters that use it.
func (s *Store) ConnectionsUsedBy(ctx context.Context, ids []int64) (map[int64][]int64, error) {
	return usedBy(ctx, s.pool, ids)
}

type rowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func usedBy(ctx context.Context, q rowsQuerier, ids []int64) (map[int64][]int64, error) {
	rows, err := q.Query(ctx, `SELECT connection_id, id FROM repeaters
		WHERE connection_id = ANY($1) AND NOT is_deleted ORDER BY id`, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64][]int64, len(ids))
	var conn, rep int64
	_, err = pgx.ForEachRow(rows, []any{&conn, &rep}, func() error {
		out[conn] = append(out[conn], rep)
		return nil
	})
	return out, err
}

func joinIDs(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprint(id)
	}
	return strings.Join(parts, ", ")
}

// checkConnection refuses a repeater naming a connection that does not
// exist in its domain (the foreign key would too, less clearly).
func (s *Store) checkConnection(ctx context.Context, r *Repeater) error {
	if r.ConnectionID == nil {
		return nil
	}
	var domain string
	err := s.pool.QueryRow(ctx, `SELECT domain FROM connections WHERE id = $1`, *r.ConnectionID).Scan(&domain)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && domain != r.Domain {
		return Errorf(EINVALID, "connection_id %d is not a connection of domain %s", *r.ConnectionID, r.Domain)
	}
	return err
}

// attachConnection loads the repeater's connection for the sender.
func (s *Store) attachConnection(ctx context.Context, r *Repeater) error {
	if r.ConnectionID == nil {
		return nil
	}
	c, err := s.GetConnection(ctx, *r.ConnectionID)
	if err != nil {
		return fmt.Errorf("repeater %d: %w", r.ID, err)
	}
	r.Connection = c
	return nil
}

// reencryptConnections seals every connection's secrets with the current
// key (ReencryptSecrets' second part). Connections are few: one pass.
func (s *Store) reencryptConnections(ctx context.Context) (n, rewritten int, err error) {
	err = s.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var conns []Connection
		if err := tx.Raw(`SELECT * FROM connections ORDER BY id FOR UPDATE`).Scan(&conns).Error; err != nil {
			return err
		}
		n = len(conns)
		for i := range conns {
			stale, err := s.openConnection(&conns[i])
			if err != nil {
				return err
			}
			if !stale {
				continue
			}
			row := s.sealedConnection(&conns[i])
			if err := tx.Model(row).Select("Password", "Token", "APIKey", "ClientSecret").Updates(row).Error; err != nil {
				return err
			}
			rewritten++
		}
		return nil
	})
	return n, rewritten, err
}
