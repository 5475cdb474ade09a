package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/zenithfs/zenithfs/cache"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/internal/s3test"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/prefetch"
	"github.com/zenithfs/zenithfs/source"
)

// S3 datasets through a real mount, against a real S3 server (versitygw on
// loopback): the same Parquet files mounted from local disk and from a
// bucket give byte-identical batch files, through injected faults too; a
// dead server fails reads with EIO in bounded time and reads recover when
// it is back; an object rewritten while mounted re-indexes the dataset and
// no batch file mixes the two versions.

const s3Batch = 400

// pqFile is one Parquet source of the test dataset: rows [start,
// start+rows) of the mixed sample in row groups of rg rows.
type pqFile struct {
	name            string
	start, rows, rg int64
}

// s3Files has row groups smaller than a batch (a), larger than a batch (b)
// and equal to the file (c), and batches that span files.
var s3Files = []pqFile{
	{"a.parquet", 0, 2600, 150},
	{"b.parquet", 10_000, 3100, 1000},
	{"c.parquet", 20_000, 500, 500},
}

func writePQ(t *testing.T, path string, f pqFile) {
	t.Helper()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(f.rg), parquet.WithCompression(compress.Codecs.Zstd))
	w, err := pqarrow.NewFileWriter(sampledata.MixedSchema(), out, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	for r := f.start; r < f.start+f.rows; r += f.rg {
		rec := sampledata.MixedRecord(r, min(f.rg, f.start+f.rows-r))
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil { // closes out too
		t.Fatal(err)
	}
}

// s3Fixture is a versitygw with the test dataset uploaded under a prefix,
// and the same files in a local directory.
type s3Fixture struct {
	srv    *s3test.Server
	bucket string
	prefix string // "train/"
	local  string
	files  map[string][]byte
}

func newS3Fixture(t *testing.T, files []pqFile) *s3Fixture {
	t.Helper()
	fx := &s3Fixture{srv: s3test.Start(t), prefix: "train/", local: t.TempDir(), files: map[string][]byte{}}
	for _, f := range files {
		p := filepath.Join(fx.local, f.name)
		writePQ(t, p, f)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fx.files[f.name] = b
	}
	fx.bucket = fx.srv.NewBucket(t, fx.prefix, fx.files)
	// A non-Parquet object below the prefix is ignored, as locally.
	fx.srv.Put(t, fx.bucket, fx.prefix+"README.txt", []byte("not data"))
	return fx
}

// store returns an S3 store rooted at the bucket, reaching it through
// endpoint (the server, or a proxy in front of it), as the CLI builds it.
func (fx *s3Fixture) store(t *testing.T, endpoint string, opts source.S3Options) *source.S3 {
	t.Helper()
	opts.Bucket, opts.Endpoint = fx.bucket, endpoint
	opts.Credentials, opts.Region = fx.srv.Credentials(), fx.srv.Region
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := source.NewS3(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dataset returns a loaded dataset over the fixture's prefix in store.
// With the same stateDir, a second dataset loads the first one's index:
// its reads are then the batch reads alone, as on a second mount.
func (fx *s3Fixture) dataset(t *testing.T, name string, st source.Store, stateDir string, check time.Duration) *dataset.Dataset {
	t.Helper()
	return fx.datasetWith(t, name, st, dataset.Options{BatchSize: s3Batch, Workers: 2, StateDir: stateDir, CheckInterval: check})
}

// datasetWith is dataset with every option given.
func (fx *s3Fixture) datasetWith(t *testing.T, name string, st source.Store, opts dataset.Options) *dataset.Dataset {
	t.Helper()
	d := dataset.New(name, dataset.Location{Store: st, Key: fx.prefix, Prefix: true, StoreID: "s3://" + fx.bucket}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func (fx *s3Fixture) objectBytes() int64 {
	var n int64
	for _, b := range fx.files {
		n += int64(len(b))
	}
	return n
}

// prefetchBatches is the production read path: cache plus read-ahead.
func prefetchBatches(t *testing.T) *prefetch.Store {
	t.Helper()
	c, err := cache.New(128 << 20)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := prefetch.New(prefetch.Options{Cache: c, Workers: 2, Depth: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pf.Close(); c.Close() })
	return pf
}

// batchFiles reads every batch file of a mounted dataset directory in
// order: contents, and sizes as stat tells them.
func batchFiles(t *testing.T, dir string) ([][]byte, []int64) {
	t.Helper()
	var man dataset.Manifest
	readJSON(t, filepath.Join(dir, manifestName), &man)
	if man.Batches == 0 {
		t.Fatalf("%s: manifest has no batches", dir)
	}
	var data [][]byte
	var sizes []int64
	for k := 0; k < man.Batches; k++ {
		p := filepath.Join(dir, batchName(k, man.Batches))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		data, sizes = append(data, b), append(sizes, fi.Size())
	}
	return data, sizes
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
}

// sameEpoch fails unless two epochs are byte-identical, sizes included.
func sameEpoch(t *testing.T, what string, got, want [][]byte, gotSizes, wantSizes []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d batch files, want %d", what, len(got), len(want))
	}
	for k := range want {
		if gotSizes[k] != wantSizes[k] || gotSizes[k] != int64(len(got[k])) {
			t.Fatalf("%s: batch %d: stat size %d, read %d bytes; local stat %d", what, k, gotSizes[k], len(got[k]), wantSizes[k])
		}
		if !bytes.Equal(got[k], want[k]) {
			t.Fatalf("%s: batch %d: bytes differ from the local mount", what, k)
		}
	}
}

func localDataset(t *testing.T, dir string) *dataset.Dataset {
	t.Helper()
	d := dataset.New("local", dataset.Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir},
		dataset.Options{BatchSize: s3Batch, Workers: 2})
	if err := d.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestS3ParquetEpochMatchesLocalMount(t *testing.T) {
	fx := newS3Fixture(t, s3Files)
	state := t.TempDir()
	st := fx.store(t, fx.srv.Endpoint, source.S3Options{})
	fx.dataset(t, "index", st, state, time.Second) // the first mount's index pass
	indexed := st.Stats()
	remote := fx.dataset(t, "s3", st, state, time.Second)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{localDataset(t, fx.local), remote}, Batches: prefetchBatches(t)})

	want, wantSizes := batchFiles(t, filepath.Join(mnt, "local"))
	if len(want) != 16 {
		t.Fatalf("local dataset has %d batches, want 16 (6200 rows / %d)", len(want), s3Batch)
	}
	got, gotSizes := batchFiles(t, filepath.Join(mnt, "s3"))
	sameEpoch(t, "s3", got, want, gotSizes, wantSizes)

	var man dataset.Manifest
	readJSON(t, filepath.Join(mnt, "s3", manifestName), &man)
	if len(man.Sources) != len(s3Files) {
		t.Fatalf("manifest lists %d sources, want %d: %+v", len(man.Sources), len(s3Files), man.Sources)
	}
	for i, src := range man.Sources {
		head := fx.head(t, src.Key)
		if src.Key != fx.prefix+s3Files[i].name || src.ETag == "" || src.ETag != head || src.Rows != s3Files[i].rows {
			t.Errorf("manifest source %d = %+v; want key %s, ETag %s, %d rows", i, src, fx.prefix+s3Files[i].name, head, s3Files[i].rows)
		}
	}

	// The epoch (index cached) fetched each source byte about once: the
	// column chunks of every row group, one GET each (they are adjacent);
	// the footers come from the index.
	epoch := st.Stats()
	gets, fetched := epoch.GETs-indexed.GETs, epoch.BytesFetched-indexed.BytesFetched
	amp := float64(fetched) / float64(fx.objectBytes())
	t.Logf("index pass: %d GETs, %d bytes; epoch: %d GETs, %d bytes = %.3f × the %d object bytes",
		indexed.GETs, indexed.BytesFetched, gets, fetched, amp, fx.objectBytes())
	if gets == 0 || amp < 0.9 || amp > 1.3 {
		t.Errorf("epoch fetched %d bytes in %d GETs: %.2f × the dataset's bytes, want about 1", fetched, gets, amp)
	}
	var rowGroups int64
	for _, f := range s3Files {
		rowGroups += (f.rows + f.rg - 1) / f.rg
	}
	if gets != rowGroups {
		t.Errorf("epoch issued %d GETs, want %d: one per row group, no footer reads", gets, rowGroups)
	}
	if epoch.Errors != 0 || epoch.Retries != 0 {
		t.Errorf("errors or retries against a healthy server: %+v", epoch)
	}
}

// Read in order with coalescing on (as zenithfs mount sets it for S3),
// the segments read ahead come in spans: the same batches in far fewer
// GETs than row groups, and about each byte once.
func TestS3EpochInOrderIsCoalesced(t *testing.T) {
	fx := newS3Fixture(t, s3Files)
	state := t.TempDir()
	st := fx.store(t, fx.srv.Endpoint, source.S3Options{})
	fx.dataset(t, "index", st, state, time.Second)
	indexed := st.Stats()
	remote := fx.datasetWith(t, "s3", st, dataset.Options{BatchSize: s3Batch, Workers: 2, StateDir: state,
		CheckInterval: time.Second, ReadAhead: 4, CoalesceBytes: 1 << 20})
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{localDataset(t, fx.local), remote}, Batches: prefetchBatches(t)})

	want, wantSizes := batchFiles(t, filepath.Join(mnt, "local"))
	got, gotSizes := batchFiles(t, filepath.Join(mnt, "s3"))
	sameEpoch(t, "s3", got, want, gotSizes, wantSizes)

	epoch := st.Stats()
	gets, fetched := epoch.GETs-indexed.GETs, epoch.BytesFetched-indexed.BytesFetched
	amp := float64(fetched) / float64(fx.objectBytes())
	var rowGroups int64
	for _, f := range s3Files {
		rowGroups += (f.rows + f.rg - 1) / f.rg
	}
	spans, hits := remote.SpanStats()
	t.Logf("epoch: %d GETs for %d row groups, %.2f × the object bytes; %d spans fetched, %d span hits", gets, rowGroups, amp, spans, hits)
	if gets == 0 || gets*3 > rowGroups {
		t.Errorf("epoch issued %d GETs for %d row groups: want at most a third", gets, rowGroups)
	}
	// About each byte once: a span can fetch again a row group that a
	// prefetch worker read exactly while the span was being set up (a race
	// between concurrent builds, one row group here at most).
	if amp > 1.15 {
		t.Errorf("epoch fetched %.3f × the dataset's bytes", amp)
	}
	if hits == 0 || epoch.Errors != 0 {
		t.Errorf("%d span hits, %d errors", hits, epoch.Errors)
	}
}

