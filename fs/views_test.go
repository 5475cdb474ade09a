package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/zenithfs/zenithfs/cache"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/prefetch"
)

// viewsMount mounts a fresh load of the Parquet dataset in dir (batches
// of 100 rows) behind a real prefetch store.
func viewsMount(t *testing.T, dir string, depth int) (string, *dataset.Dataset, *prefetch.Store) {
	t.Helper()
	d := newDataset(t, "d", dir, 100)
	c, err := cache.New(256 << 20)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := prefetch.New(prefetch.Options{Cache: c, Workers: 2, Depth: depth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pf.Close(); c.Close() })
	return mountT(t, Config{Datasets: []*dataset.Dataset{d}, Batches: pf}), d, pf
}

func viewsSample(t *testing.T, rows int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), rows, 300); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readView reads every file of a view directory in listing order and
// returns the bytes, checking that stat sizes match.
func readView(t *testing.T, dir string) [][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(len(b)) {
			t.Fatalf("%s: stat size %d, read %d bytes", p, fi.Size(), len(b))
		}
		out = append(out, b)
	}
	return out
}

// fileIDs returns the id column of an Arrow or npz view file.
func fileIDs(t *testing.T, b []byte) []int64 {
	t.Helper()
	var ids []int64
	if bytes.HasPrefix(b, []byte("PK")) {
		z, err := dataset.ReadNPZ(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < z["id"].Len(); i++ {
			ids = append(ids, z["id"].Int64(i))
		}
		return ids
	}
	r, err := ipc.NewFileReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.RecordBatch(0)
	if err != nil {
		t.Fatal(err)
	}
	col := rec.Column(0).(*array.Int64)
	for i := 0; i < col.Len(); i++ {
		ids = append(ids, col.Value(i))
	}
	return ids
}

func TestViewsThroughMount(t *testing.T) {
	const rows = 1950 // 20 batches of 100, the last of 50
	mnt, d, _ := viewsMount(t, viewsSample(t, rows), 4)
	views := filepath.Join(mnt, "d", "views")
	ents, err := os.ReadDir(views)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "README _stats.json seed=0,epoch=0 seed=0,epoch=0,rank=0,world=2" {
		t.Fatalf("views/ lists %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(views, "README")); err != nil || !strings.Contains(string(b), "rank=R,world=W") {
		t.Fatalf("README: %v %q", err, b)
	}

	for _, spec := range []string{"seed=3,epoch=1", "epoch=1,seed=3,format=npz", "seed=3,epoch=1,shuffle=block:4",
		"shuffle=block:3,seed=5,epoch=0,format=npz", "rank=0,world=1"} {
		t.Run(spec, func(t *testing.T) {
			files := readView(t, filepath.Join(views, spec))
			if len(files) != 20 {
				t.Fatalf("%d files, want 20", len(files))
			}
			ext := ".arrow"
			if strings.Contains(spec, "npz") {
				ext = ".npz"
			}
			if _, err := os.Stat(filepath.Join(views, spec, "000019"+ext)); err != nil {
				t.Fatal(err)
			}
			seen := map[int64]int{}
			for _, b := range files {
				for _, id := range fileIDs(t, b) {
					seen[id]++
				}
			}
			if len(seen) != rows {
				t.Fatalf("epoch holds %d distinct rows, want %d", len(seen), rows)
			}
			for id, n := range seen {
				if n != 1 || id < 0 || id >= rows {
					t.Fatalf("row %d read %d times", id, n)
				}
			}
			// Same bytes as the view built directly, file by file.
			s, _ := d.Current()
			sp, _ := dataset.ParseViewSpec(spec)
			v, _ := s.View(sp)
			for k, b := range files {
				want, err := v.Build(context.Background(), k)
				if err != nil || !bytes.Equal(b, want) {
					t.Fatalf("file %d differs from the view's build (%v)", k, err)
				}
			}
		})
	}

	// Ranks through the mount: equal counts, disjoint, covering the epoch
	// minus the last n%W files.
	union := map[int64]int{}
	for r := 0; r < 3; r++ {
		files := readView(t, filepath.Join(views, fmt.Sprintf("seed=3,epoch=1,rank=%d,world=3", r)))
		if len(files) != 6 {
			t.Fatalf("rank %d: %d files, want 6", r, len(files))
		}
		for _, b := range files {
			for _, id := range fileIDs(t, b) {
				union[id]++
			}
		}
	}
	epoch := readView(t, filepath.Join(views, "seed=3,epoch=1"))
	for j, b := range epoch {
		for _, id := range fileIDs(t, b) {
			if want := map[bool]int{true: 1, false: 0}[j < 18]; union[id] != want {
				t.Fatalf("row %d of epoch file %d is read %d times by the ranks, want %d", id, j, union[id], want)
			}
		}
	}

	// Per-view statistics.
	sb, err := os.ReadFile(filepath.Join(views, "_stats.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]ViewStats
	if err := json.Unmarshal(sb, &stats); err != nil {
		t.Fatalf("%s: %v", sb, err)
	}
	st := stats["seed=3,epoch=1"]
	if st.Reads < 40 || st.PrefetchHits == 0 || st.Reads != st.PrefetchHits+st.BuiltOnDemand+st.Errors {
		t.Fatalf("view stats %+v: want ≥ 40 reads with prefetch hits", st)
	}
	if npz := stats["seed=3,epoch=1,format=npz"]; npz.Reads != 20 {
		t.Fatalf("npz view stats %+v: want 20 reads", npz)
	}
}

func TestBadViewSpecs(t *testing.T) {
	mnt, _, _ := viewsMount(t, viewsSample(t, 500), 0)
	views := filepath.Join(mnt, "d", "views")
	for _, c := range []struct {
		name string
		want syscall.Errno
	}{
		{"foo=1", syscall.EINVAL},
		{"seed=1,seed=2", syscall.EINVAL},
		{"rank=2,world=2", syscall.EINVAL},
		{"seed=x", syscall.EINVAL},
		{"rank=0,world=6", syscall.EINVAL}, // 5 batches only
		{"natural", syscall.ENOENT},
		{".git", syscall.ENOENT},
	} {
		_, err := os.Stat(filepath.Join(views, c.name))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	for _, name := range []string{"000005.arrow", "00001.arrow", "000001.npz", "x"} {
		if _, err := os.Stat(filepath.Join(views, "seed=1", name)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("seed=1/%s: err %v, want ENOENT", name, err)
		}
	}
	errs, _ := os.ReadFile(filepath.Join(mnt, ".zenith", "errors"))
	for _, why := range []string{`unknown key "foo"`, "duplicate key", "rank 2 is not below world 2", "larger than the 5 batches"} {
		if !strings.Contains(string(errs), why) {
			t.Errorf(".zenith/errors lacks %q:\n%s", why, errs)
		}
	}
}

// Two separate mounts of two separate loads serve the same bytes at the
// same view paths: a job resumes mid-epoch by opening file k.
func TestViewBytesSameAcrossRemounts(t *testing.T) {
	dir := viewsSample(t, 1200)
	a, _, _ := viewsMount(t, dir, 2)
	b, _, _ := viewsMount(t, dir, 0)
	for _, p := range []string{"seed=11,epoch=4/000007.arrow", "seed=11,epoch=4,format=npz/000003.npz",
		"seed=11,epoch=4,shuffle=block:5,format=npz/000011.npz", "seed=11,epoch=4,shuffle=block:2,rank=1,world=4/000002.arrow"} {
		x, err := os.ReadFile(filepath.Join(a, "d", "views", p))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, "d", "views", p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two mounts", p)
		}
	}
	// And different epochs differ.
	x, _ := os.ReadFile(filepath.Join(a, "d", "views", "seed=11,epoch=4,shuffle=block:2", "000000.arrow"))
	y, _ := os.ReadFile(filepath.Join(a, "d", "views", "seed=11,epoch=5,shuffle=block:2", "000000.arrow"))
	if bytes.Equal(x, y) {
		t.Error("epochs 4 and 5 begin with the same file")
	}
}

// A view file of an old generation is never served after its source
// changed: the open fails with ESTALE, the kernel looks again, and the
// reader gets the new rows.
func TestViewFollowsSourceChange(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.csv")
	if err := sampledata.WriteCSV(p, 0, 300); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 100)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}})
	f := filepath.Join(mnt, "d", "views", "seed=1,epoch=0,format=npz", "000000.npz")
	old, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := sampledata.WriteCSV(p, 5000, 300); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(p, future, future)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("read after change: %v", err)
	}
	if bytes.Equal(b, old) {
		t.Fatal("served the old bytes after the source changed")
	}
	for _, id := range fileIDs(t, b) {
		if id < 5000 {
			t.Fatalf("old row %d after the change", id)
		}
	}
}

