package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/source"
)

// rangeLog is a local store that records the reads of ReadRanges calls,
// and fails those of spans while failSpans: calls of fewer than 4 ranges
// (an exact read of these tests' row groups asks for each of their 12
// column chunks; a read of spans for a few consecutive spans).
type rangeLog struct {
	*source.Local
	mu        sync.Mutex
	calls     int
	bytes     int64
	failSpans bool
}

var errSpan = errors.New("simulated failed GET")

func (r *rangeLog) ReadRanges(ctx context.Context, key string, ranges []source.Range) error {
	r.mu.Lock()
	r.calls++
	for _, rg := range ranges {
		r.bytes += int64(len(rg.Buf))
	}
	fail := r.failSpans && len(ranges) < 4
	r.mu.Unlock()
	if fail {
		return fmt.Errorf("read %s: %w", key, errSpan)
	}
	return r.Local.ReadRanges(ctx, key, ranges)
}

func (r *rangeLog) counts() (int, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.bytes
}

// spanDataset is two indexed Parquet files of many small row groups, read
// through st, its reads ahead run by bg (nil: on goroutines of their own,
// as in the daemon; inline: in the caller, which then sees every read
// ahead done).
func spanDataset(t *testing.T, st source.Store, dir, state string, coalesce int64, bg func(func())) *Dataset {
	t.Helper()
	d := New("s", Location{Store: st, Prefix: true, StoreID: "file:" + dir}, Options{
		BatchSize: 500, StateDir: state, ReadAhead: 4, CoalesceBytes: coalesce, Background: bg,
	})
	if err := d.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func inline(f func()) { f() }

func current(t *testing.T, d *Dataset) *Snapshot {
	t.Helper()
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// spanFiles returns a directory of two Parquet files of many small row
// groups, and a state dir with their index. They are made once per test
// binary (~9 s under -race), shared by the tests (which run one at a
// time), and only read.
func spanFiles(t *testing.T) (dir, state string) {
	t.Helper()
	f := &spanFixture
	f.once.Do(func() {
		f.dir, f.err = os.MkdirTemp("", "zenithfs-spans-")
		if f.err != nil {
			return
		}
		src, st := filepath.Join(f.dir, "src"), filepath.Join(f.dir, "state")
		if f.err = os.MkdirAll(src, 0o755); f.err != nil {
			return
		}
		for i, name := range []string{"a.parquet", "b.parquet"} {
			if f.err = sampledata.WriteParquet(filepath.Join(src, name), int64(20000+1000*i), 1000); f.err != nil {
				return
			}
		}
		d := New("s", Location{Store: source.NewLocal(src), Prefix: true, StoreID: "file:" + src}, Options{BatchSize: 500, StateDir: st})
		f.err = d.Load(context.Background()) // the index pass
	})
	if f.err != nil {
		t.Fatal(f.err)
	}
	return filepath.Join(f.dir, "src"), filepath.Join(f.dir, "state")
}

// spanFixture holds spanFiles' files; TestMain removes them.
var spanFixture struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if spanFixture.dir != "" {
		os.RemoveAll(spanFixture.dir)
	}
	os.Exit(code)
}

func epoch(t *testing.T, d *Dataset) [][]byte {
	t.Helper()
	s := current(t, d)
	var out [][]byte
	for k := range s.NumBatches() {
		b, err := s.Build(context.Background(), k)
		if err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		out = append(out, b)
	}
	return out
}

// Reading a dataset in order fetches the segments read ahead through
// spans: far fewer reads of the store, no byte twice (a span starts after
// what was read exactly, and ends where the footer begins), and batches
// identical to exact reads.
func TestReadsInOrderAreCoalesced(t *testing.T) {
	dir, state := spanFiles(t)
	exact := &rangeLog{Local: source.NewLocal(dir)}
	want := epoch(t, spanDataset(t, exact, dir, state, 0, inline))
	exactCalls, exactBytes := exact.counts()

	st := &rangeLog{Local: source.NewLocal(dir)}
	d := spanDataset(t, st, dir, state, 1<<20, inline)
	got := epoch(t, d)
	calls, n := st.counts()
	if len(got) != len(want) {
		t.Fatalf("%d batches, want %d", len(got), len(want))
	}
	for k := range want {
		if !bytes.Equal(got[k], want[k]) {
			t.Fatalf("batch %d differs from the exact read's", k)
		}
	}
	fetches, hits := d.SpanStats()
	t.Logf("exact: %d reads, %d bytes; spans: %d reads, %d bytes, %d spans fetched, %d span hits", exactCalls, exactBytes, calls, n, fetches, hits)
	if want := d.opts.SegmentCacheBytes - int64(d.spans.max)*d.spans.size; d.segs.max != want {
		t.Fatalf("segment cache of %d bytes beside spans of %d, want %d", d.segs.max, int64(d.spans.max)*d.spans.size, want)
	}
	if fetches == 0 || hits == 0 {
		t.Fatalf("%d spans fetched, %d hits: reads ahead were not coalesced", fetches, hits)
	}
	if calls*3 > exactCalls {
		t.Fatalf("%d reads of the store with spans, %d without: want at most a third", calls, exactCalls)
	}
	if n > exactBytes {
		t.Fatalf("%d bytes read with spans, %d without: some were fetched twice", n, exactBytes)
	}
}

// A span that fails to fetch is not kept: the segments it was for are
// read exactly by their readers, and a later span is fetched again.
func TestFailedSpanFallsBackToExactReads(t *testing.T) {
	dir, state := spanFiles(t)
	exact := &rangeLog{Local: source.NewLocal(dir)}
	want := epoch(t, spanDataset(t, exact, dir, state, 0, inline))

	st := &rangeLog{Local: source.NewLocal(dir), failSpans: true}
	d := spanDataset(t, st, dir, state, 1<<20, inline)
	got := epoch(t, d)
	for k := range want {
		if !bytes.Equal(got[k], want[k]) {
			t.Fatalf("batch %d differs from the exact read's", k)
		}
	}
	if fetches, hits := d.SpanStats(); fetches == 0 || hits != 0 {
		t.Fatalf("%d spans fetched, %d hits; want failed fetches and no hits", fetches, hits)
	}
	if _, _, n := d.SegmentStats(); n == 0 {
		t.Fatal("nothing decoded")
	}

	// The store recovers: a new snapshot's epoch coalesces again.
	st.mu.Lock()
	st.failSpans = false
	st.mu.Unlock()
	d = spanDataset(t, st, dir, state, 1<<20, inline)
	epoch(t, d)
	if _, hits := d.SpanStats(); hits == 0 {
		t.Fatal("after the store recovered, no span was used")
	}
}

// A span is cut at the end of its object, and ranges outside the object
// are left to an exact read (which reports the truncated file).
func TestSpanReadsAtTheEndOfTheObject(t *testing.T) {
	dir, _ := spanFiles(t)
	st := &rangeLog{Local: source.NewLocal(dir)}
	size := statSize(t, st, "a.parquet")
	c := newSpanCache(256<<10, 4<<20)
	o := &object{ctx: context.Background(), store: st, key: "a.parquet", size: size, spans: c, spanObj: "a"}
	tail := readSpans(t, o, size-1000, 1000)
	want := make([]byte, 1000)
	if _, err := st.ReadAt(context.Background(), "a.parquet", want, size-1000); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tail, want) {
		t.Fatal("the last bytes differ")
	}
	if ok, _ := c.read(o, "a", []int64{size - 10}, [][]byte{make([]byte, 20)}, true); ok {
		t.Fatal("a range past the end was read from a span")
	}
	if ok, _ := c.read(o, "a", []int64{0}, [][]byte{make([]byte, 10)}, false); ok {
		t.Fatal("without fetch, a span neither cached nor in flight was used")
	}
}

