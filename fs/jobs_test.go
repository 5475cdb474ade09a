package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/zenithfs/zenithfs/scheduler"
)

// jobsTestRoot is a minimal mount root holding .zenith/jobs and .zenith/gpus.
type jobsTestRoot struct {
	gofs.Inode
	sh *shared
	s  *scheduler.Scheduler
}

func (r *jobsTestRoot) OnAdd(ctx context.Context) {
	z := r.NewPersistentInode(ctx, &gofs.Inode{}, gofs.StableAttr{Mode: syscall.S_IFDIR})
	r.AddChild(".zenith", z, false)
	z.AddChild("jobs", z.NewPersistentInode(ctx, newJobsDir(r.sh, r.s), gofs.StableAttr{Mode: syscall.S_IFDIR}), false)
	z.AddChild("gpus", z.NewPersistentInode(ctx, newGPUsFile(r.sh, r.s), gofs.StableAttr{Mode: syscall.S_IFREG}), false)
}

// testSchedConfig is a scheduler config with n declared GPUs and a fast
// heartbeat.
func jobsSchedConfig(t testing.TB, stateDir string, n int) scheduler.Config {
	t.Helper()
	gpus, err := scheduler.DiscoverGPUs(context.Background(), fmt.Sprint(n), nil)
	if err != nil {
		t.Fatal(err)
	}
	return scheduler.Config{
		StateDir: stateDir, GPUs: gpus, Grace: 500 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// serveJobs mounts a jobs tree over s at mnt with the production timeouts
// (an hour for entries and attributes unless a node says otherwise).
func jobsServe(mnt string, s *scheduler.Scheduler) (*fuse.Server, error) {
	hour, neg := time.Hour, time.Duration(0)
	sh := &shared{log: slog.New(slog.DiscardHandler), owner: 0, errs: newErrorRing(100)}
	return gofs.Mount(mnt, &jobsTestRoot{sh: sh, s: s}, &gofs.Options{
		EntryTimeout: &hour, AttrTimeout: &hour, NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{DirectMount: true, AllowOther: true, FsName: "zenithfs-jobs-test"},
	})
}

// mountJobs starts a scheduler and mounts its tree; it returns the jobs
// directory. The mountpoint is reachable by other users (for the uid 65534
// writer).
func jobsMount(t testing.TB, cfg scheduler.Config) (string, *scheduler.Scheduler) {
	t.Helper()
	s, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	mnt := t.TempDir()
	for _, d := range []string{filepath.Dir(mnt), mnt} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := jobsServe(mnt, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return filepath.Join(mnt, ".zenith", "jobs"), s
}

// shell runs script with sh -c and env; it returns stdout, stderr and the
// exit status.
func jobsShell(t testing.TB, script string, cred *syscall.Credential, env ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	return out.String(), errb.String(), code
}

// echoSubmit runs `echo "$SPEC" > jobs/submit` in a shell.
func jobsEcho(t testing.TB, jobs, spec string, cred *syscall.Credential) (string, int) {
	t.Helper()
	_, stderr, code := jobsShell(t, `echo "$SPEC" > "$JOBS/submit"`, cred, "SPEC="+spec, "JOBS="+jobs)
	return stderr, code
}

func jobsMustEcho(t testing.TB, jobs, spec string) {
	t.Helper()
	if stderr, code := jobsEcho(t, jobs, spec, nil); code != 0 {
		t.Fatalf("echo %s > submit: exit %d: %s", spec, code, stderr)
	}
}

// catStatus reads jobs/<name>/status through the mount.
func jobsCat(t testing.TB, jobs, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(jobs, name, "status"))
	if err != nil {
		t.Fatalf("cat status: %v", err)
	}
	return string(b)
}

// pollStatus polls `cat status` until it reads want; it returns the states
// seen on the way.
func jobsPoll(t testing.TB, jobs, name, want string, timeout time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(timeout)
	for {
		st := strings.TrimSuffix(jobsCat(t, jobs, name), "\n")
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if st == want {
			return seen
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(jobs, name, "log"))
			sj, _ := os.ReadFile(filepath.Join(jobs, name, "status.json"))
			t.Fatalf("job %s: states %v, want %s; status.json %s; log:\n%s", name, seen, want, sj, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func jobsStatusJSON(t testing.TB, jobs, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(jobs, name, "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("status.json %q: %v", b, err)
	}
	return m
}

func jobsLs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestJobLifecycleThroughMount(t *testing.T) {
	jobs, _ := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 2))
	gate := filepath.Join(t.TempDir(), "gate")
	jobsMustEcho(t, jobs, fmt.Sprintf(`{"name":"hello","command":["sh","-c","echo out-line; echo err-line >&2; while [ ! -e %s ]; do sleep 0.01; done; echo $CUDA_VISIBLE_DEVICES; exit 3"],"gpus":2}`, gate))
	if st := jobsCat(t, jobs, "hello"); st != "PENDING\n" && st != "RUNNING\n" {
		t.Fatalf("status right after submit = %q", st)
	}
	jobsPoll(t, jobs, "hello", "RUNNING", 5*time.Second)
	if got, want := jobsLs(t, jobs), []string{"errors", "hello", "submit"}; !jobsEqual(got, want) {
		t.Fatalf("ls jobs = %v, want %v", got, want)
	}
	if got, want := jobsLs(t, filepath.Join(jobs, "hello")), jobFileNames; !jobsEqual(got, want) {
		t.Fatalf("ls jobs/hello = %v, want %v", got, want)
	}
	gpus, err := os.ReadFile(filepath.Join(jobs, "..", "gpus"))
	if err != nil || string(gpus) != "0\tdeclared\t-\thello\n1\tdeclared\t-\thello\n" {
		t.Fatalf("gpus = %q, %v", gpus, err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	jobsPoll(t, jobs, "hello", "FAILED", 5*time.Second)
	st := jobsStatusJSON(t, jobs, "hello")
	if st["state"] != "FAILED" || st["exit_code"] != 3.0 || st["attempts"] != 1.0 || st["name"] != "hello" ||
		st["start_time"] == nil || st["end_time"] == nil || st["pid"] == nil {
		t.Fatalf("status.json = %v", st)
	}
	if g, ok := st["gpus"].([]any); !ok || len(g) != 2 {
		t.Fatalf("status.json gpus = %v", st["gpus"])
	}
	log, err := os.ReadFile(filepath.Join(jobs, "hello", "log"))
	if err != nil || string(log) != "out-line\nerr-line\n0,1\n" {
		t.Fatalf("log = %q, %v", log, err)
	}
	spec, err := os.ReadFile(filepath.Join(jobs, "hello", "spec"))
	var sp scheduler.Spec
	if err != nil || json.Unmarshal(spec, &sp) != nil || sp.Name != "hello" || sp.GPUs != 2 {
		t.Fatalf("spec = %q, %v", spec, err)
	}
	if _, err := os.Stat(filepath.Join(jobs, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat unknown job: %v", err)
	}

	// A YAML spec, written by cat from a file.
	yml := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(yml, []byte("name: from-yaml\ncommand: [sh, -c, 'echo yaml ran']\n"), 0o644)
	if _, stderr, code := jobsShell(t, `cat "$Y" > "$JOBS/submit"`, nil, "Y="+yml, "JOBS="+jobs); code != 0 {
		t.Fatalf("cat yaml > submit: %d %s", code, stderr)
	}
	jobsPoll(t, jobs, "from-yaml", "COMPLETED", 5*time.Second)
}

func jobsEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func TestBadSpecsThroughMount(t *testing.T) {
	jobs, _ := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 2))
	jobsMustEcho(t, jobs, `{"name":"taken","command":["true"]}`)
	tests := []struct {
		name   string
		spec   string
		errno  syscall.Errno
		reason string
	}{
		{"not JSON", `this is not a spec`, syscall.EINVAL, "JSON object or a YAML mapping"},
		{"broken JSON", `{"name": oops}`, syscall.EINVAL, "not a valid JSON spec"},
		{"unknown field", `{"name":"u","command":["true"],"gpu":1}`, syscall.EINVAL, `unknown field "gpu"`},
		{"bad name", `{"name":"a b","command":["true"]}`, syscall.EINVAL, `name "a b"`},
		{"duplicate name", `{"name":"taken","command":["true"]}`, syscall.EEXIST, "already exists"},
		{"too many GPUs", `{"name":"g","command":["true"],"gpus":3}`, syscall.EINVAL, "only 2 GPUs exist"},
		{"missing command", `{"name":"c"}`, syscall.EINVAL, "command is required"},
		{"bad workdir", `{"name":"w","command":["true"],"workdir":"/no/such/dir"}`, syscall.EINVAL, "/no/such/dir"},
		{"forbidden pattern", `{"name":"f","command":["rm","-rf","/"]}`, syscall.EINVAL, "forbidden pattern"},
		{"shell metachars need shell", `{"name":"m","command":["echo hi; rm -rf /"]}`, syscall.EINVAL, "forbidden pattern"},
		// YAML is submitted at close, but a write that makes it bad fails.
		{"YAML, too many GPUs", "name: yg\ncommand: [true]\ngpus: 3", syscall.EINVAL, "only 2 GPUs exist"},
		{"YAML, unknown field", "name: yu\ngpu: 1", syscall.EINVAL, "field gpu not found"},
		{"YAML, duplicate name", "name: taken", syscall.EEXIST, "already exists"},
		{"YAML, bad name", "name: a b\ncommand: [true]", syscall.EINVAL, `name "a b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := jobsLs(t, jobs)
			// The shell's echo fails (dash reports any write error as "I/O
			// error"; the exit status is what scripts see) ...
			if stderr, code := jobsEcho(t, jobs, tc.spec, nil); code == 0 {
				t.Fatalf("echo %s > submit succeeded: %s", tc.spec, stderr)
			}
			// ... and the write(2) itself fails with the errno.
			if err := jobsWrite(filepath.Join(jobs, "submit"), tc.spec+"\n"); !errors.Is(err, tc.errno) {
				t.Fatalf("write(2) of %s: %v, want %v", tc.spec, err, tc.errno)
			}
			errs, err := os.ReadFile(filepath.Join(jobs, "errors"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(errs)), "\n")
			if !strings.Contains(lines[len(lines)-1], tc.reason) {
				t.Fatalf("jobs/errors last line %q does not name %q", lines[len(lines)-1], tc.reason)
			}
			if after := jobsLs(t, jobs); !jobsEqual(before, after) {
				t.Fatalf("something was queued: %v → %v", before, after)
			}
		})
	}

	// Shell metacharacters in a non-shell command reach the program literally.
	jobsMustEcho(t, jobs, `{"name":"literal","command":["echo","a;b","$(id)","|","*"]}`)
	jobsPoll(t, jobs, "literal", "COMPLETED", 5*time.Second)
	if log, _ := os.ReadFile(filepath.Join(jobs, "literal", "log")); string(log) != "a;b $(id) | *\n" {
		t.Fatalf("log = %q", log)
	}
}

// writeFile does what `echo` does: open with O_TRUNC, one write, close.
func jobsWrite(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(data))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// jobsNobody is the credential of uid/gid 65534.
var jobsNobody = &syscall.Credential{Uid: 65534, Gid: 65534}

func TestNonOwnerGetsEACCES(t *testing.T) {
	jobs, s := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 0))
	stderr, code := jobsEcho(t, jobs, `{"name":"intruder","command":["true"]}`, jobsNobody)
	if code == 0 || !strings.Contains(stderr, "Permission denied") {
		t.Fatalf("submit as jobsNobody: exit %d, %q; want EACCES", code, stderr)
	}
	if _, ok := s.Job("intruder"); ok {
		t.Fatal("a refused submission was queued")
	}
	errs, _ := os.ReadFile(filepath.Join(jobs, "errors"))
	if !strings.Contains(string(errs), "uid 65534") {
		t.Fatalf("jobs/errors = %q, want the refused uid", errs)
	}

	gate := filepath.Join(t.TempDir(), "gate")
	jobsMustEcho(t, jobs, fmt.Sprintf(`{"name":"mine","command":["sh","-c","while [ ! -e %s ]; do sleep 0.01; done"]}`, gate))
	jobsPoll(t, jobs, "mine", "RUNNING", 5*time.Second)
	_, stderr, code = jobsShell(t, `echo 1 > "$JOBS/mine/cancel"`, jobsNobody, "JOBS="+jobs)
	if code == 0 || !strings.Contains(stderr, "Permission denied") {
		t.Fatalf("cancel as jobsNobody: exit %d, %q; want EACCES", code, stderr)
	}
	// Reading is open to everyone who can reach the mount.
	out, stderr, code := jobsShell(t, `cat "$JOBS/mine/status"`, jobsNobody, "JOBS="+jobs)
	if code != 0 || out != "RUNNING\n" {
		t.Fatalf("cat status as jobsNobody: %q %q %d", out, stderr, code)
	}
	os.WriteFile(gate, nil, 0o644)
	jobsPoll(t, jobs, "mine", "COMPLETED", 5*time.Second)
}

func TestTailFollowsLogAndCancelKillsTree(t *testing.T) {
	jobs, _ := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 1))
	dir := t.TempDir()
	jobsMustEcho(t, jobs, fmt.Sprintf(`{"name":"ticker","command":["sh","-c","sleep 1000 & echo $! > %s/child; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done"],"gpus":1}`, dir))
	jobsPoll(t, jobs, "ticker", "RUNNING", 5*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tail := exec.CommandContext(ctx, "tail", "-f", "-s", "0.1", filepath.Join(jobs, "ticker", "log"))
	pr, pw, _ := os.Pipe()
	tail.Stdout = pw
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() { tail.Process.Kill(); tail.Wait() }()
	// tail -f must keep delivering lines written after it started.
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "tick 20\n") {
		pr.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("tail -f stopped after %q: %v", got.String(), err)
		}
		got.Write(buf[:n])
	}

	child := strings.TrimSpace(string(jobsRead(t, filepath.Join(dir, "child"))))
	if _, stderr, code := jobsShell(t, `echo 1 > "$JOBS/ticker/cancel"`, nil, "JOBS="+jobs); code != 0 {
		t.Fatalf("echo 1 > cancel: %d %s", code, stderr)
	}
	jobsPoll(t, jobs, "ticker", "CANCELLED", 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + child + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child sleep %s survived the cancel", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gpus := jobsRead(t, filepath.Join(jobs, "..", "gpus")); string(gpus) != "0\tdeclared\t-\t-\n" {
		t.Fatalf("gpus after cancel = %q", gpus)
	}
}

func jobsRead(t testing.TB, path string) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("read %s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A spec written in pieces is submitted whole: by a shell group whose
// children inherit (and close) the descriptor, and as YAML a line at a
// time.
func TestSpecWrittenInPiecesIsSubmittedWhole(t *testing.T) {
	jobs, _ := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 1))
	for _, c := range []struct{ name, script string }{
		// $(…) forks a subshell, and /bin/true a child: each closes its
		// copy of the descriptor before the spec is complete.
		{"group", `{ echo '{"name":"group",'; /bin/true; echo "\"command\":[\"$(command -v true)\"]}"; } > "$JOBS/submit"`},
		{"yaml", `{ echo 'name: yaml'; /bin/true; echo 'command: [true]'; } > "$JOBS/submit"`},
		{"yamllines", `(echo 'name: yamllines'; echo 'gpus: 1'; echo 'command: [true]') > "$JOBS/submit"`},
		// Complete after two lines, but a third follows: all three count.
		{"yamlmore", `{ echo 'name: yamlmore'; echo 'command: [true]'; echo 'gpus: 1'; } > "$JOBS/submit"`},
		// The same when the first write holds both lines.
		{"yamlfirst", `{ printf 'name: yamlfirst\ncommand: [true]\n'; echo 'gpus: 1'; } > "$JOBS/submit"`},
		// A flow sequence continued on the next line is not bad YAML yet.
		{"yamlflow", `{ echo 'name: yamlflow'; echo 'command: [sh,'; echo '  -c, "exit 0"]'; } > "$JOBS/submit"`},
		// A command line as one string, run by the shell.
		{"shellstring", `echo '{"name":"shellstring","command":"true | true","shell":true}' > "$JOBS/submit"`},
	} {
		if _, stderr, code := jobsShell(t, c.script, nil, "JOBS="+jobs); code != 0 {
			t.Fatalf("%s: exit %d: %s", c.name, code, stderr)
		}
		jobsPoll(t, jobs, c.name, "COMPLETED", 10*time.Second)
	}
	for _, name := range []string{"yamlmore", "yamlfirst"} {
		var st struct{ GPUs []int }
		if b, err := os.ReadFile(filepath.Join(jobs, name, "status.json")); err != nil || json.Unmarshal(b, &st) != nil || len(st.GPUs) != 1 {
			t.Fatalf("%s ran with GPUs %v (%v), want the 1 its last line asked for", name, st.GPUs, err)
		}
	}
	if errs, _ := os.ReadFile(filepath.Join(jobs, "errors")); len(bytes.TrimSpace(errs)) != 0 {
		t.Fatalf("jobs/errors after specs written in pieces:\n%s", errs)
	}
}

// A submission or cancel that fails for a reason of the daemon's own (here
// the scheduler has stopped) is EIO with its reason in .zenith/errors.
func TestDaemonFailuresInTheControlTreeHaveAReason(t *testing.T) {
	s, err := scheduler.New(jobsSchedConfig(t, t.TempDir(), 1))
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	sh := &shared{log: slog.New(slog.DiscardHandler), owner: 0, errs: newErrorRing(100)}
	hour := time.Hour
	srv, err := gofs.Mount(mnt, &jobsTestRoot{sh: sh, s: s}, &gofs.Options{EntryTimeout: &hour, AttrTimeout: &hour,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "zenithfs-jobs-test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount()
	jobs := filepath.Join(mnt, ".zenith", "jobs")
	if err := jobsWrite(filepath.Join(jobs, "submit"), `{"name":"a","command":["sleep","30"]}`+"\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close(ctx)
	err = jobsWrite(filepath.Join(jobs, "submit"), `{"name":"b","command":["true"]}`+"\n")
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("submit to a stopped scheduler: %v, want EIO", err)
	}
	if got := string(sh.errs.text()); !strings.Contains(got, "submit") || !strings.Contains(got, scheduler.ErrClosed.Error()) {
		t.Fatalf(".zenith/errors after the failed submit: %q", got)
	}
}

// rmdir of a job directory removes a job that has ended, with its log, and
// frees its name; a job still running is EBUSY, a stranger is EACCES, and
// files held open from the removed job do not show the next job of that
// name.
func TestRmdirRemovesAnEndedJob(t *testing.T) {
	cfg := jobsSchedConfig(t, t.TempDir(), 1)
	jobs, s := jobsMount(t, cfg)
	gate := filepath.Join(t.TempDir(), "gate")
	jobsMustEcho(t, jobs, fmt.Sprintf(`{"name":"once","command":["sh","-c","echo first; while [ ! -e %s ]; do sleep 0.01; done"]}`, gate))
	jobsPoll(t, jobs, "once", "RUNNING", 5*time.Second)
	if err := syscall.Rmdir(filepath.Join(jobs, "once")); err != syscall.EBUSY {
		t.Fatalf("rmdir of a running job: %v, want EBUSY", err)
	}
	if _, stderr, code := jobsShell(t, `rmdir "$JOBS/once"`, jobsNobody, "JOBS="+jobs); code == 0 || !strings.Contains(stderr, "Permission denied") {
		t.Fatalf("rmdir as jobsNobody: exit %d, %q; want EACCES", code, stderr)
	}
	if err := syscall.Rmdir(filepath.Join(jobs, "submit")); err != syscall.ENOTDIR {
		t.Fatalf("rmdir submit: %v, want ENOTDIR", err)
	}
	os.WriteFile(gate, nil, 0o644)
	jobsPoll(t, jobs, "once", "COMPLETED", 5*time.Second)
	j, _ := s.Job("once")
	oldLog := j.LogPath
	// Handles into the job that outlive it: a log read before the removal,
	// a log only opened, and the cancel file.
	readLog, err := os.Open(filepath.Join(jobs, "once", "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer readLog.Close()
	if b, err := io.ReadAll(readLog); err != nil || string(b) != "first\n" {
		t.Fatalf("log = %q, %v", b, err)
	}
	openLog, err := os.Open(filepath.Join(jobs, "once", "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer openLog.Close()
	oldCancel, err := os.OpenFile(filepath.Join(jobs, "once", "cancel"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer oldCancel.Close()

	// The shell's rmdir, as a user would type it.
	if _, stderr, code := jobsShell(t, `rmdir "$JOBS/once"`, nil, "JOBS="+jobs); code != 0 {
		t.Fatalf("rmdir once: exit %d: %s", code, stderr)
	}
	if got, want := jobsLs(t, jobs), []string{"errors", "submit"}; !jobsEqual(got, want) {
		t.Fatalf("ls jobs after rmdir = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(jobs, "once")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat removed job: %v", err)
	}
	if _, err := os.Stat(oldLog); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the removed job's log is still on disk: %v", err)
	}
	if err := syscall.Rmdir(filepath.Join(jobs, "once")); err != syscall.ENOENT {
		t.Fatalf("second rmdir: %v, want ENOENT", err)
	}

	// The name is free again; the new job is a new directory, and the old
	// handles never reach it.
	gate2 := filepath.Join(t.TempDir(), "gate")
	jobsMustEcho(t, jobs, fmt.Sprintf(`{"name":"once","command":["sh","-c","echo second; while [ ! -e %s ]; do sleep 0.01; done"]}`, gate2))
	jobsPoll(t, jobs, "once", "RUNNING", 5*time.Second)
	if _, err := oldCancel.Write([]byte("1")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("cancel through the removed job's handle: %v, want ENOENT", err)
	}
	if b, err := io.ReadAll(openLog); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("read of the removed job's log, opened before: %q, %v; want ENOENT", b, err)
	}
	b := make([]byte, 64)
	if n, _ := readLog.ReadAt(b, 0); string(b[:n]) != "first\n" {
		t.Fatalf("the removed job's log, read before: now %q", b[:n])
	}
	os.WriteFile(gate2, nil, 0o644)
	jobsPoll(t, jobs, "once", "COMPLETED", 5*time.Second)
	if log := jobsRead(t, filepath.Join(jobs, "once", "log")); string(log) != "second\n" {
		t.Fatalf("log of the new job = %q", log)
	}

	// Removal survives a restart: only the new job comes back.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if got := s2.Names(); !jobsEqual(got, []string{"once"}) {
		t.Fatalf("jobs after restart = %v", got)
	}
	if j2, _ := s2.Job("once"); j2.Seq == j.Seq {
		t.Fatalf("the new job has the removed job's sequence number %d", j.Seq)
	}
}

// The first stat of a generated control file (right after its lookup)
// gives its current size, as later ones do.
func TestControlFilesStatTheirSizeAtOnce(t *testing.T) {
	jobs, _ := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 0))
	jobsMustEcho(t, jobs, `{"name":"sized","command":["true"]}`)
	jobsEcho(t, jobs, `{"name":"bad name"}`, nil)
	jobsPoll(t, jobs, "sized", "COMPLETED", 5*time.Second)
	for _, p := range []string{"errors", "sized/status", "sized/status.json", "sized/spec"} {
		path := filepath.Join(jobs, p)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(len(b)) || len(b) == 0 {
			t.Errorf("%s: first stat says %d bytes, it holds %d", p, fi.Size(), len(b))
		}
	}
}
