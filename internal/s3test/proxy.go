package s3test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Faults says what a Proxy does to the requests it forwards. Rates are
// fractions of requests in [0, 1], drawn independently per request.
type Faults struct {
	// Error5xx answers with 503 SlowDown or 500 InternalError without
	// forwarding.
	Error5xx float64
	// Reset closes the connection (TCP RST) before any answer.
	Reset float64
	// CutBody forwards, then cuts the connection halfway through the body.
	CutBody float64
	// DelayRate delays that fraction of requests by Delay before forwarding.
	DelayRate float64
	Delay     time.Duration
	// Hang holds every request without answering until the client gives
	// up or the proxy closes: a dead endpoint that still accepts connections.
	Hang bool
	// CapRange forwards that fraction of ranged GETs asking for only the
	// first half of the range (at least one byte): the client gets an
	// honest but shorter 206, as from a gateway that caps range sizes.
	CapRange float64
}

// ProxyStats counts what a Proxy did.
type ProxyStats struct {
	Requests, Errors5xx, Resets, Cuts, Delays, Hangs, Caps int64
	Conns                                                  int64 // client connections accepted
}

// Proxy is a reverse proxy on a loopback port that injects faults into the
// traffic to an S3 server. It forwards the Host header unchanged, so SigV4
// signatures made for the proxy's address stay valid.
type Proxy struct {
	URL string // http://127.0.0.1:PORT

	srv  *httptest.Server
	rp   *httputil.ReverseProxy
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand

	requests, errs, resets, cuts, delays, hangs, caps, conns atomic.Int64
}

// NewProxy starts a proxy to target (a URL such as Server.Endpoint) with
// the given faults and a fixed random seed; it is closed when the test ends.
func NewProxy(t testing.TB, target string, f Faults, seed uint64) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("s3test: proxy target %q: %v", target, err)
	}
	p := &Proxy{faults: f, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), done: make(chan struct{})}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.ErrorLog = nil
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			p.conns.Add(1)
		}
	}
	p.srv.Start()
	p.URL = p.srv.URL
	t.Cleanup(p.Close)
	return p
}

// SetFaults changes the faults from the next request on.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{
		Requests: p.requests.Load(), Errors5xx: p.errs.Load(), Resets: p.resets.Load(),
		Cuts: p.cuts.Load(), Delays: p.delays.Load(), Hangs: p.hangs.Load(), Caps: p.caps.Load(), Conns: p.conns.Load(),
	}
}

// Close stops the proxy, releasing hanging requests.
func (p *Proxy) Close() {
	p.once.Do(func() {
		close(p.done)
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
}

type decision struct {
	err5xx, reset, cut, delay bool
	hang, capRange            bool
	d                         time.Duration
}

func (p *Proxy) decide() decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	var d decision
	d.hang = f.Hang
	d.err5xx = p.rng.Float64() < f.Error5xx
	d.reset = p.rng.Float64() < f.Reset
	d.cut = p.rng.Float64() < f.CutBody
	d.delay = p.rng.Float64() < f.DelayRate
	d.capRange = p.rng.Float64() < f.CapRange
	d.d = f.Delay
	return d
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	d := p.decide()
	switch {
	case d.hang:
		p.hangs.Add(1)
		select {
		case <-r.Context().Done():
		case <-p.done:
		}
		return
	case d.reset:
		p.resets.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // close with RST, not FIN
				}
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case d.err5xx:
		p.errs.Add(1)
		code, status := "SlowDown", http.StatusServiceUnavailable
		if p.requests.Load()%2 == 0 {
			code, status = "InternalError", http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by s3test proxy</Message></Error>`, code)
		return
	}
	if d.delay {
		p.delays.Add(1)
		select {
		case <-time.After(d.d):
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		}
	}
	if d.capRange && r.Method == http.MethodGet && r.Header.Get("Range") != "" {
		w = &capWriter{ResponseWriter: w, caps: &p.caps}
	}
	if d.cut && r.Method == http.MethodGet {
		p.cuts.Add(1)
		w = &cutWriter{ResponseWriter: w}
	}
	p.rp.ServeHTTP(w, r)
}

// cutWriter passes the headers and about half the body, then aborts the
// connection: the client sees a body shorter than its Content-Length.
type cutWriter struct {
	http.ResponseWriter
	limit, written int64
}

// Unwrap lets http.ResponseController reach the real writer (to flush).
func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *cutWriter) WriteHeader(status int) {
	if n := c.Header().Get("Content-Length"); n != "" {
		fmt.Sscan(n, &c.limit)
	}
	c.limit /= 2
	c.ResponseWriter.WriteHeader(status)
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if c.written+int64(len(b)) > c.limit {
		n, _ := c.ResponseWriter.Write(b[:max(0, c.limit-c.written)])
		c.written += int64(n)
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(b)
	c.written += int64(n)
	return n, err
}

// capWriter turns a 206 answer for bytes a-b into an honest answer for
// only the first half of them (Content-Range, Content-Length and body),
// as a gateway that caps range sizes would send.
type capWriter struct {
	http.ResponseWriter
	caps           *atomic.Int64
	limit, written int64
	capped         bool
}

// Unwrap lets http.ResponseController reach the real writer (to flush).
func (c *capWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *capWriter) WriteHeader(status int) {
	var a, b, total int64
	h := c.Header()
	if n, _ := fmt.Sscanf(h.Get("Content-Range"), "bytes %d-%d/%d", &a, &b, &total); status == http.StatusPartialContent && n == 3 && b > a {
		c.capped = true
		c.caps.Add(1)
		c.limit = (b - a + 1) / 2
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, a+c.limit-1, total))
		h.Set("Content-Length", fmt.Sprint(c.limit))
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *capWriter) Write(b []byte) (int, error) {
	if !c.capped {
		return c.ResponseWriter.Write(b)
	}
	keep := max(0, min(int64(len(b)), c.limit-c.written))
	if keep > 0 {
		if _, err := c.ResponseWriter.Write(b[:keep]); err != nil {
			return 0, err
		}
		c.written += keep
	}
	return len(b), nil
}
