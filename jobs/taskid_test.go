package jobs_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// realisticRuns are run ids as threadmill makes them (scheduled, fresh,
// re-run, --run-id) and some a user may pass.
var realisticRuns = []string{
	"weekly-support-brief@2026-03-30T09:00:00+02:00",
	"weekly-support-brief@2026-03-30T09:00:00-02:00",
	"weekly-support-brief@2026-03-30T07:00:00Z",
	"bulk-summarize-20260302T090000Z",
	"bulk-summarize-20260302T090000Z-2",
	"r1",
	"my run (test)",
	"informe-señal-ß",
	"-leading-dash",
	"ends.0123456789abcdef",
	strings.Repeat("long-run-id-", 16),
}

// realisticKeys are item keys of step "summarize": pipelines.ItemKey's, and
// keys with every character a key could hold.
func realisticKeys() []string {
	keys := []string{
		"summarize",
		pipelines.ItemKey("summarize", &pipelines.ArtifactRef{ID: "artifact_2b4d6f8a1c3e5a7b"}),
		pipelines.ItemKey("summarize", &pipelines.ArtifactRef{ID: "a/b c"}),
		pipelines.ItemKey("summarize", &pipelines.ArtifactRef{ID: "TCK-1041.md"}),
		"summarize/with space",
		"summarize/with/slashes/inside",
		"summarize/with//empty",
		"summarize/",
		"summarize/a:b",
		"summarize/a-b",
		"summarize/a b",
		"summarize/a/b",
		"summarize/日本語のキー",
		"summarize/中文键",
		"summarize/émoji 🎉",
		"summarize/" + strings.Repeat("x", 64),
		"summarize/" + strings.Repeat("x", 65),
		"summarize/" + strings.Repeat("x", 5000),
		"summarize/" + strings.Repeat("x", 4999) + "y",
		"summarize/%2F?#&=+",
		"summarize/..",
		"summarize/.",
		"summarize/r1",
		"summarize/start",
		"summarize/x.0123456789abcdef",
		"summarize/\x00\n\t",
		"summarize/" + string([]byte{0xff, 0xfe}),
		"other",             // not a key of this step
		"other/summarize/x", // not a key of this step
		"summarizeX/x",      // not a key of this step
		"/x",                // the hash input of the non-prefixed key "x"
		"x",                 // not prefixed
		"summarize/key x",
		"summarize/key-x.hash",
		"summarize/x-" + "日本", // unicode at the end
	}
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("summarize/キー%d", i), fmt.Sprintf("summarize/%d", i))
	}
	return keys
}

func payloadsFor(run string, attempt int) []jobs.Payload {
	out := []jobs.Payload{
		jobs.RunStart{RunID: run, Attempt: attempt},
		jobs.Advance{RunID: run, Step: "summarize", Attempt: attempt},
		jobs.Advance{RunID: run, Step: "start", Attempt: attempt},
		jobs.FanOut{RunID: run, Step: "summarize", From: 4096, Attempt: attempt},
		jobs.FanOut{RunID: run, Step: "summarize", From: 4096, Wait: 1, Attempt: attempt},
		jobs.FanOut{RunID: run, Step: "summarize", From: 8192, Attempt: attempt},
		jobs.Finalize{RunID: run, Attempt: attempt},
		jobs.Item{RunID: run, Attempt: attempt, Item: pipelines.Item{Step: "start", Key: "start"}},
		jobs.Item{RunID: run, Attempt: attempt, Item: pipelines.Item{Step: "finalize", Key: "finalize"}},
		jobs.Item{RunID: run, Attempt: attempt, Item: pipelines.Item{Step: "r1", Key: "r1"}},
	}
	for _, k := range realisticKeys() {
		out = append(out, jobs.Item{RunID: run, Attempt: attempt, Item: pipelines.Item{Step: "summarize", Key: k}})
	}
	return out
}

func TestTaskIDsAreSafeUniqueAndDeterministic(t *testing.T) {
	seen := map[string]string{}
	for _, run := range realisticRuns {
		for _, attempt := range []int{0, 1, 2, 12} {
			for _, p := range payloadsFor(run, attempt) {
				id := p.TaskID()
				what := fmt.Sprintf("%s %+v", p.Kind(), p)
				if !jobs.TaskIDRe.MatchString(id) {
					t.Errorf("%s: task id %q has characters outside [A-Za-z0-9._:-]", what, id)
				}
				if len(id) > 200 {
					t.Errorf("%s: task id %q is %d bytes long", what, id, len(id))
				}
				if strings.HasPrefix(id, "-") {
					t.Errorf("%s: task id %q starts with '-' (a flag for the asynq CLI)", what, id)
				}
				if again := p.TaskID(); again != id {
					t.Errorf("%s: task id %q then %q", what, id, again)
				}
				if prev, ok := seen[id]; ok && prev != what {
					t.Errorf("task id %q for both\n  %s\n  %s", id, prev, what)
				}
				seen[id] = what
			}
		}
	}
	if len(seen) < 1000 {
		t.Fatalf("only %d ids checked", len(seen))
	}
}

