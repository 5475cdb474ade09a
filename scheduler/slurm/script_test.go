package slurm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

func baseRequest() scheduler.RunRequest {
	return scheduler.RunRequest{
		Name:       "train-1",
		Attempt:    1,
		Command:    []string{"python3", "train.py"},
		LogPath:    "/state/jobs/train-1/log",
		MountPoint: "/mnt/z",
	}
}

func TestBuildSubmissionOptions(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*scheduler.RunRequest)
		cfg     Config
		want    []string // options that must be present
		notWant []string // option prefixes that must be absent
	}{
		{"minimal", func(*scheduler.RunRequest) {}, Config{},
			[]string{"--parsable", "--job-name=train-1", "--output=/state/jobs/train-1/log",
				"--error=/state/jobs/train-1/log", "--open-mode=append", "--no-requeue"},
			[]string{"--gres", "--cpus-per-task", "--mem", "--time", "--nodes", "--ntasks-per-node", "--chdir", "--partition", "--requeue"}},
		{"resources", func(r *scheduler.RunRequest) {
			r.GPUCount, r.CPUs, r.MemoryBytes = 2, 4, 3<<30+1
			r.TimeLimit = 2*time.Hour + 30*time.Second
			r.Workdir = "/work dir"
		}, Config{Partition: "gpu", ExtraArgs: []string{"--account=ml"}},
			[]string{"--gres=gpu:2", "--cpus-per-task=4", "--mem=3073M", "--time=0-02:00:30",
				"--chdir=/work dir", "--partition=gpu", "--account=ml"}, nil},
		{"default workdir", func(*scheduler.RunRequest) {}, Config{Workdir: "/state/work"},
			[]string{"--chdir=/state/work"}, nil},
		{"request workdir wins", func(r *scheduler.RunRequest) { r.Workdir = "/mine" }, Config{Workdir: "/state/work"},
			[]string{"--chdir=/mine"}, nil},
		{"retries requeue", func(r *scheduler.RunRequest) { r.Retries = 2 }, Config{},
			[]string{"--requeue"}, []string{"--no-requeue"}},
		{"multi-node", func(r *scheduler.RunRequest) { r.Nodes, r.TasksPerNode = 2, 4 }, Config{},
			[]string{"--nodes=2", "--ntasks-per-node=4"}, nil},
		{"long time limit", func(r *scheduler.RunRequest) { r.TimeLimit = 50 * time.Hour }, Config{},
			[]string{"--time=2-02:00:00"}, nil},
		{"sub-second time limit rounds up", func(r *scheduler.RunRequest) { r.TimeLimit = 1500 * time.Millisecond }, Config{},
			[]string{"--time=0-00:00:02"}, nil},
		{"percent in log path", func(r *scheduler.RunRequest) { r.LogPath = "/logs/100%/%j" }, Config{},
			[]string{"--output=/logs/100%%/%%j", "--error=/logs/100%%/%%j"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest()
			tt.edit(&req)
			if err := validate(req); err != nil {
				t.Fatal(err)
			}
			sub := buildSubmission(req, tt.cfg)
			for _, w := range tt.want {
				if !slices.Contains(sub.args, w) {
					t.Errorf("missing %q in %q", w, sub.args)
				}
			}
			for _, nw := range tt.notWant {
				for _, a := range sub.args {
					if a == nw || strings.HasPrefix(a, nw+"=") {
						t.Errorf("unexpected %q in %q", a, sub.args)
					}
				}
			}
		})
	}
}

