package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/format"
	zfs "github.com/zenithfs/zenithfs/fs"
	"github.com/zenithfs/zenithfs/source"
)

func cmdMount(args []string) error {
	cfg, err := parseMountArgs(reorder(args))
	if err != nil {
		return err
	}
	mnt, err := checkMountPoint(cfg.MountPoint)
	if err != nil {
		return err
	}
	cfg.MountPoint = mnt
	if cfg.LogFile == "" {
		cfg.LogFile = filepath.Join(cfg.StateDir, "zenithfs.log")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if !cfg.Foreground {
		return daemonize(args, cfg.LogFile)
	}
	n := newNotifier()
	err = serve(cfg, n)
	if err != nil {
		n.fail(err)
	}
	return err
}

// checkMountPoint refuses anything but an empty directory (or a stale
// mount, with a hint), before anything else happens.
func checkMountPoint(p string) (string, error) {
	abs, err := realPath(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, syscall.ENOTCONN) {
		return "", fmt.Errorf("mountpoint %s is a stale mount (its daemon died): run zenithfs umount %s", abs, abs)
	}
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", abs, unwrapPath(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("mountpoint %s is not a directory", abs)
	}
	if mounted(abs) {
		return "", fmt.Errorf("mountpoint %s is already mounted: run zenithfs umount %s first", abs, abs)
	}
	d, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", abs, unwrapPath(err))
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return "", fmt.Errorf("mountpoint %s is not empty", abs)
	}
	return abs, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// unmountOnSignal waits for the first signal (ctx done), then unmounts.
// When the mount is busy it first stops the running jobs (stopJobs: they
// would be stopped at shutdown anyway, and a job reading batch files or
// working inside the mount is what keeps it busy), then retries every
// second while it is still busy (a shell inside it), saying so; a further
// signal detaches the mount instead (lazy unmount: gone from the
// namespace at once, served until its last file is closed). It returns
// once unmounted is closed.
func unmountOnSignal(ctx context.Context, sigs <-chan os.Signal, unmounted <-chan struct{}, unmount, detach func() error, stopJobs func(), log *slog.Logger) {
	select {
	case <-ctx.Done():
	case <-unmounted:
		return
	}
	log.Info("signal received; unmounting")
	jobsStopped := false
	for {
		err := unmount()
		if err == nil {
			return
		}
		if !jobsStopped {
			jobsStopped = true
			log.Info("the mount is busy; stopping the running jobs first (daemon shutdown)", "err", err)
			stopJobs()
			continue
		}
		log.Error("unmount failed; retrying every second (signal again to detach it now)", "err", err)
		select {
		case <-unmounted:
			return
		case <-sigs:
			if err := detach(); err != nil {
				log.Error("detach", "err", err)
				continue
			}
			log.Info("detached; serving open files until they are closed")
			return
		case <-time.After(time.Second):
		}
	}
}

// newLogger writes the log file; in the foreground (not a daemon, whose
// stderr is the log file already) the terminal gets the log too.
func newLogger(cfg *Config, daemon bool) (*slog.Logger, io.Closer, error) {
	f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	var w io.Writer = f
	if !daemon {
		w = io.MultiWriter(f, os.Stderr)
	}
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), f, nil
}

// serve runs the daemon in the foreground until unmounted or signalled.
func serve(cfg *Config, n *notifier) error {
	log, closer, err := newLogger(cfg, n.daemon())
	if err != nil {
		return err
	}
	defer closer.Close()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("FUSE is unavailable: /dev/fuse is missing (load the fuse module or install fuse3)")
	}
	workers := cfg.Workers
	if workers == 0 {
		workers = defaultWorkers(cfg)
	}
	checkEvery, err := time.ParseDuration(cfg.CheckInterval)
	if err != nil {
		return fmt.Errorf("--check-interval: %w", err)
	}
	// A closed terminal (SIGHUP) unmounts like Ctrl-C; a log written to a
	// pipe whose reader left (`… 2>&1 | tee log`, then Ctrl-C) must not
	// kill the daemon before it unmounts (Go exits on SIGPIPE for fd 2
	// unless it is ignored).
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()

	w, err := wire(ctx, cfg, log, workers, checkEvery, progressReporter(n))
	if err != nil {
		return err
	}
	defer w.close()

	sched, err := newScheduler(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sched.Close(cctx); err != nil {
			log.Error("closing the scheduler", "err", err)
		}
	}()
	if cfg.MetricsAddr != "" {
		stop, err := serveMetrics(cfg.MetricsAddr, w, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	srv, err := zfs.Mount(cfg.MountPoint, zfs.Config{
		Datasets:    w.datasets,
		Batches:     w.batches,
		Scheduler:   sched,
		Stats:       w.statsJSON,
		Logger:      log,
		Owner:       uint32(os.Getuid()),
		AllowOther:  cfg.AllowOther,
		Debug:       cfg.Debug,
		Passthrough: cfg.passthrough(),
	})
	if err != nil {
		return fmt.Errorf("mount %s: %w", cfg.MountPoint, err)
	}
	sched.Start()
	log.Info("mounted", "mountpoint", cfg.MountPoint, "datasets", len(w.datasets), "pid", os.Getpid())
	if err := writePidFile(cfg); err != nil {
		log.Warn("pid file", "err", err)
	}
	defer removePidFile(cfg)
	n.ready()
	unmounted := make(chan struct{})
	stopJobs := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sched.Close(cctx); err != nil {
			log.Error("closing the scheduler", "err", err)
		}
	}
	go unmountOnSignal(ctx, sigs, unmounted, srv.Unmount, func() error { return unmount(cfg.MountPoint, true) }, stopJobs, log)
	srv.Wait()
	close(unmounted)
	log.Info("unmounted", "mountpoint", cfg.MountPoint)
	return nil
}

