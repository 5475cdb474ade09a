package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/zenithfs/zenithfs/internal/s3test"
)

// Credentials of the benchmark's server, handed to zenithfs and to the
// baseline through the standard AWS environment variables.
const (
	accessKey = "zenithbench"
	secretKey = "zenithbenchsecret"
	region    = "us-east-1"
)

// server is a versitygw (posix backend) on a free loopback port.
type server struct {
	Endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// startServer runs bin over dir and waits until it answers HTTP.
func startServer(bin, dir, logPath string) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--access", accessKey, "--secret", secretKey, "--region", region,
		"--port", addr, "--keep-alive", "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	s := &server{Endpoint: "http://" + addr, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("versitygw exited at start: %s", bytes.TrimSpace(b))
		default:
		}
		if resp, err := hc.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return s, nil
		}
	}
	s.stop()
	return nil, fmt.Errorf("versitygw did not answer on %s within 20s", addr)
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(2 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// findVersitygw looks where scripts/s3-server.sh installs it ($VERSITYGW,
// $PATH, $GOBIN, $GOPATH/bin, ~/go/bin).
func findVersitygw() (string, error) { return s3test.Binary() }

// setAWSEnv makes the standard AWS chain (zenithfs's and the baseline's)
// find the server's credentials and nothing else of this machine's.
func setAWSEnv(work string) {
	none := filepath.Join(work, "no-aws-config")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey, "AWS_REGION": region,
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		os.Unsetenv(k)
	}
}

// newClient is an SDK client for the server as a user would make one:
// the default config chain, path-style addressing.
func newClient(ctx context.Context, endpoint string) (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		// As zenithfs does: versitygw and ranged GETs gain nothing from the
		// newer default checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// upload creates the bucket (if needed) and puts every file of dir under prefix.
func upload(ctx context.Context, c *s3.Client, bucket, prefix, dir string) (int64, error) {
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil &&
		!strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") && !strings.Contains(err.Error(), "BucketAlreadyExists") {
		return 0, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(prefix + e.Name()),
			Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))})
		if err != nil {
			return 0, fmt.Errorf("put %s: %w", e.Name(), err)
		}
		total += int64(len(b))
	}
	return total, nil
}

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100 // USER_HZ
}

// selfCPU is this process's CPU time so far (all threads).
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
