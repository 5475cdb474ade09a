// Command views measures P6 (issue 6): the epoch throughput of a shuffled
// training view through a real zenithfs mount, divided by the throughput
// of the same epoch read in natural order (goal ≥ 0.9). For contrast it
// also reads the natural batch files in the same shuffled order without a
// view — what a DataLoader with shuffle=True sees on any other FUSE
// filesystem: the prefetcher cannot know the next file, so every read
// waits for its build.
//
// Each arm mounts the dataset afresh with bin/zenithfs (cold batch cache,
// cached index), reads one epoch with one reader (whole files, one after
// another, an optional fixed compute step between them), and unmounts.
// Arms run interleaved, -reps times, in a rotating order; the report gives
// medians. It also reports the shuffle quality of batch and block views
// (dataset.ShuffleQuality), computed from row indices alone.
//
//	go build -o bin/zenithfs ./cmd/zenithfs
//	go run ./bench/views -bin bin/zenithfs -out bench/views   # needs root and /dev/fuse
//
// results-DATE.md beside this file are committed runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/source"
)

type config struct {
	bin, work, out    string
	rows, rowGroup    int64
	batch, reps       int
	workers, prefetch int
	cacheSize         string
	compute           time.Duration
	seed              int
}

// arm is one way of reading an epoch: a directory and an order of files.
type arm struct {
	name, desc string
	dir        string // below the dataset directory
	ext        string
	shuffled   bool // read the natural files in the view's order
}

