package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"512MiB", 512 << 20, false},
		{"1GiB", 1 << 30, false},
		{"64M", 64 << 20, false},
		{"1000", 1000, false},
		{"1.5GiB", 3 << 29, false},
		{"lots", 0, true},
		{"-1MiB", 0, true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestCacheBudgetHoldsTheData(t *testing.T) {
	for _, tc := range []struct {
		flag     string
		data     int64
		want     int64
		wantFlag string
	}{
		{"auto", 10 << 20, 256 << 20, "256MiB"},  // the floor
		{"auto", 157 << 20, 320 << 20, "320MiB"}, // 157·8/5·5/4 = 314 → 320
		{"auto", 1 << 30, 2048 << 20, "2048MiB"}, // exact multiple of 64 MiB
		{"768MiB", 1 << 30, 768 << 20, "768MiB"}, // explicit: kept as given
	} {
		got, f := cacheBudget(tc.flag, tc.data)
		if got != tc.want || f != tc.wantFlag {
			t.Errorf("cacheBudget(%q, %d) = %d, %q; want %d, %q", tc.flag, tc.data, got, f, tc.want, tc.wantFlag)
		}
		if tc.flag == "auto" && got*5/8 < tc.data {
			t.Errorf("auto budget %d: the batch cache (5/8) cannot hold %d bytes", got, tc.data)
		}
	}
}

func TestRowRatioAndGoal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		row    Row
		ratio  float64
		met    bool
		hasMet bool
	}{
		{"throughput meets", Row{ArmVals: []float64{9, 10, 11}, BaseVals: []float64{10, 10, 10}, Goal: 0.9}, 1, true, true},
		{"throughput misses", Row{ArmVals: []float64{4, 5, 6}, BaseVals: []float64{10}, Goal: 0.9}, 0.5, false, true},
		{"fraction meets", Row{Fraction: true, ArmVals: []float64{0.01, 0.04, 0.2}, BaseVals: []float64{0.3}, Goal: 0.05}, 0.04 / 0.3, true, true},
		{"fraction misses", Row{Fraction: true, ArmVals: []float64{0.1}, BaseVals: []float64{0.3}, Goal: 0.05}, 0.1 / 0.3, false, true},
		{"no goal", Row{ArmVals: []float64{1}, BaseVals: []float64{2}}, 0.5, false, false},
		{"no baseline", Row{ArmVals: []float64{1}, Goal: 1}, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.row.Ratio(); abs(got-tc.ratio) > 1e-9 {
				t.Errorf("Ratio = %v, want %v", got, tc.ratio)
			}
			met, ok := tc.row.Met()
			if met != tc.met || ok != tc.hasMet {
				t.Errorf("Met = %v, %v; want %v, %v", met, ok, tc.met, tc.hasMet)
			}
		})
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestStatsLookups(t *testing.T) {
	var s Stats
	raw := `{"prefetch":{"prefetch_hits":7,"reader_wait_seconds":0.5},
		"io":{"io_uring_mode":"on","uring_reads":12,"pread_reads":0,"fallback_to_pread":false},
		"datasets":[{"name":"t","segment_cache_hits":3}]}`
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	if got := s.Num("prefetch.prefetch_hits"); got != 7 {
		t.Errorf("prefetch_hits = %v", got)
	}
	if got := s.Num("prefetch.missing"); got != 0 {
		t.Errorf("missing counter = %v, want 0", got)
	}
	if got := s.Num("io.io_uring_mode"); got != 0 {
		t.Errorf("a string read as a number: %v", got)
	}
	got := FormatCounters(s.Matching("uring", "pread"))
	want := "io.fallback_to_pread=false, io.io_uring_mode=on, io.pread_reads=0, io.uring_reads=12"
	if got != want {
		t.Errorf("Matching = %q, want %q", got, want)
	}
}

