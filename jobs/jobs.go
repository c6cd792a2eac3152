// Package jobs defines threadmill's Asynq task kinds: a typed payload per
// kind, one constructor and one strict decoder each, and the deterministic
// task ids that make enqueueing idempotent.
//
// A run is four kinds of task:
//
//	run:start     {run_id}              resolve the artifact sets, plan and enqueue the first step
//	step:item     {run_id, item}        validate, then interact; record the result
//	step:advance  {run_id, step}        the step is complete: plan and enqueue the next one, or finalize
//	run:finalize  {run_id}              write the result files
//
// Payloads carry ids and rendered requests, never secrets. The pipeline
// itself and the run's window live in the run record in Redis (written by
// StartRun), so workers never need the YAML file and payloads stay small.
//
// A payload that does not decode is wrapped in asynq.SkipRetry: retrying a
// malformed task cannot help.
package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/pipelines"
)

// Task kinds (the asynq task type names).
const (
	KindRunStart = "run:start"
	KindItem     = "step:item"
	KindAdvance  = "step:advance"
	KindFanOut   = "step:fanout"
	KindFinalize = "run:finalize"
)

// Payload is implemented by every task payload.
type Payload interface {
	// Kind is the asynq task type of the payload.
	Kind() string
	// TaskID is the deterministic asynq task id of the payload: enqueueing the
	// same payload twice while the first task is still known to asynq fails
	// with asynq.ErrTaskIDConflict instead of running the work twice.
	TaskID() string
	// Run is the id of the run the task belongs to.
	Run() string
	validate() error
}

// RunStart starts a run whose record StartRun wrote to the run store.
type RunStart struct {
	RunID string `json:"run_id"`
	// Attempt is the run's attempt: 0 for its first, n for its n-th retry
	// (runstore.Reopen). Every task of an attempt carries it, so that its
	// task ids differ from the earlier attempts' (which asynq may still
	// hold, archived or completed).
	Attempt int `json:"attempt,omitempty"`
}

// Kind returns KindRunStart.
func (RunStart) Kind() string { return KindRunStart }

// TaskID returns "<run>:start" ("<run>:r<attempt>:start" after a retry;
// see taskid.go for how the run id is written).
func (p RunStart) TaskID() string { return runPrefix(p.RunID, p.Attempt) + ":start" }

// Run returns RunID.
func (p RunStart) Run() string { return p.RunID }

func (p RunStart) validate() error { return need("run_id", p.RunID) }

// Item is one work item of a step: the planned, rendered requests and where
// they come from.
type Item struct {
	RunID string         `json:"run_id"`
	Item  pipelines.Item `json:"item"`
	// Attempt is the run's attempt (see RunStart.Attempt).
	Attempt int `json:"attempt,omitempty"`
}

// Kind returns KindItem.
func (Item) Kind() string { return KindItem }

// TaskID returns "<run>:item:<step>:<artifact>" for the item key
// "<step>/<artifact>" ("<run>:item:<step>" for a step that runs once), with
// "r<attempt>" after the run after a retry; see taskid.go.
func (p Item) TaskID() string {
	return runPrefix(p.RunID, p.Attempt) + ":item:" + itemParts(p.Item.Step, p.Item.Key)
}

// Run returns RunID.
func (p Item) Run() string { return p.RunID }

func (p Item) validate() error {
	if err := need("run_id", p.RunID); err != nil {
		return err
	}
	if err := need("item.step", p.Item.Step); err != nil {
		return err
	}
	if err := need("item.key", p.Item.Key); err != nil {
		return err
	}
	if len(p.Item.Requests) == 0 {
		return errors.New("item.requests is empty")
	}
	if p.Item.Index < 0 {
		return fmt.Errorf("item.index is %d, want >= 0", p.Item.Index)
	}
	return nil
}

// Advance says that every item of Step has finished: the next step is
// planned and enqueued, or the run is finalized after the last one.
type Advance struct {
	RunID string `json:"run_id"`
	Step  string `json:"step"`
	// Attempt is the run's attempt (see RunStart.Attempt).
	Attempt int `json:"attempt,omitempty"`
}

// Kind returns KindAdvance.
func (Advance) Kind() string { return KindAdvance }

// TaskID returns "<run>:advance:<step>", with "r<attempt>" after the run
// after a retry; see taskid.go.
func (p Advance) TaskID() string { return runPrefix(p.RunID, p.Attempt) + ":advance:" + idPart(p.Step) }

// Run returns RunID.
func (p Advance) Run() string { return p.RunID }

func (p Advance) validate() error {
	if err := need("run_id", p.RunID); err != nil {
		return err
	}
	return need("step", p.Step)
}

// FanOut enqueues the next items of a step whose items are enqueued a
// window at a time (worker.Config.FanOutWindow): those from plan index From
// on, as many as the window has room for.
type FanOut struct {
	RunID string `json:"run_id"`
	Step  string `json:"step"`
	// From is the plan index of the first item to enqueue.
	From int `json:"from"`
	// Wait counts the times this chunk waited for room, so that each wait
	// is a task of its own.
	Wait int `json:"wait,omitempty"`
	// Attempt is the run's attempt (see RunStart.Attempt).
	Attempt int `json:"attempt,omitempty"`
}

// Kind returns KindFanOut.
func (FanOut) Kind() string { return KindFanOut }

// TaskID returns "<run>:fanout:<step>:<from>:<wait>", with "r<attempt>"
// after the run after a retry; see taskid.go.
func (p FanOut) TaskID() string {
	return runPrefix(p.RunID, p.Attempt) + ":fanout:" + idPart(p.Step) + ":" + strconv.Itoa(p.From) + ":" + strconv.Itoa(p.Wait)
}

