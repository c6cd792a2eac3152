package worker_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/embedded"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// A worker on an in-process Redis runs a one-step pipeline against the
// simulator and writes its result files.
func Example() {
	ctx := context.Background()
	red, err := embedded.Start(ctx, embedded.Options{})
	if err != nil {
		panic(err)
	}
	defer red.Close()
	rdb := red.Client()
	defer rdb.Close()

	sim := simulator.New(simulator.Config{ProjectID: "proj_demo"})
	defer sim.Close()
	srv := httptest.NewServer(sim)
	defer srv.Close()
	api, err := workspace.New(srv.URL, workspace.WithOrg("default"))
	if err != nil {
		panic(err)
	}

	dir, err := os.MkdirTemp("", "threadmill-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := worker.New(worker.Config{RDB: rdb, API: api, ResultsRoot: dir})
	if err != nil {
		panic(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()

	p, err := pipelines.Parse("hello.yaml", []byte(`
version: 1
name: hello
workspace: { project: proj_demo }
steps:
  - id: greet
    mode: chat
    prompt: "Say hello to the support team."
`), func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err)
	}
	q := asynq.NewClientFromRedisClient(rdb)
	defer q.Close()
	if err := jobs.StartRun(ctx, q, w.Store(), p, pipelines.RunInfo{ID: "hello-1"}, asynq.Queue(w.Queue())); err != nil {
		panic(err)
	}
	st, err := w.Store().Wait(ctx, "hello-1")
	if err != nil {
		panic(err)
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	rel, _ := filepath.Rel(dir, st.ResultDir)
	fmt.Println(st.Status, st.Succeeded, "item(s) in", rel)
	// Output: succeeded 1 item(s) in hello/hello-1
}