func TestFileReaderReadsWholeFiles(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	var want int64
	for i, n := range []int{0, 1, 4096, 1<<20 + 3, 17} { // shrinking after growing reuses the buffer
		p := filepath.Join(dir, strings.Repeat("f", i+1))
		b := bytes.Repeat([]byte{byte(i + 1)}, n)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		want += int64(n)
	}
	var r fileReader
	for i, p := range paths {
		b, err := r.read(p)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := os.ReadFile(p)
		if !bytes.Equal(b, orig) {
			t.Fatalf("file %d: read %d bytes that differ from the file's %d", i, len(b), len(orig))
		}
	}
	n, _, err := readAll(paths)
	if err != nil || n != want {
		t.Fatalf("readAll = %d, %v; want %d", n, err, want)
	}
	if err := evictPageCache(paths); err != nil {
		t.Fatalf("evictPageCache: %v", err)
	}
	copies, err := copyFiles(paths, filepath.Join(dir, "copies"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range paths {
		a, _ := os.ReadFile(paths[i])
		b, _ := os.ReadFile(copies[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("copy %d differs", i)
		}
	}
}

func TestGenerateIsDeterministicAndDecodes(t *testing.T) {
	for _, spec := range []GenSpec{
		{Kind: KindTable, Rows: 5000, RowGroup: 1500},
		{Kind: KindBlobs, Rows: 70, RowGroup: 32},
	} {
		t.Run(string(spec.Kind), func(t *testing.T) {
			a, err := Generate(t.TempDir(), spec)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Generate(t.TempDir(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if ha, hb := fileHash(t, a), fileHash(t, b); ha != hb {
				t.Errorf("two generations of %v differ", spec)
			}
			rows, _, err := parquetEpoch(a, 512)
			if err != nil {
				t.Fatal(err)
			}
			if rows != spec.Rows {
				t.Errorf("decoded %d rows, want %d", rows, spec.Rows)
			}
			if spec.Kind == KindBlobs {
				fi, _ := os.Stat(a)
				if fi.Size() < spec.Rows*BlobBytes {
					t.Errorf("blob file of %d bytes is smaller than its %d blobs of %d bytes", fi.Size(), spec.Rows, BlobBytes)
				}
			}
		})
	}
	if _, err := Generate(t.TempDir(), GenSpec{Kind: KindTable}); err == nil {
		t.Error("a spec of zero rows was accepted")
	}
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestConsumerCountsWaitAndCompute(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := 0; i < 5; i++ {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	for _, spin := range []bool{false, true} {
		r, err := consume(paths, 4*time.Millisecond, spin)
		if err != nil {
			t.Fatal(err)
		}
		if r.Batches != 5 || r.Total < 20*time.Millisecond || r.Wait > r.Total || r.OpenWait > r.Wait {
			t.Errorf("spin=%v: %+v", spin, r)
		}
		if f := r.WaitFraction(); f < 0 || f > 0.5 {
			t.Errorf("spin=%v: reading five small local files took %.0f%% of the time", spin, 100*f)
		}
	}
}

func TestReportWritesTablePlotAndJSON(t *testing.T) {
	rep := &Report{
		Config: Config{Date: "2000-01-02", Reps: 3, Workers: 2, Prefetch: 8},
		Host:   "test",
		Datasets: []*DatasetResult{{
			Kind: KindTable, Spec: GenSpec{Kind: KindTable, Rows: 100, RowGroup: 10}, BatchSize: 10, Files: 10, Bytes: 10 << 20,
			Rows: []Row{
				{ID: "P1", Metric: "m1", Unit: "MB/s", Arm: "a", ArmVals: []float64{95, 96, 97}, Base: "b", BaseVals: []float64{100, 100, 100}, Goal: 0.9},
				{ID: "P2", Metric: "m2", Unit: "MB/s", Arm: "a", ArmVals: []float64{10, 20, 30}, Base: "b", BaseVals: []float64{100}, Goal: 0.6},
				{ID: "P4", Metric: "m4", Unit: "fraction", Fraction: true, Arm: "on", ArmVals: []float64{0.02}, Base: "off", BaseVals: []float64{0.3}, Goal: 0.05},
				{ID: "uring", Metric: "u", Unit: "MB/s", Arm: "on", ArmVals: []float64{1}, Base: "off", BaseVals: nil},
			},
			Sweep:  []SweepPoint{{BatchRows: 5, Files: 20, FileBytes: 1 << 10, Tmpfs: []float64{100}, Warm: []float64{50}, Cold: []float64{20}}},
			Memory: []MemRow{{Arms: "x", Budget: 256 << 20, HWM: 300 << 20}},
			Notes:  []string{"a note"},
		}},
	}
	dir := t.TempDir()
	md, err := rep.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		"| table | P1 | m1 | a | 96.0 MB/s | b | 100.0 MB/s | 0.96 | ≥ 0.9 | yes |",
		"| table | P2 | m2 | a | 20.0 MB/s | b | 100.0 MB/s | 0.20 | ≥ 0.6 | **no** |",
		"| table | P4 | m4 | on | 2.0 % | off | 30.0 % | — | ≤ 5 % | yes |",
		"| table | uring | u | on | 1.0 MB/s | off | n/a | n/a | — | — |",
		"| 5 | 20 | 1 KiB | 100 MB/s | 50 MB/s | 20 MB/s | 0.50 | 0.20 |",
		"| table | x | 256 MiB | 300 MiB | 1.17 |",
		"- table: a note",
		"![ratios](local-2000-01-02.png)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("markdown lacks %q:\n%s", want, text)
		}
	}
	f, err := os.Open(filepath.Join(dir, "local-2000-01-02.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if img.Bounds().Dx() < 1000 {
		t.Errorf("plot is %d pixels wide; want three panels", img.Bounds().Dx())
	}
	var back Report
	js, err := os.ReadFile(filepath.Join(dir, "local-2000-01-02.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &back); err != nil || len(back.Datasets) != 1 || len(back.Datasets[0].Rows) != 4 {
		t.Fatalf("JSON does not round-trip: %v", err)
	}
}