func (fx *s3Fixture) head(t *testing.T, key string) string {
	t.Helper()
	out, err := fx.srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(fx.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.Trim([]byte(aws.ToString(out.ETag)), `"`))
}

func TestS3FaultyEndpointEpochStillIdentical(t *testing.T) {
	fx := newS3Fixture(t, s3Files)
	proxy := s3test.NewProxy(t, fx.srv.Endpoint, s3test.Faults{}, 7)
	// Small parts: more requests, more faults per epoch.
	st := fx.store(t, proxy.URL, source.S3Options{PartSize: 32 << 10, Retries: 12, Timeout: 5 * time.Second, Backoff: 10 * time.Millisecond})
	proxy.SetFaults(s3test.Faults{Error5xx: 0.1, Reset: 0.05, CutBody: 0.08, DelayRate: 0.1, Delay: 30 * time.Millisecond})
	state := t.TempDir()
	fx.dataset(t, "index", st, state, time.Second) // indexed through the faults too
	remote := fx.dataset(t, "s3", st, state, time.Second)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{localDataset(t, fx.local), remote}, Batches: prefetchBatches(t)})

	want, wantSizes := batchFiles(t, filepath.Join(mnt, "local"))
	got, gotSizes := batchFiles(t, filepath.Join(mnt, "s3"))
	sameEpoch(t, "s3 through faults", got, want, gotSizes, wantSizes)

	ps, ss := proxy.Stats(), st.Stats()
	t.Logf("proxy %+v; store %+v", ps, ss)
	if ps.Errors5xx == 0 || ps.Resets == 0 || ps.Cuts == 0 || ps.Delays == 0 {
		t.Errorf("not every kind of fault was injected: %+v", ps)
	}
	if ss.Retries == 0 || ss.Errors != 0 {
		t.Errorf("store: %d retries, %d failed operations; want retries and no failure", ss.Retries, ss.Errors)
	}
}

