package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// TestMain lets the test binary act as the consumer process the
// benchmark starts (`<self> consume …`).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "consume" {
		if err := consumeCmd(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestProxyShapesAndCounts(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" {
			t.Error("upstream got no Host header")
		}
		w.Header().Set("X-Host", r.Host)
		w.Write(body)
	}))
	t.Cleanup(up.Close)
	cases := []struct {
		name    string
		shape   Shape
		path    string
		minTime time.Duration
		maxTime time.Duration
		gets    int64
	}{
		{"loopback object", Shape{}, "/bucket/key", 0, 2 * time.Second, 1},
		{"latency", Shape{Latency: 150 * time.Millisecond}, "/bucket/key", 150 * time.Millisecond, 3 * time.Second, 1},
		{"bandwidth 40 MB/s", Shape{Bandwidth: 40e6}, "/bucket/key", 95 * time.Millisecond, 3 * time.Second, 1},
		{"listing", Shape{}, "/bucket/", 0, 2 * time.Second, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := StartProxy(up.URL, tc.shape)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			start := time.Now()
			resp, err := http.Get(p.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("body: %d bytes, want the upstream's %d", len(got), len(body))
			}
			if h := resp.Header.Get("X-Host"); h != strings.TrimPrefix(p.URL, "http://") {
				t.Errorf("upstream saw Host %q, want the proxy's address (signatures cover it)", h)
			}
			if took < tc.minTime || took > tc.maxTime {
				t.Errorf("took %s, want within [%s, %s]", took, tc.minTime, tc.maxTime)
			}
			c := p.Counts()
			wantBytes := int64(0)
			if tc.gets > 0 {
				wantBytes = int64(len(body))
			}
			if c.Requests != 1 || c.GETs != tc.gets || c.Bytes != wantBytes || c.Lists != 1-tc.gets {
				t.Errorf("counts %+v, want 1 request, %d GETs, %d bytes", c, tc.gets, wantBytes)
			}
			p.Reset()
			if c := p.Counts(); c != (Counts{}) {
				t.Errorf("after Reset: %+v", c)
			}
		})
	}
}

func TestOrderIsASeededPermutation(t *testing.T) {
	counts := []int{3, 5, 2}
	nat := Order(counts, false, 1, 0)
	if len(nat) != 10 || nat[0] != (Unit{0, 0}) || nat[3] != (Unit{1, 0}) || nat[9] != (Unit{2, 1}) {
		t.Fatalf("natural order %v", nat)
	}
	a, b := Order(counts, true, 1, 0), Order(counts, true, 1, 0)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different orders: %v vs %v", a, b)
	}
	if slices.Equal(a, nat) {
		t.Errorf("shuffled order equals the natural one: %v", a)
	}
	if c := Order(counts, true, 1, 1); slices.Equal(a, c) {
		t.Errorf("epochs 0 and 1 give the same order %v", a)
	}
	sorted := slices.Clone(a)
	slices.SortFunc(sorted, func(x, y Unit) int { return (x.File*100 + x.RowGroup) - (y.File*100 + y.RowGroup) })
	if !slices.Equal(sorted, nat) {
		t.Errorf("shuffled order is not a permutation of the units: %v", a)
	}
}

var tiny = Dataset{Name: "table", Files: 2, RowsPerFile: 2500, RowGroup: 1000, Batch: 500}

func TestGenerateIsDeterministic(t *testing.T) {
	for _, d := range []Dataset{tiny, {Name: "blobs", Files: 1, RowsPerFile: 10, RowGroup: 4, Batch: 4}} {
		d1, n1, err := Generate(t.TempDir(), d)
		if err != nil {
			t.Fatal(err)
		}
		d2, n2, err := Generate(t.TempDir(), d)
		if err != nil {
			t.Fatal(err)
		}
		if n1 != n2 || n1 == 0 {
			t.Fatalf("%s: sizes %d and %d", d.Name, n1, n2)
		}
		for i := 0; i < d.Files; i++ {
			a, _ := os.ReadFile(filepath.Join(d1, d.FileName(i)))
			b, _ := os.ReadFile(filepath.Join(d2, d.FileName(i)))
			if !bytes.Equal(a, b) {
				t.Errorf("%s file %d differs between two generations", d.Name, i)
			}
			pr, err := file.OpenParquetFile(filepath.Join(d1, d.FileName(i)), false)
			if err != nil {
				t.Fatal(err)
			}
			want := int((d.RowsPerFile + d.RowGroup - 1) / d.RowGroup)
			if pr.NumRowGroups() != want || pr.NumRows() != d.RowsPerFile {
				t.Errorf("%s file %d: %d row groups, %d rows; want %d, %d", d.Name, i, pr.NumRowGroups(), pr.NumRows(), want, d.RowsPerFile)
			}
			pr.Close()
		}
	}
}

