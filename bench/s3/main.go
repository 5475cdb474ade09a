// Command s3 is the zenithfs S3 read-path benchmark (issue 4).
//
// It starts versitygw (the S3 test server) on a loopback port, uploads
// generated Parquet datasets into a bucket, and measures in one run, with
// interleaved repetitions, a cold epoch of each dataset:
//
//	zenithfs     mount s3://bucket/KIND with the index cached by a first
//	             mount (same --state-dir; a fresh daemon, so its cache is
//	             cold), read every batch file in order, decode each with
//	             arrow-go's IPC reader
//	baseline     an in-process loop: GET each Parquet object with the SDK,
//	             decode it with arrow-go (pqarrow) into batches of the same size
//
// and reports zenithfs ÷ baseline (rows/s; goal ≥ 1.0), the GETs issued and
// the bytes fetched per epoch ÷ the dataset's bytes (goal ≤ 1.05), and the
// first mount's index pass separately. Results go to OUT/s3-DATE.md.
// bench/s3/README.md explains each number; bench/s3/run.sh is the one
// command that reproduces them.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Config is the benchmark's settings.
type Config struct {
	Bin, Data, Out, Work string
	Kinds                []Kind
	Reps                 int
	Prefetch             int
	CacheSize            string
	Workers              int
	Arms                 []string
	Profile              string
	Date, Command        string
}

