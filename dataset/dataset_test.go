package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/source"
)

func load(t *testing.T, dir string, opts Options) *Dataset {
	t.Helper()
	d := New(filepath.Base(dir), Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir}, opts)
	if err := d.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func decode(t *testing.T, b []byte) arrow.RecordBatch {
	t.Helper()
	r, err := ipc.NewFileReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not an Arrow IPC file: %v", err)
	}
	if r.NumRecords() != 1 {
		t.Fatalf("want 1 record batch, got %d", r.NumRecords())
	}
	rec, err := r.RecordBatch(0)
	if err != nil {
		t.Fatal(err)
	}
	rec.Retain()
	return rec
}

func TestBatchesMatchSourcesInEveryFormat(t *testing.T) {
	dirs, err := sampledata.WriteAll(t.TempDir(), 2500)
	if err != nil {
		t.Fatal(err)
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			d := load(t, dir, Options{BatchSize: 300, Workers: 2, StateDir: t.TempDir(), Format: format.Options{SegmentRows: 400}})
			s, err := d.Current()
			if err != nil {
				t.Fatal(err)
			}
			if s.Rows != 2500 || s.NumBatches() != 9 {
				t.Fatalf("rows %d batches %d, want 2500 and 9", s.Rows, s.NumBatches())
			}
			for k := 0; k < s.NumBatches(); k++ {
				b, err := s.Build(context.Background(), k)
				if err != nil {
					t.Fatal(err)
				}
				if sz, _ := s.Size(k); sz != int64(len(b)) {
					t.Fatalf("batch %d: size %d, built %d", k, sz, len(b))
				}
				rec := decode(t, b)
				lo, hi := s.BatchRows(k)
				if rec.NumRows() != hi-lo {
					t.Fatalf("batch %d: %d rows, want %d", k, rec.NumRows(), hi-lo)
				}
				switch name {
				case "parquet", "arrow":
					want := sampledata.MixedRecord(lo, hi-lo)
					for c := 0; c < int(want.NumCols()); c++ {
						if !array.Equal(want.Column(c), rec.Column(c)) {
							t.Fatalf("batch %d column %s differs:\n got %v\nwant %v", k, want.ColumnName(c), rec.Column(c), want.Column(c))
						}
					}
					if !arrow.TypeEqual(rec.Schema().Field(6).Type, want.Schema().Field(6).Type) {
						t.Fatalf("timestamp type lost: %s", rec.Schema().Field(6).Type)
					}
				default:
					ids := rec.Column(0).(*array.Int64)
					for i := 0; i < ids.Len(); i++ {
						if ids.Value(i) != lo+int64(i) {
							t.Fatalf("batch %d row %d: id %d", k, i, ids.Value(i))
						}
					}
				}
			}
		})
	}
}

func TestSecondLoadUsesPersistedIndex(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 3000, 1000); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	d1 := load(t, dir, Options{BatchSize: 128, StateDir: state})
	s1, _ := d1.Current()
	if s1.FromCache {
		t.Fatal("first load claims a cached index")
	}
	d2 := load(t, dir, Options{BatchSize: 128, StateDir: state})
	s2, _ := d2.Current()
	if !s2.FromCache || s2.ID != s1.ID {
		t.Fatalf("second load: from cache %v, ids %s vs %s", s2.FromCache, s2.ID, s1.ID)
	}
	d3 := load(t, dir, Options{BatchSize: 100, StateDir: state})
	if s3, _ := d3.Current(); s3.FromCache {
		t.Fatal("a different batch size reused the sizes of another")
	}
}

