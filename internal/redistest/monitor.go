package redistest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// Monitor counts the commands clients send to a Server, by name, through
// Redis's MONITOR: commands that Lua scripts run are left out (an EVALSHA is
// one command, one round trip), as are MONITOR's own. MONITOR slows the
// server down: measure counts and speed in separate runs.
type Monitor struct {
	conn net.Conn
	done chan struct{}

	mu     sync.Mutex
	counts map[string]int
	err    error
}

// Monitor starts counting; it stops with Stop or when the test ends.
func (s *Server) Monitor(t testing.TB) *Monitor {
	t.Helper()
	conn, err := net.Dial("unix", s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 1<<20)
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("redistest: MONITOR answered %q, %v", line, err)
	}
	m := &Monitor{conn: conn, done: make(chan struct{}), counts: map[string]int{}}
	go m.read(r)
	t.Cleanup(func() { m.Stop() })
	return m
}

// read parses lines such as
// `+1700000000.123456 [0 unix:/tmp/redis.sock] "evalsha" "ab12" "3" ...`;
// a script's commands show "[0 lua]".
func (m *Monitor) read(r *bufio.Reader) {
	defer close(m.done)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			m.mu.Lock()
			if !strings.Contains(err.Error(), "use of closed") {
				m.err = err
			}
			m.mu.Unlock()
			return
		}
		_, rest, ok := strings.Cut(line, " [")
		if !ok {
			continue
		}
		src, cmd, ok := strings.Cut(rest, "] \"")
		if !ok || strings.HasSuffix(src, " lua") {
			continue
		}
		name, _, _ := strings.Cut(cmd, "\"")
		m.mu.Lock()
		m.counts[strings.ToLower(name)]++
		m.mu.Unlock()
	}
}

// count is the number of name commands counted so far.
func (m *Monitor) count(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[name]
}

// Stop stops counting and returns the counts by command name.
func (m *Monitor) Stop() (map[string]int, error) {
	_ = m.conn.Close()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.counts))
	for k, v := range m.counts {
		out[k] = v
	}
	if m.err != nil {
		return out, fmt.Errorf("redistest: monitor: %w", m.err)
	}
	return out, nil
}
