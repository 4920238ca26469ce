package main

import (
	"strings"
	"testing"

	"repeaterd/store"
)

func TestTokensCommands(t *testing.T) {
	e := newOpsEnv(t)
	out := e.mustRun("tokens", "create", "acme", "--name", "ci")
	token := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	tok, err := e.st.APITokenByValue(t.Context(), token)
	if err != nil || tok.Domain != "acme" || tok.Name != "ci" {
		t.Fatalf("tokens create printed %q: %+v %v", out, tok, err)
	}
	if list := e.mustRun("tokens", "list"); !strings.Contains(list, tok.Hint) || strings.Contains(list, token) {
		t.Errorf("tokens list shows no hint, or the token:\n%s", list)
	}
	e.mustRun("tokens", "revoke", "1")
	if _, err := e.st.APITokenByValue(t.Context(), token); store.ErrorCode(err) != store.ENOTFOUND {
		t.Errorf("a revoked token still works: %v", err)
	}
	if _, err := e.run("tokens", "create", ""); err == nil {
		t.Error("a token without a domain was made")
	}
}

func TestSecretsReencryptCommand(t *testing.T) {
	e := newOpsEnv(t)
	r := &store.Repeater{Domain: "acme", URL: "https://example.com/", SigningSecret: "whsec_plain-before-a-key"}
	if err := e.st.CreateRepeater(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	t.Setenv(secretKeyEnv, "")
	if _, err := e.run("secrets", "reencrypt"); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("reencrypt without a key: %v", err)
	}
	key := strings.TrimSpace(e.mustRun("secrets", "new-key"))
	t.Setenv(secretKeyEnv, key)
	if out := e.mustRun("secrets", "reencrypt"); !strings.Contains(out, "1 repeaters read, 1 re-encrypted") {
		t.Errorf("reencrypt: %s", out)
	}
	var stored string
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT signing_secret FROM repeaters`).Scan(&stored); err != nil ||
		!strings.HasPrefix(stored, store.SealedPrefix) {
		t.Fatalf("after reencrypt the table holds %q (%v)", stored, err)
	}
	// Every command reads repeaters with the key of the environment.
	if out := e.mustRun("repeaters", "list"); !strings.Contains(out, "acme") {
		t.Errorf("repeaters list with the key: %s", out)
	}
	t.Setenv(secretKeyEnv, "")
	if _, err := e.run("repeaters", "list"); err == nil {
		t.Error("repeaters list opened sealed secrets without the key")
	}
}