// Batch-shuffled Arrow views share cache entries with the natural files:
// after an epoch of natural files, an epoch of a shuffled view (and of a
// rank share of it) builds nothing.
func TestBatchShuffledViewSharesNaturalCacheEntries(t *testing.T) {
	mnt, _, pf := viewsMount(t, viewsSample(t, 1000), 0)
	natural := readView(t, filepath.Join(mnt, "d"))
	built := pf.Stats().Built
	if built != 10 {
		t.Fatalf("built %d batches for 10 natural files", built)
	}
	byBytes := map[string]bool{}
	for _, b := range natural {
		byBytes[string(b)] = true
	}
	for _, spec := range []string{"seed=2,epoch=7", "seed=2,epoch=7,rank=1,world=3"} {
		for _, b := range readView(t, filepath.Join(mnt, "d", "views", spec)) {
			if !byBytes[string(b)] {
				t.Fatalf("%s: a file is not a natural batch file", spec)
			}
		}
	}
	if st := pf.Stats(); st.Built != built {
		t.Fatalf("reading batch-shuffled views built %d more batches", st.Built-built)
	}
}

// Listing an npz or block-shuffled view builds nothing: READDIRPLUS gets
// names without attributes there, since sizes are known only once built.
func TestListingAViewBuildsNothing(t *testing.T) {
	mnt, _, pf := viewsMount(t, viewsSample(t, 1000), 4)
	for _, spec := range []string{"seed=1,epoch=0,format=npz", "seed=1,epoch=0,shuffle=block:2"} {
		ents, err := os.ReadDir(filepath.Join(mnt, "d", "views", spec))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 10 {
			t.Fatalf("%s: %d entries, want 10", spec, len(ents))
		}
	}
	if st := pf.Stats(); st.Requests != 0 || st.Built != 0 {
		t.Fatalf("listing views asked the store for %d files and built %d", st.Requests, st.Built)
	}
	// A stat builds the file (its size is known once built) through the store.
	fi, err := os.Stat(filepath.Join(mnt, "d", "views", "seed=1,epoch=0,format=npz", "000003.npz"))
	if err != nil || fi.Size() == 0 {
		t.Fatalf("stat: %v", err)
	}
	if st := pf.Stats(); st.Requests != 1 {
		t.Fatalf("stat of one npz file made %d store requests", st.Requests)
	}
}

