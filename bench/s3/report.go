package main

import (
	"fmt"
	"strings"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// pick returns f of every epoch of kind and arm, in repetition order.
func pick(res Result, kind, arm string, f func(Epoch) float64) []float64 {
	var out []float64
	for _, e := range res.Epochs {
		if e.Kind == kind && e.Arm == arm {
			out = append(out, f(e))
		}
	}
	return out
}

func report(res Result) string {
	var b strings.Builder
	cfg := res.Cfg
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# zenithfs S3 read path — %s\n\n", cfg.Date)
	w("Command: `%s`  \n", strings.TrimSpace(cfg.Command))
	w("Machine: %s  \n", res.Machine)
	w("Server: versitygw (posix backend) on 127.0.0.1, same machine; zenithfs `--cache-size %s --prefetch %d`", cfg.CacheSize, cfg.Prefetch)
	if cfg.Workers > 0 {
		w(" `--workers %d`", cfg.Workers)
	}
	w("; %d interleaved repetitions, medians reported. bench/s3/README.md defines every column.\n\n", cfg.Reps)

	w("## Datasets and the first mount's index pass\n\n")
	w("| dataset | files | Parquet | rows | batch rows | batch files | index pass | its GETs | its bytes ÷ dataset |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, k := range cfg.Kinds {
		ip := res.Index[k.Name]
		rows := int64(k.Files) * k.Rows
		w("| %s | %d | %.1f MiB | %d | %d | %d | %.2f s | %d | %.3f |\n", k.Name, k.Files, mib(res.Bytes[k.Name]), rows,
			k.Batch, (rows+int64(k.Batch)-1)/int64(k.Batch), ip.Seconds, ip.GETs, float64(ip.Bytes)/float64(res.Bytes[k.Name]))
	}

	w("\n## Cold epoch (index cached, fresh daemon)\n\n")
	w("| dataset | arm | epoch | rows/s | Parquet MiB/s | GETs | fetched ÷ dataset | CPU daemon | CPU versitygw | CPU reader/baseline | reader wait |\n")
	w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, k := range cfg.Kinds {
		for _, arm := range cfg.Arms {
			secs := pick(res, k.Name, arm, func(e Epoch) float64 { return e.Seconds })
			if len(secs) == 0 {
				continue
			}
			rows := float64(int64(k.Files) * k.Rows)
			med := func(f func(Epoch) float64) float64 { return benchkit.Median(pick(res, k.Name, arm, f)) }
			s := benchkit.Median(secs)
			cpuD := "—"
			wait := "—"
			if strings.HasPrefix(arm, "zenithfs") {
				cpuD = fmt.Sprintf("%.2f s", med(func(e Epoch) float64 { return e.DaemonCPU }))
				wait = fmt.Sprintf("%.2f s", med(func(e Epoch) float64 { return e.WaitSeconds }))
			}
			w("| %s | %s | %.3f s | %.0f | %.1f | %.0f | %.3f | %s | %.2f s | %.2f s | %s |\n", k.Name, arm, s, rows/s,
				mib(res.Bytes[k.Name])/s, med(func(e Epoch) float64 { return float64(e.GETs) }),
				med(func(e Epoch) float64 { return float64(e.Bytes) })/float64(res.Bytes[k.Name]),
				cpuD, med(func(e Epoch) float64 { return e.ServerCPU }), med(func(e Epoch) float64 { return e.SelfCPU }), wait)
		}
	}

	w("\n## zenithfs ÷ baseline (rows/s; goal ≥ 1.0)\n\n")
	w("| dataset | arm | ratio of medians | per repetition |\n| --- | --- | ---: | --- |\n")
	for _, k := range cfg.Kinds {
		base := pick(res, k.Name, "baseline", func(e Epoch) float64 { return e.Seconds })
		if len(base) == 0 {
			continue
		}
		for _, arm := range cfg.Arms {
			if arm == "baseline" {
				continue
			}
			z := pick(res, k.Name, arm, func(e Epoch) float64 { return e.Seconds })
			var per []string
			for i := range z {
				if i < len(base) {
					per = append(per, fmt.Sprintf("%.2f", base[i]/z[i]))
				}
			}
			w("| %s | %s | **%.2f** | %s |\n", k.Name, arm, benchkit.Median(base)/benchkit.Median(z), strings.Join(per, " "))
		}
	}

	w("\n## Every repetition\n\n| rep | dataset | arm | epoch | GETs | bytes fetched | retries | prefetch hits (in flight) / misses |\n")
	w("| ---: | --- | --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, e := range res.Epochs {
		pf := "—"
		if strings.HasPrefix(e.Arm, "zenithfs") {
			pf = fmt.Sprintf("%d (%d) / %d", e.PrefetchHits, e.InflightHits, e.Miss)
		}
		w("| %d | %s | %s | %.3f s | %d | %d | %d | %s |\n", e.Rep, e.Kind, e.Arm, e.Seconds, e.GETs, e.Bytes, e.Retries, pf)
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
