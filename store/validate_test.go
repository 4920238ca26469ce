package store_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func FuzzValidateDomainFlag(f *testing.F) {
	f.Add("acme", store.FlagProcessRepeaters)
	f.Add("acme", "go_faster")
	f.Add("", store.FlagProcessRepeaters)
	f.Add("a\x00b", store.FlagProcessRepeaters)
	f.Add("acme", "process_repeaters\x00")
	f.Add("acme", "PROCESS_REPEATERS")
	f.Add("\xff", "")
	f.Fuzz(func(t *testing.T, domain, flag string) {
		err := store.ValidateDomainFlag(domain, flag)
		if err == nil {
			if !slices.Contains(store.KnownFlags, flag) || store.ValidateDomain(domain) != nil {
				t.Fatalf("accepted domain %q flag %q", domain, flag)
			}
			return
		}
		if store.ErrorCode(err) != store.EINVALID || err.Error() == "" {
			t.Fatalf("domain %q flag %q: error %v is not a clear EINVALID", domain, flag, err)
		}
		if store.ValidateDomain(domain) == nil && !strings.Contains(err.Error(), "unknown flag") {
			t.Fatalf("flag %q: error %q does not say the flag is unknown", flag, err)
		}
	})
}

func TestRepeaterValidate(t *testing.T) {
	valid := func() *store.Repeater {
		return &store.Repeater{Domain: "acme", Name: "orders", URL: "https://example.com/hook", RequestMethod: "POST",
			Headers: map[string]string{"X-Team": "a\tb"}, MaxAttempts: 1, TimeoutMS: 1, BackoffCodes: store.Int32Array{429, 503}}
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("a valid repeater: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*store.Repeater)
	}{
		{"no domain", "domain is required", func(r *store.Repeater) { r.Domain = "" }},
		{"domain with NUL", "domain must not contain control characters", func(r *store.Repeater) { r.Domain = "a\x00" }},
		{"long domain", "domain is longer than 255 bytes", func(r *store.Repeater) { r.Domain = strings.Repeat("a", 256) }},
		{"no URL", "url is required", func(r *store.Repeater) { r.URL = "" }},
		{"long URL", "url is longer than 2048 bytes", func(r *store.Repeater) { r.URL += strings.Repeat("a", 2048) }},
		{"name not UTF-8", "name is not valid UTF-8", func(r *store.Repeater) { r.Name = "\xff" }},
		{"long secret", "signing_secret is longer than 1024 bytes", func(r *store.Repeater) { r.SigningSecret = strings.Repeat("s", 1025) }},
		{"GET", "request_method must be POST, PUT or PATCH", func(r *store.Repeater) { r.RequestMethod = "GET" }},
		{"negative workers", "max_workers must be from 0", func(r *store.Repeater) { r.MaxWorkers = -1 }},
		{"huge timeout", "timeout_ms must be from 1", func(r *store.Repeater) { r.TimeoutMS = 1 << 40 }},
		{"no attempts", "max_attempts must be from 1", func(r *store.Repeater) { r.MaxAttempts = 0 }},
		{"negative burst", "rate_burst must be from 0", func(r *store.Repeater) { r.RateBurst = -1 }},
		{"negative rate", "rate_limit_per_s must be", func(r *store.Repeater) { r.RateLimitPerS = -0.5 }},
		{"header name", "is not a valid HTTP token", func(r *store.Repeater) { r.Headers = map[string]string{"X A": "1"} }},
		{"header injection", "has an invalid value", func(r *store.Repeater) { r.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }},
		{"long header value", "has an invalid value", func(r *store.Repeater) { r.Headers = map[string]string{"X-A": strings.Repeat("v", 8193)} }},
		{"too many headers", "at most 50 headers", func(r *store.Repeater) {
			r.Headers = map[string]string{}
			for i := range 51 {
				r.Headers[fmt.Sprintf("X-%d", i)] = "v"
			}
		}},
		{"backoff code", "backoff_codes must be HTTP status codes", func(r *store.Repeater) { r.BackoffCodes = store.Int32Array{700} }},
		{"too many backoff codes", "at most 100 backoff_codes", func(r *store.Repeater) { r.BackoffCodes = make(store.Int32Array, 101) }},
	} {
		r := valid()
		tc.edit(r)
		err := r.Validate()
		if store.ErrorCode(err) != store.EINVALID || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want EINVALID containing %q", tc.name, err, tc.want)
		}
	}
}

// TestCreateRepeaterValidates checks the store runs Validate on save: the
// API relies on it for every field rule.
func TestCreateRepeaterValidates(t *testing.T) {
	st := storetest.NewStore(t)
	bad := &store.Repeater{Domain: "acme", URL: "https://example.com/", Headers: map[string]string{"X-A": "a\nb"}}
	if err := st.CreateRepeater(t.Context(), bad); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("CreateRepeater with a bad header: %v, want EINVALID", err)
	}
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{})
	r.Name = "a\x00b"
	if err := st.UpdateRepeater(t.Context(), r); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("UpdateRepeater with a NUL in the name: %v, want EINVALID", err)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeaters WHERE name LIKE 'a%b'`); n != 0 {
		t.Errorf("a rejected update was saved (%d rows)", n)
	}
}
