package clients

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/zenithfs/zenithfs/cache"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/fs"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/prefetch"
	"github.com/zenithfs/zenithfs/source"
)

const (
	sampleRows  = 3000
	sampleBatch = 256 // 12 batch files, the last of 184 rows
)

// repoDir is the repository root (clients/..).
func repoDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// mounted is a sample Parquet dataset "pq" mounted in-process behind a
// real prefetch store, and a separate load of it for expectations.
type mounted struct {
	mnt  string
	snap *dataset.Snapshot
}

func mountSample(t *testing.T) *mounted {
	t.Helper()
	return mountSampleOf(t, sampleRows, sampleBatch, 700)
}

// mountSampleOf mounts rows of the mixed sample as one Parquet file with
// row groups of rowGroup rows, cut into batches of batch rows.
func mountSampleOf(t *testing.T, rows int64, batch int, rowGroup int64) *mounted {
	t.Helper()
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "part-0.parquet"), rows, rowGroup); err != nil {
		t.Fatal(err)
	}
	load := func() *dataset.Dataset {
		d := dataset.New("pq", dataset.Location{Store: source.NewLocal(dir), Prefix: true, StoreID: "file:" + dir},
			dataset.Options{BatchSize: batch, Workers: 2, VerifyAfterBuild: true})
		if err := d.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	c, err := cache.New(128 << 20)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := prefetch.New(prefetch.Options{Cache: c, Workers: 2, Depth: 4})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	srv, err := fs.Mount(mnt, fs.Config{Datasets: []*dataset.Dataset{load()}, Batches: pf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		pf.Close()
		c.Close()
	})
	s, err := load().Current()
	if err != nil {
		t.Fatal(err)
	}
	return &mounted{mnt: mnt, snap: s}
}

// row is one source row as the clients check it.
type row struct {
	ID            int64     `json:"id"`
	I32           *int32    `json:"i32"`
	F64           *float64  `json:"f64"`
	Flag          *bool     `json:"flag"`
	Name          *string   `json:"name"`
	Blob          *string   `json:"blob"` // hex
	TS            *int64    `json:"ts"`   // microseconds since the epoch, UTC
	Price         *float64  `json:"price"`
	PriceUnscaled *string   `json:"price_unscaled"`
	Tags          *[]*int32 `json:"tags"`
	Point         *point    `json:"point"`
}

type point struct {
	X     *float32 `json:"x"`
	Label *string  `json:"label"`
}

func ptr[T any](v T) *T { return &v }

// sourceRow is row id of the mixed sample, straight from the generator.
func sourceRow(id int64) row {
	rec := sampledata.MixedRecord(id, 1)
	r := row{ID: id}
	if c := rec.Column(1).(*array.Int32); c.IsValid(0) {
		r.I32 = ptr(c.Value(0))
	}
	if c := rec.Column(2).(*array.Float64); c.IsValid(0) {
		r.F64 = ptr(c.Value(0))
	}
	if c := rec.Column(3).(*array.Boolean); c.IsValid(0) {
		r.Flag = ptr(c.Value(0))
	}
	if c := rec.Column(4).(*array.String); c.IsValid(0) {
		r.Name = ptr(c.Value(0))
	}
	if c := rec.Column(5).(*array.Binary); c.IsValid(0) {
		r.Blob = ptr(hex.EncodeToString(c.Value(0)))
	}
	if c := rec.Column(6).(*array.Timestamp); c.IsValid(0) {
		r.TS = ptr(int64(c.Value(0)))
	}
	if c := rec.Column(7).(*array.Decimal128); c.IsValid(0) {
		r.Price = ptr(c.Value(0).ToFloat64(2))
		r.PriceUnscaled = ptr(c.Value(0).BigInt().String())
	}
	if c := rec.Column(8).(*array.List); c.IsValid(0) {
		vals := c.ListValues().(*array.Int32)
		lo, hi := c.ValueOffsets(0)
		tags := []*int32{}
		for i := lo; i < hi; i++ {
			if vals.IsValid(int(i)) {
				tags = append(tags, ptr(vals.Value(int(i))))
			} else {
				tags = append(tags, nil)
			}
		}
		r.Tags = &tags
	}
	if c := rec.Column(9).(*array.Struct); c.IsValid(0) {
		p := point{}
		if x := c.Field(0).(*array.Float32); x.IsValid(0) {
			p.X = ptr(x.Value(0))
		}
		if l := c.Field(1).(*array.String); l.IsValid(0) {
			p.Label = ptr(l.Value(0))
		}
		r.Point = &p
	}
	return r
}

