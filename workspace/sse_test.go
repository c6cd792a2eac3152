package workspace

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// renderStream runs ReadStream over in and renders every event and the
// result as stable text for golden comparison.
func renderStream(t *testing.T, in []byte, l Limits) string {
	t.Helper()
	var b strings.Builder
	res, err := ReadStream(bytes.NewReader(in), l, func(ev Event) {
		line := map[string]any{"type": ev.Type}
		if ev.ID != "" {
			line["id"] = ev.ID
		}
		if ev.BlockID != "" {
			line["block_id"] = ev.BlockID
		}
		if ev.Index != nil {
			line["index"] = *ev.Index
		}
		if ev.Block != nil {
			line["block"] = ev.Block
		}
		if ev.Delta != nil {
			line["delta"] = ev.Delta
		}
		if ev.Message != nil {
			line["message_id"] = ev.Message.ID
		}
		if ev.StopReason != "" {
			line["stop_reason"] = ev.StopReason
		}
		if ev.Usage != nil {
			line["usage"] = ev.Usage
		}
		if ev.Error != nil {
			line["error"] = ev.Error
		}
		j, err := json.Marshal(line)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("event ")
		b.Write(j)
		b.WriteByte('\n')
	})
	j, jerr := json.MarshalIndent(res, "", "  ")
	if jerr != nil {
		t.Fatal(jerr)
	}
	fmt.Fprintf(&b, "result %s\ntext %q\n", j, res.Text())
	if err != nil {
		fmt.Fprintf(&b, "error %v\n", err)
	}
	return b.String()
}