// A file's short last row group after large ones is read exactly: its
// span would fetch much of the large one before it again.
func TestShortTailAfterLargeSegmentsIsExact(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 9100, 3000); err != nil {
		t.Fatal(err)
	}
	load(t, dir, Options{BatchSize: 500, StateDir: state})
	st := &rangeLog{Local: source.NewLocal(dir)}
	d := spanDataset(t, st, dir, state, 256<<10, inline)
	s := current(t, d)
	f := s.Files[0]
	obj := s.object(context.Background(), f, false)
	for si := range f.Index.Segments {
		_, n, _ := f.reader.SegmentExtent(obj, si)
		t.Logf("row group %d: %d bytes", si, n)
	}
	if _, n, _ := f.reader.SegmentExtent(obj, 0); n <= d.spans.small() {
		t.Fatalf("row groups of %d bytes are small for spans of %d: the test needs large ones", n, d.spans.size)
	}
	epoch(t, d)
	if fetches, _ := d.SpanStats(); fetches != 0 {
		t.Fatalf("%d spans fetched for a file whose only small row group follows a large one", fetches)
	}
	// No segment read through spans: the segment cache has all its budget.
	if d.segs.max != d.opts.SegmentCacheBytes {
		t.Fatalf("segment cache of %d bytes, want all %d: no span will be read", d.segs.max, d.opts.SegmentCacheBytes)
	}
	_, n := st.counts()
	if size := statSize(t, st, "a.parquet"); n > size {
		t.Fatalf("read %d bytes of a %d-byte file", n, size)
	}
}