// expected is what a client is told to find: per directory, the files
// in order and the row ids each holds; and every source row by id.
type expected struct {
	Dirs map[string][]expectedFile `json:"dirs"`
	Rows map[string]row            `json:"rows"`
}

type expectedFile struct {
	Path string  `json:"path"`
	IDs  []int64 `json:"ids"`
}

// expect writes the expectations for the given directories below the
// dataset ("" is the dataset's own files, else a view spec) and returns
// the JSON file's path.
func (m *mounted) expect(t *testing.T, specs ...string) string {
	t.Helper()
	e := expected{Dirs: map[string][]expectedFile{}, Rows: map[string]row{}}
	for _, spec := range specs {
		dir := filepath.Join(m.mnt, "pq")
		var files []expectedFile
		if spec == "" {
			for k := 0; k < m.snap.NumBatches(); k++ {
				lo, hi := m.snap.BatchRows(k)
				f := expectedFile{Path: filepath.Join(dir, fmt.Sprintf("%06d.arrow", k))}
				for id := lo; id < hi; id++ {
					f.IDs = append(f.IDs, id)
				}
				files = append(files, f)
			}
		} else {
			sp, err := dataset.ParseViewSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			v, err := m.snap.View(sp)
			if err != nil {
				t.Fatal(err)
			}
			dir = filepath.Join(dir, "views", spec)
			for k := 0; k < v.NumBatches(); k++ {
				files = append(files, expectedFile{Path: filepath.Join(dir, fmt.Sprintf("%06d%s", k, v.Ext())), IDs: v.RowIndices(k)})
			}
		}
		e.Dirs[dir] = files
		for _, f := range files {
			for _, id := range f.IDs {
				e.Rows[fmt.Sprint(id)] = sourceRow(id)
			}
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "expected.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// debianPython is Debian's python3 (which has python3-torch), not a
// python3 that PATH may find first (pyenv, venvs); ZENITH_PYTHON overrides.
func debianPython(t *testing.T, modules string) string {
	t.Helper()
	py := os.Getenv("ZENITH_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	out, err := exec.Command(py, "-c", "import "+modules).CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import %s (%v: %s): run scripts/setup-clients.sh (installs python3-numpy python3-torch)", py, modules, err, bytes.TrimSpace(out))
	}
	return py
}

// nodeClients returns the node binary and clients/node, with its modules.
func nodeClients(t *testing.T) (string, string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run scripts/setup-clients.sh (needs Node.js ≥ 20 and npm)")
	}
	dir := filepath.Join(repoDir(t), "clients", "node")
	for _, m := range []string{"apache-arrow", "nodejs-polars", "nodejs-polars-linux-x64-gnu"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", m, "package.json")); err != nil {
			t.Fatalf("clients/node/node_modules/%s is missing: run scripts/setup-clients.sh (npm install in clients/node)", m)
		}
	}
	return node, dir
}

// run runs a client and fails the test with its output if it fails.
func run(t *testing.T, timeout time.Duration, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second // a child left holding the output pipe must not hang the test
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	t.Logf("%s: %s", filepath.Base(args[0]), lastLine(out))
	return string(out)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func TestTorchDataLoaderTrainsFromNPZView(t *testing.T) {
	py := debianPython(t, "numpy, torch")
	m := mountSample(t)
	spec := "seed=7,epoch=2,rank=0,world=2,format=npz"
	exp := m.expect(t, spec)
	out := run(t, 5*time.Minute, repoDir(t), py, "clients/python/check_torch.py", filepath.Join(m.mnt, "pq", "views", spec), exp)
	if !strings.Contains(out, `"ok": true`) {
		t.Fatalf("torch client did not report ok:\n%s", out)
	}
}

func TestNumpyReadsEveryNPZType(t *testing.T) {
	py := debianPython(t, "numpy")
	rec := everyTypeRecord(t)
	b, err := dataset.EncodeNPZ(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "types.npz")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, 2*time.Minute, repoDir(t), py, "clients/python/check_npz_types.py", p)
	if !strings.Contains(out, `"ok": true`) {
		t.Fatalf("numpy client did not report ok:\n%s", out)
	}
	// And the same mapping through a mount: the mixed sample's npz view.
	m := mountSample(t)
	spec := "seed=1,epoch=0,shuffle=block:3,format=npz"
	out = run(t, 2*time.Minute, repoDir(t), py, "clients/python/check_npz_view.py", filepath.Join(m.mnt, "pq", "views", spec), m.expect(t, spec))
	if !strings.Contains(out, `"ok": true`) {
		t.Fatalf("numpy view client did not report ok:\n%s", out)
	}
}