func TestTaskIDsOfTheSamePayloadAreEqual(t *testing.T) {
	// A payload decoded from a task (as a worker sees it, or a second
	// enqueuer computes it) gives the id the first enqueuer gave it.
	for _, p := range payloadsFor("weekly-support-brief@2026-03-30T09:00:00+02:00", 1) {
		it, ok := p.(jobs.Item)
		if !ok || !utf8.ValidString(it.Item.Key) {
			continue // JSON cannot carry invalid UTF-8: the key itself changes
		}
		mt := 10
		it.Item.Requests = []workspace.ChatRequest{{Messages: []workspace.Message{workspace.UserText("x")}, MaxTokens: &mt}}
		task, err := jobs.NewItem(it)
		if err != nil {
			t.Fatal(err)
		}
		got, err := jobs.DecodeItem(task)
		if err != nil {
			t.Fatal(err)
		}
		if got.TaskID() != it.TaskID() {
			t.Errorf("key %q: decoded payload's id %q, enqueued %q", it.Item.Key, got.TaskID(), it.TaskID())
		}
	}
}

func TestTaskIDsAreReadable(t *testing.T) {
	item := func(run, key string, attempt int) string {
		return jobs.Item{RunID: run, Attempt: attempt, Item: pipelines.Item{Step: "summarize", Key: key}}.TaskID()
	}
	const fresh = "bulk-summarize-20260302T090000Z"
	cases := []struct{ got, want string }{
		{jobs.RunStart{RunID: fresh}.TaskID(), fresh + ":start"},
		{jobs.RunStart{RunID: fresh, Attempt: 2}.TaskID(), fresh + ":r2:start"},
		{item(fresh, "summarize/artifact_2b4d6f8a1c3e5a7b", 0), fresh + ":item:summarize:artifact_2b4d6f8a1c3e5a7b"},
		{item(fresh, "summarize/artifact_1", 1), fresh + ":r1:item:summarize:artifact_1"},
		{item(fresh, "summarize", 0), fresh + ":item:summarize"},
		{jobs.Advance{RunID: fresh, Step: "summarize"}.TaskID(), fresh + ":advance:summarize"},
		{jobs.Finalize{RunID: fresh}.TaskID(), fresh + ":finalize"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("task id %q, want %q", c.got, c.want)
		}
	}
	// A scheduled run id keeps its readable text, then a hash.
	id := jobs.Finalize{RunID: "weekly-support-brief@2026-03-30T09:00:00+02:00"}.TaskID()
	if !strings.HasPrefix(id, "weekly-support-brief-2026-03-30T09-00-00-02-00.") || !strings.HasSuffix(id, ":finalize") {
		t.Errorf("scheduled run's finalize id %q is not readable", id)
	}
	// So does a unicode key, as far as it can.
	id = item(fresh, "summarize/informe señal", 0)
	if !strings.HasPrefix(id, fresh+":item:summarize:informe-se-al.") {
		t.Errorf("unicode key's id %q", id)
	}
	if strings.Count(jobs.Item{RunID: fresh, Item: pipelines.Item{Step: "summarize", Key: "summarize/x"}}.TaskID(), "summarize") != 2 {
		t.Errorf("the step name is repeated in an item's id") // once in the run id, once as the step
	}
}

func FuzzTaskID(f *testing.F) {
	f.Add("weekly@2026-03-30T09:00:00+02:00", "summarize/artifact_1", 0)
	f.Add("r", "summarize/日本", 3)
	f.Fuzz(func(t *testing.T, run, key string, attempt int) {
		if run == "" {
			return
		}
		for _, p := range []jobs.Payload{
			jobs.Item{RunID: run, Attempt: attempt, Item: pipelines.Item{Step: "summarize", Key: key}},
			jobs.Advance{RunID: run, Step: key, Attempt: attempt},
			jobs.FanOut{RunID: run, Step: key, From: 1 << 20, Wait: 99, Attempt: attempt},
			jobs.RunStart{RunID: run, Attempt: attempt},
		} {
			id := p.TaskID()
			if !jobs.TaskIDRe.MatchString(id) || !utf8.ValidString(id) {
				t.Fatalf("task id %q of %+v", id, p)
			}
			if n := strings.Count(key, "/"); len(id) > 200+n*(64+1) {
				t.Fatalf("task id %q of %+v is %d bytes", id, p, len(id))
			}
		}
	})
}
