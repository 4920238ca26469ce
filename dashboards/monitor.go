package dashboards

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"

	"github.com/hibiken/asynqmon"
)

// monitorCSPBase is asynqmon's policy without its inline scripts' hashes:
// its own files, the API it calls, its runtime-injected styles (Material
// UI writes <style> elements), and, like the console, no framing, no
// plugins and nothing from outside the process (its web fonts fall back).
const monitorCSPBase = "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; " +
	"form-action 'self'; script-src 'self'"

// inlineScript finds the inline scripts of asynqmon's index page.
var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// monitorPolicy renders asynqmon's index once and allows exactly its
// inline scripts by hash (they carry its configuration, so they are fixed
// for the process), so no injected script could run.
func monitorPolicy(h *asynqmon.HTTPHandler) (string, error) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, MonitorPath+"/", nil))
	if rec.Code != http.StatusOK {
		return "", errors.New("web: asynqmon's index page did not render")
	}
	var b strings.Builder
	b.WriteString(monitorCSPBase)
	for _, m := range inlineScript.FindAllStringSubmatch(rec.Body.String(), -1) {
		sum := sha256.Sum256([]byte(m[1]))
		b.WriteString(" 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'")
	}
	return b.String(), nil
}

// monitorHeaders serves asynqmon under its policy.
func (w *Web) monitorHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Security-Policy", w.monitorCSP)
		rw.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(rw, r)
	})
}