func TestChangedSourceIsReindexed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.csv")
	if err := sampledata.WriteCSV(p, 0, 100); err != nil {
		t.Fatal(err)
	}
	d := load(t, dir, Options{BatchSize: 64, VerifyAfterBuild: true})
	s1, _ := d.Current()
	if err := sampledata.WriteCSV(p, 1000, 150); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if _, err := s1.Build(context.Background(), 0); !errors.Is(err, ErrChanged) {
		t.Fatalf("building from a changed source: err %v, want ErrChanged", err)
	}
	s2, err := d.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s2.Key(0) == s1.Key(0) {
		t.Fatal("a changed source kept its cache key: the cache could serve old bytes")
	}
	if s2.Gen == s1.Gen || s2.Rows != 150 {
		t.Fatalf("after change: gen %d→%d rows %d", s1.Gen, s2.Gen, s2.Rows)
	}
	rec := decode(t, must(s2.Build(context.Background(), 0)))
	if rec.Column(0).(*array.Int64).Value(0) != 1000 {
		t.Fatal("new snapshot serves old rows")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestCorruptRowGroupFailsOnlyItsBatches(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.parquet")
	if err := sampledata.WriteParquet(p, 1000, 100); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	mid := len(b) / 2
	for i := mid; i < mid+64; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	d := load(t, dir, Options{BatchSize: 100})
	s, err := d.Current()
	if err != nil {
		t.Fatalf("a corrupt row group failed the whole dataset: %v", err)
	}
	bad := s.BatchErrors()
	if len(bad) == 0 || len(bad) > 2 {
		t.Fatalf("%d batches failed, want the one or two over the damaged bytes: %v", len(bad), bad)
	}
	for k := 0; k < s.NumBatches(); k++ {
		_, err := s.Build(context.Background(), k)
		if _, isBad := bad[k]; isBad != (err != nil) {
			t.Fatalf("batch %d: build error %v, index error %v", k, err, bad[k])
		}
	}
}

// twoIndexedFiles writes a.parquet and b.parquet (3000 rows each, row
// groups of 1000) and indexes them with batches of 500 rows into a state
// directory, so that a later load decodes nothing until asked.
func twoIndexedFiles(t *testing.T) (dir, state string) {
	t.Helper()
	dir, state = t.TempDir(), t.TempDir()
	for _, name := range []string{"a.parquet", "b.parquet"} {
		if err := sampledata.WriteParquet(filepath.Join(dir, name), 3000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	load(t, dir, Options{BatchSize: 500, StateDir: state}) // the index pass decodes everything
	return dir, state
}

func TestBuildReadsTheNextSegmentAhead(t *testing.T) {
	dir, state := twoIndexedFiles(t)
	var ran int
	d := load(t, dir, Options{BatchSize: 500, StateDir: state, Background: func(f func()) { ran++; f() }})
	s, _ := d.Current()
	if !s.FromCache {
		t.Fatal("second load did not reuse the index")
	}
	decodes := func() uint64 { _, m, _ := d.SegmentStats(); return m }
	ctx := context.Background()
	if _, err := s.Build(ctx, 0); err != nil { // a's row group 0, and 1 ahead
		t.Fatal(err)
	}
	if decodes() != 2 || ran != 1 {
		t.Fatalf("after batch 0: %d decodes, %d read-aheads; want 2, 1", decodes(), ran)
	}
	if _, err := s.Build(ctx, 2); err != nil { // row group 1 was read ahead; 2 now is
		t.Fatal(err)
	}
	if decodes() != 3 {
		t.Fatalf("after batch 2: %d decodes, want 3 (row group 1 from the read-ahead)", decodes())
	}
	if _, err := s.Build(ctx, 5); err != nil { // a's last batch: b's first row group ahead
		t.Fatal(err)
	}
	if decodes() != 4 {
		t.Fatalf("after batch 5: %d decodes, want 4 (b's row group 0 ahead)", decodes())
	}
	if _, err := s.Build(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if decodes() != 5 {
		t.Fatalf("after batch 6: %d decodes, want 5", decodes())
	}
	if _, err := s.Build(ctx, s.NumBatches()-1); err != nil { // the last batch: nothing after it
		t.Fatal(err)
	}
	before := ran
	if _, err := s.Build(ctx, s.NumBatches()-1); err != nil {
		t.Fatal(err)
	}
	if ran != before {
		t.Fatal("the last batch read ahead past the end")
	}
}

// With ReadAhead n, a build starts decoding the n segments after its own
// (across files), each once, and no more than the segment cache holds
// beside the segment in use.
func TestBuildReadsSeveralSegmentsAhead(t *testing.T) {
	dir, state := twoIndexedFiles(t)
	var ran int
	bg := func(f func()) { ran++; f() } // runs in the caller
	d := load(t, dir, Options{BatchSize: 500, StateDir: state, Background: bg, ReadAhead: 3})
	s, _ := d.Current()
	decodes := func() uint64 { _, m, _ := d.SegmentStats(); return m }
	ctx := context.Background()
	if _, err := s.Build(ctx, 0); err != nil { // a's row group 0; 1, 2 and b's 0 ahead
		t.Fatal(err)
	}
	if decodes() != 4 || ran != 3 {
		t.Fatalf("after batch 0: %d decodes, %d read-aheads; want 4, 3", decodes(), ran)
	}
	if _, err := s.Build(ctx, 2); err != nil { // row group 1, read ahead; b's 1 now is
		t.Fatal(err)
	}
	if decodes() != 5 || ran != 4 {
		t.Fatalf("after batch 2: %d decodes, %d read-aheads; want 5, 4", decodes(), ran)
	}
	for k := 0; k < s.NumBatches(); k++ {
		if _, err := s.Build(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if decodes() != 6 {
		t.Fatalf("an epoch decoded %d segments, want each of the 6 once", decodes())
	}

	// A segment budget that holds two segments: the one in use and one
	// read ahead, whatever ReadAhead says.
	_, _, one := d.SegmentStats()
	one /= 6
	ran = 0
	d = load(t, dir, Options{BatchSize: 500, StateDir: state, Background: bg, ReadAhead: 3, SegmentCacheBytes: 2*one + one/2})
	s, _ = d.Current()
	if _, err := s.Build(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if ran != 1 {
		t.Fatalf("with room for one segment ahead, %d were read ahead", ran)
	}
}

// A row group bigger than the whole segment budget is still kept (alone)
// while the batches cut from it are built: each is decoded once, not once
// per batch.
func TestSegmentOverBudgetDecodesOnce(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 3000, 1000); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	opts := Options{BatchSize: 100, StateDir: state, SegmentCacheBytes: 1}
	load(t, dir, opts) // the index pass
	d := load(t, dir, opts)
	s, _ := d.Current()
	_, before, _ := d.SegmentStats()
	for k := 0; k < s.NumBatches(); k++ {
		if _, err := s.Build(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	_, after, bytes := d.SegmentStats()
	if after-before != 3 {
		t.Fatalf("%d decodes for 30 batches of 3 row groups over budget, want 3", after-before)
	}
	if bytes <= 1 {
		t.Fatalf("segment cache holds %d bytes, want the last row group", bytes)
	}
}

// A source file deleted while mounted is a change too: building one of
// its batches fails with ErrChanged (so the mount checks the dataset
// again at once), and the next snapshot serves what is left.
func TestDeletedSourceIsAChange(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := sampledata.WriteCSV(filepath.Join(dir, "b.csv"), 100, 100); err != nil {
		t.Fatal(err)
	}
	d := load(t, dir, Options{BatchSize: 50, VerifyAfterBuild: true})
	s1, _ := d.Current()
	if err := os.Remove(filepath.Join(dir, "b.csv")); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Build(context.Background(), 3); !errors.Is(err, ErrChanged) {
		t.Fatalf("building a batch of a deleted file: err %v, want ErrChanged", err)
	}
	s2, err := d.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s2.Rows != 100 || s2.Gen == s1.Gen {
		t.Fatalf("after the delete: %d rows, gen %d→%d", s2.Rows, s1.Gen, s2.Gen)
	}
}

// A load the caller gave up on (an interrupted open) changes nothing: the
// dataset keeps its state and its reason, and the next check looks again.
func TestCancelledLoadKeepsTheState(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 10); err != nil {
		t.Fatal(err)
	}
	if err := sampledata.WriteJSONL(filepath.Join(dir, "b.jsonl"), 0, 10); err != nil {
		t.Fatal(err)
	}
	d := New("m", Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir}, Options{BatchSize: 4})
	first := d.Load(context.Background())
	if first == nil {
		t.Fatal("a CSV and a JSONL file of different schemas loaded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Load(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled load: %v", err)
	}
	if _, err := d.Recheck(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled recheck: %v", err)
	}
	if err := d.Err(); err == nil || err.Error() != first.Error() {
		t.Fatalf("after cancelled loads the reason is %v, want %v", err, first)
	}
	if err := os.Remove(filepath.Join(dir, "b.jsonl")); err != nil {
		t.Fatal(err)
	}
	if s, err := d.Check(context.Background()); err != nil || s.Rows != 10 {
		t.Fatalf("the next check after a cancelled one: %v", err)
	}
}

func TestIndexProgressIsReportedWhileIndexing(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"a.csv", "b.csv"} {
		if err := sampledata.WriteCSV(filepath.Join(dir, name), int64(i*100), 100); err != nil {
			t.Fatal(err)
		}
	}
	var d *Dataset
	var seen []IndexProgress
	d = New("p", Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir},
		Options{BatchSize: 50, Workers: 1, Progress: func(string, int64, int64) { seen = append(seen, d.Progress()) }})
	if err := d.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 4 {
		t.Fatalf("%d progress calls, want one per batch (4)", len(seen))
	}
	for i, p := range seen {
		if !p.Running || p.FilesDone != 2 || p.FilesTotal != 2 || p.BatchesDone != int64(i+1) || p.BatchesTotal != 4 {
			t.Errorf("progress at batch %d: %+v", i, p)
		}
	}
	if p := d.Progress(); p.Running || p.BatchesDone != 4 {
		t.Errorf("after the pass: %+v", p)
	}
}

// failingReads is a local store whose reads fail with errIO after the
// first (the format sniffing the file's head), so that the decoder's own
// reads fail.
type failingReads struct {
	*source.Local
	calls atomic.Int32
}

var errIO = errors.New("simulated I/O error")

func (f *failingReads) ReadAt(ctx context.Context, key string, p []byte, off int64) (int, error) {
	if f.calls.Add(1) > 1 {
		return 0, fmt.Errorf("read %s: %w", key, errIO)
	}
	return f.Local.ReadAt(ctx, key, p, off)
}

// A read that fails is the reason a load fails, not a "corrupt file": the
// decoders flatten their read errors into ErrCorrupt.
func TestReadErrorsAreNotCorruption(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 10); err != nil {
		t.Fatal(err)
	}
	st := &failingReads{Local: source.NewLocal(dir)}
	d := New("f", Location{Store: st, Prefix: true, StoreID: "file:" + dir}, Options{BatchSize: 4})
	err := d.Load(context.Background())
	if !errors.Is(err, errIO) {
		t.Fatalf("load with failing reads: %v, want it to wrap the read error", err)
	}
	if errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("load with failing reads says corrupt: %v", err)
	}
}

// TestIndexKeyNamesArrowGo checks that persisted indexes are keyed by the
// arrow-go version the binary encodes with, so a build on another version
// does not trust their batch sizes (cmd/zenithfs checks the built daemon).
func TestIndexKeyNamesArrowGo(t *testing.T) {
	build := func(ver string, repl *debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{Deps: []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.1.0"}, {Path: arrowModule, Version: ver, Replace: repl}}}
	}
	a, b := indexKeyOf(build("v18.8.0", nil)), indexKeyOf(build("v18.9.0", nil))
	if a == b || !strings.HasPrefix(a, indexVersion) || !strings.Contains(a, "v18.8.0") {
		t.Fatalf("keys %q and %q: want indexVersion and each arrow-go version", a, b)
	}
	if c := indexKeyOf(build("v18.8.0", &debug.Module{Path: "../arrow-go", Version: ""})); c == a {
		t.Fatalf("a replaced arrow-go gives the same key %q", c)
	}
	if u := indexKeyOf(nil); u == a || !strings.HasPrefix(u, indexVersion) {
		t.Fatalf("no build information: key %q", u)
	}
}

// listFails is a local store whose listings fail while fail is set (an S3
// endpoint that went away).
type listFails struct {
	*source.Local
	fail atomic.Bool
}

func (l *listFails) List(ctx context.Context, prefix string) ([]source.Info, error) {
	if l.fail.Load() {
		return nil, fmt.Errorf("list %q: %w", prefix, errIO)
	}
	return l.Local.List(ctx, prefix)
}

// A check that cannot list the sources keeps the current snapshot (nothing
// says they changed): its batches are still built, the reason is kept,
// and once listing works again the same snapshot goes on, not re-indexed.
func TestFailedListingKeepsTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 100); err != nil {
		t.Fatal(err)
	}
	st := &listFails{Local: source.NewLocal(dir)}
	d := New("l", Location{Store: st, Prefix: true, StoreID: "file:" + dir}, Options{BatchSize: 10})
	ctx := context.Background()
	if err := d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := d.Current()
	st.fail.Store(true)
	s, err := d.Check(ctx)
	if err != nil || s != before {
		t.Fatalf("check with a failing listing: %v (snapshot kept: %v)", err, s == before)
	}
	if err := d.ListErr(); !errors.Is(err, errIO) {
		t.Fatalf("ListErr = %v, want the listing's error", err)
	}
	if _, err := s.Build(ctx, 3); err != nil {
		t.Fatalf("build while listing fails: %v", err)
	}
	if cur, err := d.Current(); err != nil || cur != before {
		t.Fatalf("Current while listing fails: %v", err)
	}
	st.fail.Store(false)
	s, err = d.Check(ctx)
	if err != nil || s != before || d.ListErr() != nil {
		t.Fatalf("after listing works again: %v, same snapshot %v, ListErr %v", err, s == before, d.ListErr())
	}
}
