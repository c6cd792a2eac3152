package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Rescuing the tasks of a dead worker.
//
// asynq gives a task it hands to a worker a lease of 30s, extended every 5s
// by the worker's heartbeat (internal/rdb/rdb.go LeaseDuration, fixed). Its
// recoverer gives a task back to the queue only once the lease has been
// expired for another 30s, and runs once a minute per server (recoverer.go,
// server.go; neither is configurable in v0.26 nor on upstream master). A
// SIGKILLed worker's tasks thus come back 60–65s later.
//
// asynq's public API cannot move an active task (Inspector.RunTask,
// ArchiveTask and DeleteTask refuse active tasks), but it shows which ones
// are orphaned: Inspector.ListActiveTasks flags a task whose lease has
// expired, and Inspector.Servers lists the tasks each live server runs (its
// heartbeat expires 10s after its last beat). One worker of the fleet at a
// time (the holder of a short Redis lock) looks every Config.OrphanCheck;
// a task that has had an expired lease and no live server for
// Config.OrphanGrace is enqueued again as a rescue copy: same type, payload,
// headers and options, a deterministic task id, the attempts it has left, and
// a header naming the attempt it replaces.
//
// The original task stays active until asynq's recoverer retries it; that
// retry and the rescue copy race for the same attempt: each claims
// "<task id>, attempt n" with SET NX before running (see exclusive), and the
// loser returns at once without doing anything. Every retry claims its
// attempt the same way, so exactly one of the two runs the work. The
// handlers' checkpoints (DESIGN.md: exactly-once effects) do the rest.

// rescueHeader names, on a rescue copy, the task and attempt it replaces:
// "<retry count> <task id>".
const rescueHeader = "threadmill-rescue-of"

// orphanLeaderTTL is how long the orphan checker's lock outlives a check, in
// checks: a dead holder's lock passes to another worker after that.
const orphanLeaderTTL = 3

// orphanPageSize is the page size of Inspector.ListActiveTasks.
const orphanPageSize = 500

// attemptKey is the key an attempt of a task is claimed with.
func (w *Worker) attemptKey(taskID string, n int) string {
	return w.cfg.Prefix + "attempt:{" + taskID + "}:" + strconv.Itoa(n)
}

// claimAttempt claims attempt n (a retry count) of a task for the caller;
// false when a retry or a rescue copy claimed it first.
func (w *Worker) claimAttempt(ctx context.Context, taskID string, n int, by string) (bool, error) {
	ok, err := w.cfg.RDB.SetNX(ctx, w.attemptKey(taskID, n), by, w.cfg.Retention).Result()
	if err != nil {
		return false, fmt.Errorf("worker: claim attempt %d of task %s: %w", n, taskID, err)
	}
	return ok, nil
}

// attemptOf returns the task and attempt an attempt claims: its own retry
// count for a retry, the header for a rescue copy's first attempt, and ""
// for a task's first attempt (which nothing can race).
func attemptOf(ctx context.Context, t *asynq.Task) (taskID string, n int, rescue bool) {
	if n, _ := asynq.GetRetryCount(ctx); n > 0 {
		id, _ := asynq.GetTaskID(ctx)
		return id, n, false
	}
	v, ok := t.Headers()[rescueHeader]
	if !ok {
		return "", 0, false
	}
	ns, id, _ := strings.Cut(v, " ")
	n, err := strconv.Atoi(ns)
	if err != nil || id == "" {
		return "", 0, false
	}
	return id, n, true
}

// exclusive runs a retry or a rescue copy only when it claims its attempt
// first (see the comment at the top of this file); the loser does nothing.
func (w *Worker) exclusive(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, n, rescue := attemptOf(ctx, t)
		if id == "" {
			return h.ProcessTask(ctx, t)
		}
		by := "retry"
		if rescue {
			by = "rescue"
		}
		ok, err := w.claimAttempt(ctx, id, n, by)
		if err != nil {
			return err
		}
		if !ok {
			w.log.Info("attempt already run by another copy of the task; skipping", "task", id, "attempt", n+1, "copy", by)
			noteDid(ctx, "nothing: attempt %d of %s was run by another copy", n+1, id)
			return nil
		}
		err = h.ProcessTask(ctx, t)
		if err != nil && (!isFailure(err) || ctx.Err() != nil) {
			// asynq delivers this attempt again with the same retry count:
			// after a wait the API asked for (not a failure), or after a
			// shutdown handed the task back. Give the claim back for it.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			defer cancel()
			if derr := w.cfg.RDB.Del(rctx, w.attemptKey(id, n)).Err(); derr != nil {
				w.log.Warn("could not release an attempt's claim; the task's next delivery may be skipped", "task", id, "error", derr)
			}
		}
		return err
	})
}

// orphanChecker looks for the tasks of dead workers (see the comment at the
// top of this file).
type orphanChecker struct {
	w    *Worker
	insp *asynq.Inspector
	id   string // this worker's id in the lock
	// seen is when each orphan ("<retry count> <task id>") was first seen;
	// rescued, the orphans this worker rescued (asynq retries them later).
	seen    map[string]time.Time
	rescued map[string]bool
	failed  bool // the last check failed (its error was logged)
}

func newOrphanChecker(w *Worker, insp *asynq.Inspector) *orphanChecker {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &orphanChecker{w: w, insp: insp, id: hex.EncodeToString(b), seen: map[string]time.Time{}, rescued: map[string]bool{}}
}

