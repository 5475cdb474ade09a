package fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"golang.org/x/sys/unix"

	"github.com/zenithfs/zenithfs/blob"
	"github.com/zenithfs/zenithfs/cache"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/prefetch"
	"github.com/zenithfs/zenithfs/source"
)

func newDataset(t *testing.T, name, dir string, batch int) *dataset.Dataset {
	t.Helper()
	d := dataset.New(name, dataset.Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir},
		dataset.Options{BatchSize: batch, Workers: 2, VerifyAfterBuild: true})
	d.Load(context.Background()) // a failed load is part of some tests
	return d
}

func mountT(t *testing.T, cfg Config) string {
	t.Helper()
	mnt := t.TempDir()
	srv, err := Mount(mnt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return mnt
}

func TestBatchFilesThroughMount(t *testing.T) {
	dirs, err := sampledata.WriteAll(t.TempDir(), 2000)
	if err != nil {
		t.Fatal(err)
	}
	pq := newDataset(t, "pq", dirs["parquet"], 300)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{pq}})
	snap, err := pq.Current()
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "pq"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := "000000.arrow 000001.arrow 000002.arrow 000003.arrow 000004.arrow 000005.arrow 000006.arrow _manifest.json _schema.arrow"
	if got := strings.Join(sortStrings(names), " "); got != want {
		t.Fatalf("listing:\n got %s\nwant %s", got, want)
	}
	for k := 0; k < snap.NumBatches(); k++ {
		p := filepath.Join(mnt, "pq", batchName(k, snap.NumBatches()))
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
		r, err := ipc.NewFileReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		rec, err := r.RecordBatch(0)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := snap.BatchRows(k)
		ref := sampledata.MixedRecord(lo, hi-lo)
		for c := 0; c < int(ref.NumCols()); c++ {
			if !array.Equal(ref.Column(c), rec.Column(c)) {
				t.Fatalf("batch %d column %s differs", k, ref.ColumnName(c))
			}
		}
		// pread at random offsets and sizes returns exactly the slice.
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(k), 1))
		for i := 0; i < 50; i++ {
			off := rng.Int64N(int64(len(b)) + 10)
			buf := make([]byte, rng.IntN(70000))
			n, _ := f.ReadAt(buf, off)
			wantN := max(0, min(int64(len(buf)), int64(len(b))-off))
			if int64(n) != wantN || !bytes.Equal(buf[:n], b[min(off, int64(len(b))):min(off, int64(len(b)))+int64(n)]) {
				t.Fatalf("pread %s at %d len %d: n=%d want %d", p, off, len(buf), n, wantN)
			}
		}
		mmapMatches(t, p, b)
		f.Close()
	}
	man, err := os.ReadFile(filepath.Join(mnt, "pq", "_manifest.json"))
	if err != nil || !strings.Contains(string(man), `"rows": 2000`) {
		t.Fatalf("manifest: %v\n%s", err, man)
	}
	sch, err := os.ReadFile(filepath.Join(mnt, "pq", "_schema.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	sr, err := ipc.NewFileReader(bytes.NewReader(sch))
	if err != nil || !sr.Schema().Equal(snap.Schema()) || sr.NumRecords() != 0 {
		t.Fatalf("schema file: %v", err)
	}
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestWritesFailAndChangeNothing(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 50); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 20)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}})
	p := filepath.Join(mnt, "d", "000000.arrow")
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["open for write"] = os.OpenFile(p, os.O_WRONLY, 0)
	_, checks["truncate on open"] = os.OpenFile(p, os.O_RDWR|os.O_TRUNC, 0)
	checks["truncate"] = os.Truncate(p, 0)
	checks["create"] = os.WriteFile(filepath.Join(mnt, "d", "new.arrow"), []byte("x"), 0o644)
	checks["remove"] = os.Remove(p)
	checks["mkdir"] = os.Mkdir(filepath.Join(mnt, "d", "sub"), 0o755)
	checks["rename"] = os.Rename(p, filepath.Join(mnt, "d", "x.arrow"))
	checks["chmod"] = os.Chmod(p, 0o777)
	checks["hard link"] = os.Link(p, filepath.Join(mnt, "d", "link.arrow"))
	checks["set xattr"] = unix.Setxattr(p, "user.zenith", []byte("1"), 0)
	checks["remove xattr"] = unix.Removexattr(p, "user.zenith")
	checks["set xattr on a directory"] = unix.Setxattr(filepath.Join(mnt, "d"), "user.zenith", []byte("1"), 0)
	// the small generated files, and the other directories
	for _, f := range []string{"d/_schema.arrow", "d/_manifest.json", "d/views/README", "d/views/_stats.json", ".zenith/stats", ".zenith/errors", ".zenith/datasets/d"} {
		fp := filepath.Join(mnt, f)
		checks["truncate "+f] = os.Truncate(fp, 0)
		checks["chmod "+f] = os.Chmod(fp, 0o777)
		checks["remove "+f] = os.Remove(fp)
		checks["set xattr "+f] = unix.Setxattr(fp, "user.zenith", []byte("1"), 0)
	}
	for _, dir := range []string{"", "d/views", "d/views/seed=1,epoch=0", ".zenith", ".zenith/datasets"} {
		checks["create in /"+dir] = os.WriteFile(filepath.Join(mnt, dir, "new"), []byte("x"), 0o644)
		checks["mkdir in /"+dir] = os.Mkdir(filepath.Join(mnt, dir, "sub"), 0o755)
	}
	checks["remove a view file"] = os.Remove(filepath.Join(mnt, "d", "views", "seed=1,epoch=0", "000000.arrow"))
	for what, err := range checks {
		if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("%s: err %v, want EROFS or EACCES", what, err)
		}
	}
	after, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("file changed after refused writes: %v", err)
	}
}

