package api_test

import (
	"net/http"
	"testing"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/api/client"
)

// TestGeneratedClient drives the real API with the client generated from
// openapi.json (every exchange also checked against the document): create
// a repeater, post records, list and show them, pause and resume, and read
// the errors of bad requests.
func TestGeneratedClient(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	ctx := t.Context()
	c, err := client.NewClientWithResponses(e.base+"/api/v1", client.WithRequestEditorFn(client.JSONWrites))
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateRepeaterWithResponse(ctx, client.RepeaterInput{
		Domain: new("acme"), Url: new("https://example.com/hook"), Name: new("hook"),
		Headers: &map[string]string{"X-Key": "k"}, SigningSecret: new("s3cret"),
	})
	if err != nil || created.StatusCode() != http.StatusCreated {
		t.Fatalf("create repeater: %v %s", err, created.Body)
	}
	rep := created.JSON201
	if !rep.HasSecret || rep.Headers["X-Key"] != client.Redacted || rep.RequestMethod != client.RepeaterRequestMethodPOST ||
		created.HTTPResponse.Header.Get("Location") == "" {
		t.Fatalf("created: %+v", rep)
	}

	input := client.RecordInput{RepeaterId: rep.Id, Payload: map[string]any{"n": 1}, IdempotencyKey: new("order-1")}
	first, err := c.CreateRecordWithResponse(ctx, input)
	if err != nil || first.StatusCode() != http.StatusCreated {
		t.Fatalf("create record: %v %s", err, first.Body)
	}
	again, err := c.CreateRecordWithResponse(ctx, input)
	if err != nil || again.StatusCode() != http.StatusOK || again.JSON200.Id != first.JSON201.Id {
		t.Fatalf("the same key and payload again: %v %s", err, again.Body)
	}
	input.Payload = map[string]any{"n": 2}
	reused, err := c.CreateRecordWithResponse(ctx, input)
	if err != nil || reused.JSON409 == nil || reused.JSON409.Error.Code != client.ErrorDetailCodeConflict ||
		reused.JSON409.Error.RecordId == nil || *reused.JSON409.Error.RecordId != first.JSON201.Id {
		t.Fatalf("the key with another payload: %v %s", err, reused.Body)
	}
	raw := []byte{0, 1, 2, 255}
	bin, err := c.CreateRecordWithResponse(ctx, client.RecordInput{RepeaterId: rep.Id, PayloadBase64: &raw})
	if err != nil || bin.StatusCode() != http.StatusCreated {
		t.Fatalf("a base64 payload: %v %s", err, bin.Body)
	}

	page, err := c.ListRecordsWithResponse(ctx, &client.ListRecordsParams{
		RepeaterId: &rep.Id, State: new(client.ListRecordsParamsStatePending), Limit: new(int32(1)),
	})
	if err != nil || page.JSON200 == nil || len(page.JSON200.Records) != 1 || page.JSON200.NextCursor == nil {
		t.Fatalf("first page: %v %s", err, page.Body)
	}
	next, err := c.ListRecordsWithResponse(ctx, &client.ListRecordsParams{RepeaterId: &rep.Id, Cursor: page.JSON200.NextCursor, Limit: new(int32(1))})
	if err != nil || next.JSON200 == nil || len(next.JSON200.Records) != 1 || next.JSON200.Records[0].Id != bin.JSON201.Id {
		t.Fatalf("second page: %v %s", err, next.Body)
	}
	got, err := c.GetRecordWithResponse(ctx, first.JSON201.Id)
	if err != nil || got.JSON200 == nil || got.JSON200.State != client.RecordDetailStatePending || got.JSON200.StateCode != 1 {
		t.Fatalf("get record: %v %s", err, got.Body)
	}

	paused, err := c.PauseRepeaterWithResponse(ctx, rep.Id)
	if err != nil || paused.JSON200 == nil || !paused.JSON200.IsPaused {
		t.Fatalf("pause: %v %s", err, paused.Body)
	}
	resumed, err := c.ResumeRepeaterWithResponse(ctx, rep.Id)
	if err != nil || resumed.JSON200 == nil || resumed.JSON200.IsPaused {
		t.Fatalf("resume: %v %s", err, resumed.Body)
	}

	unsafe, err := c.CreateRepeaterWithResponse(ctx, client.RepeaterInput{Domain: new("acme"), Url: new("http://127.0.0.1/hook")})
	if err != nil || unsafe.JSON422 == nil || unsafe.JSON422.Error.Code != client.ErrorDetailCodeInvalid || unsafe.JSON422.Error.Message == "" {
		t.Fatalf("a private URL: %v %s", err, unsafe.Body)
	}
	missing, err := c.GetRepeaterWithResponse(ctx, 999999)
	if err != nil || missing.JSON404 == nil || missing.JSON404.Error.Code != client.ErrorDetailCodeNotFound {
		t.Fatalf("an unknown repeater: %v %s", err, missing.Body)
	}
	bare, err := client.NewClientWithResponses(e.base + "/api/v1") // without JSONWrites
	if err != nil {
		t.Fatal(err)
	}
	refused, err := bare.PauseRepeaterWithResponse(ctx, rep.Id)
	if err != nil || refused.JSON415 == nil || refused.JSON415.Error.Code != client.ErrorDetailCodeUnsupportedMediaType {
		t.Fatalf("a write without Content-Type: %v %s", err, refused.Body)
	}

	stats, err := c.GetStatsWithResponse(ctx, &client.GetStatsParams{Domain: new("acme")})
	if err != nil || stats.JSON200 == nil || stats.JSON200.Totals.Pending != 2 {
		t.Fatalf("stats: %v %s", err, stats.Body)
	}
	deleted, err := c.DeleteRepeaterWithResponse(ctx, rep.Id)
	if err != nil || deleted.StatusCode() != http.StatusNoContent {
		t.Fatalf("delete: %v %s", err, deleted.Body)
	}
}
