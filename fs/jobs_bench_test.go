package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// P9 of issue 5: submit → RUNNING latency with free GPUs, and `cat status`
// latency with 1,000 jobs in the store, both through a real mount. Run with
//
//	go test -run '^$' -bench P9 -benchtime 200x ./fs/
//
// Each reports the median and the 99th percentile as custom metrics.

// fillStore submits n jobs that stay PENDING behind a job holding the only
// GPU, so the store holds n+1 jobs and no process but the holder runs.
func p9Fill(b *testing.B, jobs string, n int, gate string) {
	b.Helper()
	jobsMustEcho(b, jobs, fmt.Sprintf(`{"name":"holder","command":["sh","-c","while [ ! -e %s ]; do sleep 0.05; done"],"gpus":1}`, gate))
	jobsPoll(b, jobs, "holder", "RUNNING", 5*time.Second)
	for i := 0; i < n; i++ {
		if err := jobsWrite(filepath.Join(jobs, "submit"), fmt.Sprintf(`{"name":"queued-%04d","command":["true"],"gpus":2}`+"\n", i)); err != nil {
			b.Fatal(err)
		}
	}
}

func p9Report(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

func BenchmarkP9CatStatus1000Jobs(b *testing.B) {
	cfg := jobsSchedConfig(b, b.TempDir(), 2)
	jobs, _ := jobsMount(b, cfg)
	gate := filepath.Join(b.TempDir(), "gate")
	defer os.WriteFile(gate, nil, 0o644)
	p9Fill(b, jobs, 999, gate)
	path := filepath.Join(jobs, "queued-0500", "status")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		st, err := os.ReadFile(path) // open, read, close: what cat does
		lat = append(lat, time.Since(t0))
		if err != nil || string(st) != "PENDING\n" {
			b.Fatalf("status = %q, %v", st, err)
		}
	}
	p9Report(b, lat)
}

func BenchmarkP9SubmitToRunning(b *testing.B) {
	for _, stored := range []int{0, 1000} {
		b.Run(fmt.Sprintf("store=%d", stored), func(b *testing.B) {
			cfg := jobsSchedConfig(b, b.TempDir(), 2)
			jobs, _ := jobsMount(b, cfg)
			gate := filepath.Join(b.TempDir(), "gate")
			defer os.WriteFile(gate, nil, 0o644)
			if stored > 0 {
				// The holder takes GPU 0; GPU 1 stays free for the measured
				// jobs, which carry a time limit so that they may start
				// beside the queued 2-GPU jobs (backfill).
				p9Fill(b, jobs, stored-1, gate)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("measured-%d", i)
				t0 := time.Now()
				if err := jobsWrite(filepath.Join(jobs, "submit"), fmt.Sprintf(`{"name":%q,"command":["true"],"gpus":1,"time_limit":"1m"}`+"\n", name)); err != nil {
					b.Fatal(err)
				}
				for {
					st, err := os.ReadFile(filepath.Join(jobs, name, "status"))
					if err != nil {
						b.Fatal(err)
					}
					if string(st) != "PENDING\n" {
						break // RUNNING, or already COMPLETED
					}
					time.Sleep(100 * time.Microsecond)
				}
				lat = append(lat, time.Since(t0))
				jobsPoll(b, jobs, name, "COMPLETED", 5*time.Second) // frees the GPU for the next round
			}
			b.StopTimer()
			p9Report(b, lat)
		})
	}
}