func TestSourceChangeReindexes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.csv")
	if err := sampledata.WriteCSV(p, 0, 100); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 40)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}})
	first := filepath.Join(mnt, "d", "000000.arrow")
	old, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := sampledata.WriteCSV(p, 5000, 130); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(p, future, future)
	// A new open sees the new generation: new rows, never old ones.
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatalf("read after change: %v", err)
	}
	if bytes.Equal(b, old) {
		t.Fatal("served the old bytes after the source changed")
	}
	r, err := ipc.NewFileReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := r.RecordBatch(0)
	if id := rec.Column(0).(*array.Int64).Value(0); id != 5000 {
		t.Fatalf("first id %d, want 5000", id)
	}
	fi, err := os.Stat(first)
	if err != nil || fi.Size() != int64(len(b)) {
		t.Fatalf("stat after change: %v size %d want %d", err, fi.Size(), len(b))
	}
	if _, err := os.Stat(filepath.Join(mnt, "d", "000003.arrow")); err != nil {
		t.Fatalf("new batch 3 (rows 120..130) missing: %v", err)
	}
}

func TestBrokenDatasetsFailAloneWithReasons(t *testing.T) {
	good := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(good, "a.csv"), 0, 10); err != nil {
		t.Fatal(err)
	}
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "x.parquet"), []byte("PAR1 this is not parquet at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	truncated := t.TempDir()
	pq := filepath.Join(truncated, "t.parquet")
	if err := sampledata.WriteParquet(pq, 500, 100); err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(pq)
	os.WriteFile(pq, whole[:len(whole)/2], 0o644)
	mismatch := t.TempDir()
	sampledata.WriteCSV(filepath.Join(mismatch, "a.csv"), 0, 10)
	sampledata.WriteJSONL(filepath.Join(mismatch, "b.jsonl"), 0, 10)

	ds := []*dataset.Dataset{newDataset(t, "good", good, 4), newDataset(t, "corrupt", corrupt, 4),
		newDataset(t, "truncated", truncated, 4), newDataset(t, "mismatch", mismatch, 4)}
	mnt := mountT(t, Config{Datasets: ds})
	// Each broken dataset's reason is in .zenith/errors from the start,
	// before anything asks for it ...
	errs, _ := os.ReadFile(filepath.Join(mnt, ".zenith", "errors"))
	for _, name := range []string{"corrupt", "truncated", "mismatch"} {
		if !strings.Contains(string(errs), "dataset "+name+":") {
			t.Errorf(".zenith/errors at mount lacks dataset %s's reason:\n%s", name, errs)
		}
	}
	for _, name := range []string{"corrupt", "truncated", "mismatch"} {
		for range 3 {
			_, err := os.ReadDir(filepath.Join(mnt, name))
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: readdir err %v, want EIO", name, err)
			}
		}
		st, err := os.ReadFile(filepath.Join(mnt, ".zenith", "datasets", name))
		if err != nil || !strings.Contains(string(st), `"state": "error"`) {
			t.Errorf("%s: state %s (%v)", name, st, err)
		}
	}
	st, _ := os.ReadFile(filepath.Join(mnt, ".zenith", "datasets", "mismatch"))
	if !strings.Contains(string(st), "a.csv") || !strings.Contains(string(st), "b.jsonl") {
		t.Errorf("schema mismatch reason does not name both files: %s", st)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "good", "000001.arrow")); err != nil {
		t.Fatalf("good dataset not served beside broken ones: %v", err)
	}
	// ... and stays one line, however often it is met.
	errs, _ = os.ReadFile(filepath.Join(mnt, ".zenith", "errors"))
	for _, name := range []string{"corrupt", "truncated", "mismatch"} {
		if n := strings.Count(string(errs), "dataset "+name+":"); n != 1 {
			t.Errorf(".zenith/errors has dataset %s's reason on %d lines, want 1:\n%s", name, n, errs)
		}
	}
	if !strings.Contains(string(errs), "times since") {
		t.Errorf(".zenith/errors does not count the repeats:\n%s", errs)
	}
}

