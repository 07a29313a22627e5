// Package web embeds the demo page and its small JavaScript client, and
// the admin dashboard with its vendored charting library. It imports no
// other package of the project.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// admin holds the dashboard: index.html, its script and style, and uPlot
// (vendor/uplot: the library's minified build and its licence).
//
//go:embed admin
var admin embed.FS

// Handler serves the demo page at / and the client at /switchboard.js.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.FileServer(http.FS(sub))
}

// AdminHandler serves the dashboard's assets by their path under admin/
// (admin.js, admin.css, vendor/uplot/...). The server mounts it only
// when the dashboard is on.
func AdminHandler() http.Handler {
	sub, err := fs.Sub(admin, "admin")
	if err != nil {
		panic(err)
	}
	return http.FileServer(http.FS(sub))
}

// AdminPage is the dashboard's HTML.
func AdminPage() []byte {
	b, err := admin.ReadFile("admin/index.html")
	if err != nil {
		panic(err)
	}
	return b
}
