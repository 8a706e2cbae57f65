// Package web holds the browser pages of the service as files: the chat page (static/index.html,
// served at /), the admin dashboard (static/admin.html, served at /admin/), their CSS and ES
// modules, and the vendored chart library (static/vendor, see vendor.sh). Everything is embedded
// in the binary, so the pages work offline and no CDN is involved at run time.
//
// This package only owns the files; handlers serves them (handlers/web.go).
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Static returns the files under static/, with paths like "index.html" and "vendor/chart.umd.min.js".
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // "static" is a valid path: cannot happen
	}
	return sub
}
