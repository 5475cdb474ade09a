package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/source"
)

func TestParseViewSpec(t *testing.T) {
	good := []struct{ in, canon string }{
		{"seed=7,epoch=3", "seed=7,epoch=3"},
		{"epoch=3,seed=7", "seed=7,epoch=3"},
		{"seed=7", "seed=7,epoch=0"},
		{"seed=7,epoch=3,shuffle=batch", "seed=7,epoch=3"},
		{"shuffle=block:16,epoch=1,seed=2", "seed=2,epoch=1,shuffle=block:16"},
		{"rank=1,world=4", "rank=1,world=4"},
		{"world=4,rank=3,seed=0,epoch=9,format=npz", "seed=0,epoch=9,rank=3,world=4,format=npz"},
		{"format=npz", "format=npz"},
		{"format=arrow", "natural"},
		{"seed=18446744073709551615,epoch=0", "seed=18446744073709551615,epoch=0"},
		{"seed=007,epoch=01", "seed=7,epoch=1"},
		{"shuffle=batch", "seed=0,epoch=0"},
		{"shuffle=block:4", "seed=0,epoch=0,shuffle=block:4"},
		{"epoch=5", "seed=0,epoch=5"},
		{"epoch=5,shuffle=block:2,rank=0,world=2", "seed=0,epoch=5,shuffle=block:2,rank=0,world=2"},
	}
	for _, c := range good {
		v, err := ParseViewSpec(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if v.String() != c.canon {
			t.Errorf("%s: canonical %q, want %q", c.in, v.String(), c.canon)
		}
		if again, err := ParseViewSpec(v.String()); c.canon != "natural" && (err != nil || again != v) {
			t.Errorf("%s: canonical form does not parse back: %+v %v", c.in, again, err)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"seed", "not key=value"},
		{"=1", "not key=value"},
		{"foo=1", `unknown key "foo"`},
		{"seed=1,seed=2", `duplicate key "seed"`},
		{"seed=-1", "not a decimal number"},
		{"seed=+1", "not a decimal number"},
		{"seed=0x10", "not a decimal number"},
		{"seed=", "empty number"},
		{"seed=99999999999999999999", "out of range"},
		{"seed=1,shuffle=rows", "want batch or block:K"},
		{"seed=1,shuffle=block:0", "block size"},
		{"seed=1,shuffle=block:x", "not a decimal number"},
		{"rank=1", "rank and world go together"},
		{"world=2", "rank and world go together"},
		{"rank=2,world=2", "rank 2 is not below world 2"},
		{"rank=0,world=0", "at least 1"},
		{"format=csv", "want arrow or npz"},
		{"seed=1,,epoch=2", "not key=value"},
	}
	for _, c := range bad {
		_, err := ParseViewSpec(c.in)
		if !errors.Is(err, ErrBadView) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%q: err %v, want ErrBadView saying %q", c.in, err, c.why)
		}
	}
}