// TestConsumersReadTheSameValues decodes one dataset as Parquet (natural
// and shuffled) and as Arrow IPC batch files written from it: every
// consumer sees every row, and the checksum of the values is the same.
func TestConsumersReadTheSameValues(t *testing.T) {
	dir, _, err := Generate(t.TempDir(), tiny)
	if err != nil {
		t.Fatal(err)
	}
	nat, err := consumeParquet(dir, tiny.Batch, false, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	shuf, err := consumeParquet(dir, tiny.Batch, true, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if nat.Rows != tiny.Rows() || shuf.Rows != tiny.Rows() || nat.Batches != 10 {
		t.Fatalf("rows %d / %d, batches %d; want %d rows in 10 batches", nat.Rows, shuf.Rows, nat.Batches, tiny.Rows())
	}
	if nat.Sum != shuf.Sum || nat.FirstNS < nat.StartNS || nat.EndNS < nat.FirstNS {
		t.Errorf("natural %+v, shuffled %+v: want equal sums and ordered times", nat, shuf)
	}
	// The same rows as IPC batch files (one batch each), as zenithfs serves them.
	ipcDir := t.TempDir()
	d := tiny
	for i := int64(0); i < d.Rows(); i += int64(d.Batch) {
		rec := d.record(i, int64(d.Batch))
		var buf bytes.Buffer
		w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(rec.Schema()))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		w.Close()
		rec.Release()
		os.WriteFile(filepath.Join(ipcDir, fmt.Sprintf("%06d.arrow", i/int64(d.Batch))), buf.Bytes(), 0o644)
	}
	got, err := consumeIPC(ipcDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != d.Rows() || got.Files != 10 || got.Batches != 10 {
		t.Errorf("IPC: %+v, want %d rows in 10 files", got, d.Rows())
	}
	if _, err := consumeIPC(t.TempDir(), 0); err == nil {
		t.Error("an empty directory consumed without error")
	}
}

func TestRatiosAndReport(t *testing.T) {
	run := func(arm, net string, sps float64, hwm int64) Run {
		return Run{Dataset: "table", Arm: arm, Kind: strings.Fields(arm)[0], Net: net, SamplesPS: sps, MBps: sps / 1000, TTFB: 0.5, DaemonHWM: hwm}
	}
	res := Result{Cfg: Config{Nets: []string{"remote"}, CacheSize: "512MiB", Reps: 3, Date: "test"},
		Datasets: []DataInfo{{Dataset: tiny, Bytes: 1000}}}
	for _, v := range []float64{100, 300, 200} { // median 200
		res.Runs = append(res.Runs, run("zenithfs", "remote", v*10, 600<<20), run("zenithfs view", "remote", v*2, 700<<20),
			run("s3fs", "remote", v, 0), run("rclone full", "remote", v*4, 0), run("sdk", "remote", v*5, 0),
			run("s3fs random", "remote", v, 0), run("sdk random", "remote", v/2, 0))
	}
	res.Runs = append(res.Runs, Run{Dataset: "table", Arm: "rclone off", Net: "remote", Err: "boom"})
	ratios := Ratios(res)
	find := func(key string) (Ratio, bool) {
		for _, r := range ratios {
			if strings.HasPrefix(r.ID+" "+r.What, key) {
				return r, true
			}
		}
		return Ratio{}, false
	}
	want := []struct {
		key   string
		value float64
		met   bool
	}{
		{"P5 zenithfs ÷ best", 2.5, true},     // 2000 ÷ rclone full 800
		{"P5 zenithfs ÷ in-process", 2, true}, // ÷ sdk 1000
		{"P6b zenithfs view", 2, true},        // 400 ÷ s3fs random 200
		{"P7 zenithfs time", 0.5, true},
		{"P8 zenithfs peak", 700, false}, // > 512 + 150
	}
	for _, w := range want {
		r, ok := find(w.key)
		if !ok {
			t.Errorf("no ratio %q in %v", w.key, ratios)
			continue
		}
		if math.Abs(r.Value-w.value) > 1e-9 || r.Met() != w.met {
			t.Errorf("%s = %v (met %v), want %v (met %v)", w.key, r.Value, r.Met(), w.value, w.met)
		}
	}
	md := Report(res)
	for _, s := range []string{"| P5 | table | remote |", "rclone off | remote", "1 failed", "boom"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if err := Plot(res, filepath.Join(t.TempDir(), "p.png")); err != nil {
		t.Error(err)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"512MiB", 512 << 20}, {"1GiB", 1 << 30}, {"300MB", 300e6}, {"4096", 4096}} {
		if got, err := parseSize(tc.in); err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize(lots): no error")
	}
}

// TestRunEndToEnd runs the whole benchmark on tiny data: versitygw, the
// proxy, real zenithfs mounts (natural and view), the SDK arm and the local
// arms, plus s3fs and rclone where installed; then checks the results.
func TestRunEndToEnd(t *testing.T) {
	benchkit.RequireRootFUSE(t, "FUSE mounts with DirectMount and drop_caches")
	if _, err := benchkit.FindVersitygw(); err != nil {
		t.Skipf("needs versitygw (CI installs it with scripts/s3-server.sh install): %v", err)
	}
	bin := benchkit.BuildZenithfs(t)
	arms := "zenithfs,sdk,local"
	for _, p := range [][2]string{{"s3fs", "s3fs"}, {"rclone", "rclone-full,rclone-off"}} {
		if _, err := exec.LookPath(p[0]); err == nil {
			arms += "," + p[1]
		} else {
			t.Logf("%s not installed: its arms are left out (bench/run.sh installs it)", p[0])
		}
	}
	work, out := t.TempDir(), t.TempDir()
	err := runMain([]string{"-bin", bin, "-work", work, "-data", t.TempDir(), "-out", out, "-date", "test",
		"-reps", "1", "-arms", arms, "-latency", "5ms", "-bandwidth", "200e6", "-profile", t.TempDir(), "-profile-seconds", "1",
		"-table-files", "2", "-table-rows", "3000", "-table-row-group", "1000", "-table-batch", "1000",
		"-blob-files", "1", "-blob-rows", "8", "-blob-row-group", "4", "-blob-batch", "4"})
	if err != nil {
		t.Fatal(err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), work) {
		t.Errorf("a mount under %s was left behind", work)
	}
	var res Result
	js, err := os.ReadFile(filepath.Join(out, "peers-test.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &res); err != nil {
		t.Fatal(err)
	}
	if want := 2 * len(armsOf(res.Cfg)); len(res.Runs) != want {
		t.Errorf("%d runs, want %d", len(res.Runs), want)
	}
	for _, r := range res.Runs {
		ds := Dataset{Files: 2, RowsPerFile: 3000}
		if r.Dataset == "blobs" {
			ds = Dataset{Files: 1, RowsPerFile: 8}
		}
		if r.Err != "" || r.Rows != ds.Rows() || r.SamplesPS <= 0 || r.TTFB <= 0 {
			t.Errorf("%s %s (%s): rows %d, %v samples/s, ttfb %v, error %q", r.Dataset, r.Arm, r.Net, r.Rows, r.SamplesPS, r.TTFB, r.Err)
		}
		if r.Net != "local" && (r.GETs == 0 || r.Bytes == 0) {
			t.Errorf("%s %s (%s): the proxy counted %d GETs, %d bytes", r.Dataset, r.Arm, r.Net, r.GETs, r.Bytes)
		}
		if strings.HasPrefix(r.Kind, "zenithfs") && r.DaemonHWM == 0 {
			t.Errorf("%s %s: no daemon peak RSS", r.Dataset, r.Arm)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "peers-test.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| P5 | table | remote |", "| P6b |", "| P7 |", "| P8 |", "zenithfs view"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("results page lacks %q", s)
		}
	}
	for _, f := range []string{"peers-test.png", "peers-test-ttfb.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
}
