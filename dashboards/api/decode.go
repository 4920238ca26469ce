package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"repeaterd/store"
)

// maxJSONDepth bounds nesting in request bodies, payloads included: deep
// nesting costs the decoder stack and memory and no webhook needs it.
const maxJSONDepth = 64

// envelopeBytes is room for a record body's fields around its payload.
const envelopeBytes = 64 << 10

// bodyLimit is the largest request body read: a MaxPayloadBytes payload
// base64-encoded, plus the fields around it. The payload itself is checked
// against MaxPayloadBytes once decoded.
func (a *API) bodyLimit() int64 {
	return int64(base64.StdEncoding.EncodedLen(int(a.cfg.MaxPayloadBytes))) + envelopeBytes
}

// decodeJSON reads the request body into dst: one JSON object, no unknown
// fields, nothing after it, nested at most maxJSONDepth deep, and strict
// (strict.go): valid UTF-8, exact field names, no duplicate keys.
func (a *API) decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := a.readBody(w, r, a.bodyLimit())
	if err != nil {
		return err
	}
	return decodeObject(body, dst)
}

// readBody reads the request body, at most limit bytes (413 beyond).
func (a *API) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, store.Errorf(codeTooLarge, "request body is over %d bytes (payloads may be %d bytes)", mbe.Limit, a.cfg.MaxPayloadBytes)
	}
	if err != nil {
		return nil, store.Errorf(codeBadJSON, "could not read the request body: %v", err)
	}
	return body, nil
}

// decodeObject decodes one JSON object into dst under decodeJSON's rules.
func decodeObject(body []byte, dst any) error {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return store.Errorf(codeBadJSON, "request body is empty; send a JSON object")
	case trimmed[0] != '{':
		return store.Errorf(codeBadJSON, "request body must be a JSON object")
	case !jsonDepthWithin(trimmed, maxJSONDepth):
		return store.Errorf(codeBadJSON, "JSON is nested deeper than %d levels", maxJSONDepth)
	}
	if err := checkText(trimmed); err != nil {
		return err
	}
	if err := checkKeys(trimmed, jsonFields(dst)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return store.Errorf(codeBadJSON, "unexpected data after the JSON object")
	}
	return nil
}

// jsonError explains a decoding error without echoing the body.
func jsonError(err error) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return store.Errorf(codeBadJSON, "malformed JSON at byte %d: %v", se.Offset, se)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return store.Errorf(codeBadJSON, "request body must be a JSON object")
		}
		return store.Errorf(codeBadJSON, "field %q must be %s, not a JSON %s", te.Field, jsonTypeName(te.Type.Kind().String()), te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return store.Errorf(codeBadJSON, "malformed JSON: unexpected end of input")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return store.Errorf(codeBadJSON, "unknown field %s", name)
	}
	return store.Errorf(codeBadJSON, "malformed JSON: %v", err)
}

// jsonTypeName names a Go kind as the JSON type a client should send.
func jsonTypeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "true or false"
	case kind == "slice" || kind == "array":
		return "an array"
	}
	return "an object"
}

// jsonDepthWithin reports whether b nests arrays and objects at most max
// deep. It only counts brackets outside strings, so it runs before the
// decoder and costs one pass over the bytes.
func jsonDepthWithin(b []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return false
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return true
}
