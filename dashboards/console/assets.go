package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

// assets holds the templates and the static files, compiled into the binary.
//
//go:embed assets/templates/*.html assets/static/*
var assets embed.FS

// StaticPrefix is the path the static files are served under.
const StaticPrefix = "/ui/static/"

// staticFile is one file under assets/static, read once at start.
type staticFile struct {
	body        []byte
	contentType string
	version     string // a hash of body: the ?v= of its URL and its ETag
}

var staticFiles = loadStatic()

// loadStatic reads every static file and hashes it. A URL carrying the
// current hash names these exact bytes, so the browser may keep it for good;
// a new build changes the hash, and so the URL the pages link to.
func loadStatic() map[string]staticFile {
	files := map[string]staticFile{}
	entries, err := fs.ReadDir(assets, "assets/static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		body, err := assets.ReadFile("assets/static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		files[e.Name()] = staticFile{
			body:        body,
			contentType: mime.TypeByExtension(path.Ext(e.Name())),
			version:     hex.EncodeToString(sum[:6]),
		}
	}
	return files
}

// staticURL is the versioned URL of a static file, for the templates. An
// unknown name is a template error, so a typo fails the first render.
func staticURL(name string) (string, error) {
	f, ok := staticFiles[name]
	if !ok {
		return "", fs.ErrNotExist
	}
	return StaticPrefix + name + "?v=" + f.version, nil
}

// serveStatic is GET /ui/static/{file}. The current version is cached for a
// year (immutable); any other URL of the file must be revalidated, so a
// stale ?v= never pins old bytes.
func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	f, ok := staticFiles[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", `"`+f.version+`"`)
	if r.URL.Query().Get("v") == f.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
}

var templates = template.Must(template.New("console").Funcs(template.FuncMap{
	"num":    formatCount,
	"plural": plural,
	"static": staticURL,
	"rowsOf": rowsOf,
}).ParseFS(assets, "assets/templates/*.html"))
