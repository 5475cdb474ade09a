package dataset

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/zenithfs/zenithfs/internal/sampledata"
)

// blockDataset is a Parquet file of 1600 rows in batches of 100 (16 batches).
func blockDataset(t *testing.T, opts Options) *Dataset {
	t.Helper()
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 1600, 200); err != nil {
		t.Fatal(err)
	}
	opts.BatchSize, opts.Workers = 100, 2
	return load(t, dir, opts)
}

func currentView(t *testing.T, d *Dataset, spec string) *View {
	t.Helper()
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	return mustView(t, s, spec)
}

// The ranks of a block shuffle (and its npz view) read the same blocks:
// each block is built once for all of them, and they still get the
// epoch's files between them.
func TestBlockIsBuiltOnceForEveryRank(t *testing.T) {
	d := blockDataset(t, Options{})
	const W = 4
	all := currentView(t, d, "seed=2,epoch=1,shuffle=block:4")
	want := map[int64]int{}
	for _, ids := range viewIDs(t, all) {
		for _, id := range ids {
			want[id]++
		}
	}
	if got := d.BlockStats().Builds; got != 4 {
		t.Fatalf("16 batches in blocks of 4 built %d blocks, want 4", got)
	}
	got := map[int64]int{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for r := range W {
		for _, f := range []string{"arrow", "npz"} {
			v := currentView(t, d, "seed=2,epoch=1,shuffle=block:4,world=4,format="+f+",rank="+string(rune('0'+r)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range v.NumBatches() {
					if _, err := v.Build(context.Background(), k); err != nil {
						t.Error(err)
						return
					}
					if f == "arrow" {
						mu.Lock()
						for _, id := range v.RowIndices(k) {
							got[id]++
						}
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	if b := d.BlockStats().Builds; b != 4 {
		t.Fatalf("8 views of one block shuffle, read after the whole epoch: %d block builds in all, want the epoch's 4 (the blocks stay built)", b)
	}
	if len(got) != len(want) {
		t.Fatalf("the ranks got %d distinct rows, the epoch has %d", len(got), len(want))
	}
	for id, n := range got {
		if n != 1 || want[id] != 1 {
			t.Fatalf("row %d: %d times across ranks, %d in the epoch", id, n, want[id])
		}
	}
}

// Built blocks stay within the room the dataset gives them, and what they
// hold is reported (Reserve) as it changes, so the caller can lend it
// from another share of the budget.
func TestBuiltBlocksStayWithinTheirRoom(t *testing.T) {
	var mu sync.Mutex
	var reserved, peak int64
	opts := Options{Reserve: func(d int64) {
		mu.Lock()
		reserved += d
		peak = max(peak, reserved)
		mu.Unlock()
	}}
	probe := blockDataset(t, Options{})
	v := currentView(t, probe, "seed=1,epoch=0,shuffle=block:4")
	block := v.blockEstimate(0)
	opts.BlockBytes = 3*block + block/2 // one block read, the next built
	d := blockDataset(t, opts)
	for _, spec := range []string{"seed=1,epoch=0,shuffle=block:4", "seed=1,epoch=1,shuffle=block:4", "seed=1,epoch=0,shuffle=block:4"} {
		v := currentView(t, d, spec)
		for k := range v.NumBatches() {
			if _, err := v.Build(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := d.BlockStats()
	mu.Lock()
	defer mu.Unlock()
	if peak > opts.BlockBytes || st.Bytes > opts.BlockBytes {
		t.Fatalf("blocks held up to %d bytes (now %d), room %d", peak, st.Bytes, opts.BlockBytes)
	}
	if reserved != st.Bytes || st.Bytes <= 0 {
		t.Fatalf("reserved %d, blocks hold %d", reserved, st.Bytes)
	}
	// Two epochs, then the first again: its blocks were dropped for the
	// second's and built again.
	if st.Builds != 12 {
		t.Fatalf("%d block builds, want 12 (4 per epoch read, the first epoch's dropped before it is read again)", st.Builds)
	}
}

// A block size whose working set cannot fit is refused with the reason and
// the largest block size that fits.
func TestBlockShuffleTooBigIsRefused(t *testing.T) {
	probe := blockDataset(t, Options{})
	batch := currentView(t, probe, "seed=1,epoch=0,shuffle=block:1").blockEstimate(0)
	d := blockDataset(t, Options{BlockBytes: 3*2*batch + batch})
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	for spec, ok := range map[string]bool{"shuffle=block:2": true, "shuffle=block:3": false, "shuffle=block:16,rank=1,world=2": false, "shuffle=batch": true} {
		sp, err := ParseViewSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.View(sp)
		if ok != (err == nil) {
			t.Fatalf("%s: err %v, want refused=%v", spec, err, !ok)
		}
		if !ok && (!errors.Is(err, ErrBadView) || !strings.Contains(err.Error(), "use shuffle=block:2 or less")) {
			t.Fatalf("%s: %v", spec, err)
		}
	}
}

// fakeBlock builds a "block" of n one-row records for the memo tests,
// counting its builds.
func fakeBlock(n int, builds *int, err error) func(context.Context) ([]arrow.RecordBatch, error) {
	return func(context.Context) ([]arrow.RecordBatch, error) {
		*builds++
		if err != nil {
			return nil, err
		}
		recs := make([]arrow.RecordBatch, n)
		for i := range recs {
			b := array.NewInt64Builder(memory.DefaultAllocator)
			b.Append(int64(i))
			arr := b.NewArray()
			recs[i] = array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{arr}, 1)
		}
		return recs, nil
	}
}

// A prefetch never drops a block the readers are still cutting files from
// (its files not all handed out, touched lately): it is skipped at once,
// as a skip (prefetch/ neither counts nor logs it), never left waiting; a
// read builds it, dropping what it must; and once the old block goes
// stale (a node serving some ranks only never hands out all its files) a
// prefetch may drop it.
func TestPrefetchOfABlockSkipsRatherThanWaits(t *testing.T) {
	var reserved int64
	m := newBlockMemo(0, func(d int64) { reserved += d })
	var builds int
	recs, _ := fakeBlock(1, &builds, nil)(context.Background())
	one := recordBytes(recs[0])
	builds = 0
	m.max = 2 * 2 * one // room for two 2-file blocks
	demand := WithBuildNotice(context.Background(), func() {})
	spec := context.Background()
	est := func() int64 { return one } // charged 2×est, one 2-file block, while building
	m.stale = time.Hour                // nothing goes stale until the test says so

	for _, key := range []string{"b0", "b1"} {
		if _, err := m.file(demand, key, 0, est, fakeBlock(2, &builds, nil)); err != nil {
			t.Fatal(err)
		}
	}
	// b0 and b1 each have a file nobody took: no room for b2's prefetch.
	_, err := m.file(spec, "b2", 0, est, fakeBlock(2, &builds, nil))
	var sk interface{ Skipped() bool }
	if !errors.Is(err, errNoRoom) || !errors.As(err, &sk) || !sk.Skipped() {
		t.Fatalf("prefetch of b2 with b0 and b1 half read: %v, want errNoRoom (a skip)", err)
	}
	if builds != 2 {
		t.Fatalf("%d builds, want 2: the skipped prefetch built nothing", builds)
	}
	// A reader of b2 builds it, dropping b0 (least recently used).
	if _, err := m.file(demand, "b2", 1, est, fakeBlock(2, &builds, nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.calls["b0"]; ok || builds != 3 || m.bytes > m.max || reserved != m.bytes {
		t.Fatalf("after b2's read: b0 kept %v, %d builds, %d bytes held (max %d), %d reserved", ok, builds, m.bytes, m.max, reserved)
	}
	// Once b1 is stale, a prefetch of b3 may drop it.
	m.stale = 0
	if _, err := m.file(spec, "b3", 0, est, fakeBlock(2, &builds, nil)); err != nil {
		t.Fatalf("prefetch of b3 with b1 stale: %v", err)
	}
	if _, ok := m.calls["b1"]; ok || m.bytes > m.max || reserved != m.bytes {
		t.Fatalf("b1 kept %v, %d bytes held (max %d), %d reserved", ok, m.bytes, m.max, reserved)
	}
}

// A prefetch's failure is not a reader's answer: a read that waited on a
// failed prefetch build tries once itself.
func TestReaderRetriesAFailedPrefetchBuild(t *testing.T) {
	m := newBlockMemo(1<<30, nil)
	demand := WithBuildNotice(context.Background(), func() {})
	started, release := make(chan struct{}), make(chan struct{})
	var builds int
	failing := func(ctx context.Context) ([]arrow.RecordBatch, error) {
		builds++
		close(started)
		<-release
		return nil, errors.New("S3 unreachable")
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.file(context.Background(), "b0", 0, func() int64 { return 1 }, failing)
		done <- err
	}()
	<-started
	got := make(chan error, 1)
	var readerBuilds int
	go func() {
		_, err := m.file(demand, "b0", 1, func() int64 { return 1 }, fakeBlock(2, &readerBuilds, nil))
		got <- err
	}()
	time.Sleep(50 * time.Millisecond) // the reader waits on the prefetch
	close(release)
	if err := <-done; err == nil {
		t.Fatal("the prefetch's build did not fail")
	}
	if err := <-got; err != nil || readerBuilds != 1 {
		t.Fatalf("reader: %v after %d builds of its own, want the block built once by it", err, readerBuilds)
	}
}
