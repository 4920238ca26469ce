package api

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"repeaterd/store"
)

func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{"", encodeCursor(1), encodeCursor(math.MaxInt64), "aWQ6MA", "aWQ6LTE", "aWQ6MDE",
		"aWQ6KzE", "aWQ6MQ==", "bm9wZQ", "!!!", strings.Repeat("A", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := decodeCursor(s)
		if err != nil {
			if store.ErrorCode(err) != codeBadRequest || !strings.Contains(err.Error(), "cursor is not valid") {
				t.Fatalf("decodeCursor(%q): unclear error %v", s, err)
			}
			return
		}
		if s == "" && id != 0 || s != "" && (id < 1 || encodeCursor(id) != s) {
			t.Fatalf("decodeCursor(%q) = %d, which does not encode back to it", s, id)
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 2, 99, 1 << 40, math.MaxInt64} {
		if got, err := decodeCursor(encodeCursor(id)); err != nil || got != id {
			t.Errorf("round trip of %d: %d, %v", id, got, err)
		}
	}
	for _, bad := range []string{"aWQ6MA", "aWQ6LTE", "aWQ6MDE", "aWQ6KzE", "aWQ6MQ==", "MQ"} {
		if _, err := decodeCursor(bad); err == nil {
			t.Errorf("decodeCursor(%q) accepted a cursor encodeCursor never makes", bad)
		}
	}
}

// FuzzJSONDepth checks the pre-decoder depth scan against the decoder's own
// view of valid JSON: whatever it accepts, the decoder nests no deeper.
func FuzzJSONDepth(f *testing.F) {
	for _, s := range []string{`{}`, `[[[]]]`, `{"a":"[[[["}`, `{"a":"\"[[["}`, `"\\"`, `[{"x":[1,{"y":[]}]}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			jsonDepthWithin([]byte(s), 3) // must not panic
			return
		}
		if got, want := jsonDepthWithin([]byte(s), 3), jsonDepth(s) <= 3; got != want {
			t.Fatalf("jsonDepthWithin(%q, 3) = %v, want %v", s, got, want)
		}
	})
}

// jsonDepth measures nesting with the decoder's tokens.
func jsonDepth(s string) int {
	dec := json.NewDecoder(strings.NewReader(s))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}