// run checks every Config.OrphanCheck until ctx ends.
func (o *orphanChecker) run(ctx context.Context) {
	t := time.NewTimer(o.w.cfg.OrphanCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := o.check(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil && !o.failed:
			o.w.log.Warn("could not look for the tasks of dead workers; asynq's recoverer still hands them back, later", "error", err)
			o.failed = true
		case err == nil && o.failed:
			o.w.log.Info("looking for the tasks of dead workers again")
			o.failed = false
		}
		t.Reset(o.w.cfg.OrphanCheck)
	}
}

// scriptLead takes or keeps the orphan checker's lock: KEYS[1] the lock,
// ARGV[1] the caller's id, ARGV[2] the TTL in ms. 1 when the caller holds it.
var scriptLead = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// lead reports whether this worker is the one that looks for orphans now.
func (o *orphanChecker) lead(ctx context.Context) (bool, error) {
	ttl := orphanLeaderTTL * o.w.cfg.OrphanCheck
	n, err := scriptLead.Run(ctx, o.w.cfg.RDB, []string{o.w.cfg.Prefix + "orphans:lock"}, o.id, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("worker: orphan checker lock: %w", err)
	}
	return n == 1, nil
}

// check looks once, if this worker holds the lock, and rescues the tasks
// orphaned for Config.OrphanGrace.
func (o *orphanChecker) check(ctx context.Context, now time.Time) error {
	lead, err := o.lead(ctx)
	if err != nil || !lead {
		clear(o.seen) // another worker looks: what we saw gets stale
		clear(o.rescued)
		return err
	}
	// Servers first: a task taken after this call has a fresh lease, so it
	// cannot look orphaned below.
	srvs, err := o.insp.Servers()
	if err != nil {
		return fmt.Errorf("worker: list asynq servers: %w", err)
	}
	running := map[string]bool{}
	for _, s := range srvs {
		for _, a := range s.ActiveWorkers {
			running[a.TaskID] = true
		}
	}
	orphans := map[string]bool{}
	for _, queue := range o.w.queues() {
		if err := o.checkQueue(ctx, queue, running, orphans, now); err != nil {
			return err
		}
	}
	maps.DeleteFunc(o.seen, func(k string, _ time.Time) bool { return !orphans[k] })
	maps.DeleteFunc(o.rescued, func(k string, _ bool) bool { return !orphans[k] })
	return nil
}

// checkQueue rescues the orphaned tasks of one queue, adding the ones it
// saw to orphans.
func (o *orphanChecker) checkQueue(ctx context.Context, queue string, running, orphans map[string]bool, now time.Time) error {
	for page := 1; ; page++ {
		tasks, err := o.insp.ListActiveTasks(queue, asynq.PageSize(orphanPageSize), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("worker: list active tasks: %w", err)
		}
		for _, t := range tasks {
			if !t.IsOrphaned || running[t.ID] || t.Retried >= t.MaxRetry {
				// Live, or its last attempt: asynq archives that one.
				continue
			}
			key := strconv.Itoa(t.Retried) + " " + t.ID
			orphans[key] = true
			if o.rescued[key] {
				continue
			}
			first, ok := o.seen[key]
			if !ok {
				o.seen[key] = now
				continue
			}
			if now.Sub(first) < o.w.cfg.OrphanGrace {
				continue
			}
			if err := o.rescue(ctx, t, now.Sub(first)); err != nil {
				return err
			}
			o.rescued[key] = true
		}
		if len(tasks) < orphanPageSize {
			return nil
		}
	}
}

// rescue enqueues a rescue copy of an orphaned task, unless its next
// attempt is claimed already (rescued before, or retried by asynq).
func (o *orphanChecker) rescue(ctx context.Context, t *asynq.TaskInfo, orphanedFor time.Duration) error {
	next := t.Retried + 1
	n, err := o.w.cfg.RDB.Exists(ctx, o.w.attemptKey(t.ID, next)).Result()
	if err != nil {
		return fmt.Errorf("worker: rescue task %s: %w", t.ID, err)
	}
	if n > 0 {
		return nil
	}
	headers := maps.Clone(t.Headers)
	if headers == nil {
		headers = map[string]string{}
	}
	headers[rescueHeader] = strconv.Itoa(next) + " " + t.ID
	opts := []asynq.Option{
		asynq.TaskID(t.ID + ":rescue" + strconv.Itoa(next)),
		asynq.MaxRetry(t.MaxRetry - next),
	}
	if t.Timeout > 0 {
		opts = append(opts, asynq.Timeout(t.Timeout))
	}
	if !t.Deadline.IsZero() {
		opts = append(opts, asynq.Deadline(t.Deadline))
	}
	if t.Retention > 0 {
		opts = append(opts, asynq.Retention(t.Retention))
	}
	if err := o.w.enqueueTo(ctx, t.Queue, asynq.NewTaskWithHeaders(t.Type, t.Payload, headers, opts...)); err != nil {
		return fmt.Errorf("worker: rescue task %s: %w", t.ID, err)
	}
	o.w.log.Info("a dead worker's task enqueued again", "task", t.ID, "type", t.Type, "attempt", next+1,
		"orphaned_for", orphanedFor.Round(time.Millisecond))
	return nil
}
