package handlers

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"presencestats"
)

// WebPages serves the embedded browser pages: the chat page at /, the admin dashboard at
// /admin/, their assets under /static/, and, only in development, POST /dev/token.
type WebPages struct {
	log     *slog.Logger
	auth    *TokenAuthority
	devMode bool
	files   map[string]webFile // by path inside the FS, e.g. "vendor/chart.umd.min.js"
}

type webFile struct {
	body  []byte
	gz    []byte // body gzipped once at start, for text files where it pays; nil otherwise
	etag  string // strong ETag from the content hash
	ctype string
}

// WebPagesConfig is what NewWebPages needs.
type WebPagesConfig struct {
	Files   fs.FS // web.Static()
	Logger  *slog.Logger
	Auth    *TokenAuthority // mints the development tokens
	DevMode bool            // DEV_MODE=1: POST /dev/token exists
}

// webType returns the content type of one of our files by its extension.
func webType(ext string) (string, bool) {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	case ".png":
		return "image/png", true
	case ".json":
		return "application/json", true
	case ".md", "": // the licence files, VERSIONS
		return "text/plain; charset=utf-8", true
	}
	return "", false
}

// NewWebPages reads every file once (they are small and embedded) and hashes it.
func NewWebPages(cfg WebPagesConfig) (*WebPages, error) {
	p := &WebPages{log: cfg.Logger, auth: cfg.Auth, devMode: cfg.DevMode, files: map[string]webFile{}}
	err := fs.WalkDir(cfg.Files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(cfg.Files, name)
		if err != nil {
			return err
		}
		// The types of our own files are fixed here rather than taken from the machine's
		// mime.types, which may differ between a laptop and a server.
		ctype, ok := webType(path.Ext(name))
		if !ok {
			if ctype = mime.TypeByExtension(path.Ext(name)); ctype == "" {
				ctype = "application/octet-stream"
			}
		}
		p.files[name] = webFile{body: body, ctype: ctype}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read web files: %w", err)
	}
	// The pages' references to their own assets get a ?v=<content hash>, so that a browser may
	// keep an asset for a year and still never mixes an old script with a new page.
	assetRef := regexp.MustCompile(`(?:src|href)="/static/([^"?#]+)"`)
	for name, f := range p.files {
		if strings.HasSuffix(name, ".html") {
			f.body = assetRef.ReplaceAllFunc(f.body, func(m []byte) []byte {
				ref := string(assetRef.FindSubmatch(m)[1])
				a, ok := p.files[ref]
				if !ok {
					return m
				}
				return bytes.Replace(m, []byte(ref), []byte(ref+"?v="+hashOf(a.body)[:12]), 1)
			})
		}
		f.etag = `"` + hashOf(f.body)[:24] + `"`
		if f.gz, err = gzipped(f.body, f.ctype); err != nil {
			return nil, fmt.Errorf("gzip %s: %w", name, err)
		}
		p.files[name] = f
	}
	for _, page := range []string{"index.html", "admin.html"} {
		if _, ok := p.files[page]; !ok {
			return nil, fmt.Errorf("read web files: %s is missing", page)
		}
	}
	return p, nil
}

// gzipped returns body compressed, or nil when it is not text or would not shrink by a tenth
// (the chart library goes from about 200 KiB to about 70 KiB: it matters on a phone).
func gzipped(body []byte, ctype string) ([]byte, error) {
	text := strings.HasPrefix(ctype, "text/") || strings.HasPrefix(ctype, "image/svg")
	if !text || len(body) < 1024 {
		return nil, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > len(body)*9/10 {
		return nil, nil
	}
	return buf.Bytes(), nil
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Register adds the page routes.
func (p *WebPages) Register(r *gin.Engine) {
	for _, route := range []struct{ url, file string }{{"/", "index.html"}, {"/admin/", "admin.html"}} {
		h := p.page(route.file)
		r.GET(route.url, h)
		r.HEAD(route.url, h)
	}
	r.GET("/static/*filepath", p.asset)
	r.HEAD("/static/*filepath", p.asset)
	if p.devMode {
		r.POST("/dev/token", p.devToken)
	}
}

// pageCSP keeps the pages to their own origin: scripts, styles and the WebSocket ('self' covers
// ws:/wss: to the same host). Chart.js sets canvas sizes through the CSSOM, which style-src allows.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (p *WebPages) page(name string) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Referrer-Policy", "no-referrer")
		// Pages always revalidate (cheap: 304 on the ETag); their assets are versioned.
		p.serve(c, name, "no-cache")
	}
}

func (p *WebPages) asset(c *gin.Context) {
	name := strings.TrimPrefix(c.Param("filepath"), "/")
	if strings.HasSuffix(name, ".html") {
		// The pages live at / and /admin/ only, where they get their security headers.
		writeError(c, p.log, presencestats.Errorf(presencestats.ENOTFOUND, "no file /static/%s", name))
		return
	}
	cache := "no-cache"
	// Only a reference carrying the current content hash may be cached for good: an old ?v
	// (a page from before a deploy) must not pin a stale file.
	if f, ok := p.files[name]; ok && c.Query("v") != "" && strings.HasPrefix(strings.Trim(f.etag, `"`), c.Query("v")) {
		cache = "public, max-age=31536000, immutable"
	}
	p.serve(c, name, cache)
}

func (p *WebPages) serve(c *gin.Context, name, cache string) {
	f, ok := p.files[name]
	if !ok {
		writeError(c, p.log, presencestats.Errorf(presencestats.ENOTFOUND, "no file /static/%s", name))
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
	body, etag := f.body, f.etag
	if f.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(c.GetHeader("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			body, etag = f.gz, strings.TrimSuffix(f.etag, `"`)+`-gz"` // another representation, another tag
		}
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match with 304, HEAD without a body, and ranges.
	http.ServeContent(c.Writer, c.Request, name, time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reads Accept-Encoding well enough for browsers: gzip listed and not refused (q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
