package store

import (
	"strings"
	"unicode/utf8"
)

// Text limits: Postgres text takes any length, but nothing legitimate is
// this long, and a bound keeps rows and responses small.
const (
	MaxDomainLen = 255
	MaxNameLen   = 255
	MaxURLLen    = 2048
	MaxSecretLen = 1024
)

// ValidateText rejects what Postgres text cannot store (NUL, invalid UTF-8)
// and control characters, which only ever mean a mistake in the short
// fields it guards (names, keys, media types), and text over maxLen bytes.
// field names the value in the error.
func ValidateText(field, s string, maxLen int) error {
	switch {
	case len(s) > maxLen:
		return Errorf(EINVALID, "%s is longer than %d bytes", field, maxLen)
	case !utf8.ValidString(s):
		return Errorf(EINVALID, "%s is not valid UTF-8", field)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return Errorf(EINVALID, "%s must not contain control characters", field)
	}
	return nil
}

// ValidateDomain checks a domain name, wherever it comes from (a path, a
// query, a body).
func ValidateDomain(domain string) error {
	if domain == "" {
		return Errorf(EINVALID, "domain is required")
	}
	return ValidateText("domain", domain, MaxDomainLen)
}

// ValidateDomainFlag checks a domain and one of its flag names, as a flag
// route or form names them.
func ValidateDomainFlag(domain, flag string) error {
	if err := ValidateDomain(domain); err != nil {
		return err
	}
	return ValidateFlag(flag)
}
