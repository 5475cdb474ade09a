// Command local is the zenithfs local read-path benchmark (issue 3).
//
// It generates Parquet data (a 10-column table and a variant with 64 KiB
// binary blobs), mounts it with bin/zenithfs, and measures in one run,
// with interleaved repetitions, each read path against a baseline measured
// alongside it:
//
//	P1  warm re-read of every batch file through the mount ÷ the same bytes read from tmpfs
//	P2  read served by the zenithfs cache (kernel page cache of the files evicted) ÷ tmpfs
//	P3  epoch samples/s through the mount, IPC-decoded ÷ arrow-go decoding the Parquet in-process
//	P4  share of time a fixed-compute consumer waits on data, prefetch on vs --prefetch 0
//	    io_uring vs pread for the same cold epoch (page cache dropped, index cached)
//
// and the daemon's peak RSS against --cache-size. Results go to
// OUT/local-DATE.md (+ .json, + .png). bench/README.md explains each metric;
// bench/run-local.sh is the one command that reproduces them.
//
//	go run ./bench/local gen -data DIR             # only generate the data
//	go run ./bench/local run -bin bin/zenithfs …   # the benchmark
//	go run ./bench/local probe [-evict] DIR…       # open/read/close times of batch files (diagnostic)
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the benchmark's settings (flags of `run`).
type Config struct {
	Bin       string
	Work      string // mountpoints, state dirs
	Data      string // generated Parquet (reused across runs)
	Out       string // results directory
	Shm       string // tmpfs directory for the baseline copies
	Kinds     []Kind
	Rows      int64
	RowGroup  int64
	BlobRows  int64
	BlobGroup int64
	Batch     int
	BlobBatch int
	Reps      int
	CacheSize string // "auto" or a zenithfs size
	Workers   int
	Prefetch  int
	Compute   time.Duration
	Spin      bool
	// Passthrough mounts every arm with --passthrough.
	Passthrough bool
	P4Batches   int
	Arms        map[string]bool
	Sweep       []int  // batch sizes of the P1/P2 sweep (table only)
	Profile     string // directory for daemon CPU profiles; empty: none
	Date        string
	Command     string // how it was invoked, for the report
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args)
	case "gen":
		err = cmdGen(args)
	case "probe":
		err = cmdProbe(args, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q (want run, gen or probe)", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func defineData(fs *flag.FlagSet, c *Config) *string {
	fs.StringVar(&c.Data, "data", "bench/data", "directory of generated Parquet (reused when the spec matches)")
	fs.Int64Var(&c.Rows, "rows", 2_000_000, "rows of the table dataset")
	fs.Int64Var(&c.RowGroup, "row-group", 131072, "rows per Parquet row group (table)")
	fs.Int64Var(&c.BlobRows, "blob-rows", 2048, "rows of the blob dataset (64 KiB each)")
	fs.Int64Var(&c.BlobGroup, "blob-row-group", 256, "rows per Parquet row group (blobs)")
	return fs.String("datasets", "table,blobs", "datasets to run: table, blobs")
}

func parseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, k := range strings.Split(s, ",") {
		switch Kind(strings.TrimSpace(k)) {
		case KindTable:
			out = append(out, KindTable)
		case KindBlobs:
			out = append(out, KindBlobs)
		case "":
		default:
			return nil, fmt.Errorf("unknown dataset %q (want table or blobs)", k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no dataset selected")
	}
	return out, nil
}

func (c *Config) spec(k Kind) GenSpec {
	if k == KindBlobs {
		return GenSpec{Kind: k, Rows: c.BlobRows, RowGroup: c.BlobGroup}
	}
	return GenSpec{Kind: k, Rows: c.Rows, RowGroup: c.RowGroup}
}

// runs tells whether an arm was selected.
func (c *Config) runs(arm string) bool { return c.Arms[arm] }

func (c *Config) batchSize(k Kind) int {
	if k == KindBlobs {
		return c.BlobBatch
	}
	return c.Batch
}

func cmdGen(args []string) error {
	var c Config
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	kinds := defineData(fs, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ks, err := parseKinds(*kinds)
	if err != nil {
		return err
	}
	for _, k := range ks {
		start := time.Now()
		p, err := Generate(c.Data, c.spec(k))
		if err != nil {
			return err
		}
		log.Printf("%s: %s (%s)", k, p, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func cmdRun(args []string) error {
	var c Config
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	kinds := defineData(fs, &c)
	fs.StringVar(&c.Bin, "bin", "bin/zenithfs", "zenithfs binary")
	fs.StringVar(&c.Work, "work", "", "work directory for mountpoints and state (default: a temp dir)")
	fs.StringVar(&c.Out, "out", "bench/results", "results directory")
	fs.StringVar(&c.Shm, "shm", "/dev/shm", "tmpfs for the baseline copies")
	fs.IntVar(&c.Batch, "batch-size", 16384, "rows per batch file (table)")
	fs.IntVar(&c.BlobBatch, "blob-batch-size", 16, "rows per batch file (blobs)")
	fs.IntVar(&c.Reps, "reps", 5, "interleaved repetitions of each arm (medians are reported)")
	fs.StringVar(&c.CacheSize, "cache-size", "auto", "--cache-size of the mounts; auto: large enough to cache every batch file")
	fs.IntVar(&c.Workers, "workers", 2, "--workers of the mounts")
	fs.IntVar(&c.Prefetch, "prefetch", 8, "--prefetch of the mounts (P4 compares it with 0)")
	fs.DurationVar(&c.Compute, "compute", 10*time.Millisecond, "P4: compute time per batch")
	fs.BoolVar(&c.Spin, "spin", false, "P4: busy-wait the compute time instead of sleeping")
	fs.BoolVar(&c.Passthrough, "passthrough", false, "mount with --passthrough (cached batches as memfds read by the kernel)")
	fs.IntVar(&c.P4Batches, "p4-batches", 150, "P4: batches each consumer run reads (0: all)")
	sweep := fs.String("sweep", "1024,4096,65536", "table only: batch sizes at which P1/P2 are measured again (empty: none)")
	arms := fs.String("arms", "p1p2,p3,p4,uring", "arms to run: p1p2, p3, p4, uring (profile is added by -profile)")
	fs.StringVar(&c.Profile, "profile", "", "also capture daemon CPU profiles (P2, P3, P4) into this directory")
	fs.StringVar(&c.Date, "date", time.Now().Format("2006-01-02"), "date in the results' file names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if c.Kinds, err = parseKinds(*kinds); err != nil {
		return err
	}
	c.Arms = map[string]bool{}
	for _, a := range strings.Split(*arms, ",") {
		switch a = strings.TrimSpace(a); a {
		case "p1p2", "p3", "p4", "uring":
			c.Arms[a] = true
		case "":
		default:
			return fmt.Errorf("unknown arm %q (want p1p2, p3, p4, uring)", a)
		}
	}
	if c.Profile != "" {
		c.Arms["profile"] = true
	}
	if c.Sweep, err = parseInts(*sweep); err != nil {
		return fmt.Errorf("-sweep: %w", err)
	}
	if len(c.Sweep) > 0 && c.Arms["p1p2"] {
		c.Arms["sweep"] = true
	}
	if c.Reps < 1 {
		return fmt.Errorf("-reps must be at least 1")
	}
	c.Command = os.Getenv("BENCH_COMMAND") // set by bench/run-local.sh
	if c.Command == "" {
		c.Command = "bench/local run " + strings.Join(args, " ")
	}
	if c.Bin, err = filepath.Abs(c.Bin); err != nil {
		return err
	}
	if c.Work == "" {
		if c.Work, err = os.MkdirTemp("", "zenithfs-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(c.Work)
	}
	if c.Work, err = filepath.Abs(c.Work); err != nil {
		return err
	}
	if c.Data, err = filepath.Abs(c.Data); err != nil {
		return err
	}
	if c.Profile != "" {
		if c.Profile, err = filepath.Abs(c.Profile); err != nil {
			return err
		}
	}
	rep := &Report{Config: c, Started: time.Now(), Host: hostInfo()}
	var runErr error
	for _, k := range c.Kinds {
		dr, err := benchDataset(&c, k)
		if dr != nil {
			rep.Datasets = append(rep.Datasets, dr)
		}
		if err != nil {
			// Keep what was measured: the report says it is incomplete.
			runErr = fmt.Errorf("dataset %s: %w", k, err)
			rep.Error = runErr.Error()
			break
		}
	}
	rep.Elapsed = time.Since(rep.Started)
	md, err := rep.Write(c.Out)
	if err != nil {
		return errors.Join(runErr, err)
	}
	log.Printf("results: %s", md)
	return runErr
}
