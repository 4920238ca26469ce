package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"repeaterd/store"
)

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

// queryDomain returns ?domain=, checked when given ("" is every domain).
func queryDomain(r *http.Request) (string, error) {
	domain := r.URL.Query().Get("domain")
	if domain == "" {
		return "", nil
	}
	return domain, store.ValidateDomain(domain)
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

// domainPage is what a domain-scoped list takes from its query: ?domain=
// narrowed to what the principal sees, ?cursor= and ?limit=.
type domainPage struct {
	domain  string
	afterID int64
	limit   int
}

func queryDomainPage(r *http.Request) (p domainPage, err error) {
	if p.domain, err = queryDomain(r); err != nil {
		return p, err
	}
	if p.domain, err = scopedDomain(r, p.domain); err != nil {
		return p, err
	}
	if p.afterID, err = decodeCursor(r.URL.Query().Get("cursor")); err != nil {
		return p, err
	}
	p.limit, err = queryLimit(r)
	return p, err
}