func TestNodeApacheArrowReadsBatchFiles(t *testing.T) {
	node, dir := nodeClients(t)
	m := mountSample(t)
	exp := m.expect(t, "", "seed=7,epoch=2,shuffle=block:3", "seed=7,epoch=2,rank=1,world=2")
	out := run(t, 2*time.Minute, dir, node, "check_arrow.mjs", exp)
	if !strings.Contains(out, `"ok":true`) {
		t.Fatalf("apache-arrow client did not report ok:\n%s", out)
	}
}

func TestNodePolarsReadsBatchFiles(t *testing.T) {
	node, dir := nodeClients(t)
	m := mountSample(t)
	exp := m.expect(t, "", "seed=3,epoch=0", "seed=3,epoch=0,shuffle=block:2,rank=2,world=3")
	out := run(t, 2*time.Minute, dir, node, "check_polars.mjs", exp)
	if !strings.Contains(out, `"ok":true`) {
		t.Fatalf("nodejs-polars client did not report ok:\n%s", out)
	}
}

// arrowGoEnv, when set to an expected.json path, makes the test binary
// the arrow-go client instead of running tests (see TestMain).
const arrowGoEnv = "ZENITH_ARROWGO_CLIENT"

// TestMain runs the arrow-go client when asked. The client is a separate
// process, as any reader of a mount is: a process that memory-maps a file
// of a FUSE mount it serves itself can deadlock (a page fault blocks a
// thread the garbage collector then waits for, while the server that would
// answer the fault is stopped).
func TestMain(m *testing.M) {
	if p := os.Getenv(arrowGoEnv); p != "" {
		if err := arrowGoClient(p); err != nil {
			fmt.Fprintln(os.Stderr, "arrow-go client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestArrowGoReadsViewFiles(t *testing.T) {
	m := mountSample(t)
	exp := m.expect(t, "seed=5,epoch=1,shuffle=block:4,rank=1,world=3", "seed=5,epoch=1,format=arrow")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), arrowGoEnv+"="+exp)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ok":true`) {
		t.Fatalf("arrow-go client: %v\n%s", err, out)
	}
	t.Logf("arrow-go client: %s", lastLine(out))
}

// arrowGoClient memory-maps every file of the expected directories, reads
// it with ipc.NewFileReader, and compares every row with the generator.
func arrowGoClient(expectedPath string) error {
	var e expected
	b, err := os.ReadFile(expectedPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return err
	}
	files, rows := 0, 0
	for dir, want := range e.Dirs {
		if len(want) == 0 {
			return fmt.Errorf("%s: no files expected", dir)
		}
		for _, f := range want {
			if err := arrowGoFile(f); err != nil {
				return err
			}
			files++
			rows += len(f.IDs)
		}
	}
	fmt.Printf("{\"ok\":true,\"files\":%d,\"rows\":%d}\n", files, rows)
	return nil
}

