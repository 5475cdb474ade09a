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
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials of the benchmark's server, handed to every arm through the
// standard AWS environment variables (s3fs: a passwd file).
const (
	accessKey = "zenithpeers"
	secretKey = "zenithpeerssecret"
	region    = "us-east-1"
)

// server is a versitygw (posix backend) on a free loopback port.
type server struct {
	Endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// startServer runs versitygw over dir and waits until it answers HTTP.
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

func (s *server) stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// findVersitygw finds the binary scripts/s3-server.sh installs.
func findVersitygw() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("scripts/s3-server.sh", "path").Output(); err == nil {
		return strings.TrimSpace(string(out)), nil
	}
	return "", fmt.Errorf("versitygw not found: run scripts/s3-server.sh install (or set VERSITYGW)")
}

// setAWSEnv points the standard AWS chain (zenithfs's, the SDK arm's and
// rclone's env_auth) at the server's credentials and nothing else.
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

// upload creates the bucket (if needed) and puts every file of dir under
// prefix/, skipping objects that already have the same size.
func upload(ctx context.Context, c *s3.Client, bucket, prefix, dir string) error {
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil &&
		!strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") && !strings.Contains(err.Error(), "BucketAlreadyExists") {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".parquet") {
			continue
		}
		key := prefix + "/" + e.Name()
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err == nil &&
			aws.ToInt64(h.ContentLength) == fi.Size() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: f, ContentLength: aws.Int64(fi.Size())})
		f.Close()
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
	}
	return nil
}
