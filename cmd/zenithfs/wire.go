package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/cache"
	"github.com/zenithfs/zenithfs/prefetch"

	"github.com/zenithfs/zenithfs/dataset"
	zfs "github.com/zenithfs/zenithfs/fs"
	"github.com/zenithfs/zenithfs/internal/lowprio"
	"github.com/zenithfs/zenithfs/internal/thp"
	"github.com/zenithfs/zenithfs/internal/uring"
	"github.com/zenithfs/zenithfs/source"
)

// wiring holds what serve builds before mounting, and closes it after.
type wiring struct {
	datasets []*dataset.Dataset
	batches  zfs.Batches
	cache    *cache.Cache
	prefetch *prefetch.Store
	memfds   *blob.Memfds // cached batches as memfds (--passthrough); nil otherwise
	// peakTotal is the highest RSS + live memfd bytes sampled (memfds only).
	peakTotal atomic.Int64
	// peakParts is what made up peakTotal when it was sampled.
	peakMu    sync.Mutex
	peakParts peakParts
	locals    []*source.Local
	s3s       []*source.S3
	closers   []func()
}

// newLocalStore opens a local store reading through io_uring per
// --io-uring: `on` fails here where the kernel refuses io_uring.
func newLocalStore(dir string, cfg *Config, log *slog.Logger) (*source.Local, error) {
	mode, err := uring.ParseMode(cfg.IOUring)
	if err != nil {
		return nil, fmt.Errorf("--io-uring: %w", err)
	}
	l, err := source.OpenLocal(dir, source.WithIOUring(mode), source.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("--io-uring %s: %w", cfg.IOUring, err)
	}
	return l, nil
}

