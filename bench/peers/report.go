package main

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// median is benchkit.Median, NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return benchkit.Median(xs)
}

// Agg is one arm's runs on one dataset and network, summarised.
type Agg struct {
	Arm, Net              string
	OK, Partial, Failed   int
	SamplesPS, MBps, TTFB float64 // medians over runs that read data
	MountS                float64
	DaemonCPU, ConsCPU    float64
	InfraCPU              float64
	HWM, ConsRSS          int64 // max over runs
	GETs, Bytes           float64
	Err                   string // the first failure
}

// aggregate summarises the runs of (dataset, arm, net).
func aggregate(runs []Run, ds, arm, net string) (Agg, bool) {
	a := Agg{Arm: arm, Net: net}
	var sps, mbps, ttfb, mnt, dcpu, ccpu, icpu, gets, bytes []float64
	found := false
	for _, r := range runs {
		if r.Dataset != ds || r.Arm != arm || r.Net != net {
			continue
		}
		found = true
		if r.Err != "" {
			a.Failed++
			if a.Err == "" {
				a.Err = r.Err
			}
			continue
		}
		if r.Partial {
			a.Partial++
		} else {
			a.OK++
		}
		sps, mbps, ttfb = append(sps, r.SamplesPS), append(mbps, r.MBps), append(ttfb, r.TTFB)
		mnt, dcpu, ccpu = append(mnt, r.MountS), append(dcpu, r.DaemonCPU), append(ccpu, r.ConsCPU)
		icpu = append(icpu, r.InfraCPU)
		gets, bytes = append(gets, float64(r.GETs)), append(bytes, float64(r.Bytes))
		a.HWM, a.ConsRSS = max(a.HWM, r.DaemonHWM), max(a.ConsRSS, r.ConsumerRS)
	}
	a.SamplesPS, a.MBps, a.TTFB, a.MountS = median(sps), median(mbps), median(ttfb), median(mnt)
	a.DaemonCPU, a.ConsCPU, a.GETs, a.Bytes = median(dcpu), median(ccpu), median(gets), median(bytes)
	a.InfraCPU = median(icpu)
	return a, found
}

// armOrder lists the arm IDs of a result in the order they were defined.
func armOrder(runs []Run) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range runs {
		if r.Rep >= 0 && !seen[r.Arm] {
			seen[r.Arm] = true
			out = append(out, r.Arm)
		}
	}
	rank := func(id string) int {
		if strings.HasPrefix(id, "zenithfs w") { // the tuned arm, named after its flags
			if strings.HasSuffix(id, " view") {
				return 3
			}
			return 2
		}
		for i, p := range []string{"zenithfs", "zenithfs view", "", "", "s3fs", "s3fs random", "rclone full", "rclone full random",
			"rclone off", "rclone off random", "sdk", "sdk random", "zenithfs local cold", "direct cold", "zenithfs local warm", "direct warm"} {
			if p == id {
				return i
			}
		}
		return 100
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

// Ratio is one target's value on one dataset and network.
type Ratio struct {
	ID, Dataset, Net, What string
	Value, Goal            float64
	AtMost                 bool // goal is an upper bound
	Unit                   string
	Note                   string
}

// Met tells whether the goal holds (false when the value is missing).
func (r Ratio) Met() bool {
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		return false
	}
	if r.AtMost {
		return r.Value <= r.Goal
	}
	return r.Value >= r.Goal
}

// best is the arm with the highest median samples/s among ids.
func best(res Result, ds, net string, ids ...string) (Agg, bool) {
	var b Agg
	ok := false
	for _, id := range ids {
		a, found := aggregate(res.Runs, ds, id, net)
		if !found || math.IsNaN(a.SamplesPS) {
			continue
		}
		if !ok || a.SamplesPS > b.SamplesPS {
			b, ok = a, true
		}
	}
	return b, ok
}

