package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestConnectionSecretsSealedAtRest(t *testing.T) {
	key1, key2 := store.NewSecretKey(), store.NewSecretKey()
	dbURL := storetest.NewDB(t)
	one := openWith(t, dbURL, key1)
	ctx := context.Background()
	c := &store.Connection{Domain: "acme", AuthType: store.AuthOAuth2ClientCredentials, TokenURL: "https://auth.example.com/token",
		ClientID: "client", ClientSecret: "client-secret-value", Scope: "a b"}
	if err := one.CreateConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.CredentialsIn != store.CredentialsInHeader {
		t.Fatalf("credentials_in %q, want the default header", c.CredentialsIn)
	}
	var raw string
	if err := one.Pool().QueryRow(ctx, `SELECT client_secret FROM connections WHERE id = $1`, c.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, store.SealedPrefix) || strings.Contains(raw, "client-secret-value") {
		t.Fatalf("stored client_secret %q is not sealed", raw)
	}
	got, err := one.GetConnection(ctx, c.ID)
	if err != nil || got.ClientSecret != "client-secret-value" {
		t.Fatalf("GetConnection: %+v, %v", got, err)
	}
	// A sealed value copied to another domain's row does not open.
	other := &store.Connection{Domain: "other", AuthType: store.AuthBearer, Token: "t"}
	if err := one.CreateConnection(ctx, other); err != nil {
		t.Fatal(err)
	}
	storetest.Exec(t, dbURL, `UPDATE connections SET token = $1 WHERE id = $2`, raw, other.ID)
	if _, err := one.GetConnection(ctx, other.ID); err == nil {
		t.Fatal("a secret sealed for another row opened")
	}
	storetest.Exec(t, dbURL, `DELETE FROM connections WHERE id = $1`, other.ID)

	// Key rotation re-encrypts connections too.
	both := openWith(t, dbURL, key2+","+key1)
	res, err := both.ReencryptSecrets(ctx)
	if err != nil || res.Connections != 1 || res.ConnectionsRewritten != 1 {
		t.Fatalf("reencrypt: %+v, %v", res, err)
	}
	if got, err := openWith(t, dbURL, key2).GetConnection(ctx, c.ID); err != nil || got.ClientSecret != "client-secret-value" {
		t.Fatalf("after re-encryption under key 2 only: %+v, %v", got, err)
	}
}

