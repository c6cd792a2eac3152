package runstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits shared by every worker through Redis. Limiter keys are per pipeline
// (name), so concurrent runs of one pipeline share its limits; the pause is
// fleet-wide, because a 429 speaks for the whole API, not for one item.

// Pause holds back every worker's API requests for d (a 429's Retry-After).
// An existing longer pause is kept.
func (s *Store) Pause(ctx context.Context, d time.Duration) error {
	_, err := s.PauseFor(ctx, PauseRequest{Wait: d, Asked: d})
	return err
}

// PauseRequest is an answer of the API that asked the fleet to wait.
type PauseRequest struct {
	// Wait is how long the fleet pauses: the Retry-After, capped.
	Wait time.Duration
	// Asked is the Retry-After the API sent, before the cap.
	Asked time.Duration
	// Status is the HTTP status of the answer (429, 503); 0 when unknown.
	Status int
}

// PauseFor extends the fleet-wide pause to p.Wait from now (an existing
// longer pause is kept) and reports whether this call started a pause
// (none was in effect) or extended one by more than a second, so that a
// pause is logged once however many answers asked for it.
func (s *Store) PauseFor(ctx context.Context, p PauseRequest) (started bool, err error) {
	if p.Wait <= 0 {
		return false, nil
	}
	ms := max(p.Wait.Milliseconds(), 1)
	n, err := scriptPause.Run(ctx, s.rdb, []string{s.pauseKey()}, ms, p.Status, p.Asked.Milliseconds()).Int()
	if err != nil {
		return false, wrap("set fleet pause", "", err)
	}
	return n > 0, nil
}

// Paused returns how long the fleet-wide pause still lasts (0 when none).
func (s *Store) Paused(ctx context.Context) (time.Duration, error) {
	d, err := s.rdb.PTTL(ctx, s.pauseKey()).Result()
	if err != nil {
		return 0, wrap("read fleet pause", "", err)
	}
	return max(d, 0), nil
}

// PauseState is the fleet-wide pause in effect.
type PauseState struct {
	// Until is when the pause ends.
	Until time.Time
	// Left is the time left at the moment it was read.
	Left time.Duration
	// Status is the HTTP status of the answer that set it (0 when unknown).
	Status int
	// Asked is the Retry-After the API sent; Granted the pause it set, which
	// is shorter when the worker's cap (worker.Config.MaxRetryAfter) applied.
	Asked, Granted time.Duration
}

// Capped reports whether the API asked for a longer wait than the pause.
func (p PauseState) Capped() bool { return p.Asked > p.Granted }

// MarshalJSON writes the pause with its durations in milliseconds:
// {"until", "left_ms", "status", "asked_ms", "granted_ms", "capped"}.
func (p PauseState) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Until   time.Time `json:"until"`
		Left    int64     `json:"left_ms"`
		Status  int       `json:"status,omitempty"`
		Asked   int64     `json:"asked_ms"`
		Granted int64     `json:"granted_ms"`
		Capped  bool      `json:"capped"`
	}{p.Until, p.Left.Milliseconds(), p.Status, p.Asked.Milliseconds(), p.Granted.Milliseconds(), p.Capped()})
}

// PauseInfo returns the fleet-wide pause in effect, or nil when none.
func (s *Store) PauseInfo(ctx context.Context) (*PauseState, error) {
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, s.pauseKey())
	ttl := pipe.PTTL(ctx, s.pauseKey())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("read fleet pause", "", err)
	}
	left := ttl.Val()
	if get.Err() != nil || left <= 0 {
		return nil, nil
	}
	p := &PauseState{Left: left, Until: time.Now().Add(left)}
	// "<status> <asked ms> <granted ms> <until ms>"; an older worker wrote "1".
	if f := strings.Fields(get.Val()); len(f) == 4 {
		p.Status = atoi(f[0])
		p.Asked = time.Duration(atoi64(f[1])) * time.Millisecond
		p.Granted = time.Duration(atoi64(f[2])) * time.Millisecond
		p.Until = time.UnixMilli(atoi64(f[3]))
	}
	return p, nil
}

