package results

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CSVColumn is one column of the items CSV (output.csv): its header and
// how an item fills it.
type CSVColumn struct {
	Name  string
	Value func(Item) string
}

// DefaultCSVColumns are the columns of the items CSV: step, key,
// artifact_id, artifact (its folder path and name), state, output, tokens
// (input plus output), reused_from and error. Callers may append columns
// of their own (EnableCSV takes the list as data).
func DefaultCSVColumns() []CSVColumn {
	return []CSVColumn{
		{"step", func(it Item) string { return it.Step }},
		{"key", func(it Item) string { return it.Key }},
		{"artifact_id", func(it Item) string {
			if it.Artifact != nil {
				return it.Artifact.ID
			}
			return strings.Join(it.ArtifactIDs, " ")
		}},
		{"artifact", func(it Item) string {
			if it.Artifact == nil {
				return ""
			}
			if it.Artifact.Folder != "" {
				return it.Artifact.Folder + "/" + it.Artifact.Name
			}
			return it.Artifact.Name
		}},
		{"state", func(it Item) string { return it.State }},
		{"output", func(it Item) string { return it.Output }},
		{"tokens", func(it Item) string { return strconv.FormatInt(it.Usage.Total(), 10) }},
		{"reused_from", func(it Item) string { return it.ReusedFrom }},
		{"error", func(it Item) string { return it.Error }},
	}
}

// csvFile is the items CSV being written.
type csvFile struct {
	f    fileWriter
	w    *csv.Writer
	cols []CSVColumn
}

// reservedNames are the files of a run directory extra files may not take.
var reservedNames = []string{RunFile, ResultsFile, ErrorsFile, ReportFile}

// EnableCSV makes the Writer write a CSV of every item added from now on,
// one row each in the order added, with cols as its columns (a header
// row first), into the run directory as name (a plain file name). Call it
// before the first Add.
func (w *Writer) EnableCSV(name string, cols []CSVColumn) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.csv != nil {
		return fmt.Errorf("results: run %s: the CSV is enabled already", w.runID)
	}
	if name == "" || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") || slices.Contains(reservedNames, name) {
		return fmt.Errorf("results: CSV file name %q: want a plain file name other than %s", name, strings.Join(reservedNames, ", "))
	}
	if len(cols) == 0 {
		return fmt.Errorf("results: CSV %s: no columns", name)
	}
	f, err := openFile(filepath.Join(w.tmpDir, name))
	if err != nil {
		return fmt.Errorf("results: create %s: %w", name, err)
	}
	c := &csvFile{f: f, w: csv.NewWriter(f), cols: cols}
	header := make([]string, len(cols))
	for i, col := range cols {
		header[i] = col.Name
	}
	if err := c.w.Write(header); err != nil {
		_ = f.Close()
		return fmt.Errorf("results: write %s: %w", f.Name(), err)
	}
	w.csv = c
	return nil
}

// addRow writes an item's row; call with w.mu held.
func (c *csvFile) addRow(it Item) error {
	row := make([]string, len(c.cols))
	for i, col := range c.cols {
		row[i] = col.Value(it)
	}
	if err := c.w.Write(row); err != nil {
		return fmt.Errorf("results: write %s: %w", c.f.Name(), err)
	}
	return nil
}

// close flushes, syncs and closes the CSV.
func (c *csvFile) close() error {
	if c == nil || c.w == nil {
		return nil
	}
	c.w.Flush()
	err := c.w.Error()
	if err == nil {
		err = c.f.Sync()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	c.w = nil
	if err != nil {
		return fmt.Errorf("results: write %s: %w", c.f.Name(), err)
	}
	return nil
}

// AddFile writes data as a file of the run directory, committed with it
// (output.files), at name: a relative slash path inside the directory,
// whose folders are created. A name already taken gets -2, -3, ... before
// its extension; the run directory's own files (run.json, ...) and names
// that leave the directory are refused. It returns the name used.
func (w *Writer) AddFile(name string, data []byte) (string, error) {
	clean := path.Clean(strings.ReplaceAll(name, "\\", "/"))
	if name == "" || path.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") ||
		strings.ContainsRune(clean, 0) || slices.Contains(reservedNames, clean) || strings.HasPrefix(path.Base(clean), ".") {
		return "", fmt.Errorf("results: file name %q: want a relative path inside the run directory, not one of its own files", name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.err != nil {
		return "", fmt.Errorf("results: run %s: AddFile after Commit, Abort or a write error", w.runID)
	}
	dir := filepath.Join(w.tmpDir, filepath.FromSlash(path.Dir(clean)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results: create %s: %w", dir, err)
	}
	ext := path.Ext(clean)
	stem := strings.TrimSuffix(clean, ext)
	for n := 1; ; n++ {
		try := clean
		if n > 1 {
			try = fmt.Sprintf("%s-%d%s", stem, n, ext)
		}
		err := w.writeFile(filepath.FromSlash(try), func(b *bufio.Writer) error { _, err := b.Write(data); return err })
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		w.files++
		return try, nil
	}
}

// JSONFieldColumns are CSV columns for the top-level fields of items'
// parsed values (Item.JSON, from a step's output_schema), one per field
// name in the order given: a string as it is, any other value as compact
// JSON, empty when an item has no such field. A field whose name is
// already a column of taken is named "json.<field>".
func JSONFieldColumns(fields []string, taken []CSVColumn) []CSVColumn {
	used := map[string]bool{}
	for _, c := range taken {
		used[c.Name] = true
	}
	var cols []CSVColumn
	for _, f := range fields {
		name := f
		if used[name] {
			name = "json." + f
		}
		if used[name] {
			continue
		}
		used[name] = true
		cols = append(cols, CSVColumn{name, func(it Item) string { return jsonField(it.JSON, f) }})
	}
	return cols
}

// jsonField is field f of the JSON object raw, as JSONFieldColumns writes
// it.
func jsonField(raw json.RawMessage, f string) string {
	if len(raw) == 0 {
		return ""
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return ""
	}
	v, ok := obj[f]
	if !ok || string(v) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}
