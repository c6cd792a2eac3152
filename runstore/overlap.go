package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/pipelines"
)

// Outcomes of Admit.
const (
	// AdmitCreated: this call recorded the run; it may start now.
	AdmitCreated = "created"
	// AdmitReleased: the run was waiting and this call found every run
	// before it ended; it may start now.
	AdmitReleased = "released"
	// AdmitExists: the run was recorded before and is not waiting; starting
	// it again is harmless (its run:start task id is derived from its id).
	AdmitExists = "exists"
	// AdmitWaiting: the run is recorded, pending, and waits for Blocker and
	// any other run of the pipeline recorded before it (overlap: queue).
	AdmitWaiting = "waiting"
	// AdmitSkipped: no run is recorded: Blocker was active when the run was
	// first asked for (overlap: skip). The decision sticks for the run id's
	// retention, so a second scheduler handling the same fire time, even
	// after Blocker ended, skips it too.
	AdmitSkipped = "skipped"
)

// Admission is what Admit did with a run.
type Admission struct {
	// Outcome is one of the Admit* constants.
	Outcome string
	// First reports whether this call made the decision: it created the run
	// (AdmitCreated, or AdmitWaiting for a new run), released it, or skipped
	// it. A second scheduler handling the same fire time gets false, so that
	// one decision is logged and counted once.
	First bool
	// Blocker is the active run of the same pipeline that holds this one
	// back (AdmitWaiting, AdmitSkipped).
	Blocker string
	// Hash is the content hash the run was recorded with ("" when skipped).
	Hash string
}

// Start reports whether the run may start now: its run:start task should be
// enqueued.
func (a Admission) Start() bool {
	return a.Outcome == AdmitCreated || a.Outcome == AdmitReleased || a.Outcome == AdmitExists
}

// activeKey is the sorted set of a pipeline's runs that may not have ended,
// in the order they were recorded (the score is a strictly increasing Redis
// time in ms). CreateRun and Admit add a run, Finish and Fail remove it,
// and Admit drops the members whose run ended or expired (a crash between a
// run's end and the removal, a run whose keys expired), so a lost removal
// never blocks a pipeline for good. Like every key of the store it expires
// after the retention period, counted from the pipeline's last new run.
func (s *Store) activeKey(pipeline string) string { return s.prefix + "active:{" + pipeline + "}" }

// skipKey marks a run id skipped for overlap; it holds the blocker's id.
func (s *Store) skipKey(id string) string { return s.runKey(id) + ":skipped" }

// scriptAdmit records a run unless the overlap policy holds it back, in one
// atomic step, so two schedulers handling the same fire time at once make
// one decision.
//
// KEYS: run, runs index, active runs of the pipeline, skip marker.
// ARGV: id, name, hash, spec, info, steps, now (ms), created_at, ttl (ms),
// overlap (skip, queue, allow), the prefix of run keys ("<prefix>run:{"),
// the prefix of a cancellation's stop reason.
// Returns {outcome, first (0/1), name, hash, blocker}.
//
// A run waits only for runs recorded before it (lower in the active set),
// so waiting runs can never wait for each other: the oldest live run never
// waits. A canceled run does not hold anyone back, even before its workers
// finalize it: canceling a run stuck forever frees its pipeline.
var scriptAdmit = redis.NewScript(`
local function blocker(mine)
  for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if m == mine then return '' end
    local v = redis.call('HMGET', ARGV[11] .. m .. '}', 'status', 'stop')
    local status, stop = v[1], v[2]
    if status and not ` + luaTerminal() + ` then
      if not (stop and string.sub(stop, 1, #ARGV[12]) == ARGV[12]) then return m end
    else
      redis.call('ZREM', KEYS[3], m)
    end
  end
  return ''
end
local function append()
  local t = redis.call('TIME')
  local score = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= score then score = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[3], score, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[9])
end
local mode = ARGV[10]
if redis.call('HEXISTS', KEYS[1], 'spec') == 1 then
  local name = redis.call('HGET', KEYS[1], 'pipeline') or ''
  local hash = redis.call('HGET', KEYS[1], 'hash') or ''
  local waiting = redis.call('HGET', KEYS[1], 'waiting_for') or ''
  if waiting == '' or name ~= ARGV[2] then return {'exists', 0, name, hash, ''} end
  local b = ''
  if mode ~= 'allow' and redis.call('HGET', KEYS[1], 'status') == 'pending'
      and redis.call('HEXISTS', KEYS[1], 'stop') == 0 then
    if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then append() end
    b = blocker(ARGV[1])
  end
  if b ~= '' then
    if b ~= waiting then redis.call('HSET', KEYS[1], 'waiting_for', b) end
    return {'waiting', 0, name, hash, b}
  end
  redis.call('HDEL', KEYS[1], 'waiting_for')
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
  return {'released', 1, name, hash, ''}
end
local b = ''
if mode ~= 'allow' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return {'skipped', 0, ARGV[2], '', prev} end
  b = blocker('')
  if b ~= '' and mode == 'skip' then
    redis.call('SET', KEYS[4], b, 'PX', ARGV[9])
    return {'skipped', 1, ARGV[2], '', b}
  end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'pipeline', ARGV[2], 'hash', ARGV[3], 'spec', ARGV[4],
  'info', ARGV[5], 'steps', ARGV[6], 'status', 'pending', 'created_at', ARGV[8])
if b ~= '' then redis.call('HSET', KEYS[1], 'waiting_for', b) end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[7]) - tonumber(ARGV[9]))
append()
if b ~= '' then return {'waiting', 1, ARGV[2], ARGV[3], b} end
return {'created', 1, ARGV[2], ARGV[3], ''}
`)