// TestReadStreamGolden compares the events and result of every stream under
// testdata/sse with its .golden file, and checks that the same stream with
// CRLF or lone-CR line endings, or delivered one byte per read, reads the
// same.
func TestReadStreamGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/sse/*.sse")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := renderStream(t, in, Limits{})
			golden := strings.TrimSuffix(f, ".sse") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", f, golden, got, want)
			}
			for name, variant := range map[string][]byte{
				"CRLF": bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n")),
				"CR":   bytes.ReplaceAll(in, []byte("\n"), []byte("\r")),
			} {
				if got := renderStream(t, variant, Limits{}); got != string(want) {
					t.Errorf("%s line endings read differently:\n--- got\n%s--- want\n%s", name, got, want)
				}
			}
			// One byte per read exercises every split point, including
			// a CR at the end of a read followed by its LF.
			crlf := bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n"))
			res1, err1 := ReadStream(iotest.OneByteReader(bytes.NewReader(crlf)), Limits{}, nil)
			res2, err2 := ReadStream(bytes.NewReader(in), Limits{}, nil)
			if res1.Text() != res2.Text() || fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Errorf("one-byte reads: text %q err %v, want %q err %v", res1.Text(), err1, res2.Text(), err2)
			}
		})
	}
}

func TestReadStreamOutcomes(t *testing.T) {
	read := func(name string) (*StreamResult, error) {
		t.Helper()
		in, err := os.ReadFile(filepath.Join("testdata/sse", name))
		if err != nil {
			t.Fatal(err)
		}
		return ReadStream(bytes.NewReader(in), Limits{}, nil)
	}
	t.Run("complete", func(t *testing.T) {
		res, err := read("full_blocks.sse")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Completed || res.Text() != "Risks: late refunds, login loops.(see policy)" {
			t.Errorf("completed %v text %q", res.Completed, res.Text())
		}
		if res.StopReason != "end_turn" || res.Usage == nil || res.Usage.InputTokens != 120 || res.Usage.OutputTokens != 9 {
			t.Errorf("stop %q usage %+v", res.StopReason, res.Usage)
		}
		if len(res.Blocks) != 4 || res.Blocks[0].Type != "thinking" || res.Blocks[0].Text != "" || res.Blocks[3].Type != "source" {
			t.Errorf("blocks %+v", res.Blocks)
		}
	})
	t.Run("missing message_stop is an error", func(t *testing.T) {
		res, err := read("missing_message_stop.sse")
		if !errors.Is(err, ErrStreamIncomplete) || !IsRetryable(err) {
			t.Fatalf("err %v, want ErrStreamIncomplete (retryable)", err)
		}
		if res.Completed || res.Text() != "partial answer" || res.Usage == nil || res.Usage.OutputTokens != 2 {
			t.Errorf("partial result %+v", res)
		}
	})
	t.Run("cut mid line drops the partial event", func(t *testing.T) {
		res, err := read("cut_mid_line.sse")
		if !errors.Is(err, ErrStreamIncomplete) {
			t.Fatalf("err %v, want ErrStreamIncomplete", err)
		}
		if res.Text() != "kept" {
			t.Errorf("text %q", res.Text())
		}
	})
	t.Run("error event", func(t *testing.T) {
		res, err := read("error_event.sse")
		se, ok := errors.AsType[*StreamError](err)
		if !ok || se.Type != "overloaded_error" || !strings.Contains(se.Message, "overloaded") {
			t.Fatalf("err %v, want *StreamError overloaded_error", err)
		}
		if !IsRetryable(err) || IsPermanent(err) {
			t.Errorf("overloaded_error: retryable %v permanent %v", IsRetryable(err), IsPermanent(err))
		}
		if res.Text() != "before the error" {
			t.Errorf("text %q", res.Text())
		}
	})
	t.Run("bad JSON in a known event", func(t *testing.T) {
		_, err := read("bad_json.sse")
		if err == nil || !strings.Contains(err.Error(), "content_block_delta") || !strings.Contains(err.Error(), "line 4") {
			t.Fatalf("err %v, want a content_block_delta error naming line 4", err)
		}
	})
}

func TestEventReaderFields(t *testing.T) {
	in := "id: 7\nevent: custom\ndata\ndata:x\n\n" + // "data" alone appends an empty line
		"event: ping\n\n" + // an event without data is still dispatched
		"\n\n\n" + // blank lines alone dispatch nothing
		"id: a\x00b\ndata: {}\n\n" // an id with NUL is ignored
	r := NewEventReader(strings.NewReader(in), Limits{})
	want := []struct{ typ, id, data string }{
		{"custom", "7", "\nx"},
		{"ping", "", ""},
		{"message", "", "{}"},
	}
	for i, w := range want {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.Type != w.typ || ev.ID != w.id || string(ev.Data) != w.data {
			t.Errorf("event %d = {%q %q %q}, want %+v", i, ev.Type, ev.ID, ev.Data, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after last event: %v, want io.EOF", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next after EOF: %v, want io.EOF again", err)
	}
}

// endless is a hostile stream: it never ends and never sends a newline (or,
// with lines set, sends short valid lines forever).
type endless struct {
	lines bool
	n     int64
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		if e.lines && e.n%64 == 63 {
			p[i] = '\n'
		} else if e.lines && e.n%64 < 6 {
			p[i] = ": ping"[e.n%64]
		} else {
			p[i] = 'x'
		}
		e.n++
	}
	return len(p), nil
}

func TestEventReaderLimits(t *testing.T) {
	t.Run("line", func(t *testing.T) {
		src := &endless{}
		_, err := NewEventReader(src, Limits{MaxLine: 1 << 10}).Next()
		if !errors.Is(err, ErrBodyTooLarge) || !strings.Contains(err.Error(), "line exceeds the 1 KiB limit") {
			t.Fatalf("err %v, want the line limit", err)
		}
		if src.n > 64<<10 {
			t.Errorf("read %d bytes for a 1 KiB line limit", src.n)
		}
	})
	t.Run("total", func(t *testing.T) {
		src := &endless{lines: true}
		_, err := NewEventReader(src, Limits{MaxTotal: 1 << 20}).Next()
		if !errors.Is(err, ErrBodyTooLarge) || !strings.Contains(err.Error(), "1 MiB limit") {
			t.Fatalf("err %v, want the total limit", err)
		}
		if src.n > 1<<20+64<<10 {
			t.Errorf("read %d bytes for a 1 MiB total limit", src.n)
		}
	})
	t.Run("event", func(t *testing.T) {
		in := strings.Repeat("data: "+strings.Repeat("y", 100)+"\n", 100) + "\n"
		_, err := NewEventReader(strings.NewReader(in), Limits{MaxEvent: 4 << 10}).Next()
		if !errors.Is(err, ErrBodyTooLarge) || !strings.Contains(err.Error(), "event data exceeds the 4 KiB limit") {
			t.Fatalf("err %v, want the event limit", err)
		}
	})
	t.Run("exact total is fine", func(t *testing.T) {
		in := "data: {\"type\":\"message_stop\"}\n\n"
		res, err := ReadStream(strings.NewReader(in), Limits{MaxTotal: int64(len(in))}, nil)
		if err != nil || !res.Completed {
			t.Fatalf("stream of exactly MaxTotal bytes: %v", err)
		}
		_, err = ReadStream(strings.NewReader(": pad\n"+in), Limits{MaxTotal: int64(len(in))}, nil)
		if !errors.Is(err, ErrBodyTooLarge) {
			t.Fatalf("message_stop past MaxTotal: %v, want ErrBodyTooLarge", err)
		}
	})
}

// FuzzEventReader feeds arbitrary bytes to the reader: it must never panic,
// must respect its limits, must repeat its terminal error, and must read a
// stream with CRLF endings exactly as the same stream with LF endings.
func FuzzEventReader(f *testing.F) {
	files, _ := filepath.Glob("testdata/sse/*.sse")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("data: x\r\n\r\ndata: y\rdata: z\r\r"))
	f.Add([]byte(":\n\nevent:\ndata:\n\n"))
	lim := Limits{MaxLine: 256, MaxEvent: 512, MaxTotal: 4096}
	f.Fuzz(func(t *testing.T, in []byte) {
		collect := func(in []byte) (out []string, text string, final error) {
			r := NewEventReader(bytes.NewReader(in), lim)
			for {
				ev, err := r.Next()
				if err != nil {
					if err2 := func() error { _, e := r.Next(); return e }(); err2 != err {
						t.Fatalf("Next after %v returned %v", err, err2)
					}
					return out, text, err
				}
				if len(ev.Data) > lim.MaxEvent {
					t.Fatalf("event data %d bytes over MaxEvent %d", len(ev.Data), lim.MaxEvent)
				}
				out = append(out, fmt.Sprintf("%s|%s|%q|%s", ev.Type, ev.ID, ev.Data, ev.BlockID))
			}
		}
		a, _, errA := collect(in)
		res, err := ReadStream(bytes.NewReader(in), lim, nil)
		if res == nil {
			t.Fatal("ReadStream returned a nil result")
		}
		if err == nil && !res.Completed {
			t.Fatal("ReadStream succeeded without message_stop")
		}
		if int64(len(res.Text())) > lim.MaxTotal {
			t.Fatalf("text %d bytes from a %d byte stream", len(res.Text()), lim.MaxTotal)
		}
		if bytes.IndexByte(in, '\r') >= 0 {
			return
		}
		crlf := bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n"))
		if int64(len(crlf)) > lim.MaxTotal || len(in) > lim.MaxLine {
			return // the longer variant may hit a limit the original does not
		}
		b, _, errB := collect(crlf)
		if strings.Join(a, "\n") != strings.Join(b, "\n") || (errA == io.EOF) != (errB == io.EOF) {
			t.Fatalf("CRLF variant differs:\nLF   %q %v\nCRLF %q %v", a, errA, b, errB)
		}
	})
}
