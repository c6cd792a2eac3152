package worker_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// cutProxy forwards a unix socket to Redis until Cut, which drops every
// connection and refuses new ones: to Redis, a worker behind it is dead
// (no heartbeat, no lease extension, nothing handed back), while the
// process goes on running.
type cutProxy struct {
	path string
	ln   net.Listener
	mu   sync.Mutex
	cut  bool
	conn []net.Conn
	wg   sync.WaitGroup
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "cp") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &cutProxy{path: filepath.Join(dir, "redis.sock")}
	if p.ln, err = net.Listen("unix", p.path); err != nil {
		t.Fatal(err)
	}
	p.wg.Go(func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				_ = c.Close()
				_ = up.Close()
				continue
			}
			p.conn = append(p.conn, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
		}
	})
	t.Cleanup(p.Cut)
	return p
}

// Cut drops every connection for good.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	already := p.cut
	p.cut = true
	for _, c := range p.conn {
		_ = c.Close()
	}
	p.mu.Unlock()
	if !already {
		_ = p.ln.Close()
	}
	p.wg.Wait()
}

// A worker that dies (here: cut off from Redis for good, which is what a
// SIGKILL looks like from Redis) with items waiting on interactions: a
// live worker's orphan checker enqueues them again once their asynq lease
// has expired, long before asynq's own recoverer would (it waits another
// 30s, then up to a minute), and every item resumes its interactions: each
// is created once. The claim of each item's second attempt says the rescue
// copy, not asynq's retry, ran it.
func TestDeadWorkersItemsAreRescued(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 2 * time.Second})
	const n = 4
	e.folder("Inbox", n)
	proxy, stopDead := e.startDoomedWorker()
	run := e.start(e.pipeline(resumePipeline), "dead-1")
	waitFor(t, 30*time.Second, "every item's first interaction in flight", func() bool {
		return e.processing() == n
	})
	proxy.Cut()
	t.Log("worker cut off from Redis with every item in flight")

	e.startWorker(func(c *worker.Config) {
		c.OrphanCheck = 100 * time.Millisecond
		c.OrphanGrace = 200 * time.Millisecond
	})
	// asynq's lease (30s) must expire first; the bound is generous.
	checkExactlyOnce(t, e, e.wait(run, 3*time.Minute), n)
	stopDead()

	rdb := e.rdb()
	for i := range n {
		id := jobs.Item{RunID: run, Item: pipelines.Item{Step: "summarize", Key: itemKey(t, e, run, i)}}.TaskID()
		by, err := rdb.Get(context.Background(), runstore.DefaultPrefix+"attempt:{"+id+"}:1").Result()
		if err != nil || by != "rescue" {
			t.Errorf("task %s: the second attempt was claimed by %q (%v), want the rescue copy", id, by, err)
		}
	}
}

// startDoomedWorker starts a worker that reaches Redis through a proxy
// the test can cut (what a SIGKILL looks like from Redis), with no orphan
// check of its own, and returns the proxy and the worker's stop.
func (e *env) startDoomedWorker(opts ...workerOpts) (*cutProxy, func()) {
	proxy := newCutProxy(e.t, e.redis.Socket)
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: proxy.path, MaxRetries: 1})
	e.t.Cleanup(func() { _ = rdb.Close() })
	_, stop := e.startWorker(append([]workerOpts{func(c *worker.Config) {
		c.Redis = asynq.RedisClientOpt{Network: "unix", Addr: proxy.path}
		c.RDB = rdb
		c.ShutdownTimeout = time.Second
		c.OrphanCheck = -1
	}}, opts...)...)
	return proxy, stop
}

// processing counts the simulator's interactions still generating.
func (e *env) processing() int {
	n := 0
	for _, in := range e.sim.Interactions() {
		if in.State == workspace.StateProcessing {
			n++
		}
	}
	return n
}

// itemKey returns the key of the i-th item of the summarize step.
func itemKey(t *testing.T, e *env, run string, i int) string {
	t.Helper()
	it, err := e.store.Item(context.Background(), run, "summarize", i)
	if err != nil || it == nil {
		t.Fatalf("item %d of %s: %v", i, run, err)
	}
	return it.Key
}
