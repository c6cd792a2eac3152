package webui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"

	"github.com/threadmill/threadmill/internal/numfmt"
	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/workspace"
)

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"runs", "run", "item", "schedules", "error"}

// parsePages parses each page with the layout; links carry prefix.
func parsePages(prefix string) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"url":       func(parts ...string) string { return joinURL(prefix, parts...) },
		"asset":     func(name string) string { return prefix + "/static/" + name },
		"query":     query,
		"dur":       duration,
		"ms":        millis,
		"stamp":     numfmt.Stamp,
		"thousands": thousands,
		"tokens":    func(u workspace.Usage) string { return thousands(u.Total()) },
		"count":     func(c workspace.Count) string { return thousands(int64(c)) },
		"items":     itemsText,
		"markdown":  markdown,
		"window":    window,
		"add":       func(a, b int) int { return a + b },
		"short":     func(s string) string { return short(s, 12) },
	}
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// joinURL is prefix followed by each part, path-escaped, after a slash.
func joinURL(prefix string, parts ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(p))
	}
	if len(parts) == 0 {
		b.WriteByte('/')
	}
	return b.String()
}

// query returns "?k=v&..." from key, value pairs, leaving out empty values.
func query(kv ...any) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if v := fmt.Sprint(kv[i+1]); v != "" {
			q.Set(fmt.Sprint(kv[i]), v)
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func duration(d time.Duration) string { return numfmt.Duration(d) }

// millis formats a latency or duration in milliseconds: "340ms" under a
// second, else as duration does.
func millis(ms int64) string {
	if ms > 0 && ms < 1000 {
		return fmt.Sprintf("%dms", ms)
	}
	return duration(time.Duration(ms) * time.Millisecond)
}

func thousands(n int64) string { return numfmt.Thousands(n) }

// itemsText is the items column: "12/34", or "12 journaled" for a run
// that left only its journal.
func itemsText(r *runlist.Row) string {
	if r.Status == runlist.StatusInterrupted {
		return fmt.Sprintf("%d journaled", r.Done)
	}
	return fmt.Sprintf("%d/%d", r.Done, r.Total)
}

// window formats a run window, "-" when the run has none.
func window(start, end *time.Time) string {
	if start == nil || end == nil {
		return "-"
	}
	return numfmt.Stamp(*start) + " → " + numfmt.Stamp(*end)
}

// short cuts s to n runes with an ellipsis.
func short(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// md renders Markdown without raw HTML (goldmark drops it), with GitHub's
// tables; sanitizer then keeps only safe elements and attributes.
var (
	md        = goldmark.New(goldmark.WithExtensions(extension.GFM))
	sanitizer = bluemonday.UGCPolicy()
)

// markdown renders a report to sanitised HTML.
func markdown(src []byte) template.HTML {
	var b bytes.Buffer
	if err := md.Convert(src, &b); err != nil {
		return template.HTML("<pre>" + template.HTMLEscapeString(string(src)) + "</pre>") //nolint:gosec // escaped
	}
	return template.HTML(sanitizer.SanitizeBytes(b.Bytes())) //nolint:gosec // sanitised
}

// render executes a page; a template error is logged and answered 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var b bytes.Buffer
	if err := s.pages[name].Execute(&b, data); err != nil {
		s.opts.Logger.Error("webui: page not rendered", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "page not rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// errorView is the error page.
type errorView struct {
	page
	Status  int
	Message string
}

// fail answers status with an error page saying msg.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	v := errorView{page: s.page(r, http.StatusText(status), ""), Status: status, Message: msg}
	s.render(w, r, status, "error", &v)
}
