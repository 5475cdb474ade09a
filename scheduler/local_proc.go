package scheduler

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// localRef is the decoded form of a local RunRef:
// "local:<pid>:<start ticks>:<exit file>"; pid 0 is an attempt that had
// ended when FindStarted found it (only its exit file is left). The start time (field 22 of
// /proc/<pid>/stat, in clock ticks since boot) tells our process from a
// later process that reuses the pid.
type localRef struct {
	pid      int
	start    uint64
	exitPath string
}

func (r localRef) encode() RunRef {
	return RunRef(fmt.Sprintf("local:%d:%d:%s", r.pid, r.start, r.exitPath))
}

// maxPID is Linux's largest pid (PID_MAX_LIMIT): a larger number in a
// corrupt reference would wrap to 0 as a process group (kill(0, …)).
const maxPID = 1 << 22

func parseLocalRef(ref RunRef) (localRef, error) {
	f := strings.SplitN(string(ref), ":", 4)
	if len(f) != 4 || f[0] != "local" {
		return localRef{}, fmt.Errorf("not a local run reference: %q", ref)
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid < 0 || pid > maxPID {
		return localRef{}, fmt.Errorf("run reference %q: bad pid", ref)
	}
	start, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return localRef{}, fmt.Errorf("run reference %q: bad start time", ref)
	}
	return localRef{pid: pid, start: start, exitPath: f[3]}, nil
}

// procStat reads the state letter and start time of a process from
// /proc/<pid>/stat. ok is false when the process does not exist.
func procStat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself; fields are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// alive reports whether the process of r still runs: same pid, same start
// time, and not a zombie.
func (r localRef) alive() bool {
	if r.pid == 0 {
		return false
	}
	st, start, ok := procStat(r.pid)
	return ok && start == r.start && st != 'Z' && st != 'X'
}

// readExitFile reads the exit status the wrapper shell records.
func readExitFile(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	return n, true
}
