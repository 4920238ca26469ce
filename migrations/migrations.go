// Package migrations holds the numbered SQL migrations of the repeaterd
// schema, embedded so the binary can apply them with goose.
//
// Indexes on large tables are built CONCURRENTLY in migrations of their own,
// marked "+goose NO TRANSACTION", so applying them never locks out writers.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
