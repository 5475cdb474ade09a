// Package prefetch is the read-through batch store between fs/ and
// dataset/: it serves batch bytes from the cache, builds each missing batch
// once however many readers ask (an in-flight table), and reads ahead of
// every reader in that reader's own order.
//
// # Readers and their order
//
// A reader is named by the caller (fs/ uses "pid:view-path"). When a reader
// gets file k of a view, files k+1 … k+Depth of the same view are scheduled
// on the worker pool. Because the window follows the view, a shuffled view
// is read ahead in its shuffled order. A read that is not the reader's
// next file is a jump: the reader's outstanding speculative work is
// cancelled and a new window starts at the jump target. A reader whose
// process is gone, or that stays idle past IdleTimeout, has its
// speculative work cancelled too.
//
// # Two lanes, two budgets
//
// A read someone waits on is built in the caller's goroutine at once, and
// while any such read is building, workers start no new speculative build:
// waiting reads go first. Speculative results wait in a pending buffer with
// its own byte budget (PendingBytes) until their reader takes them; only
// then do they enter the cache. This keeps speculation from being refused
// by the cache's admission policy (TinyLFU would reject never-seen batches)
// and from evicting the working set, and it bounds the memory of work in
// flight: no speculative build starts while the buffer is full.
//
// # Lock order
//
// Store.mu guards readers, pending, inflight and the queue; it is never
// held while building or while calling the cache.
package prefetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/cache"
)

// Options configure a Store.
type Options struct {
	Cache        *cache.Cache
	Workers      int           // speculative build workers (default 2)
	Depth        int           // files read ahead of each reader; 0 disables prefetch
	PendingBytes int64         // budget for built-but-unread speculative batches (default 64 MiB)
	IdleTimeout  time.Duration // a reader idle this long loses its speculative work (default 30s)
	Logger       *slog.Logger
	// OnWorker, when set, is called first in each worker goroutine (the
	// daemon lowers the worker thread's scheduling priority there).
	OnWorker func()
	// Sealer turns built files into what the cache holds (e.g. memfds for
	// FUSE passthrough), building in place where the view can; nil keeps
	// the bytes in memory.
	Sealer Sealer
}

// Store is the read-through batch store. It is safe for concurrent use.
type Store struct {
	opts  Options
	cache *cache.Cache
	log   *slog.Logger

	mu           sync.Mutex
	cond         *sync.Cond // signals queue changes and urgent-lane drains
	readers      map[string]*reader
	pending      map[string]*pendingEntry
	pendingBytes int64
	inflight     map[string]*call
	queue        []*task
	urgent       int // urgent builds in progress
	closed       bool
	wg           sync.WaitGroup

	st counters
}

type reader struct {
	name   string
	view   View
	next   int // the file expected next
	last   time.Time
	ctx    context.Context
	cancel context.CancelFunc
	pid    int
	// lastPut is the key this reader's own request put into the cache
	// last: its next request for that key (the open after the lookup that
	// built the file) is the same read, not a re-read (cache.Reopen).
	lastPut string
	// reads and prefetch hits per reader, for per-view stats
}

type pendingEntry struct {
	b      *blob.Blob
	reader string
	at     time.Time
}

type call struct {
	done chan struct{}
	b    *blob.Blob
	err  error
	spec bool // started as speculative work
	// cancelled: the speculative build stopped because its reader jumped
	// or left, not because it failed; a waiter looks again.
	cancelled bool
}

type task struct {
	v      View
	k      int
	key    string
	reader string
	ctx    context.Context
}

type counters struct {
	requests, cacheHits, prefetchHits, inflightHits, misses atomic.Uint64
	built, prefetched, wasted, cancelled, errors            atomic.Uint64
	waitNanos                                               atomic.Int64
}