func arrowGoFile(f expectedFile) error {
	fh, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	mm, err := syscall.Mmap(int(fh.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", f.Path, err)
	}
	defer syscall.Munmap(mm)
	r, err := ipc.NewFileReader(bytes.NewReader(mm))
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	defer r.Close()
	rec, err := r.RecordBatch(0)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if int(rec.NumRows()) != len(f.IDs) {
		return fmt.Errorf("%s: %d rows, want %d", f.Path, rec.NumRows(), len(f.IDs))
	}
	for i, id := range f.IDs {
		ref := sampledata.MixedRecord(id, 1)
		for c := 0; c < int(ref.NumCols()); c++ {
			got := array.NewSlice(rec.Column(c), int64(i), int64(i+1))
			if !array.Equal(ref.Column(c), got) {
				return fmt.Errorf("%s row %d (id %d) column %s: got %v want %v", f.Path, i, id, ref.ColumnName(c), got, ref.Column(c))
			}
		}
	}
	return nil
}

func TestExampleTrainsOverShuffledRankView(t *testing.T) {
	py := debianPython(t, "numpy, torch")
	m := mountSample(t)
	out := run(t, 5*time.Minute, repoDir(t), py, "examples/train_torch.py", "--dataset", filepath.Join(m.mnt, "pq"),
		"--rank", "1", "--world", "2", "--seed", "42", "--epochs", "2", "--workers", "2")
	if !strings.Contains(out, "epoch 1:") || !strings.Contains(out, "done") {
		t.Fatalf("example did not train two epochs:\n%s", out)
	}
}

// everyTypeRecord has one column of each type the npz mapping supports,
// with nulls; check_npz_types.py knows these values.
func everyTypeRecord(t *testing.T) arrow.RecordBatch {
	t.Helper()
	f := func(name string, typ arrow.DataType, nullable bool) arrow.Field {
		return arrow.Field{Name: name, Type: typ, Nullable: nullable}
	}
	schema := arrow.NewSchema([]arrow.Field{
		f("i8", arrow.PrimitiveTypes.Int8, false), f("u16", arrow.PrimitiveTypes.Uint16, false),
		f("i32", arrow.PrimitiveTypes.Int32, true), f("u64", arrow.PrimitiveTypes.Uint64, false),
		f("f16", arrow.FixedWidthTypes.Float16, false), f("f32", arrow.PrimitiveTypes.Float32, false),
		f("f64", arrow.PrimitiveTypes.Float64, true), f("b", arrow.FixedWidthTypes.Boolean, true),
		f("s", arrow.BinaryTypes.String, true), f("bin", arrow.BinaryTypes.Binary, true),
		f("fsb", &arrow.FixedSizeBinaryType{ByteWidth: 2}, false),
		f("d32", arrow.FixedWidthTypes.Date32, false), f("ts", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, true),
		f("dur", &arrow.DurationType{Unit: arrow.Nanosecond}, false), f("t64", arrow.FixedWidthTypes.Time64us, false),
		f("dec", &arrow.Decimal128Type{Precision: 10, Scale: 2}, true),
		f("fsl", arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Int16), false),
		f("lst", arrow.ListOf(arrow.PrimitiveTypes.Int64), true),
		f("m", arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float64), false),
		f("st", arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32},
			arrow.Field{Name: "b", Type: arrow.BinaryTypes.String, Nullable: true}), true),
	}, nil)
	rows := `[
	 {"i8": -1, "u16": 65535, "i32": 7, "u64": 18446744073709551615, "f16": 0.5, "f32": 1.5, "f64": 2.25, "b": true,
	  "s": "Ωmega", "bin": "AQI=", "fsb": "AAE=", "d32": 19700, "ts": 1700000000000001, "dur": 5, "t64": 3600000000,
	  "dec": "12.34", "fsl": [1, 2, 3], "lst": [10, 20], "m": [{"key": "k", "value": 0.5}], "st": {"a": 1, "b": "x"}},
	 {"i8": 2, "u16": 0, "i32": null, "u64": 0, "f16": -1, "f32": 0, "f64": null, "b": null,
	  "s": null, "bin": null, "fsb": "//8=", "d32": 0, "ts": null, "dur": -5, "t64": 0,
	  "dec": null, "fsl": [4, 5, 6], "lst": null, "m": [], "st": null}
	]`
	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, schema, strings.NewReader(rows))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestIndependentReadersOn100kRows is the read path's acceptance check: a
// 100,000-row Parquet dataset of mixed types (ints, floats, bools, strings,
// binary, timestamps with a zone, decimals, lists, structs, nulls) mounted
// with batches of 1000 rows is read back by Arrow readers outside this
// project (apache-arrow and nodejs-polars), every value of every row
// checked against the generator, with stat sizes equal to the bytes read.
func TestIndependentReadersOn100kRows(t *testing.T) {
	node, dir := nodeClients(t)
	m := mountSampleOf(t, 100_000, 1000, 8192)
	if n := m.snap.NumBatches(); n != 100 {
		t.Fatalf("%d batch files, want 100", n)
	}
	for k := 0; k < 100; k++ {
		p := filepath.Join(m.mnt, "pq", fmt.Sprintf("%06d.arrow", k))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(len(b)) {
			t.Fatalf("%s: stat says %d bytes, read %d", p, fi.Size(), len(b))
		}
	}
	exp := m.expect(t, "")
	for _, script := range []string{"check_arrow.mjs", "check_polars.mjs"} {
		out := run(t, 3*time.Minute, dir, node, script, exp)
		if !strings.Contains(out, `"ok":true`) || !strings.Contains(out, `"rows":100000`) {
			t.Fatalf("%s did not check all 100000 rows:\n%s", script, out)
		}
	}
}