func TestErrorRingKeepsOneLinePerReason(t *testing.T) {
	r := newErrorRing(3)
	r.add("a")
	r.add("two\nlines")
	r.add("a")
	r.add("c")
	r.add("d")
	lines := strings.Split(strings.TrimSpace(string(r.text())), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want the 3 latest reasons:\n%s", len(lines), r.text())
	}
	if !strings.Contains(lines[0], " a (2 times since ") {
		t.Fatalf("first line %q: want a, counted twice", lines[0])
	}
	if !strings.HasSuffix(lines[1], " c") || !strings.HasSuffix(lines[2], " d") {
		t.Fatalf("lines %q", lines)
	}
	r.add("two\nlines")
	if text := string(r.text()); !strings.Contains(text, " two; lines\n") {
		t.Fatalf("a reason with a newline is not one line:\n%s", text)
	}
}

func TestHandlerPanicIsEIOAndMountLives(t *testing.T) {
	dir := t.TempDir()
	sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 10)
	d := newDataset(t, "d", dir, 4)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}, Faults: func(op, name string) {
		if op == "open" && strings.HasSuffix(name, "000001.arrow") {
			panic("injected fault")
		}
	}})
	_, err := os.ReadFile(filepath.Join(mnt, "d", "000001.arrow"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("panicking open: err %v, want EIO", err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "d", "000002.arrow")); err != nil {
		t.Fatalf("mount dead after a handler panic: %v", err)
	}
	errs, _ := os.ReadFile(filepath.Join(mnt, ".zenith", "errors"))
	if !strings.Contains(string(errs), "injected fault") {
		t.Errorf(".zenith/errors lacks the panic: %s", errs)
	}
}

// TestPassthroughServesExactBytes: with passthrough, batch files read,
// pread and mmap exactly their bytes, whether the handle makes a memfd of
// its own (batches in memory) or the cache holds memfds (and evicts them:
// a cache of ~3 batches, two passes over 5); and memfds in the cache
// without passthrough (as where the kernel refuses it) are served by the
// daemon from the memfds, every read reaching it.
func TestPassthroughServesExactBytes(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 3000, 1000); err != nil {
		t.Fatal(err)
	}
	memfdStore := func(t *testing.T, batchBytes int64) (Batches, *blob.Memfds) {
		c, err := cache.New(3 * batchBytes)
		if err != nil {
			t.Fatal(err)
		}
		m := blob.NewMemfds(4*batchBytes, nil)
		pf, err := prefetch.New(prefetch.Options{Cache: c, Workers: 2, Depth: 2, PendingBytes: batchBytes,
			Sealer: blob.Fallback{M: m, OnFail: func(err error) { t.Errorf("memfd: %v", err) }}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pf.Close(); c.Close() })
		return pf, m
	}
	cases := []struct {
		name        string
		passthrough bool
		batches     func(t *testing.T, batchBytes int64) (Batches, *blob.Memfds)
	}{
		{"batches in memory", true, func(*testing.T, int64) (Batches, *blob.Memfds) { return nil, nil }},
		{"memfds in the cache", true, memfdStore},
		{"memfds in the cache, no passthrough", false, memfdStore},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDataset(t, "d", dir, 700)
			s, _ := d.Current()
			size, _ := s.Size(0)
			batches, memfds := c.batches(t, size)
			var reads atomic.Int64
			mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}, Batches: batches, Passthrough: c.passthrough, Faults: func(op, _ string) {
				if op == "read" {
					reads.Add(1)
				}
			}})
			for pass := 0; pass < 2; pass++ {
				for k := 0; k < s.NumBatches(); k++ {
					want, err := s.Build(context.Background(), k)
					if err != nil {
						t.Fatal(err)
					}
					p := filepath.Join(mnt, "d", batchName(k, s.NumBatches()))
					got, err := os.ReadFile(p)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("pass %d %s: read %d bytes (%v), want %d identical", pass, p, len(got), err, len(want))
					}
					f, err := os.Open(p)
					if err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 1000)
					if n, _ := f.ReadAt(buf, 123); !bytes.Equal(buf[:n], want[123:123+n]) {
						t.Fatalf("%s: pread differs", p)
					}
					mmapMatches(t, p, want)
					f.Close()
				}
			}
			if memfds != nil {
				if st := memfds.Stats(); st.Made < uint64(s.NumBatches()) || st.Failed != 0 {
					t.Fatalf("memfds %+v: want one made per batch at least, none failed", st)
				}
			}
			if !c.passthrough && reads.Load() == 0 {
				t.Fatal("without passthrough no read reached the daemon")
			}
			t.Logf("reads that reached the daemon: %d (0 when the kernel passes reads through)", reads.Load())
		})
	}
}

