package client

import (
	"context"
	"net/http"
)

// JSONWrites declares every write application/json, as the API requires of
// writes even without a body (its CSRF defence); the generated methods of
// body-less writes (pause, cancel, delete, ...) set no Content-Type.
func JSONWrites(_ context.Context, req *http.Request) error {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if req.Header.Get("Content-Type") == "" {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	return nil
}

// BearerToken authenticates every request with token: the admin token or
// a domain token.
func BearerToken(token string) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}
