package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// Mount is a running FUSE filesystem of one arm: its daemon's pid and how
// to take it down.
type Mount struct {
	Dir   string
	PID   int
	Start time.Time     // when the mount command was started
	Ready time.Duration // until the mount answered
	stop  func() error
}

// Unmount takes the mount down and waits for its daemon to exit.
func (m *Mount) Unmount() error {
	err := m.stop()
	deadline := time.Now().Add(20 * time.Second)
	for m.PID > 0 && benchkit.ProcessAlive(m.PID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if m.PID > 0 && benchkit.ProcessAlive(m.PID) {
		_ = syscall.Kill(m.PID, syscall.SIGKILL)
		err = errors.Join(err, fmt.Errorf("daemon %d still running 20s after unmount (killed)", m.PID))
	}
	return err
}

// ZenithOpts are the zenithfs mount flags of the benchmark.
type ZenithOpts struct {
	Bin, Name, Source, Endpoint, StateDir, CacheSize string
	Batch, Prefetch, Workers                         int
	MetricsAddr                                      string
}

// mountZenith runs `zenithfs mount` (which returns once the mount is ready)
// and finds the daemon it left running.
func mountZenith(o ZenithOpts, dir string) (*Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"mount", "--dataset", o.Name + "=" + o.Source, "--batch-size", strconv.Itoa(o.Batch),
		"--cache-size", o.CacheSize, "--prefetch", strconv.Itoa(o.Prefetch), "--state-dir", o.StateDir, "--gpus", "0"}
	if o.Endpoint != "" {
		args = append(args, "--s3-endpoint", o.Endpoint)
	}
	if o.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(o.Workers))
	}
	if o.MetricsAddr != "" {
		args = append(args, "--metrics-addr", o.MetricsAddr)
	}
	args = append(args, dir)
	m := &Mount{Dir: dir, Start: time.Now()}
	out, err := exec.Command(o.Bin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("zenithfs %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	m.Ready = time.Since(m.Start)
	m.stop = func() error { return benchkit.Umount(o.Bin, dir) }
	if m.PID, err = benchkit.DaemonPID(dir); err != nil {
		_ = m.stop()
		return nil, err
	}
	return m, nil
}

// mountDaemon starts a FUSE daemon that stays in the foreground (s3fs -f,
// rclone mount) and waits until dir is a mount point that lists.
func mountDaemon(cmd *exec.Cmd, dir, logPath string) (*Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	m := &Mount{Dir: dir, Start: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.PID = cmd.Process.Pid
	m.stop = func() error {
		var err error
		if isMounted(dir) {
			if out, uerr := exec.Command("umount", dir).CombinedOutput(); uerr != nil {
				err = fmt.Errorf("umount %s: %w: %s", dir, uerr, bytes.TrimSpace(out))
				_ = exec.Command("umount", "-l", dir).Run()
			}
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-m.PID, syscall.SIGKILL)
			<-exited
		}
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited before mounting: %s", filepath.Base(cmd.Path), lastLines(b, 5))
		default:
		}
		if isMounted(dir) {
			if _, err := os.ReadDir(dir); err == nil {
				m.Ready = time.Since(m.Start)
				return m, nil
			}
		}
	}
	_ = m.Unmount()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("%s did not mount %s within 30s: %s", filepath.Base(cmd.Path), dir, lastLines(b, 5))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// isMounted tells whether dir is a mount point (/proc/self/mountinfo).
func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// S3Target is where the peers find the bucket.
type S3Target struct {
	Endpoint, Bucket, Access, Secret, Region string
}

// mountS3fs mounts bucket:/prefix with s3fs-fuse, path-style, through the
// endpoint, with its default caching (no use_cache), read-only.
func mountS3fs(t S3Target, prefix, dir, work string) (*Mount, error) {
	pw := filepath.Join(work, "s3fs.passwd")
	if err := os.WriteFile(pw, []byte(t.Access+":"+t.Secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("s3fs", t.Bucket+":/"+prefix, dir, "-f",
		"-o", "url="+t.Endpoint, "-o", "use_path_request_style", "-o", "passwd_file="+pw,
		"-o", "endpoint="+t.Region, "-o", "ro")
	return mountDaemon(cmd, dir, filepath.Join(work, "s3fs.log"))
}

// caVars are the CA-bundle variables this environment sets; rclone refuses
// some of them, so they are removed from its environment only.
var caVars = []string{"AWS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
	"NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "NIX_SSL_CERT_FILE", "PIP_CERT", "HTTPLIB2_CA_CERTS",
	"CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"}

// rcloneEnv is the environment of rclone: an S3 remote "bench" of
// provider Other at the endpoint, credentials from the AWS_* variables.
func rcloneEnv(t S3Target, work string) []string {
	drop := map[string]bool{}
	for _, k := range caVars {
		drop[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && !strings.HasPrefix(k, "RCLONE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"RCLONE_CONFIG="+filepath.Join(work, "rclone.conf"), // absent: rclone uses defaults + the variables below
		"RCLONE_CONFIG_BENCH_TYPE=s3", "RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ENV_AUTH=true", "RCLONE_CONFIG_BENCH_ENDPOINT="+t.Endpoint,
		"RCLONE_CONFIG_BENCH_REGION="+t.Region, "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true")
}

// mountRclone mounts bench:bucket/prefix with rclone mount, read-only,
// with the given --vfs-cache-mode (full or off) and otherwise defaults.
func mountRclone(t S3Target, prefix, dir, work, cacheMode string) (*Mount, error) {
	cacheDir := filepath.Join(work, "rclone-cache")
	_ = os.RemoveAll(cacheDir) // every epoch starts cold
	cmd := exec.Command("rclone", "mount", "bench:"+t.Bucket+"/"+prefix, dir, "--read-only",
		"--vfs-cache-mode", cacheMode, "--cache-dir", cacheDir)
	cmd.Env = rcloneEnv(t, work)
	m, err := mountDaemon(cmd, dir, filepath.Join(work, "rclone.log"))
	if err != nil {
		return nil, err
	}
	stop := m.stop
	m.stop = func() error { err := stop(); _ = os.RemoveAll(cacheDir); return err }
	return m, nil
}