// TestScriptQuotingThroughRealShell runs the generated script's exec line
// through /bin/sh and checks that every argument and env value arrives
// byte-for-byte, whatever shell syntax it contains.
func TestScriptQuotingThroughRealShell(t *testing.T) {
	nasty := []string{"plain", "with space", `it's`, `"dq"`, "$HOME", "`id`", "$(id)", "a;b", "*", "", "\\n", "tab\there", "new\nline", "ünï"}
	req := baseRequest()
	req.Command = append([]string{"printf", `%s\0`}, nasty...)
	req.Env = map[string]string{"NASTY": `$(echo pwned) 'q' "d"`}
	script := buildSubmission(req, Config{}).script
	out, err := exec.Command("/bin/sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("script failed: %v\n%s", err, script)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, nasty) {
		t.Errorf("args arrived as %q, want %q", got, nasty)
	}

	req.Command = []string{"sh", "-c", `printf '%s|%s|%s|%s' "$NASTY" "$ZENITH_JOB_NAME" "$ZENITH_MOUNT" "$ZENITH_JOB_ATTEMPT"`}
	out, err = exec.Command("/bin/sh", "-c", buildSubmission(req, Config{}).script).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := `$(echo pwned) 'q' "d"|train-1|/mnt/z|1`; string(out) != want {
		t.Errorf("env arrived as %q, want %q", out, want)
	}
}

