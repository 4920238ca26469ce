package auth

import (
	"net/http/httptest"
	"testing"
)

func TestToken(t *testing.T) {
	open := NewToken("")
	if open.Configured() || open.Matches("") || !open.Allows(httptest.NewRequest("GET", "/", nil)) {
		t.Fatal("no token: nothing matches, every request is allowed")
	}
	tok := NewToken("s3cret")
	for _, c := range []struct {
		name, header string
		basic        bool
		want         bool
	}{
		{"bearer", "Bearer s3cret", false, true},
		{"wrong bearer", "Bearer s3cre", false, false},
		{"lowercase scheme", "bearer s3cret", false, false},
		{"none", "", false, false},
		{"basic password", "", true, true},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if c.basic {
			r.SetBasicAuth("anyone", "s3cret")
		}
		if got := tok.Allows(r); got != c.want {
			t.Errorf("%s: Allows = %v, want %v", c.name, got, c.want)
		}
	}
	if !tok.Matches("s3cret") || tok.Matches("S3cret") {
		t.Fatal("Matches compares exactly")
	}
}