// Admit records a run of p under an overlap policy (pipelines.OverlapSkip,
// OverlapQueue or OverlapAllow; "" is allow) and says whether it may start,
// deciding atomically against the pipeline's active runs (pending, running
// or finalizing):
//
//   - allow: the run is recorded (when new) and may start.
//   - skip: when another run of the pipeline is active, nothing is recorded
//     (AdmitSkipped); the decision sticks for the run id.
//   - queue: when another run is active, the run is recorded pending and
//     waiting (AdmitWaiting, RunState.WaitingFor). Call Admit again later:
//     it releases the run (AdmitReleased) once every run recorded before it
//     has ended. A waiting run that was canceled is released at once, so
//     that a worker finalizes it as canceled.
//
// A canceled run (Cancel) no longer holds other runs back, even while its
// workers are still tearing it down: that is how a run stuck forever is
// cleared out of its pipeline's way.
//
// An existing run that is not waiting is AdmitExists whatever the policy.
// Admit does not compare content hashes: Admission.Hash is the recorded
// one. A run id that belongs to another pipeline is an error.
func (s *Store) Admit(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, overlap string) (Admission, error) {
	if run.ID == "" {
		return Admission{}, errors.New("runstore: admit run: empty run id")
	}
	if p == nil || p.Name == "" {
		return Admission{}, fmt.Errorf("runstore: admit run %s: no pipeline", run.ID)
	}
	switch overlap {
	case "":
		overlap = pipelines.OverlapAllow
	case pipelines.OverlapSkip, pipelines.OverlapQueue, pipelines.OverlapAllow:
	default:
		return Admission{}, fmt.Errorf("runstore: admit run %s: overlap %q is not one of skip, queue, allow", run.ID, overlap)
	}
	spec, err := json.Marshal(p)
	if err != nil {
		return Admission{}, fmt.Errorf("runstore: admit run %s: encode pipeline: %w", run.ID, err)
	}
	info, err := json.Marshal(run)
	if err != nil {
		return Admission{}, fmt.Errorf("runstore: admit run %s: encode run info: %w", run.ID, err)
	}
	steps := make([]string, len(p.Steps))
	for i, st := range p.Steps {
		steps[i] = st.ID
	}
	stepsJSON, _ := json.Marshal(steps)
	now := time.Now()
	res, err := scriptAdmit.Run(ctx, s.rdb,
		[]string{s.runKey(run.ID), s.runsKey(), s.activeKey(p.Name), s.skipKey(run.ID)},
		run.ID, p.Name, p.Hash, spec, info, stepsJSON,
		now.UnixMilli(), fmtTime(now), s.ttlMS(), overlap, s.prefix+"run:{", cancelPrefix).Slice()
	if err != nil {
		return Admission{}, wrap("admit run", run.ID, err)
	}
	if len(res) != 5 {
		return Admission{}, fmt.Errorf("runstore: admit run %s: unexpected reply %v", run.ID, res)
	}
	if name := toString(res[2]); name != p.Name {
		return Admission{}, fmt.Errorf("runstore: run id %s already belongs to pipeline %q, not %q", run.ID, name, p.Name)
	}
	return Admission{
		Outcome: toString(res[0]),
		First:   toInt(res[1]) == 1,
		Hash:    toString(res[3]),
		Blocker: toString(res[4]),
	}, nil
}

// ActiveRuns returns the ids of the pipeline's runs that may not have ended,
// oldest first: the runs an overlap policy waits for. A run that ended
// without being removed (a crash) is listed until the next Admit of the
// pipeline drops it.
func (s *Store) ActiveRuns(ctx context.Context, pipeline string) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.activeKey(pipeline), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("runstore: list active runs of %q: %w", pipeline, err)
	}
	return ids, nil
}

// pipelineOf returns the pipeline name recorded for a run, "" when the run
// is unknown.
func (s *Store) pipelineOf(ctx context.Context, runID string) (string, error) {
	name, err := s.rdb.HGet(ctx, s.runKey(runID), "pipeline").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return name, err
}
