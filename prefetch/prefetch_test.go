package prefetch

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/cache"
)

// memView is a view whose batches are computed in memory, counting builds
// and taking a configurable time, so that the store's scheduling is
// observable. (Through-the-mount behaviour is tested in fs/.)
type memView struct {
	n      int
	delay  time.Duration
	builds sync.Map // key → *atomic.Int32
}

func (v *memView) NumBatches() int  { return v.n }
func (v *memView) Key(k int) string { return fmt.Sprintf("mem/%d", k) }
func (v *memView) Build(ctx context.Context, k int) ([]byte, error) {
	c, _ := v.builds.LoadOrStore(k, new(atomic.Int32))
	c.(*atomic.Int32).Add(1)
	select {
	case <-time.After(v.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []byte(strconv.Itoa(k)), nil
}
func (v *memView) count(k int) int32 {
	c, ok := v.builds.Load(k)
	if !ok {
		return 0
	}
	return c.(*atomic.Int32).Load()
}

func newStore(t *testing.T, depth int) *Store {
	return newStoreSealed(t, depth, nil)
}

func newStoreSealed(t *testing.T, depth int, sealer Sealer) *Store {
	t.Helper()
	c, err := cache.New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Cache: c, Workers: 2, Depth: depth, IdleTimeout: time.Minute, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	return s
}

func TestSequentialReaderIsServedByPrefetch(t *testing.T) {
	s := newStore(t, 4)
	v := &memView{n: 40, delay: 2 * time.Millisecond}
	for k := 0; k < v.n; k++ {
		b, err := s.Get(context.Background(), v, k, "r1")
		if err != nil || text(b) != strconv.Itoa(k) {
			t.Fatalf("batch %d: %q %v", k, text(b), err)
		}
		time.Sleep(5 * time.Millisecond) // the consumer's compute time
	}
	st := s.Stats()
	if st.PrefetchHits+st.InflightHits < uint64(v.n)/2 {
		t.Fatalf("sequential read of %d batches: only %d prefetch hits (+%d in flight): %+v", v.n, st.PrefetchHits, st.InflightHits, st)
	}
	for k := 0; k < v.n; k++ {
		if c := v.count(k); c != 1 {
			t.Fatalf("batch %d built %d times", k, c)
		}
	}
}

func TestConcurrentReadersBuildOnce(t *testing.T) {
	s := newStore(t, 0)
	v := &memView{n: 3, delay: 50 * time.Millisecond}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := s.Get(context.Background(), v, 1, fmt.Sprintf("r%d", i)); err != nil || text(b) != "1" {
				t.Errorf("get: %q %v", text(b), err)
			}
		}()
	}
	wg.Wait()
	if c := v.count(1); c != 1 {
		t.Fatalf("16 concurrent readers built batch 1 %d times", c)
	}
}

func TestJumpCancelsSpeculation(t *testing.T) {
	s := newStore(t, 8)
	v := &memView{n: 1000, delay: 30 * time.Millisecond}
	s.Get(context.Background(), v, 0, "r")
	s.Get(context.Background(), v, 500, "r") // far outside the window
	time.Sleep(400 * time.Millisecond)
	built := 0
	for k := 1; k <= 8; k++ {
		built += int(v.count(k))
	}
	if built > 4 {
		t.Fatalf("after a jump, %d of the old window's 8 batches were still built", built)
	}
	if st := s.Stats(); st.Cancelled == 0 {
		t.Fatalf("no cancelled prefetch after a jump: %+v", st)
	}
	if v.count(501) != 1 {
		t.Fatal("the new window was not read ahead")
	}
}

func TestReaderProcessExitCancelsSpeculation(t *testing.T) {
	s := newStore(t, 16)
	v := &memView{n: 100, delay: 100 * time.Millisecond}
	cmd := exec.Command("sleep", "0.05")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%d:ds", cmd.Process.Pid)
	s.Get(context.Background(), v, 0, name)
	cmd.Wait()
	time.Sleep(1500 * time.Millisecond) // the sweeper runs every 200ms
	st := s.Stats()
	if st.Readers != 0 || st.Queued != 0 {
		t.Fatalf("reader gone but still tracked: %+v", st)
	}
	built := 0
	for k := 1; k <= 16; k++ {
		built += int(v.count(k))
	}
	if built >= 16 {
		t.Fatalf("all %d speculative builds ran for a reader that exited", built)
	}
}

