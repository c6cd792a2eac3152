package results

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestJournalRoundTrip(t *testing.T) {
	path := JournalPath(t.TempDir(), "p", "run-1")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	items := fixtureItems()
	for _, it := range items {
		if err := j.Append(it); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(items[0]); err == nil {
		t.Fatal("Append after Close succeeded")
	}
	var got []string
	for it, err := range ReadJournal(path) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, it.Key+":"+it.State)
	}
	want := "[summarize/0001:succeeded summarize/0002:failed summarize/0003:skipped brief/0001:succeeded]"
	if fmt.Sprint(got) != want {
		t.Fatalf("read %v, want %v", got, want)
	}
}

// A line torn by a crash is ignored by ReadJournal and cut off by
// OpenJournal, so the next append starts a clean line.
func TestJournalTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	items := fixtureItems()
	if err := j.Append(items[0]); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"step":"summarize","key":"summarize/00`); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	if keys := journalKeys(t, path); keys != "[summarize/0001]" {
		t.Fatalf("with a torn tail: %s", keys)
	}
	j, err = OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(items[3]); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	if keys := journalKeys(t, path); keys != "[summarize/0001 brief/0001]" {
		t.Fatalf("after reopening and appending: %s", keys)
	}
}

func TestJournalMalformedLineNamesPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	line, _ := marshalLine(fixtureItems()[0])
	content := string(line) + "{not json}\n" + `{"step":"s"}` + "\n" + string(line)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var errs []string
	n := 0
	for _, err := range ReadJournal(path) {
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		n++
	}
	if n != 2 || len(errs) != 2 ||
		!strings.Contains(errs[0], path+":2:") || !strings.Contains(errs[1], path+":3: item without a key") {
		t.Fatalf("items %d, errors %q", n, errs)
	}
}

func TestJournalMissing(t *testing.T) {
	for _, err := range ReadJournal(filepath.Join(t.TempDir(), "none.jsonl")) {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
		return
	}
	t.Fatal("no error for a missing journal")
}

func TestJournalConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				it := fixtureItems()[0]
				it.Key = fmt.Sprintf("k-%d-%d", g, i)
				it.Output = strings.Repeat("z", 5000) // several pages per line
				if err := j.Append(it); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for it, err := range ReadJournal(path) {
		if err != nil {
			t.Fatal(err)
		}
		seen[it.Key] = true
	}
	if len(seen) != 800 {
		t.Fatalf("%d distinct items, want 800", len(seen))
	}
}

func FuzzReadJournal(f *testing.F) {
	line, _ := marshalLine(fixtureItems()[0])
	f.Add(line)
	f.Add([]byte("{}\n\n{\"key\":\"a\"}\n{\"key\":"))
	f.Add([]byte("\x00\xff\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "j.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for it, err := range ReadJournal(path) {
			if err == nil && it.Key == "" {
				t.Fatal("an item without a key was yielded")
			}
		}
		// Opening cuts any torn tail; the file then ends with a newline or is empty.
		j, err := OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		_ = j.Close()
		b, _ := os.ReadFile(path)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("journal ends without a newline after OpenJournal: %q", b)
		}
	})
}

func journalKeys(t *testing.T, path string) string {
	t.Helper()
	var keys []string
	for it, err := range ReadJournal(path) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, it.Key)
	}
	return fmt.Sprint(keys)
}

func TestReadItemsIsStrict(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(path string) (keys []string, errs []string) {
		for it, err := range ReadItems(path) {
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			keys = append(keys, it.Key)
		}
		return keys, errs
	}

	ok := write("ok.jsonl", "{\"step\":\"s\",\"key\":\"s/a\"}\n\n{\"step\":\"s\",\"key\":\"s/b\"}\n")
	if keys, errs := read(ok); len(errs) != 0 || len(keys) != 2 || keys[0] != "s/a" || keys[1] != "s/b" {
		t.Fatalf("ok file: keys %v, errors %v", keys, errs)
	}
	for _, c := range []struct{ name, body, want string }{
		{"torn.jsonl", "{\"key\":\"s/a\"}\n{\"key\":\"s/b\"", "torn.jsonl:2: last line has no newline"},
		{"bad.jsonl", "{\"key\":\"s/a\"}\nnot json\n", "bad.jsonl:2: invalid character"},
		{"nokey.jsonl", "{\"step\":\"s\"}\n", "nokey.jsonl:1: item without a key"},
	} {
		_, errs := read(write(c.name, c.body))
		if len(errs) != 1 || !strings.Contains(errs[0], c.want) {
			t.Errorf("%s: errors %v, want one containing %q", c.name, errs, c.want)
		}
	}
	if _, errs := read(filepath.Join(dir, "missing.jsonl")); len(errs) != 1 || !strings.Contains(errs[0], "no such file") {
		t.Errorf("missing file: errors %v", errs)
	}
}

// A NewJournal touches the disk only at its first Append, after prepare;
// one never appended to leaves nothing behind.
func TestNewJournalIsCreatedByTheFirstAppend(t *testing.T) {
	dir := t.TempDir()
	path := JournalPath(dir, "p", "r1")
	prepared := 0
	prepare := func() error {
		prepared++
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("journal exists before prepare ran: %v", err)
		}
		return nil
	}

	unused := NewJournal(path, prepare)
	if err := unused.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unused.Close(); err != nil {
		t.Fatal(err)
	}
	if unused.Created() || prepared != 0 {
		t.Errorf("an unused journal: created %v, prepare ran %d times", unused.Created(), prepared)
	}
	if _, err := os.Stat(filepath.Join(dir, "p")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an unused journal created its directory: %v", err)
	}
	if err := unused.Append(Item{Step: "s", Key: "k", State: StateSucceeded}); err == nil {
		t.Error("Append after Close succeeded")
	}

	// A failing prepare fails the Append and is tried again.
	boom := errors.New("disk full")
	fail := true
	j := NewJournal(path, func() error {
		if fail {
			return boom
		}
		return prepare()
	})
	if err := j.Append(Item{Step: "s", Key: "k0", State: StateSucceeded}); !errors.Is(err, boom) || j.Created() {
		t.Fatalf("Append with a failing prepare: %v, created %v", err, j.Created())
	}
	fail = false
	for i := range 3 {
		if err := j.Append(Item{Step: "s", Key: fmt.Sprintf("k%d", i), State: StateSucceeded}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if !j.Created() || prepared != 1 {
		t.Errorf("created %v, prepare ran %d times, want once", j.Created(), prepared)
	}
	n := 0
	for _, err := range ReadJournal(path) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d items journaled, want 3", n)
	}
}
