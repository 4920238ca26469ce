// Package client is a Go client of the repeaterd API, generated from the
// API's OpenAPI document (dashboards/api/openapi.json) by oapi-codegen at a
// pinned version. Regenerate with `go generate ./dashboards/api/client`
// after changing the document; TestClientIsGenerated fails until then.
//
// Writes need Content-Type: application/json even without a body: pass
// WithRequestEditorFn(JSONWrites) when making the client.
package client

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml ../openapi.json
