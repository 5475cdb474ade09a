package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics exports the same numbers as .zenith/stats as Prometheus
// metrics on addr (/metrics), plus Go's pprof handlers (/debug/pprof/) for
// profiling the daemon. It returns a stop function.
func serveMetrics(addr string, w *wiring, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "zenithfs", Name: name, Help: help},
			func() float64 { return f(w.stats()) }))
	}
	gauge := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "zenithfs", Name: name, Help: help},
			func() float64 { return f(w.stats()) }))
	}
	counter("cache_hits_total", "Batch cache hits.", func(s Stats) float64 { return float64(s.Cache.Hits) })
	counter("cache_misses_total", "Batch cache misses.", func(s Stats) float64 { return float64(s.Cache.Misses) })
	counter("cache_evictions_total", "Batch cache evictions.", func(s Stats) float64 { return float64(s.Cache.Evictions) })
	gauge("cache_bytes", "Bytes held by the batch cache.", func(s Stats) float64 { return float64(s.Cache.Bytes) })
	gauge("cache_budget_bytes", "Batch cache budget.", func(s Stats) float64 { return float64(s.Cache.Budget) })
	counter("batch_requests_total", "Batch file opens served.", func(s Stats) float64 { return float64(s.Prefetch.Requests) })
	counter("batches_built_total", "Batches built from sources.", func(s Stats) float64 { return float64(s.Prefetch.Built) })
	counter("prefetch_batches_total", "Batches built ahead of their reader.", func(s Stats) float64 { return float64(s.Prefetch.Prefetched) })
	counter("prefetch_hits_total", "Reads served by read-ahead.", func(s Stats) float64 { return float64(s.Prefetch.PrefetchHits) })
	counter("prefetch_wasted_total", "Read-ahead batches never read.", func(s Stats) float64 { return float64(s.Prefetch.Wasted) })
	counter("prefetch_cancelled_total", "Read-ahead work cancelled.", func(s Stats) float64 { return float64(s.Prefetch.Cancelled) })
	counter("read_errors_total", "Batches that failed to build.", func(s Stats) float64 { return float64(s.Prefetch.Errors) })
	counter("reader_wait_seconds_total", "Time readers waited for batches being built.", func(s Stats) float64 { return s.Prefetch.WaitSeconds })
	counter("uring_reads_total", "Source reads through io_uring.", func(s Stats) float64 { return float64(s.IO.UringReads) })
	counter("pread_reads_total", "Source reads through pread.", func(s Stats) float64 { return float64(s.IO.PreadReads) })
	counter("s3_gets_total", "S3 GET requests.", func(s Stats) float64 {
		var n float64
		for _, x := range s.S3 {
			n += float64(x.GETs)
		}
		return n
	})
	counter("s3_bytes_total", "Bytes fetched from S3.", func(s Stats) float64 {
		var n float64
		for _, x := range s.S3 {
			n += float64(x.BytesFetched)
		}
		return n
	})

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