// defaultWorkers is the number of cores, and at least 8 when a dataset
// comes from S3: building a batch from S3 mostly waits on the network
// (bench/peers: with 20 ms first-byte latency, 8 workers read 2.4× faster
// than 2 on a 2-core machine).
func defaultWorkers(cfg *Config) int {
	n := runtime.NumCPU()
	for _, d := range cfg.Datasets {
		if strings.HasPrefix(d.URI, "s3://") {
			return max(n, 8)
		}
	}
	return n
}

// location resolves a dataset URI to a store and location.
func location(ctx context.Context, cfg *Config, d DatasetConfig, log *slog.Logger) (dataset.Location, error) {
	if strings.HasPrefix(d.URI, "s3://") {
		return s3Location(ctx, cfg, d, log)
	}
	if strings.Contains(d.URI, "://") {
		return dataset.Location{}, fmt.Errorf("dataset %s: unsupported URI %q (want a local path or s3://bucket/prefix)", d.Name, d.URI)
	}
	abs, err := filepath.Abs(d.URI)
	if err != nil {
		return dataset.Location{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return dataset.Location{}, fmt.Errorf("dataset %s: %s: %w", d.Name, abs, unwrapPath(err))
	}
	if fi.IsDir() {
		st, err := newLocalStore(abs, cfg, log)
		if err != nil {
			return dataset.Location{}, err
		}
		return dataset.Location{Store: st, Prefix: true, StoreID: "file:" + abs}, nil
	}
	if !format.Supported(abs) {
		return dataset.Location{}, fmt.Errorf("dataset %s: %s: %w (want .parquet, .arrow, .arrows, .csv, .jsonl)", d.Name, abs, format.ErrUnsupported)
	}
	dir := filepath.Dir(abs)
	st, err := newLocalStore(dir, cfg, log)
	if err != nil {
		return dataset.Location{}, err
	}
	return dataset.Location{Store: st, Key: filepath.Base(abs), StoreID: "file:" + dir}, nil
}

func s3Location(ctx context.Context, cfg *Config, d DatasetConfig, log *slog.Logger) (dataset.Location, error) {
	u, err := url.Parse(d.URI)
	if err != nil || u.Host == "" {
		return dataset.Location{}, fmt.Errorf("dataset %s: bad S3 URI %q (want s3://bucket/prefix)", d.Name, d.URI)
	}
	key := strings.TrimPrefix(u.Path, "/")
	// A reader waits at most ~(1+Retries)×Timeout plus backoff on a dead
	// endpoint before it gets EIO.
	store, err := source.NewS3(ctx, source.S3Options{Bucket: u.Host, Endpoint: cfg.S3Endpoint, Logger: log,
		Timeout: 8 * time.Second, Retries: 3})
	if err != nil {
		return dataset.Location{}, fmt.Errorf("dataset %s: %w", d.Name, err)
	}
	id := "s3://" + u.Host
	if key != "" && format.Supported(key) {
		if _, err := store.Stat(ctx, key); err == nil {
			return dataset.Location{Store: store, Key: key, StoreID: id}, nil
		}
	}
	if key != "" && !strings.HasSuffix(key, "/") {
		key += "/"
	}
	return dataset.Location{Store: store, Key: key, Prefix: true, StoreID: id}, nil
}