// Files smaller than a span each leave a span behind them: the cache
// still holds at most its max (a small file's only span is never behind
// its own reader's position, but is once another file is read).
func TestSmallFilesStayWithinTheSpanCache(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	for i := range 40 {
		if err := sampledata.WriteParquet(filepath.Join(dir, fmt.Sprintf("f%03d.parquet", i)), 3000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	load(t, dir, Options{BatchSize: 500, StateDir: state})
	st := &rangeLog{Local: source.NewLocal(dir)}
	d := spanDataset(t, st, dir, state, 1<<20, inline)
	epoch(t, d)
	d.spans.mu.Lock()
	defer d.spans.mu.Unlock()
	if fetches, _ := d.SpanStats(); fetches < 20 || len(d.spans.items) > d.spans.max {
		t.Fatalf("%d spans fetched; %d held after the epoch, max %d", fetches, len(d.spans.items), d.spans.max)
	}
}

// With read-aheads running beside the reader (as in the daemon), a reader
// that joins a read-ahead whose span failed still gets its segment: the
// span's failure is nobody's error, the segment is read exactly.
func TestFailedSpanUnderAReaderIsReadExactly(t *testing.T) {
	dir, state := spanFiles(t)
	exact := &rangeLog{Local: source.NewLocal(dir)}
	want := epoch(t, spanDataset(t, exact, dir, state, 0, inline))
	st := &rangeLog{Local: source.NewLocal(dir), failSpans: true}
	got := epoch(t, spanDataset(t, st, dir, state, 1<<20, nil))
	for k := range want {
		if !bytes.Equal(got[k], want[k]) {
			t.Fatalf("batch %d differs from the exact read's", k)
		}
	}
}

// A reader at the end of one object's spans fetches the first spans of
// the next object too, which then serve its reads there; they are not
// evicted as behind the reader while it is still in the first object, and
// are once it reads elsewhere.
func TestSpansGoOnIntoTheNextObject(t *testing.T) {
	dir, _ := spanFiles(t)
	st := &rangeLog{Local: source.NewLocal(dir)}
	c := newSpanCache(256<<10, 2<<20) // 8 spans
	oa := &object{ctx: context.Background(), store: st, key: "a.parquet", size: statSize(t, st, "a.parquet"), spans: c, spanObj: "a"}
	ob := &object{ctx: context.Background(), store: st, key: "b.parquet", size: statSize(t, st, "b.parquet"), spans: c, spanObj: "b"}
	oa.next = func() (*object, int64) { return ob, 4 }

	readSpans(t, oa, oa.size-1000, 1000)
	c.mu.Lock()
	var ahead []*span
	for k, sp := range c.items {
		if k.obj == "b" {
			ahead = append(ahead, sp)
		}
	}
	c.mu.Unlock()
	if len(ahead) == 0 {
		t.Fatal("no span of the next object was fetched")
	}
	for _, sp := range ahead {
		<-sp.done
		if sp.err != nil {
			t.Fatal(sp.err)
		}
	}
	if len(ahead) > c.max-1 {
		t.Fatalf("%d spans of the next object fetched ahead, beside a's one; the cache holds %d", len(ahead), c.max)
	}

	// Still reading a: making room evicts a's spans behind its reader, not
	// b's ahead of it, even when they alone are over the cache's size.
	c.mu.Lock()
	max := c.max
	c.max = 1
	c.makeRoom("a", 1<<40)
	c.trim()
	c.max = max
	left := 0
	for k := range c.items {
		if k.obj == "b" {
			left++
		}
	}
	c.mu.Unlock()
	if left != len(ahead) {
		t.Fatalf("%d of the %d spans fetched ahead are left", left, len(ahead))
	}

	// b's first bytes come from its spans, in the right place.
	calls, _ := st.counts()
	got := make([]byte, 30000)
	if ok, err := c.read(ob, "b", []int64{4}, [][]byte{got}, false); !ok || err != nil {
		t.Fatalf("read of b's first bytes from spans: %v, %v", ok, err)
	}
	if n, _ := st.counts(); n != calls {
		t.Fatalf("b's first bytes took %d reads of the store", n-calls)
	}
	want := make([]byte, len(got))
	if _, err := st.ReadAt(context.Background(), "b.parquet", want, 4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("b's first bytes differ")
	}

	// A reader elsewhere: b's spans nobody read further are behind.
	ox := &object{ctx: context.Background(), store: st, key: "a.parquet", size: oa.size, spans: c, spanObj: "x"}
	readSpans(t, ox, 4, 1000)
	c.mu.Lock()
	defer c.mu.Unlock()
	countB := func() (n int) {
		for k := range c.items {
			if k.obj == "b" {
				n++
			}
		}
		return n
	}
	nb := countB()
	c.max = len(c.items) // full: room for x's next span must come from b's
	if !c.makeRoom("x", 0) {
		t.Fatal("no room made in a cache of spans nobody holds")
	}
	if countB() >= nb {
		t.Errorf("b's %d spans all kept: still ahead of a reader of another object", nb)
	}
	if _, ok := c.items[spanKey{"x", 0}]; !ok {
		t.Error("the reader's own span was evicted")
	}
}

// readSpans reads n bytes at off of o through its span cache, as a read
// in dataset order (fetching what it needs).
func readSpans(t *testing.T, o *object, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if ok, err := o.spans.read(o, o.spanObj, []int64{off}, [][]byte{b}, true); !ok || err != nil {
		t.Fatalf("read of [%d, +%d) of %s through spans: %v, %v", off, n, o.spanObj, ok, err)
	}
	return b
}

func statSize(t *testing.T, st source.Store, key string) int64 {
	t.Helper()
	info, err := st.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size
}

// twoObjects returns objects of a.parquet and b.parquet through one span
// cache of 8 spans of 256 KiB, a's next being b from nextFrom.
func twoObjects(t *testing.T, nextFrom int64) (c *spanCache, oa, ob *object) {
	t.Helper()
	dir, _ := spanFiles(t)
	st := &rangeLog{Local: source.NewLocal(dir)}
	c = newSpanCache(256<<10, 2<<20)
	oa = &object{ctx: context.Background(), store: st, key: "a.parquet", size: statSize(t, st, "a.parquet"), spans: c, spanObj: "a"}
	ob = &object{ctx: context.Background(), store: st, key: "b.parquet", size: statSize(t, st, "b.parquet"), spans: c, spanObj: "b"}
	oa.next = func() (*object, int64) { return ob, nextFrom }
	return c, oa, ob
}

// spansOf waits for the spans of obj in c to be fetched and returns them.
func spansOf(t *testing.T, c *spanCache, obj string) []*span {
	t.Helper()
	c.mu.Lock()
	var sps []*span
	for k, sp := range c.items {
		if k.obj == obj {
			sps = append(sps, sp)
		}
	}
	c.mu.Unlock()
	for _, sp := range sps {
		<-sp.done
		if sp.err != nil {
			t.Fatal(sp.err)
		}
	}
	return sps
}

// The next object's first segment may begin past its first span (row
// groups written out of byte order): its spans start there, none before
// (a span whose start was past its end made a negative-length buffer and
// crashed the daemon), and none at all when it begins past the data.
func TestNextObjectSpansStartAtItsFirstSegment(t *testing.T) {
	c, oa, _ := twoObjects(t, 300<<10)
	readSpans(t, oa, oa.size-1000, 1000)
	sps := spansOf(t, c, "b")
	if len(sps) == 0 {
		t.Fatal("no span of the next object")
	}
	for _, sp := range sps {
		if sp.start < 300<<10 || sp.start >= sp.end || int64(len(sp.data)) != sp.end-sp.start {
			t.Fatalf("span %d of b holds [%d, %d) in %d bytes", sp.key.i, sp.start, sp.end, len(sp.data))
		}
	}

	c, oa, ob := twoObjects(t, 0)
	oa.next = func() (*object, int64) { return ob, ob.size + 10 }
	readSpans(t, oa, oa.size-1000, 1000)
	if sps := spansOf(t, c, "b"); len(sps) != 0 {
		t.Fatalf("%d spans of an object whose segments begin past its end", len(sps))
	}
}

// Ranges of no bytes are served (empty) beside others, wherever they lie.
func TestSpanViewOfEmptyRanges(t *testing.T) {
	c, oa, _ := twoObjects(t, 4)
	views, ok, err := c.view(oa, "a", []int64{100, 200}, []int64{0, 50}, true, nil)
	if !ok || err != nil {
		t.Fatalf("view: %v, %v", ok, err)
	}
	if len(views) != 2 || len(views[0]) != 0 || len(views[1]) != 50 {
		t.Fatalf("views of %d ranges: %d and %d bytes", len(views), len(views[0]), len(views[1]))
	}
}

// failStore fails every read of spans (fewer than 4 ranges) and counts
// them.
type failStore struct {
	*source.Local
	mu    sync.Mutex
	spans int
}

func (f *failStore) ReadRanges(ctx context.Context, key string, ranges []source.Range) error {
	if len(ranges) < 4 {
		f.mu.Lock()
		f.spans++
		f.mu.Unlock()
		return errSpan
	}
	return f.Local.ReadRanges(ctx, key, ranges)
}

// A segment read in order whose span fails is read exactly at once: its
// span is fetched once (the view's failure must not send the exact read
// through the spans again).
func TestFailedSpanIsFetchedOnce(t *testing.T) {
	dir, state := spanFiles(t)
	st := &failStore{Local: source.NewLocal(dir)}
	d := spanDataset(t, st, dir, state, 1<<20, nil)
	s := current(t, d)
	f := s.Files[0]
	obj := s.object(context.Background(), f, false)
	if _, _, obj.spanFetch = s.spanned(obj, f, 3); !obj.spanFetch {
		t.Fatal("segment 3 is not read through spans")
	}
	d.spans.mu.Lock()
	d.spans.max = 1 // no span fetched ahead
	d.spans.mu.Unlock()
	if _, err := f.reader.ReadSegment(context.Background(), obj, 3); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.spans != 1 {
		t.Fatalf("%d span fetches for one segment's read", st.spans)
	}
}

// A span cache out of use keeps nothing: spans held or in flight when it
// was put out of use go once let go or fetched.
func TestDisabledSpanCacheKeepsNothing(t *testing.T) {
	c, oa, _ := twoObjects(t, 4)
	release := c.prefetch(oa, "a", 4, 100<<10)
	readSpans(t, oa, 300<<10, 1000)
	c.enable(false)
	release()
	spansOf(t, c, "a")
	spansOf(t, c, "b") // fetched ahead into the next object
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.items); n != 0 {
		t.Fatalf("%d spans kept by a span cache out of use", n)
	}
}

// A reader that stopped at a's end leaves b's spans fetched ahead; a new
// reader of a from its start is not held back by them: its spans are
// read ahead as usual.
func TestStaleAheadSpansYieldToANewReader(t *testing.T) {
	c, oa, _ := twoObjects(t, 4)
	readSpans(t, oa, oa.size-1000, 1000)
	spansOf(t, c, "b")
	readSpans(t, oa, 4, 1000)
	// a: 6 spans; the new reader's own, the last (cached), and those
	// between, ahead of it.
	if n := len(spansOf(t, c, "a")); n < 5 {
		t.Fatalf("%d of a's 6 spans cached or in flight after a new reader's first read: no read-ahead beside its own", n)
	}
}

// b's position from an earlier epoch does not make its spans fetched
// ahead of a's reader count as behind: they outlive the cache going over
// its size while a read-ahead holds more.
func TestAheadSpansOutliveAnEarlierEpochsPosition(t *testing.T) {
	c, oa, ob := twoObjects(t, 4)
	readSpans(t, ob, ob.size-1000, 1000)
	spansOf(t, c, "b")
	c.enable(false) // empty
	c.enable(true)
	readSpans(t, oa, oa.size-1000, 1000)
	nb := len(spansOf(t, c, "b"))
	release := c.prefetch(oa, "a", 200<<10, 100<<10) // a's first two spans: over max while held
	spansOf(t, c, "a")
	release()
	if n := len(spansOf(t, c, "b")); n < nb {
		t.Fatalf("b's spans fetched ahead: %d, then %d once the cache went over its size", nb, n)
	}
}

// A range in one span is served as a view of the span's bytes (no copy),
// capped so that appending to it cannot write into the span; a range
// across two spans is copied. Both hold the object's bytes.
func TestSpanViews(t *testing.T) {
	dir, _ := spanFiles(t)
	st := &rangeLog{Local: source.NewLocal(dir)}
	size := statSize(t, st, "a.parquet")
	if size < 300<<10 {
		t.Fatalf("a.parquet is %d bytes: the test needs more than a span", size)
	}
	c := newSpanCache(256<<10, 2<<20)
	o := &object{ctx: context.Background(), store: st, key: "a.parquet", size: size, spans: c, spanObj: "a"}
	offs := []int64{1000, 256<<10 - 500}
	lens := []int64{5000, 1000}
	views, ok, err := c.view(o, "a", offs, lens, true, nil)
	if !ok || err != nil {
		t.Fatalf("view: %v, %v", ok, err)
	}
	for i, v := range views {
		want := make([]byte, lens[i])
		if _, err := st.ReadAt(context.Background(), "a.parquet", want, offs[i]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(v, want) {
			t.Fatalf("range %d differs from the object's bytes", i)
		}
	}
	c.mu.Lock()
	sp := c.items[spanKey{"a", 0}]
	c.mu.Unlock()
	if &views[0][0] != &sp.data[offs[0]-sp.start] {
		t.Fatal("a range within one span was copied")
	}
	if cap(views[0]) != len(views[0]) {
		t.Fatalf("a view's capacity is %d for %d bytes: appending would write into the span", cap(views[0]), len(views[0]))
	}
	if &views[1][0] == &sp.data[offs[1]-sp.start] {
		t.Fatal("a range across two spans points into the first")
	}
}

// gatedLog is a local store whose exact reads of a row group (12 column
// chunks) wait, up to a second, for a read of spans (fewer ranges) to
// have begun: whether the spans ahead are fetched while a reader's first
// segment is read, or only after.
type gatedLog struct {
	*source.Local
	once      sync.Once
	spans     chan struct{} // closed at the first read of spans
	spanFirst atomic.Bool   // an exact read saw spans being read
}

func (g *gatedLog) ReadRanges(ctx context.Context, key string, ranges []source.Range) error {
	if len(ranges) < 4 {
		g.once.Do(func() { close(g.spans) })
	} else {
		select {
		case <-g.spans:
			g.spanFirst.Store(true)
		case <-time.After(time.Second):
		}
	}
	return g.Local.ReadRanges(ctx, key, ranges)
}

// A reader's first batch, whose segment is not decoded yet, has the spans
// of the segments after it fetched while that segment is read, not after.
func TestFirstBatchStartsTheSpansAhead(t *testing.T) {
	dir, state := spanFiles(t)
	st := &gatedLog{Local: source.NewLocal(dir), spans: make(chan struct{})}
	s := current(t, spanDataset(t, st, dir, state, 1<<20, nil))
	if _, err := s.Build(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if !st.spanFirst.Load() {
		t.Fatal("the first segment's exact read went alone: no span ahead was being fetched")
	}
}

// So does a view's in natural order (npz files; a rank's share).
func TestNaturalViewsFirstFileStartsTheSpansAhead(t *testing.T) {
	dir, state := spanFiles(t)
	st := &gatedLog{Local: source.NewLocal(dir), spans: make(chan struct{})}
	s := current(t, spanDataset(t, st, dir, state, 1<<20, nil))
	if _, err := mustView(t, s, "format=npz").Build(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if !st.spanFirst.Load() {
		t.Fatal("the first segment's exact read went alone: no span ahead was being fetched")
	}
}
