package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"repeaterd/store"
)

// Strict JSON: encoding/json replaces invalid UTF-8 and lone surrogate
// escapes with U+FFFD, matches field names case-insensitively and lets the
// last of duplicate keys win, so {"domain":"a","Domain":"b"} means "b" to
// us and maybe "a" to whatever checked the body first. These checks run
// before the decoder and refuse all of it with a 400.

// checkText refuses a body that is not valid UTF-8, or whose strings
// escape half a surrogate pair (\ud800 alone), which is not a character.
func checkText(b []byte) error {
	if !utf8.Valid(b) {
		return store.Errorf(codeBadJSON, "request body is not valid UTF-8")
	}
	if at := loneSurrogate(b); at >= 0 {
		return store.Errorf(codeBadJSON, "malformed JSON at byte %d: \\u escape of half a surrogate pair", at)
	}
	return nil
}

// loneSurrogate returns the offset of the first \u escape that is half a
// surrogate pair, -1 if there is none. It tracks strings as jsonDepthWithin
// does, and reads escapes only inside them.
func loneSurrogate(b []byte) int {
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\' && i+1 < len(b) && b[i+1] == 'u':
			r, ok := hex4(b, i+2)
			switch {
			case !ok:
			case r >= 0xdc00 && r <= 0xdfff:
				return i
			case r >= 0xd800 && r <= 0xdbff:
				low, ok := hex4(b, i+8)
				if !ok || i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' || low < 0xdc00 || low > 0xdfff {
					return i
				}
				i += 11 // the pair
				continue
			}
			i += 5
		case c == '\\':
			i++ // the escaped character
		}
	}
	return -1
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkKeys refuses keys the decoder would take loosely: at the top level
// any key that is not exactly one of fields (the decoder would match
// "Domain" or "ſigning_secret" to a field), and in any object outside the
// payload (which is the tenant's own bytes, sent on as they are) two keys
// equal but for case (for headers, the same HTTP header). Syntax errors are
// left to the decoder, which explains them.
func checkKeys(b []byte, fields map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walkKeys(dec, fields); err != nil && err != errSyntax {
		return err
	}
	return nil
}

// errSyntax ends a walk at a syntax error, which the decoder then explains.
// It must end the walk: the decoder's More keeps answering true past one.
var errSyntax = errors.New("malformed JSON")

// walkKeys checks the value the decoder is at; fields is non-nil for the
// top-level object only. The payload is not checked, only read past (whole:
// that costs a fraction of walking it token by token).
func walkKeys(dec *json.Decoder, fields map[string]bool) error {
	tok, err := dec.Token()
	if err != nil {
		return errSyntax
	}
	delim, ok := tok.(json.Delim)
	if !ok || delim == ']' || delim == '}' {
		return nil
	}
	seen := map[string]string{}
	for dec.More() {
		if delim == '{' {
			tok, err := dec.Token()
			if err != nil {
				return errSyntax
			}
			key, _ := tok.(string)
			if err := checkKey(seen, fields, key); err != nil {
				return err
			}
			if fields != nil && key == "payload" {
				var raw json.RawMessage
				if dec.Decode(&raw) != nil {
					return errSyntax
				}
				continue
			}
		}
		if err := walkKeys(dec, nil); err != nil {
			return err
		}
	}
	_, _ = dec.Token() // the closing delimiter
	return nil
}

func checkKey(seen map[string]string, fields map[string]bool, key string) error {
	if fields != nil && !fields[key] {
		return store.Errorf(codeBadJSON, "unknown field %q (field names are lower case, exactly as documented)", key)
	}
	folded := strings.ToLower(key)
	if prev, dup := seen[folded]; dup {
		if prev == key {
			return store.Errorf(codeBadJSON, "key %q appears twice", key)
		}
		return store.Errorf(codeBadJSON, "keys %q and %q differ only in case", prev, key)
	}
	seen[folded] = key
	return nil
}

// fieldCache holds jsonFields per type.
var fieldCache sync.Map // reflect.Type → map[string]bool

// jsonFields returns the JSON names of the fields of the struct v points
// to, embedded structs' included.
func jsonFields(v any) map[string]bool {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	addFields(m, t)
	fieldCache.Store(t, m)
	return m
}

func addFields(m map[string]bool, t reflect.Type) {
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "":
			addFields(m, f.Type)
		case name == "-" || !f.IsExported():
		case name == "":
			m[f.Name] = true
		default:
			m[name] = true
		}
	}
}