// New starts a Store and its workers.
func New(opts Options) (*Store, error) {
	if opts.Cache == nil {
		return nil, errors.New("prefetch: a cache is required")
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = 64 << 20
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, cache: opts.Cache, log: opts.Logger, readers: map[string]*reader{},
		pending: map[string]*pendingEntry{}, inflight: map[string]*call{}}
	s.cond = sync.NewCond(&s.mu)
	for i := 0; i < opts.Workers; i++ {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(1)
	go s.sweeper()
	return s, nil
}

// Close stops the workers; in-flight builds finish.
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	for _, r := range s.readers {
		r.cancel()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	s.wg.Wait()
}

// Get returns file k of view v for reader, from the pending buffer, the
// cache, an in-flight build, or by building it now; then schedules the
// reader's read-ahead.
func (s *Store) Get(ctx context.Context, v View, k int, readerName string) (*blob.Blob, error) {
	s.st.requests.Add(1)
	key := v.Key(k)
	s.mu.Lock()
	s.noteRead(readerName, v, k)
	if p, ok := s.pending[key]; ok {
		s.scheduleLocked(readerName)
		s.mu.Unlock()
		s.st.prefetchHits.Add(1)
		s.takePending(key, p.b, readerName)
		return p.b, nil
	}
	get := s.cache.Get
	if s.readers[readerName].lastPut == key {
		get = s.cache.Reopen
	}
	s.mu.Unlock()
	if b, ok := get(key); ok {
		s.st.cacheHits.Add(1)
		s.schedule(readerName)
		return b, nil
	}
	start := time.Now()
	defer func() { s.st.waitNanos.Add(int64(time.Since(start))) }()
	retried := false
	for {
		b, again, err := s.await(ctx, v, k, key, readerName, !retried)
		if !again {
			return b, err
		}
		retried = true
		if b, ok := s.cache.Get(key); ok {
			return b, nil
		}
	}
}

// await waits for the build of key in flight, or builds it now if none is.
// again: a speculative build this waited on was cancelled (its reader
// jumped or left, while this request's reader still wants the batch), or
// failed while retryFailed: look again. A speculative build is nobody's
// request, and it may have started long before (during an outage that
// has since ended): its failure is not this reader's answer until this
// reader has tried once itself.
func (s *Store) await(ctx context.Context, v View, k int, key, readerName string, retryFailed bool) (b *blob.Blob, again bool, err error) {
	s.mu.Lock()
	c, ok := s.inflight[key]
	if ok {
		s.scheduleLocked(readerName)
		s.mu.Unlock()
		if c.spec {
			s.st.inflightHits.Add(1)
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if ctx.Err() == nil && (c.cancelled || c.spec && c.err != nil && retryFailed) {
			return nil, true, nil
		}
		if c.err == nil && c.spec {
			s.takePending(key, c.b, readerName) // its result went to pending: take it
		}
		return c.b, false, c.err
	}
	// Between Get's look and this one a build may have ended: its result
	// is in pending (read-ahead) or in the cache (another reader's).
	if p, ok := s.pending[key]; ok {
		s.mu.Unlock()
		s.takePending(key, p.b, readerName)
		return p.b, false, nil
	}
	if b, ok := s.cache.Get(key); ok {
		s.mu.Unlock()
		return b, false, nil
	}
	s.st.misses.Add(1)
	c = &call{done: make(chan struct{})}
	s.inflight[key] = c
	s.urgent++
	s.scheduleLocked(readerName)
	tracked := !s.closed // Close waits for it (Add before Close's Wait: both under mu)
	if tracked {
		s.wg.Add(1)
	}
	s.mu.Unlock()

	// Built for every reader that waits on it, this one included, in a
	// goroutine of its own: one reader's interrupted open (FUSE_INTERRUPT
	// cancels ctx) returns at once, and neither fails the others' nor
	// wastes the work.
	go func() {
		if tracked {
			defer s.wg.Done()
		}
		c.b, c.err = s.build(context.WithoutCancel(ctx), v, k)
		if c.err == nil {
			// Into the cache before leaving the in-flight table, so that
			// no request falls between the two and builds it again.
			s.cache.Put(key, c.b)
			s.st.built.Add(1)
		} else {
			s.st.errors.Add(1)
		}
		s.mu.Lock()
		if c.err == nil {
			s.notePutLocked(readerName, key)
		}
		delete(s.inflight, key)
		s.urgent--
		s.cond.Broadcast()
		s.mu.Unlock()
		close(c.done)
	}()
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	return c.b, false, c.err
}

// takePending moves b, key's read-ahead result, from the pending buffer
// into the cache for reader: into the cache first, so that a request
// arriving between the two finds it in one of them and does not build it
// again.
func (s *Store) takePending(key string, b *blob.Blob, reader string) {
	s.cache.Put(key, b)
	s.mu.Lock()
	s.removePendingLocked(key)
	s.notePutLocked(reader, key)
	s.mu.Unlock()
}

// notePutLocked records that reader's request put key into the cache
// (reader.lastPut); s.mu is held.
func (s *Store) notePutLocked(reader, key string) {
	if r := s.readers[reader]; r != nil {
		r.lastPut = key
	}
}

// removePendingLocked takes key out of the pending buffer; the room it
// frees may let a worker that waits on the buffer's bound go on.
func (s *Store) removePendingLocked(key string) {
	if p, ok := s.pending[key]; ok {
		delete(s.pending, key)
		s.pendingBytes -= p.b.Len()
		s.cond.Broadcast()
	}
}

// build builds file k of v and seals it. A panic while building (a decoder
// on malformed input) becomes that file's error: a worker must not take
// the daemon down.
func (s *Store) build(ctx context.Context, v View, k int) (b *blob.Blob, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic while building a batch", "key", v.Key(k), "panic", p, "stack", string(debug.Stack()))
			b, err = nil, fmt.Errorf("building %s: panic: %v", v.Key(k), p)
		}
	}()
	if s.opts.Sealer != nil {
		if ib, ok := v.(InPlaceBuilder); ok {
			if n, ok := ib.KnownSize(k); ok {
				return s.opts.Sealer.Fill(n, func(dst []byte) error { return ib.BuildInto(ctx, k, dst) })
			}
		}
	}
	data, err := v.Build(ctx, k)
	if err != nil {
		return nil, err
	}
	if s.opts.Sealer != nil {
		return s.opts.Sealer.Seal(data), nil
	}
	return blob.Bytes(data), nil
}