// wire builds stores and datasets. A dataset whose location is missing or
// unreadable fails the start; one whose content is corrupt is mounted in an
// error state (EIO inside, the reason in .zenith/datasets/NAME) so the
// others are still served.
func wire(ctx context.Context, cfg *Config, log *slog.Logger, workers int, checkEvery time.Duration, progress func(string, int64, int64)) (_ *wiring, err error) {
	w := &wiring{}
	defer func() {
		if err != nil { // stop what was started (the memory sampler, the pool, the cache)
			w.close()
		}
	}()
	// The budget is split: 5/8 for the cache of read batches, 1/4 for
	// prefetched batches not yet read, 1/8 for decoded source segments.
	// Built blocks of block-shuffled views may take up to half of it, lent
	// by the cache of read batches (cache.AddReserved) while they are held.
	// The Go heap limit follows (heapLimit): what the bound
	// (budget + 150 MiB) leaves once the memfd batches and the resident
	// pages outside Go's heap (the binary's) are counted, less headroom
	// for the collector overshooting its soft limit. A limit close to the
	// live heap costs far more than it saves: the collector runs back to
	// back and the runtime hands freed pages back to the kernel only to
	// fault them in again (an epoch on a cache smaller than the dataset
	// took 3× the CPU, bench P3c); the floor of budget/8 + 96 MiB keeps
	// small budgets clear of that.
	segBytes := max(cfg.cacheBytes/8, 16<<20)
	// The heap on huge pages (internal/thp): the budget's worth of address
	// space (at most 1 GiB) mapped and advised before anything touches it.
	// A fresh table epoch (bench/local P3, 320 MiB budget) took 55 k page
	// faults and 2.0 s of daemon CPU on 4 KiB pages; 12 k and 1.3 s with
	// half the budget advised, 2–4 k and 1.1 s with all of it.
	// The sampler's first tick has the watcher advise whatever else the
	// runtime has mapped by then.
	// The heap limit keeps more headroom when the heap is on huge pages.
	var huge *thp.Watcher
	if thp.Available() && !thp.DisabledBy(os.Getenv("GODEBUG")) {
		if _, err := thp.Grow(int(min(cfg.cacheBytes, 1<<30))); err != nil {
			log.Info("Go heap stays on small pages", "err", err)
		} else {
			huge = thp.NewWatcher()
		}
	}
	hugePages := huge != nil
	var limit *heapLimit
	if os.Getenv("GOMEMLIMIT") == "" {
		headroom := limitHeadroom(cfg.cacheBytes, hugePages)
		limit = newHeapLimit(cfg.cacheBytes+memoryMargin-headroom, cfg.cacheBytes/8+96<<20, workers+1, headroom/2, cfg.cacheBytes/4)
	}
	c, err := cache.New(max(cfg.cacheBytes*5/8, 1<<20))
	if err != nil {
		return nil, err
	}
	w.cache = c
	w.closers = append(w.closers, c.Close)
	pending := max(cfg.cacheBytes/4, 8<<20)
	var sealer prefetch.Sealer
	if cfg.passthrough() {
		var onLive func(int64)
		if limit != nil {
			onLive = limit.setMemfds
		}
		w.memfds, sealer = memfdSealer(c.Budget()+pending, onLive, log)
	}
	// A cache that shrinks in a scan (package cache) hands its memory to
	// the heap: its memfds are collected past the smaller share, and the
	// heap limit follows the live memfd bytes. During a scan the limit
	// still counts that share, whatever is live: those memfds come back
	// faster than a heap grown into their room can shrink (bench/peers
	// -full: the blobs' peak passed the bound when the heap took all the
	// memory a scan freed).
	memfds := w.memfds
	scanning := false // under the cache's lock
	c.OnResize(func(max int64, scan bool) {
		if memfds != nil {
			share := max + pending
			memfds.SetLimit(share)
			if limit != nil {
				floor := int64(0)
				if scan {
					floor = share
				}
				limit.setMemfdFloor(floor)
			}
		}
		if scan != scanning {
			scanning = scan
			if scan {
				log.Info("batch cache: batches are not read again before they are evicted (a scan); shrunk to an eighth, the rest to the decoders", "max", max)
			} else {
				log.Info("batch cache: batches are read again; back to its share of the budget", "max", max)
			}
		}
	})
	if w.memfds != nil || limit != nil || huge != nil {
		w.closers = append(w.closers, w.sampleMemory(20*time.Millisecond, limit, huge, log))
	}
	// Building ahead of readers runs at a lower priority than serving
	// them: the prefetch workers and a pool of decoding helpers (one per
	// core) on niced threads, with Ps to spare for FUSE requests.
	// GOMAXPROCS before raising it is Go's count of usable cores (CPU
	// affinity and a container's CPU quota).
	cores := runtime.GOMAXPROCS(0)
	pool := lowprio.New(cores, lowprio.Nice)
	w.closers = append(w.closers, pool.Close)
	// +2: segments read ahead. An S3 dataset reads up to --prefetch + 1
	// ahead at once, but those mostly wait on the network; counting each
	// as busy (GOMAXPROCS 15 on 2 cores) cost the daemon a fifth more CPU
	// per epoch (bench/peers, remote) for no gain.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(lowprio.Procs(cores, workers+pool.Threads()+2))
	}
	lower := func() {
		if err := lowprio.Lower(lowprio.Nice); err != nil {
			log.Debug("prefetch worker keeps its priority", "err", err)
		}
	}
	pf, err := prefetch.New(prefetch.Options{Cache: c, Workers: workers, Depth: cfg.Prefetch,
		PendingBytes: pending, Logger: log, Sealer: sealer, OnWorker: lower})
	if err != nil {
		return nil, err
	}
	w.prefetch, w.batches = pf, pf
	w.closers = append(w.closers, pf.Close)
	for _, dc := range cfg.Datasets {
		loc, err := location(ctx, cfg, dc, log)
		if err != nil {
			return nil, err
		}
		switch s := loc.Store.(type) {
		case *source.Local:
			w.locals = append(w.locals, s)
			w.closers = append(w.closers, func() { s.Close() })
		case *source.S3:
			w.s3s = append(w.s3s, s)
		}
		schema, err := dc.arrowSchema()
		if err != nil {
			return nil, err
		}
		bs := cfg.BatchSize
		if dc.BatchSize > 0 {
			bs = dc.BatchSize
		}
		_, isLocal := loc.Store.(*source.Local)
		d := dataset.New(dc.Name, loc, dataset.Options{
			BatchSize:         bs,
			StateDir:          cfg.StateDir,
			Workers:           workers,
			SegmentCacheBytes: segBytes / int64(len(cfg.Datasets)),
			BlockBytes:        cfg.cacheBytes / 2 / int64(len(cfg.Datasets)),
			Reserve:           c.AddReserved,
			CheckInterval:     checkEvery,
			VerifyAfterBuild:  isLocal,
			Decode:            pool.Each,
			Background:        func(f func()) { go func() { lower(); f() }() },
			ReadAhead:         readAhead(cfg, isLocal),
			CoalesceBytes:     coalesce(isLocal),
			Logger:            log,
			Progress:          progress,
		})
		d.Opts().Format.Schema = schema
		if _, err := d.List(ctx); err != nil {
			return nil, fmt.Errorf("dataset %s (%s): %w", dc.Name, dc.URI, err)
		}
		if err := d.Load(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if unreadable(err) {
				return nil, fmt.Errorf("dataset %s (%s): %w", dc.Name, dc.URI, err)
			}
			log.Error("dataset cannot be served", "dataset", dc.Name, "err", err)
		}
		w.datasets = append(w.datasets, d)
	}
	return w, nil
}