// TestS3DeadEndpointFailsReadsInBoundedTime: mid-epoch the endpoint dies
// (the server stopped: connections refused; or a proxy that accepts and
// never answers). Reads fail with EIO within a bound set by the store's
// timeouts, never hang; once the endpoint is back, reads succeed and the
// epoch is identical to the local one.
func TestS3DeadEndpointFailsReadsInBoundedTime(t *testing.T) {
	const (
		timeout = 400 * time.Millisecond
		retries = 1
		backoff = 20 * time.Millisecond
	)
	attempts := time.Duration(retries+1)*timeout + 2*backoff
	stop := func(fx *s3Fixture, _ *s3test.Proxy) { fx.srv.Stop() }
	restart := func(fx *s3Fixture, _ *s3test.Proxy) { fx.srv.Restart(t) }
	hang := func(_ *s3Fixture, p *s3test.Proxy) { p.SetFaults(s3test.Faults{Hang: true}) }
	answer := func(_ *s3Fixture, p *s3test.Proxy) { p.SetFaults(s3test.Faults{}) }
	cases := []struct {
		name       string
		check      time.Duration
		kill, back func(fx *s3Fixture, p *s3test.Proxy)
		bound      time.Duration
	}{
		// A short check interval: the open's check lists the bucket, once,
		// and fails; the snapshot stays current, and the batch's own GETs
		// fail next.
		{"server stopped, noticed by the listing", 100 * time.Millisecond, stop, restart, 2*attempts + time.Second},
		{"endpoint hangs, noticed by the listing", 100 * time.Millisecond, hang, answer, 2*attempts + time.Second},
		// No listing: the batch's GETs fail. A batch of a.parquet needs up
		// to 4 row groups, fetched one after the other, and a reader may
		// first wait on a read-ahead build of the batch before it.
		{"server stopped, noticed by the GETs", time.Hour, stop, restart, 8*attempts + time.Second},
		{"endpoint hangs, noticed by the GETs", time.Hour, hang, answer, 8*attempts + time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check, bound := c.check, c.bound
			fx := newS3Fixture(t, s3Files)
			proxy := s3test.NewProxy(t, fx.srv.Endpoint, s3test.Faults{}, 11)
			st := fx.store(t, proxy.URL, source.S3Options{Timeout: timeout, Retries: retries, Backoff: backoff})
			state := t.TempDir()
			fx.dataset(t, "index", st, state, check)
			remote := fx.dataset(t, "s3", st, state, check)
			mnt := mountT(t, Config{Datasets: []*dataset.Dataset{localDataset(t, fx.local), remote}, Batches: prefetchBatches(t)})
			want, wantSizes := batchFiles(t, filepath.Join(mnt, "local"))
			dir := filepath.Join(mnt, "s3")
			n := len(want)

			for k := 0; k < 5; k++ { // the epoch under way
				if b, err := os.ReadFile(filepath.Join(dir, batchName(k, n))); err != nil || !bytes.Equal(b, want[k]) {
					t.Fatalf("batch %d before the outage: %v (or bytes differ)", k, err)
				}
			}
			c.kill(fx, proxy)
			killed := time.Now()
			var (
				failed  error
				slowest time.Duration
			)
			for k := 5; k < n && failed == nil; k++ {
				time.Sleep(min(check, 100*time.Millisecond)) // past a short check interval: the next open lists
				start := time.Now()
				_, err := os.ReadFile(filepath.Join(dir, batchName(k, n)))
				slowest = max(slowest, time.Since(start))
				failed = err
			}
			t.Logf("first failure %s after the outage began; slowest read %s (bound %s): %v",
				time.Since(killed).Round(time.Millisecond), slowest.Round(time.Millisecond), bound, failed)
			if !errors.Is(failed, syscall.EIO) {
				t.Fatalf("reads during the outage: %v, want EIO", failed)
			}
			if slowest > bound {
				t.Errorf("a read took %s during the outage, bound %s", slowest, bound)
			}
			if ss := st.Stats(); ss.Errors == 0 || ss.LastError == "" {
				t.Errorf("store stats do not show the failure: %+v", ss)
			}
			// What was read before the outage is still served from the
			// cache: a listing that fails does not take the dataset down.
			for k := 0; k < 5; k++ {
				if b, err := os.ReadFile(filepath.Join(dir, batchName(k, n))); err != nil || !bytes.Equal(b, want[k]) {
					t.Fatalf("cached batch %d during the outage: %v (or bytes differ)", k, err)
				}
			}

			c.back(fx, proxy)
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, err := os.ReadFile(filepath.Join(dir, batchName(0, n)))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("reads still fail 30s after the endpoint came back: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			got, gotSizes := batchFiles(t, dir)
			sameEpoch(t, "after recovery", got, want, gotSizes, wantSizes)
		})
	}
}

