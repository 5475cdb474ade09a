package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Row is one compared pair of arms: values per repetition (higher is
// better, except for fractions), the ratio of medians, and the goal.
type Row struct {
	ID       string    `json:"id"`
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"`
	Arm      string    `json:"arm"`
	ArmVals  []float64 `json:"arm_values"`
	Base     string    `json:"baseline"`
	BaseVals []float64 `json:"baseline_values"`
	// RatioOf is "arm/base" for throughputs; for fractions the ratio is
	// not meaningful and Goal applies to the arm's median itself.
	Fraction bool    `json:"fraction"`
	Goal     float64 `json:"goal"` // ratio ≥ Goal (or fraction ≤ Goal); 0: no goal
	Note     string  `json:"note,omitempty"`
}

// Ratio is benchkit.Median(arm) ÷ benchkit.Median(baseline).
func (r Row) Ratio() float64 {
	b := benchkit.Median(r.BaseVals)
	if b == 0 {
		return 0
	}
	return benchkit.Median(r.ArmVals) / b
}

// Met tells whether the goal is met; ok is false when the row has none.
func (r Row) Met() (met, ok bool) {
	if r.Goal == 0 || len(r.ArmVals) == 0 {
		return false, false
	}
	if r.Fraction {
		return benchkit.Median(r.ArmVals) <= r.Goal, true
	}
	return r.Ratio() >= r.Goal, true
}

// MemRow is the daemon's peak RSS, plus its peak of memfd batches
// (--passthrough), in one group of mounts.
type MemRow struct {
	Arms   string `json:"arms"`
	Budget int64  `json:"budget_bytes"`
	HWM    int64  `json:"peak_rss_bytes"`
}

// DatasetResult is everything measured on one dataset.
type DatasetResult struct {
	Kind        Kind          `json:"kind"`
	Spec        GenSpec       `json:"spec"`
	SourceBytes int64         `json:"source_bytes"`
	BatchSize   int           `json:"batch_size"`
	Files       int           `json:"files"`
	Bytes       int64         `json:"batch_bytes"`
	CacheSize   string        `json:"cache_size"`
	IndexMount  time.Duration `json:"index_mount_ns"` // first mount: the index pass
	Mounts      []float64     `json:"mount_seconds"`  // later mounts (index cached)
	Rows        []Row         `json:"rows"`
	Sweep       []SweepPoint  `json:"sweep,omitempty"`
	Memory      []MemRow      `json:"memory"`
	Notes       []string      `json:"notes"`
}

func (r *DatasetResult) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	log.Printf("%s: %s", r.Kind, s)
	r.Notes = append(r.Notes, s)
}

func (r *DatasetResult) mem(arms string, budget int64, d *Daemon) {
	hwm, err := benchkit.DaemonPeak(d.PID, d.Opts.Mount)
	if err != nil {
		r.note("memory of %s: %v", arms, err)
		return
	}
	for i := range r.Memory {
		if r.Memory[i].Arms == arms {
			r.Memory[i].HWM = max(r.Memory[i].HWM, hwm)
			return
		}
	}
	r.Memory = append(r.Memory, MemRow{Arms: arms, Budget: budget, HWM: hwm})
}

// bench is one dataset's run: its mount options and files.
type bench struct {
	c      *Config
	res    *DatasetResult
	src    string
	base   MountOpts
	files  []string // batch file paths under the mountpoint
	budget int64
}

func (b *bench) mount(o MountOpts) (*Daemon, error) {
	d, err := Mount(o)
	if err == nil {
		b.res.Mounts = append(b.res.Mounts, d.MountDur.Seconds())
		if d.Attempts > 1 {
			b.res.note("a mount took %d attempts (see the log)", d.Attempts)
		}
	}
	return d, err
}

func unmount(d *Daemon, err *error) {
	if uerr := d.Unmount(); uerr != nil && *err == nil {
		*err = uerr
	}
}