// unreadable reports whether a dataset's first load failed because the
// daemon may not read a source (permissions): a start-up error, like a
// missing source, and not a corrupt dataset to serve with EIO.
func unreadable(err error) bool {
	return errors.Is(err, iofs.ErrPermission)
}

// readAhead is how many source segments of a dataset are decoded ahead of
// a reader going through it in order (dataset.Options.ReadAhead): one for
// local files, which arrive as fast as they decode; for S3, where every
// read waits on a round trip first, as many as the batches prefetched
// ahead of a reader (--prefetch), so that that many fetches are in flight
// instead of one per prefetch worker. The segment cache's budget still
// bounds them.
func readAhead(cfg *Config, local bool) int {
	if local {
		return 1
	}
	return max(cfg.Prefetch, 1)
}

// s3Span is the size of the spans an S3 dataset read in order is fetched
// through (dataset.Options.CoalesceBytes): one GET for several row groups
// of a typical table (~1 MB each), yet small enough that the spans a
// reader's --prefetch window covers are several GETs in flight.
const s3Span = 4 << 20

// coalesce is dataset.Options.CoalesceBytes: none for local files, whose
// reads cost no round trip.
func coalesce(local bool) int64 {
	if local {
		return 0
	}
	return s3Span
}

// memoryMargin is what the daemon may hold over --cache-size: the issue's
// bound.
const memoryMargin = 150 << 20

// limitHeadroom is kept under the bound for the collector, which lets the
// heap pass its soft limit while a cycle runs, by more the bigger the heap
// (~10 MiB at a 512 MiB budget under 16 concurrent segment reads, bench/peers
// P8). Each MiB taken from a small budget's heap costs CPU (bench/local P3c:
// 16 MiB at an 80 MiB budget, 10 % more per epoch). A heap on huge pages
// (internal/thp) needs 8 MiB more: a page touched anywhere makes 2 MiB
// resident, so the heap's spans the runtime holds but has not written no
// longer stay out of the RSS (blobs P3c at a 64 MiB budget peaked 4–8 MiB
// higher, up to 215 MiB of the 214 MiB bound).
func limitHeadroom(budget int64, hugePages bool) int64 {
	h := budget/64 + 4<<20
	if hugePages {
		h += 8 << 20
	}
	return h
}

// heapLimit keeps the Go heap's soft limit at total minus the bytes held
// in memfds and the resident pages outside Go's heap (the binary's text,
// shared libraries), never below floor: batches cached as memfds and the
// binary are outside the heap but inside the bound.
//
// It also keeps room for the memfds of the batches being built: a build
// holds its batch on the heap until it copies it into a memfd, and the
// heap gives that memory back only after a collection, so while builders
// batches are built at once, up to builders × the largest batch file are
// briefly counted twice. With 16 workers that was what took the peak over
// the bound (bench/peers P8: heap at its limit when a burst of memfds
// landed). Half the collector's headroom (limitHeadroom) absorbs a small
// burst, so only what passes it is kept: with 2 workers and 1.3 MiB
// batches nothing (keeping 4 MiB more at an 80 MiB budget cost bench/local
// P3c 7 % of its throughput), with 16 workers 16 MiB.
type heapLimit struct {
	mu                   sync.Mutex
	total, floor         int64
	builders             int64 // batches built at once (workers, and a reader's own miss)
	maxReserve           int64 // the most kept for them (one huge batch must not pin the limit at its floor)
	absorbed             int64 // what of a burst the headroom absorbs
	memfds, other, limit int64
	memfdFloor           int64 // the memfds counted at least (setMemfdFloor)
	largest              int64 // the largest batch file made so far
}

func newHeapLimit(total, floor int64, builders int, absorbed, maxReserve int64) *heapLimit {
	h := &heapLimit{total: total, floor: floor, builders: int64(builders), absorbed: absorbed, maxReserve: maxReserve, limit: -1}
	h.update()
	return h
}

