package worker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// BenchmarkRetainedItemBytes measures what a completed item task kept by
// Config.ItemRetention costs Redis: used_memory after b.N items with the
// payload of the example bulk pipeline (one turn, a three-line system text,
// a thread name; about 1 KB of JSON) completed, each with a typical result,
// minus used_memory before they were enqueued. It reports bytes/item and
// payload-bytes/item; the difference is asynq's per-task cost plus the
// result.
//
//	go test ./worker -run '^$' -bench RetainedItemBytes -benchtime 5000x
func BenchmarkRetainedItemBytes(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client(b)
	ctx := context.Background()
	opt := asynq.RedisClientOpt{Network: "unix", Addr: srv.Socket}
	client := asynq.NewClient(opt)
	defer client.Close()
	const queue = "bench"
	result := []byte(`{"state":"succeeded","attempts":1,"input_tokens":579,"output_tokens":101,"latency_ms":1042,"thread_id":"thread_9b1a66a95412ff75","interaction_ids":["inter_c448c2b1f05f7e4c"]}`)
	done := make(chan struct{}, b.N)
	asrv := asynq.NewServer(opt, asynq.Config{Concurrency: 16, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel})
	if err := asrv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		_, err := t.ResultWriter().Write(result)
		done <- struct{}{}
		return err
	})); err != nil {
		b.Fatal(err)
	}
	defer asrv.Shutdown()
	usedMemory := func() int64 {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		b.Fatal("no used_memory in INFO")
		return 0
	}
	mt := 400
	temp := 0.2
	yes := true
	run := "bulk-summarize-20260302T090000Z"
	before := usedMemory()
	var payloadBytes int64
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("artifact_%016x", i*7919)
		name := fmt.Sprintf("TCK-%04d-login-loop.md", i)
		it := jobs.Item{RunID: run, Item: pipelines.Item{
			Key: pipelines.ItemKey("summarize", &pipelines.ArtifactRef{ID: id}), Step: "summarize", Index: i,
			Artifact:    &pipelines.ArtifactRef{ID: id, Name: name, Type: "Document", Folder: "Support/Tickets", UpdatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
			ArtifactIDs: []string{id}, Mode: "thread", Agent: "Default", ThreadName: "bulk-summarize 2026-03-02: " + name,
			ThreadVisibility: "Private", ThreadPer: "item",
			Requests: []workspace.ChatRequest{{
				Messages:  []workspace.Message{workspace.UserText("Summarize the support ticket " + name + " in three bullets:\nthe customer's problem, what was done, and its status today.\n")},
				System:    &workspace.System{Text: "You are a support analyst at Tallyworks. Be factual and brief;\nquote ticket numbers; never invent customers or figures.\n", UseDefaultPrompt: &yes},
				MaxTokens: &mt, Temperature: &temp,
			}},
			EstimatedTokens: 463,
		}}
		task, err := jobs.NewItem(it, asynq.Queue(queue), asynq.Retention(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		payloadBytes += int64(len(task.Payload()))
		if _, err := client.Enqueue(task); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		<-done
	}
	b.StopTimer()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	for {
		// The handler returned; asynq marks the task completed just after.
		q, err := insp.GetQueueInfo(queue)
		if err != nil {
			b.Fatal(err)
		}
		if q.Completed == b.N {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling a condition asynq does not signal
	}
	b.ReportMetric(float64(usedMemory()-before)/float64(b.N), "bytes/item")
	b.ReportMetric(float64(payloadBytes)/float64(b.N), "payload-bytes/item")
}
