package store

import (
	"cmp"
	"math"
	"strings"
	"time"
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

// Bounds of a repeater's sending limits. A rate below MinRateLimitPerS is
// no limit anyone means (1e-11/s is one request in three millennia) and
// would leave the dispatcher computing waits past any clock; a timeout past
// the store's MaxTimeout lets one tenant's hung endpoint hold a worker slot
// for as long as it likes.
const (
	DefaultMaxTimeout = 120 * time.Second
	MinRateLimitPerS  = 0.001 // one request per 1,000 s
	MaxRateLimitPerS  = 100_000
	MaxRateBurst      = 100_000
)

// ValidateRateLimit checks a rate limit (field) and its burst (burstField)
// wherever one is set (a repeater, the dispatcher's domain and global limits): a rate of 0 means no
// limit, otherwise it must be from MinRateLimitPerS to MaxRateLimitPerS per
// second, and the burst from 0 (one second's worth) to MaxRateBurst.
func ValidateRateLimit(field, burstField string, perSecond float64, burst int) error {
	switch {
	case math.IsNaN(perSecond) || math.IsInf(perSecond, 0) || perSecond < 0:
		return Errorf(EINVALID, "%s must be a number, 0 or more", field)
	case perSecond != 0 && (perSecond < MinRateLimitPerS || perSecond > MaxRateLimitPerS):
		return Errorf(EINVALID, "%s must be 0 (no limit) or from %g to %g requests per second, not %g",
			field, MinRateLimitPerS, float64(MaxRateLimitPerS), perSecond)
	case burst < 0 || burst > MaxRateBurst:
		return Errorf(EINVALID, "%s must be from 0 (one second's worth) to %d, not %d", burstField, MaxRateBurst, burst)
	}
	return nil
}

// MaxTimeout is the longest timeout_ms a repeater may have.
func (s *Store) MaxTimeout() time.Duration { return cmp.Or(s.opts.MaxTimeout, DefaultMaxTimeout) }

// validateRepeater is what CreateRepeater and UpdateRepeater check: the
// field rules (Repeater.Validate), then the sending limits, which depend on
// the store's options.
func (s *Store) validateRepeater(r *Repeater) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := ValidateRateLimit("rate_limit_per_s", "rate_burst", r.RateLimitPerS, r.RateBurst); err != nil {
		return err
	}
	if max := s.MaxTimeout(); r.Timeout() > max {
		return Errorf(EINVALID, "timeout_ms must be at most %d (%s), not %d", max.Milliseconds(), max, r.TimeoutMS)
	}
	return nil
}