// setMemfdFloor makes the limit count at least n bytes of memfds, however
// few are live.
func (h *heapLimit) setMemfdFloor(n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.memfdFloor = n
	h.update()
}

// setMemfds follows the live memfd bytes.
func (h *heapLimit) setMemfds(n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.memfds = n
	h.update()
}

// set follows all three, from one sample: the memory sampler refreshes
// the memfd count too, since setMemfds calls from concurrent memfd changes
// can arrive out of order.
func (h *heapLimit) set(memfds, other, largest int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.memfds, h.other, h.largest = memfds, other, largest
	h.update()
}

// update sets the limit to the target rounded down to 4 MiB, so that it
// changes only when the target crosses a 4 MiB step and never sits above
// the target; h.mu is held (or h is not shared yet).
func (h *heapLimit) update() {
	reserve := min(max(h.builders*h.largest-h.absorbed, 0), h.maxReserve)
	// The reserve is for memfds about to be made: inside a scan's floor
	// (the prefetch share), so not counted twice.
	lim := max((h.total-max(h.memfds+reserve, h.memfdFloor)-h.other)&^(4<<20-1), h.floor)
	if lim == h.limit {
		return
	}
	h.limit = lim
	debug.SetMemoryLimit(lim)
}

// memfdSealer returns the maker of memfd batches and the prefetch store's
// Sealer that uses it; where no memfd can be made the batch stays in
// memory, logged once. onLive (may be nil) follows the memfds' live bytes.
func memfdSealer(limit int64, onLive func(int64), log *slog.Logger) (*blob.Memfds, prefetch.Sealer) {
	m := blob.NewMemfds(limit, onLive)
	// Half the descriptors (Go raised the soft limit to the hard one) may
	// hold memfd batches; the rest are for sources, sockets and FUSE.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur > 0 && rl.Cur < 1<<40 {
		m.SetMaxFiles(int64(rl.Cur / 2))
	}
	var once sync.Once
	return m, blob.Fallback{M: m, OnFail: func(err error) {
		once.Do(func() { log.Warn("memfd batches unavailable; keeping batches in memory", "err", err) })
	}}
}

// sampleMemory samples the daemon's memory every period: it records the
// peak of RSS + live memfd bytes (memfds are outside the RSS, and the two
// peaks are not simultaneous), and feeds the resident pages outside Go's
// heap to limit (may be nil), and runs the huge-page watcher (may be nil)
// on the heap's resident anonymous memory. It returns the function that
// stops it.
func (w *wiring) sampleMemory(period time.Duration, limit *heapLimit, huge *thp.Watcher, log *slog.Logger) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			anon := int64(-1)
			if rss, shared, err := selfStatm(); err == nil {
				anon = rss - shared
				var live, largest int64
				if w.memfds != nil {
					ms := w.memfds.Stats()
					live, largest = ms.LiveBytes, ms.Largest
					if rss+live > w.peakTotal.Load() {
						w.peakTotal.Store(rss + live)
						w.notePeak(rss, live)
					}
				}
				if limit != nil {
					limit.set(live, shared, largest)
				}
			}
			if huge != nil {
				// An error advising new heap is logged and the next growth
				// tried again; the watcher is dropped only once it has
				// taken its advice back.
				if err := huge.Check(anon); err != nil {
					log.Warn("Go heap huge pages", "err", err)
				}
				if huge.Off() {
					huge = nil
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); <-done }
}

// selfStatm is this process's resident set size and, of it, the pages
// backed by files or shared memory (/proc/self/statm): outside Go's heap.
func selfStatm() (rss, shared int64, err error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("statm: %q", b)
	}
	var pages [2]int64
	for i := range pages {
		if pages[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("statm: %w", err)
		}
	}
	page := int64(os.Getpagesize())
	return pages[0] * page, pages[1] * page, nil
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// Stats is the content of .zenith/stats.
type Stats struct {
	Time     time.Time        `json:"time"`
	Cache    cache.Stats      `json:"cache"`
	Prefetch prefetch.Stats   `json:"prefetch"`
	Memfds   *memfdStats      `json:"memfds,omitempty"`
	IO       ioStats          `json:"io"`
	S3       []source.S3Stats `json:"s3"` // one per S3 dataset; [] when none
	Datasets []datasetStats   `json:"datasets"`
}

