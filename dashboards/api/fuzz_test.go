package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// FuzzLoneSurrogate checks the surrogate scan against the decoder: for
// valid JSON, a string decodes to U+FFFD that the input never spelled
// exactly when the scan finds half a pair.
func FuzzLoneSurrogate(f *testing.F) {
	for _, s := range []string{`"\ud800"`, `"\ud83d\ude00"`, `"\udc00"`, `"\\ud800"`, `{"a":"\uD800\u0041"}`, `"\ufffd"`, `["\ud800\ud800"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at := loneSurrogate([]byte(s))
		var v any
		if !utf8.ValidString(s) || json.Unmarshal([]byte(s), &v) != nil {
			return
		}
		spelled := strings.Contains(s, "\uFFFD") || strings.Contains(strings.ToLower(s), `\ufffd`)
		replaced := strings.Contains(fmt.Sprint(v), "\uFFFD")
		if at >= 0 && !replaced || at < 0 && replaced && !spelled {
			t.Fatalf("loneSurrogate(%q) = %d, but the decoder replaced: %v", s, at, replaced)
		}
	})
}

// A syntax error inside an array or object ends the walk. It used to spin
// for ever: the decoder's More keeps answering true past a syntax error,
// and the walk went back for the next element.
func TestCheckKeysEndsAtASyntaxError(t *testing.T) {
	fields := jsonFields(&recordInput{})
	for _, body := range []string{`{"a":[{S":1}]}`, `[{Sa":1,"a":1}S`, `{"payload":[1,}`, `{"repeater_id":1,"payload":{"a":[{x}]}}`,
		`{"a":{"b":[1 2]}}`, `{"a":[[[[`, `{"a":1,`} {
		done := make(chan error, 1)
		go func() { done <- checkKeys([]byte(body), fields) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("checkKeys(%q) still runs after 5 s", body)
		}
	}
}

// FuzzCheckKeys: an object checkKeys passes has no key twice, as the
// decoder sees the keys.
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"a":{"b":1,"B":2}}`, `{"payload":{"b":1,"B":2}}`, `{"\u0061":1,"a":2}`, `[{"a":1,"a":1}]`,
		`[{Sa":1,"a":1}S`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := checkKeys([]byte(s), nil)
		var m map[string]json.RawMessage
		if err != nil || !json.Valid([]byte(s)) || json.Unmarshal([]byte(s), &m) != nil {
			return
		}
		dec := json.NewDecoder(strings.NewReader(s))
		_, _ = dec.Token()
		keys := 0
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return
			}
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return
			}
			keys++
		}
		if keys != len(m) {
			t.Fatalf("checkKeys passed %q, which has %d keys but %d distinct", s, keys, len(m))
		}
	})
}
