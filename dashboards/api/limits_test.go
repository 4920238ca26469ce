package api_test

import (
	"fmt"
	"strings"
	"testing"

	"repeaterd/dashboards/api"
)

// Sending limits no one means are refused with a clear 422 and nothing is
// written (the rules are the store's: store.ValidateRateLimit, MaxTimeout).
func TestAPIRefusesAbsurdSendingLimits(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	live := e.repeater("acme")
	for _, c := range []struct {
		name, method, path, body, want string
	}{
		{"a rate of 1e-11", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","rate_limit_per_s":1e-11}`,
			"rate_limit_per_s must be 0 (no limit) or from 0.001 to 100000 requests per second, not 1e-11"},
		{"a burst of a billion", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","rate_limit_per_s":5,"rate_burst":1000000000}`,
			"rate_burst must be from 0"},
		{"a timeout past the maximum", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","timeout_ms":600000}`,
			"timeout_ms must be at most 120000"},
		{"patched to a rate of 1e-11", "PATCH", fmt.Sprintf("/api/v1/repeaters/%d", live.ID), `{"rate_limit_per_s":1e-11}`,
			"not 1e-11"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.rowCounts()
			r := e.do(c.method, c.path, c.body)
			if r.Status != 422 || r.errorCode() != "invalid" || !strings.Contains(string(r.Body), c.want) {
				t.Fatalf("%d %s; want 422 invalid saying %q", r.Status, r.Body, c.want)
			}
			if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("rows changed: %v → %v", before, after)
			}
		})
	}
	got := e.must(200, "GET", fmt.Sprintf("/api/v1/repeaters/%d", live.ID), nil)
	if strings.Contains(string(got.Body), "1e-11") {
		t.Fatalf("the refused patch was saved: %s", got.Body)
	}
}
