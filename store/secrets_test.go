package store_test

import (
	"context"
	"strings"
	"testing"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// openWith opens another Store on dbURL with keys (a REPEATERD_SECRET_KEY).
func openWith(t *testing.T, dbURL, keys string) *store.Store {
	t.Helper()
	k, err := store.ParseKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenWith(context.Background(), dbURL, store.Options{Secrets: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// stored reads a repeater's secret columns as the table holds them.
func stored(t *testing.T, st *store.Store, id int64) (secret, headers string) {
	t.Helper()
	if err := st.Pool().QueryRow(t.Context(), `SELECT signing_secret, headers::text FROM repeaters WHERE id = $1`, id).
		Scan(&secret, &headers); err != nil {
		t.Fatal(err)
	}
	return secret, headers
}

func TestSecretsSealedAtRestAndRotated(t *testing.T) {
	const secret, credential = "whsec_c2lnbmluZy1zZWNyZXQ", "Bearer tenant-key-123"
	key1, key2 := store.NewSecretKey(), store.NewSecretKey()
	dbURL := storetest.NewDB(t)
	plain := openWith(t, dbURL, "")
	one := openWith(t, dbURL, key1)
	create := func(st *store.Store, name string) *store.Repeater {
		t.Helper()
		r := &store.Repeater{Domain: "acme", Name: name, URL: "https://example.com/", SigningSecret: secret,
			Headers: map[string]string{"Authorization": credential, "X-Empty": ""}}
		if err := st.CreateRepeater(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	legacy := create(plain, "before any key")
	r1 := create(one, "key 1")
	if r1.SigningSecret != secret || r1.Headers["Authorization"] != credential {
		t.Fatal("CreateRepeater changed the caller's plaintext")
	}
	// The table holds ciphertext only; the store hands back plaintext.
	s, h := stored(t, one, r1.ID)
	if !strings.HasPrefix(s, store.SealedPrefix+one.SecretKeyID()+":") || strings.Contains(s, "c2lnbmluZy1zZWNyZXQ") ||
		strings.Contains(h, "tenant-key-123") || !strings.Contains(h, `"X-Empty": ""`) {
		t.Fatalf("stored: secret %q, headers %s", s, h)
	}
	if s, _ := stored(t, one, legacy.ID); s != secret {
		t.Fatalf("a row written without a key: %q", s)
	}
	for _, id := range []int64{legacy.ID, r1.ID} {
		got, err := one.GetRepeater(t.Context(), id)
		if err != nil || got.SigningSecret != secret || got.Headers["Authorization"] != credential {
			t.Fatalf("GetRepeater(%d) with key 1: %+v, %v", id, got, err)
		}
	}
	// A store without the key cannot open them, and says why.
	if _, err := plain.GetRepeater(t.Context(), r1.ID); err == nil || !strings.Contains(err.Error(), "no REPEATERD_SECRET_KEY") {
		t.Fatalf("GetRepeater without a key: %v", err)
	}
	// Rotation: key 2 first, key 1 still read; new writes use key 2.
	both := openWith(t, dbURL, key2+","+key1)
	r2 := create(both, "key 2")
	if s, _ := stored(t, both, r2.ID); !strings.HasPrefix(s, store.SealedPrefix+both.SecretKeyID()+":") || both.SecretKeyID() == one.SecretKeyID() {
		t.Fatalf("a write after rotation: %q", s)
	}
	if got, err := both.GetRepeater(t.Context(), r1.ID); err != nil || got.SigningSecret != secret {
		t.Fatalf("an old key's value after rotation: %v", err)
	}
	two := openWith(t, dbURL, key2)
	if _, err := two.GetRepeater(t.Context(), r1.ID); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Fatalf("key 1's value with key 2 alone: %v", err)
	}
	// Re-encryption seals everything with key 2, plaintext included; again rewrites nothing.
	if res, err := both.ReencryptSecrets(t.Context()); err != nil || res.Repeaters != 3 || res.Rewritten != 2 {
		t.Fatalf("reencrypt: %+v, %v", res, err)
	}
	if res, err := both.ReencryptSecrets(t.Context()); err != nil || res.Rewritten != 0 {
		t.Fatalf("reencrypt again: %+v, %v", res, err)
	}
	for _, id := range []int64{legacy.ID, r1.ID, r2.ID} {
		got, err := two.GetRepeater(t.Context(), id)
		if err != nil || got.SigningSecret != secret || got.Headers["Authorization"] != credential {
			t.Fatalf("after reencrypt, key 2 alone opens %d: %+v, %v", id, got, err)
		}
		if s, _ := stored(t, two, id); !strings.HasPrefix(s, store.SealedPrefix+two.SecretKeyID()+":") {
			t.Fatalf("after reencrypt %d is %q", id, s)
		}
	}
	if _, err := plain.ReencryptSecrets(t.Context()); err == nil {
		t.Fatal("reencrypt without a key ran")
	}
	// UpdateRepeater seals too; a value moved to another row does not open.
	r2.Headers = map[string]string{"Authorization": "Bearer rotated-credential"}
	if err := two.UpdateRepeater(t.Context(), r2); err != nil {
		t.Fatal(err)
	}
	if _, h := stored(t, two, r2.ID); strings.Contains(h, "rotated-credential") {
		t.Fatalf("UpdateRepeater stored plaintext: %s", h)
	}
	other := &store.Repeater{Domain: "globex", URL: "https://example.com/"}
	if err := two.CreateRepeater(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Pool().Exec(t.Context(), `UPDATE repeaters SET signing_secret = (SELECT signing_secret FROM repeaters WHERE id = $1) WHERE id = $2`,
		r1.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := two.GetRepeater(t.Context(), other.ID); err == nil {
		t.Fatal("acme's sealed secret opened as globex's")
	}
}

func TestParseKeyring(t *testing.T) {
	if k, err := store.ParseKeyring(" "); k != nil || err != nil {
		t.Fatalf("empty: %v %v", k, err)
	}
	hex := strings.Repeat("ab", 32)
	k, err := store.ParseKeyring(store.NewSecretKey() + ", " + hex)
	if err != nil || len(k.KeyIDs()) != 2 {
		t.Fatalf("two keys: %v %v", k, err)
	}
	for _, bad := range []string{"short", strings.Repeat("ab", 31), hex + "," + hex, "AAAA", store.NewSecretKey() + ",,"} {
		if _, err := store.ParseKeyring(bad); err == nil {
			t.Errorf("ParseKeyring(%q) accepted", bad)
		}
	}
}

func TestAPITokens(t *testing.T) {
	st := storetest.NewStore(t)
	token, tok, err := st.CreateAPIToken(t.Context(), "acme", "ci")
	if err != nil || !strings.HasPrefix(token, store.APITokenPrefix) || len(token) < 40 || !strings.HasPrefix(token, tok.Hint) {
		t.Fatalf("CreateAPIToken: %q %+v %v", token, tok, err)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM api_tokens WHERE position($1 in hint || name) > 0 OR token_hash = $1::bytea`, token); n != 0 {
		t.Fatal("the token itself is stored")
	}
	got, err := st.APITokenByValue(t.Context(), token)
	if err != nil || got.ID != tok.ID || got.Domain != "acme" {
		t.Fatalf("APITokenByValue: %+v %v", got, err)
	}
	if used := storetest.Count(t, st, `SELECT count(*) FROM api_tokens WHERE last_used_at IS NOT NULL`); used != 1 {
		t.Error("use not noted")
	}
	for _, bad := range []string{"", token + "x", token[:len(token)-1], "rpd_" + strings.Repeat("a", 300), strings.TrimPrefix(token, "rpd_")} {
		if _, err := st.APITokenByValue(t.Context(), bad); store.ErrorCode(err) != store.ENOTFOUND {
			t.Errorf("APITokenByValue(%q): %v", bad, err)
		}
	}
	if _, _, err := st.CreateAPIToken(t.Context(), "", "x"); store.ErrorCode(err) != store.EINVALID {
		t.Errorf("a token without a domain: %v", err)
	}
	if r, err := st.RevokeAPIToken(t.Context(), tok.ID); err != nil || r.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	if _, err := st.APITokenByValue(t.Context(), token); store.ErrorCode(err) != store.ENOTFOUND {
		t.Errorf("a revoked token still works: %v", err)
	}
	if list, err := st.ListAPITokens(t.Context(), store.ListAPITokensParams{}); err != nil || len(list) != 0 {
		t.Errorf("list without revoked: %v %v", list, err)
	}
	if list, err := st.ListAPITokens(t.Context(), store.ListAPITokensParams{Domain: "acme", IncludeRevoked: true}); err != nil || len(list) != 1 {
		t.Errorf("list with revoked: %v %v", list, err)
	}
	if _, err := st.RevokeAPIToken(t.Context(), 999); store.ErrorCode(err) != store.ENOTFOUND {
		t.Errorf("revoke unknown: %v", err)
	}
}
