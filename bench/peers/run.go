package main

import (
	"context"
	"encoding/json"
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

// Config is a run's settings.
type Config struct {
	Bin, Data, Out, Work string
	Reps                 int
	Arms                 []string // kinds to run
	Nets                 []string // remote, loopback
	Orders               []string // natural, shuffled
	Latency              time.Duration
	Bandwidth            float64
	CacheSize            string
	Prefetch, Workers    int
	TunedWorkers         int
	TunedPrefetch        int
	SDKInflight          int
	Seed, Epoch          uint64
	MaxEpoch             time.Duration
	Profile              string
	ProfileSecs          int
	Date, Command        string
}

// Result is everything a run measured.
type Result struct {
	Cfg      Config     `json:"config"`
	Machine  string     `json:"machine"`
	Shapes   []string   `json:"shapes"`
	Datasets []DataInfo `json:"datasets"`
	Runs     []Run      `json:"runs"`
	Notes    []string   `json:"notes"`
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg := Config{Command: "bench/run.sh " + strings.Join(args, " ")}
	var df dataFlags
	df.register(fs)
	var arms, nets, orders string
	fs.StringVar(&cfg.Bin, "bin", "bench/out/zenithfs", "zenithfs binary")
	fs.StringVar(&cfg.Data, "data", "bench/data/peers", "where generated data is kept (reused while its parameters match)")
	fs.StringVar(&cfg.Out, "out", "bench/results", "results directory")
	fs.StringVar(&cfg.Work, "work", "", "work directory (server files, mountpoints, state); default a temp dir")
	fs.IntVar(&cfg.Reps, "reps", 3, "interleaved repetitions (medians are reported)")
	fs.StringVar(&arms, "arms", "zenithfs,zenithfs-tuned,s3fs,rclone-full,rclone-off,sdk,local",
		"arms: zenithfs, zenithfs-tuned (zenithfs with -tuned-workers and -tuned-prefetch), s3fs, rclone-full, rclone-off, sdk, local (zenithfs-local and direct)")
	fs.StringVar(&nets, "nets", "remote,loopback", "S3 networks: remote (the proxy shapes traffic), loopback (it only counts)")
	fs.StringVar(&orders, "orders", "natural,shuffled", "read orders of the S3 arms")
	fs.DurationVar(&cfg.Latency, "latency", 20*time.Millisecond, "remote: first-byte latency per request")
	fs.Float64Var(&cfg.Bandwidth, "bandwidth", 80e6, "remote: bytes/s per response stream")
	fs.StringVar(&cfg.CacheSize, "cache-size", "512MiB", "zenithfs --cache-size (P8's budget)")
	fs.IntVar(&cfg.Prefetch, "prefetch", 8, "zenithfs --prefetch")
	fs.IntVar(&cfg.Workers, "workers", 0, "zenithfs --workers (0: its default)")
	fs.IntVar(&cfg.TunedWorkers, "tuned-workers", 16, "zenithfs-tuned arm: --workers")
	fs.IntVar(&cfg.TunedPrefetch, "tuned-prefetch", 16, "zenithfs-tuned arm: --prefetch (batches, and for S3 source segments, read ahead of each reader)")
	fs.IntVar(&cfg.SDKInflight, "sdk-inflight", 4, "sdk arm: row-group GETs in flight ahead of the decoder")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "shuffle seed (zenithfs view seed=S and the peers' permutation)")
	fs.Uint64Var(&cfg.Epoch, "epoch", 0, "shuffle epoch")
	fs.DurationVar(&cfg.MaxEpoch, "max-epoch", 30*time.Second, "an epoch longer than this stops and counts as partial (throughput over what was read)")
	fs.StringVar(&cfg.Profile, "profile", "", "directory for daemon CPU profiles of one extra zenithfs epoch per arm, dataset, network and order (and one of the local arm)")
	fs.IntVar(&cfg.ProfileSecs, "profile-seconds", 4, "length of each profile")
	fs.StringVar(&cfg.Date, "date", time.Now().Format("2006-01-02"), "date in the results' names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dss, err := df.datasets()
	if err != nil {
		return err
	}
	cfg.Arms, cfg.Nets, cfg.Orders = split(arms), split(nets), split(orders)
	if cfg.Reps < 1 {
		return fmt.Errorf("-reps must be ≥ 1")
	}
	if cfg.Work == "" {
		w, err := os.MkdirTemp("", "zenithfs-bench-peers.")
		if err != nil {
			return err
		}
		defer os.RemoveAll(w)
		cfg.Work = w
	}
	if cfg.Profile != "" {
		if err := os.MkdirAll(cfg.Profile, 0o755); err != nil {
			return err
		}
	}
	return bench(cfg, dss)
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func has(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// armsOf lists the arms the config asks for.
func armsOf(cfg Config) []Arm {
	var out []Arm
	names := map[string]string{"zenithfs": "zenithfs", "zenithfs-tuned": "", "s3fs": "s3fs", "rclone-full": "rclone full", "rclone-off": "rclone off", "sdk": "sdk"}
	for _, net := range cfg.Nets {
		names["zenithfs-tuned"] = cfg.tunedName()
		for _, k := range []string{"zenithfs", "zenithfs-tuned", "s3fs", "rclone-full", "rclone-off", "sdk"} {
			if !has(cfg.Arms, k) {
				continue
			}
			for _, o := range cfg.Orders {
				a := Arm{ID: names[k], Kind: k, Net: net, Shuffled: o == "shuffled"}
				if a.Shuffled {
					a.ID += " random"
					switch k {
					case "zenithfs":
						a.ID = "zenithfs view"
					case "zenithfs-tuned":
						a.ID = names[k] + " view"
					}
				}
				out = append(out, a)
			}
		}
	}
	if has(cfg.Arms, "local") {
		for _, cold := range []bool{true, false} {
			t := "warm"
			if cold {
				t = "cold"
			}
			out = append(out, Arm{ID: "zenithfs local " + t, Kind: "zenithfs-local", Net: "local", Cold: cold},
				Arm{ID: "direct " + t, Kind: "direct", Net: "local", Cold: cold})
		}
	}
	return out
}

func bench(cfg Config, dss []Dataset) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	vgw, err := benchkit.FindVersitygw()
	if err != nil {
		return err
	}
	benchkit.SetAWSEnv(cfg.Work, creds)
	srv, err := benchkit.StartVersitygw(vgw, filepath.Join(cfg.Work, "s3"), filepath.Join(cfg.Work, "versitygw.log"), creds, 3*time.Second)
	if err != nil {
		return err
	}
	defer srv.Stop()
	shapes := map[string]Shape{"remote": {Latency: cfg.Latency, Bandwidth: cfg.Bandwidth}, "loopback": {}}
	proxy, err := StartProxy(srv.Endpoint, shapes["loopback"])
	if err != nil {
		return err
	}
	defer proxy.Close()
	b := &Bench{cfg: cfg, self: self, server: srv, proxy: proxy, shapes: shapes,
		target: S3Target{Endpoint: proxy.URL, Bucket: "bench", Access: creds.Access, Secret: creds.Secret, Region: creds.Region}}
	res := Result{Cfg: cfg, Machine: machine(),
		Shapes: []string{"remote: " + shapes["remote"].String(), "loopback: " + shapes["loopback"].String()}}
	ctx := context.Background()
	client, err := newS3Client(ctx, srv.Endpoint)
	if err != nil {
		return err
	}
	for _, d := range dss {
		t := time.Now()
		dir, n, err := Generate(cfg.Data, d)
		if err != nil {
			return err
		}
		log.Printf("%s: %d files, %d rows, %.1f MiB Parquet (%s)", d.Name, d.Files, d.Rows(), float64(n)/(1<<20), time.Since(t).Round(time.Second))
		if err := upload(ctx, client, "bench", d.Name, dir); err != nil {
			return err
		}
		info := DataInfo{Dataset: d, Dir: dir, Bytes: n}
		if has(cfg.Arms, "zenithfs") || has(cfg.Arms, "zenithfs-tuned") || has(cfg.Arms, "local") {
			if err := b.indexPass(&info); err != nil {
				return err
			}
			log.Printf("%s: zenithfs index pass: S3 (remote) %.2fs, %d GETs, %.2f × the bytes; local %.2fs",
				d.Name, info.IndexS, info.IndexGET, float64(info.IndexB)/float64(n), info.LocalIdx)
		}
		res.Datasets = append(res.Datasets, info)
	}
	arms := armsOf(cfg)
	for rep := 0; rep < cfg.Reps; rep++ {
		for _, ds := range res.Datasets {
			for i := range arms {
				a := arms[(i+rep*len(arms)/cfg.Reps)%len(arms)] // rotate the order each repetition
				r := b.runArm(ds, a, rep, "")
				log.Printf("rep %d %-5s %-22s %-8s %6.2fs %10.0f samples/s %7.1f MB/s ttfb %5.2fs gets %5d bytes %5.2fx cpu %5.2f+%5.2fs hwm %4d MiB%s",
					rep, ds.Name, a.ID, a.Net, r.Seconds, r.SamplesPS, r.MBps, r.TTFB, r.GETs,
					float64(r.Bytes)/float64(ds.Bytes), r.DaemonCPU, r.ConsCPU, max(r.DaemonHWM, 0)>>20, partialMark(r))
				res.Runs = append(res.Runs, r)
			}
		}
	}
	if cfg.Profile != "" {
		for _, ds := range res.Datasets {
			for _, a := range profileArms(cfg) {
				p := filepath.Join(cfg.Profile, fmt.Sprintf("%s-%s-%s-%s.pprof", a.Kind, ds.Name, a.Net, orderName(a.Shuffled)))
				r := b.runArm(ds, a, -1, p)
				res.Notes = append(res.Notes, fmt.Sprintf("daemon CPU profile %s: taken during an extra epoch of %.2fs (%.0f samples/s)",
					filepath.Base(p), r.Seconds, r.SamplesPS))
			}
		}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	base := filepath.Join(cfg.Out, "peers-"+cfg.Date)
	js, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", js, 0o644); err != nil {
		return err
	}
	return writeReport(res, base)
}

// writeReport writes BASE.md, BASE.png and BASE-ttfb.png.
func writeReport(res Result, base string) error {
	if err := os.WriteFile(base+".md", []byte(Report(res)), 0o644); err != nil {
		return err
	}
	if err := Plot(res, base+".png"); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	log.Printf("wrote %s.{md,json,png}", base)
	return nil
}

// reportMain is `peers report FILE.json`: the page and plots again from a
// run's JSON (after a change to the report, without rerunning).
func reportMain(args []string) error {
	if len(args) != 1 || !strings.HasSuffix(args[0], ".json") {
		return fmt.Errorf("usage: peers report FILE.json")
	}
	js, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var res Result
	if err := json.Unmarshal(js, &res); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return writeReport(res, strings.TrimSuffix(args[0], ".json"))
}

func partialMark(r Run) string {
	switch {
	case r.Err != "":
		return "  FAILED"
	case r.Partial:
		return "  (partial)"
	}
	return ""
}

func machine() string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d CPUs", runtime.NumCPU()))
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
	return strings.Join(append(parts, runtime.Version()), ", ")
}

// tunedName is the zenithfs-tuned arm's name, after its flags.
func (c Config) tunedName() string {
	return fmt.Sprintf("zenithfs w%d p%d", c.TunedWorkers, c.TunedPrefetch)
}

// profileArms are the extra zenithfs epochs profiled with -profile: each
// zenithfs arm on each S3 network and order, and the local arm (natural
// order, page cache warm) beside them, whose difference is the S3 path's.
func profileArms(cfg Config) []Arm {
	var out []Arm
	for _, k := range []string{"zenithfs", "zenithfs-tuned"} {
		if !has(cfg.Arms, k) {
			continue
		}
		for _, n := range cfg.Nets {
			for _, o := range cfg.Orders {
				out = append(out, Arm{ID: "profile", Kind: k, Net: n, Shuffled: o == "shuffled"})
			}
		}
	}
	if has(cfg.Arms, "local") {
		out = append(out, Arm{ID: "profile", Kind: "zenithfs-local", Net: "local"})
	}
	return out
}

func orderName(shuffled bool) string {
	if shuffled {
		return "shuffled"
	}
	return "natural"
}
