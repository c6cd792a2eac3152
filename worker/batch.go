package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batchingClient is the Redis client the worker's asynq client enqueues
// through. Asynq enqueues each task with one Lua script call, a network
// round trip per task; batchingClient gathers the script calls that
// concurrent goroutines make at the same moment and sends them as one
// pipeline, so enqueueing a step of 100,000 items costs a few thousand round
// trips instead of 100,000. Each call still gets its own result and error,
// and a caller returns only once its command has run. Every other command
// goes straight to the wrapped client.
type batchingClient struct {
	redis.UniversalClient
	reqs chan *scriptCall
	quit chan struct{}
	wg   sync.WaitGroup
}

type scriptCall struct {
	ctx  context.Context
	sha  string
	keys []string
	args []any
	cmd  *redis.Cmd
	done chan struct{}
}

const (
	// maxBatch bounds the commands of one pipeline.
	maxBatch = 512
	// batchers is the number of pipelines in flight at once.
	batchers = 4
	// batchTimeout bounds one pipeline's round trip.
	batchTimeout = 30 * time.Second
)

var errBatcherClosed = errors.New("worker: redis batcher closed")

func newBatchingClient(c redis.UniversalClient) *batchingClient {
	b := &batchingClient{UniversalClient: c, reqs: make(chan *scriptCall), quit: make(chan struct{})}
	for range batchers {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// EvalSha runs the script through the next pipeline.
func (b *batchingClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c := &scriptCall{ctx: ctx, sha: sha, keys: keys, args: args, done: make(chan struct{})}
	select {
	case b.reqs <- c:
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return cmd
	case <-b.quit:
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(errBatcherClosed)
		return cmd
	}
	<-c.done
	return c.cmd
}

func (b *batchingClient) loop() {
	defer b.wg.Done()
	batch := make([]*scriptCall, 0, maxBatch)
	for {
		select {
		case <-b.quit:
			return
		case c := <-b.reqs:
			batch = append(batch[:0], c)
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case c := <-b.reqs:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		pipe := b.UniversalClient.Pipeline()
		for _, c := range batch {
			c.cmd = pipe.EvalSha(c.ctx, c.sha, c.keys, c.args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		_, _ = pipe.Exec(ctx) // each command carries its own error
		cancel()
		for _, c := range batch {
			close(c.done)
		}
	}
}

// Close stops the batchers; calls made afterwards fail. It does not close
// the wrapped client.
func (b *batchingClient) Close() error {
	close(b.quit)
	b.wg.Wait()
	return nil
}