// Ratios computes P5, P6b, P7 and P8 per dataset and network.
func Ratios(res Result) []Ratio {
	var out []Ratio
	budget, _ := parseSize(res.Cfg.CacheSize)
	for _, ds := range res.Datasets {
		for _, net := range res.Cfg.Nets {
			for _, zid := range []string{"zenithfs", res.Cfg.tunedName()} {
				out = append(out, ratiosOf(res, ds, net, zid)...)
			}
		}
		var hwm int64
		for _, r := range res.Runs {
			if r.Dataset == ds.Name && strings.HasPrefix(r.Kind, "zenithfs") && r.Rep >= 0 {
				hwm = max(hwm, r.DaemonHWM)
			}
		}
		if hwm > 0 {
			out = append(out, Ratio{ID: "P8", Dataset: ds.Name, Net: "all", What: fmt.Sprintf("zenithfs peak memory (VmHWM, or RSS + memfd batches; every mount) vs --cache-size %s + 150 MiB", res.Cfg.CacheSize),
				Value: float64(hwm) / (1 << 20), Goal: float64(budget)/(1<<20) + 150, AtMost: true, Unit: "MiB"})
		}
	}
	return out
}

// ratiosOf is P5, P6b and P7 for one zenithfs arm (zid; its view is
// "zid view") on one dataset and network.
func ratiosOf(res Result, ds DataInfo, net, zid string) []Ratio {
	var out []Ratio
	if z, ok := aggregate(res.Runs, ds.Name, zid, net); ok {
		if p, ok := best(res, ds.Name, net, "s3fs", "rclone full", "rclone off"); ok {
			out = append(out, Ratio{ID: "P5", Dataset: ds.Name, Net: net, What: zid + " ÷ best of s3fs, rclone (" + p.Arm + ")",
				Value: z.SamplesPS / p.SamplesPS, Goal: 2, Unit: "×"})
		}
		if s, ok := aggregate(res.Runs, ds.Name, "sdk", net); ok {
			out = append(out, Ratio{ID: "P5", Dataset: ds.Name, Net: net, What: zid + " ÷ in-process SDK",
				Value: z.SamplesPS / s.SamplesPS, Goal: 1, Unit: "×"})
		}
		out = append(out, Ratio{ID: "P7", Dataset: ds.Name, Net: net, What: zid + " time to first batch after mount (index cached)",
			Value: z.TTFB, Goal: 1, AtMost: true, Unit: "s",
			Note: fmt.Sprintf("%.0f MB dataset; the first mount ever (index pass) took %.1f s", float64(ds.Bytes)/1e6, ds.IndexS)})
	}
	if v, ok := aggregate(res.Runs, ds.Name, zid+" view", net); ok {
		if p, ok := best(res, ds.Name, net, "s3fs random", "rclone full random", "rclone off random", "sdk random"); ok {
			out = append(out, Ratio{ID: "P6b", Dataset: ds.Name, Net: net, What: zid + " view ÷ best peer reading row groups randomly (" + p.Arm + ")",
				Value: v.SamplesPS / p.SamplesPS, Goal: 2, Unit: "×"})
		}
		if p, ok := best(res, ds.Name, net, "s3fs random", "rclone full random", "rclone off random"); ok {
			out = append(out, Ratio{ID: "P6b", Dataset: ds.Name, Net: net, What: zid + " view ÷ best FUSE peer reading row groups randomly (" + p.Arm + ")",
				Value: v.SamplesPS / p.SamplesPS, Goal: 2, Unit: "×"})
		}
	}
	return out
}

