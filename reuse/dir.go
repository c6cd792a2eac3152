package reuse

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DirName is the directory, beside a pipeline's run directories
// (<root>/<pipeline>/.reuse), that Dir keeps its outputs in. It starts with
// a dot, so listings of runs skip it.
const DirName = ".reuse"

// Dir keeps outputs as files under a results root:
// <root>/<pipeline>/.reuse/<first two hex digits>/<reuse key>.json, each
// written to a temporary name and renamed into place. A file last written
// longer ago than the retention is a miss, and Save removes such files.
type Dir struct {
	root      string
	retention time.Duration
	now       func() time.Time
}

// NewDir returns a store under the results root; retention 0 means
// DefaultRetention.
func NewDir(root string, retention time.Duration) *Dir {
	return &Dir{root: cmp.Or(root, "."), retention: cmp.Or(retention, DefaultRetention), now: time.Now}
}

var _ Store = (*Dir)(nil)

func (d *Dir) dir(pipeline string) string { return filepath.Join(d.root, pipeline, DirName) }

func (d *Dir) path(pipeline, key string) (string, bool) {
	if len(key) < 8 || strings.ContainsAny(key, `/\.`) {
		return "", false
	}
	return filepath.Join(d.dir(pipeline), key[:2], key+".json"), true
}

// Lookup implements Store.
func (d *Dir) Lookup(ctx context.Context, pipeline string, keys []string) (map[string]Entry, error) {
	out := map[string]Entry{}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, ok := d.path(pipeline, k)
		if !ok {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reuse: %w", err)
		}
		if d.now().Sub(fi.ModTime()) > d.retention {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reuse: %w", err)
		}
		var e Entry
		if json.Unmarshal(b, &e) != nil || e.Key != k {
			continue // unreadable: a miss, the item is sent
		}
		out[k] = e
	}
	return out, nil
}

// Save implements Store, then removes the pipeline's expired outputs.
func (d *Dir) Save(ctx context.Context, pipeline string, entries []Entry) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, ok := d.path(pipeline, e.Key)
		if !ok {
			return fmt.Errorf("reuse: %q is not a reuse key", e.Key)
		}
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("reuse: encode output %s: %w", e.Key, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("reuse: %w", err)
		}
		tmp := p + ".tmp-" + strconv.FormatUint(rand.Uint64(), 36)
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return fmt.Errorf("reuse: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("reuse: %w", err)
		}
	}
	return d.prune(pipeline)
}

// prune removes the pipeline's outputs older than the retention.
func (d *Dir) prune(pipeline string) error {
	err := filepath.WalkDir(d.dir(pipeline), func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		if fi, err := de.Info(); err == nil && d.now().Sub(fi.ModTime()) > d.retention {
			_ = os.Remove(p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reuse: prune %s: %w", d.dir(pipeline), err)
	}
	return nil
}