// Adaptive request rate. When the API answers 429 (or 503 with
// Retry-After), the fleet's request rate to that API server is cut
// (multiplicative decrease) and then grows back (as TCP CUBIC's window:
// quickly to the rate that was cut, slowly around it, then faster beyond
// it); requests go through a shared GCRA at that rate. The state
// lives in one hash per API server (its base URL): the server's limit is
// shared by every pipeline that sends to it, so one pipeline's 429 slows
// all of them, and their sum, not each one, converges on the limit. The
// hash expires after a quiet period without 429s, which turns the adaptive
// limiter off: until the next 429 requests cost no round trip for it.

// Defaults of AdaptiveParams.
const (
	DefaultAdaptBeta    = 0.7
	DefaultAdaptRecover = 5 * time.Second
	DefaultAdaptMinRate = 0.2
	DefaultAdaptWindow  = time.Second
	DefaultAdaptQuiet   = 30 * time.Second
	DefaultAdaptHorizon = 500 * time.Millisecond
)

// AdaptiveParams tune the adaptive request rate. Zero values take the
// defaults.
type AdaptiveParams struct {
	// Beta multiplies the rate at a cut: the rate when the API said no
	// becomes Beta times that. Default 0.7.
	Beta float64
	// Recover is the time the rate takes to grow back to the rate that was
	// cut; it then probes above it, faster and faster. Default 5s.
	Recover time.Duration
	// MinRate is the lowest rate, in requests per second. Default 0.2.
	MinRate float64
	// Window is the shortest time between two cuts: the 429s of one
	// overload (requests already sent when the first one came back) count
	// once. Default 1s.
	Window time.Duration
	// Quiet is how long the limiter stays engaged after the last cut.
	// Default 30s.
	Quiet time.Duration
	// Horizon is how far ahead a request may reserve its slot; a request
	// behind a longer queue asks again later. Default 500ms.
	Horizon time.Duration
}

func (p AdaptiveParams) withDefaults() AdaptiveParams {
	p.Beta = cmp.Or(p.Beta, DefaultAdaptBeta)
	p.Recover = cmp.Or(p.Recover, DefaultAdaptRecover)
	p.MinRate = cmp.Or(p.MinRate, DefaultAdaptMinRate)
	p.Window = cmp.Or(p.Window, DefaultAdaptWindow)
	p.Quiet = cmp.Or(p.Quiet, DefaultAdaptQuiet)
	p.Horizon = cmp.Or(p.Horizon, DefaultAdaptHorizon)
	return p
}

// Adaptive is the adaptive limiter of one API server.
type Adaptive struct {
	s      *Store
	key    string
	sent   string
	params AdaptiveParams
}

// Adaptive returns the adaptive limiter of the API server at baseURL.
func (s *Store) Adaptive(baseURL string, p AdaptiveParams) *Adaptive {
	return &Adaptive{s: s, key: s.adaptKey(baseURL), sent: s.adaptKey(baseURL) + ":sent", params: p.withDefaults()}
}

// Params returns the limiter's parameters, defaults filled in.
func (a *Adaptive) Params() AdaptiveParams { return a.params }

// Cut is the outcome of Adaptive.Cut.
type Cut struct {
	// Cut is true when the rate was lowered; false when another cut was
	// made less than Window ago (the same overload).
	Cut bool
	// Rate is the rate now, in requests per second.
	Rate float64
	// Engaged is true when this cut turned the limiter on.
	Engaged bool
}

// Cut lowers the fleet's request rate to the server after an answer that
// asked to slow down. unsent is the caller's requests of the current second
// that it has not yet added with Tick.
func (a *Adaptive) Cut(ctx context.Context, unsent int64) (Cut, error) {
	p := a.params
	res, err := scriptAdaptCut.Run(ctx, a.s.rdb, []string{a.key, a.sent},
		p.Beta, p.Recover.Seconds(), p.MinRate, p.Window.Microseconds(), p.Quiet.Milliseconds(), unsent).Slice()
	if err != nil {
		return Cut{}, wrap("cut adaptive rate", "", err)
	}
	return Cut{Cut: toInt(res[0]) == 1, Rate: float64(toInt(res[1])) / 1000, Engaged: toInt(res[0]) == 1 && toInt(res[2]) == 0}, nil
}

