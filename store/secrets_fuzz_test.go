package store

import (
	"strings"
	"testing"
)

// FuzzKeyringOpen: any stored value opens or fails cleanly, never panics,
// and whatever is sealed opens to itself, only for its own field.
func FuzzKeyringOpen(f *testing.F) {
	k, err := ParseKeyring(strings.Repeat("0f", 32))
	if err != nil {
		f.Fatal(err)
	}
	sealed := k.seal("repeaterd/signing_secret/acme", "whsec_x")
	for _, s := range []string{"", "plain", SealedPrefix, SealedPrefix + "x", SealedPrefix + "00000000:", sealed, sealed + "A", sealed[:len(sealed)-2]} {
		f.Add(s, "plaintext")
	}
	f.Fuzz(func(t *testing.T, stored, plaintext string) {
		_, _, _ = k.open("repeaterd/signing_secret/acme", stored)
		_, _, _ = (*Keyring)(nil).open("repeaterd/signing_secret/acme", stored)
		s := k.seal("repeaterd/header:x/acme", plaintext)
		got, id, err := k.open("repeaterd/header:x/acme", s)
		if err != nil || got != plaintext || (plaintext != "" && id != k.CurrentKeyID()) {
			t.Fatalf("seal/open %q: %q %q %v", plaintext, got, id, err)
		}
		if plaintext != "" {
			if _, _, err := k.open("repeaterd/header:x/globex", s); err == nil {
				t.Fatal("a sealed value opened for another domain")
			}
		}
	})
}

// FuzzParseKeyring: any spec parses or is refused with an EINVALID.
func FuzzParseKeyring(f *testing.F) {
	for _, s := range []string{"", strings.Repeat("ab", 32), NewSecretKey(), NewSecretKey() + "," + NewSecretKey(), ",", "==="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		k, err := ParseKeyring(spec)
		if err != nil && ErrorCode(err) != EINVALID {
			t.Fatalf("ParseKeyring(%q): %v", spec, err)
		}
		if err == nil && k != nil && len(k.KeyIDs()) == 0 {
			t.Fatalf("ParseKeyring(%q): a keyring without keys", spec)
		}
	})
}
