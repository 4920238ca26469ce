package store

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		mark string
		want string
	}{
		{"short", 10, "…", "short"},
		{"exactly", 7, "…", "exactly"},
		{"abcdefgh", 5, "", "abcde"},
		{"abcdefgh", 5, "…", "ab…"}, // the mark is 3 bytes and counts
		{"héllo", 2, "", "h"},       // é is 2 bytes: not split
		{"日本語", 4, "", "日"},
		{"abc", 0, "", ""},
	} {
		if got := Truncate(c.in, c.n, c.mark); got != c.want {
			t.Errorf("Truncate(%q, %d, %q) = %q, want %q", c.in, c.n, c.mark, got, c.want)
		}
	}
}

func TestStorable(t *testing.T) {
	in := "bad\x00byte\xff" + strings.Repeat("é", 100)
	got := Storable(in, 50)
	if !utf8.ValidString(got) || strings.ContainsRune(got, 0) || len(got) > 50 || !strings.HasSuffix(got, "…") {
		t.Fatalf("Storable = %q (%d bytes)", got, len(got))
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("héllo wörld", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		got := Truncate(s, n, "…")
		if len(got) > max(n, len("…")) && len(s) > n {
			t.Fatalf("Truncate(%q, %d) = %q: too long", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Truncate split a rune: %q", got)
		}
	})
}