// Grant is the outcome of Adaptive.Gate.
type Grant struct {
	// Granted: send after Wait. Otherwise ask again after Wait.
	Granted bool
	Wait    time.Duration
	// Engaged is false when the adaptive limiter is off (only the pause
	// and the pipeline's limit applied).
	Engaged bool
	// Paused: the fleet-wide pause holds the request back; Wait is its
	// time left.
	Paused bool
}

// Gate asks for a request slot: it honours the fleet-wide pause, the
// pipeline's requests-per-minute limit (when > 0; GCRA with a burst of one,
// so any window of T seconds holds at most requestsPerMinute·T/60 + 1
// requests) and the adaptive rate while it is engaged, in one round trip.
// A granted slot is reserved: the caller sleeps Wait, then sends; a caller
// that gives up meanwhile wastes it.
func (a *Adaptive) Gate(ctx context.Context, pipeline string, requestsPerMinute int) (Grant, error) {
	interval := int64(0)
	if requestsPerMinute > 0 {
		interval = time.Minute.Microseconds() / int64(requestsPerMinute)
	}
	p := a.params
	res, err := scriptAdaptGate.Run(ctx, a.s.rdb, []string{a.s.pauseKey(), a.s.reqLimitKey(pipeline), a.key},
		interval, p.Beta, p.Recover.Seconds(), p.MinRate, p.Horizon.Microseconds()).Slice()
	if err != nil {
		return Grant{}, wrap("adaptive rate limit", "", err)
	}
	return Grant{Wait: time.Duration(toInt(res[0])) * time.Microsecond, Granted: toInt(res[1]) == 1, Engaged: toInt(res[2]) == 1, Paused: toInt(res[3]) == 1}, nil
}

// PaceState is what a worker's periodic tick learns.
type PaceState struct {
	// Pause is the fleet-wide pause left.
	Pause time.Duration
	// Engaged is how long the adaptive limiter stays on without another
	// cut (0: off).
	Engaged time.Duration
	// Rate is the adaptive rate in requests per second (0: off).
	Rate float64
}

// Tick adds the worker's requests since its last tick to the fleet's count
// (Cut starts from it) and reads the pause and the adaptive state.
func (a *Adaptive) Tick(ctx context.Context, sent int64) (PaceState, error) {
	p := a.params
	res, err := scriptPaceTick.Run(ctx, a.s.rdb, []string{a.s.pauseKey(), a.key, a.sent},
		sent, p.Beta, p.Recover.Seconds(), p.MinRate).Slice()
	if err != nil {
		return PaceState{}, wrap("read pacing state", "", err)
	}
	return PaceState{
		Pause:   time.Duration(toInt(res[0])) * time.Millisecond,
		Engaged: time.Duration(toInt(res[1])) * time.Millisecond,
		Rate:    float64(toInt(res[2])) / 1000,
	}, nil
}

// UncountAttempt takes back the attempt counted when an item's delivery
// began (BeginItem), for a delivery that only waited because the API asked
// it to: such waits do not use up an item's attempts.
func (s *Store) UncountAttempt(ctx context.Context, runID, step, key string) error {
	err := scriptUncountAttempt.Run(ctx, s.rdb, []string{s.ckptKey(runID, step, key)}).Err()
	return wrap("uncount attempt", runID, err)
}

