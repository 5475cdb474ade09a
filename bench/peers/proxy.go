package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// Shape is what the proxy does to each request: a first-byte latency and a
// bandwidth cap per response stream, as a remote object store behaves.
type Shape struct {
	Latency   time.Duration // added before each request is forwarded
	Bandwidth float64       // bytes per second per response body; 0: unlimited
}

// String describes the shape for reports.
func (s Shape) String() string {
	if s.Latency == 0 && s.Bandwidth == 0 {
		return "no latency, no cap"
	}
	bw := "no cap"
	if s.Bandwidth > 0 {
		bw = fmt.Sprintf("%.0f MB/s per response", s.Bandwidth/1e6)
	}
	return fmt.Sprintf("%s first-byte latency, %s", s.Latency, bw)
}

// Counts is what went through the proxy since the last Reset.
type Counts struct {
	Requests int64 // every request
	GETs     int64 // GET requests on objects (not listings)
	Bytes    int64 // response body bytes of those GETs
	Lists    int64 // GET requests on buckets (listings)
	Heads    int64
}

// Proxy is an HTTP reverse proxy on a loopback port in front of an S3
// server. It forwards each request unchanged (the Host header too, so
// SigV4 signatures made for the proxy's address stay valid) after the
// shape's latency, streams the response body at most at the shape's
// bandwidth, and counts requests and bytes. The shape can change between
// arms (SetShape); counters are reset per arm.
type Proxy struct {
	URL      string
	upstream *url.URL
	srv      *http.Server
	ln       net.Listener
	client   *http.Client

	latency                             atomic.Int64 // ns
	bandwidth                           atomic.Uint64
	requests, gets, bytes, lists, heads atomic.Int64
}

// StartProxy listens on 127.0.0.1 (a free port) and forwards to upstream.
func StartProxy(upstream string, s Shape) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("proxy upstream %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), upstream: u, ln: ln,
		client: &http.Client{Transport: &http.Transport{
			Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
			DisableCompression: true,
		}}}
	p.SetShape(s)
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetShape changes the latency and bandwidth for later requests.
func (p *Proxy) SetShape(s Shape) {
	p.latency.Store(int64(s.Latency))
	p.bandwidth.Store(uint64(s.Bandwidth))
}

// Reset zeroes the counters.
func (p *Proxy) Reset() {
	for _, c := range []*atomic.Int64{&p.requests, &p.gets, &p.bytes, &p.lists, &p.heads} {
		c.Store(0)
	}
}

// Counts returns the counters.
func (p *Proxy) Counts() Counts {
	return Counts{Requests: p.requests.Load(), GETs: p.gets.Load(), Bytes: p.bytes.Load(),
		Lists: p.lists.Load(), Heads: p.heads.Load()}
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

// isObjectPath tells whether a path-style request path names an object
// (/bucket/key) rather than a bucket (/bucket or /bucket/).
func isObjectPath(path string) bool {
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			return i+1 < len(path)
		}
	}
	return false
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	object := r.Method == http.MethodGet && isObjectPath(r.URL.Path)
	switch {
	case object:
		p.gets.Add(1)
	case r.Method == http.MethodGet:
		p.lists.Add(1)
	case r.Method == http.MethodHead:
		p.heads.Add(1)
	}
	if lat := time.Duration(p.latency.Load()); lat > 0 {
		select {
		case <-time.After(lat):
		case <-r.Context().Done():
			return
		}
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.upstream.Scheme, p.upstream.Host
	out.Host = r.Host // the signature covers the Host the client used
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := p.client.Transport.RoundTrip(out)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := p.copyShaped(w, resp.Body)
	if object {
		p.bytes.Add(n)
	}
}

// copyShaped copies src to w no faster than the bandwidth cap: after each
// chunk it sleeps until the bytes sent so far are due.
func (p *Proxy) copyShaped(w http.ResponseWriter, src io.Reader) (int64, error) {
	bw := float64(p.bandwidth.Load())
	buf := make([]byte, 64<<10)
	fl, _ := w.(http.Flusher)
	start := time.Now()
	var n int64
	for {
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
			if bw > 0 {
				if fl != nil {
					fl.Flush()
				}
				due := time.Duration(float64(n) / bw * float64(time.Second))
				if wait := due - time.Since(start); wait > 0 {
					time.Sleep(wait)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
