package scheduler

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/zenithfs/zenithfs/internal/proc"
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

// alive reports whether the process of r still runs: same pid, same start
// time, and not a zombie.
func (r localRef) alive() bool {
	if r.pid == 0 {
		return false
	}
	st, ok := proc.ReadStat(r.pid)
	return ok && st.Start == r.start && st.Alive()
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