// noteRead updates the reader's position; a jump cancels its speculation.
func (s *Store) noteRead(name string, v View, k int) {
	r, ok := s.readers[name]
	now := time.Now()
	// Reads inside the reader's window are not jumps: DataLoader workers
	// stride through it (0, 2, 4 …) and must keep their read-ahead.
	if ok && (r.view != v || k < r.next-1 || k >= r.next+max(s.opts.Depth, 1)) {
		r.cancel() // a jump (or another view): drop the old window
		s.dropPendingLocked(name)
		ok = false
	}
	if !ok {
		ctx, cancel := context.WithCancel(context.Background())
		r = &reader{name: name, view: v, ctx: ctx, cancel: cancel, pid: pidOf(name)}
		s.readers[name] = r
	}
	r.view, r.last = v, now
	if k+1 > r.next {
		r.next = k + 1
	}
}

func (s *Store) schedule(name string) {
	s.mu.Lock()
	s.scheduleLocked(name)
	s.mu.Unlock()
}

// scheduleLocked queues the reader's window that is not cached, pending or
// in flight.
func (s *Store) scheduleLocked(name string) {
	r := s.readers[name]
	if r == nil || s.opts.Depth <= 0 || s.closed {
		return
	}
	queued := map[string]bool{}
	added := false
	for _, t := range s.queue {
		queued[t.key] = true
	}
	for j := r.next; j < r.next+s.opts.Depth && j < r.view.NumBatches(); j++ {
		key := r.view.Key(j)
		// A cached batch is not queued: a worker would only pop and skip it,
		// and waking one (a locked, low-priority thread) for nothing costs a
		// reader's open more than the open's own work once all is cached.
		if queued[key] || s.pending[key] != nil || s.inflight[key] != nil || s.cache.Has(key) {
			continue
		}
		s.queue = append(s.queue, &task{v: r.view, k: j, key: key, reader: name, ctx: r.ctx})
		added = true
	}
	if added {
		s.cond.Broadcast()
	}
}

func (s *Store) dropPendingLocked(name string) {
	for key, p := range s.pending {
		if p.reader == name {
			s.removePendingLocked(key)
			s.st.wasted.Add(1)
		}
	}
	kept := s.queue[:0]
	for _, t := range s.queue {
		if t.reader == name {
			s.st.cancelled.Add(1)
			continue
		}
		kept = append(kept, t)
	}
	s.queue = kept
}

// next pops a task that is still worth doing, waiting while the urgent lane
// is busy, the queue is empty, or the pending buffer is full.
func (s *Store) next() *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			return nil
		}
		if s.urgent == 0 && len(s.queue) > 0 && s.pendingBytes < s.opts.PendingBytes {
			t := s.queue[0]
			s.queue = s.queue[1:]
			if t.ctx.Err() != nil {
				s.st.cancelled.Add(1)
				continue
			}
			if s.pending[t.key] != nil || s.inflight[t.key] != nil {
				continue
			}
			if s.cache.Has(t.key) {
				continue
			}
			c := &call{done: make(chan struct{}), spec: true}
			s.inflight[t.key] = c
			return t
		}
		s.cond.Wait()
	}
}

