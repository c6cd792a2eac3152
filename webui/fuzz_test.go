package webui_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/webui"
)

// FuzzNothingOutsideTheRoot sends any path, raw and unclean, to the UI over
// a results root that sits next to a secret and links to it: no answer
// ever carries the secret.
func FuzzNothingOutsideTheRoot(f *testing.F) {
	for _, seed := range []string{
		"/runs/alpha/alpha-1/files/report.md",
		"/runs/alpha/link/files/report.md",
		"/runs/alpha/%2e%2e/files/run.json",
		"/runs/%2e%2e/%2e%2e/files/secret.txt",
		"/runs/alpha/alpha-1/files/..%2f..%2f..%2fsecret.txt",
		"/runs/alpha/alpha-1/items/1",
		"/static/..%2f..%2fsecret.txt",
		"/runs/alpha/alpha-1/files/report.md%00",
		"//runs/alpha/../../secret.txt",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	root := filepath.Join(dir, "results")
	commit(f, root, "alpha", "alpha-1", t0, "inside")
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("TOP SECRET"), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(root, "alpha", "alpha-1", "secret.txt")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(root, "alpha", "link")); err != nil {
		f.Fatal(err)
	}
	ui, err := webui.New(webui.Options{Root: root})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(ui.Close)
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || u.Path == "/events" {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = raw
		rec := httptest.NewRecorder()
		ui.ServeHTTP(rec, req)
		if strings.Contains(rec.Body.String(), "TOP SECRET") {
			t.Errorf("GET %q (%d) served the secret outside the root", raw, rec.Code)
		}
	})
}
