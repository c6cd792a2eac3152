package runstore

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Limits shared by every worker through Redis. Limiter keys are per pipeline
// (name), so concurrent runs of one pipeline share its limits; the pause is
// fleet-wide, because a 429 speaks for the whole API, not for one item.

// Pause holds back every worker's API requests for d (a 429's Retry-After).
// An existing longer pause is kept.
func (s *Store) Pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	_, err := scriptPause.Run(ctx, s.rdb, []string{s.pauseKey()}, d.Milliseconds()).Result()
	return wrap("set fleet pause", "", err)
}

// Paused returns how long the fleet-wide pause still lasts (0 when none).
func (s *Store) Paused(ctx context.Context) (time.Duration, error) {
	d, err := s.rdb.PTTL(ctx, s.pauseKey()).Result()
	if err != nil {
		return 0, wrap("read fleet pause", "", err)
	}
	return max(d, 0), nil
}

// AcquireRequest waits until an API request of pipeline may be sent: until
// the fleet-wide pause is over and, when requestsPerMinute > 0, until the
// pipeline's shared rate limiter (GCRA with a burst of one, so requests are
// evenly spaced: any window of T seconds holds at most
// requestsPerMinute·T/60 + 1 of them) grants it. Grants are taken, not
// reserved ahead, so a caller that gives up frees nothing and wastes
// nothing. It returns the time spent waiting.
func (s *Store) AcquireRequest(ctx context.Context, pipeline string, requestsPerMinute int) (time.Duration, error) {
	start := time.Now()
	interval := int64(0)
	if requestsPerMinute > 0 {
		interval = time.Minute.Microseconds() / int64(requestsPerMinute)
	}
	for {
		res, err := scriptGate.Run(ctx, s.rdb, []string{s.pauseKey(), s.reqLimitKey(pipeline)}, interval).Slice()
		if err != nil {
			return time.Since(start), wrap("rate limit", "", err)
		}
		if toInt(res[1]) == 1 {
			return time.Since(start), nil
		}
		wait := time.Duration(toInt(res[0])) * time.Microsecond
		// A little jitter spreads the callers that wait for the same slot.
		wait += time.Duration(rand.Int64N(int64(wait/10) + 1))
		if err := sleep(ctx, wait); err != nil {
			return time.Since(start), err
		}
	}
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
	key := s.inflightKey(pipeline)
	backoff := 5 * time.Millisecond
	for {
		ok, err := scriptAcquireSlot.Run(ctx, s.rdb, []string{key}, limit, id, ttl.Milliseconds()).Int()
		if err != nil {
			return nil, wrap("acquire in-flight slot", "", err)
		}
		if ok == 1 {
			return s.newLease(key, id, ttl), nil
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
