package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
	"github.com/zenithfs/zenithfs/scheduler/slurm"
)

// newScheduler builds the job scheduler for --jobs and --gpus. With
// --jobs slurm the controller must answer at start.
func newScheduler(ctx context.Context, cfg *Config, log *slog.Logger) (*scheduler.Scheduler, error) {
	gpus, err := scheduler.DiscoverGPUs(ctx, cfg.GPUs, log)
	if err != nil {
		return nil, fmt.Errorf("--gpus %s: %w", cfg.GPUs, err)
	}
	var runner scheduler.Runner
	if cfg.Jobs == "slurm" {
		if err := slurm.CheckLogDir(cfg.StateDir); err != nil {
			return nil, fmt.Errorf("--jobs slurm: --state-dir: %w", err)
		}
		r := slurm.New(slurm.Config{Logger: log, LogCap: scheduler.DefaultLogCap, Workdir: filepath.Join(cfg.StateDir, "work"), JobCompLog: "/var/log/slurm/jobcomp.log"})
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := r.Ping(pctx); err != nil {
			return nil, fmt.Errorf("--jobs slurm: %w", err)
		}
		runner = r
		if cfg.GPUs == "auto" {
			gpus = nil // Slurm knows the cluster's GPUs; the node's own are irrelevant
		}
	}
	var forbidden []string
	if len(cfg.Forbidden) > 0 {
		forbidden = cfg.Forbidden
	}
	s, err := scheduler.New(scheduler.Config{
		StateDir:   cfg.StateDir,
		GPUs:       gpus,
		Runner:     runner,
		Logger:     log,
		Forbidden:  forbidden,
		MountPoint: cfg.MountPoint,
		Owner:      uint32(os.Getuid()),
		// Jobs start once the mount is up (serve calls Start): a job
		// started before would inherit the FUSE connection go-fuse opens
		// without close-on-exec (fs.Mount sets it).
		Held: true,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}