func (s *Store) worker() {
	defer s.wg.Done()
	if s.opts.OnWorker != nil {
		s.opts.OnWorker()
	}
	for {
		t := s.next()
		if t == nil {
			return
		}
		s.mu.Lock()
		c := s.inflight[t.key]
		s.mu.Unlock()
		c.b, c.err = s.build(t.ctx, t.v, t.k)
		s.mu.Lock()
		delete(s.inflight, t.key)
		switch {
		case c.err != nil && (t.ctx.Err() != nil || skipped(c.err)):
			c.cancelled = true // a reader waiting on it builds it itself
			s.st.cancelled.Add(1)
		case c.err != nil:
			s.st.errors.Add(1)
			s.log.Warn("prefetch build failed", "key", t.key, "err", c.err)
		default:
			s.st.built.Add(1)
			s.st.prefetched.Add(1)
			if s.readers[t.reader] != nil && t.ctx.Err() == nil {
				s.pending[t.key] = &pendingEntry{b: c.b, reader: t.reader, at: time.Now()}
				s.pendingBytes += c.b.Len()
			} else {
				s.st.wasted.Add(1)
			}
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		close(c.done)
	}
}

// sweeper drops readers whose process is gone or that went idle, and
// pending entries nobody took.
func (s *Store) sweeper() {
	defer s.wg.Done()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		<-tick.C
		s.sweep(time.Now())
	}
}

func (s *Store) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.readers {
		gone := r.pid > 0 && !processAlive(r.pid)
		if gone || now.Sub(r.last) > s.opts.IdleTimeout {
			r.cancel()
			s.dropPendingLocked(name)
			delete(s.readers, name)
		}
	}
	for key, p := range s.pending {
		if now.Sub(p.at) > s.opts.IdleTimeout {
			s.removePendingLocked(key)
			s.st.wasted.Add(1)
		}
	}
}

// Forget drops a reader and its speculative work.
func (s *Store) Forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.readers[name]; ok {
		r.cancel()
		s.dropPendingLocked(name)
		delete(s.readers, name)
	}
}

// pidOf extracts the pid from reader names of the form "PID:…".
func pidOf(name string) int {
	p, _, ok := strings.Cut(name, ":")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(p)
	if err != nil {
		return 0
	}
	return pid
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// Stats are the store's counters.
type Stats struct {
	Requests       uint64  `json:"requests"`
	CacheHits      uint64  `json:"cache_hits"`
	PrefetchHits   uint64  `json:"prefetch_hits"`
	InflightHits   uint64  `json:"prefetch_inflight_hits"`
	Misses         uint64  `json:"misses"`
	Built          uint64  `json:"batches_built"`
	Prefetched     uint64  `json:"batches_prefetched"`
	Wasted         uint64  `json:"prefetch_wasted"`
	Cancelled      uint64  `json:"prefetch_cancelled"` // reader left or jumped, or the build was skipped (no room)
	Errors         uint64  `json:"errors"`
	WaitSeconds    float64 `json:"reader_wait_seconds"`
	PendingBytes   int64   `json:"pending_bytes"`
	PendingBatches int     `json:"pending_batches"`
	Queued         int     `json:"queued"`
	Readers        int     `json:"readers"`
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	pb, pn, q, rd := s.pendingBytes, len(s.pending), len(s.queue), len(s.readers)
	s.mu.Unlock()
	return Stats{
		Requests: s.st.requests.Load(), CacheHits: s.st.cacheHits.Load(), PrefetchHits: s.st.prefetchHits.Load(),
		InflightHits: s.st.inflightHits.Load(), Misses: s.st.misses.Load(), Built: s.st.built.Load(),
		Prefetched: s.st.prefetched.Load(), Wasted: s.st.wasted.Load(), Cancelled: s.st.cancelled.Load(),
		Errors: s.st.errors.Load(), WaitSeconds: time.Duration(s.st.waitNanos.Load()).Seconds(),
		PendingBytes: pb, PendingBatches: pn, Queued: q, Readers: rd,
	}
}

// skipped reports whether a speculative build's error says it was skipped
// rather than failed: its error has a Skipped method that returns true
// (dataset's block views, when no room is free for another block).
func skipped(err error) bool {
	var sk interface{ Skipped() bool }
	return errors.As(err, &sk) && sk.Skipped()
}
