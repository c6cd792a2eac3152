package results

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// UpdateRun changes the run.json of a committed run directory: it reads it,
// applies fn and writes it back to a temporary file renamed over the old
// one, so a reader sees the old or the new file, never a part of one. It is
// for what is known only after Commit (the artifact report.md was
// published as).
func UpdateRun(dir string, fn func(*Run)) error {
	r, err := ReadRun(dir)
	if err != nil {
		return err
	}
	fn(r)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("results: encode %s: %w", filepath.Join(dir, RunFile), err)
	}
	path := filepath.Join(dir, RunFile)
	tmp := filepath.Join(dir, "."+RunFile+".tmp-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("results: create %s: %w", tmp, err)
	}
	_, werr := f.Write(b.Bytes())
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("results: update %s: %w", path, werr)
	}
	return syncDir(dir)
}