// TestS3RewrittenObjectReindexesWithoutMixing: an object rewritten while
// mounted (new ETag) makes the dataset re-index; an open of a file looked
// up before the change gets the new content (after the kernel's ESTALE
// retry), never an error, and no batch mixes old and new rows. The change
// is noticed either by the periodic listing, or — when the check interval
// has not elapsed — by a read's If-Match failing.
func TestS3RewrittenObjectReindexesWithoutMixing(t *testing.T) {
	cases := []struct {
		name  string
		check time.Duration
	}{
		{"noticed by the listing", 0},
		{"noticed by If-Match", time.Hour},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newS3Fixture(t, s3Files)
			st := fx.store(t, fx.srv.Endpoint, source.S3Options{})
			// Indexed by another instance, as on a second mount: no decoded
			// segment is held in memory, so reads go to the bucket.
			state := t.TempDir()
			fx.dataset(t, "index", st, state, c.check)
			remote := fx.dataset(t, "s3", st, state, c.check)
			mnt := mountT(t, Config{Datasets: []*dataset.Dataset{remote}, Batches: prefetchBatches(t)})
			dir := filepath.Join(mnt, "s3")
			var before dataset.Manifest
			readJSON(t, filepath.Join(dir, manifestName), &before)
			// The kernel now holds entries of the first generation.
			for k := 0; k < before.Batches; k++ {
				if _, err := os.Stat(filepath.Join(dir, batchName(k, before.Batches))); err != nil {
					t.Fatal(err)
				}
			}

			// a.parquet is rewritten: other rows, another row count and row groups.
			files := append([]pqFile(nil), s3Files...)
			files[0] = pqFile{"a.parquet", 500_000, 2100, 300}
			p := filepath.Join(t.TempDir(), "a.parquet")
			writePQ(t, p, files[0])
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fx.srv.Put(t, fx.bucket, fx.prefix+"a.parquet", b)
			newETag := fx.head(t, fx.prefix+"a.parquet")
			if newETag == before.Sources[0].ETag {
				t.Fatalf("the rewrite kept ETag %s", newETag)
			}

			// The first open after the change: batch 0, looked up before it.
			first, err := os.ReadFile(filepath.Join(dir, batchName(0, before.Batches)))
			if err != nil {
				t.Fatalf("open of a file looked up before the rewrite: %v", err)
			}
			var after dataset.Manifest
			readJSON(t, filepath.Join(dir, manifestName), &after)
			if after.Generation <= before.Generation || after.Sources[0].ETag != newETag || after.Rows != 5700 {
				t.Fatalf("after the rewrite: generation %d (was %d), ETag %s (want %s), rows %d (want 5700)",
					after.Generation, before.Generation, after.Sources[0].ETag, newETag, after.Rows)
			}
			if ss := st.Stats(); c.check == time.Hour && !strings.Contains(ss.LastError, source.ErrObjectChanged.Error()) {
				t.Errorf("the change was not noticed by a failed If-Match read: store %+v", ss)
			}
			got, sizes := batchFiles(t, dir)
			if !bytes.Equal(got[0], first) {
				t.Fatal("batch 0 differs between the first open after the change and a later one")
			}
			for k := range got {
				if sizes[k] != int64(len(got[k])) {
					t.Fatalf("batch %d: stat size %d, read %d bytes", k, sizes[k], len(got[k]))
				}
				checkRows(t, k, got[k], files)
			}
		})
	}
}

