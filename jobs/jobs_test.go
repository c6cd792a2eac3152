package jobs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

func sampleItem() jobs.Item {
	mt := 100
	return jobs.Item{RunID: "weekly-2026-07-06", Item: pipelines.Item{
		Key: "summarize/artifact_1", Step: "summarize", Index: 3,
		Artifact:    &pipelines.ArtifactRef{ID: "artifact_1", Name: "TCK-1041.md", Type: "Document"},
		ArtifactIDs: []string{"artifact_1"}, Mode: "thread", Agent: "Default", ThreadPer: "item",
		Requests:        []workspace.ChatRequest{{Messages: []workspace.Message{workspace.UserText("Summarize.")}, MaxTokens: &mt}},
		EstimatedTokens: 103,
	}}
}

func TestRoundTripAndTaskIDs(t *testing.T) {
	cases := []struct {
		payload jobs.Payload
		newTask func() (*asynq.Task, error)
		decode  func(*asynq.Task) (jobs.Payload, error)
		id      string
	}{
		{jobs.RunStart{RunID: "r1"}, func() (*asynq.Task, error) { return jobs.NewRunStart(jobs.RunStart{RunID: "r1"}) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeRunStart(t) }, "r1:start"},
		{sampleItem(), func() (*asynq.Task, error) { return jobs.NewItem(sampleItem()) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeItem(t) }, "weekly-2026-07-06:item:summarize:artifact_1"},
		{jobs.Advance{RunID: "r1", Step: "map"}, func() (*asynq.Task, error) { return jobs.NewAdvance(jobs.Advance{RunID: "r1", Step: "map"}) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeAdvance(t) }, "r1:advance:map"},
		{jobs.FanOut{RunID: "r1", Step: "map", From: 5000, Wait: 2}, func() (*asynq.Task, error) {
			return jobs.NewFanOut(jobs.FanOut{RunID: "r1", Step: "map", From: 5000, Wait: 2})
		},
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeFanOut(t) }, "r1:fanout:map:5000:2"},
		{jobs.Finalize{RunID: "r1"}, func() (*asynq.Task, error) { return jobs.NewFinalize(jobs.Finalize{RunID: "r1"}) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeFinalize(t) }, "r1:finalize"},
	}
	for _, c := range cases {
		t.Run(c.payload.Kind(), func(t *testing.T) {
			task, err := c.newTask()
			if err != nil {
				t.Fatal(err)
			}
			if task.Type() != c.payload.Kind() || c.payload.TaskID() != c.id {
				t.Errorf("type %q, task id %q; want %q, %q", task.Type(), c.payload.TaskID(), c.payload.Kind(), c.id)
			}
			got, err := c.decode(task)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.payload) {
				t.Errorf("round trip: got %+v, want %+v", got, c.payload)
			}
		})
	}
}