// Run returns RunID.
func (p FanOut) Run() string { return p.RunID }

func (p FanOut) validate() error {
	if err := need("run_id", p.RunID); err != nil {
		return err
	}
	if p.From < 0 || p.Wait < 0 {
		return fmt.Errorf("from is %d and wait %d, want >= 0", p.From, p.Wait)
	}
	return need("step", p.Step)
}

// Finalize writes the run's result files and closes the run.
type Finalize struct {
	RunID string `json:"run_id"`
	// Attempt is the run's attempt (see RunStart.Attempt).
	Attempt int `json:"attempt,omitempty"`
}

// Kind returns KindFinalize.
func (Finalize) Kind() string { return KindFinalize }

// TaskID returns "<run>:finalize", with "r<attempt>" after the run after a
// retry; see taskid.go.
func (p Finalize) TaskID() string { return runPrefix(p.RunID, p.Attempt) + ":finalize" }

// Run returns RunID.
func (p Finalize) Run() string { return p.RunID }

func (p Finalize) validate() error { return need("run_id", p.RunID) }

// Compile-time checks that every kind is a Payload.
var (
	_ Payload = RunStart{}
	_ Payload = Item{}
	_ Payload = Advance{}
	_ Payload = FanOut{}
	_ Payload = Finalize{}
)

// StartRetention is how long asynq keeps a completed run:start task, with
// its result ("enqueued 120 items of step summarize"), unless the caller's
// options say otherwise: a day, like the worker's step:advance and
// run:finalize tasks. A late duplicate enqueue meets its task id meanwhile.
const StartRetention = 24 * time.Hour

// NewRunStart returns the run:start task of a run, kept StartRetention
// after it completes unless opts hold another asynq.Retention.
func NewRunStart(p RunStart, opts ...asynq.Option) (*asynq.Task, error) {
	return newTask(p, append([]asynq.Option{asynq.Retention(StartRetention)}, opts...))
}

// NewItem returns the step:item task of an item.
func NewItem(p Item, opts ...asynq.Option) (*asynq.Task, error) { return newTask(p, opts) }

// NewAdvance returns the step:advance task of a finished step.
func NewAdvance(p Advance, opts ...asynq.Option) (*asynq.Task, error) { return newTask(p, opts) }

// NewFanOut returns the task of p.
func NewFanOut(p FanOut, opts ...asynq.Option) (*asynq.Task, error) { return newTask(p, opts) }

// NewFinalize returns the run:finalize task of a run.
func NewFinalize(p Finalize, opts ...asynq.Option) (*asynq.Task, error) { return newTask(p, opts) }

// DecodeRunStart decodes a run:start task strictly.
func DecodeRunStart(t *asynq.Task) (RunStart, error) { return decode[RunStart](t) }

// DecodeItem decodes a step:item task strictly.
func DecodeItem(t *asynq.Task) (Item, error) { return decode[Item](t) }

// DecodeAdvance decodes a step:advance task strictly.
func DecodeAdvance(t *asynq.Task) (Advance, error) { return decode[Advance](t) }

// DecodeFanOut decodes a FanOut task strictly.
func DecodeFanOut(t *asynq.Task) (FanOut, error) { return decode[FanOut](t) }

// DecodeFinalize decodes a run:finalize task strictly.
func DecodeFinalize(t *asynq.Task) (Finalize, error) { return decode[Finalize](t) }

// newTask validates and encodes p. The deterministic TaskID is applied after
// opts so that a caller cannot replace it by accident.
func newTask(p Payload, opts []asynq.Option) (*asynq.Task, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("jobs: %s payload: %w", p.Kind(), err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode %s payload: %w", p.Kind(), err)
	}
	all := make([]asynq.Option, 0, len(opts)+1)
	all = append(all, opts...)
	all = append(all, asynq.TaskID(p.TaskID()))
	return asynq.NewTask(p.Kind(), b, all...), nil
}

// decode reads a payload of kind P: the task type must match, unknown fields
// and trailing data are refused, and required fields must be set. Every
// error wraps asynq.SkipRetry.
func decode[P Payload](t *asynq.Task) (P, error) {
	var p P
	if t == nil {
		return p, fmt.Errorf("jobs: decode %s: nil task: %w", p.Kind(), asynq.SkipRetry)
	}
	if t.Type() != p.Kind() {
		return p, fmt.Errorf("jobs: decode %s: task type is %q: %w", p.Kind(), t.Type(), asynq.SkipRetry)
	}
	dec := json.NewDecoder(bytes.NewReader(t.Payload()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("jobs: decode %s payload: %w: %w", p.Kind(), err, asynq.SkipRetry)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return p, fmt.Errorf("jobs: decode %s payload: trailing data after the JSON object: %w", p.Kind(), asynq.SkipRetry)
	}
	if err := p.validate(); err != nil {
		return p, fmt.Errorf("jobs: decode %s payload: %w: %w", p.Kind(), err, asynq.SkipRetry)
	}
	return p, nil
}

func need(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", field)
	}
	return nil
}

// RunOf returns the id of the run a threadmill task belongs to, whichever
// its kind; an error for a task of another kind or a malformed payload.
func RunOf(t *asynq.Task) (string, error) {
	var p Payload
	var err error
	switch t.Type() {
	case KindRunStart:
		p, err = DecodeRunStart(t)
	case KindItem:
		p, err = DecodeItem(t)
	case KindAdvance:
		p, err = DecodeAdvance(t)
	case KindFinalize:
		p, err = DecodeFinalize(t)
	default:
		return "", fmt.Errorf("jobs: task type %q is not a threadmill run task", t.Type())
	}
	if err != nil {
		return "", err
	}
	return p.Run(), nil
}