func viewSnapshot(t *testing.T, dir string, batch int) *Snapshot {
	t.Helper()
	d := New("v", Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir},
		Options{BatchSize: batch, Workers: 2, VerifyAfterBuild: true})
	if err := d.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustView(t *testing.T, s *Snapshot, spec string) *View {
	t.Helper()
	sp, err := ParseViewSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.View(sp)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// viewIDs builds every file of the view and returns the id column of
// each, checking every row's values against the source on the way.
func viewIDs(t *testing.T, v *View) [][]int64 {
	t.Helper()
	out := make([][]int64, v.NumBatches())
	for k := range out {
		b, err := v.Build(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := v.KnownSize(k); !ok || n != int64(len(b)) {
			t.Fatalf("%s file %d: known size %d %v, built %d", v.Spec(), k, n, ok, len(b))
		}
		if v.Ext() == ".npz" {
			z, err := ReadNPZ(b)
			if err != nil {
				t.Fatal(err)
			}
			ids := z["id"]
			for i := 0; i < ids.Len(); i++ {
				out[k] = append(out[k], ids.Int64(i))
			}
			continue
		}
		r, err := ipc.NewFileReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.RecordBatch(0)
		if err != nil {
			t.Fatal(err)
		}
		ids := rec.Column(0).(*array.Int64)
		for i := 0; i < ids.Len(); i++ {
			id := ids.Value(i)
			out[k] = append(out[k], id)
			ref := sampledata.MixedRecord(id, 1)
			for c := 0; c < int(ref.NumCols()); c++ {
				if !array.Equal(ref.Column(c), array.NewSlice(rec.Column(c), int64(i), int64(i+1))) {
					t.Fatalf("%s file %d row %d (id %d): column %s differs from the source", v.Spec(), k, i, id, ref.ColumnName(c))
				}
			}
		}
	}
	return out
}

func flatten(files [][]int64) []int64 {
	var all []int64
	for _, f := range files {
		all = append(all, f...)
	}
	return all
}

func TestViewsArePermutationsOfTheEpoch(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 1000, 170); err != nil {
		t.Fatal(err)
	}
	s := viewSnapshot(t, dir, 64) // 16 batches, the last of 40 rows
	const rows = 1000
	for _, spec := range []string{"natural", "seed=1,epoch=0", "seed=1,epoch=1", "seed=1,epoch=0,shuffle=block:4",
		"seed=1,epoch=0,shuffle=block:5", "seed=9,epoch=2,shuffle=block:1", "seed=1,epoch=0,format=npz",
		"seed=3,epoch=0,shuffle=block:3,format=npz"} {
		t.Run(spec, func(t *testing.T) {
			sp := spec
			if spec == "natural" {
				sp = "format=arrow"
			}
			v := mustView(t, s, sp)
			if v.NumBatches() != s.NumBatches() {
				t.Fatalf("%d files, want %d", v.NumBatches(), s.NumBatches())
			}
			files := viewIDs(t, v)
			seen := make([]int, rows)
			for _, id := range flatten(files) {
				seen[id]++
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("row %d appears %d times in the epoch", id, n)
				}
			}
			short := 0
			for k, f := range files {
				if !equalIDs(f, v.RowIndices(k)) {
					t.Fatalf("file %d holds rows %v, RowIndices says %v", k, f[:3], v.RowIndices(k)[:3])
				}
				if len(f) != int(s.BatchSize) {
					short++
					if len(f) != rows%int(s.BatchSize) {
						t.Fatalf("file %d has %d rows", k, len(f))
					}
				}
			}
			if short != 1 {
				t.Fatalf("%d short files, want 1", short)
			}
			// Ranks: equal counts, disjoint, together the epoch minus the
			// last n%W files of its sequence.
			for _, world := range []int{1, 3, 5} {
				var union []int64
				per := -1
				for r := 0; r < world; r++ {
					rv := mustView(t, s, fmt.Sprintf("%s,rank=%d,world=%d", sp, r, world))
					if per >= 0 && rv.NumBatches() != per {
						t.Fatalf("world %d: rank %d has %d files, rank 0 has %d", world, r, rv.NumBatches(), per)
					}
					per = rv.NumBatches()
					rf := viewIDs(t, rv)
					for k := range rf {
						if !equalIDs(rf[k], files[k*world+r]) {
							t.Fatalf("world %d rank %d file %d is not epoch file %d", world, r, k, k*world+r)
						}
					}
					union = append(union, flatten(rf)...)
				}
				if per != s.NumBatches()/world {
					t.Fatalf("world %d: %d files per rank, want %d", world, per, s.NumBatches()/world)
				}
				kept := flatten(files[:per*world])
				if !sameSet(union, kept) {
					t.Fatalf("world %d: ranks cover %d rows, want the %d rows of the first %d files", world, len(union), len(kept), per*world)
				}
			}
		})
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sameSet reports whether a and b hold the same ids, each once.
func sameSet(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[int64]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestViewOrdersAreDeterministicAndDifferByEpoch(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 2000); err != nil {
		t.Fatal(err)
	}
	a, b := viewSnapshot(t, dir, 50), viewSnapshot(t, dir, 50) // two loads: two "mounts"
	if a == b || a.ID != b.ID {
		t.Fatalf("two loads of the same sources: ids %s %s", a.ID, b.ID)
	}
	order := func(s *Snapshot, spec string) string {
		v := mustView(t, s, spec)
		var sb strings.Builder
		for k := 0; k < v.NumBatches(); k++ {
			fmt.Fprint(&sb, v.Key(k), " ")
		}
		return sb.String()
	}
	for _, spec := range []string{"seed=1,epoch=0", "seed=1,epoch=0,shuffle=block:4", "seed=1,epoch=0,rank=1,world=3"} {
		if order(a, spec) != order(b, spec) {
			t.Errorf("%s: order differs between two loads", spec)
		}
	}
	epochs := map[string]bool{}
	for e := 0; e < 5; e++ {
		epochs[order(a, fmt.Sprintf("seed=1,epoch=%d", e))] = true
	}
	epochs[order(a, "seed=2,epoch=0")] = true
	if len(epochs) != 6 {
		t.Errorf("5 epochs and another seed gave %d distinct orders, want 6", len(epochs))
	}
	// Same bytes from the two loads, for every kind of file.
	for _, spec := range []string{"seed=4,epoch=1,shuffle=block:3", "seed=4,epoch=1,format=npz", "seed=4,epoch=1,shuffle=block:2,format=npz"} {
		sameViewFiles(t, a, b, spec, 0, 7)
	}
	// Batch-shuffled Arrow files are natural batches: same key, same bytes.
	v := mustView(t, a, "seed=5,epoch=0")
	nat, _ := v.Natural(3)
	if v.Key(3) != a.Key(nat) {
		t.Errorf("batch-shuffled key %s, natural key %s", v.Key(3), a.Key(nat))
	}
	x, _ := v.Build(context.Background(), 3)
	y, _ := a.Build(context.Background(), nat)
	if !bytes.Equal(x, y) {
		t.Error("batch-shuffled file differs from its natural batch")
	}
	if !v.SizesFree() || mustView(t, a, "seed=5,epoch=0,format=npz").SizesFree() {
		t.Error("SizesFree wrong")
	}
}

func TestViewRejectsWorldLargerThanDataset(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 30); err != nil {
		t.Fatal(err)
	}
	s := viewSnapshot(t, dir, 10)
	sp, _ := ParseViewSpec("rank=0,world=4")
	if _, err := s.View(sp); !errors.Is(err, ErrBadView) {
		t.Fatalf("world 4 over 3 batches: err %v, want ErrBadView", err)
	}
	v := mustView(t, s, "rank=1,world=3")
	if _, err := v.Build(context.Background(), 1); !errors.Is(err, source.ErrNotExist) {
		t.Fatalf("file past the end: err %v, want ErrNotExist", err)
	}
}

// Block shuffle really moves rows across batches: most files mix rows of
// several natural batches, and rows leave their natural position.
func TestBlockShuffleMixesRows(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 1600); err != nil {
		t.Fatal(err)
	}
	s := viewSnapshot(t, dir, 100)
	v := mustView(t, s, "seed=1,epoch=0,shuffle=block:4")
	var mixed int
	for k := 0; k < v.NumBatches(); k++ {
		b, err := v.Build(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		rec := decodeOne(t, b)
		batches := map[int64]bool{}
		ids := rec.Column(0).(*array.Int64)
		for i := 0; i < ids.Len(); i++ {
			batches[ids.Value(i)/100] = true
		}
		if len(batches) > 1 {
			mixed++
		}
		if len(batches) > 4 {
			t.Fatalf("file %d mixes %d batches; a block has 4", k, len(batches))
		}
	}
	if mixed < v.NumBatches()*3/4 {
		t.Fatalf("only %d of %d files mix rows of several batches", mixed, v.NumBatches())
	}
	q := ShuffleQuality(s, mustView(t, s, "seed=1,epoch=0,shuffle=block:4"))
	if q.MeanDisplacement <= 0 || q.KendallTau >= 0.99 {
		t.Fatalf("quality %+v: no shuffle", q)
	}
}

func decodeOne(t *testing.T, b []byte) arrow.RecordBatch {
	t.Helper()
	r, err := ipc.NewFileReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.RecordBatch(0)
	if err != nil {
		t.Fatal(err)
	}
	rec.Retain()
	return rec
}

// TestBuildIntoWhereverTheSizeIsKnown: every file whose size KnownSize
// gives — natural batches at once, npz and block-shuffled files once built —
// builds into a buffer of that size exactly as Build does (the prefetch
// store builds memfd batches that way).
func TestBuildIntoWhereverTheSizeIsKnown(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 1000, 170); err != nil {
		t.Fatal(err)
	}
	s := viewSnapshot(t, dir, 64)
	ctx := context.Background()
	for _, spec := range []string{"format=arrow", "seed=1,epoch=0", "seed=1,epoch=0,shuffle=block:4", "seed=1,epoch=0,format=npz"} {
		v := mustView(t, s, spec)
		for k := 0; k < v.NumBatches(); k++ {
			if _, known := v.KnownSize(k); !known {
				if _, err := v.Build(ctx, k); err != nil { // sizes it
					t.Fatal(err)
				}
			}
			n, known := v.KnownSize(k)
			if !known {
				t.Fatalf("%s file %d: size unknown after a build", spec, k)
			}
			want, err := v.Build(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, n)
			if err := v.BuildInto(ctx, k, got); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s file %d: BuildInto %v, equal to Build: %v", spec, k, err, bytes.Equal(got, want))
			}
		}
	}
}