// checkRows fails unless batch file k holds exactly rows [k·B, (k+1)·B) of
// the dataset made of files, decoded.
func checkRows(t *testing.T, k int, b []byte, files []pqFile) {
	t.Helper()
	r, err := ipc.NewFileReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("batch %d: %v", k, err)
	}
	defer r.Close()
	rec, err := r.RecordBatch(0)
	if err != nil {
		t.Fatalf("batch %d: %v", k, err)
	}
	want := expectedRows(t, files, int64(k)*s3Batch, int64(k+1)*s3Batch)
	if rec.NumRows() != want.NumRows() {
		t.Fatalf("batch %d: %d rows, want %d", k, rec.NumRows(), want.NumRows())
	}
	for c := 0; c < int(want.NumCols()); c++ {
		if !array.Equal(rec.Column(c), want.Column(c)) {
			ids := rec.Column(0).(*array.Int64)
			t.Fatalf("batch %d: column %s differs (ids %d..%d): old and new rows mixed?", k, want.ColumnName(c), ids.Value(0), ids.Value(ids.Len()-1))
		}
	}
}

// expectedRows returns dataset rows [lo, hi) of files, from the generator.
func expectedRows(t *testing.T, files []pqFile, lo, hi int64) arrow.RecordBatch {
	t.Helper()
	var parts []arrow.RecordBatch
	var first int64
	for _, f := range files {
		a, b := max(lo, first), min(hi, first+f.rows)
		if a < b {
			parts = append(parts, sampledata.MixedRecord(f.start+a-first, b-a))
		}
		first += f.rows
	}
	rec, err := format.ConcatRecords(sampledata.MixedSchema(), parts)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// An object deleted from the bucket while mounted is noticed by the first
// read that misses it (404): the dataset is indexed again at once, not at
// the next periodic check, and serves the objects that are left.
func TestS3DeletedObjectReindexes(t *testing.T) {
	fx := newS3Fixture(t, s3Files)
	st := fx.store(t, fx.srv.Endpoint, source.S3Options{})
	state := t.TempDir()
	fx.dataset(t, "index", st, state, time.Hour) // segments then come from the bucket
	remote := fx.dataset(t, "s3", st, state, time.Hour)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{remote}, Batches: prefetchBatches(t)})
	dir := filepath.Join(mnt, "s3")
	var before dataset.Manifest
	readJSON(t, filepath.Join(dir, manifestName), &before)
	if before.Rows != 6200 {
		t.Fatalf("%d rows before the delete", before.Rows)
	}
	fx.srv.Delete(t, fx.bucket, fx.prefix+"b.parquet")
	k := 2600/s3Batch + 1 // a batch of b.parquet's rows
	_, err := os.ReadFile(filepath.Join(dir, batchName(k, before.Batches)))
	t.Logf("open of a batch of the deleted object: %v", err)
	var after dataset.Manifest
	readJSON(t, filepath.Join(dir, manifestName), &after)
	if after.Generation <= before.Generation || after.Rows != 3100 || len(after.Sources) != 2 {
		t.Fatalf("after the delete: generation %d (was %d), %d rows (want 3100), %d sources", after.Generation, before.Generation, after.Rows, len(after.Sources))
	}
	got, _ := batchFiles(t, dir)
	files := []pqFile{s3Files[0], s3Files[2]}
	for k := range got {
		checkRows(t, k, got[k], files)
	}
}
