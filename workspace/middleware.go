package workspace

import (
	"fmt"
	"net/http"
	"time"
)

// WithTransport returns a copy of the client whose requests go through
// wrap(rt), where rt is the client's current transport: a middleware that
// paces, observes or rejects every request the client sends, including each
// page of a listing, each poll of WaitInteraction and each stream. The copy
// shares the connection pool of c; c itself is unchanged.
func (c *Client) WithTransport(wrap func(http.RoundTripper) http.RoundTripper) *Client {
	cp := *c
	hc := *c.http
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = wrap(base)
	cp.http = &hc
	return &cp
}

// WithLagGrace sets how long WaitInteraction keeps polling an interaction
// that answers 404 (default DefaultLagGrace; 0 fails on the first 404). A
// 404 right after the 201 that created an interaction is replica lag until
// proven otherwise: a reader served by a replica that has not seen the
// write yet. After the grace the 404 is returned, and the caller should look
// the interaction up by its correlation id before creating another.
func WithLagGrace(d time.Duration) Option {
	return func(c *Client) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("WithLagGrace: negative duration %s", d))
			return
		}
		c.lagGrace = d
	}
}
