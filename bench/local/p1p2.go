package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// readArms are the P1/P2 measurements on one mounted dataset, in MB/s per
// repetition.
type readArms struct {
	tmpfs, warm, cold []float64
	served, opened    float64 // opens during the cold arm, and those served from the daemon's cache
}

// measureReads reads every batch file once through d (building them all),
// copies them to a tmpfs, then interleaves per repetition: the tmpfs
// copies, a warm re-read through the mount (kernel page cache), and a read
// with the files' page cache evicted (served by the daemon's cache).
func measureReads(d *Daemon, files []string, shm string, reps int) (readArms, error) {
	var r readArms
	if _, _, err := readAll(files); err != nil { // builds every batch
		return r, err
	}
	copies, err := copyFiles(files, shm)
	defer os.RemoveAll(shm)
	if err != nil {
		return r, fmt.Errorf("copy to tmpfs: %w", err)
	}
	mbps := func(n int64, t time.Duration) float64 { return float64(n) / t.Seconds() / 1e6 }
	arms := []func() error{
		func() error {
			n, t, err := readAll(copies)
			r.tmpfs = append(r.tmpfs, mbps(n, t))
			return err
		},
		func() error {
			n, t, err := readAll(files)
			r.warm = append(r.warm, mbps(n, t))
			return err
		},
		func() error {
			if err := evictPageCache(files); err != nil {
				return err
			}
			before, err := d.ReadStats()
			if err != nil {
				return err
			}
			n, t, err := readAll(files)
			if err != nil {
				return err
			}
			after, err := d.ReadStats()
			if err != nil {
				return err
			}
			r.cold = append(r.cold, mbps(n, t))
			r.served += after.Num("prefetch.cache_hits") + after.Num("prefetch.prefetch_hits") -
				before.Num("prefetch.cache_hits") - before.Num("prefetch.prefetch_hits")
			r.opened += after.Num("prefetch.requests") - before.Num("prefetch.requests")
			return nil
		},
	}
	if _, _, err := readAll(copies); err != nil { // warm the tmpfs reader path too
		return r, err
	}
	for rep := 0; rep < reps; rep++ {
		for i := range arms {
			if err := arms[(i+rep)%len(arms)](); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

func (b *bench) shmDir(tag string) string {
	return filepath.Join(b.c.Shm, fmt.Sprintf("zenithfs-bench-%d-%s-%s", os.Getpid(), b.res.Kind, tag))
}

// p1p2 measures P1 and P2 on one mount of the dataset.
func (b *bench) p1p2() (err error) {
	d, err := b.mount(b.base)
	if err != nil {
		return err
	}
	defer unmount(d, &err)
	r, err := measureReads(d, b.files, b.shmDir("p1p2"), b.c.Reps)
	if err != nil {
		return err
	}
	b.res.Rows = append(b.res.Rows,
		Row{ID: "P1", Metric: "warm re-read of all batch files", Unit: "MB/s",
			Arm: "mount (page cache warm)", ArmVals: r.warm, Base: "tmpfs copy", BaseVals: r.tmpfs, Goal: 0.9},
		Row{ID: "P2", Metric: "read served by the zenithfs cache", Unit: "MB/s",
			Arm: "mount (page cache evicted)", ArmVals: r.cold, Base: "tmpfs copy", BaseVals: r.tmpfs, Goal: 0.6,
			Note: fmt.Sprintf("%.0f of %.0f opens served from the daemon's cache", r.served, r.opened)})
	if r.served < r.opened {
		b.res.note("P2: only %.0f of %.0f opens were served from the daemon's cache; the rest were rebuilt", r.served, r.opened)
	}
	b.res.mem("P1/P2 (all batches cached)", b.budget, d)
	return nil
}

// SweepPoint is P1/P2 at one batch size.
type SweepPoint struct {
	BatchRows int       `json:"batch_rows"`
	Files     int       `json:"files"`
	FileBytes int64     `json:"mean_file_bytes"`
	Tmpfs     []float64 `json:"tmpfs_mbps"`
	Warm      []float64 `json:"warm_mbps"`
	Cold      []float64 `json:"cache_mbps"`
}

// P1 and P2 are the point's ratios of medians.
func (p SweepPoint) P1() float64 {
	return benchkit.Median(p.Warm) / max(benchkit.Median(p.Tmpfs), 1e-9)
}
func (p SweepPoint) P2() float64 {
	return benchkit.Median(p.Cold) / max(benchkit.Median(p.Tmpfs), 1e-9)
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad batch size %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// sweep measures P1 and P2 at each batch size of -sweep: the per-file cost
// of the mount (open, flush, release round trips) against the bytes each
// file carries. Each size gets its own state dir (its own index).
func (b *bench) sweep() error {
	for _, bs := range b.c.Sweep {
		o := b.base
		o.BatchSize = bs
		o.StateDir = filepath.Join(b.c.Work, fmt.Sprintf("state-%s-sweep-%d", b.res.Kind, bs))
		o.Mount = filepath.Join(b.c.Work, fmt.Sprintf("mnt-%s-sweep", b.res.Kind))
		if err := b.sweepPoint(o); err != nil {
			return fmt.Errorf("batch size %d: %w", bs, err)
		}
	}
	return nil
}

func (b *bench) sweepPoint(o MountOpts) (err error) {
	d, err := Mount(o)
	if err != nil {
		return err
	}
	defer unmount(d, &err)
	files, err := batchFiles(filepath.Join(o.Mount, o.Name))
	if err != nil {
		return err
	}
	var total int64
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		total += fi.Size()
	}
	r, err := measureReads(d, files, b.shmDir(fmt.Sprintf("sweep-%d", o.BatchSize)), b.c.Reps)
	if err != nil {
		return err
	}
	b.res.Sweep = append(b.res.Sweep, SweepPoint{BatchRows: o.BatchSize, Files: len(files),
		FileBytes: total / int64(len(files)), Tmpfs: r.tmpfs, Warm: r.warm, Cold: r.cold})
	b.res.mem("P1/P2 batch-size sweep", b.budget, d)
	return nil
}