func TestScriptShellAndSrun(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*scheduler.RunRequest)
		cfg      Config
		wantExec string
	}{
		{"argv", func(*scheduler.RunRequest) {}, Config{}, "exec python3 train.py\n"},
		{"shell", func(r *scheduler.RunRequest) {
			r.Shell, r.Command = true, []string{"echo $HOME && ls"}
		}, Config{}, "exec /bin/sh -c 'echo $HOME && ls'\n"},
		{"multi-task via srun", func(r *scheduler.RunRequest) { r.Nodes, r.TasksPerNode = 2, 2 },
			Config{BinDir: "/opt/slurm/bin"}, "exec /opt/slurm/bin/srun --kill-on-bad-exit=1 python3 train.py\n"},
		{"one node, one task: no srun", func(r *scheduler.RunRequest) { r.Nodes, r.TasksPerNode = 1, 1 },
			Config{}, "exec python3 train.py\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest()
			tt.edit(&req)
			script := buildSubmission(req, tt.cfg).script
			if !strings.HasPrefix(script, "#!/bin/sh\n") || !strings.HasSuffix(script, tt.wantExec) {
				t.Errorf("script:\n%s\nwant it to end with %q", script, tt.wantExec)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(*scheduler.RunRequest)
	}{
		{"bad name", func(r *scheduler.RunRequest) { r.Name = "a b" }},
		{"name with slash", func(r *scheduler.RunRequest) { r.Name = "../x" }},
		{"long name", func(r *scheduler.RunRequest) { r.Name = strings.Repeat("x", 65) }},
		{"empty command", func(r *scheduler.RunRequest) { r.Command = nil }},
		{"empty argv0", func(r *scheduler.RunRequest) { r.Command = []string{""} }},
		{"shell with argv", func(r *scheduler.RunRequest) { r.Shell, r.Command = true, []string{"a", "b"} }},
		{"relative log", func(r *scheduler.RunRequest) { r.LogPath = "log" }},
		{"no log", func(r *scheduler.RunRequest) { r.LogPath = "" }},
		{"backslash in log", func(r *scheduler.RunRequest) { r.LogPath = `/state\dir/log` }},
		{"relative workdir", func(r *scheduler.RunRequest) { r.Workdir = "x" }},
		{"negative gpus", func(r *scheduler.RunRequest) { r.GPUCount = -1 }},
		{"negative memory", func(r *scheduler.RunRequest) { r.MemoryBytes = -1 }},
		{"bad env name", func(r *scheduler.RunRequest) { r.Env = map[string]string{"A-B": "x"} }},
		{"env name injection", func(r *scheduler.RunRequest) { r.Env = map[string]string{"A=1;rm": "x"} }},
		{"NUL in arg", func(r *scheduler.RunRequest) { r.Command = []string{"echo", "a\x00b"} }},
		{"NUL in env", func(r *scheduler.RunRequest) { r.Env = map[string]string{"A": "a\x00"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest()
			tt.edit(&req)
			if err := validate(req); !errors.Is(err, scheduler.ErrInvalidSpec) {
				t.Errorf("validate = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

// runScript runs a batch script the way slurmstepd does: through /bin/sh,
// stdout and stderr appended to the log. It returns the exit status, or
// -signal when the script was killed.
func runScript(t *testing.T, script, logPath string) int {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the script did not end within 20 s:\n%s", script)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	t.Fatal(err)
	return 0
}

// TestCappedScriptThroughRealShell runs the script of a capped log: the
// log keeps at most the cap over all attempts, with a note of what was
// dropped; the script ends as the command did (exit status or signal),
// and without a cap it execs the command.
func TestCappedScriptThroughRealShell(t *testing.T) {
	const logCap = 5000
	req := baseRequest()
	req.LogPath = filepath.Join(t.TempDir(), "100% it's.log")
	cfg := Config{LogCap: logCap}

	// 2 000 lines of 6 bytes on stdout and stderr, then exit 3.
	req.Command = []string{"sh", "-c", `i=0; while [ $i -lt 1000 ]; do printf 'o%03d\n' $i; printf 'e%03d\n' $i >&2; i=$((i+1)); done; echo last; exit 3`}
	if code := runScript(t, buildSubmission(req, cfg).script, req.LogPath); code != 3 {
		t.Errorf("exit status %d, want 3", code)
	}
	log, err := os.ReadFile(req.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	body, note, ok := strings.Cut(string(log), "\n[zenithfs: the log reached its cap of 5000 bytes; further output is dropped]\n")
	if !ok || len(body) != logCap || !strings.HasPrefix(body, "o000\n") {
		t.Fatalf("log of %d bytes (body %d, want %d, note found %v):\n%.200s…\n…%s", len(log), len(body), logCap, ok, log, log[max(0, len(log)-200):])
	}
	if want := fmt.Sprintf("[zenithfs: %d bytes dropped]\n", 2000*5+5-logCap); note != want {
		t.Errorf("note %q, want %q", note, want)
	}

	// A second attempt finds the cap spent: only its note is added.
	req.Attempt, req.Command = 2, []string{"sh", "-c", "echo more; echo again"}
	if code := runScript(t, buildSubmission(req, cfg).script, req.LogPath); code != 0 {
		t.Errorf("second attempt: exit status %d, want 0", code)
	}
	log2, _ := os.ReadFile(req.LogPath)
	if add := string(log2[len(log):]); !strings.HasPrefix(add, "\n[zenithfs: the log reached its cap") || strings.Contains(add, "more") {
		t.Errorf("second attempt added %q", add)
	}

	// Under the cap everything arrives, and a command killed by a signal
	// kills the script with it (the shell notes "Killed" after it).
	req.LogPath = filepath.Join(t.TempDir(), "log")
	req.Command = []string{"sh", "-c", "echo before; kill -KILL $$"}
	if code := runScript(t, buildSubmission(req, cfg).script, req.LogPath); code != -int(syscall.SIGKILL) {
		t.Errorf("killed command: script ended %d, want killed by signal %d", code, syscall.SIGKILL)
	}
	if b, _ := os.ReadFile(req.LogPath); !strings.HasPrefix(string(b), "before\n") {
		t.Errorf("log %q, want it to start with \"before\\n\"", b)
	}

	// Other statuses over 128 are exit statuses (147 would stop the shell
	// as SIGTSTP), and srun's are never taken for signals.
	for _, tt := range []struct {
		tasks int
		cmd   string
		want  int
	}{
		{0, "exit 147", 147},
		{0, "exit 200", 200},
		{0, "kill -TERM $$", -int(syscall.SIGTERM)},
		{0, "exit 143", -int(syscall.SIGTERM)}, // indistinguishable from a TERM
		{2, "exit 137", 137},
	} {
		req.TasksPerNode, req.Command = tt.tasks, []string{"sh", "-c", tt.cmd}
		script := buildSubmission(req, cfg).script
		if tt.tasks > 1 { // no srun here: run the command the script gives it
			script = strings.Replace(script, "srun --kill-on-bad-exit=1 ", "", 1)
		}
		if code := runScript(t, script, req.LogPath); code != tt.want {
			t.Errorf("%q (tasks %d): script ended %d, want %d", tt.cmd, tt.tasks, code, tt.want)
		}
	}
	req.TasksPerNode = 0

	// No cap: the script execs the command.
	if s := buildSubmission(req, Config{}).script; strings.Contains(s, "zenith_") {
		t.Errorf("uncapped script holds the copier:\n%s", s)
	}
}
