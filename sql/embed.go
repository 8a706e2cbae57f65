// Package queries holds the service's SQL (other than migrations) as .sql files, embedded. The
// directory is sql/ as the layout asks; the package is named queries so that readers do not take
// it for database/sql. storage reads these files; nothing else should.
package queries

import "embed"

// FS holds every query file.
//
//go:embed *.sql
var FS embed.FS

// Must returns the text of the query file name. The files are compiled into the binary, so a
// missing one is a build mistake that the first test catches, not a run-time condition.
func Must(name string) string {
	b, err := FS.ReadFile(name)
	if err != nil {
		panic("embedded query " + name + ": " + err.Error())
	}
	return string(b)
}