func TestPrefetchDisabled(t *testing.T) {
	s := newStore(t, 0)
	v := &memView{n: 10}
	s.Get(context.Background(), v, 0, "r")
	time.Sleep(50 * time.Millisecond)
	if v.count(1) != 0 {
		t.Fatal("depth 0 still read ahead")
	}
}

// text is a blob's bytes as a string ("" for nil).
func text(b *blob.Blob) string {
	if b == nil {
		return ""
	}
	d, err := b.Data()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(d)
}

// inPlaceView is a memView that builds into a given buffer.
type inPlaceView struct {
	*memView
	inPlace atomic.Int32
}

func (v *inPlaceView) KnownSize(k int) (int64, bool) { return int64(len(strconv.Itoa(k))), true }

func (v *inPlaceView) BuildInto(ctx context.Context, k int, dst []byte) error {
	b, err := v.Build(ctx, k)
	if err != nil {
		return err
	}
	if len(b) != len(dst) {
		return fmt.Errorf("dst of %d bytes for %d", len(dst), len(b))
	}
	copy(dst, b)
	v.inPlace.Add(1)
	return nil
}

// TestMemfdSealedBatches: with a memfd Sealer, every batch comes back as a
// memfd holding exactly its bytes, from the cache, the pending buffer and
// direct builds alike; a view that can build in place is built into the
// memfd (Fill), any other is sealed after building (Seal).
func TestMemfdSealedBatches(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprint("in place ", inPlace), func(t *testing.T) {
			m := blob.NewMemfds(64<<20, nil)
			s := newStoreSealed(t, 4, blob.Fallback{M: m, OnFail: func(err error) { t.Errorf("memfd: %v", err) }})
			mv := &memView{n: 20, delay: time.Millisecond}
			var v View = mv
			ipv := &inPlaceView{memView: mv}
			if inPlace {
				v = ipv
			}
			for pass := 0; pass < 2; pass++ {
				for k := 0; k < mv.n; k++ {
					b, err := s.Get(context.Background(), v, k, "r1")
					if err != nil {
						t.Fatal(err)
					}
					if b.File() == nil || text(b) != strconv.Itoa(k) {
						t.Fatalf("pass %d batch %d: memfd %v, bytes %q", pass, k, b.File() != nil, text(b))
					}
				}
			}
			// Each batch is made once, unless the cache's admission
			// dropped it and the second pass built it again.
			st := m.Stats()
			if st.Made < uint64(mv.n) || st.Made > uint64(2*mv.n) || st.Failed != 0 {
				t.Fatalf("memfds: %+v, want %d to %d made, none failed", st, mv.n, 2*mv.n)
			}
			if got := ipv.inPlace.Load(); inPlace != (got > 0) || (inPlace && uint64(got) != st.Made) {
				t.Fatalf("%d built in place of %d memfds (in place: %v)", got, st.Made, inPlace)
			}
		})
	}
}

// panicView panics building file 1.
type panicView struct{ *memView }

func (v panicView) Build(ctx context.Context, k int) ([]byte, error) {
	if k == 1 {
		panic("decoder bug")
	}
	return v.memView.Build(ctx, k)
}

// TestPanicInBuildIsAnError: a panic while building — in a worker's
// speculative build or in a caller's — is that file's error; the store,
// and the process, live on.
func TestPanicInBuildIsAnError(t *testing.T) {
	s := newStore(t, 4)
	v := panicView{&memView{n: 4}}
	if _, err := s.Get(context.Background(), v, 0, "r"); err != nil { // schedules 1..3 on the workers
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := s.Get(context.Background(), v, 1, "r"); err == nil || !strings.Contains(err.Error(), "decoder bug") {
		t.Fatalf("file 1: %v, want the panic as an error", err)
	}
	if b, err := s.Get(context.Background(), v, 2, "r"); err != nil || text(b) != "2" {
		t.Fatalf("file 2 after the panic: %q, %v", text(b), err)
	}
}

// A reader of batches that are all cached queues no speculative work: a
// worker would only pop each task and skip it, and waking one costs the
// reader's open more than the open's own work.
func TestCachedWindowQueuesNothing(t *testing.T) {
	c, err := cache.New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{}) // keeps the workers from popping tasks
	s, err := New(Options{Cache: c, Workers: 1, Depth: 4, IdleTimeout: time.Minute,
		OnWorker: func() { <-hold }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(hold); s.Close(); c.Close() })
	v := &memView{n: 10}
	for k := 0; k < 6; k++ {
		if !c.Put(v.Key(k), blob.Bytes([]byte(strconv.Itoa(k)))) {
			t.Fatalf("batch %d not cached", k)
		}
	}
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.queue)
	}
	for k := 0; k < 2; k++ { // windows 1..4 and 2..5: all cached
		if b, err := s.Get(context.Background(), v, k, "r"); err != nil || text(b) != strconv.Itoa(k) {
			t.Fatalf("batch %d: %q %v", k, text(b), err)
		}
		if n := queued(); n != 0 {
			t.Fatalf("after reading cached batch %d, %d tasks queued for cached batches", k, n)
		}
	}
	s.Get(context.Background(), v, 2, "r") // window 3..6: batch 6 is not cached
	if n := queued(); n != 1 {
		t.Fatalf("after batch 2, %d tasks queued, want 1 (batch 6)", n)
	}
	for k := range 10 {
		if v.count(k) != 0 {
			t.Fatalf("cached batch %d was built", k)
		}
	}
}