// AcquireTokens reserves n tokens on the pipeline's shared tokens-per-minute
// limiter and waits until they are available (a minute's worth may be used
// at once). Settle corrects the reservation with the real usage.
func (s *Store) AcquireTokens(ctx context.Context, pipeline string, tokensPerMinute int, n int64) (time.Duration, error) {
	if tokensPerMinute <= 0 || n <= 0 {
		return 0, nil
	}
	interval := float64(time.Minute.Microseconds()) / float64(tokensPerMinute)
	res, err := scriptTokens.Run(ctx, s.rdb, []string{s.tokLimitKey(pipeline)}, interval, tokensPerMinute, n, 0).Int64()
	if err != nil {
		return 0, wrap("token rate limit", "", err)
	}
	wait := time.Duration(res) * time.Microsecond
	return wait, sleep(ctx, wait)
}

// SettleTokens corrects a tokens-per-minute reservation by delta (real usage
// minus the reserved estimate; negative gives tokens back).
func (s *Store) SettleTokens(ctx context.Context, pipeline string, tokensPerMinute int, delta int64) error {
	if tokensPerMinute <= 0 || delta == 0 {
		return nil
	}
	interval := float64(time.Minute.Microseconds()) / float64(tokensPerMinute)
	_, err := scriptTokens.Run(ctx, s.rdb, []string{s.tokLimitKey(pipeline)}, interval, tokensPerMinute, delta, 1).Result()
	return wrap("settle token rate limit", "", err)
}

// Lease is a slot of a pipeline's in-flight limit. It expires unless
// renewed, so a worker that dies does not keep its slot.
type Lease struct {
	s        *Store
	key      string
	id       string
	ttl      time.Duration
	stop     chan struct{}
	ended    chan struct{}
	stopOnce sync.Once
	released atomic.Bool
}

// newLease returns the lease of a slot just taken and starts renewing it.
func (s *Store) newLease(key, id string, ttl time.Duration) *Lease {
	l := &Lease{s: s, key: key, id: id, ttl: ttl, stop: make(chan struct{}), ended: make(chan struct{})}
	go l.renew()
	return l
}

// AcquireSlot waits for one of the limit in-flight slots of pipeline and
// returns its lease, renewed in the background until Release. id names the
// holder (unique per item attempt).
func (s *Store) AcquireSlot(ctx context.Context, pipeline string, limit int, id string, ttl time.Duration) (*Lease, error) {
	return s.AcquireSlotWithin(ctx, pipeline, limit, id, ttl, 0)
}

// AcquireSlotWithin is AcquireSlot that gives up after hold (0: never) and
// then returns a nil lease and no error.
func (s *Store) AcquireSlotWithin(ctx context.Context, pipeline string, limit int, id string, ttl, hold time.Duration) (*Lease, error) {
	key := s.inflightKey(pipeline)
	backoff := 5 * time.Millisecond
	var deadline time.Time
	if hold > 0 {
		deadline = time.Now().Add(hold)
	}
	for {
		ok, err := scriptAcquireSlot.Run(ctx, s.rdb, []string{key}, limit, id, ttl.Milliseconds()).Int()
		if err != nil {
			return nil, wrap("acquire in-flight slot", "", err)
		}
		if ok == 1 {
			return s.newLease(key, id, ttl), nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return nil, nil
		}
		if err := sleep(ctx, backoff); err != nil {
			return nil, err
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

func (l *Lease) renew() {
	defer close(l.ended)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
			_ = scriptRenewSlot.Run(ctx, l.s.rdb, []string{l.key}, l.id, l.ttl.Milliseconds()).Err()
			cancel()
		}
	}
}

// stopRenewal stops renewing the lease and waits for the renewer to end; it
// reports false once the slot has been given back.
func (l *Lease) stopRenewal() bool {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.ended
	return !l.released.Load()
}

// Released reports whether the slot was given back (by Release or by
// RecordAndRelease); a nil lease reports true.
func (l *Lease) Released() bool { return l == nil || l.released.Load() }

// Release gives the slot back. Calling it again, or after
// RecordAndRelease gave the slot back, does nothing.
func (l *Lease) Release(ctx context.Context) error {
	if !l.stopRenewal() {
		return nil
	}
	if err := l.s.rdb.ZRem(ctx, l.key, l.id).Err(); err != nil {
		return wrap("release in-flight slot", "", err)
	}
	l.released.Store(true)
	return nil
}