var arms = []arm{
	{name: "natural", desc: "natural files, natural order", ext: ".arrow"},
	{name: "view", desc: "views/seed=S,epoch=0 (batch shuffle), view order", dir: "views/seed=%d,epoch=0", ext: ".arrow"},
	{name: "block16", desc: "views/seed=S,epoch=0,shuffle=block:16, view order", dir: "views/seed=%d,epoch=0,shuffle=block:16", ext: ".arrow"},
	{name: "npz", desc: "views/seed=S,epoch=0,format=npz, view order", dir: "views/seed=%d,epoch=0,format=npz", ext: ".npz"},
	{name: "random", desc: "natural files in the shuffled order, no view", ext: ".arrow", shuffled: true},
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/zenithfs", "zenithfs binary")
	flag.StringVar(&c.work, "work", "", "work directory for data, state and mountpoints (default: a temporary directory)")
	flag.StringVar(&c.out, "out", "", "directory for views-DATE.md (default: print only)")
	flag.Int64Var(&c.rows, "rows", 300_000, "rows of the sample dataset")
	flag.Int64Var(&c.rowGroup, "row-group", 16384, "Parquet row group size")
	flag.IntVar(&c.batch, "batch-size", 1024, "rows per batch file")
	flag.IntVar(&c.reps, "reps", 3, "repetitions of every arm")
	flag.IntVar(&c.workers, "workers", 2, "--workers of the mount")
	flag.IntVar(&c.prefetch, "prefetch", 8, "--prefetch of the mount")
	flag.StringVar(&c.cacheSize, "cache-size", "1GiB", "--cache-size of the mount")
	flag.DurationVar(&c.compute, "compute", 0, "fixed compute step after each file (a trainer's step)")
	flag.IntVar(&c.seed, "seed", 1, "view seed")
	flag.Parse()
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

func run(c config) error {
	if c.work == "" {
		w, err := os.MkdirTemp("", "zenithfs-bench-views-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(w)
		c.work = w
	}
	data := filepath.Join(c.work, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	pq := filepath.Join(data, "sample.parquet")
	if _, err := os.Stat(pq); err != nil {
		log.Printf("generating %d rows in %s", c.rows, pq)
		if err := sampledata.WriteParquet(pq, c.rows, c.rowGroup); err != nil {
			return err
		}
	}
	state := filepath.Join(c.work, "state")
	// The same identity the daemon computes: the view order is a function
	// of it, so the random arm reads the view's order.
	snap, err := loadSnapshot(data, c.batch)
	if err != nil {
		return err
	}
	spec, _ := dataset.ParseViewSpec(fmt.Sprintf("seed=%d,epoch=0", c.seed))
	view, err := snap.View(spec)
	if err != nil {
		return err
	}
	order := make([]int, view.NumBatches())
	for k := range order {
		order[k], _ = view.Natural(k)
	}
	// First mount: the index pass, not timed.
	if _, err := epoch(c, data, state, arms[0], order); err != nil {
		return err
	}
	res := map[string][]float64{}
	for r := 0; r < c.reps; r++ {
		for i := range arms {
			a := arms[(i+r)%len(arms)]
			d, err := epoch(c, data, state, a, order)
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			res[a.name] = append(res[a.name], float64(len(order))/d.Seconds())
			log.Printf("rep %d %-8s %.0f batches/s", r, a.name, float64(len(order))/d.Seconds())
		}
	}
	report := render(c, snap, res)
	fmt.Print(report)
	if c.out != "" {
		p := filepath.Join(c.out, "views-"+time.Now().Format("2006-01-02")+".md")
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			return err
		}
		log.Printf("wrote %s", p)
	}
	return nil
}

func loadSnapshot(dir string, batch int) (*dataset.Snapshot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := dataset.New("d", dataset.Location{Store: source.NewLocal(abs), Prefix: true, StoreID: "file:" + abs},
		dataset.Options{BatchSize: batch, Workers: 2})
	if err := d.Load(context.Background()); err != nil {
		return nil, err
	}
	return d.Current()
}

// epoch mounts, reads one epoch of arm a, unmounts, and returns the time
// the reading took.
func epoch(c config, data, state string, a arm, order []int) (time.Duration, error) {
	mnt, err := os.MkdirTemp(c.work, "mnt-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(mnt)
	cmd := exec.Command(c.bin, "mount", "--dataset", "d="+data, "--batch-size", fmt.Sprint(c.batch),
		"--workers", fmt.Sprint(c.workers), "--prefetch", fmt.Sprint(c.prefetch), "--cache-size", c.cacheSize,
		"--state-dir", state, "--gpus", "0", mnt)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("mount: %v: %s", err, out)
	}
	defer func() {
		if out, err := exec.Command(c.bin, "umount", mnt).CombinedOutput(); err != nil {
			log.Printf("umount %s: %v: %s", mnt, err, out)
		}
	}()
	dir := filepath.Join(mnt, "d")
	if a.dir != "" {
		dir = filepath.Join(dir, fmt.Sprintf(a.dir, c.seed))
	}
	name := func(k int) string { return filepath.Join(dir, fmt.Sprintf("%06d%s", k, a.ext)) }
	if _, err := os.Stat(dir); err != nil { // the lookup of the view directory is not timed
		return 0, err
	}
	buf := make([]byte, 4<<20)
	start := time.Now()
	for j := range order {
		k := j
		if a.shuffled {
			k = order[j]
		}
		if err := readAll(name(k), buf); err != nil {
			return 0, err
		}
		if c.compute > 0 {
			time.Sleep(c.compute)
		}
	}
	return time.Since(start), nil
}

func readAll(path string, buf []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func render(c config, snap *dataset.Snapshot, res map[string][]float64) string {
	var b strings.Builder
	nat := median(res["natural"])
	fmt.Fprintf(&b, "# P6: shuffled views through the mount (%s)\n\n", time.Now().Format("2006-01-02"))
	fmt.Fprintf(&b, "Command: `go run ./bench/views -bin %s -rows %d -row-group %d -batch-size %d -reps %d -workers %d -prefetch %d -cache-size %s -compute %s`\n\n",
		c.bin, c.rows, c.rowGroup, c.batch, c.reps, c.workers, c.prefetch, c.cacheSize, c.compute)
	fmt.Fprintf(&b, "Dataset: the mixed sample (10 columns: ints, floats, bools, strings, binary, timestamps, decimals, lists, structs, nulls), %d rows in one Parquet file (zstd, row groups of %d), %d batch files of %d rows. One reader, whole files, one after another; every arm mounts afresh (cold batch cache, index cached). Medians of %d interleaved repetitions.\n\n",
		c.rows, c.rowGroup, snap.NumBatches(), c.batch, c.reps)
	b.WriteString("| arm | what | batches/s (median) | ÷ natural |\n| --- | --- | ---: | ---: |\n")
	for _, a := range arms {
		m := median(res[a.name])
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f |\n", a.name, a.desc, m, m/nat)
	}
	fmt.Fprintf(&b, "\n**P6 = view ÷ natural = %.2f** (goal ≥ 0.9). Reading the natural files in the same shuffled order without a view: %.2f of natural.\n\n",
		median(res["view"])/nat, median(res["random"])/nat)
	b.WriteString("## Shuffle quality\n\nOver all rows of one epoch (from row indices; no data read): mean displacement |output position − natural position| ÷ rows (random permutation ≈ 0.33), Kendall tau against natural order (natural = 1, random ≈ 0), and the mean tau of rows within one file (1 = each file's rows stay in natural order).\n\n")
	b.WriteString("| spec | mean displacement | Kendall tau | within-file tau |\n| --- | ---: | ---: | ---: |\n")
	for _, s := range []string{"seed=1,epoch=0", "seed=1,epoch=0,shuffle=block:1", "seed=1,epoch=0,shuffle=block:4",
		"seed=1,epoch=0,shuffle=block:16", "seed=1,epoch=0,shuffle=block:64"} {
		sp, _ := dataset.ParseViewSpec(s)
		v, err := snap.View(sp)
		if err != nil {
			continue
		}
		q := dataset.ShuffleQuality(snap, v)
		fmt.Fprintf(&b, "| `%s` | %.3f | %.4f | %.3f |\n", s, q.MeanDisplacement, q.KendallTau, q.LocalTau)
	}
	return b.String()
}
