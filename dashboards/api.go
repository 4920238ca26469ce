package dashboards

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"repeaterd/store"
)

// API error codes beyond the store's (store.ENOTFOUND, EINVALID, ECONFLICT,
// EINTERNAL): failures of the request itself, before any store call.
const (
	codeBadJSON          = "bad_json"          // body is not the JSON object the route takes
	codeBadRequest       = "bad_request"       // malformed path id, query parameter or cursor
	codeTooLarge         = "payload_too_large" // body or payload over MaxPayloadBytes
	codeUnauthorized     = "unauthorized"      // missing or wrong bearer token
	codeMethodNotAllowed = "method_not_allowed"
)

// statusByCode is the one place error codes become HTTP statuses. A code
// not listed is answered as EINTERNAL: 500, details logged, not sent.
var statusByCode = map[string]int{
	store.ENOTFOUND:      http.StatusNotFound,
	store.EINVALID:       http.StatusUnprocessableEntity,
	store.ECONFLICT:      http.StatusConflict,
	store.EINTERNAL:      http.StatusInternalServerError,
	codeBadJSON:          http.StatusBadRequest,
	codeBadRequest:       http.StatusBadRequest,
	codeTooLarge:         http.StatusRequestEntityTooLarge,
	codeUnauthorized:     http.StatusUnauthorized,
	codeMethodNotAllowed: http.StatusMethodNotAllowed,
}

// maxJSONDepth bounds nesting in request bodies, payloads included: deep
// nesting costs the decoder stack and memory and no webhook needs it.
const maxJSONDepth = 64

// envelopeBytes is room for a record body's fields around its payload.
const envelopeBytes = 64 << 10

// errorBody is every error response: {"error":{"code":"...","message":"..."}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err by its code. Internal errors are logged with the
// request and answered with a generic message: their text may name tables,
// hosts or queries.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	code := store.ErrorCode(err)
	status, ok := statusByCode[code]
	msg := err.Error()
	if !ok || status == http.StatusInternalServerError {
		if r.Context().Err() == nil {
			logger.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		code, status, msg = store.EINTERNAL, http.StatusInternalServerError, "internal error"
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

// recoverJSON turns a handler panic into a logged 500 rather than a dropped
// connection.
func recoverJSON(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				writeError(w, r, logger, fmt.Errorf("panic: %v", p))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// api serves /api/v1/.
type api struct {
	cfg    WebConfig
	st     *store.Store
	logger *slog.Logger
	mux    *http.ServeMux
}

// apiHandler is a route's handler; a returned error is written by code.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

func newAPI(cfg WebConfig, st *store.Store, logger *slog.Logger) http.Handler {
	a := &api{cfg: cfg, st: st, logger: logger, mux: http.NewServeMux()}
	a.route("/api/v1/repeaters", map[string]apiHandler{"GET": a.listRepeaters, "POST": a.createRepeater})
	a.route("/api/v1/repeaters/{id}", map[string]apiHandler{
		"GET": a.getRepeater, "PATCH": a.patchRepeater, "DELETE": a.deleteRepeater,
	})
	a.route("/api/v1/repeaters/{id}/pause", map[string]apiHandler{"POST": a.pauseRepeater(true)})
	a.route("/api/v1/repeaters/{id}/resume", map[string]apiHandler{"POST": a.pauseRepeater(false)})
	a.route("/api/v1/records", map[string]apiHandler{"GET": a.listRecords, "POST": a.createRecord})
	a.route("/api/v1/records/{id}", map[string]apiHandler{"GET": a.getRecord})
	a.route("/api/v1/records/{id}/requeue", map[string]apiHandler{"POST": a.requeueRecord})
	a.route("/api/v1/records/{id}/cancel", map[string]apiHandler{"POST": a.cancelRecord})
	a.route("/api/v1/domains/{domain}/events", map[string]apiHandler{"POST": a.createEvent})
	a.route("/api/v1/domains/{domain}/flags", map[string]apiHandler{"GET": a.listFlags})
	a.route("/api/v1/domains/{domain}/flags/{flag}", map[string]apiHandler{"PUT": a.setFlag})
	a.route("/api/v1/stats", map[string]apiHandler{"GET": a.stats})
	a.route("/api/v1/invariants", map[string]apiHandler{"GET": a.invariants})
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, a.logger, store.Errorf(store.ENOTFOUND, "no API route %s %s", r.Method, r.URL.Path))
	})
	return a.mux
}

