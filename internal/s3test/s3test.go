// Package s3test runs a real S3 server for tests: versitygw with its posix
// backend over a temporary directory, listening on a free loopback port, and
// stopped when the test ends. It also offers a fault-injecting reverse proxy
// (see Proxy) to put in front of it.
//
// The versitygw binary is found through $VERSITYGW, $PATH, $GOBIN or
// $GOPATH/bin; `scripts/s3-server.sh install` installs it (CI runs that).
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Test credentials of every server this package starts.
const (
	AccessKey = "zenithtest"
	SecretKey = "zenithtestsecret"
	Region    = "us-east-1"
)

// Server is a running versitygw. Its fields are read-only.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string
	Dir       string // the posix backend's root: one directory per bucket

	bin     string
	addr    string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	client *s3.Client
}

// Binary returns the path of the versitygw binary, or an error that says how
// to install it.
func Binary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("GOPATH"); d != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(d)[0], "bin"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("versitygw (the S3 test server) is not installed: run `scripts/s3-server.sh install` " +
		"(go install github.com/versity/versitygw/cmd/versitygw@v1.8.0), or set VERSITYGW to its path")
}

// Start starts versitygw on a free loopback port over a fresh temporary
// directory and stops it when the test ends. A missing binary fails the
// test with the install command.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		AccessKey: AccessKey, SecretKey: SecretKey, Region: Region,
		Dir: t.TempDir(), bin: bin, logPath: filepath.Join(t.TempDir(), "versitygw.log"),
	}
	t.Cleanup(s.Stop)
	var last error
	for try := 0; try < 5; try++ { // a free port can be taken before we bind it
		s.addr, err = freeAddr()
		if err != nil {
			t.Fatalf("s3test: find a free port: %v", err)
		}
		if last = s.launch(); last == nil {
			s.Endpoint = "http://" + s.addr
			return s
		}
	}
	t.Fatalf("s3test: start versitygw: %v", last)
	return nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 500ms: versitygw
// otherwise waits for clients' idle keep-alive connections) and waits for
// it. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(500 * time.Millisecond):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Restart starts the server again on the same address and directory, after
// a Stop (or a crash).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for try := 0; try < 50; try++ { // the port may linger for a moment
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("s3test: restart versitygw on %s: %v", s.addr, err)
}

// launch runs versitygw and waits until it answers HTTP.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--port", s.addr, "--keep-alive", "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("versitygw exited at start: %s", s.logTail())
		default:
		}
		if resp, err := hc.Get("http://" + s.addr + "/"); err == nil {
			resp.Body.Close()
			return nil // any HTTP answer (403 without credentials) means it serves
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("versitygw did not answer on %s within 20s: %s", s.addr, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Credentials returns a provider of the server's root credentials.
func (s *Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
}

// Client returns an S3 client for the server (path-style, root credentials).
func (s *Server) Client() *s3.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = s3.New(s3.Options{
			Region:                     s.Region,
			BaseEndpoint:               aws.String(s.Endpoint),
			UsePathStyle:               true,
			Credentials:                s.Credentials(),
			RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		})
	}
	return s.client
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
}

// Put writes (or overwrites) an object.
func (s *Server) Put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := s.Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		t.Fatalf("s3test: put s3://%s/%s: %v", bucket, key, err)
	}
}

// Delete removes an object.
func (s *Server) Delete(t testing.TB, bucket, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("s3test: delete s3://%s/%s: %v", bucket, key, err)
	}
}

var bucketSeq atomic.Int64

// NewBucket creates a bucket with a fresh name and puts files into it, each
// key prefixed by prefix. It returns the bucket's name.
func (s *Server) NewBucket(t testing.TB, prefix string, files map[string][]byte) string {
	t.Helper()
	name := fmt.Sprintf("zt-%d-%d", os.Getpid(), bucketSeq.Add(1))
	s.CreateBucket(t, name)
	for k, v := range files {
		s.Put(t, name, prefix+k, v)
	}
	return name
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// String describes the server for messages.
func (s *Server) String() string {
	return strings.TrimPrefix(s.Endpoint, "http://") + " (versitygw over " + s.Dir + ")"
}