// benchDataset generates (or reuses) the dataset and runs every arm on it.
func benchDataset(c *Config, k Kind) (*DatasetResult, error) {
	spec := c.spec(k)
	start := time.Now()
	src, err := Generate(c.Data, spec)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	log.Printf("%s: data %s (%d MiB, %s)", k, src, fi.Size()>>20, time.Since(start).Round(time.Millisecond))
	res := &DatasetResult{Kind: k, Spec: spec, SourceBytes: fi.Size(), BatchSize: c.batchSize(k)}
	b := &bench{c: c, res: res, src: src, base: MountOpts{
		Bin: c.Bin, Name: string(k), Source: src,
		StateDir: filepath.Join(c.Work, "state-"+string(k)), Mount: filepath.Join(c.Work, "mnt-"+string(k)),
		BatchSize: c.batchSize(k), CacheSize: "1GiB", Prefetch: c.Prefetch, Workers: c.Workers, IOUring: "auto",
		Passthrough: c.Passthrough,
	}}
	type step struct {
		name string
		fn   func() error
	}
	steps := []step{{"index", b.index}}
	for _, s := range []step{{"p1p2", b.p1p2}, {"sweep", b.sweep}, {"p3", b.p3}, {"p4", b.p4}, {"uring", b.uring}, {"profile", b.profile}} {
		if c.runs(s.name) && (s.name != "sweep" || k == KindTable) {
			steps = append(steps, s)
		}
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(); err != nil {
			return res, fmt.Errorf("%s: %w", s.name, err)
		}
		log.Printf("%s: %s done (%s)", k, s.name, time.Since(t).Round(time.Millisecond))
	}
	return res, nil
}

// index mounts once with a fresh state dir (the index pass), lists the
// batch files and sizes the cache budget.
func (b *bench) index() (err error) {
	d, err := Mount(b.base)
	if err != nil {
		return err
	}
	defer unmount(d, &err)
	b.res.IndexMount = d.MountDur
	if b.files, err = batchFiles(filepath.Join(b.base.Mount, b.base.Name)); err != nil {
		return err
	}
	b.res.Files = len(b.files)
	for _, p := range b.files {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		b.res.Bytes += fi.Size()
	}
	b.budget, b.base.CacheSize = cacheBudget(b.c.CacheSize, b.res.Bytes)
	b.res.CacheSize = b.base.CacheSize
	return nil
}

// cacheBudget resolves -cache-size: "auto" is enough for the daemon's batch
// cache (5/8 of the budget in the current wiring) to hold every file, with
// a quarter to spare, rounded up to 64 MiB, at least 256 MiB.
func cacheBudget(flagVal string, dataBytes int64) (int64, string) {
	if flagVal != "auto" {
		n, err := parseSize(flagVal)
		if err != nil {
			return 0, flagVal
		}
		return n, flagVal
	}
	need := dataBytes * 8 / 5 * 5 / 4
	const step = 64 << 20
	need = max((need+step-1)/step*step, 256<<20)
	return need, fmt.Sprintf("%dMiB", need>>20)
}

