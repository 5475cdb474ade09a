package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// GPU is one GPU the scheduler hands out.
type GPU struct {
	Index     int    // the index CUDA_VISIBLE_DEVICES names
	Name      string // e.g. "NVIDIA H200", or "declared"
	MemoryMiB int64  // 0 when unknown
}

// GPUStatus is a GPU and the job holding it ("" when free).
type GPUStatus struct {
	GPU
	Job string
}

// DiscoverGPUs turns the --gpus flag into a GPU list:
//
//   - "auto" (or ""): ask nvidia-smi for index, name and memory; when it is
//     absent or fails, no GPUs, with one log line.
//   - "N" (a single integer): N declared GPUs, indices 0..N-1.
//   - "0,1,3" (a list with a comma; "3," declares GPU 3 alone): those indices.
func DiscoverGPUs(ctx context.Context, spec string, log *slog.Logger) ([]GPU, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "" || spec == "auto":
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "nvidia-smi",
			"--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits").Output()
		if err != nil {
			log.Info("no GPUs discovered: nvidia-smi unavailable; jobs get no GPUs", "err", err)
			return nil, nil
		}
		gpus, err := parseNvidiaSMI(out)
		if err != nil {
			log.Info("no GPUs discovered: cannot parse nvidia-smi output", "err", err)
			return nil, nil
		}
		return gpus, nil
	case !strings.Contains(spec, ","):
		n, err := strconv.Atoi(spec)
		if err != nil || n < 0 || n > 1024 {
			return nil, fmt.Errorf("--gpus %q: want auto, a count, or a comma-separated list of indices", spec)
		}
		gpus := make([]GPU, n)
		for i := range gpus {
			gpus[i] = GPU{Index: i, Name: "declared"}
		}
		return gpus, nil
	default:
		seen := map[int]bool{}
		var gpus []GPU
		for _, f := range strings.Split(spec, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			i, err := strconv.Atoi(f)
			if err != nil || i < 0 || i > 1<<16 {
				return nil, fmt.Errorf("--gpus %q: %q is not a GPU index", spec, f)
			}
			if seen[i] {
				return nil, fmt.Errorf("--gpus %q: index %d listed twice", spec, i)
			}
			seen[i] = true
			gpus = append(gpus, GPU{Index: i, Name: "declared"})
		}
		sort.Slice(gpus, func(a, b int) bool { return gpus[a].Index < gpus[b].Index })
		return gpus, nil
	}
}

// parseNvidiaSMI parses `nvidia-smi --query-gpu=index,name,memory.total
// --format=csv,noheader,nounits` output: "0, NVIDIA H200, 143771" per line.
func parseNvidiaSMI(out []byte) ([]GPU, error) {
	var gpus []GPU
	for _, line := range bytes.Split(out, []byte("\n")) {
		l := strings.TrimSpace(string(line))
		if l == "" {
			continue
		}
		f := strings.Split(l, ",")
		if len(f) < 3 {
			return nil, fmt.Errorf("nvidia-smi line %q: want index, name, memory", l)
		}
		idx, err := strconv.Atoi(strings.TrimSpace(f[0]))
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %q: index: %w", l, err)
		}
		mem, err := strconv.ParseInt(strings.TrimSpace(f[len(f)-1]), 10, 64)
		if err != nil {
			mem = 0 // "[N/A]" on some boards
		}
		name := strings.TrimSpace(strings.Join(f[1:len(f)-1], ","))
		gpus = append(gpus, GPU{Index: idx, Name: name, MemoryMiB: mem})
	}
	return gpus, nil
}

// FormatGPUs renders the .zenith/gpus file: one line per GPU, tab-separated
// index, name, memory, and the job holding it ("-" when free).
func FormatGPUs(st []GPUStatus) []byte {
	var b bytes.Buffer
	for _, g := range st {
		mem := "-"
		if g.MemoryMiB > 0 {
			mem = fmt.Sprintf("%dMiB", g.MemoryMiB)
		}
		job := g.Job
		if job == "" {
			job = "-"
		}
		fmt.Fprintf(&b, "%d\t%s\t%s\t%s\n", g.Index, g.Name, mem, job)
	}
	return b.Bytes()
}
