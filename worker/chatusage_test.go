package worker_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// Against a server whose one-shot chat answers carry no usage
// (chat-usage=without), chat items record estimated usage, marked
// usage_estimated, instead of zero; the run logs it once.
func TestChatUsageEstimatedWhenTheServerGivesNone(t *testing.T) {
	for _, tc := range []struct {
		compat    string
		estimated bool
	}{{simulator.ChatUsageWith, false}, {simulator.ChatUsageWithout, true}} {
		t.Run(tc.compat, func(t *testing.T) {
			e := newEnv(t, simulator.Config{Compat: simulator.Compat{ChatUsage: tc.compat}})
			var logs syncbuf.Buffer
			e.startWorker(func(c *worker.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			p := e.pipeline(`
version: 1
name: chat-usage
workspace: { project: proj_test }
defaults: { mode: chat, max_tokens: 40 }
steps:
  - id: ask
    prompt: "List three causes of failed billing exports."
  - id: pick
    needs: [ask]
    prompt: "Which of these is the most likely? {{ .Steps.ask.Output }}"
`)
			st := e.wait(e.start(p, "chat-usage-"+tc.compat), time.Minute)
			if st.Status != runstore.StatusSucceeded {
				t.Fatalf("status %q (%s)", st.Status, st.Error)
			}
			items := readItems(t, resultsFile(st.ResultDir))
			if len(items) != 2 {
				t.Fatalf("%d items", len(items))
			}
			var in, out int64
			for _, it := range items {
				if it.UsageEstimated != tc.estimated || it.Usage.InputTokens == 0 || it.Usage.OutputTokens == 0 {
					t.Errorf("item %s: usage %+v, estimated %v; want non-zero, estimated %v", it.Key, it.Usage, it.UsageEstimated, tc.estimated)
				}
				if !tc.estimated && it.StopReason == "" {
					t.Errorf("item %s: no stop reason", it.Key)
				}
				in += int64(it.Usage.InputTokens)
				out += int64(it.Usage.OutputTokens)
			}
			// The estimate uses the simulator's own formula, so it matches
			// what the simulator spent exactly.
			if c := e.sim.Counters(); in != c.TokensIn || out != c.TokensOut {
				t.Errorf("usage %d/%d, simulator spent %d/%d", in, out, c.TokensIn, c.TokensOut)
			}
			if r := readRun(t, st.ResultDir); r.Usage.Total() != in+out {
				t.Errorf("run.json usage %+v, items %d", r.Usage, in+out)
			}
			want := 0
			if tc.estimated {
				want = 1
			}
			if n := strings.Count(logs.String(), "usage is estimated"); n != want {
				t.Errorf("logged %d times that usage is estimated, want %d:\n%s", n, want, logs.String())
			}
		})
	}
}
