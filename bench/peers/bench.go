package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Arm is one way of reading a dataset.
type Arm struct {
	ID       string // e.g. "s3fs random"
	Kind     string // zenithfs, zenithfs-tuned, s3fs, rclone-full, rclone-off, sdk, zenithfs-local, direct
	Shuffled bool
	Net      string // remote (proxy shapes traffic), loopback (proxy passes through), local (no S3)
	Cold     bool   // local arms: page cache dropped first
}

// Run is one arm's epoch.
type Run struct {
	Dataset    string  `json:"dataset"`
	Arm        string  `json:"arm"`
	Kind       string  `json:"kind"`
	Net        string  `json:"net"`
	Shuffled   bool    `json:"shuffled"`
	Rep        int     `json:"rep"`
	Seconds    float64 `json:"seconds"` // the consumer's epoch: start to last batch
	Rows       int64   `json:"rows"`
	SamplesPS  float64 `json:"samples_per_s"`
	MBps       float64 `json:"mb_per_s"`   // Parquet bytes of the rows read ÷ seconds
	TTFB       float64 `json:"ttfb_s"`     // mount command (or consumer) start → first batch touched
	MountS     float64 `json:"mount_s"`    // until the mount answered
	DaemonHWM  int64   `json:"daemon_hwm"` // VmHWM of the FUSE daemon
	ConsumerRS int64   `json:"consumer_maxrss"`
	DaemonCPU  float64 `json:"daemon_cpu_s"`
	ConsCPU    float64 `json:"consumer_cpu_s"`
	InfraCPU   float64 `json:"infra_cpu_s"` // versitygw + the proxy (this process) during the epoch
	GETs       int64   `json:"gets"`
	Bytes      int64   `json:"bytes"`
	Lists      int64   `json:"lists"`
	Heads      int64   `json:"heads"`
	Partial    bool    `json:"partial"`
	Err        string  `json:"error,omitempty"`
}

// DataInfo is one prepared dataset.
type DataInfo struct {
	Dataset
	Dir      string  `json:"dir"`
	Bytes    int64   `json:"bytes"` // Parquet bytes
	IndexS   float64 `json:"index_s"`
	IndexGET int64   `json:"index_gets"`
	IndexB   int64   `json:"index_bytes"`
	LocalIdx float64 `json:"local_index_s"`
}

// Bench holds what the arms share.
type Bench struct {
	cfg    Config
	self   string
	server *benchkit.Versitygw
	proxy  *Proxy
	target S3Target
	shapes map[string]Shape
	runs   []Run
}

func (b *Bench) stateDir(ds DataInfo, net string) string {
	if net == "local" {
		return filepath.Join(b.cfg.Work, "state-local-"+ds.Name)
	}
	return filepath.Join(b.cfg.Work, "state-s3-"+ds.Name)
}

func (b *Bench) zenithOpts(ds DataInfo, a Arm) ZenithOpts {
	o := ZenithOpts{Bin: b.cfg.Bin, Name: ds.Name, StateDir: b.stateDir(ds, a.Net), CacheSize: b.cfg.CacheSize,
		Batch: ds.Batch, Prefetch: b.cfg.Prefetch, Workers: b.cfg.Workers}
	if a.Net == "local" {
		o.Source = ds.Dir
	} else {
		o.Source = "s3://" + b.target.Bucket + "/" + ds.Name
		o.Endpoint = b.proxy.URL
	}
	return o
}

// indexPass mounts a dataset once with a fresh state dir (zenithfs's
// one-time index pass), timed and counted; later mounts reuse the index.
func (b *Bench) indexPass(ds *DataInfo) error {
	for _, net := range []string{"remote", "local"} {
		a := Arm{Kind: "zenithfs", Net: net}
		if net == "local" {
			a.Kind = "zenithfs-local"
		}
		o := b.zenithOpts(*ds, a)
		_ = os.RemoveAll(o.StateDir)
		b.proxy.SetShape(b.shapes["remote"])
		b.proxy.Reset()
		m, err := mountZenith(o, filepath.Join(b.cfg.Work, "mnt-index"))
		if err != nil {
			return fmt.Errorf("%s index pass (%s): %w", ds.Name, net, err)
		}
		if err := m.Unmount(); err != nil {
			return err
		}
		if net == "local" {
			ds.LocalIdx = m.Ready.Seconds()
			continue
		}
		c := b.proxy.Counts()
		ds.IndexS, ds.IndexGET, ds.IndexB = m.Ready.Seconds(), c.GETs, c.Bytes
	}
	return nil
}

// consume runs the consumer as its own process and returns what it
// reported and its rusage (CPU, peak RSS).
func (b *Bench) consume(args ...string) (Consumed, *syscall.Rusage, error) {
	args = append([]string{"consume", "-max-seconds", strconv.FormatFloat(b.cfg.MaxEpoch.Seconds(), 'f', 0, 64)}, args...)
	cmd := exec.Command(b.self, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ru *syscall.Rusage
	if cmd.ProcessState != nil {
		ru, _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
	}
	if err != nil {
		return Consumed{}, ru, fmt.Errorf("consumer %v: %w: %s", args, err, lastLines(errb.Bytes(), 3))
	}
	var c Consumed
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		return c, ru, fmt.Errorf("consumer output %q: %w", out.String(), err)
	}
	return c, ru, nil
}

// runArm measures one epoch of one arm; a failure is recorded in the Run
// (the other arms go on).
func (b *Bench) runArm(ds DataInfo, a Arm, rep int, profile string) Run {
	r := Run{Dataset: ds.Name, Arm: a.ID, Kind: a.Kind, Net: a.Net, Shuffled: a.Shuffled, Rep: rep}
	if err := b.epoch(ds, a, &r, profile); err != nil {
		r.Err = err.Error()
		log.Printf("%s %s (%s) rep %d: %v", ds.Name, a.ID, a.Net, rep, err)
	}
	return r
}