// The reader whose miss builds a batch is interrupted (its request's
// context is cancelled) while another reader waits on the same batch:
// the build finishes for both, once.
func TestInterruptedBuilderFailsNoOtherReader(t *testing.T) {
	s := newStore(t, 0)
	v := &memView{n: 3, delay: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := s.Get(ctx, v, 2, "a")
		first <- err
	}()
	for v.count(2) == 0 { // a's build has started
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() {
		b, err := s.Get(context.Background(), v, 2, "b")
		if err == nil && text(b) != "2" {
			err = fmt.Errorf("got %q", text(b))
		}
		second <- err
	}()
	time.Sleep(20 * time.Millisecond) // b waits on a's build
	cancel()
	if err := <-second; err != nil {
		t.Fatalf("the waiting reader failed with the interrupted one's build: %v", err)
	}
	<-first
	if c := v.count(2); c != 1 {
		t.Fatalf("batch 2 built %d times", c)
	}
	if st := s.Stats(); st.Errors != 0 || st.Built != 1 {
		t.Fatalf("stats after an interrupted build: %+v", st)
	}
}

// A reader waiting on another reader's speculative build is not failed
// when that build is cancelled (its reader jumped): it builds the batch.
func TestWaiterOnCancelledSpeculationBuilds(t *testing.T) {
	s := newStore(t, 4)
	v := &memView{n: 40, delay: 200 * time.Millisecond}
	if _, err := s.Get(context.Background(), v, 0, "a"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); v.count(1) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("batch 1 was never built ahead")
		}
	}
	got := make(chan error, 1)
	go func() {
		b, err := s.Get(context.Background(), v, 1, "b")
		if err == nil && text(b) != "1" {
			err = fmt.Errorf("got %q", text(b))
		}
		got <- err
	}()
	time.Sleep(30 * time.Millisecond)          // b waits on a's build of 1
	go s.Get(context.Background(), v, 30, "a") // a jumps: its read-ahead is cancelled
	if err := <-got; err != nil {
		t.Fatalf("reader b, waiting on a's cancelled read-ahead: %v", err)
	}
	if c := v.count(1); c != 2 {
		t.Errorf("batch 1 built %d times, want 2 (the cancelled read-ahead, then b's)", c)
	}
}

// Taking a batch out of the full pending buffer wakes a worker for the
// queued read-ahead.
func TestTakingPendingWakesWorkers(t *testing.T) {
	c, err := cache.New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Cache: c, Workers: 1, Depth: 4, PendingBytes: 2, IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	v := &memView{n: 5} // batch k is strconv.Itoa(k): one byte each
	if _, err := s.Get(context.Background(), v, 0, "r"); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func(Stats) bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); !ok(s.Stats()); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v", what, s.Stats())
			}
		}
	}
	waitFor("batches 1 and 2 pending, the buffer full", func(st Stats) bool { return st.PendingBytes == 2 && st.Queued == 2 })
	if _, err := s.Get(context.Background(), v, 1, "r"); err != nil {
		t.Fatal(err)
	}
	waitFor("the worker went on with batch 3 once batch 1 left the buffer", func(st Stats) bool { return st.Built >= 4 })
}