// Report renders the markdown results page.
func Report(res Result) string {
	var w strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&w, f, a...) }
	p("# zenithfs against peers — %s\n\n", res.Cfg.Date)
	p("Command: `%s`. Machine: %s. Medians of %d interleaved repetitions (the arm order rotates each repetition).\n\n",
		strings.TrimSpace(res.Cfg.Command), res.Machine, res.Cfg.Reps)
	p("Networks (a proxy between every arm and versitygw on loopback): %s. zenithfs: `--cache-size %s --prefetch %d`, workers %s. "+
		"Shuffled: zenithfs reads `views/seed=%d,epoch=%d/`; the peers read every row group once in a permutation seeded the same way (row group = one batch). "+
		"An epoch longer than %s stops and counts as partial (its rate is over what it read).\n\n",
		strings.Join(res.Shapes, "; "), res.Cfg.CacheSize, res.Cfg.Prefetch, workersText(res.Cfg.Workers), res.Cfg.Seed, res.Cfg.Epoch, res.Cfg.MaxEpoch)
	p("## Datasets\n\n| dataset | files | rows | row group = batch | Parquet | zenithfs first mount (index pass, remote) | GETs | bytes fetched ÷ dataset | local first mount |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, d := range res.Datasets {
		p("| %s | %d | %d | %d / %d rows | %.1f MiB | %.2f s | %d | %.2f | %.2f s |\n", d.Name, d.Files, d.Rows(), d.RowGroup, d.Batch,
			float64(d.Bytes)/(1<<20), d.IndexS, d.IndexGET, float64(d.IndexB)/float64(max(d.Bytes, 1)), d.LocalIdx)
	}
	p("\n## Targets\n\n| id | dataset | network | what | value | goal | met |\n|---|---|---|---|---|---|---|\n")
	for _, r := range Ratios(res) {
		op := "≥"
		if r.AtMost {
			op = "≤"
		}
		met := "no"
		if r.Met() {
			met = "**yes**"
		}
		what := r.What
		if r.Note != "" {
			what += " — " + r.Note
		}
		p("| %s | %s | %s | %s | %.2f %s | %s %.2f %s | %s |\n", r.ID, r.Dataset, r.Net, what, r.Value, r.Unit, op, r.Goal, r.Unit, met)
	}
	arms := armOrder(res.Runs)
	for _, ds := range res.Datasets {
		p("\n## %s\n\n", ds.Name)
		p("| arm | network | samples/s | MB/s | first batch (s) | mount (s) | daemon peak RSS | CPU s daemon + consumer | CPU s server + proxy | consumer peak RSS | GETs | bytes fetched ÷ dataset | runs |\n")
		p("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, net := range append(append([]string{}, res.Cfg.Nets...), "local") {
			for _, arm := range arms {
				a, ok := aggregate(res.Runs, ds.Name, arm, net)
				if !ok {
					continue
				}
				runs := fmt.Sprintf("%d ok", a.OK)
				if a.Partial > 0 {
					runs += fmt.Sprintf(", %d partial", a.Partial)
				}
				if a.Failed > 0 {
					runs += fmt.Sprintf(", %d failed", a.Failed)
				}
				hwm := "—"
				if a.HWM > 0 {
					hwm = fmt.Sprintf("%d MiB", a.HWM>>20)
				}
				gets, bytes := "—", "—"
				if net != "local" {
					gets, bytes = fmt.Sprintf("%.0f", a.GETs), fmt.Sprintf("%.2f", a.Bytes/float64(ds.Bytes))
				}
				p("| %s | %s | %.0f | %.1f | %.2f | %.2f | %s | %.2f + %.2f | %.2f | %d MiB | %s | %s | %s |\n", arm, net, a.SamplesPS, a.MBps, a.TTFB, a.MountS,
					hwm, a.DaemonCPU, a.ConsCPU, a.InfraCPU, a.ConsRSS>>20, gets, bytes, runs)
			}
		}
	}
	var fails []string
	for _, r := range res.Runs {
		if r.Err != "" {
			fails = append(fails, fmt.Sprintf("- %s %s (%s) rep %d: %s", r.Dataset, r.Arm, r.Net, r.Rep, r.Err))
		}
	}
	if len(fails) > 0 {
		p("\n## Failed runs\n\n%s\n", strings.Join(fails, "\n"))
	}
	if len(res.Notes) > 0 {
		p("\n## Notes\n\n- %s\n", strings.Join(res.Notes, "\n- "))
	}
	p("\nColumns: samples/s and MB/s (Parquet bytes of the rows read ÷ time) over the consumer's epoch, from its start to its last batch " +
		"(mount excluded); first batch: from the mount command's start (the consumer's start for sdk and direct) to the first batch touched; " +
		"CPU: utime+stime of the FUSE daemon during the epoch and of the consumer process; server + proxy: versitygw's and the benchmark process's (which runs the proxy) during the epoch; GETs and bytes: object GETs through the proxy " +
		"from mount to unmount (zenithfs with its index cached by the first mount). `bench/peers/README.md` explains the method.\n")
	return w.String()
}

func workersText(n int) string {
	if n == 0 {
		return "default (cores)"
	}
	return fmt.Sprint(n)
}

// parseSize reads sizes like 512MiB, 1GiB, 300MB.
func parseSize(s string) (int64, error) {
	units := []struct {
		suf string
		n   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1 << 30}, {"M", 1 << 20}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suf); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return int64(f * float64(u.n)), nil
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n, nil
}