func (b *Bench) epoch(ds DataInfo, a Arm, r *Run, profile string) error {
	if a.Net != "local" {
		b.proxy.SetShape(b.shapes[a.Net])
	}
	switch {
	case a.Net == "local" && a.Cold:
		if err := benchkit.DropCaches(); err != nil {
			return err
		}
	case a.Net == "local":
		if err := warm(ds.Dir); err != nil {
			return err
		}
	}
	b.proxy.Reset()
	seedArgs := []string{"-seed", strconv.FormatUint(b.cfg.Seed, 10), "-epoch", strconv.FormatUint(b.cfg.Epoch, 10),
		"-batch", strconv.Itoa(ds.Batch)}
	if a.Shuffled {
		seedArgs = append(seedArgs, "-shuffled")
	}
	mnt := filepath.Join(b.cfg.Work, "mnt")
	var m *Mount
	var err error
	var args []string
	var profDone chan struct{} // closed when the daemon's profile is saved
	switch a.Kind {
	case "zenithfs", "zenithfs-tuned", "zenithfs-local":
		o := b.zenithOpts(ds, a)
		if a.Kind == "zenithfs-tuned" {
			o.Workers, o.Prefetch = b.cfg.TunedWorkers, b.cfg.TunedPrefetch
		}
		if profile != "" {
			o.MetricsAddr = freeAddr()
		}
		if m, err = mountZenith(o, mnt); err != nil {
			return err
		}
		dir := filepath.Join(mnt, ds.Name)
		if a.Shuffled {
			dir = filepath.Join(dir, "views", fmt.Sprintf("seed=%d,epoch=%d", b.cfg.Seed, b.cfg.Epoch))
		}
		args = []string{"-mode", "ipc", "-target", dir}
		if profile != "" {
			profDone = make(chan struct{})
			go func() { fetchProfile(o.MetricsAddr, profile, b.cfg.ProfileSecs); close(profDone) }()
		}
	case "s3fs":
		if m, err = mountS3fs(b.target, ds.Name, mnt, b.cfg.Work); err != nil {
			return err
		}
		args = append([]string{"-mode", "parquet", "-target", mnt}, seedArgs...)
	case "rclone-full", "rclone-off":
		mode := "full"
		if a.Kind == "rclone-off" {
			mode = "off"
		}
		if m, err = mountRclone(b.target, ds.Name, mnt, b.cfg.Work, mode); err != nil {
			return err
		}
		args = append([]string{"-mode", "parquet", "-target", mnt}, seedArgs...)
	case "sdk":
		args = append([]string{"-mode", "sdk", "-target", b.target.Bucket + "/" + ds.Name + "/", "-endpoint", b.proxy.URL,
			"-inflight", strconv.Itoa(b.cfg.SDKInflight)}, seedArgs...)
	case "direct":
		args = append([]string{"-mode", "parquet", "-target", ds.Dir}, seedArgs...)
	default:
		return fmt.Errorf("unknown arm kind %q", a.Kind)
	}
	start := time.Now()
	var cpu0 float64
	if m != nil {
		start = m.Start
		r.MountS = m.Ready.Seconds()
		cpu0 = benchkit.ProcCPUSeconds(m.PID)
	}
	infra0 := benchkit.SelfCPU().Seconds() + benchkit.ProcCPUSeconds(b.server.Pid())
	c, ru, cerr := b.consume(args...)
	r.InfraCPU = benchkit.SelfCPU().Seconds() + benchkit.ProcCPUSeconds(b.server.Pid()) - infra0
	if profDone != nil {
		<-profDone
	}
	if m != nil {
		r.DaemonCPU = benchkit.ProcCPUSeconds(m.PID) - cpu0
		if peak, err := benchkit.DaemonPeak(m.PID, mnt); err == nil {
			r.DaemonHWM = peak
		}
		if uerr := m.Unmount(); uerr != nil && cerr == nil {
			cerr = uerr
		}
	}
	if ru != nil {
		r.ConsCPU = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		r.ConsumerRS = ru.Maxrss << 10
	}
	cnt := b.proxy.Counts()
	if a.Net != "local" {
		r.GETs, r.Bytes, r.Lists, r.Heads = cnt.GETs, cnt.Bytes, cnt.Lists, cnt.Heads
	}
	if cerr != nil {
		return cerr
	}
	r.Rows, r.Partial = c.Rows, c.Partial
	r.Seconds = float64(c.EndNS-c.StartNS) / 1e9
	if r.Seconds > 0 {
		r.SamplesPS = float64(c.Rows) / r.Seconds
		r.MBps = float64(ds.Bytes) * float64(c.Rows) / float64(ds.Rows()) / r.Seconds / 1e6
	}
	if c.FirstNS > 0 {
		r.TTFB = float64(c.FirstNS-start.UnixNano()) / 1e9
	}
	if !c.Partial && c.Rows != ds.Rows() {
		return fmt.Errorf("read %d rows, the dataset has %d", c.Rows, ds.Rows())
	}
	return nil
}

// warm reads every file of dir so its pages are cached.
func warm(dir string) error {
	paths, err := parquetFiles(dir)
	if err != nil {
		return err
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

// fetchProfile saves a CPU profile of the daemon (its pprof endpoint).
func fetchProfile(addr, path string, secs int) {
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+10)*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Printf("profile %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		log.Printf("profile %s: %v", path, err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		log.Printf("profile %s: %v", path, err)
	}
}
