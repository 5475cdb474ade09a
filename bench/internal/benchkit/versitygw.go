package benchkit

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/internal/s3test"
)

// Creds are the credentials and region of a benchmark's S3 server.
type Creds struct{ Access, Secret, Region string }

// Versitygw is a versitygw S3 server (posix backend) on a free loopback
// port, run for the length of a benchmark.
type Versitygw struct {
	Endpoint string // http://127.0.0.1:PORT
	cmd      *exec.Cmd
	exited   chan struct{}
	grace    time.Duration
}

// FindVersitygw finds the binary scripts/s3-server.sh installs ($VERSITYGW,
// $PATH, $GOBIN, $GOPATH/bin, ~/go/bin).
func FindVersitygw() (string, error) { return s3test.Binary() }

// StartVersitygw runs bin over dir with creds, logging to logPath, and
// waits (up to 20 s) until it answers HTTP. Stop sends SIGTERM to its
// process group and SIGKILL after grace.
func StartVersitygw(bin, dir, logPath string, creds Creds, grace time.Duration) (*Versitygw, error) {
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
	cmd := exec.Command(bin, "--access", creds.Access, "--secret", creds.Secret, "--region", creds.Region,
		"--port", addr, "--keep-alive", "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	s := &Versitygw{Endpoint: "http://" + addr, cmd: cmd, exited: make(chan struct{}), grace: grace}
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
	s.Stop()
	return nil, fmt.Errorf("versitygw did not answer on %s within 20s", addr)
}

// Pid is the server's process id.
func (s *Versitygw) Pid() int { return s.cmd.Process.Pid }

// Stop terminates the server and waits for it to exit.
func (s *Versitygw) Stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(s.grace):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// SetAWSEnv points the standard AWS chain (zenithfs's, the SDK's, rclone's
// env_auth) at creds and nothing else of this machine's; work is a
// directory under which no AWS config file exists.
func SetAWSEnv(work string, creds Creds) {
	none := filepath.Join(work, "no-aws-config")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": creds.Access, "AWS_SECRET_ACCESS_KEY": creds.Secret, "AWS_REGION": creds.Region,
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		os.Unsetenv(k)
	}
}