// route registers one handler per method on path, and a JSON 405 naming
// the allowed methods for any other (the mux's own 405 is plain text).
func (a *api) route(path string, handlers map[string]apiHandler) {
	var allowed []string
	for method, h := range handlers {
		allowed = append(allowed, method)
		a.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				writeError(w, r, a.logger, err)
			}
		})
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, r, a.logger, store.Errorf(codeMethodNotAllowed, "%s is not allowed here (allowed: %s)", r.Method, allow))
	})
}

// bodyLimit is the largest request body read: a MaxPayloadBytes payload
// base64-encoded, plus the fields around it. The payload itself is checked
// against MaxPayloadBytes once decoded.
func (a *api) bodyLimit() int64 {
	return int64(base64.StdEncoding.EncodedLen(int(a.cfg.MaxPayloadBytes))) + envelopeBytes
}

// decodeJSON reads the request body into dst: one JSON object, no unknown
// fields, nothing after it, nested at most maxJSONDepth deep.
func (a *api) decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.bodyLimit()))
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return store.Errorf(codeTooLarge, "request body is over %d bytes (payloads may be %d bytes)", mbe.Limit, a.cfg.MaxPayloadBytes)
	}
	if err != nil {
		return store.Errorf(codeBadJSON, "could not read the request body: %v", err)
	}
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return store.Errorf(codeBadJSON, "request body is empty; send a JSON object")
	case trimmed[0] != '{':
		return store.Errorf(codeBadJSON, "request body must be a JSON object")
	case !jsonDepthWithin(trimmed, maxJSONDepth):
		return store.Errorf(codeBadJSON, "JSON is nested deeper than %d levels", maxJSONDepth)
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

// cursorPrefix versions the cursor format so it can change without old
// cursors being misread.
const cursorPrefix = "id:"

// maxCursorLen is longer than any cursor encodeCursor makes.
const maxCursorLen = 64

// encodeCursor makes the opaque cursor for the page after id.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(id, 10)))
}

// decodeCursor returns the id a cursor stands for; "" is the first page (0).
// Only cursors encodeCursor could have made are accepted.
func decodeCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	bad := store.Errorf(codeBadRequest, "cursor is not valid; pass next_cursor from a previous page unchanged")
	if len(s) > maxCursorLen {
		return 0, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, bad
	}
	digits, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return 0, bad
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id < 1 || encodeCursor(id) != s {
		return 0, bad
	}
	return id, nil
}

// nextCursor is the cursor after a full page, nil after the last one.
func nextCursor(n, limit int, lastID int64) *string {
	if n < limit || n == 0 {
		return nil
	}
	c := encodeCursor(lastID)
	return &c
}

// Page sizes.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// queryLimit parses ?limit= (1..maxPageLimit, default defaultPageLimit).
func queryLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return defaultPageLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, store.Errorf(codeBadRequest, "limit must be an integer from 1 to %d", maxPageLimit)
	}
	return n, nil
}

// queryID parses an optional positive id query parameter (0 when absent).
func queryID(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	return parseID(name, v)
}

// pathID parses the {id} path segment.
func pathID(r *http.Request) (int64, error) { return parseID("id", r.PathValue("id")) }

func parseID(name, v string) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, store.Errorf(codeBadRequest, "%s must be a positive integer", name)
	}
	return id, nil
}

// Text limits: Postgres text takes any length, but nothing legitimate is
// this long, and a bound keeps rows and responses small.
const (
	maxDomainLen = 255
	maxNameLen   = 255
	maxKeyLen    = 255
	maxURLLen    = 2048
	maxSecretLen = 1024
)

// validateText rejects what Postgres text cannot store (NUL, invalid UTF-8)
// and control characters, which only ever mean a mistake in these fields.
func validateText(field, s string, maxLen int) error {
	switch {
	case len(s) > maxLen:
		return store.Errorf(store.EINVALID, "%s is longer than %d bytes", field, maxLen)
	case !utf8.ValidString(s):
		return store.Errorf(store.EINVALID, "%s is not valid UTF-8", field)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return store.Errorf(store.EINVALID, "%s must not contain control characters", field)
	}
	return nil
}

// validateDomain checks a domain name from a path, query or body.
func validateDomain(domain string) error {
	if domain == "" {
		return store.Errorf(store.EINVALID, "domain is required")
	}
	return validateText("domain", domain, maxDomainLen)
}