var allKinds = map[string]Kind{
	// 2 M rows of 20 columns (~100 B a row), 8 files, row groups of 64 Ki
	// rows, batches of 16 Ki rows: each row group serves 4 batches.
	"table": {Name: "table", Files: 8, Rows: 250_000, RowGroup: 65_536, Batch: 16_384},
	// 2 048 image-like 64 KiB samples, 4 files, row groups of 64 rows,
	// batches of 16: 128 MiB.
	"blobs": {Name: "blobs", Files: 4, Rows: 512, RowGroup: 64, Batch: 16},
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench-s3: ")
	if err := run(os.Args[1:]); err != nil {
		log.Fatal(err)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("s3", flag.ContinueOnError)
	cfg := Config{Command: "bench/s3/run.sh " + strings.Join(args, " ")}
	var kinds, arms string
	fs.StringVar(&cfg.Bin, "bin", "bench/out/zenithfs", "zenithfs binary")
	fs.StringVar(&cfg.Data, "data", "bench/data/s3", "where the generated Parquet files are kept (reused while their parameters match)")
	fs.StringVar(&cfg.Out, "out", "bench/results", "results directory")
	fs.StringVar(&cfg.Work, "work", "", "work directory (mountpoints, state, the server's files); default a temp dir")
	fs.StringVar(&kinds, "kinds", "table,blobs", "datasets: table, blobs")
	fs.StringVar(&arms, "arms", "zenithfs,baseline", "arms: zenithfs, zenithfs-noprefetch, baseline, baseline-parallel")
	fs.IntVar(&cfg.Reps, "reps", 5, "interleaved repetitions (medians are reported)")
	fs.IntVar(&cfg.Prefetch, "prefetch", 8, "zenithfs --prefetch of the zenithfs arm")
	fs.StringVar(&cfg.CacheSize, "cache-size", "1GiB", "zenithfs --cache-size")
	fs.IntVar(&cfg.Workers, "workers", 0, "zenithfs --workers (0: its default, the number of cores)")
	fs.StringVar(&cfg.Profile, "profile", "", "directory for a daemon CPU profile (2 s) of the first zenithfs epoch of each dataset")
	fs.StringVar(&cfg.Date, "date", time.Now().Format("2006-01-02"), "date in the results' name")
	var rows int64
	fs.Int64Var(&rows, "table-rows", 0, "rows per file of the table dataset (0: default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, n := range strings.Split(kinds, ",") {
		k, ok := allKinds[strings.TrimSpace(n)]
		if !ok {
			return fmt.Errorf("unknown dataset %q", n)
		}
		if k.Name == "table" && rows > 0 {
			k.Rows = rows
		}
		cfg.Kinds = append(cfg.Kinds, k)
	}
	cfg.Arms = strings.Split(arms, ",")
	if cfg.Reps < 1 {
		return fmt.Errorf("-reps must be ≥ 1")
	}
	return bench(cfg)
}

// Result is everything one run measured.
type Result struct {
	Cfg     Config
	Bytes   map[string]int64 // dataset bytes (Parquet objects) per kind
	Index   map[string]IndexPass
	Epochs  []Epoch
	Machine string
}

func bench(cfg Config) error {
	if cfg.Work == "" {
		w, err := os.MkdirTemp("", "zenithfs-bench-s3.")
		if err != nil {
			return err
		}
		defer os.RemoveAll(w)
		cfg.Work = w
	}
	bin, err := benchkit.FindVersitygw()
	if err != nil {
		return err
	}
	benchkit.SetAWSEnv(cfg.Work, creds)
	srv, err := benchkit.StartVersitygw(bin, filepath.Join(cfg.Work, "s3"), filepath.Join(cfg.Work, "versitygw.log"), creds, 2*time.Second)
	if err != nil {
		return err
	}
	defer srv.Stop()
	ctx := context.Background()
	client, err := newClient(ctx, srv.Endpoint)
	if err != nil {
		return err
	}
	env := &Env{Bin: cfg.Bin, Endpoint: srv.Endpoint, Bucket: "bench", Server: srv, Client: client,
		Work: cfg.Work, CacheSize: cfg.CacheSize, Workers: cfg.Workers, Profile: cfg.Profile}
	res := Result{Cfg: cfg, Bytes: map[string]int64{}, Index: map[string]IndexPass{}, Machine: machine()}

	for _, k := range cfg.Kinds {
		dir := filepath.Join(cfg.Data, k.Name)
		log.Printf("%s: generating %d files into %s (reused if present)", k.Name, k.Files, dir)
		if err := k.generate(dir); err != nil {
			return err
		}
		n, err := upload(ctx, client, env.Bucket, k.Name+"/", dir)
		if err != nil {
			return err
		}
		res.Bytes[k.Name] = n
		state := filepath.Join(cfg.Work, "state-"+k.Name)
		ip, err := env.indexPass(k, state)
		if err != nil {
			return fmt.Errorf("%s index pass: %w", k.Name, err)
		}
		res.Index[k.Name] = ip
		log.Printf("%s: %.1f MiB uploaded; index pass %.2fs, %d GETs, %.3f × the bytes", k.Name,
			float64(n)/(1<<20), ip.Seconds, ip.GETs, float64(ip.Bytes)/float64(n))
	}

	for rep := 0; rep < cfg.Reps; rep++ {
		for _, k := range cfg.Kinds {
			state := filepath.Join(cfg.Work, "state-"+k.Name)
			for i := range cfg.Arms {
				arm := cfg.Arms[(i+rep)%len(cfg.Arms)] // interleaved: the order rotates each repetition
				var ep Epoch
				var err error
				switch arm {
				case "zenithfs":
					ep, err = env.zenithEpoch(k, arm, state, cfg.Prefetch, rep)
				case "zenithfs-noprefetch":
					ep, err = env.zenithEpoch(k, arm, state, 0, rep)
				case "baseline":
					ep, err = env.baselineEpoch(ctx, k, false, rep)
				case "baseline-parallel":
					ep, err = env.baselineEpoch(ctx, k, true, rep)
				default:
					return fmt.Errorf("unknown arm %q", arm)
				}
				if err != nil {
					return fmt.Errorf("%s %s rep %d: %w", k.Name, arm, rep, err)
				}
				log.Printf("rep %d %-6s %-20s %6.3fs %9.0f rows/s  %4d GETs  %.3f × bytes  cpu daemon %.2fs server %.2fs self %.2fs",
					rep, k.Name, arm, ep.Seconds, float64(ep.Rows)/ep.Seconds, ep.GETs,
					float64(ep.Bytes)/float64(res.Bytes[k.Name]), ep.DaemonCPU, ep.ServerCPU, ep.SelfCPU)
				res.Epochs = append(res.Epochs, ep)
			}
		}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	out := filepath.Join(cfg.Out, "s3-"+cfg.Date+".md")
	if err := os.WriteFile(out, []byte(report(res)), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s", out)
	return nil
}

func machine() string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d CPUs (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0)))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				parts = append(parts, strings.TrimSpace(strings.SplitN(l, ":", 2)[1]))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	parts = append(parts, runtime.Version())
	return strings.Join(parts, ", ")
}
