package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"repeaterd/store"
)

// API error codes beyond the store's (store.ENOTFOUND, EINVALID, ECONFLICT,
// EINTERNAL): failures of the request itself, before any store call.
const (
	codeBadJSON          = "bad_json"          // body is not the JSON object the route takes
	codeBadRequest       = "bad_request"       // malformed path id, query parameter or cursor
	codeTooLarge         = "payload_too_large" // body or payload over MaxPayloadBytes
	codeMethodNotAllowed = "method_not_allowed"
	codeMediaType        = "unsupported_media_type" // a write that is not application/json
)

// CodeUnauthorized is the code of a request without the operator token. The
// web role checks the token before the API (and asynqmon) see the request,
// and answers with this code through WriteError.
const CodeUnauthorized = "unauthorized"

// CodeForbidden is the code of a request whose credentials do not reach
// what it asks (a domain token on an admin route), or that the web role
// refuses outright (cross-site, a non-loopback Host without a token).
const CodeForbidden = "forbidden"

// CodeUnavailable is the code of a request a dependency could not serve
// now (a bulk job whose task could not be queued); trying again may work.
const CodeUnavailable = "unavailable"

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
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	codeMediaType:        http.StatusUnsupportedMediaType,
	codeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeUnavailable:      http.StatusServiceUnavailable,
}

// errorBody is every error response: {"error":{"code":"...","message":"..."}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RecordID names the record an idempotency key was first used for, on
	// a 409 for the key reused with another payload.
	RecordID int64 `json:"record_id,omitempty"`
}

// WriteJSON writes v with status, as every API response is written: JSON,
// not sniffed, not cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers err by its code (store.ErrorCode) with the status
// statusByCode gives it. Internal errors are logged with the request and
// answered with a generic message: their text may name tables, hosts or
// queries.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	code := store.ErrorCode(err)
	status, ok := statusByCode[code]
	msg := err.Error()
	if !ok || status == http.StatusInternalServerError {
		if r.Context().Err() == nil {
			logger.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		code, status, msg = store.EINTERNAL, http.StatusInternalServerError, "internal error"
	}
	detail := errorDetail{Code: code, Message: msg}
	if re, ok := errors.AsType[*recordError](err); ok && status == http.StatusConflict {
		detail.RecordID = re.id
	}
	WriteJSON(w, status, errorBody{Error: detail})
}

// recordError is a store error about an existing record, whose id the
// error body names.
type recordError struct {
	error
	id int64
}

func (e *recordError) Unwrap() error { return e.error }

// recoverJSON turns a handler panic into a logged 500 rather than a dropped
// connection.
func recoverJSON(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				WriteError(w, r, logger, fmt.Errorf("panic: %v", p))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