// A batch-shuffled view reads ahead the segments of its next files, in
// its own order: reading it through decodes each segment once, and the
// segment of the next file is decoded before that file is built.
func TestShuffledViewReadsItsNextSegmentsAhead(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 2000, 100); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	load(t, dir, Options{BatchSize: 100, StateDir: state}) // the index pass
	var ran int
	d, v := aheadView(t, dir, Options{BatchSize: 100, StateDir: state, ReadAhead: 2}, &ran, "seed=3,epoch=0")
	decodes := func() uint64 { _, m, _ := d.SegmentStats(); return m }
	ctx := context.Background()
	if _, err := v.Build(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if decodes() != 3 || ran != 2 {
		t.Fatalf("after file 0: %d decodes, %d read-aheads; want 3, 2 (its row group and the next two files')", decodes(), ran)
	}
	for k := 1; k < v.NumBatches(); k++ {
		n, _ := v.KnownSize(k)
		if err := v.BuildInto(ctx, k, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if hits, _, _ := d.SegmentStats(); hits < uint64(k) {
			t.Fatalf("file %d: %d segment cache hits, want each file's segment read ahead", k, hits)
		}
	}
	if decodes() != 20 {
		t.Fatalf("reading the view decoded %d segments, want each of the 20 once", decodes())
	}
}

// A view in natural order (here npz files) reads the
// segments after its file's ahead, as the dataset's own files do.
func TestNaturalViewReadsSegmentsAhead(t *testing.T) {
	dir, state := twoIndexedFiles(t)
	var ran int
	d, v := aheadView(t, dir, Options{BatchSize: 500, StateDir: state, ReadAhead: 3}, &ran, "format=npz")
	if _, err := v.Build(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if _, m, _ := d.SegmentStats(); m != 4 || ran != 3 {
		t.Fatalf("after file 0: %d decodes, %d read-aheads; want 4, 3", m, ran)
	}
}

// aheadView loads dir with opts, counting the read-aheads in *ran (run in
// the caller), and returns the dataset and its view spec.
func aheadView(t *testing.T, dir string, opts Options, ran *int, spec string) (*Dataset, *View) {
	t.Helper()
	opts.Background = func(f func()) { *ran++; f() }
	d := load(t, dir, opts)
	s, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	return d, mustView(t, s, spec)
}

// The same data in another place, with other mtimes (a copy on another
// node), gives the same view files: permutations follow the data, not
// where it lies.
func TestViewOrdersFollowTheDataNotItsPlace(t *testing.T) {
	here, there := t.TempDir(), t.TempDir()
	for _, dir := range []string{here, there} {
		if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 1000); err != nil {
			t.Fatal(err)
		}
		if err := sampledata.WriteCSV(filepath.Join(dir, "b.csv"), 1000, 600); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(there, "a.csv"), later, later)
	a, b := viewSnapshot(t, here, 50), viewSnapshot(t, there, 50)
	if a.ID == b.ID {
		t.Fatal("copies in two places share a snapshot ID (the cache key)")
	}
	for _, spec := range []string{"seed=3,epoch=2", "seed=3,epoch=2,shuffle=block:4", "seed=3,epoch=2,rank=1,world=2,format=npz"} {
		sameViewFiles(t, a, b, spec, 0, 5)
	}
}

// sameViewFiles fails unless view spec of snapshots a and b builds the same
// bytes for files ks and the last file.
func sameViewFiles(t *testing.T, a, b *Snapshot, spec string, ks ...int) {
	t.Helper()
	va, vb := mustView(t, a, spec), mustView(t, b, spec)
	for _, k := range append(ks, va.NumBatches()-1) {
		x, err := va.Build(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		y, err := vb.Build(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s file %d: bytes differ between the two snapshots", spec, k)
		}
	}
}