func TestDecodeIsStrictAndSkipsRetry(t *testing.T) {
	cases := map[string]struct {
		kind, payload, want string
	}{
		"unknown field":     {jobs.KindRunStart, `{"run_id":"r1","extra":1}`, `unknown field "extra"`},
		"wrong type":        {jobs.KindRunStart, `{"run_id":7}`, "cannot unmarshal number"},
		"missing run id":    {jobs.KindFinalize, `{}`, "run_id is empty"},
		"trailing data":     {jobs.KindFinalize, `{"run_id":"r1"} {"run_id":"r2"}`, "trailing data"},
		"not json":          {jobs.KindAdvance, `run r1`, "invalid character"},
		"missing step":      {jobs.KindAdvance, `{"run_id":"r1"}`, "step is empty"},
		"item without key":  {jobs.KindItem, `{"run_id":"r1","item":{"step":"s","requests":[{"messages":[]}]}}`, "item.key is empty"},
		"item no requests":  {jobs.KindItem, `{"run_id":"r1","item":{"step":"s","key":"k"}}`, "item.requests is empty"},
		"nested unknown":    {jobs.KindItem, `{"run_id":"r1","item":{"step":"s","key":"k","secret":"x"}}`, `unknown field "secret"`},
		"null payload":      {jobs.KindRunStart, `null`, "run_id is empty"},
		"empty payload":     {jobs.KindRunStart, ``, "EOF"},
		"wrong kind":        {jobs.KindFinalize, `{"run_id":"r1"}`, `task type is "run:finalize"`},
		"negative index":    {jobs.KindItem, `{"run_id":"r1","item":{"step":"s","key":"k","index":-1,"requests":[{"messages":[]}]}}`, "index is -1"},
		"array not object":  {jobs.KindRunStart, `[]`, "cannot unmarshal array"},
		"duplicate objects": {jobs.KindRunStart, `{"run_id":"r1"}{}`, "trailing data"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			task := asynq.NewTask(c.kind, []byte(c.payload))
			var err error
			switch {
			case name == "wrong kind":
				_, err = jobs.DecodeRunStart(task)
			case c.kind == jobs.KindRunStart:
				_, err = jobs.DecodeRunStart(task)
			case c.kind == jobs.KindItem:
				_, err = jobs.DecodeItem(task)
			case c.kind == jobs.KindAdvance:
				_, err = jobs.DecodeAdvance(task)
			case c.kind == jobs.KindFinalize:
				_, err = jobs.DecodeFinalize(task)
			}
			if err == nil {
				t.Fatal("decoded without error")
			}
			if !errors.Is(err, asynq.SkipRetry) {
				t.Errorf("error %v does not wrap asynq.SkipRetry", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "jobs: decode") {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestConstructorsRefuseIncompletePayloads(t *testing.T) {
	if _, err := jobs.NewRunStart(jobs.RunStart{}); err == nil || !strings.Contains(err.Error(), "run_id is empty") {
		t.Errorf("NewRunStart without run id: %v", err)
	}
	it := sampleItem()
	it.Item.Requests = nil
	if _, err := jobs.NewItem(it); err == nil || !strings.Contains(err.Error(), "requests is empty") {
		t.Errorf("NewItem without requests: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(jobs.KindItem, []byte(`{"run_id":"r1","item":{"step":"s","key":"k","requests":[{"messages":[]}]}}`))
	f.Add(jobs.KindRunStart, []byte(`{"run_id":"r1"}`))
	f.Add(jobs.KindAdvance, []byte(`{"run_id":"r1","step":"x"}`))
	f.Add(jobs.KindFinalize, []byte(`{"run_id":"r1"} `))
	f.Fuzz(func(t *testing.T, kind string, payload []byte) {
		task := asynq.NewTask(kind, payload)
		for _, decode := range []func(*asynq.Task) (jobs.Payload, error){
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeRunStart(t) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeItem(t) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeAdvance(t) },
			func(t *asynq.Task) (jobs.Payload, error) { return jobs.DecodeFinalize(t) },
		} {
			p, err := decode(task)
			if err != nil {
				if !errors.Is(err, asynq.SkipRetry) {
					t.Fatalf("decode error %v does not skip retry", err)
				}
				continue
			}
			// A payload that decodes re-encodes to a task that decodes the same.
			again, err := reencode(p)
			if err != nil {
				t.Fatalf("decoded %+v but cannot re-encode: %v", p, err)
			}
			a, _ := json.Marshal(again)
			b, _ := json.Marshal(p)
			if string(a) != string(b) {
				t.Fatalf("round trip changed %+v into %+v", p, again)
			}
		}
	})
}

func reencode(p jobs.Payload) (jobs.Payload, error) {
	switch v := p.(type) {
	case jobs.RunStart:
		t, err := jobs.NewRunStart(v)
		if err != nil {
			return nil, err
		}
		return jobs.DecodeRunStart(t)
	case jobs.Item:
		t, err := jobs.NewItem(v)
		if err != nil {
			return nil, err
		}
		return jobs.DecodeItem(t)
	case jobs.Advance:
		t, err := jobs.NewAdvance(v)
		if err != nil {
			return nil, err
		}
		return jobs.DecodeAdvance(t)
	case jobs.Finalize:
		t, err := jobs.NewFinalize(v)
		if err != nil {
			return nil, err
		}
		return jobs.DecodeFinalize(t)
	}
	return nil, fmt.Errorf("unknown payload %T", p)
}

func ExampleNewAdvance() {
	task, err := jobs.NewAdvance(jobs.Advance{RunID: "weekly-2026-07-06", Step: "summarize"})
	if err != nil {
		panic(err)
	}
	p, err := jobs.DecodeAdvance(task)
	if err != nil {
		panic(err)
	}
	fmt.Println(task.Type(), string(task.Payload()))
	fmt.Println(p.TaskID())
	// Output:
	// step:advance {"run_id":"weekly-2026-07-06","step":"summarize"}
	// weekly-2026-07-06:advance:summarize
}