// ioStats sums the local stores' read counters.
type ioStats struct {
	Mode         string `json:"io_uring_mode"`
	UringReads   uint64 `json:"uring_reads"`
	PreadReads   uint64 `json:"pread_reads"`
	UringBatches uint64 `json:"uring_batches"`
	Fallback     bool   `json:"fallback_to_pread"`
}

// memfdStats are the memfd batches' counters, and the peak of the daemon's
// RSS + live memfds (sampled every 20 ms): its memory, all told.
type memfdStats struct {
	blob.MemfdStats
	PeakTotal int64     `json:"peak_rss_plus_memfds_bytes"`
	PeakParts peakParts `json:"peak_parts"`
}

// peakParts is what the daemon's memory was made of when its RSS +
// memfds peaked: where a bound was passed, what passed it.
type peakParts struct {
	RSS          int64  `json:"rss_bytes"`
	Memfds       int64  `json:"memfd_bytes"`
	HeapObjects  int64  `json:"go_heap_objects_bytes"`
	HeapLimit    int64  `json:"go_heap_limit_bytes"`
	GoTotal      int64  `json:"go_mapped_bytes"`
	HeapLive     int64  `json:"go_heap_live_bytes"`
	LimiterCycle uint64 `json:"gc_limiter_last_cycle"`
	Cycles       uint64 `json:"gc_cycles"`
}

// notePeak records the parts of a new peak (runtime/metrics: no
// stop-the-world).
func (w *wiring) notePeak(rss, memfds int64) {
	ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/gc/gomemlimit:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/limiter/last-enabled:gc-cycle"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(ms)
	p := peakParts{RSS: rss, Memfds: memfds}
	if ms[0].Value.Kind() == metrics.KindUint64 {
		p.HeapObjects = int64(ms[0].Value.Uint64())
	}
	if ms[1].Value.Kind() == metrics.KindUint64 {
		p.GoTotal = int64(ms[1].Value.Uint64())
	}
	if ms[2].Value.Kind() == metrics.KindUint64 {
		p.HeapLimit = int64(ms[2].Value.Uint64())
	}
	if ms[3].Value.Kind() == metrics.KindUint64 {
		p.HeapLive = int64(ms[3].Value.Uint64())
	}
	p.LimiterCycle = ms[4].Value.Uint64()
	p.Cycles = ms[5].Value.Uint64()
	w.peakMu.Lock()
	w.peakParts = p
	w.peakMu.Unlock()
}

type datasetStats struct {
	Name          string `json:"name"`
	Ready         bool   `json:"ready"`
	SegmentHits   uint64 `json:"segment_cache_hits"`
	SegmentMisses uint64 `json:"segment_cache_misses"`
	SegmentBytes  int64  `json:"segment_cache_bytes"`
	// Spans: coalesced reads of the sources (dataset.Options.CoalesceBytes):
	// spans fetched, and span reads served by one cached or in flight.
	SpanFetches int64 `json:"span_fetches,omitempty"`
	SpanHits    int64 `json:"span_hits,omitempty"`
}

func (w *wiring) stats() Stats {
	st := Stats{Time: time.Now().UTC(), Cache: w.cache.Stats(), Prefetch: w.prefetch.Stats(), S3: []source.S3Stats{}}
	if w.memfds != nil {
		w.peakMu.Lock()
		parts := w.peakParts
		w.peakMu.Unlock()
		st.Memfds = &memfdStats{MemfdStats: w.memfds.Stats(), PeakTotal: w.peakTotal.Load(), PeakParts: parts}
	}
	for _, s := range w.s3s {
		st.S3 = append(st.S3, s.Stats())
	}
	for _, l := range w.locals {
		ls := l.Stats()
		st.IO.Mode = ls.Mode
		st.IO.UringReads += ls.UringReads
		st.IO.PreadReads += ls.PreadReads
		st.IO.UringBatches += ls.UringBatches
		st.IO.Fallback = st.IO.Fallback || ls.Fallback
	}
	for _, d := range w.datasets {
		ds := datasetStats{Name: d.Name, Ready: d.Err() == nil}
		ds.SegmentHits, ds.SegmentMisses, ds.SegmentBytes = d.SegmentStats()
		ds.SpanFetches, ds.SpanHits = d.SpanStats()
		st.Datasets = append(st.Datasets, ds)
	}
	return st
}

func (w *wiring) statsJSON() ([]byte, error) {
	b, err := json.MarshalIndent(w.stats(), "", "  ")
	return append(b, '\n'), err
}
