package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"repeaterd/dashboards/api"
	"repeaterd/store/storetest"
)

func TestAPIRepeaterLifecycle(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	const secret, secret2 = "whsec_first-secret-value", "whsec_second-secret-value"
	var created repeaterJSON
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{
		"domain": "acme", "name": "orders", "url": "https://example.com/hook?token=abc",
		"headers": map[string]string{"X-Team": "a"}, "signing_secret": secret, "backoff_codes": []int{409},
	}).decode(t, &created)
	if created.ID == 0 || !created.HasSecret || created.SigningSecret != nil || created.MaxAttempts != 6 {
		t.Fatalf("created: %+v", created)
	}
	path := fmt.Sprintf("/api/v1/repeaters/%d", created.ID)

	var got repeaterJSON
	e.must(http.StatusOK, "GET", path, nil).decode(t, &got)
	if got.Name != "orders" || got.Headers["X-Team"] != api.RedactedValue || !got.HasSecret {
		t.Errorf("get: %+v", got)
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"name": "orders-v2", "signing_secret": secret2}).decode(t, &got)
	if got.Name != "orders-v2" || got.URL != created.URL || !got.HasSecret {
		t.Errorf("patch: %+v", got)
	}
	stored, err := e.st.GetRepeater(t.Context(), created.ID)
	if err != nil || stored.SigningSecret != secret2 {
		t.Errorf("patched secret not stored (err %v)", err)
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"signing_secret": ""}).decode(t, &got)
	if got.HasSecret {
		t.Error(`"signing_secret": "" did not remove the secret`)
	}
	e.must(http.StatusOK, "POST", path+"/pause", nil).decode(t, &got)
	if !got.IsPaused {
		t.Error("pause: not paused")
	}
	e.must(http.StatusOK, "POST", path+"/resume", nil).decode(t, &got)
	if got.IsPaused {
		t.Error("resume: still paused")
	}
	rec := storetest.Record(t, e.st, stored, nil)
	e.must(http.StatusNoContent, "DELETE", path, nil)
	e.must(http.StatusOK, "GET", path, nil).decode(t, &got)
	if !got.IsDeleted {
		t.Error("delete: not marked deleted")
	}
	var r recordJSON
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/records/%d", rec.ID), nil).decode(t, &r)
	if r.State != "cancelled" {
		t.Errorf("ready record of a deleted repeater is %s, want cancelled", r.State)
	}
	for _, b := range e.bodies {
		if strings.Contains(b, secret) || strings.Contains(b, secret2) || strings.Contains(b, "signing_secret") {
			t.Fatalf("a response renders the signing secret: %s", b)
		}
	}
}

func TestAPIListRepeatersPagesAndFilters(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	var want []int64
	for range 5 {
		want = append(want, e.repeater("acme").ID)
	}
	e.repeater("globex")
	gone := e.repeater("acme")
	if err := e.st.DeleteRepeater(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	var got []int64
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		var p pageJSON
		e.must(http.StatusOK, "GET", "/api/v1/repeaters?domain=acme&limit=2&cursor="+cursor, nil).decode(t, &p)
		for _, r := range p.Repeaters {
			got = append(got, r.ID)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged acme repeaters = %v, want %v", got, want)
	}
	var all pageJSON
	e.must(http.StatusOK, "GET", "/api/v1/repeaters?include_deleted=true", nil).decode(t, &all)
	if len(all.Repeaters) != 7 || all.NextCursor != nil {
		t.Errorf("include_deleted: %d repeaters, next %v", len(all.Repeaters), all.NextCursor)
	}
}