// mmapMatches maps p in another process and compares what it sees with
// want. Not in this process: a page fault on a mount served by the same
// process can stall the garbage collector (it waits for the faulting
// thread, which waits for a FUSE handler, which waits for the GC).
func mmapMatches(t *testing.T, p string, want []byte) {
	t.Helper()
	script := "import hashlib,mmap,sys\nf=open(sys.argv[1],'rb')\nm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\nprint(hashlib.sha256(m).hexdigest())"
	out, err := exec.Command("/usr/bin/python3", "-c", script, p).CombinedOutput()
	if err != nil {
		t.Fatalf("mmap %s: %v: %s", p, err, out)
	}
	sum := sha256.Sum256(want)
	if got := strings.TrimSpace(string(out)); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("mmap of %s differs from read (sha256 %s, want %x)", p, got, sum)
	}
}

// TestConcurrentLookupsDuringChanges: stats and reads from several
// goroutines while the source changes again and again. Each change makes
// the mount drop the kernel's entries while lookups are in flight; the
// kernel's invalidation waits on the directory lock a lookup holds, so a
// lookup must never wait on the invalidation — nothing may hang.
func TestConcurrentLookupsDuringChanges(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.csv")
	if err := sampledata.WriteCSV(p, 0, 400); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 10)
	d.Opts().CheckInterval = 0 // every lookup and open checks the source
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}})
	done := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := i; ; k += 7 {
				select {
				case <-done:
					return
				default:
				}
				f := filepath.Join(mnt, "d", batchName(k%40, 40))
				os.Stat(f) // names come and go with the row count: errors expected
				os.ReadFile(f)
				os.ReadFile(filepath.Join(mnt, "d", manifestName))
				ops.Add(1)
			}
		}()
	}
	base := time.Now()
	for gen := 1; gen <= 15; gen++ {
		if err := sampledata.WriteCSV(p, int64(gen*1000), int64(300+gen*7)); err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(gen) * time.Second)
		os.Chtimes(p, mt, mt)
		time.Sleep(40 * time.Millisecond)
	}
	close(done)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("lookups hung while the dataset changed (an invalidation deadlock)")
	}
	// Settled: the last generation's files, stat and read agreeing.
	var man dataset.Manifest
	readJSON(t, filepath.Join(mnt, "d", manifestName), &man)
	if man.Rows != 300+15*7 {
		t.Fatalf("manifest says %d rows, want %d", man.Rows, 300+15*7)
	}
	got, sizes := batchFiles(t, filepath.Join(mnt, "d"))
	for k := range got {
		if sizes[k] != int64(len(got[k])) {
			t.Fatalf("batch %d: stat size %d, read %d bytes", k, sizes[k], len(got[k]))
		}
	}
	t.Logf("%d rounds of lookups and reads across 15 changes", ops.Load())
}

// A process the daemon starts (a job) does not inherit the FUSE
// connection: were it to hold it, a crashed daemon's mount would hang
// its callers until the job ended instead of failing at once.
func TestChildrenDoNotInheritTheFUSEConnection(t *testing.T) {
	dirs, err := sampledata.WriteAll(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	mountT(t, Config{Datasets: []*dataset.Dataset{newDataset(t, "pq", dirs["parquet"], 50)}})
	out, err := exec.Command("sh", "-c", `for f in /proc/$$/fd/*; do echo "$f $(readlink $f)"; done`).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Fatalf("a child process holds the FUSE connection:\n%s", out)
	}
}
