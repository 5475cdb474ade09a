package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Report is one benchmark run.
type Report struct {
	Config   Config           `json:"config"`
	Host     string           `json:"host"`
	Started  time.Time        `json:"started"`
	Elapsed  time.Duration    `json:"elapsed_ns"`
	Datasets []*DatasetResult `json:"datasets"`
	Error    string           `json:"error,omitempty"` // set when the run stopped early
}

// Write writes local-DATE.md, .json and .png into dir and returns the
// markdown's path.
func (r *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	stem := filepath.Join(dir, "local-"+r.Config.Date)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(stem+".json", append(js, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	if err := r.Plot(stem + ".png"); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	if err := os.WriteFile(stem+".md", []byte(r.Markdown(filepath.Base(stem)+".png")), 0o644); err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	return stem + ".md", nil
}

// Markdown renders the report.
func (r *Report) Markdown(png string) string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "# zenithfs local read-path benchmark, %s\n\n", c.Date)
	fmt.Fprintf(&b, "Host: %s. Run took %s. Command: `%s`.\n\n", r.Host, r.Elapsed.Round(time.Second), c.Command)
	if r.Error != "" {
		fmt.Fprintf(&b, "**Incomplete run**: %s\n\n", r.Error)
	}
	pt := ""
	if c.Passthrough {
		pt = " --passthrough"
	}
	fmt.Fprintf(&b, "Mount flags: `--workers %d --prefetch %d --io-uring auto%s` unless the arm says otherwise; "+
		"%d interleaved repetitions per arm, medians shown (all values in the JSON next to this file). "+
		"Ratios are median(arm) ÷ median(baseline), throughputs (higher is better); "+
		"P4 is the consumer's share of time spent waiting on data (lower is better). "+
		"See bench/README.md for what each metric measures.\n\n", c.Workers, c.Prefetch, pt, c.Reps)
	fmt.Fprintf(&b, "| dataset | id | metric | arm | median | baseline | median | ratio | goal | met |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | ---: | --- | ---: | ---: | --- | --- |\n")
	for _, d := range r.Datasets {
		for _, row := range d.Rows {
			ratio, goal, met := fmtRatio(row), "—", "—"
			if row.Goal != 0 {
				if row.Fraction {
					goal = fmt.Sprintf("≤ %.0f %%", 100*row.Goal)
				} else {
					goal = fmt.Sprintf("≥ %.1f", row.Goal)
				}
			}
			if m, ok := row.Met(); ok {
				met = map[bool]string{true: "yes", false: "**no**"}[m]
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", d.Kind, row.ID, row.Metric,
				row.Arm, fmtVal(row, row.ArmVals), row.Base, fmtVal(row, row.BaseVals), ratio, goal, met)
		}
	}
	for _, d := range r.Datasets {
		if len(d.Sweep) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### P1 and P2 against the size of a batch file (%s)\n\n", d.Kind)
		fmt.Fprintf(&b, "| batch rows | files | mean file | tmpfs | warm (P1) | daemon cache (P2) | P1 | P2 |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, p := range d.sweepPoints() {
			fmt.Fprintf(&b, "| %d | %d | %s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.2f | %.2f |\n", p.BatchRows, p.Files,
				kib(p.FileBytes), benchkit.Median(p.Tmpfs), benchkit.Median(p.Warm), benchkit.Median(p.Cold), p.P1(), p.P2())
		}
	}
	fmt.Fprintf(&b, "\n![ratios](%s)\n\n", png)
	fmt.Fprintf(&b, "## Daemon memory\n\n| dataset | mounts | --cache-size | peak memory (VmHWM, or RSS + memfd batches) | peak ÷ budget |\n| --- | --- | ---: | ---: | ---: |\n")
	for _, d := range r.Datasets {
		for _, m := range d.Memory {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f |\n", d.Kind, m.Arms, mib(m.Budget), mib(m.HWM), float64(m.HWM)/float64(max(m.Budget, 1)))
		}
	}
	fmt.Fprintf(&b, "\n## Datasets\n\n| dataset | source Parquet | rows | row group | batch rows | batch files | batch bytes | first mount (index pass) | later mounts (median) |\n")
	fmt.Fprintf(&b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, d := range r.Datasets {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s | %.2f s |\n", d.Kind, mib(d.SourceBytes), d.Spec.Rows,
			d.Spec.RowGroup, d.BatchSize, d.Files, mib(d.Bytes), d.IndexMount.Round(time.Millisecond), benchkit.Median(d.Mounts))
	}
	fmt.Fprintf(&b, "\n## Notes\n\n")
	for _, d := range r.Datasets {
		for _, row := range d.Rows {
			if row.Note != "" {
				fmt.Fprintf(&b, "- %s %s: %s\n", d.Kind, row.ID, row.Note)
			}
		}
		for _, n := range d.Notes {
			fmt.Fprintf(&b, "- %s: %s\n", d.Kind, n)
		}
	}
	return b.String()
}

func fmtRatio(r Row) string {
	if len(r.ArmVals) == 0 || len(r.BaseVals) == 0 {
		return "n/a"
	}
	if r.Fraction {
		return "—"
	}
	return fmt.Sprintf("%.2f", r.Ratio())
}

func fmtVal(r Row, v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	m := benchkit.Median(v)
	switch {
	case r.Fraction:
		return fmt.Sprintf("%.1f %%", 100*m)
	case m >= 1e5:
		return fmt.Sprintf("%.0f %s", m, r.Unit)
	default:
		return fmt.Sprintf("%.1f %s", m, r.Unit)
	}
}

func kib(n int64) string {
	if n >= 10<<20 {
		return mib(n)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// parseSize parses sizes like 512MiB, 1GiB, 64M, 1000 (bytes).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(n * float64(mult)), nil
}

func hostInfo() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d × %s%s, %s", runtime.NumCPU(), model, kernel, runtime.Version())
}

// sweepPoints are the sweep's points plus the main P1/P2 measurement, by
// batch size.
func (d *DatasetResult) sweepPoints() []SweepPoint {
	pts := append([]SweepPoint{}, d.Sweep...)
	if row, ok := findRow(d, "P1"); ok && len(pts) > 0 {
		p2, _ := findRow(d, "P2")
		pts = append(pts, SweepPoint{BatchRows: d.BatchSize, Files: d.Files, FileBytes: d.Bytes / int64(max(d.Files, 1)),
			Tmpfs: row.BaseVals, Warm: row.ArmVals, Cold: p2.ArmVals})
	}
	slices.SortFunc(pts, func(a, b SweepPoint) int { return a.BatchRows - b.BatchRows })
	return pts
}
