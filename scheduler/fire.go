package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hibiken/asynq"
)

// KindFire is the asynq task type of a pipeline's periodic entry. asynq's
// scheduler enqueues one at every fire time; a scheduler process handles it.
const KindFire = "pipeline:fire"

// DefaultQueue is the asynq queue of fire tasks. Only scheduler processes
// serve it; workers never see it.
const DefaultQueue = "threadmill-scheduler"

// Fire is the payload of a fire task. It is constant per pipeline version
// (asynq's entries are static), so it does not carry the fire time: the
// process whose cron fires records the exact fire time in Redis before the
// task is enqueued, and the handler starts the recorded fire times.
type Fire struct {
	// Pipeline is the pipeline's name.
	Pipeline string `json:"pipeline"`
	// Cron and Timezone are the schedule, for people reading the entry in
	// `asynq cron ls` or asynqmon.
	Cron     string `json:"cron"`
	Timezone string `json:"timezone"`
	// Hash is the content hash of the pipeline version scheduled, so editing
	// a file re-registers its entry.
	Hash string `json:"hash"`
}

// Kind returns KindFire.
func (Fire) Kind() string { return KindFire }

// NewFire returns the fire task of an entry.
func NewFire(f Fire, opts ...asynq.Option) (*asynq.Task, error) {
	if f.Pipeline == "" {
		return nil, errors.New("scheduler: fire payload: pipeline is empty")
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("scheduler: encode fire payload: %w", err)
	}
	return asynq.NewTask(KindFire, b, opts...), nil
}

// DecodeFire decodes a fire task strictly; every error wraps asynq.SkipRetry.
func DecodeFire(t *asynq.Task) (Fire, error) {
	var f Fire
	if t == nil || t.Type() != KindFire {
		return f, fmt.Errorf("scheduler: decode %s: wrong task: %w", KindFire, asynq.SkipRetry)
	}
	dec := json.NewDecoder(bytes.NewReader(t.Payload()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("scheduler: decode %s payload: %w: %w", KindFire, err, asynq.SkipRetry)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("scheduler: decode %s payload: trailing data: %w", KindFire, asynq.SkipRetry)
	}
	if f.Pipeline == "" {
		return f, fmt.Errorf("scheduler: decode %s payload: pipeline is empty: %w", KindFire, asynq.SkipRetry)
	}
	return f, nil
}

// fireTimeout bounds one fire task: starting runs is a few Redis writes each.
const fireTimeout = time.Minute

func fireConfig(e *Entry, queue string, retention time.Duration) (*asynq.PeriodicTaskConfig, error) {
	task, err := NewFire(Fire{
		Pipeline: e.Name(),
		Cron:     e.Schedule.Expr(),
		Timezone: e.Schedule.Location().String(),
		Hash:     e.Pipeline.Hash,
	})
	if err != nil {
		return nil, err
	}
	opts := []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(10), asynq.Timeout(fireTimeout)}
	if retention > 0 {
		opts = append(opts, asynq.Retention(retention))
	}
	return &asynq.PeriodicTaskConfig{Cronspec: e.Schedule.Spec(), Task: task, Opts: opts}, nil
}