// p3 compares an epoch through fresh mounts (every batch built by the
// daemon, then a second epoch from its caches) with decoding the Parquet
// in-process, interleaved.
func (b *bench) p3() error {
	sps := func(n int64, t time.Duration) float64 { return float64(n) / t.Seconds() }
	var base, cold, warm []float64
	var waits, daemonCPU, readerCPU, baseCPU []float64
	mountArm := func() (err error) {
		d, err := b.mount(b.base)
		if err != nil {
			return err
		}
		defer unmount(d, &err)
		dc0, _ := d.CPU()
		rc0 := benchkit.SelfCPU()
		n, t, err := epochIPC(b.files)
		if err != nil {
			return err
		}
		dc1, _ := d.CPU()
		daemonCPU = append(daemonCPU, (dc1 - dc0).Seconds())
		readerCPU = append(readerCPU, (benchkit.SelfCPU() - rc0).Seconds())
		cold = append(cold, sps(n, t))
		if st, err := d.ReadStats(); err == nil {
			waits = append(waits, st.Num("prefetch.reader_wait_seconds")/t.Seconds())
		}
		n, t, err = epochIPC(b.files)
		if err != nil {
			return err
		}
		warm = append(warm, sps(n, t))
		b.res.mem("P3 (epochs)", b.budget, d)
		return nil
	}
	// A cache smaller than the batches: every epoch rebuilds every batch,
	// with the daemon's memory (caches, decoders' heap) already in use:
	// the steady state of training on a dataset larger than the cache.
	smallBudget := max(b.res.Bytes*3/5/(16<<20)*(16<<20), 64<<20)
	var small, smallCPU []float64
	smallArm := func() (err error) {
		o := b.base
		o.CacheSize = fmt.Sprintf("%dMiB", smallBudget>>20)
		d, err := b.mount(o)
		if err != nil {
			return err
		}
		defer unmount(d, &err)
		for epoch := 0; epoch < 3; epoch++ {
			dc0, _ := d.CPU()
			n, t, err := epochIPC(b.files)
			if err != nil {
				return err
			}
			dc1, _ := d.CPU()
			if epoch > 0 { // the first epoch is P3's
				small = append(small, sps(n, t))
				smallCPU = append(smallCPU, (dc1 - dc0).Seconds())
			}
		}
		b.res.mem("P3c (epochs, small cache)", smallBudget, d)
		return nil
	}
	baseArm := func() error {
		c0 := benchkit.SelfCPU()
		n, t, err := parquetEpoch(b.src, b.res.BatchSize)
		baseCPU = append(baseCPU, (benchkit.SelfCPU() - c0).Seconds())
		base = append(base, sps(n, t))
		return err
	}
	if _, _, err := parquetEpoch(b.src, b.res.BatchSize); err != nil { // page cache of the source warm for both
		return err
	}
	for rep := 0; rep < b.c.Reps; rep++ {
		arms := []func() error{baseArm, mountArm, smallArm}
		if rep%2 == 1 {
			arms[0], arms[1], arms[2] = arms[2], arms[0], arms[1]
		}
		for _, a := range arms {
			if err := a(); err != nil {
				return err
			}
		}
	}
	b.res.Rows = append(b.res.Rows,
		Row{ID: "P3", Metric: "epoch, first after mount (daemon builds every batch)", Unit: "samples/s",
			Arm: "mount + IPC decode", ArmVals: cold, Base: "Parquet decoded in-process", BaseVals: base, Goal: 1.0,
			Note: fmt.Sprintf("daemon-reported reader wait = %.0f%% of the epoch; CPU per epoch (medians): "+
				"daemon %.2f s + reader %.2f s, vs %.2f s for the in-process Parquet decode",
				100*benchkit.Median(waits), benchkit.Median(daemonCPU), benchkit.Median(readerCPU), benchkit.Median(baseCPU))},
		Row{ID: "P3w", Metric: "epoch, second on the same mount (cached)", Unit: "samples/s",
			Arm: "mount + IPC decode", ArmVals: warm, Base: "Parquet decoded in-process", BaseVals: base, Goal: 1.0},
		Row{ID: "P3c", Metric: fmt.Sprintf("epochs 2–3 with --cache-size %d MiB (its batch cache: %d MiB for %d MiB of batches)", smallBudget>>20, smallBudget*5/8>>20, b.res.Bytes>>20),
			Unit: "samples/s", Arm: "mount + IPC decode", ArmVals: small, Base: "Parquet decoded in-process", BaseVals: base, Goal: 1.0,
			Note: fmt.Sprintf("CPU per epoch (median): daemon %.2f s", benchkit.Median(smallCPU))})
	return nil
}

