package embedded

import (
	"net"
	"sync"
	"time"
)

// outputBufferedConn gives a miniredis connection what a real Redis has: an
// output buffer that grows instead of blocking. miniredis writes (and
// flushes) each reply before it reads the next command, while a client that
// pipelines writes every command before it reads any reply. With a blocking
// socket the two wait for each other as soon as the replies fill the
// socket's buffer (a few hundred small replies on a unix socket): a large
// pipeline then hangs until a timeout. Write here queues the bytes and
// returns; one goroutine per connection sends them in order.
type outputBufferedConn struct {
	net.Conn

	mu      sync.Mutex
	ready   *sync.Cond
	queue   [][]byte
	closed  bool
	werr    error
	stopped chan struct{}
}

func newOutputBufferedConn(c net.Conn) *outputBufferedConn {
	b := &outputBufferedConn{Conn: c, stopped: make(chan struct{})}
	b.ready = sync.NewCond(&b.mu)
	go b.send()
	return b
}

// Write queues a copy of p; it fails only after an earlier send failed or
// the connection was closed.
func (b *outputBufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.werr != nil {
		return 0, b.werr
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	b.queue = append(b.queue, append([]byte(nil), p...))
	b.ready.Signal()
	return len(p), nil
}

// send writes the queued chunks in order until the connection closes.
func (b *outputBufferedConn) send() {
	defer close(b.stopped)
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closed {
			b.ready.Wait()
		}
		if len(b.queue) == 0 { // closed and drained
			b.mu.Unlock()
			return
		}
		chunks := b.queue
		b.queue = nil
		b.mu.Unlock()
		for _, c := range chunks {
			if _, err := b.Conn.Write(c); err != nil {
				b.mu.Lock()
				b.werr = err
				b.queue = nil
				b.mu.Unlock()
				_ = b.Conn.Close() // the peer is gone; let the reader see it too
				return
			}
		}
	}
}

// Close sends what is queued, then closes the connection.
func (b *outputBufferedConn) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.ready.Signal()
	b.mu.Unlock()
	select {
	case <-b.stopped: // everything queued was sent
	case <-time.After(closeGrace): // the peer does not read: give up on it
	}
	err := b.Conn.Close() // also ends a send blocked on the peer
	<-b.stopped
	return err
}

// closeGrace bounds how long Close waits for queued replies to be sent.
const closeGrace = time.Second
