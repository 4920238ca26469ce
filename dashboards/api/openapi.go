package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's description (OpenAPI 3.1), the repository's copy
// embedded as it is: the tests validate every request and answer of the
// API's suite against it and check that it names exactly the routes served,
// so it cannot drift from the code.
//
//go:embed openapi.json
var OpenAPI []byte

// openAPI is GET /api/v1/openapi.json. The web role serves it without
// credentials (a public description of a public interface; it holds nothing
// of any tenant).
func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(OpenAPI)
	return nil
}
