package store

import (
	"strings"
	"unicode/utf8"
)

// Truncate cuts s to at most n bytes on a rune boundary, ending it with mark
// (which counts toward n) when it was cut. Every shortened text the system
// stores or shows goes through it.
func Truncate(s string, n int, mark string) string {
	if len(s) <= n {
		return s
	}
	cut := max(0, n-len(mark))
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Storable makes s storable in a Postgres text column: valid UTF-8 without
// NUL (text rejects both), at most n bytes, cut on a rune boundary with an
// ellipsis.
func Storable(s string, n int) string {
	if len(s) > 4*n { // bound the work on a long body
		s = s[:4*n]
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	return Truncate(s, n, "…")
}
