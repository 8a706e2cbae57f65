// Package queries holds the service's SQL (other than migrations) as .sql files, embedded. The
// directory is sql/ as the layout asks; the package is named queries so that readers do not take
// it for database/sql. storage reads these files; nothing else should.
package queries

import "embed"

// FS holds every query file.
//
//go:embed *.sql
var FS embed.FS