// failOnceView fails the first build of each batch (an outage that ends
// while the speculative build is under way).
type failOnceView struct{ memView }

func (v *failOnceView) Build(ctx context.Context, k int) ([]byte, error) {
	b, err := v.memView.Build(ctx, k)
	if err == nil && v.count(k) == 1 {
		return nil, errors.New("endpoint unreachable")
	}
	return b, err
}

// A reader waiting on a speculative build that fails builds the batch
// itself once: the speculation was nobody's request.
func TestWaiterOnFailedSpeculationTriesItself(t *testing.T) {
	s := newStore(t, 4)
	v := &failOnceView{memView{n: 40, delay: 200 * time.Millisecond}}
	if _, err := s.Get(context.Background(), v, 0, "a"); err == nil {
		t.Fatal("the first build of batch 0 was meant to fail")
	}
	for deadline := time.Now().Add(5 * time.Second); v.count(1) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("batch 1 was never built ahead")
		}
	}
	b, err := s.Get(context.Background(), v, 1, "a") // waits on the failing read-ahead of 1
	if err != nil || text(b) != "1" {
		t.Fatalf("reader waiting on a failed read-ahead: %q, %v", text(b), err)
	}
	if c := v.count(1); c != 2 {
		t.Errorf("batch 1 built %d times, want 2 (the failed read-ahead, then the reader's)", c)
	}
}

// Readers racing each other and their own read-ahead build every batch
// once: a build that ends between a reader's look at the pending buffer
// and the cache and its miss is found, not built again, and no read-ahead
// is left in the pending buffer.
func TestEveryBatchIsBuiltOnceUnderConcurrency(t *testing.T) {
	s := newStore(t, 4)
	v := &memView{n: 3000, delay: 20 * time.Microsecond}
	var wg sync.WaitGroup
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range v.n {
				if _, err := s.Get(context.Background(), v, k, fmt.Sprint("r", r)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var builds int32
	for k := range v.n {
		builds += v.count(k)
	}
	if builds != int32(v.n) {
		t.Errorf("%d builds for %d batches read by 8 readers", builds, v.n)
	}
	if st := s.Stats(); st.PendingBatches != 0 {
		t.Errorf("%d read-ahead batches (%d bytes) left in the pending buffer", st.PendingBatches, st.PendingBytes)
	}
}

// The reader whose miss started a build is interrupted like any other
// waiter: its Get returns at once, while the build goes on for the
// readers still waiting (built once).
func TestReaderThatStartedABuildCanBeInterrupted(t *testing.T) {
	s := newStore(t, 0)
	v := &memView{n: 1, delay: 500 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := s.Get(ctx, v, 0, "a")
		first <- err
	}()
	for v.count(0) == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() {
		_, err := s.Get(context.Background(), v, 0, "b")
		second <- err
	}()
	begin := time.Now()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) || time.Since(begin) > 200*time.Millisecond {
		t.Fatalf("interrupted reader: %v after %v, want context.Canceled at once", err, time.Since(begin))
	}
	if err := <-second; err != nil {
		t.Fatalf("the other reader: %v", err)
	}
	if n := v.count(0); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

// The request after the one that put a batch, by the same reader (the
// open after the lookup that built a view file), is the same read: the
// cache does not count it as a re-read. Another reader's, or the same
// reader's after it read something else, is one.
func TestReopenIsNotAReread(t *testing.T) {
	s := newStore(t, 0) // no read-ahead: every batch is put by its reader's own request
	v := &memView{n: 10}
	get := func(k int, reader string) {
		t.Helper()
		if b, err := s.Get(context.Background(), v, k, reader); err != nil || text(b) != strconv.Itoa(k) {
			t.Fatalf("batch %d for %s: %q %v", k, reader, text(b), err)
		}
	}
	reused := func() uint64 { return s.cache.Stats().Reused }
	get(0, "r1") // the lookup builds and puts it
	get(0, "r1") // the open
	if n := reused(); n != 0 {
		t.Fatalf("lookup and open of one file counted %d re-reads", n)
	}
	get(0, "r2")
	if n := reused(); n != 1 {
		t.Fatalf("another reader's read of a cached batch: %d re-reads, want 1", n)
	}
	get(1, "r1")
	get(0, "r1")
	if n := reused(); n != 2 {
		t.Fatalf("r1 reading batch 0 again after batch 1: %d re-reads, want 2", n)
	}
}
