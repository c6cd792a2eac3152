package runstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// cancelPrefix starts the stop reason of a canceled run.
const cancelPrefix = "canceled: "

// CancelReason reports whether a run's stop reason (ItemStart.Stop,
// RunState.StopReason) is a cancellation, and the reason given with it.
func CancelReason(stop string) (reason string, canceled bool) {
	return strings.CutPrefix(stop, cancelPrefix)
}

// scriptCancel: KEYS: run. ARGV: stop reason. Returns the run's status
// before the call ("" when the run does not exist). A run that is not
// finished gets the stop reason, replacing a plain stop's.
var scriptCancel = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if not ` + luaTerminal() + ` then
  redis.call('HSET', KEYS[1], 'stop', ARGV[1])
end
return status
`)

// Cancel asks a run to stop for good: workers record the items not yet
// finished as canceled (cancelling the interactions in flight), plan no
// further step and finalize the run as StatusCanceled. It returns the run's
// status when it was called; a finished run is left alone, and canceling
// twice is harmless.
func (s *Store) Cancel(ctx context.Context, runID, reason string) (status string, err error) {
	if strings.TrimSpace(reason) == "" {
		reason = "canceled by request"
	}
	status, err = scriptCancel.Run(ctx, s.rdb, []string{s.runKey(runID)}, cancelPrefix+reason).Text()
	if err != nil {
		return "", wrap("cancel run", runID, err)
	}
	if status == "" {
		return "", fmt.Errorf("%w: %s", ErrNotFound, runID)
	}
	return status, nil
}

// Stops returns the stop reasons of the given runs ("" for a run that is not
// stopping or does not exist), in one round trip.
func (s *Store) Stops(ctx context.Context, runIDs []string) (map[string]string, error) {
	out := make(map[string]string, len(runIDs))
	if len(runIDs) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(runIDs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range runIDs {
			cmds[i] = p.HGet(ctx, s.runKey(id), "stop")
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("runstore: read stop reasons: %w", err)
	}
	for i, id := range runIDs {
		out[id] = cmds[i].Val()
	}
	return out, nil
}