// p4 runs a fixed-compute consumer over fresh mounts with prefetch on and
// off, interleaved.
func (b *bench) p4() error {
	files := b.files
	if n := b.c.P4Batches; n > 0 && n < len(files) {
		files = files[:n]
	}
	var on, off []float64
	var daemonOn, openShare, cached, firstMS, firstShare []float64
	run := func(prefetch int) (err error) {
		o := b.base
		o.Prefetch = prefetch
		d, err := b.mount(o)
		if err != nil {
			return err
		}
		defer unmount(d, &err)
		r, err := consume(files, b.c.Compute, b.c.Spin)
		if err != nil {
			return err
		}
		if prefetch > 0 {
			on = append(on, r.WaitFraction())
			openShare = append(openShare, r.OpenWait.Seconds()/max(r.Wait.Seconds(), 1e-9))
			firstMS = append(firstMS, float64(r.FirstWait.Microseconds())/1e3)
			firstShare = append(firstShare, r.FirstWait.Seconds()/r.Total.Seconds())
			if st, err := d.ReadStats(); err == nil {
				daemonOn = append(daemonOn, st.Num("prefetch.reader_wait_seconds")/r.Total.Seconds())
			}
			// Again, now that every batch is in the daemon's cache: what is
			// left is the FUSE transfer itself, with no build running.
			if err := evictPageCache(files); err != nil {
				return err
			}
			r, err := consume(files, b.c.Compute, b.c.Spin)
			if err != nil {
				return err
			}
			cached = append(cached, r.WaitFraction())
		} else {
			off = append(off, r.WaitFraction())
		}
		b.res.mem("P4 (consumer)", b.budget, d)
		return nil
	}
	for rep := 0; rep < b.c.Reps; rep++ {
		order := []int{b.c.Prefetch, 0}
		if rep%2 == 1 {
			order[0], order[1] = 0, b.c.Prefetch
		}
		for _, p := range order {
			if err := run(p); err != nil {
				return err
			}
		}
	}
	mode := "sleep"
	if b.c.Spin {
		mode = "busy-wait"
	}
	b.res.Rows = append(b.res.Rows, Row{ID: "P4", Metric: fmt.Sprintf("time waiting on data, %d batches, %s %s each", len(files), b.c.Compute, mode),
		Unit: "fraction", Fraction: true, Goal: 0.05,
		Arm: fmt.Sprintf("--prefetch %d", b.c.Prefetch), ArmVals: on, Base: "--prefetch 0", BaseVals: off,
		Note: fmt.Sprintf("with prefetch: daemon-reported reader wait = %.1f%% of the time; %.0f%% of the consumer's wait was in open(2), the rest in read(2); "+
			"the first batch (built cold: nothing is ahead of a fresh mount's first open) took %.0f ms, %.1f points of the figure; "+
			"the same consumer again once every batch was in the daemon's cache (page cache evicted, no build running) waited %.1f%% (medians)",
			100*benchkit.Median(daemonOn), 100*benchkit.Median(openShare), benchkit.Median(firstMS), 100*benchkit.Median(firstShare), 100*benchkit.Median(cached))})
	return nil
}

// uring reads one cold epoch (page cache dropped, index cached in the same
// state dir) with --io-uring on and off, interleaved.
func (b *bench) uring() error {
	vals := map[string][]float64{}
	counters := map[string]string{}
	dropped := true
	var dropErr error
	for rep := 0; rep < b.c.Reps; rep++ {
		modes := []string{"on", "off"}
		if rep%2 == 1 {
			modes[0], modes[1] = "off", "on"
		}
		for _, m := range modes {
			if err := benchkit.DropCaches(); err != nil {
				dropped, dropErr = false, err
			}
			o := b.base
			o.IOUring = m
			d, err := b.mount(o)
			if err != nil {
				b.res.note("io_uring=%s: mount failed: %v", m, err)
				continue
			}
			n, t, err := readAll(b.files)
			if err == nil {
				vals[m] = append(vals[m], float64(n)/t.Seconds()/1e6)
				if st, serr := d.ReadStats(); serr == nil {
					counters[m] = FormatCounters(st.Matching("uring", "pread"))
					ur, pr := st.Num("io.uring_reads"), st.Num("io.pread_reads")
					if m == "on" && (ur == 0 || pr > 0) || m == "off" && ur > 0 {
						b.res.note("io-uring=%s: the daemon counted %g io_uring and %g pread reads", m, ur, pr)
					}
				}
				b.res.mem("io_uring/pread (cold epochs)", b.budget, d)
			}
			err = errors.Join(err, d.Unmount())
			if err != nil {
				return err
			}
		}
	}
	if dropped {
		b.res.note("io_uring vs pread: page cache dropped before every cold epoch (echo 3 > /proc/sys/vm/drop_caches)")
	} else {
		b.res.note("io_uring vs pread: could not drop the page cache (%v); epochs are cold for the daemon only", dropErr)
	}
	note := ""
	for _, m := range []string{"on", "off"} {
		c := counters[m]
		if c == "" {
			c = "none"
		}
		note += fmt.Sprintf("stats counters with io-uring=%s: %s. ", m, c)
	}
	if counters["on"] == "" && counters["off"] == "" {
		b.res.note(".zenith/stats has no io_uring/pread counters: --io-uring is not observable (not wired yet?)")
	}
	b.res.Rows = append(b.res.Rows, Row{ID: "uring", Metric: "cold epoch read (page cache dropped, index cached)", Unit: "MB/s",
		Arm: "--io-uring on", ArmVals: vals["on"], Base: "--io-uring off (pread)", BaseVals: vals["off"], Note: note})
	return nil
}
