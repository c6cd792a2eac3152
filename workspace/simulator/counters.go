package simulator

import (
	"maps"
	"time"
)

// Counters is a snapshot of what the simulator saw and billed. It is served
// as JSON at GET /_sim/counters.
type Counters struct {
	// Requests counts answers by route pattern (e.g.
	// "POST /api/v1/app/chat/validate"; "unmatched" for unknown routes) and
	// status code.
	Requests map[string]map[int]int `json:"requests"`
	// ArtifactsCreated counts artifacts created through the API (POST
	// …/artifact), uploads included; seeded ones are not counted.
	ArtifactsCreated int `json:"artifacts_created"`
	// ThreadsCreated counts created threads.
	ThreadsCreated int `json:"threads_created"`
	// InteractionsCreated counts interactions created (201 answers).
	InteractionsCreated int `json:"interactions_created"`
	// InteractionsCompleted, InteractionsCancelled and InteractionsFailed
	// count interactions by how they ended.
	InteractionsCompleted int `json:"interactions_completed"`
	InteractionsCancelled int `json:"interactions_cancelled"`
	InteractionsFailed    int `json:"interactions_failed"`
	// Correlations counts the interactions created and chats answered per
	// non-empty pgpt.correlation_id: a value above 1 means the same work
	// item was sent twice.
	Correlations map[string]int `json:"correlations"`
	// ChatsAnswered counts successful POST /app/chat answers.
	ChatsAnswered int `json:"chats_answered"`
	// Validations counts POST /app/chat/validate calls that reached the
	// validator; ValidationsFailed those answered 400.
	Validations       int `json:"validations"`
	ValidationsFailed int `json:"validations_failed"`
	// TokensIn and TokensOut sum the usage the simulator billed: finished
	// interactions (cancelled ones with their partial output) and chats.
	TokensIn  int64 `json:"tokens_in"`
	TokensOut int64 `json:"tokens_out"`
	// RateLimited counts 429 answers of the server-side rate limiter.
	RateLimited int `json:"rate_limited"`
	// Faults counts injected faults by kind: "500", "502", "503", "429",
	// "slow", "cut_stream", "interaction_error", "lost_create",
	// "replica_lag", "invalid_json".
	Faults map[string]int `json:"faults"`
	// PerSecond counts /api/v1/app/* requests by the Unix second they
	// arrived in (before rate limiting and faults), for the last hour.
	PerSecond map[int64]int `json:"per_second"`
	// MaxObservedRPS is the largest PerSecond value.
	MaxObservedRPS int `json:"max_observed_rps"`
	// MaxInFlight is the largest number of /api/v1/app/* requests being
	// served at once.
	MaxInFlight int `json:"max_in_flight"`
}

// Total returns the number of answers with the given route pattern, all
// statuses together.
func (c Counters) Total(route string) int {
	n := 0
	for _, v := range c.Requests[route] {
		n += v
	}
	return n
}

// MaxInWindow returns the largest number of /api/v1/app/* requests that
// arrived within any window of the given number of consecutive seconds.
func (c Counters) MaxInWindow(seconds int) int {
	best := 0
	for start := range c.PerSecond {
		n := 0
		for i := range int64(seconds) {
			n += c.PerSecond[start+i]
		}
		best = max(best, n)
	}
	return best
}

// perSecondKept is how many seconds of PerSecond are kept.
const perSecondKept = 3600

type counters struct {
	Counters
	inFlight int
}

func newCounters() counters {
	return counters{Counters: Counters{
		Requests:     map[string]map[int]int{},
		Faults:       map[string]int{},
		PerSecond:    map[int64]int{},
		Correlations: map[string]int{},
	}}
}

// Counters returns a snapshot of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters.Counters
	c.Requests = make(map[string]map[int]int, len(s.counters.Requests))
	for k, v := range s.counters.Requests {
		c.Requests[k] = maps.Clone(v)
	}
	c.Faults = maps.Clone(s.counters.Faults)
	c.PerSecond = maps.Clone(s.counters.PerSecond)
	c.Correlations = maps.Clone(s.counters.Correlations)
	return c
}

// ResetCounters zeroes every counter (requests in flight stay counted).
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	inFlight := s.counters.inFlight
	s.counters = newCounters()
	s.counters.inFlight = inFlight
}

// arrive counts an /api/v1/app/* request arriving; the returned func marks
// it done.
func (s *Server) arrive() func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := time.Now().Unix()
	if _, ok := s.counters.PerSecond[sec]; !ok && len(s.counters.PerSecond) >= perSecondKept {
		for k := range s.counters.PerSecond {
			if k <= sec-perSecondKept {
				delete(s.counters.PerSecond, k)
			}
		}
	}
	s.counters.PerSecond[sec]++
	s.counters.MaxObservedRPS = max(s.counters.MaxObservedRPS, s.counters.PerSecond[sec])
	s.counters.inFlight++
	s.counters.MaxInFlight = max(s.counters.MaxInFlight, s.counters.inFlight)
	return func() {
		s.mu.Lock()
		s.counters.inFlight--
		s.mu.Unlock()
	}
}

func (s *Server) countRequest(route string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.counters.Requests[route]
	if m == nil {
		m = map[int]int{}
		s.counters.Requests[route] = m
	}
	m[status]++
}

func (s *Server) countFault(kind string) {
	s.mu.Lock()
	s.counters.Faults[kind]++
	s.mu.Unlock()
}