func TestConnectionValidation(t *testing.T) {
	st := storetest.NewStore(t)
	ctx := context.Background()
	tests := []struct {
		conn store.Connection
		msg  string
	}{
		{store.Connection{AuthType: "digest"}, "unknown"},
		{store.Connection{AuthType: store.AuthBasic, Username: "u"}, "needs password"},
		{store.Connection{AuthType: store.AuthBearer}, "needs token"},
		{store.Connection{AuthType: store.AuthAPIKey, APIKey: "k"}, "needs api_key_header"},
		{store.Connection{AuthType: store.AuthAPIKey, APIKeyHeader: "bad header", APIKey: "k"}, "not a valid HTTP header"},
		{store.Connection{AuthType: store.AuthOAuth2ClientCredentials, ClientID: "c", ClientSecret: "s"}, "needs token_url"},
		{store.Connection{AuthType: store.AuthOAuth2ClientCredentials, TokenURL: "https://a/t", ClientSecret: "s"}, "needs client_id"},
		{store.Connection{AuthType: store.AuthOAuth2ClientCredentials, TokenURL: "https://a/t", ClientID: "c", ClientSecret: "s", CredentialsIn: "query"}, "credentials_in"},
		{store.Connection{AuthType: store.AuthBearer, Token: "t", Password: "p"}, "password is a setting of auth_type basic"},
		{store.Connection{AuthType: store.AuthBearer, Token: "t", CredentialsIn: "body"}, "credentials_in"},
		{store.Connection{AuthType: store.AuthBearer, Token: "a\r\nX-Evil: 1"}, "control"},
		{store.Connection{AuthType: store.AuthBearer, Token: store.SealedPrefix + "x"}, "must not start"},
		{store.Connection{AuthType: store.AuthNone, CAPEM: "not pem"}, "ca_pem"},
		{store.Connection{AuthType: store.AuthNone, CAPEM: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "ca_pem"},
	}
	for _, tt := range tests {
		c := tt.conn
		c.Domain = "acme"
		err := st.CreateConnection(ctx, &c)
		if store.ErrorCode(err) != store.EINVALID || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%+v: %v; want EINVALID with %q", tt.conn, err, tt.msg)
		}
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM connections`); n != 0 {
		t.Fatalf("%d connections written", n)
	}
}

func TestConnectionUsedByAndDelete(t *testing.T) {
	st := storetest.NewStore(t)
	ctx := context.Background()
	c := &store.Connection{Domain: "acme", AuthType: store.AuthBasic, Username: "u", Password: "p"}
	if err := st.CreateConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	r1 := storetest.Repeater(t, st, storetest.RepeaterOpts{Edit: func(r *store.Repeater) { r.ConnectionID = &c.ID }})
	r2 := storetest.Repeater(t, st, storetest.RepeaterOpts{Edit: func(r *store.Repeater) { r.ConnectionID = &c.ID }})
	// Another domain's repeater cannot name it.
	bad := &store.Repeater{Domain: "other", URL: "http://127.0.0.1:1/", ConnectionID: &c.ID}
	if err := st.CreateRepeater(ctx, bad); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("another domain's repeater: %v, want EINVALID", err)
	}
	used, err := st.ConnectionsUsedBy(ctx, []int64{c.ID})
	if err != nil || len(used[c.ID]) != 2 {
		t.Fatalf("used by %v, %v", used, err)
	}
	got, err := st.GetRepeater(ctx, r1.ID)
	if err != nil || got.Connection == nil || got.Connection.Password != "p" {
		t.Fatalf("GetRepeater did not attach the connection: %+v, %v", got, err)
	}
	if err := st.DeleteConnection(ctx, c.ID); store.ErrorCode(err) != store.ECONFLICT || !strings.Contains(err.Error(), "used by repeaters") {
		t.Fatalf("delete a used connection: %v, want ECONFLICT naming the repeaters", err)
	}
	if err := st.DeleteRepeater(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	r2.ConnectionID = nil
	if err := st.UpdateRepeater(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteConnection(ctx, c.ID); err != nil {
		t.Fatalf("delete once no active repeater uses it: %v", err)
	}
	if _, err := st.GetConnection(ctx, c.ID); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("after delete: %v", err)
	}
}

func TestRotateSecret(t *testing.T) {
	dbURL := storetest.NewDB(t)
	st := openWith(t, dbURL, store.NewSecretKey())
	ctx := context.Background()
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{Edit: func(r *store.Repeater) { r.SigningSecret = "old-secret" }})
	until := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	got, err := st.RotateSecret(ctx, r.ID, "new-secret", until)
	if err != nil {
		t.Fatal(err)
	}
	if got.SigningSecret != "new-secret" || got.PreviousSigningSecret != "old-secret" || got.PreviousSecretUntil == nil || !got.PreviousSecretUntil.Equal(until) {
		t.Fatalf("after rotation: %q, %q until %v", got.SigningSecret, got.PreviousSigningSecret, got.PreviousSecretUntil)
	}
	var prev string
	if err := st.Pool().QueryRow(ctx, `SELECT previous_signing_secret FROM repeaters WHERE id = $1`, r.ID).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(prev, store.SealedPrefix) {
		t.Fatalf("the previous secret is stored as %q, not sealed", prev)
	}
	for _, bad := range []struct {
		secret string
		until  time.Time
	}{{"", until}, {"x", time.Now().Add(-time.Second)}, {"x", time.Now().Add(store.MaxRotationOverlap + time.Hour)}, {store.SealedPrefix + "x", until}} {
		if _, err := st.RotateSecret(ctx, r.ID, bad.secret, bad.until); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("rotate %q until %v: %v, want EINVALID", bad.secret, bad.until, err)
		}
	}
	if _, err := st.RotateSecret(ctx, 999999, "x", until); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("unknown repeater: %v", err)
	}
}