// Paths whose parts run together the same way ("epoch=1" + file 17,
// "epoch=11" + file 7) are different files: each serves its own bytes,
// the same as on a mount that never saw the other.
func TestViewPathsThatRunTogetherAreDifferentFiles(t *testing.T) {
	dir := viewsSample(t, 2000) // 20 batches
	a, _, _ := viewsMount(t, dir, 0)
	b, _, _ := viewsMount(t, dir, 0)
	first := filepath.Join("views", "seed=0,epoch=1", "000017.arrow")
	second := filepath.Join("views", "seed=0,epoch=11", "000007.arrow")
	if _, err := os.ReadFile(filepath.Join(a, "d", first)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(a, "d", second))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(b, "d", second))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s after %s: %v, want %v (its own rows)", second, first, fileIDs(t, got)[:3], fileIDs(t, want)[:3])
	}
	if inode("d", "id", 1, "seed=0,epoch=1", 17) == inode("d", "id", 1, "seed=0,epoch=11", 7) {
		t.Fatal("two view files share an inode number")
	}
}

// The natural npz files of every seed and epoch share cache entries: after
// one npz epoch, looking up another epoch's files decodes nothing to learn
// their sizes (it used to build each file again beside the cached bytes).
func TestNPZViewsOfAnotherEpochBuildNothingForTheirSizes(t *testing.T) {
	mnt, d, pf := viewsMount(t, viewsSample(t, 1000), 0)
	readView(t, filepath.Join(mnt, "d", "views", "seed=7,epoch=0,format=npz"))
	built := pf.Stats().Built
	hits, misses, _ := d.SegmentStats()
	got := readView(t, filepath.Join(mnt, "d", "views", "seed=7,epoch=1,format=npz")) // checks stat sizes too
	if len(got) != 10 {
		t.Fatalf("%d files in epoch 1", len(got))
	}
	if st := pf.Stats(); st.Built != built {
		t.Errorf("epoch 1 built %d more files", st.Built-built)
	}
	if h, m, _ := d.SegmentStats(); h != hits || m != misses {
		t.Errorf("epoch 1 of cached npz files decoded segments: hits %d→%d, misses %d→%d", hits, h, misses, m)
	}
}

func TestViewStatsAreBounded(t *testing.T) {
	v := &viewsDir{stats: map[string]*viewCounters{}}
	for i := range maxViewStats + 50 {
		v.counters(fmt.Sprintf("seed=1,epoch=%d", i))
	}
	if len(v.stats) != maxViewStats || len(v.statsOrder) != maxViewStats {
		t.Fatalf("%d specs counted (%d in order), want %d", len(v.stats), len(v.statsOrder), maxViewStats)
	}
	if _, ok := v.stats[fmt.Sprintf("seed=1,epoch=%d", maxViewStats+49)]; !ok {
		t.Fatal("the newest spec was dropped")
	}
	if _, ok := v.stats["seed=1,epoch=0"]; ok {
		t.Fatal("the oldest spec was kept")
	}
}
